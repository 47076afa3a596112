"""The order and signal state machines and trade-cycle derivation: events in, events out.

Pure code: no I/O, no queue, no threads, no lock (the ledger holds its own
around every call). A call validates a record against the state, changes the
state and appends the events it causes to ``out`` in journal order: the record's
own event, the trade a fill closes, a ``system_logs`` row for a refused
transition or for an exit larger than the open position. A refused call raises
after appending its log row, which the ledger still journals.
"""

from __future__ import annotations

import collections
import dataclasses
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import IllegalTransition, RecorderError, UnknownOrder, ValidationError
from ..executions import OrderFills
from ..records import (
    ORDER_STATUSES,
    Fill,
    LogEntry,
    Order,
    OrderUpdate,
    Signal,
    SignalStatusUpdate,
    Trade,
    exact_sum,
)
from .cycles import Allocation, Cycle, FillOrder, OpenCycles, reduce_cycles

if TYPE_CHECKING:
    from .recovery import RecoveryState

SOURCE = "galfriday_recorder.ledger"  # system_logs.source_module of what the ledger says
TERMINAL_ORDER_STATUSES = ("FILLED", "CANCELED", "REJECTED", "EXPIRED")

ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "PENDING_NEW": ORDER_STATUSES,  # the exchange may report anything first
    "NEW": frozenset(
        {"NEW", "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "REJECTED", "EXPIRED"}
    ),
    "PARTIALLY_FILLED": frozenset(
        {"PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "EXPIRED"}
    ),
    # A cancel can fail (back to NEW / PARTIALLY_FILLED) or lose the race to a fill.
    "PENDING_CANCEL": frozenset(
        {"PENDING_CANCEL", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"}
    ),
    # Terminal: only a repeated report of the same status.
    "FILLED": frozenset({"FILLED"}),
    "CANCELED": frozenset({"CANCELED"}),
    "REJECTED": frozenset({"REJECTED"}),
    "EXPIRED": frozenset({"EXPIRED"}),
}
SIGNAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "PROPOSED": frozenset({"PROPOSED", "APPROVED", "REJECTED"}),
    "APPROVED": frozenset({"APPROVED"}),
    "REJECTED": frozenset({"REJECTED"}),
}
TERMINAL = frozenset(TERMINAL_ORDER_STATUSES)
# Signals and finished orders kept in memory for the state machines. A signal forgotten
# is read back from PostgreSQL when a fill needs it (see held.py); a finished order only
# takes late reports, which come within minutes, not a thousand orders later. Days of
# the bot's traffic; small enough that a busy process reaches the caps within minutes.
KEEP_SIGNALS = 1_000
KEEP_TERMINAL_ORDERS = 1_000
# Undecided signals are passed over this many times before the oldest goes anyway.
_SECOND_CHANCES = 8
# The trades `trade_view` answers for: the bot asks right after a cycle closes.
KEEP_RECENT_TRADES = 1_000
FILL_FIELDS = tuple(f.name for f in dataclasses.fields(Fill))

# Events a call causes, in journal order: (kind, record) or, for a fill, (kind, (fill, extra)).
Out = list[tuple[str, Any]]


class SignalState:
    __slots__ = ("signal", "status")

    def __init__(self, signal: Signal, status: str) -> None:
        self.signal = signal
        self.status = status


class OrderState:
    __slots__ = (
        "exchange_order_id",
        "fill_ids",
        "fill_order",
        "filled",
        "order",
        "signal",
        "status",
        "totals",
    )

    def __init__(self, order: Order, signal: Signal | None) -> None:
        self.order = order
        self.signal = signal
        self.status = order.status
        self.exchange_order_id = order.exchange_order_id
        self.fill_ids: set[str] = set()
        # Value and commission of the fills too: what the bot's cumulative reports are against.
        self.totals = OrderFills()
        # The same object as totals.quantity while both sum the same fills (see add_fill).
        self.filled = self.totals.quantity
        self.fill_order = FillOrder(order.client_order_id, order.order_type, order.exit_reason)

    def add_fill(self, fill: Fill, filled: Decimal | None = None) -> None:
        """``filled``: the order's new total, when the caller has it already."""
        self.fill_ids.add(fill.fill_id)
        quantity = fill.quantity_filled
        if filled is None:
            filled = exact_sum(self.filled, quantity)
        totals = self.totals
        # One sum serves both while they are one object (a seed may set ``filled`` apart).
        same = totals.quantity is self.filled
        self.filled = filled
        totals.add(quantity, fill.fill_price, fill.commission, filled if same else None)


# A replayed row (kind, payload), or a replayed fill whose order is known but whose
# signal's cycle is not (the order state has it; only the cycle waits).
Deferred = tuple[str, dict[str, Any]] | tuple[OrderState, Fill]


class SignalNotLoaded(RecorderError):
    """A call needs a signal (a verdict, or a fill's cycle) that only PostgreSQL may hold."""

    def __init__(self, signal_id: uuid.UUID) -> None:
        super().__init__(f"signal {signal_id} is not loaded")
        self.signal_id = signal_id


def status_after_fill(status: str, complete: bool) -> str:
    if status in TERMINAL:  # e.g. a fill reported after the cancel: the status stands
        return status
    if complete:
        return "FILLED"
    return status if status == "PENDING_CANCEL" else "PARTIALLY_FILLED"


# status_after_fill as look-ups: [complete][status before].
_AFTER_FILL = tuple(
    {s: status_after_fill(s, complete) for s in ORDER_STATUSES} for complete in (False, True)
)


def replayed_fill_id(item: Deferred) -> str | None:
    if isinstance(item[0], OrderState):
        return item[1].fill_id
    kind, p = item
    return p["fill_id"] if kind == "fill" else None


class LedgerState:
    """Signals, orders and open cycles as the ledger knows them."""

    def __init__(
        self, keep_signals: int = KEEP_SIGNALS, keep_terminal_orders: int = KEEP_TERMINAL_ORDERS
    ) -> None:
        self.keep_signals = keep_signals
        self.keep_terminal_orders = keep_terminal_orders
        self.signals: dict[uuid.UUID, SignalState] = {}
        self.orders: dict[uuid.UUID, OrderState] = {}
        self.by_exchange_id: dict[str, uuid.UUID] = {}
        self.terminal: collections.deque[uuid.UUID] = collections.deque()
        self.cycles = OpenCycles()
        # The last trades derived, by signal: the bot's own outcome is checked against them.
        self.recent_trades: collections.OrderedDict[uuid.UUID, Trade] = collections.OrderedDict()
        # Whether PostgreSQL's state has been read in (seed); until then, journal
        # replay about what only it knows waits in ``deferred``, in journal order.
        self.loaded = False
        self.deferred: list[Deferred] = []
        # Signals recorded (or replayed from the journal) before that: the journal holds
        # everything since, so memory knows their cycles whole; PostgreSQL's are not taken.
        self.recorded_unloaded: set[uuid.UUID] = set()
        # Replayed fills of orders without a signal, until their journaled allocations
        # (which follow them) are applied: a replay takes the parts as they were derived.
        self.replayed_closes: dict[tuple[str, str], tuple[FillOrder, Fill]] = {}
        self.duplicates = 0

    # -- calls ---------------------------------------------------------------------------

    def record_signal(self, signal: Signal, out: Out) -> None:
        if signal.signal_id in self.signals:
            raise ValidationError("signal_id", f"signal {signal.signal_id} already recorded")
        self.remember_signal(signal, signal.status)
        if not self.loaded:
            self.recorded_unloaded.add(signal.signal_id)
        out.append(("signal", signal))

    def signal_status(self, update: SignalStatusUpdate, out: Out, *, may_load: bool = True) -> None:
        """Apply a verdict; raises :class:`SignalNotLoaded` for a signal memory lacks (one
        decided before a restart, or forgotten past the cap: PostgreSQL may have it),
        or, with ``may_load`` false (PostgreSQL was asked), refuses it as unknown."""
        state = self.signals.get(update.signal_id)
        if state is None:
            if may_load:
                raise SignalNotLoaded(update.signal_id)
            raise ValidationError("signal_id", f"unknown signal {update.signal_id}")
        if update.status not in SIGNAL_TRANSITIONS[state.status]:
            raise _refuse(
                out,
                IllegalTransition(
                    f"signal {update.signal_id}: {state.status} -> {update.status} is not allowed"
                ),
                signal_id=update.signal_id,
                old_status=state.status,
                new_status=update.status,
            )
        state.status = update.status
        out.append(("signal_status", update))

    def record_order(self, order: Order, out: Out) -> None:
        cid = order.client_order_id
        if cid in self.orders:
            raise ValidationError("client_order_id", f"order {cid} already recorded")
        if order.exchange_order_id is not None and order.exchange_order_id in self.by_exchange_id:
            raise ValidationError(
                "exchange_order_id", f"{order.exchange_order_id!r} belongs to another order"
            )
        self.remember_order(order)
        out.append(("order", order))

    def order_update(self, update: OrderUpdate, out: Out) -> None:
        state = self.orders.get(update.client_order_id)
        if state is None:
            raise UnknownOrder(f"order {update.client_order_id} was never recorded")
        status = update.status
        if status not in ORDER_TRANSITIONS[state.status]:
            raise _refuse(
                out,
                IllegalTransition(
                    f"order {update.client_order_id}: {state.status} -> "
                    f"{status} is not allowed; the order is unchanged"
                ),
                signal_id=state.order.signal_id,
                client_order_id=str(update.client_order_id),
                old_status=state.status,
                new_status=status,
            )
        eid = update.exchange_order_id
        if eid is not None and eid != state.exchange_order_id:
            if state.exchange_order_id is not None or eid in self.by_exchange_id:
                raise ValidationError(
                    "exchange_order_id", f"{eid!r} conflicts with a known exchange order id"
                )
            state.exchange_order_id = eid
            self.by_exchange_id[eid] = update.client_order_id
        self.set_status(state, status)
        out.append(("order_update", update))

    def fill(self, fill: Fill, out: Out, *, need_signal: bool = True) -> None:
        """Validate and apply a fill: its event and the trade it closes; none if a duplicate.

        Raises :class:`SignalNotLoaded`, before any change, if the order's signal is not
        in memory (unless ``need_signal`` is false: then the fill joins no cycle).
        """
        state = self.orders.get(fill.client_order_id)  # type: ignore[arg-type]
        eid = fill.exchange_order_id
        if state is None or (eid is not None and eid != state.exchange_order_id):
            state = self.order_of(fill)  # by exchange id, or the error
        if fill.fill_id in state.fill_ids:
            self.duplicates += 1
            return
        order = state.order
        if state.signal is None and order.signal_id is not None:
            known = self.signals.get(order.signal_id)
            if known is not None:
                state.signal = known.signal
            elif need_signal:
                raise SignalNotLoaded(order.signal_id)
        filled = self.check_fill(state, fill, out)
        was = state.status
        status = _AFTER_FILL[filled == order.quantity_ordered][was]
        state.add_fill(fill, filled)
        if status != was:
            self.set_status(state, status)
        extra = {
            "order_client_id": order.client_order_id,
            "order_exchange_id": state.exchange_order_id,
            "order_status": status,
        }
        out.append(("fill", (fill, extra)))
        self.apply_to_cycle(state, fill, out)

    @staticmethod
    def check_fill(state: OrderState, fill: Fill, out: Out) -> Decimal:
        """Refuse a new fill its order cannot take; else return the order's filled quantity
        with it. Memory's order may not have taken the fills held before this one yet, which
        only makes it refuse less: a fill held is checked again when applied."""
        order = state.order
        if (
            fill.side != order.side
            or fill.trading_pair != order.trading_pair
            or fill.exchange != order.exchange
        ):
            raise _mismatch(fill, order)
        if state.status == "REJECTED":
            raise _refuse(
                out,
                IllegalTransition(f"order {order.client_order_id} was REJECTED; it cannot fill"),
                signal_id=order.signal_id,
                client_order_id=str(order.client_order_id),
            )
        filled = exact_sum(state.filled, fill.quantity_filled)
        if filled > order.quantity_ordered:
            raise ValidationError(
                "quantity_filled",
                f"fills total {filled}, more than the order's {order.quantity_ordered}",
            )
        return filled

    def fill_order(self, fill: Fill) -> tuple[OrderState | None, bool]:
        """The order a fill names (if known) and whether its trade cycle is known too."""
        cid = fill.client_order_id
        if cid is None and fill.exchange_order_id is not None:
            cid = self.by_exchange_id.get(fill.exchange_order_id)
        state = self.orders.get(cid) if cid is not None else None
        if state is None:
            return None, False
        sid = state.order.signal_id
        if self.loaded:
            return state, sid is None or sid in self.signals
        # Until PostgreSQL is read, only a signal recorded since has a cycle memory knows
        # whole; the pair's open cycles a fill without a signal reduces are PostgreSQL's.
        return state, sid is not None and sid in self.recorded_unloaded

    # -- memory --------------------------------------------------------------------------

    def remember_signal(self, signal: Signal, status: str) -> None:
        """Keep a signal; past the cap forget the oldest decided one (an undecided one
        still waits for its verdict, so it goes to the back a few times first)."""
        signals = self.signals
        signals[signal.signal_id] = SignalState(signal, status)
        if len(signals) <= self.keep_signals:
            return
        for _ in range(_SECOND_CHANCES):
            oldest = next(iter(signals))
            if signals[oldest].status != "PROPOSED":
                break
            signals[oldest] = signals.pop(oldest)
        del signals[next(iter(signals))]

    def remember_order(self, order: Order) -> OrderState:
        signal = None
        if order.signal_id is not None and order.signal_id in self.signals:
            signal = self.signals[order.signal_id].signal
        state = OrderState(order, signal)
        self.orders[order.client_order_id] = state
        if order.exchange_order_id is not None:
            self.by_exchange_id[order.exchange_order_id] = order.client_order_id
        if state.status in TERMINAL:
            self.retire(order.client_order_id)
        return state

    def set_status(self, state: OrderState, status: str) -> None:
        was_terminal = state.status in TERMINAL
        state.status = status
        if status in TERMINAL and not was_terminal:
            self.retire(state.order.client_order_id)

    def retire(self, client_order_id: uuid.UUID) -> None:
        """Finished orders stay known for a while (late reports), then are forgotten."""
        self.terminal.append(client_order_id)
        if len(self.terminal) > self.keep_terminal_orders:
            old = self.orders.pop(self.terminal.popleft(), None)
            if old is not None and old.exchange_order_id is not None:
                self.by_exchange_id.pop(old.exchange_order_id, None)

    def order_of(self, fill: Fill) -> OrderState:
        cid = fill.client_order_id
        if cid is None:
            assert fill.exchange_order_id is not None
            cid = self.by_exchange_id.get(fill.exchange_order_id)
        state = self.orders.get(cid) if cid is not None else None
        if state is None:
            raise UnknownOrder(
                f"fill {fill.fill_id!r} names an order the ledger does not know "
                f"(client_order_id={fill.client_order_id}, "
                f"exchange_order_id={fill.exchange_order_id!r})"
            )
        if (
            fill.exchange_order_id is not None
            and state.exchange_order_id is not None
            and fill.exchange_order_id != state.exchange_order_id
        ):
            raise ValidationError(
                "exchange_order_id",
                f"{fill.exchange_order_id!r} is not the exchange id of "
                f"order {state.order.client_order_id}",
            )
        return state

    def apply_to_cycle(self, state: OrderState, fill: Fill, out: Out | None) -> None:
        """Add a fill to its signal's cycle; ``out`` gets the trade it closes (None: replay).

        A fill of an order without a signal reduces the open cycles of its pair instead
        (:func:`.cycles.reduce_cycles`, oldest first); ``out`` gets an allocation for each
        cycle it reduced, before that cycle's trade.
        """
        signal = state.signal
        order = state.order
        sid = order.signal_id
        fill_order = state.fill_order
        if sid is None:  # PostgreSQL's state is in (such a fill waits for it: see held.py)
            of_pair = self.cycles.of_pair(fill.exchange, fill.trading_pair)
            if of_pair:
                touched, _left = reduce_cycles(of_pair, fill, fill_order)
                for reduced, quantity, closed in touched:
                    if out is not None:
                        allocation = Allocation(
                            fill.exchange, fill.fill_id, reduced.signal_id, quantity
                        )
                        out.append(("allocation", allocation))
                    self._closed(reduced, closed, out)
            return
        if signal is None and sid in self.signals:
            signal = state.signal = self.signals[sid].signal  # recorded before its signal
        if signal is None:
            return
        cycle = self.cycles.get(signal.signal_id)
        if cycle is None:
            cycle = Cycle(
                signal.signal_id,
                signal.side,
                signal.trading_pair,
                signal.exchange,
                signal.strategy_id,
            )
            self.cycles.add(cycle)
        trade, excess = cycle.apply(fill, fill_order)
        self._closed(cycle, trade, out)
        if out is not None and excess:
            out.append(
                (
                    "log",
                    LogEntry(
                        source_module=SOURCE,
                        log_level="WARNING",
                        signal_id=signal.signal_id,
                        message=f"exit fill {fill.fill_id!r} exceeds the open position of "
                        f"signal {signal.signal_id} by {excess}; the excess is not part of a trade",
                        context={
                            "client_order_id": str(order.client_order_id),
                            "excess": str(excess),
                        },
                    ),
                )
            )

    def _closed(self, cycle: Cycle, trade: Trade | None, out: Out | None) -> None:
        """Forget a cycle that is flat again; ``out`` gets its trade, or says why it has
        none."""
        if trade is not None or cycle.open_quantity == 0:
            self.cycles.discard(cycle)
        if cycle.unstorable:
            if out is not None:
                out.append(("log", _unstorable(cycle)))
            cycle.unstorable = ()
        if out is None or trade is None:
            return
        out.append(("derived_trade", trade))
        self.recent_trades[cycle.signal_id] = trade
        if len(self.recent_trades) > KEEP_RECENT_TRADES:
            self.recent_trades.popitem(last=False)

    # -- rebuilding (start, PostgreSQL read) ------------------------------------------------

    def missing_signals(self) -> set[uuid.UUID]:
        """Signals of deferred fills whose orders are known but whose signals are not."""
        return {
            item[0].order.signal_id
            for item in self.deferred
            if isinstance(item[0], OrderState)
            and item[0].order.signal_id is not None
            and item[0].order.signal_id not in self.signals
        }

    def take_signals(self, signals: list[Signal], cycles: list[Cycle]) -> None:
        """Signals (and their open cycles) read from PostgreSQL on demand; known ones win."""
        for signal in signals:
            if signal.signal_id not in self.signals:
                self.remember_signal(signal, signal.status)
        for cycle in cycles:
            self.cycles.add(cycle)

    def seed(self, recovered: RecoveryState, stored: set[tuple[str, str]]) -> None:
        """Take in PostgreSQL's state; what is already known wins (it is newer). Then apply
        the replay that waited for it; ``stored`` are the waiting fills PostgreSQL has."""
        for signal in recovered.signals:
            if signal.signal_id not in self.signals:
                self.remember_signal(signal, signal.status)
        for open_order in recovered.open_orders:
            if open_order.order.client_order_id in self.orders:
                continue
            order_state = self.remember_order(open_order.order)
            for stored_fill in open_order.fills:
                order_state.add_fill(stored_fill)
            order_state.filled = open_order.quantity_filled
        # A signal recorded since whose fills memory applied has its cycle whole here:
        # PostgreSQL holds a prefix of those fills. One without fills may be a re-send of
        # one PostgreSQL had: its stored cycle is the one. These go first (opened before
        # what the journal's replay opened), the order a signal-less fill reduces them in.
        filled_here = {
            sid
            for order in self.orders.values()
            if order.fill_ids and (sid := order.order.signal_id) in self.recorded_unloaded
        }
        self.cycles.put_older(c for c in recovered.open_cycles if c.signal_id not in filled_here)
        self.loaded = True
        self.recorded_unloaded.clear()
        self._replay_deferred(stored)

    def _replay_deferred(self, stored: set[tuple[str, str]]) -> None:
        """Apply the replay that waited for PostgreSQL's state, in journal order.

        A fill PostgreSQL already holds (journaled by a process that crashed after
        committing it), and the allocations committed with it, are in the state read
        from it: not applied twice.
        """
        deferred, self.deferred = self.deferred, []
        for item in deferred:
            if isinstance(item[0], OrderState):  # the order is known: only the cycle waited
                state, fill = item
                if (fill.exchange, fill.fill_id) not in stored:
                    self.apply_to_cycle(state, fill, None)
            else:
                kind, p = item
                if (
                    kind not in ("fill", "allocation")
                    or (p["exchange"], p["fill_id"]) not in stored
                ):
                    self.replay(kind, p)
        self.replayed_closes.clear()

    def _replay_needs_pg(self, kind: str, p: dict[str, Any]) -> bool:
        """A replayed row about an order or signal that only PostgreSQL (not yet read) has."""
        if self.loaded:
            return False
        if kind == "signal_status":
            return uuid.UUID(p["signal_id"]) not in self.signals
        key = "client_order_id" if kind == "order_update" else "order_client_id"
        return uuid.UUID(p[key]) not in self.orders

    def replay(self, kind: str, p: dict[str, Any]) -> None:
        """Apply one journaled, uncommitted event (nothing is re-emitted); held ones are the
        ledger's (see :mod:`.held`). A fill of an order without a signal reduces the cycles
        its journaled allocations name, by the parts they give."""
        if kind == "signal":
            signal = Signal(**p)
            if signal.signal_id not in self.signals:
                self.remember_signal(signal, signal.status)
            if not self.loaded:
                self.recorded_unloaded.add(signal.signal_id)
        elif kind in ("signal_status", "order_update", "fill") and self._replay_needs_pg(kind, p):
            self.deferred.append((kind, p))
        elif kind == "signal_status":
            sig = self.signals.get(uuid.UUID(p["signal_id"]))
            if sig is not None and p["status"] in SIGNAL_TRANSITIONS[sig.status]:
                sig.status = p["status"]
        elif kind == "order":
            order = Order(**p)
            if order.client_order_id not in self.orders:
                self.remember_order(order)
        elif kind == "order_update":
            state = self.orders.get(uuid.UUID(p["client_order_id"]))
            if state is not None and p["status"] in ORDER_TRANSITIONS[state.status]:
                if p["exchange_order_id"] and state.exchange_order_id is None:
                    state.exchange_order_id = p["exchange_order_id"]
                    self.by_exchange_id[state.exchange_order_id] = state.order.client_order_id
                self.set_status(state, p["status"])
        elif kind == "fill":
            fill = Fill(**{name: p[name] for name in FILL_FIELDS})
            state = self.orders.get(uuid.UUID(p["order_client_id"]))
            if state is not None and fill.fill_id not in state.fill_ids:
                state.add_fill(fill)
                self.set_status(state, p["order_status"])
                sid = state.order.signal_id
                if sid is None:  # its journaled allocations follow it
                    self.replayed_closes[(fill.exchange, fill.fill_id)] = (state.fill_order, fill)
                elif self.loaded or sid in self.recorded_unloaded:
                    self.apply_to_cycle(state, fill, None)
                else:  # PostgreSQL may hold it already, and then its cycle does
                    self.deferred.append((state, fill))
        elif kind == "allocation":
            # In place, as the cycle's own fills are: at once if memory has the cycle whole
            # and the fill, else after PostgreSQL's state and the fill's own wait.
            here = (p["exchange"], p["fill_id"]) in self.replayed_closes
            if self.loaded or (here and uuid.UUID(p["signal_id"]) in self.recorded_unloaded):
                self._replay_allocation(p)
            else:
                self.deferred.append((kind, p))

    def _replay_allocation(self, p: dict[str, Any]) -> None:
        """Give a cycle the part of a replayed signal-less fill it took when derived, rather
        than derive it again against cycles that may stand otherwise now."""
        close = self.replayed_closes.get((p["exchange"], p["fill_id"]))
        cycle = self.cycles.get(uuid.UUID(p["signal_id"]))
        if close is not None and cycle is not None:
            fill_order, fill = close
            trade, _excess = cycle.apply(fill, fill_order, available=Decimal(p["quantity"]))
            self._closed(cycle, trade, None)


def _unstorable(cycle: Cycle) -> LogEntry:
    """The system_logs row of a closed cycle whose trade no row can hold (cold path)."""
    return LogEntry(
        source_module=SOURCE,
        log_level="WARNING",
        message=f"the trade closing signal {cycle.signal_id}'s cycle cannot be stored "
        f"({'; '.join(cycle.unstorable)}); its fills are",
        signal_id=cycle.signal_id,
        trading_pair=cycle.trading_pair,
    )


def _mismatch(fill: Fill, order: Order) -> ValidationError:
    """The error of a fill whose side, pair or exchange is not its order's (cold path)."""
    for name in ("side", "trading_pair", "exchange"):
        mine, its = getattr(fill, name), getattr(order, name)
        if mine != its:
            return ValidationError(name, f"{mine!r} differs from the order's {its!r}")
    raise AssertionError("the fill matches its order")


def _refuse(
    out: Out, exc: RecorderError, *, signal_id: uuid.UUID | None = None, **context: Any
) -> RecorderError:
    """Record a refused transition in system_logs, and return the error to raise."""
    out.append(
        (
            "log",
            LogEntry(
                source_module=SOURCE,
                log_level="WARNING",
                message=str(exc),
                signal_id=signal_id,
                context=context,
            ),
        )
    )
    return exc
