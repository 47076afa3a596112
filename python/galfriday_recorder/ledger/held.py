"""Held events: calls the ledger cannot validate until PostgreSQL's state is read.

A fill or status update for an order or signal that only PostgreSQL knows (a
start while it is down) is *held*: journaled as it comes, and validated by the
committer, in journal order, once the state is in. Later calls about the same
order or signal are held too (by key: ``o:``/``x:`` + the order's client and
exchange ids, ``s:`` + the signal id, which a fill names too: its signal's cycle takes
fills in order; ``p:`` + exchange and pair, which every fill names: a fill of an order
without a signal reduces the pair's cycles as they stand when it comes), so they apply
in the order they came. Such a fill is held until PostgreSQL's state is read, since
the open cycles it reduces are PostgreSQL's. A fill whose order is known
but whose signal is not in memory is held too, whether PostgreSQL has been read or
not: its cycle is rebuilt from PostgreSQL's fills before it applies; so is a status
update for a signal memory lacks (decided before a restart, or forgotten past the
cap): the signal is read from PostgreSQL first. A
held event refused at validation becomes a dead letter and a ``system_logs``
row, since its caller has returned.
"""

from __future__ import annotations

import collections
import uuid
from typing import Any

from ..errors import ValidationError
from ..records import Fill, LogEntry, OrderUpdate, SignalStatusUpdate
from .state import FILL_FIELDS, SOURCE, LedgerState, OrderState, Out


class Held:
    """The keys of held events not yet resolved, and their count."""

    __slots__ = ("keys", "pending")

    def __init__(self) -> None:
        self.keys: collections.Counter[str] = collections.Counter()
        self.pending = 0

    def blocks(self, keys: list[str]) -> bool:
        """Whether a call about ``keys`` must wait behind a held one."""
        return any(key in self.keys for key in keys)

    def hold(self, keys: list[str]) -> None:
        self.keys.update(keys)
        self.pending += 1

    def release(self, keys: list[str]) -> None:
        self.keys.subtract(keys)
        for key in keys:
            if self.keys[key] <= 0:
                del self.keys[key]
        self.pending -= 1


def order_keys(
    client_order_id: uuid.UUID | None, exchange_order_id: str | None, state: OrderState | None
) -> list[str]:
    """The held-event keys that name one order: both its ids, as far as they are known."""
    keys = {f"o:{client_order_id}"} if client_order_id is not None else set()
    if exchange_order_id is not None:
        keys.add(f"x:{exchange_order_id}")
    if state is not None:
        keys.add(f"o:{state.order.client_order_id}")
        if state.exchange_order_id is not None:
            keys.add(f"x:{state.exchange_order_id}")
    return sorted(keys)


def fill_keys(fill: Fill, state: OrderState | None) -> list[str]:
    """A fill's keys: its order's; its signal's, whose cycle takes fills in order; and its
    pair's, whose open cycles a fill of an order without a signal reduces as they stand
    when it comes (a later entry must not be there yet, an earlier one must)."""
    keys = order_keys(fill.client_order_id, fill.exchange_order_id, state)
    if state is not None and state.order.signal_id is not None:
        keys.append(f"s:{state.order.signal_id}")
    keys.append(f"p:{fill.exchange}:{fill.trading_pair}")
    return keys


def apply_held(
    state: LedgerState, call: str, held: dict[str, Any], stored: set[tuple[str, str]], out: Out
) -> None:
    """Validate a held call now that PostgreSQL's state is in; one already applied (a fill
    in ``stored``, a status the order or signal already has) causes nothing."""
    if call == "fill":
        fill = Fill(**{name: held[name] for name in FILL_FIELDS})
        if (fill.exchange, fill.fill_id) not in stored:  # a signal PostgreSQL lacks: no cycle
            state.fill(fill, out, need_signal=False)
    elif call == "order_update":
        update = OrderUpdate(**held)
        order = state.orders.get(update.client_order_id)
        if order is None or order.status != update.status:
            state.order_update(update, out)
    elif call == "signal_status":
        status = SignalStatusUpdate(**held)
        signal = state.signals.get(status.signal_id)
        if signal is None or signal.status != status.status:
            state.signal_status(status, out, may_load=False)
    else:
        raise ValidationError("held", f"unknown held call {call!r}")


def missing_signal(state: LedgerState, call: str, held: dict[str, Any]) -> uuid.UUID | None:
    """The signal a held call needs if memory does not hold it: a status update's, or the
    signal of a fill's known order."""
    if call == "signal_status":
        sid: uuid.UUID | None = uuid.UUID(held["signal_id"])
    elif call == "fill":
        cid = held["client_order_id"]
        order = state.orders.get(uuid.UUID(cid)) if cid else None
        if order is None and held["exchange_order_id"]:
            known = state.by_exchange_id.get(held["exchange_order_id"])
            order = state.orders.get(known) if known else None
        sid = order.order.signal_id if order is not None else None
    else:
        return None
    return sid if sid is not None and sid not in state.signals else None


def held_refusal(seq: int, call: str, exc: Exception) -> LogEntry:
    return LogEntry(
        source_module=SOURCE,
        log_level="ERROR",
        message=f"held {call} (ledger event {seq}) refused once PostgreSQL's state was read: "
        f"{type(exc).__name__}: {exc}"[:2000],
        context={"journal_seq": seq, "call": call},
    )
