"""Cumulative execution reports and per-trade fills, reconciled into one set of fills per order.

Gal-Friday reports an order's *cumulative* filled quantity, average price and
commission, and its 5 s poll repeats the same report; Kraken's own-trades feed
(the bot's ``FillEvent``) names each execution by its trade id. The ledger
stores individual fills, so an order's fills here are the union of both
sources without overlap:

* a report writes only the quantity beyond what the order already holds (from
  either source), priced so that the order's volume-weighted average matches
  the report's, with the commission beyond what the fills already carry. Its
  fill id is deterministic (``rpt:`` the exchange order id, ``:`` the
  cumulative quantity reached), so a repeated poll, or the same report after a
  restart, writes nothing twice;
* a report without an average price never invents one: its quantity waits for
  a priced report or a per-trade fill;
* a per-trade fill writes only the quantity that reports have not already
  written for it: report quantity no per-trade fill has claimed yet *covers*
  later per-trade fills (those are counted, not written again).

Pure: no I/O, no locks; the recorder holds one :class:`OrderFills` per order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from decimal import Decimal, localcontext

from .records import EXACT, exact_sum

# NUMERIC(38,18): a derived price or prorated commission is rounded to 18 places.
_PLACES = Decimal(1).scaleb(-18)
_MAX_FILL_ID = 64
_fma = EXACT.fma  # quantity x price + value, exact (a bound method: no look-up per fill)


@dataclasses.dataclass(slots=True)
class OrderFills:
    """What one order's recorded fills add up to, and report quantity not yet claimed."""

    quantity: Decimal = Decimal(0)
    value: Decimal = Decimal(0)  # sum of quantity x price
    commission: Decimal = Decimal(0)
    covered: Decimal = Decimal(0)
    trade_ids: set[str] = dataclasses.field(default_factory=set)

    def copy(self) -> OrderFills:
        return OrderFills(
            self.quantity, self.value, self.commission, self.covered, set(self.trade_ids)
        )

    def add(
        self, quantity: Decimal, price: Decimal, commission: Decimal, total: Decimal | None = None
    ) -> None:
        """``total``: ``self.quantity + quantity``, when the caller has summed it already."""
        self.quantity = exact_sum(self.quantity, quantity) if total is None else total
        self.value = _fma(quantity, price, self.value)
        if commission:  # a fill without one leaves the sum as it is
            self.commission = exact_sum(self.commission, commission)


@dataclasses.dataclass(frozen=True, slots=True)
class FillDelta:
    """One fill to record: its id, quantity, price and commission."""

    fill_id: str
    quantity: Decimal
    price: Decimal
    commission: Decimal


def report_fill_id(order_key: str, cumulative: Decimal) -> str:
    """Deterministic id of the fill a report reaching ``cumulative`` writes (at most 64 chars)."""
    fill_id = f"rpt:{order_key}:{cumulative.normalize():f}"
    if len(fill_id) <= _MAX_FILL_ID:
        return fill_id
    return "rpt:" + hashlib.sha256(fill_id.encode()).hexdigest()[:56]


def from_report(
    held: OrderFills,
    order_key: str,
    cumulative: Decimal,
    average_price: Decimal | None,
    commission: Decimal | None,
) -> FillDelta | None:
    """The fill a cumulative report adds, or None (nothing new, or no price yet).

    ``held`` is updated as if the fill were recorded; the caller records it.
    """
    quantity = exact_sum(cumulative, held.quantity.copy_negate())
    if quantity <= 0 or average_price is None or average_price <= 0:
        return None
    with localcontext(EXACT):
        price = ((cumulative * average_price - held.value) / quantity).quantize(_PLACES)
        fee = max((commission or Decimal(0)) - held.commission, Decimal(0))
    if price <= 0:  # earlier fills priced above the report's average: keep the average
        price = average_price
    held.add(quantity, price, fee)
    held.covered += quantity
    return FillDelta(report_fill_id(order_key, cumulative), quantity, price, fee)


def from_trade(
    held: OrderFills, fill_id: str, quantity: Decimal, price: Decimal, commission: Decimal
) -> FillDelta | None:
    """The part of a per-trade fill that reports have not written yet, or None (all covered).

    A partly covered fill writes the rest at its own price with its commission prorated;
    a trade id seen before writes nothing.
    """
    if fill_id in held.trade_ids:
        return None
    held.trade_ids.add(fill_id)
    claimed = min(held.covered, quantity)
    held.covered -= claimed
    rest = exact_sum(quantity, claimed.copy_negate())
    if rest <= 0:
        return None
    with localcontext(EXACT):
        fee = commission if claimed == 0 else (commission * rest / quantity).quantize(_PLACES)
    held.add(rest, price, fee)
    return FillDelta(fill_id, rest, price, fee)


__all__ = ["FillDelta", "OrderFills", "from_report", "from_trade", "report_fill_id"]
