"""Record factories, a query helper and the resumable step loop of the ledger tests'
recording processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.errors import IllegalTransition, UnknownOrder, ValidationError
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.verify import verify
from galfriday_recorder.migrate import migrate
from galfriday_recorder.records import Fill, Order, PortfolioSnapshot, Signal, Trade

T0 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone.utc)


# A DSN no server answers: a ledger started with it runs on its journal alone.
UNREACHABLE = "postgresql://postgres@/postgres?host=/nonexistent-galfriday-socket-dir"


def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def as_before_migration_0006(dsn: str) -> None:
    """The database as migration 0006 finds one written before it (the same rows, no
    allocations), then migrated: 0006 runs on that history."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE fill_allocations")
        conn.execute("DELETE FROM schema_migrations WHERE version = 6")
    assert migrate(dsn) == [6]


def as_before_migration_0007(dsn: str) -> None:
    """The database as migration 0007 finds one written before it (no untraded
    quantities), then migrated: 0007 runs on that history."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE signals DROP COLUMN untraded_quantity")  # and its index
        conn.execute("ALTER TABLE trades DROP COLUMN derived")
        conn.execute("DROP INDEX idx_signals_proposed")
        conn.execute("DELETE FROM schema_migrations WHERE version = 7")
    assert migrate(dsn) == [7]


def store_finished_cycles(dsn: str, n: int) -> None:
    """``n`` finished cycles already in the tables (a signal and its two filled orders),
    written by SQL, and the statistics autovacuum would have gathered."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO signals (signal_id, trading_pair, exchange, strategy_id, side, "
            "entry_type, proposed_sl_price, proposed_tp_price, status, created_at) "
            "SELECT gen_random_uuid(), 'XRP/USD', 'kraken', 'old', 'BUY', 'MARKET', 0.4, 0.6, "
            "'APPROVED', %s::timestamptz - make_interval(secs => i) "
            "FROM generate_series(1, %s) i",
            (T0, n),
        )
        conn.execute(
            "INSERT INTO orders (client_order_id, signal_id, trading_pair, exchange, side, "
            "order_type, quantity_ordered, quantity_filled, status) "
            "SELECT gen_random_uuid(), signal_id, trading_pair, exchange, v.side, 'MARKET', 1, "
            "1, 'FILLED' FROM signals CROSS JOIN (VALUES ('BUY'), ('SELL')) v(side)"
        )
        conn.execute("ANALYZE")


def quick_config(pg_dsn: str, data: Path) -> RecorderConfig:
    """A ledger that commits every 2 ms (tests wait on PostgreSQL, not on the timer)."""
    return RecorderConfig(pg_dsn=pg_dsn, data_dir=data, commit_interval_ms=2)


def started(config: RecorderConfig) -> Ledger:
    ledger = Ledger(config)
    ledger.start()
    return ledger


def open_cycles(ledger: Ledger) -> dict[uuid.UUID, Decimal]:
    """Open quantity by signal, as a start reads it from PostgreSQL."""
    return {c.signal_id: c.open_quantity for c in ledger.load_recovery_state().open_cycles}


def make_signal(**kw: Any) -> Signal:
    values: dict[str, Any] = {
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "strategy_id": "mr_v1",
        "side": "BUY",
        "entry_type": "LIMIT",
        "proposed_entry_price": Decimal("0.5"),
        "proposed_sl_price": Decimal("0.45"),
        "proposed_tp_price": Decimal("0.6"),
        "created_at": T0,
    }
    values.update(kw)
    return Signal(**values)


def make_order(signal: Signal | None = None, **kw: Any) -> Order:
    values: dict[str, Any] = {
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity_ordered": Decimal("150"),
        "limit_price": Decimal("0.5"),
        "signal_id": signal.signal_id if signal else None,
        "created_at": T0,
    }
    if signal is not None:
        values.update(trading_pair=signal.trading_pair, side=signal.side)
    values.update(kw)
    return Order(**values)


def make_trade(signal: Signal | None = None, **kw: Any) -> Trade:
    """A trade the bot records itself (``record_trade``), of ``signal`` when given."""
    values: dict[str, Any] = {
        "signal_id": None,
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "strategy_id": "mr_v1",
        "side": "BUY",
        "entry_timestamp": T0,
        "exit_timestamp": T0,
        "quantity": Decimal(1),
        "average_entry_price": Decimal("0.5"),
        "average_exit_price": Decimal("0.6"),
        "total_commission": Decimal(0),
        "realized_pnl": Decimal(1),
        "realized_pnl_pct": 20.0,
        "exit_reason": "TP_HIT",
    }
    if signal is not None:
        values.update(
            signal_id=signal.signal_id,
            trading_pair=signal.trading_pair,
            exchange=signal.exchange,
            strategy_id=signal.strategy_id,
            side=signal.side,
        )
    values.update(kw)
    return Trade(**values)


def make_snapshot(**kw: Any) -> PortfolioSnapshot:
    """A flat portfolio of 10,000 at ``T0``."""
    values: dict[str, Any] = {
        "total_equity": Decimal(10_000),
        "available_balance": Decimal(10_000),
        "total_exposure_pct": 0.0,
        "daily_drawdown_pct": 0.0,
        "weekly_drawdown_pct": 0.0,
        "total_drawdown_pct": 0.0,
        "positions": {},
        "snapshot_timestamp": T0,
    }
    values.update(kw)
    return PortfolioSnapshot(**values)


def make_fill(order: Order, qty: str, price: str, **kw: Any) -> Fill:
    values: dict[str, Any] = {
        "client_order_id": order.client_order_id,
        "trading_pair": order.trading_pair,
        "exchange": order.exchange,
        "side": order.side,
        "quantity_filled": Decimal(qty),
        "fill_price": Decimal(price),
        "commission": Decimal("0"),
        "commission_asset": "USD",
        "fill_id": f"T{uuid.uuid4().hex[:20]}",
        "filled_at": T0,
    }
    values.update(kw)
    return Fill(**values)


def differences(dsn: str) -> list[str]:
    """What ``galfriday-recorder verify`` finds, one line each."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [str(d) for d in verify(conn)]


def allocations(dsn: str) -> list[tuple[Any, ...]]:
    """(fill_id, signal_id, quantity) of every stored allocation, in fill order."""
    return rows(
        dsn,
        "SELECT f.fill_id, a.signal_id, a.quantity FROM fill_allocations a "
        "JOIN fills f USING (fill_pk) ORDER BY f.fill_pk, a.quantity DESC",
    )


def with_entry_order(ledger: Ledger, qty: str | int) -> tuple[Signal, Order]:
    """A new signal and its entry order, recorded (nothing filled)."""
    signal = make_signal()
    ledger.record_signal(signal)
    entry = make_order(signal, quantity_ordered=Decimal(qty))
    ledger.record_order(entry)
    return signal, entry


def entered(ledger: Ledger, qty: str, price: str = "0.5") -> Signal:
    """A new signal, its entry order and one fill of all of it."""
    signal, entry = with_entry_order(ledger, qty)
    ledger.record_fill(make_fill(entry, qty, price))
    return signal


def closed_by_other(ledger: Ledger, qty: str, fill_id: str, price: str = "0.6") -> None:
    """A SELL order without a signal (a close-all) and one fill of all of it."""
    close = make_order(side="SELL", quantity_ordered=Decimal(qty))
    ledger.record_order(close)
    ledger.record_fill(make_fill(close, qty, price, fill_id=fill_id))


Step = tuple[Any, ...]


def write_atomically(path: Path, text: str) -> None:
    staged = path.with_suffix(".new")  # a kill never leaves it half-written
    staged.write_text(text)
    os.replace(staged, path)


def run_resumable(
    steps: list[Step],
    progress: Path,
    run: Callable[[int, Step], None],
    acknowledged: Callable[[], bool],
    stop: Callable[[int], bool] = lambda _n: False,
) -> bool:
    """Run the steps after the one ``progress`` names: each is run, acknowledged (journaled),
    then written to ``progress``, until ``stop(n)``. The step a kill interrupted (run, not
    yet marked) may be refused as known already, as the bot's reconciliation would find it.
    False if a step was not acknowledged in time."""
    done = int(progress.read_text()) if progress.exists() else -1
    for n, step in enumerate(steps):
        if n <= done:
            continue
        try:
            run(n, step)
        except (ValidationError, IllegalTransition, UnknownOrder):
            if n != done + 1:
                raise
        if not acknowledged():
            return False
        write_atomically(progress, str(n))
        if stop(n):
            break
    return True
