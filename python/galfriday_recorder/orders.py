"""The bot's orders into the ledger: execution reports, per-trade fills, and fills that come first.

Gal-Friday does not record orders; it publishes what the exchange says about
them. :class:`OrderDesk` turns that into the ledger's calls: the first report of
an order records it, each report's cumulative figures become fills (see
:mod:`.executions`), its status moves the order's state machine, and a
per-trade fill whose order is not known yet waits (*parked*) until a report
names that order, or is refused after ``orphan_fill_timeout_s``.

The bot's quirks, decided here (the README's "Gal-Friday's quirks" lists them):

- placeholder exchange ids (``UNKNOWN``, ``NO_EXCHANGE_ID``, empty) are no id;
- a client id the bot reuses for many orders (``HALT_CLOSE``, or none at all)
  gets the exchange id appended, so each order still has its own row;
- a stop-loss or take-profit order reported with its signal's side is an exit:
  it gets the closing side;
- a report with status ``UNKNOWN`` says nothing about the order: with nothing
  filled it is ignored (counted), else only its fills count;
- an order without a signal (``ClosePositionCommand``, reconciliation) closes
  with ``SHUTDOWN`` after a close command for its pair, else ``MANUAL_CLOSE``.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson

from . import vocabulary as vocab
from .executions import FillDelta, OrderFills, from_report, from_trade
from .records import Fill, Order, Signal, client_order_uuid, dumps, utcnow

PLACEHOLDER_EXCHANGE_IDS = frozenset({"", "UNKNOWN", "NO_EXCHANGE_ID", "NONE"})
SHARED_CLIENT_IDS = frozenset({"", "HALT_CLOSE"})
_EXIT_TYPES = ("STOP_LOSS", "TAKE_PROFIT")
_OPPOSITE = {"BUY": "SELL", "SELL": "BUY"}
# Orders whose totals stay in memory (least recently reported go first; the ledger
# still holds their quantity, value and commission).
_KEEP_ORDERS = 100_000
# The ledger's transitions, for telling a stale poll from a change (imported lazily).
_Transitions = dict[str, frozenset[str]]


class OrderLedger(Protocol):
    """What the desk needs of the ledger."""

    def record_order(self, order: Order) -> None: ...
    def record_fill(self, fill: Fill) -> None: ...
    def update_order(
        self,
        client_order_id: uuid.UUID,
        status: str,
        *,
        exchange_order_id: str | None = None,
        submitted_at: datetime | None = None,
        error_message: str | None = None,
        updated_at: datetime | None = None,
    ) -> None: ...
    def order_view(self, client_order_id: uuid.UUID) -> tuple[Order, str, OrderFills] | None: ...
    def order_by_exchange_id(self, exchange_order_id: str) -> uuid.UUID | None: ...
    def signal_view(self, signal_id: uuid.UUID) -> Signal | None: ...
    def park(self, fill_key: str, exchange_order_id: str, payload: bytes) -> None: ...
    def unpark(self, fill_keys: list[str]) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class TradeFill:
    """One execution as the bot's ``FillEvent`` gives it (Kraken's trade id, no asset)."""

    exchange_order_id: str
    fill_id: str
    trading_pair: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    commission_asset: str
    filled_at: datetime

    @property
    def key(self) -> str:
        return f"{self.exchange_order_id}:{self.fill_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class Parked:
    fill: TradeFill
    deadline: float  # time.monotonic()


class OrderDesk:
    """Per-order totals, parked fills and pending close commands; thread-safe."""

    def __init__(
        self, ledger: OrderLedger, exchange: str, orphan_timeout_s: float, transitions: _Transitions
    ) -> None:
        self._ledger = ledger
        self._exchange = exchange
        self._orphan_timeout_s = orphan_timeout_s
        self._transitions = transitions
        self._lock = threading.Lock()
        self._fills: collections.OrderedDict[uuid.UUID, OrderFills] = collections.OrderedDict()
        self._parked: dict[str, list[Parked]] = {}
        self._closes: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()

    # -- calls ----------------------------------------------------------------------

    def report(
        self,
        *,
        exchange_order_id: str | None,
        trading_pair: str,
        order_status: str,
        order_type: str,
        side: str,
        quantity_ordered: Any,
        client_order_id: str | uuid.UUID | None = None,
        signal_id: uuid.UUID | str | None = None,
        quantity_filled: Any = 0,
        average_fill_price: Any = None,
        limit_price: Any = None,
        stop_price: Any = None,
        commission: Any = None,
        commission_asset: str | None = None,
        timestamp: Any = None,
        error_message: str | None = None,
        exchange: str | None = None,
    ) -> None:
        """One cumulative execution report, in the bot's words (see the module docstring)."""
        filled = vocab.optional_decimal("quantity_filled", quantity_filled) or Decimal(0)
        if vocab.is_unknown(order_status) and filled == 0:
            self.counts["reports_ignored"] += 1
            return
        status = (
            None if vocab.is_unknown(order_status) else vocab.order_status(order_status, filled)
        )
        eid = _exchange_id(exchange_order_id)
        at = utcnow() if timestamp is None else vocab.timestamp("timestamp", timestamp)
        price = vocab.optional_decimal("average_fill_price", average_fill_price)
        fee = vocab.optional_decimal("commission", commission)
        asset = vocab.commission_asset(commission_asset, trading_pair)
        with self._lock:
            self.counts["reports"] += 1
            view = self._find(client_order_id, eid)
            if view is None:
                if status is None:  # an UNKNOWN report of an order never seen: nothing to hang on
                    self.counts["reports_ignored"] += 1
                    return
                order = self._new_order(
                    ref=_client_ref(client_order_id, eid),
                    eid=eid,
                    trading_pair=trading_pair,
                    exchange=exchange or self._exchange,
                    side=vocab.side(side),
                    order_type=vocab.order_type(order_type),
                    quantity_ordered=vocab.decimal("quantity_ordered", quantity_ordered),
                    limit_price=vocab.optional_decimal("limit_price", limit_price),
                    stop_price=vocab.optional_decimal("stop_price", stop_price),
                    signal_id=None if signal_id is None else vocab.uuid_of("signal_id", signal_id),
                    status=status if filled == 0 else "NEW",
                    error_message=error_message,
                    created_at=at,
                )
            else:
                order = view[0]
            # Fills that came first are older than this report: they go in first.
            if eid is not None and eid in self._parked:
                waiting = self._parked.pop(eid)
                for parked in waiting:
                    self._trade(order, parked.fill)
                self._ledger.unpark([p.fill.key for p in waiting])
            key = eid or order.exchange_order_id or str(order.client_order_id)
            self._record(
                order,
                lambda held: from_report(held, key, filled, price, fee),
                asset,
                at,
                "report_fills",
                eid,
            )
            if status is not None:
                self._status(order, status, eid, error_message, at)

    def trade_fill(self, fill: TradeFill) -> None:
        """A per-trade fill; parked when its order is not known yet."""
        with self._lock:
            cid = self._ledger.order_by_exchange_id(fill.exchange_order_id)
            view = None if cid is None else self._ledger.order_view(cid)
            if view is None:
                self._ledger.park(fill.key, fill.exchange_order_id, dumps(fill))
                self._park(fill, time.monotonic() + self._orphan_timeout_s)
                return
            self._trade(view[0], fill)

    def restore(self, parked: list[tuple[str, str, bytes, float]]) -> None:
        """Fills journaled as waiting before a restart wait again, for what is left of
        their time (or go at the next sweep)."""
        now, wall = time.monotonic(), time.time()
        with self._lock:
            for _key, _eid, payload, parked_at in parked:
                fill = TradeFill(**_fill_fields(orjson.loads(payload)))
                self._park(fill, now + max(parked_at + self._orphan_timeout_s - wall, 0.0))

    def _park(self, fill: TradeFill, deadline: float) -> None:
        self._parked.setdefault(fill.exchange_order_id, []).append(Parked(fill, deadline))
        self.counts["fills_parked"] += 1

    def close_position(self, trading_pair: str) -> None:
        """A close command for a pair: its next signal-less order exits with ``SHUTDOWN``."""
        with self._lock:
            self._closes[trading_pair] += 1

    def expired(self, now: float | None = None) -> list[TradeFill]:
        """Parked fills past their deadline, taken out (the caller refuses them)."""
        now = time.monotonic() if now is None else now
        out: list[TradeFill] = []
        with self._lock:
            for eid in list(self._parked):
                keep = [p for p in self._parked[eid] if p.deadline > now]
                out.extend(p.fill for p in self._parked[eid] if p.deadline <= now)
                if keep:
                    self._parked[eid] = keep
                else:
                    del self._parked[eid]
            self.counts["fills_expired"] += len(out)
        self._ledger.unpark([fill.key for fill in out])
        return out

    def parked(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._parked.values())

    # -- under the lock -------------------------------------------------------------

    def _find(
        self, client_order_id: str | uuid.UUID | None, eid: str | None
    ) -> tuple[Order, str, OrderFills] | None:
        if eid is not None:
            cid = self._ledger.order_by_exchange_id(eid)
            if cid is not None:
                return self._ledger.order_view(cid)
        ref = _client_ref(client_order_id, eid)
        return None if ref is None else self._ledger.order_view(client_order_uuid(ref))

    def _new_order(self, *, ref: str | None, signal_id: uuid.UUID | None, **fields: Any) -> Order:
        signal = None if signal_id is None else self._ledger.signal_view(signal_id)
        side, order_type = fields["side"], fields["order_type"]
        if signal is not None and order_type.startswith(_EXIT_TYPES) and side == signal.side:
            fields["side"] = _OPPOSITE[side]  # the bot's SL/TP report carries the entry side
            self.counts["exit_sides_corrected"] += 1
        exit_reason = None
        if signal_id is None:
            pair = fields["trading_pair"]
            exit_reason = "SHUTDOWN" if self._closes[pair] > 0 else "MANUAL_CLOSE"
            if self._closes[pair] > 0:
                self._closes[pair] -= 1
        eid = fields.pop("eid")
        order = Order(
            client_order_ref=ref,
            client_order_id=uuid.uuid4() if ref is None else client_order_uuid(ref),
            exchange_order_id=eid,
            signal_id=signal_id,
            exit_reason=exit_reason,
            **fields,
        )
        self._ledger.record_order(order)
        self.counts["orders"] += 1
        return order

    def _record(
        self,
        order: Order,
        step: Any,
        asset: str,
        at: datetime,
        counter: str,
        eid: str | None = None,
    ) -> bool:
        """Apply ``step`` to a copy of the order's totals; keep it once the ledger took the fill."""
        held = self._fills.get(order.client_order_id)
        if held is None:  # first seen here (or before a restart): what the ledger holds
            view = self._ledger.order_view(order.client_order_id)
            held = OrderFills() if view is None else view[2]
        trial = held.copy()
        delta: FillDelta | None = step(trial)
        if delta is not None:
            self._ledger.record_fill(
                Fill(
                    client_order_id=order.client_order_id,
                    exchange_order_id=eid,
                    fill_id=delta.fill_id,
                    trading_pair=order.trading_pair,
                    exchange=order.exchange,
                    side=order.side,
                    quantity_filled=delta.quantity,
                    fill_price=delta.price,
                    commission=delta.commission,
                    commission_asset=asset,
                    filled_at=at,
                )
            )
            self.counts[counter] += 1
        self._fills[order.client_order_id] = trial
        self._fills.move_to_end(order.client_order_id)
        if len(self._fills) > _KEEP_ORDERS:
            self._fills.popitem(last=False)
        return delta is not None

    def _trade(self, order: Order, fill: TradeFill) -> None:
        if not self._record(
            order,
            lambda held: from_trade(held, fill.fill_id, fill.quantity, fill.price, fill.fee),
            fill.commission_asset,
            fill.filled_at,
            "trade_fills",
            fill.exchange_order_id,
        ):
            self.counts["trade_fills_covered"] += 1

    def _status(
        self, order: Order, status: str, eid: str | None, error: str | None, at: datetime
    ) -> None:
        view = self._ledger.order_view(order.client_order_id)
        current = status if view is None else view[1]
        if status == current or status not in self._transitions[current]:
            self.counts["reports_unchanged" if status == current else "reports_stale"] += 1
            return
        self._ledger.update_order(
            order.client_order_id,
            status,
            exchange_order_id=eid,
            error_message=error or None,
            updated_at=at,
        )


def _fill_fields(p: dict[str, Any]) -> dict[str, Any]:
    return {
        **p,
        "price": Decimal(p["price"]),
        "quantity": Decimal(p["quantity"]),
        "fee": Decimal(p["fee"]),
        "filled_at": datetime.fromisoformat(p["filled_at"]),
    }


def _exchange_id(value: str | None) -> str | None:
    return None if value is None or value.strip().upper() in PLACEHOLDER_EXCHANGE_IDS else value


def _client_ref(client_order_id: str | uuid.UUID | None, eid: str | None) -> str | None:
    """The order's own string id; a shared one (or none) is made unique by the exchange id."""
    if isinstance(client_order_id, uuid.UUID):
        return str(client_order_id)
    shared = client_order_id is None or client_order_id.strip().upper() in SHARED_CLIENT_IDS
    if not shared:
        return client_order_id
    if eid is None:
        return None
    return f"{client_order_id or 'exchange'}:{eid}"


__all__ = ["OrderDesk", "TradeFill"]
