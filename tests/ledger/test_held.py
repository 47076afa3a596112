"""Held-event keys and their resolution, as pure code (no server)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from ledgerkit import make_fill, make_order, make_signal

from galfriday_recorder.errors import IllegalTransition
from galfriday_recorder.ledger.held import (
    Held,
    apply_held,
    fill_keys,
    missing_signal,
    order_keys,
)
from galfriday_recorder.ledger.journal import encode_event
from galfriday_recorder.ledger.state import LedgerState, Out
from galfriday_recorder.records import OrderUpdate


def _held_payload(call: str, record: object, keys: list[str]) -> dict[str, object]:
    _kind, payload = encode_event("held", (record, {"held": call, "held_keys": keys}))
    held: dict[str, object] = orjson.loads(payload)
    del held["held"], held["held_keys"]
    return held


def test_keys_name_the_order_by_both_ids_and_a_fill_its_signal_and_pair() -> None:
    state = LedgerState()
    signal = make_signal()
    order = make_order(signal, exchange_order_id="E-9")
    state.record_signal(signal, [])
    state.record_order(order, [])
    order_state = state.orders[order.client_order_id]
    cid = order.client_order_id
    assert order_keys(cid, None, None) == [f"o:{cid}"]
    assert order_keys(None, "E-9", order_state) == sorted([f"o:{cid}", "x:E-9"])
    fill = make_fill(order, "1", "1", client_order_id=None, exchange_order_id="E-9")
    assert fill_keys(fill, order_state) == [
        f"o:{cid}",
        "x:E-9",
        f"s:{signal.signal_id}",
        "p:kraken:XRP/USD",
    ]
    assert fill_keys(fill, None) == ["x:E-9", "p:kraken:XRP/USD"]


def test_held_counts_keys_until_each_is_released() -> None:
    held = Held()
    held.hold(["o:1", "s:a"])
    held.hold(["o:2", "s:a"])
    assert held.blocks(["s:a"])
    assert held.blocks(["o:2", "o:3"])
    assert not held.blocks(["o:3"])
    held.release(["o:1", "s:a"])
    assert held.blocks(["s:a"])  # the second still waits
    assert not held.blocks(["o:1"])
    held.release(["o:2", "s:a"])
    assert not held.keys
    assert held.pending == 0


def test_resolution_skips_what_is_applied_and_refuses_what_is_illegal() -> None:
    state = LedgerState()
    signal = make_signal()
    order = make_order(signal, quantity_ordered=Decimal(10))
    state.record_signal(signal, [])
    state.record_order(order, [])
    stored = make_fill(order, "4", "1")
    fresh = make_fill(order, "6", "1")
    out: Out = []
    apply_held(state, "fill", _held_payload("fill", stored, []), {("kraken", stored.fill_id)}, out)
    assert out == []  # PostgreSQL has it: nothing
    apply_held(state, "fill", _held_payload("fill", fresh, []), set(), out)
    assert [kind for kind, _ in out] == ["fill"]
    same = OrderUpdate(client_order_id=order.client_order_id, status="PARTIALLY_FILLED")
    out = []
    apply_held(state, "order_update", _held_payload("order_update", same, []), set(), out)
    assert out == []  # the status it already has
    back = OrderUpdate(client_order_id=order.client_order_id, status="PENDING_NEW")
    with pytest.raises(IllegalTransition):
        apply_held(state, "order_update", _held_payload("order_update", back, []), set(), out)
    assert [kind for kind, _ in out] == ["log"]


def test_a_fill_whose_signal_memory_lacks_names_it_and_joins_no_cycle_if_never_found() -> None:
    state = LedgerState()
    state.loaded = True
    order = make_order(make_signal(), quantity_ordered=Decimal(10))  # its signal: elsewhere
    state.record_order(order, [])
    fill = make_fill(order, "10", "1")
    payload = _held_payload("fill", fill, [])
    assert missing_signal(state, "fill", payload) == order.signal_id
    assert missing_signal(state, "fill", {**payload, "client_order_id": str(uuid.uuid4())}) is None
    out: Out = []
    apply_held(state, "fill", payload, set(), out)
    assert [kind for kind, _ in out] == ["fill"]
    assert len(state.cycles) == 0
