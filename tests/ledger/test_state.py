"""The state machines and cycle derivation as pure code: no server, no thread, no queue."""

from __future__ import annotations

import itertools
import uuid
from decimal import Context, Decimal, localcontext
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledgerkit import make_fill, make_order, make_signal

from galfriday_recorder.errors import IllegalTransition, UnknownOrder, ValidationError
from galfriday_recorder.ledger.cycles import trade_id_for
from galfriday_recorder.ledger.journal import encode_event
from galfriday_recorder.ledger.state import (
    ORDER_TRANSITIONS,
    SIGNAL_TRANSITIONS,
    TERMINAL,
    LedgerState,
    Out,
    SignalNotLoaded,
)
from galfriday_recorder.records import (
    ORDER_STATUSES,
    SIGNAL_STATUSES,
    Fill,
    LogEntry,
    Order,
    OrderUpdate,
    Signal,
    SignalStatusUpdate,
    Trade,
)


def _order_allowed(old: str, new: str) -> bool:
    """The README's order rules, written out independently of the table under test."""
    if old == "PENDING_NEW":
        return True
    if old in TERMINAL:
        return new == old
    if new == "PENDING_NEW":
        return False
    if new == "REJECTED":
        return old == "NEW"
    if new == "NEW":
        return old in ("NEW", "PENDING_CANCEL")
    if new == "PENDING_CANCEL":
        return old in ("NEW", "PARTIALLY_FILLED", "PENDING_CANCEL")
    return True  # PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED from any live status


def _kinds(out: Out) -> list[str]:
    return [kind for kind, _event in out]


def _opened(state: LedgerState, **signal: Any) -> tuple[Signal, Order]:
    sig = make_signal(**signal)
    order = make_order(sig, quantity_ordered=Decimal(10))
    out: Out = []
    state.record_signal(sig, out)
    state.record_order(order, out)
    assert _kinds(out) == ["signal", "order"]
    return sig, order


def _fill(state: LedgerState, fill: Fill) -> Out:
    out: Out = []
    state.fill(fill, out)
    return out


# Quantities and prices weighted toward the ends of NUMERIC(38,18): a 28-digit (or lowered)
# context would round their sums.
_TINY, _HUGE = Decimal("1e-18"), Decimal("99999999999999999.999999999999999999")
_amount = st.one_of(
    st.sampled_from([_TINY, Decimal(1), _HUGE, Decimal("0.000000000000000003")]),
    st.decimals(min_value=_TINY, max_value=_HUGE, places=18),
)


@given(
    fills=st.lists(
        st.tuples(_amount, _amount, st.one_of(st.just(Decimal(0)), _amount)),
        min_size=1,
        max_size=8,
    ),
    complete=st.booleans(),
    seed_at=st.integers(0, 8),
)
def test_order_totals_are_the_exact_sums_of_its_fills(
    fills: list[tuple[Decimal, Decimal, Decimal]], complete: bool, seed_at: int
) -> None:
    """Filled quantity, value and commission stay exact in a caller's 6-digit context, also
    after a seed took the filled quantity from PostgreSQL (there 0.5 more than the fills
    memory holds, so that the two sums are told apart)."""
    seeded = Fraction(1, 2) if seed_at < len(fills) else Fraction(0)
    quantity = sum((Fraction(q) for q, _p, _c in fills), seeded)
    exact = Context(prec=80)
    ordered = exact.divide(quantity.numerator, quantity.denominator)  # a power of 10: exact
    ordered = ordered if complete else exact.add(ordered, _TINY)
    state = LedgerState()
    order = make_order(quantity_ordered=ordered)
    state.record_order(order, [])
    held = state.orders[order.client_order_id]
    sums = [Fraction(0)] * 3
    statuses = []
    with localcontext(Context(prec=6)):
        for i, (q, p, c) in enumerate(fills):
            if i == seed_at:  # what seed() does with the order's stored quantity_filled
                held.filled = exact.add(held.filled, Decimal("0.5"))
            out = _fill(state, make_fill(order, str(q), str(p), commission=c))
            statuses.append(out[0][1][1]["order_status"])
            for j, term in enumerate((Fraction(q), Fraction(q) * Fraction(p), Fraction(c))):
                sums[j] += term
    totals = held.totals
    assert Fraction(held.filled) == quantity
    assert (Fraction(totals.quantity), Fraction(totals.value)) == (sums[0], sums[1])
    assert Fraction(totals.commission) == sums[2]
    partial = ["PARTIALLY_FILLED"] * (len(fills) - 1)
    assert statuses == [*partial, "FILLED" if complete else "PARTIALLY_FILLED"]
    assert held.status == statuses[-1]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(ORDER_STATUSES, repeat=2)))
def test_order_transition_table(old: str, new: str) -> None:
    assert (new in ORDER_TRANSITIONS[old]) == _order_allowed(old, new)
    state = LedgerState()
    order = make_order(status=old)
    state.record_order(order, [])
    out: Out = []
    update = OrderUpdate(client_order_id=order.client_order_id, status=new)
    if _order_allowed(old, new):
        state.order_update(update, out)
        assert out == [("order_update", update)]
        assert state.orders[order.client_order_id].status == new
    else:
        with pytest.raises(IllegalTransition):
            state.order_update(update, out)
        # Refused: a log row says so, the order is unchanged.
        assert _kinds(out) == ["log"]
        assert state.orders[order.client_order_id].status == old


@pytest.mark.parametrize(("old", "new"), list(itertools.product(SIGNAL_STATUSES, repeat=2)))
def test_signal_transition_table(old: str, new: str) -> None:
    allowed = old == new or old == "PROPOSED"
    assert (new in SIGNAL_TRANSITIONS[old]) == allowed
    state = LedgerState()
    extra = {"rejection_reason": "risk"} if old == "REJECTED" else {}
    signal = make_signal(status=old, **extra)
    state.record_signal(signal, [])
    update = SignalStatusUpdate(
        signal_id=signal.signal_id,
        status=new,
        rejection_reason="risk" if new == "REJECTED" else None,
    )
    out: Out = []
    if allowed:
        state.signal_status(update, out)
        assert out == [("signal_status", update)]
    else:
        with pytest.raises(IllegalTransition):
            state.signal_status(update, out)
        assert _kinds(out) == ["log"]
        assert state.signals[signal.signal_id].status == old


def test_duplicates_and_unknowns_are_refused_before_any_change() -> None:
    state = LedgerState()
    signal, order = _opened(state)
    with pytest.raises(ValidationError, match="already recorded"):
        state.record_signal(signal, [])
    with pytest.raises(ValidationError, match="already recorded"):
        state.record_order(order, [])
    verdict = SignalStatusUpdate(signal_id=uuid.uuid4(), status="APPROVED")
    with pytest.raises(SignalNotLoaded):  # the ledger reads it from PostgreSQL, then...
        state.signal_status(verdict, [])
    with pytest.raises(ValidationError, match="unknown signal"):  # ...refuses it if not there
        state.signal_status(verdict, [], may_load=False)
    with pytest.raises(UnknownOrder):
        state.order_update(OrderUpdate(client_order_id=uuid.uuid4(), status="NEW"), [])
    with pytest.raises(UnknownOrder):
        state.fill(make_fill(make_order(), "1", "1"), [])
    state.order_update(
        OrderUpdate(client_order_id=order.client_order_id, status="NEW", exchange_order_id="E1"),
        [],
    )
    other = make_order(signal)
    state.record_order(other, [])
    taken = OrderUpdate(client_order_id=other.client_order_id, status="NEW", exchange_order_id="E1")
    with pytest.raises(ValidationError, match="conflicts"):
        state.order_update(taken, [])
    with pytest.raises(ValidationError, match="not the exchange id"):
        state.fill(make_fill(order, "1", "1", exchange_order_id="E2"), [])


def test_fill_rules() -> None:
    state = LedgerState()
    _signal, order = _opened(state)
    first = make_fill(order, "4", "1")
    out = _fill(state, first)
    assert _kinds(out) == ["fill"]
    _record, extra = out[0][1]
    assert extra["order_status"] == "PARTIALLY_FILLED"
    assert _fill(state, first) == []  # the same fill again: ignored, counted
    assert state.duplicates == 1
    with pytest.raises(ValidationError, match="more than the order's"):
        state.fill(make_fill(order, "7", "1"), [])
    with pytest.raises(ValidationError) as info:
        state.fill(make_fill(order, "1", "1", side="SELL"), [])
    assert info.value.field == "side"
    assert state.orders[order.client_order_id].filled == Decimal(4)
    out = _fill(state, make_fill(order, "6", "1"))
    assert out[0][1][1]["order_status"] == "FILLED"
    rejected = make_order(quantity_ordered=Decimal(1))
    state.record_order(rejected, [])
    state.order_update(OrderUpdate(client_order_id=rejected.client_order_id, status="REJECTED"), [])
    out = []
    with pytest.raises(IllegalTransition, match="REJECTED"):
        state.fill(make_fill(rejected, "1", "1"), out)
    assert _kinds(out) == ["log"]


def test_a_fill_after_a_cancel_keeps_the_terminal_status() -> None:
    state = LedgerState()
    _signal, order = _opened(state)
    state.order_update(OrderUpdate(client_order_id=order.client_order_id, status="CANCELED"), [])
    out = _fill(state, make_fill(order, "2", "1"))
    assert out[0][1][1]["order_status"] == "CANCELED"


def test_a_closing_fill_emits_its_trade_with_it() -> None:
    state = LedgerState()
    signal, entry = _opened(state)
    first = make_fill(entry, "10", "2", commission=Decimal("0.1"))
    _fill(state, first)
    exit_ = make_order(signal, side="SELL", order_type="TAKE_PROFIT", quantity_ordered=Decimal(12))
    state.record_order(exit_, [])
    out = _fill(state, make_fill(exit_, "12", "3", commission=Decimal("0.2")))
    assert _kinds(out) == ["fill", "derived_trade", "log"]  # the excess of 2 is said
    trade = out[1][1]
    assert isinstance(trade, Trade)
    assert trade.trade_id == trade_id_for(signal.signal_id, f"kraken:{first.fill_id}")
    # 10 x (3 - 2) - 0.1 - 0.2 x 10/12 (the exit fee counts for the part that closes)
    assert trade.realized_pnl == Decimal("9.733333333333333333")
    assert trade.exit_reason == "TP_HIT"
    log = out[2][1]
    assert isinstance(log, LogEntry)
    assert "exceeds the open position" in log.message
    assert signal.signal_id not in state.cycles


@given(
    entries=st.lists(st.integers(1, 1000), min_size=1, max_size=6),
    cut=st.integers(0, 6),
    price=st.integers(1, 10_000),
)
def test_one_trade_per_closed_cycle_whatever_the_split(
    entries: list[int], cut: int, price: int
) -> None:
    """Entries in any lots, exits split anywhere: exactly one trade, at the last exit."""
    state = LedgerState()
    signal, _ = _opened(state)
    total = sum(entries)
    entry = make_order(signal, quantity_ordered=Decimal(total))
    state.record_order(entry, [])
    for lot in entries:
        assert _kinds(_fill(state, make_fill(entry, str(lot), str(price)))) == ["fill"]
    exits = [total] if cut == 0 or total < 2 else [total // 2, total - total // 2]
    exit_ = make_order(signal, side="SELL", quantity_ordered=Decimal(total))
    state.record_order(exit_, [])
    kinds = [_kinds(_fill(state, make_fill(exit_, str(lot), str(price)))) for lot in exits]
    assert kinds[-1] == ["fill", "derived_trade"]
    assert all(k == ["fill"] for k in kinds[:-1])


def test_replay_applies_without_emitting_and_defers_what_only_postgres_knows() -> None:
    source = LedgerState()
    signal, order = _opened(source)
    out = _fill(source, make_fill(order, "4", "1"))
    replayed = LedgerState()
    replayed.loaded = True
    for kind, event in [("signal", signal), ("order", order), *out]:
        replayed.replay(kind, orjson.loads(encode_event(kind, event)[1]))
    assert replayed.orders[order.client_order_id].filled == Decimal(4)
    cycle = replayed.cycles.get(signal.signal_id)
    assert cycle is not None
    assert cycle.entry_qty == Decimal(4)
    # Not loaded: a fill for an order only PostgreSQL knows waits.
    cold = LedgerState()
    kind, payload = encode_event(*out[0])
    cold.replay(kind, orjson.loads(payload))
    assert len(cold.deferred) == 1


def test_memory_is_bounded_undecided_signals_last_and_forgotten_ones_are_asked_for() -> None:
    state = LedgerState(keep_signals=3, keep_terminal_orders=2)
    state.loaded = True
    proposed = make_signal()
    state.record_signal(proposed, [])
    decided = [make_signal(status="APPROVED") for _ in range(3)]
    orders = []
    for signal in decided:
        state.record_signal(signal, [])
        orders.append(make_order(signal, quantity_ordered=Decimal(1)))
    # Over the cap: the oldest decided signal goes, the older undecided one stays.
    assert set(state.signals) == {proposed.signal_id, decided[1].signal_id, decided[2].signal_id}
    # A new order of the forgotten signal: its fill needs the signal read back first.
    state.record_order(orders[0], [])
    with pytest.raises(SignalNotLoaded) as info:
        state.fill(make_fill(orders[0], "1", "1"), [])
    assert info.value.signal_id == decided[0].signal_id
    assert state.orders[orders[0].client_order_id].filled == 0  # nothing changed
    for order in orders[1:]:
        state.record_order(order, [])
        state.fill(make_fill(order, "1", "1"), [])  # FILLED: finished
    state.order_update(
        OrderUpdate(client_order_id=orders[0].client_order_id, status="CANCELED"), []
    )
    assert len(state.terminal) == 2
    assert orders[1].client_order_id not in state.orders  # the oldest finished: forgotten
