"""Recorders sharing one database each own their rows (``recorder_instance``): a restart
recovers its own open orders and cycles (and those older than the column), ``scope="all"``
everyone's, and every derivation keeps one recorder's fills off another's cycles."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from ledgerkit import make_fill, make_order, make_signal, quick_config, rows

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.errors import UnknownOrder, ValidationError
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.verify import verify
from galfriday_recorder.records import Signal


def _ledger(pg_dsn: str, data_dir: Path) -> Ledger:
    ledger = Ledger(quick_config(pg_dsn, data_dir))
    ledger.start()
    return ledger


def _bought(ledger: Ledger) -> Signal:
    """An approved signal whose entry of 100 has filled: an open cycle."""
    signal = make_signal()
    ledger.record_signal(signal)
    ledger.update_signal_status(signal.signal_id, "APPROVED")
    entry = make_order(signal, quantity_ordered=Decimal(100))
    ledger.record_order(entry)
    ledger.record_fill(make_fill(entry, "100", "0.5"))
    return signal


def test_each_recorder_recovers_its_own_and_all_on_request(pg_dsn: str, tmp_path: Path) -> None:
    # Rows from before migration 0005 (written here, then their owner wiped): everyone's.
    legacy = _ledger(pg_dsn, tmp_path / "legacy")
    old_signal = make_signal(trading_pair="ETH/USD")
    old_order = make_order(old_signal)
    legacy.record_signal(old_signal)
    legacy.record_order(old_order)
    assert legacy.close(timeout=30)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE signals SET recorder_instance = NULL")
        conn.execute("UPDATE orders SET recorder_instance = NULL")

    a, b = _ledger(pg_dsn, tmp_path / "a"), _ledger(pg_dsn, tmp_path / "b")
    # A: a bought position (an open cycle of 100) and an open exit order.
    sa = _bought(a)
    exit_a = make_order(sa, side="SELL", order_type="TAKE_PROFIT", quantity_ordered=Decimal(100))
    a.record_order(exit_a)
    assert a.flush(timeout=30)  # A's fill is stored first: its cycle is the pair's oldest
    # B: the same on the same pair, closed by an order without a signal (reconciliation),
    # which in B reduced B's cycle only; and an undecided signal with an open order.
    sb = _bought(b)
    close_b = make_order(side="SELL", order_type="MARKET", quantity_ordered=Decimal(100))
    b.record_order(close_b)
    b.record_fill(make_fill(close_b, "100", "0.6"))
    sb2 = make_signal()
    b.record_signal(sb2)
    open_b = make_order(sb2)
    b.record_order(open_b)
    assert a.close(timeout=30)
    assert b.close(timeout=30)
    assert rows(pg_dsn, "SELECT signal_id, realized_pnl FROM trades") == [
        (sb.signal_id, Decimal(10))
    ]

    a = _ledger(pg_dsn, tmp_path / "a")  # restarted: the same name, so the same rows
    own = a.load_recovery_state()
    everyone = a.load_recovery_state(scope="all")
    mine = {exit_a.client_order_id, old_order.client_order_id}
    assert {o.order.client_order_id for o in own.open_orders} == mine
    assert {o.order.client_order_id for o in everyone.open_orders} == mine | {
        open_b.client_order_id
    }
    # B's order without a signal closed B's cycle, in B and in any reading: A's stays open.
    assert [(c.signal_id, c.open_quantity) for c in own.open_cycles] == [
        (sa.signal_id, Decimal(100))
    ]
    assert [(c.signal_id, c.open_quantity) for c in everyone.open_cycles] == [
        (sa.signal_id, Decimal(100))
    ]
    assert {s.signal_id for s in own.signals} == {sa.signal_id, old_signal.signal_id}
    assert sb2.signal_id in {s.signal_id for s in everyone.signals}
    # A's state machines hold its own orders and the old ones, not B's.
    assert a.order_view(exit_a.client_order_id) is not None
    assert a.order_view(old_order.client_order_id) is not None
    assert a.order_view(open_b.client_order_id) is None
    with pytest.raises(UnknownOrder):
        a.record_fill(make_fill(open_b, "1", "0.5"))
    with pytest.raises(ValidationError, match="scope"):
        a.load_recovery_state(scope="everyone")  # type: ignore[arg-type]
    a.record_fill(make_fill(exit_a, "100", "0.7"))  # A's cycle closes against A's own entry
    assert a.close(timeout=30)

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert verify(conn) == []
    assert sorted(
        rows(pg_dsn, "SELECT signal_id::text, realized_pnl FROM trades"),
    ) == sorted([(str(sb.signal_id), Decimal(10)), (str(sa.signal_id), Decimal(20))])
    names = {who: RecorderConfig(data_dir=tmp_path / who).instance_name for who in ("a", "b")}
    assert dict(rows(pg_dsn, "SELECT recorder_instance, count(*) FROM orders GROUP BY 1")) == {
        names["a"]: 2,
        names["b"]: 3,
        None: 1,
    }
    assert rows(
        pg_dsn, "SELECT count(*) FROM signals WHERE recorder_instance = %s", names["b"]
    ) == [(2,)]
