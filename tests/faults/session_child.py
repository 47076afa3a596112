"""A bot process for the whole-system fault test: the demo strategy over a synthetic session.

Run as ``python session_child.py SPEC_JSON``. Every ledger call that returned without
an error is appended to ``SPEC["log"]`` (JSON Lines, written through at each line so a
SIGKILL loses nothing already written), and so is every point at which ``flush()``
acknowledged: ``{"ack": n}`` means the first ``n`` logged events are committed.
``{"stats": ...}`` lines report the recorder's counters.

Modes:

* ``"killed"``: the market session runs until the file ``SPEC["quiesce"]`` appears;
  then market data stops, the series writer is flushed (into InfluxDB or the spool),
  the counters are logged as ``{"quiesced": ...}``, and ledger-only trade cycles follow
  until the process is killed.
* ``"clean"``: ``SPEC["updates"]`` book updates, then ``flush`` and ``close``; the final
  counters are logged as ``{"done": ...}``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from galfriday_recorder import Fill, Order, Recorder, RecorderConfig, Signal
from galfriday_recorder.lab.demo import DemoStrategy
from galfriday_recorder.lab.synth import RoundTrip, SyntheticKraken
from galfriday_recorder.loghandler import LedgerLogHandler
from galfriday_recorder.records import PortfolioSnapshot

STAT_KEYS = (
    "market_book_messages",
    "market_lines",
    "market_l2_points",
    "series_lines_dropped",
    "series_lines_spooled",
    "series_lines_written",
    "series_lines_rejected",
    "series_lines_in_doubt",
    "series_pending_lines",
    "series_spool_files",
    "series_influx_up",
    "ledger_accepted",
    "ledger_committed",
    "ledger_journal_depth",
    "ledger_pg_connected",
    "ledger_pg_errors",
    "ledger_dead_letters",
    "ledger_rejected",
)


class EventLog:
    """JSON Lines, line-buffered: each line reaches the kernel when it is written."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()
        self.events = 0

    def event(self, **obj: Any) -> None:
        with self._lock:
            self._fh.write(json.dumps(obj) + "\n")
            self.events += 1

    def note(self, **obj: Any) -> None:
        with self._lock:
            self._fh.write(json.dumps(obj) + "\n")


class LoggedRecorder:
    """The recorder as the strategy sees it; logs each ledger call that returned."""

    handler: LedgerLogHandler  # set by main() once the recorder's log handler exists

    def __init__(self, rec: Recorder, out: EventLog) -> None:
        self._rec = rec
        self._out = out
        self.worst_ns = 0  # the slowest ledger call, as the trading loop felt it

    def _timed(self, started: int) -> None:
        self.worst_ns = max(self.worst_ns, time.perf_counter_ns() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rec, name)

    def record_signal(self, signal: Signal) -> None:
        t = time.perf_counter_ns()
        self._rec.record_signal(signal)
        self._timed(t)
        self._out.event(k="signal", id=str(signal.signal_id))

    def update_signal_status(self, signal_id: uuid.UUID, status: str, *a: Any) -> None:
        t = time.perf_counter_ns()
        self._rec.update_signal_status(signal_id, status, *a)
        self._timed(t)
        self._out.event(k="signal_status", id=str(signal_id), status=status)

    def log_ledger_orders(self) -> None:
        """Orders, their updates and fills are logged where they reach the ledger: the demo
        speaks through the bot bridge, whose order desk calls the ledger itself."""
        ledger = self._rec.ledger
        record_order, update_order, record_fill = (
            ledger.record_order,
            ledger.update_order,
            ledger.record_fill,
        )

        def order(order: Order) -> None:
            t = time.perf_counter_ns()
            record_order(order)
            self._timed(t)
            self._out.event(k="order", id=str(order.client_order_id))

        def update(client_order_id: uuid.UUID, status: str, **kw: Any) -> None:
            t = time.perf_counter_ns()
            update_order(client_order_id, status, **kw)
            self._timed(t)
            self._out.event(k="order_update", id=str(client_order_id), status=status)

        def fill(fill: Fill) -> None:
            t = time.perf_counter_ns()
            record_fill(fill)
            self._timed(t)
            self._out.event(k="fill", id=fill.fill_id, order=str(fill.client_order_id))

        ledger.record_order, ledger.update_order, ledger.record_fill = order, update, fill  # type: ignore[method-assign]

    def record_portfolio_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        t = time.perf_counter_ns()
        self._rec.record_portfolio_snapshot(snapshot)
        self._timed(t)
        self._out.event(k="snapshot", ts=snapshot.snapshot_timestamp.isoformat())

    def record_configuration(self, content: dict[str, Any]) -> str:
        t = time.perf_counter_ns()
        config_hash = self._rec.record_configuration(content)
        self._timed(t)
        self._out.event(k="config", id=config_hash)
        return config_hash


def stats(rec: Recorder) -> dict[str, Any]:
    current = rec.stats()
    return {k: current.get(k) for k in STAT_KEYS}


def acknowledger(rec: Recorder, out: EventLog, stop: threading.Event) -> None:
    """Flush in a loop; log how many logged events each successful flush covers."""
    while not stop.is_set():
        covered = out.events  # every one of these returned before flush() began
        report = rec.flush(timeout=1.0)
        if report.ledger_committed:
            out.note(ack=covered)
        out.note(stats=stats(rec), t=time.time())
        stop.wait(0.1)


def ledger_cycle(
    rec: LoggedRecorder, bot_log: logging.Logger, out: EventLog, i: int, tag: str
) -> None:
    """A full trade cycle by hand, then the bot's log line about it."""
    trip = RoundTrip.at(datetime(2026, 6, 1, tzinfo=timezone.utc) + timedelta(seconds=i), "faults")
    trip.record(rec, (f"{tag}-E{i}", f"{tag}-X{i}"))  # type: ignore[arg-type]
    message = f"{tag} cycle {i}"
    handler_dropped = rec.handler.dropped
    bot_log.info(message)
    if rec.handler.dropped == handler_dropped:
        out.event(k="log", msg=message)


def main() -> None:
    spec = json.loads(sys.argv[1])
    out = EventLog(spec["log"])
    config = RecorderConfig.load(
        env={},
        pg_dsn=spec["pg_dsn"],
        influx_url=spec["influx_url"],
        influx_database=spec["influx_db"],
        data_dir=Path(spec["data_dir"]),
        spool_max_bytes=spec["spool_max_bytes"],
        batch_interval_s=0.2,
        influx_timeout_s=2.0,
        commit_interval_ms=5.0,
        l2_levels=1,
        ohlcv_intervals=(),  # Kraken's own ohlc bars only: every market point is unique
        metrics_interval_s=3600.0,  # no series writes once the market stops
    )
    rec = Recorder(config).start()
    out.note(started=True, t=time.time(), stats=stats(rec))
    logged = LoggedRecorder(rec, out)
    logged.log_ledger_orders()
    handler = rec.log_handler(logging.INFO)
    logged.handler = handler
    for name in ("galfriday", "faults.bot"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    bot_log = logging.getLogger("faults.bot")
    stop = threading.Event()
    acks = threading.Thread(target=acknowledger, args=(rec, out, stop), daemon=True)
    acks.start()

    pairs = ["XRP/USD", "DOGE/USD"]
    market = SyntheticKraken(pairs, seed=spec["seed"], start_ns=spec["start_ns"])
    strategy = DemoStrategy(logged, pairs, seed=spec["seed"] + 4)  # type: ignore[arg-type]
    logged.record_configuration({"strategy_id": "faults", "run": spec["tag"]})
    quiesce = Path(spec["quiesce"]) if spec.get("quiesce") else None
    updates = spec.get("updates", 10_000_000)
    worst_ns = 0
    for n, (received_at_ns, frame) in enumerate(market.session(updates)):
        t = time.perf_counter_ns()
        tops = rec.on_market_frame(frame, received_at_ns)
        worst_ns = max(worst_ns, time.perf_counter_ns() - t)
        for top in tops:
            strategy.on_top(top, received_at_ns)
        if n % 500 == 0:
            if quiesce is not None and quiesce.exists():
                break
            if n % 20_000 == 0:
                handler_dropped = handler.dropped
                bot_log.info(f"{spec['tag']} tick {n}")
                if handler.dropped == handler_dropped:
                    out.event(k="log", msg=f"{spec['tag']} tick {n}")

    if spec["mode"] == "clean":
        stop.set()
        acks.join()
        report = rec.flush(timeout=90)
        covered = out.events
        final = stats(rec)
        closed = rec.close(timeout=30)
        if report.ledger_committed and closed.ledger_committed:
            out.note(ack=covered)
        out.note(
            done=final,
            flushed=bool(report),
            closed=bool(closed),
            worst_frame_ms=worst_ns / 1e6,
            worst_ledger_ms=logged.worst_ns / 1e6,
        )
        return

    # Market stops: everything it produced is now in InfluxDB or in the spool.
    report = rec.flush(timeout=30)
    out.note(
        quiesced=stats(rec),
        series_written=report.series_written,
        worst_frame_ms=worst_ns / 1e6,
        worst_ledger_ms=logged.worst_ns / 1e6,
    )
    i = 0
    while True:  # ledger-only traffic until SIGKILL
        ledger_cycle(logged, bot_log, out, i, spec["tag"])
        if i % 50 == 0:
            out.note(worst_ledger_ms=logged.worst_ns / 1e6)
        i += 1
        time.sleep(0.001)


if __name__ == "__main__":
    main()
