"""One of several recorder processes on one database, for ``test_recorder_processes.py``.

``fleet_child.py CONTROL INDEX DSN INFLUX_URL INFLUX_DB [SLOW_AFTER]`` runs recorder
INDEX (data dir ``CONTROL/rINDEX``): it says it is ready (``ready-INDEX``), waits for
``go`` so that the processes start together (and race to migrate), then records its
script (:func:`script`): configurations and portfolio snapshots first, then a stream of
signals, orders and fills. Each step is acknowledged (``wait_journaled``) and then
written to ``progress-INDEX``; a restart resumes after it (the step a kill interrupted
may be known already, as the bot's reconciliation would find it). With SLOW_AFTER,
steps after that one are paced (20 ms) so that the parent's SIGKILL lands mid-stream.
Once flushed it writes ``streamed-INDEX`` and waits for ``check``; recorder 3 then
records the last configuration, and each writes what its recovery sees to
``result-INDEX.json``.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from ledgerkit import Step, make_fill, make_order, make_signal, run_resumable, write_atomically

from galfriday_recorder import Recorder, RecorderConfig
from galfriday_recorder.records import Order, PortfolioSnapshot

NS = uuid.UUID("0f6a4d2e-8c1b-4f37-9e55-2d7c3b9a1e04")
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
SHARED_INSTANT = T0 - timedelta(hours=1)  # every recorder writes a snapshot of this instant
PAIR = "XRP/USD"
CONFIGS, SNAPSHOTS, TRADED = 5, 3, 12
FINAL_CONFIG = {"fleet": "final"}
LAST = 3  # the recorder that records the final configuration
WAIT_S = 90.0


def oid(index: int, *parts: object) -> uuid.UUID:
    return uuid.uuid5(NS, ":".join(str(p) for p in (index, *parts)))


def script() -> list[Step]:
    """The same for every recorder (ids differ by index): K configurations, snapshots of
    its own instants and of the shared one, TRADED signals each a whole trade, a signal
    closed by an order without a signal, an open cycle and an open order."""
    steps: list[Step] = [("config", n) for n in range(CONFIGS)]
    steps += [("snapshot", n) for n in range(SNAPSHOTS)] + [("snapshot", "shared")]
    for j in range(TRADED):
        steps += [
            ("signal", j),
            ("approve", j),
            ("order", j, "entry", "BUY", "LIMIT"),
            ("update", j, "entry", "NEW"),
            ("fill", j, "entry", 0, "4", "0.50"),
            ("fill", j, "entry", 1, "6", "0.52"),
            ("order", j, "exit", "SELL", "TAKE_PROFIT"),
            ("fill", j, "exit", 0, "3", "0.55"),
            ("fill", j, "exit", 1, "7", "0.56"),
        ]
    steps += [
        ("signal", "closed"),
        ("approve", "closed"),
        ("order", "closed", "entry", "BUY", "LIMIT"),
        ("fill", "closed", "entry", 0, "10", "0.50"),
        ("order", None, "close", "SELL", "MARKET"),  # no signal: reduces the open cycle
        ("fill", None, "close", 0, "10", "0.48"),
        ("signal", "open-cycle"),
        ("approve", "open-cycle"),
        ("order", "open-cycle", "entry", "BUY", "LIMIT"),
        ("fill", "open-cycle", "entry", 0, "10", "0.50"),
        ("signal", "open-order"),
        ("order", "open-order", "entry", "BUY", "LIMIT"),
        ("update", "open-order", "entry", "NEW"),
    ]
    return steps


def expected_rows() -> dict[str, int]:
    """Rows one recorder's script writes, per table."""
    steps = script()
    count = {kind: sum(1 for s in steps if s[0] == kind) for kind in ("signal", "order", "fill")}
    return {
        "signals": count["signal"],
        "orders": count["order"],
        "fills": count["fill"],
        "trades": TRADED + 1,
    }


def _order(index: int, signal: object, leg: str, side: str, order_type: str) -> Order:
    return make_order(
        client_order_id=oid(index, "o", signal, leg),
        signal_id=None if signal is None else oid(index, "s", signal),
        side=side,
        order_type=order_type,
        quantity_ordered=Decimal(10),
    )


def _snapshot(index: int, at: datetime) -> PortfolioSnapshot:
    equity = Decimal(1000 + index)
    return PortfolioSnapshot(
        snapshot_timestamp=at,
        total_equity=equity,
        available_balance=equity,
        total_exposure_pct=0.0,
        daily_drawdown_pct=0.0,
        weekly_drawdown_pct=0.0,
        total_drawdown_pct=0.0,
        positions={},
    )


def run_step(rec: Recorder, index: int, n: int, step: Step) -> None:
    kind, at = step[0], T0 + timedelta(seconds=n)
    if kind == "config":
        rec.record_configuration({"recorder": index, "version": step[1]})
        rec.flush(60)  # one group per configuration: the most races with the others
    elif kind == "snapshot":
        own = T0 + timedelta(minutes=index, seconds=step[1]) if step[1] != "shared" else None
        rec.record_portfolio_snapshot(_snapshot(index, own or SHARED_INSTANT))
    elif kind == "signal":
        signal_id = oid(index, "s", step[1])
        rec.record_signal(make_signal(signal_id=signal_id, strategy_id=f"fleet-{index}"))
    elif kind == "approve":
        rec.update_signal_status(oid(index, "s", step[1]), "APPROVED")
    elif kind == "order":
        rec.record_order(_order(index, *step[1:]))
    elif kind == "update":
        rec.update_order(oid(index, "o", step[1], step[2]), step[3], updated_at=at)
    elif kind == "fill":
        _, signal, leg, k, qty, price = step
        side = "SELL" if leg in ("exit", "close") else "BUY"
        order = _order(index, signal, leg, side, "LIMIT")
        fill_id = f"F-{index}-{signal}-{leg}-{k}"
        rec.record_fill(make_fill(order, qty, price, fill_id=fill_id, filled_at=at))


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never came")
        time.sleep(0.005)


def _view(state: Any) -> dict[str, list[str]]:
    return {
        "open_orders": sorted(str(o.order.client_order_id) for o in state.open_orders),
        "open_cycles": sorted(str(c.signal_id) for c in state.open_cycles),
    }


def main(argv: list[str]) -> int:
    control, index = Path(argv[0]), int(argv[1])
    dsn, influx_url, influx_db = argv[2], argv[3], argv[4]
    slow_after = int(argv[5]) if len(argv) > 5 else None
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = RecorderConfig(
        pg_dsn=dsn,
        influx_url=influx_url,
        influx_database=influx_db,
        data_dir=control / f"r{index}",
        commit_interval_ms=2.0,
        metrics_interval_s=0.2,
    )
    write_atomically(control / f"ready-{index}", "")
    _wait_for(control / "go")
    rec = Recorder(config).start()

    def paced(n: int) -> bool:
        if slow_after is not None and n >= slow_after:
            time.sleep(0.02)
        return False

    if not run_resumable(
        script(),
        control / f"progress-{index}",
        lambda n, step: run_step(rec, index, n, step),
        lambda: rec.ledger.wait_journaled(timeout=60),
        paced,
    ):
        return 3
    if not rec.flush(60):
        return 3
    write_atomically(control / f"streamed-{index}", "")
    _wait_for(control / "check")
    if index == LAST:
        rec.record_configuration(FINAL_CONFIG)
        if not rec.flush(60):
            return 3
    result = {
        "instance": config.instance_name,
        "own": _view(rec.load_recovery_state()),
        "all": _view(rec.load_recovery_state(scope="all")),
        "dead_letters": len(rec.dead_letters()),
        "stats": rec.stats(),
    }
    report = rec.close(60)
    result["closed"] = bool(report)
    write_atomically(control / f"result-{index}.json", orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
