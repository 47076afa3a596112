"""Bounded work when the ledger reads state back from PostgreSQL (on demand, and a start).

A signal the ledger no longer holds (a fill or a verdict after a restart, or past the
in-memory cap) is read back with its cycle rebuilt (``recovery.load_signals``). The
cycle is rebuilt from the signal's own fills and the parts of signal-less fills
allocated to it, so the pair's history must not cost anything: here N finished
cycles on the same pair, each closed by an order without a signal, beside none.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.recovery import load_recovery_state, load_signals
from galfriday_recorder.records import Fill, Order, Signal

_T0 = datetime(2026, 11, 25, tzinfo=timezone.utc)
_PAIR = "XRP/USD"


def _signal() -> Signal:
    return Signal(
        trading_pair=_PAIR,
        exchange="kraken",
        strategy_id="s",
        side="BUY",
        entry_type="MARKET",
        proposed_sl_price=Decimal("0.4"),
        proposed_tp_price=Decimal("0.6"),
    )


def _filled(ledger: Ledger, side: str, n: int, signal: Signal | None = None) -> None:
    order = Order(
        trading_pair=_PAIR,
        exchange="kraken",
        side=side,
        order_type="MARKET",
        quantity_ordered=Decimal(1),
        signal_id=None if signal is None else signal.signal_id,
    )
    ledger.record_order(order)
    ledger.record_fill(
        Fill(
            fill_id=f"{side}-{n}",
            client_order_id=order.client_order_id,
            trading_pair=_PAIR,
            exchange="kraken",
            side=side,
            quantity_filled=Decimal(1),
            fill_price=Decimal("0.5"),
            commission_asset="USD",
            filled_at=_T0 + timedelta(seconds=n),
        )
    )


@pytest.fixture
def history(pg_dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> Signal:
    """``request.param`` finished cycles on the pair, then one open: the signal to read."""
    ledger = Ledger(RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data"))
    ledger.start()
    for n in range(request.param):
        signal = _signal()
        ledger.record_signal(signal)
        ledger.update_signal_status(signal.signal_id, "APPROVED")  # decided, as traded ones are
        _filled(ledger, "BUY", n, signal)
        _filled(ledger, "SELL", n)  # no signal: closes the cycle above
    wanted = _signal()
    ledger.record_signal(wanted)
    _filled(ledger, "BUY", request.param, wanted)
    assert ledger.close(timeout=120)
    # A database with that history has been through autovacuum: statistics (without them
    # the planner takes the fills table for empty and scans it whole) and no dead row
    # versions (each signal's status and untraded quantity were updated; until a vacuum
    # the partial indexes still list every old version).
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return wanted


@pytest.mark.benchmark(group="recovery: a signal read back, N finished cycles on its pair")
@pytest.mark.parametrize("history", [0, 5_000], ids=["none_baseline", "5k_finished"], indirect=True)
def test_bench_load_signal_beside_pair_history(
    benchmark: Any, pg_dsn: str, history: Signal
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        loaded = benchmark(load_signals, conn, {history.signal_id})
    [cycle] = loaded.cycles
    assert (cycle.signal_id, cycle.open_quantity) == (history.signal_id, Decimal(1))
    assert loaded.trades == []


@pytest.mark.benchmark(group="recovery: a start's read, N finished cycles in the database")
@pytest.mark.parametrize(
    "history", [0, 20_000], ids=["none_baseline", "20k_finished"], indirect=True
)
def test_bench_start_read_beside_finished_history(
    benchmark: Any, pg_dsn: str, history: Signal
) -> None:
    """A start reads the open cycles (``load_recovery_state``): its candidates are the
    signals whose entries are not all in a derived trade, found through the partial index
    on ``signals.untraded_quantity``, so the finished history must not cost anything."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        state = benchmark(load_recovery_state, conn, None)
    [cycle] = state.open_cycles
    assert (cycle.signal_id, cycle.open_quantity) == (history.signal_id, Decimal(1))
