"""Cumulative reports and per-trade fills into one set of fills per order: pure, no server."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from galfriday_recorder.executions import (
    FillDelta,
    OrderFills,
    from_report,
    from_trade,
    report_fill_id,
)

_PLACES = Decimal(1).scaleb(-18)
_qty = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**6), places=8)
_price = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(10**6), places=5)
_fee = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=6)


def test_a_repeated_poll_writes_nothing_twice() -> None:
    held = OrderFills()
    first = from_report(held, "OABC-1", Decimal("2"), Decimal("10"), Decimal("0.04"))
    assert first == FillDelta("rpt:OABC-1:2", Decimal("2"), Decimal("10"), Decimal("0.04"))
    assert from_report(held, "OABC-1", Decimal("2"), Decimal("10"), Decimal("0.04")) is None
    second = from_report(held, "OABC-1", Decimal("5"), Decimal("11.2"), Decimal("0.1"))
    assert second is not None
    assert (second.quantity, second.price, second.commission) == (
        Decimal(3),
        Decimal(12),
        Decimal("0.06"),
    )
    assert second.fill_id == "rpt:OABC-1:5"


def test_a_report_without_price_invents_none() -> None:
    held = OrderFills()
    assert from_report(held, "O", Decimal("1"), None, Decimal("0.1")) is None
    assert held.quantity == 0
    later = from_report(held, "O", Decimal("1"), Decimal("3"), Decimal("0.1"))
    assert later is not None
    assert later.quantity == 1
    assert later.price == 3


def test_trade_fills_covered_by_a_report_are_not_written_again() -> None:
    held = OrderFills()
    assert from_report(held, "O", Decimal("3"), Decimal("2"), Decimal("0.03")) is not None
    assert from_trade(held, "T1", Decimal("1"), Decimal("2"), Decimal("0.01")) is None
    assert from_trade(held, "T2", Decimal("2"), Decimal("2"), Decimal("0.02")) is None
    beyond = from_trade(held, "T3", Decimal("1"), Decimal("4"), Decimal("0.01"))
    assert beyond == FillDelta("T3", Decimal(1), Decimal(4), Decimal("0.01"))
    assert from_trade(held, "T3", Decimal("1"), Decimal("4"), Decimal("0.01")) is None
    # The report of the whole order after its trades adds nothing.
    assert from_report(held, "O", Decimal("4"), Decimal("2.5"), Decimal("0.04")) is None


def test_a_partly_covered_trade_writes_the_rest_prorated() -> None:
    held = OrderFills()
    assert from_report(held, "O", Decimal("1"), Decimal("2"), Decimal("0")) is not None
    rest = from_trade(held, "T", Decimal("4"), Decimal("3"), Decimal("0.4"))
    assert rest == FillDelta("T", Decimal(3), Decimal(3), Decimal("0.3"))


def test_fill_ids_are_bounded_and_deterministic() -> None:
    long_key = "x" * 80
    fid = report_fill_id(long_key, Decimal("1.5"))
    assert len(fid) <= 64
    assert fid == report_fill_id(long_key, Decimal("1.50"))
    assert report_fill_id("O", Decimal("1.50")) == "rpt:O:1.5"
    assert report_fill_id("O", Decimal("1E+2")) == "rpt:O:100"


@given(
    trades=st.lists(st.tuples(_qty, _price, _fee), min_size=1, max_size=8),
    data=st.data(),
)
def test_any_interleaving_records_each_execution_once(
    trades: list[tuple[Decimal, Decimal, Decimal]], data: st.DataObject
) -> None:
    """Trades in exchange order, reports of any prefix in any order and repeated, any mix:
    the order ends holding exactly the executed quantity, its value and commission."""
    prefixes = []
    qty = value = fee = Decimal(0)
    for q, p, f in trades:
        qty, value, fee = qty + q, value + q * p, fee + f
        prefixes.append((qty, (value / qty).quantize(_PLACES), fee))
    reports = data.draw(st.lists(st.sampled_from(prefixes), max_size=12))
    reports.append(prefixes[-1])  # the final report always comes (the poll sees it)
    events: list[tuple[str, int]] = [("trade", i) for i in range(len(trades))]
    for j in range(len(reports)):
        events.insert(data.draw(st.integers(0, len(events))), ("report", j))
    # Trades keep their exchange order among themselves.
    order = iter(range(len(trades)))
    events = [("trade", next(order)) if kind == "trade" else (kind, i) for kind, i in events]
    held = OrderFills()
    written: list[FillDelta] = []
    for kind, i in events:
        if kind == "trade":
            q, p, f = trades[i]
            delta = from_trade(held, f"T{i}", q, p, f)
        else:
            c, avg, cf = reports[i]
            delta = from_report(held, "O", c, avg, cf)
        if delta is not None:
            written.append(delta)
    assert sum(d.quantity for d in written) == qty
    assert len({d.fill_id for d in written}) == len(written)
    assert all(d.quantity > 0 and d.price > 0 and d.commission >= 0 for d in written)
    assert abs(sum(d.quantity * d.price for d in written) - value) <= qty * Decimal("1e-15")
    assert abs(sum(d.commission for d in written) - fee) <= Decimal("1e-15")
