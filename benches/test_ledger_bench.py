"""Ledger benchmarks: sustained group commit beside per-row commits, and the caller's cost.

Events come from :func:`build_cycles`, one realistic trade cycle at a time (16
recorded events, and the trade the ledger derives): a signal and its approval,
an entry order acknowledged and filled in two parts, an exit order acknowledged
and filled, six log lines and a portfolio snapshot.

- ``ledger-commit`` group: the same 250 cycles through the ledger (journal +
  group commit + ``flush``) and, as the baseline, the same events each written
  by its own single-row statement and COMMIT (the ledger's own SQL).
  ``extra_info`` carries events/s, the ratio and the ledger's commit latency. A
  third entry times each event kind's statement on its own, to show where a
  group's time goes in PostgreSQL.
- ``ledger-commit on grown tables``: the same rounds with 10,000 finished cycles
  already stored, beside a fresh database (bounded work: the ratio stays near 1).
- ``ledger-catch-up``: a backlog of 1,000 cycles committed back to back once another
  session releases the signals table it held while they were recorded; beside it the
  same backlog with one event PostgreSQL refuses (bounded work: finding it).
- ``ledger-call`` group: what one ledger call costs the calling thread (no I/O
  happens there), for a plain log entry and for a fill through the order state
  machine, each beside the floor of any hand-off between threads (a lock, a
  timestamp, a deque append) timed between its own calls (``floor_ratio``). The
  VM's speed doubles or halves from one minute to the next, even between two
  rounds of calls in one process (``record_fill`` 3.2-3.8 us in some, 5.7-7.3 us
  in others, the writer awake or asleep): compare a call with its interleaved
  floor, not microseconds between runs.
- ``ledger-state`` group: bounded work of a fill of an order without a signal,
  with no open cycle and with 10,000 open on 500 other pairs.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ledger"))
from ledgerkit import store_finished_cycles

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.synth import RoundTrip
from galfriday_recorder.ledger import KIND_ORDER, STATEMENTS, Bulk, Ledger, encode_event
from galfriday_recorder.ledger.fold import fold
from galfriday_recorder.ledger.sql import SESSION
from galfriday_recorder.ledger.state import LedgerState, Out
from galfriday_recorder.records import (
    Fill,
    LogEntry,
    Order,
    OrderUpdate,
    PortfolioSnapshot,
    Signal,
    SignalStatusUpdate,
)

_T0 = datetime(2026, 11, 24, tzinfo=timezone.utc)
CYCLES_PER_ROUND = 250
ROUNDS = 5
EVENTS_PER_CYCLE = 16
INSTANCE = RecorderConfig().instance_name  # signals and orders name their recorder


def _log(message: str, signal: Signal, i: int) -> LogEntry:
    return LogEntry(
        source_module="bot.strategy",
        log_level="INFO",
        message=message,
        trading_pair="XRP/USD",
        signal_id=signal.signal_id,
        context={"cycle": i},
        log_timestamp=signal.created_at,
    )


def build_cycles(n: int, start: int = 0) -> list[list[tuple[str, Any]]]:
    """Prebuilt records so that the benchmark times the ledger, not record construction."""
    cycles = []
    for i in range(start, start + n):
        at = _T0 + timedelta(seconds=i)
        trip = RoundTrip.at(at, "mr_v1")
        signal, entry, exit_ = trip.signal, trip.entry, trip.exit
        cycles.append(
            [
                ("signal", signal),
                ("log", _log("signal proposed", signal, i)),
                ("approve", signal.signal_id),
                ("log", _log("signal approved", signal, i)),
                ("order", entry),
                ("new", (entry.client_order_id, f"EN-{uuid.uuid4().hex[:12]}")),
                *(("fill", fill) for fill in trip.entry_fills),
                ("log", _log("entry filled", signal, i)),
                ("order", exit_),
                ("new", (exit_.client_order_id, f"EX-{uuid.uuid4().hex[:12]}")),
                ("log", _log("exit placed", signal, i)),
                ("fill", trip.exit_fill),
                ("log", _log("exit filled", signal, i)),
                ("log", _log("cycle closed", signal, i)),
                (
                    "snapshot",
                    PortfolioSnapshot(
                        total_equity=Decimal("10000") + i,
                        available_balance=Decimal("9000"),
                        total_exposure_pct=1.0,
                        daily_drawdown_pct=0.1,
                        weekly_drawdown_pct=0.2,
                        total_drawdown_pct=0.3,
                        positions={"XRP/USD": "0"},
                        snapshot_timestamp=at,
                    ),
                ),
            ]
        )
    return cycles


def recorders(ledger: Ledger) -> dict[str, Callable[[Any], None]]:
    """Which ledger call records each step (the trade is derived by the ledger)."""
    return {
        "signal": ledger.record_signal,
        "approve": lambda sid: ledger.update_signal_status(sid, "APPROVED"),
        "order": ledger.record_order,
        "new": lambda a: ledger.update_order(a[0], "NEW", exchange_order_id=a[1]),
        "fill": ledger.record_fill,
        "log": ledger.record_log,
        "snapshot": ledger.record_portfolio_snapshot,
    }


def _journal_form(step: tuple[str, Any]) -> tuple[str, bytes]:
    """The event as the ledger journals it, for the per-row baseline."""
    kind, arg = step
    if kind == "approve":
        return encode_event("signal_status", SignalStatusUpdate(signal_id=arg, status="APPROVED"))
    if kind == "new":
        return encode_event(
            "order_update",
            OrderUpdate(client_order_id=arg[0], status="NEW", exchange_order_id=arg[1]),
        )
    if kind == "fill":
        extra = {
            "order_client_id": arg.client_order_id,
            "order_exchange_id": None,
            "order_status": "PARTIALLY_FILLED",
        }
        return encode_event("fill", (arg, extra))
    return encode_event(kind, arg)


@pytest.fixture
def ledger(pg_dsn: str, tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data"))
    led.start()
    yield led
    led.close(timeout=60)


@pytest.mark.benchmark(group="ledger-commit")
def test_bench_ledger_group_commit(benchmark: Any, ledger: Ledger) -> None:
    rate, stats = _group_commit(benchmark, ledger)
    print(
        f"\nledger group commit: {rate:,.0f} events/s, commit latency p50 "
        f"{stats['commit_latency_ms_p50']:.1f} ms, p99 {stats['commit_latency_ms_p99']:.1f} ms, "
        f"journaled after p99 {stats['journal_latency_ms_p99']:.2f} ms"
    )


@pytest.mark.benchmark(group="ledger-commit on grown tables: N finished cycles stored")
@pytest.mark.parametrize("stored", [0, 10_000], ids=["none_baseline", "10k"])
def test_bench_ledger_group_commit_on_grown_tables(
    benchmark: Any, pg_dsn: str, tmp_path: Path, stored: int
) -> None:
    """Bounded work: a group's statements find their rows by key, so what the tables
    already hold must not slow them. At 10,000 signals the planner scanned the whole
    table for each group's verdicts and derived trades (from about 20,000 it chose the
    index by itself)."""
    if stored:  # the baseline is the other benchmarks' fresh database, never analysed
        store_finished_cycles(pg_dsn, stored)
    led = Ledger(RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data"))
    led.start()
    try:
        rate, _stats = _group_commit(benchmark, led)
    finally:
        led.close(timeout=60)
    print(f"\nledger group commit with {stored:,} finished cycles stored: {rate:,.0f} events/s")


BACKLOG_CYCLES = 1_000  # 17,000 events: groups back to back, all from the journal's tail
REFUSED_LOG = "refused by a trigger"


@pytest.mark.benchmark(group="ledger-catch-up")
@pytest.mark.parametrize("refused", [0, 1], ids=["none_baseline", "one_refused"])
def test_bench_ledger_catch_up(benchmark: Any, ledger: Ledger, pg_dsn: str, refused: int) -> None:
    """A backlog committed back to back, as after PostgreSQL comes back: another session
    holds the signals table locked while the callers record ``BACKLOG_CYCLES`` cycles
    (the first group waits on the lock, the rest in the journal), and the time runs from
    the lock's release to the flush. Here the committer's work between groups is all
    that stands between PostgreSQL and the next group; the saturated benchmark's rounds
    add the callers' phase to it.

    Bounded work: with ``one_refused``, a log entry in the middle of the backlog is
    refused by a trigger (on both sides, so both pay its calls): its group is settled in
    halves, and the ratio to the baseline is what finding it costs."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.message = '{REFUSED_LOG}' THEN RAISE 'refused'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON system_logs FOR EACH ROW "
            "EXECUTE FUNCTION refuse()"
        )
    rec = recorders(ledger)
    rounds = iter(range(ROUNDS + 1))
    timings: list[float] = []
    refused_now: list[LogEntry] = []
    blocker = psycopg.connect(pg_dsn)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        blocker.execute("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")  # opens a transaction
        cycles = build_cycles(BACKLOG_CYCLES, start=1_000_000 + next(rounds) * BACKLOG_CYCLES)
        for i, cycle in enumerate(cycles):
            for j, (kind, arg) in enumerate(cycle):
                if refused and (i, j) == (BACKLOG_CYCLES // 2, 1):  # "signal proposed"
                    arg = dataclasses.replace(arg, message=REFUSED_LOG)
                    refused_now.append(arg)
                rec[kind](arg)
        assert ledger.wait_journaled(timeout=120)
        return (), {}

    def run() -> None:
        started = time.perf_counter()
        blocker.commit()
        assert ledger.flush(timeout=300)
        timings.append(time.perf_counter() - started)

    with blocker:
        benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    stats = ledger.stats()
    assert stats["dead_letters"] == len(refused_now) == refused * len(timings)
    assert stats["committed"] + stats["dead_letters"] == stats["accepted"]
    events_per_round = BACKLOG_CYCLES * (EVENTS_PER_CYCLE + 1)
    rate = events_per_round * len(timings) / sum(timings)
    benchmark.extra_info.update(
        {
            "events_per_round": events_per_round,
            "events_per_s": round(rate),
            "commit_batches": stats["commit_batches"],
        }
    )
    print(f"\nledger catch-up of a {events_per_round:,}-event backlog: {rate:,.0f} events/s")


def _group_commit(benchmark: Any, ledger: Ledger) -> tuple[float, dict[str, Any]]:
    """Rounds of ``CYCLES_PER_ROUND`` cycles, each recorded and flushed: events/s and the
    ledger's stats."""
    rec = recorders(ledger)
    rounds = iter(range(ROUNDS + 1))
    timings: list[float] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (build_cycles(CYCLES_PER_ROUND, start=next(rounds) * CYCLES_PER_ROUND),), {}

    def run(cycles: list[list[tuple[str, Any]]]) -> None:
        started = time.perf_counter()
        for cycle in cycles:
            for kind, arg in cycle:
                rec[kind](arg)
        assert ledger.flush(timeout=120)
        timings.append(time.perf_counter() - started)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    stats = ledger.stats()
    assert stats["committed"] == stats["accepted"]
    assert stats["dead_letters"] == 0
    events_per_round = CYCLES_PER_ROUND * (EVENTS_PER_CYCLE + 1)  # + the derived trade
    rate = events_per_round * len(timings) / sum(timings)
    benchmark.extra_info.update(
        {
            "events_per_round": events_per_round,
            "events_per_s": round(rate),
            "commit_batches": stats["commit_batches"],
            "commit_latency_ms_p50": round(stats["commit_latency_ms_p50"], 2),
            "commit_latency_ms_p99": round(stats["commit_latency_ms_p99"], 2),
            "journal_latency_ms_p99": round(stats["journal_latency_ms_p99"], 3),
        }
    )
    return rate, stats


@pytest.mark.benchmark(group="ledger-commit")
def test_bench_ledger_baseline_per_row_commit(benchmark: Any, pg_dsn: str) -> None:
    rounds = iter(range(ROUNDS + 1))
    timings: list[float] = []
    conn = psycopg.connect(pg_dsn, autocommit=True)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        cycles = build_cycles(CYCLES_PER_ROUND, start=next(rounds) * CYCLES_PER_ROUND)
        return ([_journal_form(step) for cycle in cycles for step in cycle],), {}

    def run(events: list[tuple[str, bytes]]) -> None:
        started = time.perf_counter()
        with conn.cursor() as cur:
            for seq, (kind, payload) in enumerate(events, start=1):
                handler = STATEMENTS[kind]
                assert isinstance(handler, Bulk)
                cur.execute(handler.sql, handler.params([(seq, payload)], INSTANCE))  # COMMITs
        timings.append(time.perf_counter() - started)

    with conn:
        benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    events_per_round = CYCLES_PER_ROUND * EVENTS_PER_CYCLE
    rate = events_per_round * len(timings) / sum(timings)
    benchmark.extra_info.update({"events_per_round": events_per_round, "events_per_s": round(rate)})
    print(f"\nper-row INSERT+COMMIT baseline: {rate:,.0f} events/s")


@pytest.mark.benchmark(group="ledger: PostgreSQL time per event kind")
@pytest.mark.parametrize("folded", [True, False], ids=["folded", "unfolded_baseline"])
def test_bench_ledger_server_time_per_kind(benchmark: Any, pg_dsn: str, folded: bool) -> None:
    """Where a group's time goes in PostgreSQL: each kind's statement timed on its own,
    and the WAL the group writes (a count that load cannot blur).

    Groups of ``commit_max_events`` journal-form events in the committer's kind order,
    one transaction each, without the pipeline (so each statement can be timed); folded
    as the committer folds them (an update riding on its row's insert, ``ledger/fold.py``)
    or, the baseline, not.
    """
    rounds = iter(range(100, 100 + ROUNDS + 1))
    spent: dict[str, float] = {}
    counts: dict[str, int] = {}
    wal = 0
    group = RecorderConfig().commit_max_events
    conn = psycopg.connect(pg_dsn)
    conn.execute(SESSION)  # the committer's planner settings

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        cycles = build_cycles(CYCLES_PER_ROUND, start=next(rounds) * CYCLES_PER_ROUND)
        events = [_journal_form(step) for cycle in cycles for step in cycle]
        return ([(seq, kind, payload) for seq, (kind, payload) in enumerate(events, 1)],), {}

    def run(events: list[tuple[int, str, bytes]]) -> None:
        nonlocal wal
        for start in range(0, len(events), group):
            rows = events[start : start + group]
            ordered = sorted(fold(rows) if folded else rows, key=lambda e: KIND_ORDER[e[1]])
            with conn.transaction(), conn.cursor() as cur:
                began_at = cur.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
                for kind, same in itertools.groupby(ordered, key=lambda e: e[1]):
                    batch = [(seq, payload) for seq, _kind, payload in same]
                    handler = STATEMENTS[kind]
                    assert isinstance(handler, Bulk)
                    began = time.perf_counter()
                    cur.execute(handler.sql, handler.params(batch, INSTANCE))
                    spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - began
                    counts[kind] = counts.get(kind, 0) + len(batch)
                written = cur.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", began_at
                ).fetchone()
                assert written is not None
                wal += int(written[0])

    with conn:
        benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    per_event = {kind: round(spent[kind] / counts[kind] * 1e6, 1) for kind in spent}
    wal_per_event = round(wal / sum(counts.values()))
    benchmark.extra_info.update({f"{kind}_us": us for kind, us in per_event.items()})
    benchmark.extra_info["wal_bytes_per_event"] = wal_per_event
    print(f"\nPostgreSQL time per event, by kind (us): {per_event}; WAL {wal_per_event} B/event")


def _hand_off() -> Callable[[Any], None]:
    """The floor of any in-memory hand-off between threads: a lock, a timestamp, a deque
    append."""
    lock, queue = threading.Lock(), collections.deque[tuple[str, Any, float]]()

    def hand_off(item: Any) -> None:
        with lock:
            queue.append(("fill", item, time.monotonic()))

    return hand_off


def _call_cost(benchmark: Any, call: Callable[[Any], None], args: list[Any]) -> None:
    """Time each call and, just before it (outside the call's timing), one hand-off: this
    VM's speed doubles or halves from one minute to the next, even between two rounds of
    calls in one process, so the ratio to floors taken between the call's own calls is
    the figure that travels (``floor_ratio``)."""
    it = iter(args)
    floor, floors, clock = _hand_off(), list[float](), time.perf_counter

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        arg = next(it)
        began = clock()
        floor(arg)
        floors.append(clock() - began)
        return (arg,), {}

    benchmark.pedantic(call, setup=setup, rounds=len(args), iterations=1)
    if benchmark.disabled:  # --benchmark-disable: one call, nothing timed
        return
    median_us = statistics.median(benchmark.stats.stats.data) * 1e6
    floor_us = statistics.median(floors) * 1e6
    benchmark.extra_info.update(
        {
            "median_us": round(median_us, 3),
            "floor_median_us": round(floor_us, 3),
            "floor_ratio": round(median_us / floor_us, 2),
        }
    )
    print(
        f"\n{getattr(call, '__name__', 'call')}: median {median_us:.2f} us on the calling "
        f"thread, {median_us / floor_us:.1f}x the hand-off between its calls ({floor_us:.2f} us)"
    )


@pytest.mark.benchmark(group="ledger-call")
def test_bench_ledger_call_floor_baseline(benchmark: Any) -> None:
    """The floor alone: the calls below are this many floors; the ratio travels between
    machines, microseconds do not."""
    _call_cost(benchmark, _hand_off(), list(range(20_000)))


@pytest.mark.benchmark(group="ledger-call")
def test_bench_ledger_call_record_log(benchmark: Any, ledger: Ledger) -> None:
    entries = [
        LogEntry(source_module="bot", log_level="INFO", message="tick", context={"i": i})
        for i in range(20_000)
    ]
    _call_cost(benchmark, ledger.record_log, entries)
    assert ledger.flush(timeout=60)


@pytest.mark.benchmark(group="ledger-call")
def test_bench_ledger_call_record_fill(benchmark: Any, ledger: Ledger) -> None:
    order = _order("XRP/USD", "BUY", Decimal(10**6))
    ledger.record_order(order)
    fills = [_fill(order, f"F{uuid.uuid4().hex}") for _ in range(20_000)]
    _call_cost(benchmark, ledger.record_fill, fills)
    assert ledger.flush(timeout=60)


@pytest.mark.benchmark(group="ledger-state: a fill of an order without a signal, N open cycles")
@pytest.mark.parametrize("open_cycles", [0, 10_000], ids=["none_baseline", "10k_on_other_pairs"])
def test_bench_state_signal_less_fill(benchmark: Any, open_cycles: int) -> None:
    """Bounded work: such a fill reduces its own pair's open cycles, so the open cycles of
    other pairs (a bot trading many) must not cost it anything. State only, no I/O."""
    state = LedgerState()
    state.loaded = True
    out: Out = []
    for i in range(open_cycles):  # an entry filled on each of 500 other pairs, 20 apiece
        pair = f"A{i % 500}/USD"
        signal = Signal(
            trading_pair=pair,
            exchange="kraken",
            strategy_id="s",
            side="BUY",
            entry_type="MARKET",
            proposed_sl_price=Decimal("0.9"),
            proposed_tp_price=Decimal("1.1"),
        )
        entry = _order(pair, "BUY", Decimal(1), signal_id=signal.signal_id)
        state.record_signal(signal, out)
        state.record_order(entry, out)
        state.fill(_fill(entry, f"E{i}"), out)
    assert len(state.cycles) == open_cycles
    order = _order("XRP/USD", "SELL", Decimal(10**6))
    state.record_order(order, out)
    fills = [_fill(order, f"F{i}") for i in range(20_000)]
    _call_cost(benchmark, lambda fill: state.fill(fill, []), fills)


def _order(pair: str, side: str, quantity: Decimal, signal_id: uuid.UUID | None = None) -> Order:
    return Order(
        trading_pair=pair,
        exchange="kraken",
        side=side,
        order_type="LIMIT",
        quantity_ordered=quantity,
        limit_price=Decimal("0.5"),
        signal_id=signal_id,
    )


def _fill(order: Order, fill_id: str) -> Fill:
    return Fill(
        client_order_id=order.client_order_id,
        trading_pair=order.trading_pair,
        exchange="kraken",
        side=order.side,
        quantity_filled=Decimal(1),
        fill_price=Decimal("0.5"),
        commission_asset="USD",
        fill_id=fill_id,
    )


@pytest.mark.benchmark(group="ledger-latency")
def test_bench_ledger_commit_latency_paced(benchmark: Any, ledger: Ledger) -> None:
    """Commit latency at a steady 5,000 events/s, a busy bot's rate, rather than saturation."""
    rate, seconds = 5_000, 3.0
    n = int(rate * seconds / (EVENTS_PER_CYCLE + 1))
    cycles = build_cycles(n)
    rec = recorders(ledger)

    def run() -> None:
        started = time.perf_counter()
        for i, cycle in enumerate(cycles):
            delay = started + i * (EVENTS_PER_CYCLE + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for kind, arg in cycle:
                rec[kind](arg)
        assert ledger.flush(timeout=60)

    benchmark.pedantic(run, rounds=1, iterations=1)
    stats = ledger.stats()
    benchmark.extra_info.update(
        {
            "events_per_s_offered": rate,
            "commit_batches": stats["commit_batches"],
            "commit_latency_ms_p50": round(stats["commit_latency_ms_p50"], 2),
            "commit_latency_ms_p99": round(stats["commit_latency_ms_p99"], 2),
            "journal_latency_ms_p50": round(stats["journal_latency_ms_p50"], 3),
            "journal_latency_ms_p99": round(stats["journal_latency_ms_p99"], 3),
        }
    )
    print(
        f"\nat {rate:,} events/s: {stats['commit_batches']} group commits, latency p50 "
        f"{stats['commit_latency_ms_p50']:.1f} ms, p99 {stats['commit_latency_ms_p99']:.1f} ms; "
        f"journaled after p50 {stats['journal_latency_ms_p50']:.2f} ms, "
        f"p99 {stats['journal_latency_ms_p99']:.2f} ms"
    )
