"""Trade cycles derived from fills, with exact P&L.

For one signal, fills on the signal's side are entries and fills on the other
side exits. When exits bring the position back to zero the cycle closes into a
:class:`~galfriday_recorder.records.Trade`:

- ``average_entry_price`` / ``average_exit_price``: volume-weighted, rounded
  half-even to 18 decimals (the column's scale);
- ``total_commission``: in the quote currency; a commission paid in the base
  asset is converted at the price of the fill that paid it;
- ``realized_pnl = (exit_value - entry_value) * direction - total_commission``
  with ``direction`` +1 for BUY and -1 for SELL, exact (rounded half-even to 18
  decimals only if a product has more);
- ``realized_pnl_pct``: a **percentage** (5.0 means +5 %) of the entry value;
- ``exit_reason``: from the last exit order's type (STOP_LOSS* -> SL_HIT,
  TAKE_PROFIT* -> TP_HIT, TRAILING_STOP* -> TRAILING_STOP), else the reason the
  exit order was given, else MANUAL_CLOSE.

``trade_id`` is ``uuid5`` of the signal and the cycle's first entry fill
(``exchange:fill_id``), so a replay, or a ledger restarted mid-cycle, derives the
same id, and a signal that is entered again after closing gets a new one. An
exit larger than the open position closes the cycle with the part that was
needed; the excess is reported back to the caller, who logs it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from ..errors import ValidationError
from ..records import EXACT, Fill, Trade, split_pair

_SCALE = Decimal("1e-18")
_PRECISION = 80
TRADE_NAMESPACE = uuid.UUID("5c0d7a7e-4f0b-4d53-9b8a-6a4c1f2e9d31")


def trade_id_for(signal_id: uuid.UUID, first_fill: str) -> uuid.UUID:
    return uuid.uuid5(TRADE_NAMESPACE, f"{signal_id}:{first_fill}")


def exit_reason_for(order_type: str, given: str | None) -> str:
    if order_type.startswith("STOP_LOSS"):
        return "SL_HIT"
    if order_type.startswith("TAKE_PROFIT"):
        return "TP_HIT"
    if order_type.startswith("TRAILING_STOP"):
        return "TRAILING_STOP"
    return given or "MANUAL_CLOSE"


def quote_commission(fill: Fill) -> Decimal:
    """The fill's commission in the quote currency."""
    base, _quote = split_pair(fill.trading_pair)
    if fill.commission_asset == base:
        return fill.commission * fill.fill_price
    return fill.commission


@dataclasses.dataclass(slots=True)
class FillOrder:
    """What a cycle needs to know about the order behind a fill."""

    client_order_id: uuid.UUID
    order_type: str
    exit_reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Allocation:
    """The part of a fill of an order without a signal that reduced one signal's cycle.

    Stored (``fill_allocations``) in the fill's transaction: a cycle is then rebuilt
    from its signal's own fills and its allocations alone, whatever other cycles of the
    pair did, so a restart or an on-demand load reads one signal's rows, not the pair's
    history, and gets exactly what the ledger derived.
    """

    exchange: str
    fill_id: str
    signal_id: uuid.UUID
    quantity: Decimal


@dataclasses.dataclass(slots=True)
class Cycle:
    """The open position of one signal. Mutable, owned by the ledger under its lock."""

    signal_id: uuid.UUID
    side: str
    trading_pair: str
    exchange: str
    strategy_id: str
    entry_qty: Decimal = Decimal(0)
    entry_value: Decimal = Decimal(0)
    exit_qty: Decimal = Decimal(0)
    exit_value: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)
    entry_at: datetime | None = None
    exit_at: datetime | None = None
    entry_order: uuid.UUID | None = None
    first_fill: str | None = None
    exit_order: FillOrder | None = None
    # Why each trade this cycle closed could not be stored (a number beyond the trades
    # table's NUMERIC(38,18)): the cycle closes all the same, its fills stay stored.
    unstorable: tuple[str, ...] = ()

    @property
    def open_quantity(self) -> Decimal:
        # Exact whatever the caller's context: 38 digits do not fit its default 28.
        return EXACT.subtract(self.entry_qty, self.exit_qty)

    def apply(
        self, fill: Fill, order: FillOrder, available: Decimal | None = None
    ) -> tuple[Trade | None, Decimal]:
        """Add one fill; return the trade it closes (if any) and the exit excess (usually 0).

        ``available``: the part of an exit fill still to place, when one fill is shared
        among cycles (:func:`reduce_cycles`); its commission is shared pro rata.
        """
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            if fill.side == self.side:
                self._enter(fill, order)
                return None, Decimal(0)
            return self._exit(fill, order, fill.quantity_filled if available is None else available)

    def _enter(self, fill: Fill, order: FillOrder) -> None:
        if self.entry_at is None:
            self.entry_at = fill.filled_at
            self.entry_order = order.client_order_id
            self.first_fill = f"{fill.exchange}:{fill.fill_id}"
        self.entry_qty += fill.quantity_filled
        self.entry_value += fill.quantity_filled * fill.fill_price
        self.commission += quote_commission(fill)

    def _exit(
        self, fill: Fill, order: FillOrder, available: Decimal
    ) -> tuple[Trade | None, Decimal]:
        open_qty = self.open_quantity
        if open_qty <= 0:
            return None, available
        qty = min(available, open_qty)
        commission = quote_commission(fill)
        if qty != fill.quantity_filled:  # only the part that closes the position counts
            commission = commission * qty / fill.quantity_filled
        self.exit_qty += qty
        self.exit_value += qty * fill.fill_price
        self.commission += commission
        self.exit_at = fill.filled_at
        self.exit_order = order
        excess = available - qty
        if self.exit_qty < self.entry_qty:
            return None, excess
        trade = self._close()
        return trade, excess

    def _close(self) -> Trade | None:
        direction = 1 if self.side == "BUY" else -1
        pnl = (self.exit_value - self.entry_value) * direction - self.commission
        try:
            trade: Trade | None = self._trade(pnl)
        except ValidationError as exc:
            trade = None
            self.unstorable += (str(exc),)
        self.entry_qty = self.entry_value = self.exit_qty = self.exit_value = Decimal(0)
        self.commission = Decimal(0)
        self.entry_at = self.exit_at = self.entry_order = self.first_fill = self.exit_order = None
        return trade

    def _trade(self, pnl: Decimal) -> Trade:
        assert self.entry_at is not None
        assert self.exit_at is not None
        assert self.exit_order is not None
        assert self.first_fill is not None
        return Trade(
            trade_id=trade_id_for(self.signal_id, self.first_fill),
            signal_id=self.signal_id,
            trading_pair=self.trading_pair,
            exchange=self.exchange,
            strategy_id=self.strategy_id,
            side=self.side,
            entry_client_order_id=self.entry_order,
            exit_client_order_id=self.exit_order.client_order_id,
            entry_timestamp=self.entry_at,
            exit_timestamp=max(self.exit_at, self.entry_at),
            quantity=self.entry_qty,
            average_entry_price=_q(self.entry_value / self.entry_qty),
            average_exit_price=_q(self.exit_value / self.exit_qty),
            total_commission=_q(self.commission),
            realized_pnl=_q(pnl),
            realized_pnl_pct=float(pnl / self.entry_value * 100),
            exit_reason=exit_reason_for(self.exit_order.order_type, self.exit_order.exit_reason),
        )


class OpenCycles:
    """The open cycles by signal, and by exchange and pair (oldest first) for the fills of
    orders without a signal, which must not walk every other pair's cycles."""

    __slots__ = ("_by_pair", "_by_signal")

    def __init__(self) -> None:
        self._by_signal: dict[uuid.UUID, Cycle] = {}
        self._by_pair: dict[tuple[str, str], dict[uuid.UUID, Cycle]] = {}

    def __len__(self) -> int:
        return len(self._by_signal)

    def __contains__(self, signal_id: object) -> bool:
        return signal_id in self._by_signal

    def get(self, signal_id: uuid.UUID) -> Cycle | None:
        return self._by_signal.get(signal_id)

    def add(self, cycle: Cycle) -> Cycle:
        """Keep ``cycle`` unless its signal already has one; return the one kept."""
        kept = self._by_signal.setdefault(cycle.signal_id, cycle)
        if kept is cycle:
            self._by_pair.setdefault((cycle.exchange, cycle.trading_pair), {})[cycle.signal_id] = (
                cycle
            )
        return kept

    def discard(self, cycle: Cycle) -> None:
        if self._by_signal.pop(cycle.signal_id, None) is None:
            return
        key = (cycle.exchange, cycle.trading_pair)
        of_pair = self._by_pair[key]
        del of_pair[cycle.signal_id]
        if not of_pair:
            del self._by_pair[key]

    def put_older(self, cycles: Iterable[Cycle]) -> None:
        """Place ``cycles`` (oldest first) before every cycle held now: they were opened
        before (read from PostgreSQL at a start). One whose signal has a cycle here already
        is left out, but that cycle moves to its place (what memory holds is newer)."""
        held = self._by_signal
        self._by_signal, self._by_pair = {}, {}
        for cycle in cycles:
            self.add(held.get(cycle.signal_id, cycle))
        for cycle in held.values():
            self.add(cycle)

    def of_pair(self, exchange: str, trading_pair: str) -> list[Cycle]:
        of_pair = self._by_pair.get((exchange, trading_pair))
        return [] if of_pair is None else list(of_pair.values())


def reduce_cycles(
    cycles: Iterable[Cycle], fill: Fill, order: FillOrder
) -> tuple[list[tuple[Cycle, Decimal, Trade | None]], Decimal]:
    """A fill of an order without a signal (the bot's ``ClosePositionCommand``, a
    reconciliation): it reduces the open cycles of its pair and exchange that it closes
    (the other side), in the order given (oldest first), each up to its open quantity.

    Returns the cycles touched, each with the quantity it took and the trade it closed,
    and the quantity left over.
    """
    left = fill.quantity_filled
    touched: list[tuple[Cycle, Decimal, Trade | None]] = []
    for cycle in cycles:
        if left <= 0:
            break
        if (
            cycle.side == fill.side
            or cycle.trading_pair != fill.trading_pair
            or cycle.exchange != fill.exchange
            or cycle.open_quantity <= 0
        ):
            continue
        available = left
        trade, left = cycle.apply(fill, order, available=available)
        touched.append((cycle, EXACT.subtract(available, left), trade))
    return touched, left


def _q(value: Decimal) -> Decimal:
    return value.quantize(_SCALE, rounding=ROUND_HALF_EVEN)
