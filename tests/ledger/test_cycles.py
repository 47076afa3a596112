"""Trade-cycle P&L, checked to the last digit against hand computation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from ledgerkit import T0, make_fill, make_order, make_signal

from galfriday_recorder.ledger.cycles import Cycle, FillOrder, exit_reason_for, trade_id_for
from galfriday_recorder.records import Order


def _cycle(side: str, pair: str = "XRP/USD") -> tuple[Cycle, uuid.UUID]:
    signal = make_signal(side=side, trading_pair=pair)
    return Cycle(signal.signal_id, side, pair, "kraken", "mr_v1"), signal.signal_id


def _fo(order: Order) -> FillOrder:
    return FillOrder(order.client_order_id, order.order_type, order.exit_reason)


def test_long_cycle_with_base_and_quote_fees() -> None:
    cycle, sid = _cycle("BUY")
    entry = make_order(side="BUY", quantity_ordered=Decimal(150))
    exit_ = make_order(side="SELL", order_type="TAKE_PROFIT_LIMIT", quantity_ordered=Decimal(150))
    f1 = make_fill(entry, "100", "0.5", commission=Decimal("0.1"), commission_asset="USD")
    # 0.05 XRP at 0.52 = 0.026 USD
    f2 = make_fill(
        entry,
        "50",
        "0.52",
        commission=Decimal("0.05"),
        commission_asset="XRP",
        filled_at=T0 + timedelta(seconds=1),
    )
    f3 = make_fill(
        exit_, "150", "0.55", commission=Decimal("0.2"), filled_at=T0 + timedelta(seconds=60)
    )
    assert cycle.apply(f1, _fo(entry)) == (None, Decimal(0))
    assert cycle.apply(f2, _fo(entry)) == (None, Decimal(0))
    trade, excess = cycle.apply(f3, _fo(exit_))
    assert excess == 0
    assert trade is not None
    # entry value 50 + 26 = 76, exit value 82.5, fees 0.1 + 0.026 + 0.2 = 0.326
    assert trade.quantity == Decimal("150")
    assert trade.average_entry_price == Decimal("0.506666666666666667")  # 76/150 half-even
    assert trade.average_exit_price == Decimal("0.55")
    assert trade.total_commission == Decimal("0.326")
    assert trade.realized_pnl == Decimal("6.174")  # 82.5 - 76 - 0.326
    assert trade.realized_pnl_pct == float(Decimal("6.174") / 76 * 100)
    assert trade.exit_reason == "TP_HIT"
    assert trade.entry_timestamp == T0
    assert trade.exit_timestamp == T0 + timedelta(seconds=60)
    assert trade.entry_client_order_id == entry.client_order_id
    assert trade.exit_client_order_id == exit_.client_order_id
    assert trade.trade_id == trade_id_for(sid, f"kraken:{f1.fill_id}")
    assert cycle.open_quantity == 0


def test_short_cycle_partial_exits_stop_loss() -> None:
    cycle, _ = _cycle("SELL", "XBT/USD")
    entry = make_order(side="SELL", trading_pair="XBT/USD", quantity_ordered=Decimal("0.3"))
    tp = make_order(
        side="BUY", trading_pair="XBT/USD", order_type="LIMIT", quantity_ordered=Decimal("0.1")
    )
    sl = make_order(
        side="BUY", trading_pair="XBT/USD", order_type="STOP_LOSS", quantity_ordered=Decimal("0.2")
    )
    # sell 0.3 @ 60000.5, fee 4.5 USD
    f1 = make_fill(entry, "0.3", "60000.5", commission=Decimal("4.5"))
    # buy back 0.1 @ 59000, fee 0.00002 XBT -> 1.18 USD
    f2 = make_fill(tp, "0.1", "59000", commission=Decimal("0.00002"), commission_asset="XBT")
    # buy back 0.2 @ 61000.25, fee 3.05 USD
    f3 = make_fill(sl, "0.2", "61000.25", commission=Decimal("3.05"))
    assert cycle.apply(f1, _fo(entry))[0] is None
    assert cycle.apply(f2, _fo(tp))[0] is None
    assert cycle.open_quantity == Decimal("0.2")
    trade, _ = cycle.apply(f3, _fo(sl))
    assert trade is not None
    # entry 18000.15; exit 5900 + 12200.05 = 18100.05; gross (exit-entry)*-1 = -99.9
    # fees 4.5 + 1.18 + 3.05 = 8.73; pnl = -108.63
    assert trade.average_entry_price == Decimal("60000.5")
    assert trade.average_exit_price == Decimal("60333.5")  # 18100.05 / 0.3
    assert trade.total_commission == Decimal("8.73")
    assert trade.realized_pnl == Decimal("-108.63")
    assert trade.realized_pnl_pct == float(Decimal("-108.63") / Decimal("18000.15") * 100)
    assert trade.exit_reason == "SL_HIT"
    assert trade.side == "SELL"


def test_excess_exit_and_reentry_give_a_new_trade_id() -> None:
    cycle, _ = _cycle("BUY")
    entry = make_order(side="BUY", quantity_ordered=Decimal(10))
    exit_ = make_order(
        side="SELL", order_type="MARKET", quantity_ordered=Decimal(14), exit_reason="TIME_EXIT"
    )
    f_exit = make_fill(exit_, "14", "2", commission=Decimal("1.4"))
    cycle.apply(make_fill(entry, "10", "1"), _fo(entry))
    trade, excess = cycle.apply(f_exit, _fo(exit_))
    assert excess == Decimal(4)
    assert trade is not None
    assert trade.total_commission == Decimal("1")  # 10/14 of the exit fee
    assert trade.realized_pnl == Decimal("9")  # 20 - 10 - 1
    assert trade.exit_reason == "TIME_EXIT"
    cycle.apply(make_fill(entry, "5", "1"), _fo(entry))
    again, _ = cycle.apply(make_fill(exit_, "5", "1.5"), _fo(exit_))
    assert again is not None
    assert again.trade_id != trade.trade_id
    assert again.realized_pnl == Decimal("2.5")


def test_exit_reasons() -> None:
    assert exit_reason_for("STOP_LOSS_LIMIT", None) == "SL_HIT"
    assert exit_reason_for("TAKE_PROFIT", "SIGNAL_EXIT") == "TP_HIT"
    assert exit_reason_for("TRAILING_STOP_LIMIT", None) == "TRAILING_STOP"
    assert exit_reason_for("LIMIT", "RISK_LIMIT") == "RISK_LIMIT"
    assert exit_reason_for("MARKET", None) == "MANUAL_CLOSE"


_qty = st.integers(min_value=1, max_value=10**6).map(lambda n: Decimal(n).scaleb(-4))
_price = st.integers(min_value=1, max_value=10**9).map(lambda n: Decimal(n).scaleb(-6))
_fee = st.integers(min_value=0, max_value=10**4).map(lambda n: Decimal(n).scaleb(-8))


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(["BUY", "SELL"]),
    entries=st.lists(st.tuples(_qty, _price, _fee, st.booleans()), min_size=1, max_size=5),
    exit_prices=st.lists(st.tuples(_price, _fee, st.booleans()), min_size=1, max_size=4),
)
def test_cycle_pnl_is_exact(
    side: str,
    entries: list[tuple[Decimal, Decimal, Decimal, bool]],
    exit_prices: list[tuple[Decimal, Decimal, bool]],
) -> None:
    """Any split of entries and exits: P&L equals the formula computed independently."""
    cycle, _ = _cycle(side)
    other = "SELL" if side == "BUY" else "BUY"
    entry = make_order(side=side, quantity_ordered=Decimal(10**9))
    exit_ = make_order(side=other, order_type="LIMIT", quantity_ordered=Decimal(10**9))
    total = sum((q for q, _p, _f, _b in entries), Decimal(0))
    # Exit quantities: equal parts of the total, the last one takes the remainder.
    parts = [(total / len(exit_prices)).quantize(Decimal("1e-8"))] * (len(exit_prices) - 1)
    parts.append(total - sum(parts, Decimal(0)))
    exits = [(q, p, f, b) for q, (p, f, b) in zip(parts, exit_prices, strict=True) if q > 0]

    def fee_asset(in_base: bool) -> str:
        return "XRP" if in_base else "USD"

    trade = None
    for q, p, f, b in entries:
        trade, _ = cycle.apply(
            make_fill(entry, str(q), str(p), commission=f, commission_asset=fee_asset(b)),
            _fo(entry),
        )
    for q, p, f, b in exits:
        trade, excess = cycle.apply(
            make_fill(exit_, str(q), str(p), commission=f, commission_asset=fee_asset(b)),
            _fo(exit_),
        )
        assert excess == 0
    assert trade is not None
    entry_value = sum((q * p for q, p, _f, _b in entries), Decimal(0))
    exit_value = sum((q * p for q, p, _f, _b in exits), Decimal(0))
    fees = sum((f * p if b else f for q, p, f, b in [*entries, *exits]), Decimal(0))
    direction = 1 if side == "BUY" else -1
    scale = Decimal("1e-18")
    assert trade.quantity == total
    assert trade.realized_pnl == ((exit_value - entry_value) * direction - fees).quantize(scale)
    assert trade.total_commission == fees.quantize(scale)
    assert trade.average_entry_price == (entry_value / total).quantize(scale)
    assert trade.average_exit_price == (exit_value / total).quantize(scale)
