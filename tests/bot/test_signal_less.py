"""Orders without a signal (the bot's ClosePositionCommand, reconciliation) reduce the open
cycles of their pair, oldest first; live, after a restart, and against an independent sum."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galfriday_recorder import Recorder, RecorderConfig
from galfriday_recorder.ledger.cycles import Cycle, FillOrder, reduce_cycles
from galfriday_recorder.ledger.verify import verify
from galfriday_recorder.records import Fill, Order, Signal

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
PAIR = "XRP/USD"


def _signal(side: str, at: int) -> Signal:
    return Signal(
        trading_pair=PAIR,
        exchange="kraken",
        strategy_id="s",
        side=side,
        entry_type="MARKET",
        proposed_sl_price=Decimal(1),
        proposed_tp_price=Decimal(1),
        created_at=T0 + timedelta(seconds=at),
    )


def _order(side: str, qty: str, signal: Signal | None, ref: str, **kw: Any) -> Order:
    return Order(
        client_order_ref=ref,
        trading_pair=PAIR,
        exchange="kraken",
        side=side,
        order_type="MARKET",
        quantity_ordered=Decimal(qty),
        signal_id=None if signal is None else signal.signal_id,
        created_at=T0,
        **kw,
    )


def _fill(order: Order, qty: str, price: str, fee: str, at: int) -> Fill:
    return Fill(
        client_order_id=order.client_order_id,
        fill_id=f"{order.client_order_ref}-{at}",
        trading_pair=PAIR,
        exchange="kraken",
        side=order.side,
        quantity_filled=Decimal(qty),
        fill_price=Decimal(price),
        commission=Decimal(fee),
        commission_asset="USD",
        filled_at=T0 + timedelta(seconds=at),
    )


def _trades(dsn: str) -> dict[uuid.UUID, tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        got = conn.execute(
            "SELECT signal_id, quantity, average_exit_price, total_commission, realized_pnl, "
            "exit_reason FROM trades"
        ).fetchall()
    return {r[0]: r[1:] for r in got}


def test_a_close_spans_cycles_oldest_first_and_survives_a_restart(
    recorder_config: Callable[..., RecorderConfig], pg_dsn: str
) -> None:
    cfg = recorder_config()
    a, b, c = _signal("BUY", 0), _signal("BUY", 1), _signal("SELL", 2)
    with Recorder(cfg) as rec:
        for sig in (a, b, c):
            rec.record_signal(sig)
        ea, eb = _order("BUY", "10", a, "ea"), _order("BUY", "5", b, "eb")
        ec = _order("SELL", "3", c, "ec")
        for order, price in ((ea, "1.0"), (eb, "1.2"), (ec, "1.1")):
            rec.record_order(order)
            rec.record_fill(_fill(order, str(order.quantity_ordered), price, "0", 1))
        # Reconciliation sells 4 without a signal: a's cycle only (c is a SELL cycle).
        close1 = _order("SELL", "4", None, "close-1", exit_reason="MANUAL_CLOSE")
        rec.record_order(close1)
        rec.record_fill(_fill(close1, "4", "1.5", "0.04", 2))
        assert rec.flush(30)
        assert _trades(pg_dsn) == {}
    with Recorder(cfg) as rec:  # a restart: a is open for 6, b for 5
        close2 = _order("SELL", "8", None, "close-2", exit_reason="SHUTDOWN")
        rec.record_order(close2)
        rec.record_fill(_fill(close2, "8", "2", "0.08", 3))
        assert rec.flush(30)
    trades = _trades(pg_dsn)
    # a: 10 @ 1.0 in; out 4 @ 1.5 and 6 @ 2; fees 0.04 + 0.06
    assert trades[a.signal_id] == (
        Decimal(10),
        Decimal("1.8"),
        Decimal("0.1"),
        Decimal("7.9"),
        "SHUTDOWN",
    )
    assert b.signal_id not in trades  # 2 of its 5 closed: still open
    with psycopg.connect(pg_dsn) as conn:
        assert verify(conn) == []  # the auditor derives the same trades from the fills
    assert c.signal_id not in trades
    with Recorder(cfg) as rec:
        cycles = {cy.signal_id: cy.open_quantity for cy in rec.load_recovery_state().open_cycles}
    assert cycles == {b.signal_id: Decimal(3), c.signal_id: Decimal(3)}


_qty = st.integers(1, 50).map(Decimal)


@settings(max_examples=200)
@given(
    opens=st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), _qty), min_size=1, max_size=6),
    close=st.tuples(st.sampled_from(["BUY", "SELL"]), _qty),
    fee=st.integers(0, 1000).map(lambda n: Decimal(n) / 100),
)
def test_reduce_cycles_matches_an_independent_allocation(
    opens: list[tuple[str, Decimal]], close: tuple[str, Decimal], fee: Decimal
) -> None:
    cycles = []
    for i, (side, qty) in enumerate(opens):
        cycle = Cycle(uuid.uuid4(), side, PAIR, "kraken", "s")
        entry = Order(
            trading_pair=PAIR,
            exchange="kraken",
            side=side,
            order_type="MARKET",
            quantity_ordered=qty,
        )
        cycle.apply(
            Fill(
                client_order_id=entry.client_order_id,
                trading_pair=PAIR,
                exchange="kraken",
                side=side,
                quantity_filled=qty,
                fill_price=Decimal(1),
                commission_asset="USD",
                filled_at=T0 + timedelta(seconds=i),
            ),
            FillOrder(entry.client_order_id, "MARKET"),
        )
        cycles.append(cycle)
    side, qty = close
    order = Order(
        trading_pair=PAIR, exchange="kraken", side=side, order_type="MARKET", quantity_ordered=qty
    )
    fill = Fill(
        client_order_id=order.client_order_id,
        trading_pair=PAIR,
        exchange="kraken",
        side=side,
        quantity_filled=qty,
        fill_price=Decimal(2),
        commission=fee,
        commission_asset="USD",
        filled_at=T0 + timedelta(minutes=1),
    )
    # Independently: walk the cycles of the other side, oldest first, taking what each holds.
    expected, left = [], qty
    for (cside, cqty), cycle in zip(opens, cycles, strict=True):
        if cside != side and left > 0:
            take = min(cqty, left)
            expected.append((cycle.signal_id, take))
            left -= take
    touched, rest = reduce_cycles(
        cycles, fill, FillOrder(order.client_order_id, "MARKET", "SHUTDOWN")
    )
    held = {cy.signal_id: q for (_s, q), cy in zip(opens, cycles, strict=True)}
    assert [(cy.signal_id, took, trade is not None) for cy, took, trade in touched] == [
        (sid, take, take == held[sid]) for sid, take in expected
    ]
    assert rest == left
    closed = [trade for _cy, _took, trade in touched if trade is not None]
    assert all(t.exit_reason == "SHUTDOWN" for t in closed)
    # The commission is shared pro rata: the closed trades carry exactly their share.
    for (sid, take), (_cy, _took, trade) in zip(expected, touched, strict=True):
        if trade is not None:
            assert trade.total_commission == (fee * take / qty).quantize(Decimal("1e-18"))
            assert trade.signal_id == sid


def test_a_close_while_postgres_is_down_waits_for_the_cycles_it_reduces(
    recorder_config: Callable[..., RecorderConfig], pg_dsn: str, pg_service: Any
) -> None:
    """A restart before PostgreSQL is back does not see the open cycles: a fill without a
    signal is recorded at once, and reduces them once PostgreSQL has been read."""
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    cfg = recorder_config()
    a = _signal("SELL", 0)
    with Recorder(cfg) as rec:
        rec.record_signal(a)
        entry = _order("SELL", "5", a, "e-a")
        rec.record_order(entry)
        rec.record_fill(_fill(entry, "5", "2", "0", 1))
        assert rec.flush(30)
    pg_service.stop()
    try:
        rec = Recorder(cfg.replace(apply_migrations=False)).start()
        close = _order("BUY", "5", None, "halt-1", exit_reason="SHUTDOWN")
        rec.record_order(close)
        rec.record_fill(_fill(close, "5", "1.5", "0.05", 2))
    finally:
        pg_service.start()
    try:
        assert rec.flush(60)
    finally:
        rec.close(timeout=30)
    assert _trades(pg_dsn) == {
        a.signal_id: (Decimal(5), Decimal("1.5"), Decimal("0.05"), Decimal("2.45"), "SHUTDOWN")
    }
