"""A book the bot already holds (its ``MarketDataL2Event``: ``str`` levels) as ``market_data_l2``
fields: the same names and formulas as the lines the Rust core writes from raw frames.

Levels are best first. Sums and ratios are exact in ``Decimal`` and become
floats only as fields (the schema's type).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from . import vocabulary as vocab
from .errors import ValidationError

Level = Sequence[Any]  # (price, volume, ...) as str, int or Decimal


def _levels(side: str, levels: Sequence[Level]) -> list[tuple[Decimal, Decimal]]:
    out = []
    for i, level in enumerate(levels):
        if len(level) < 2:
            raise ValidationError(f"{side}[{i}]", "a level is (price, volume)")
        out.append(
            (vocab.decimal(f"{side}[{i}]", level[0]), vocab.decimal(f"{side}[{i}]", level[1]))
        )
    return out


def l2_fields(
    bids: Sequence[Level],
    asks: Sequence[Level],
    *,
    is_snapshot: bool,
    levels: int,
    imbalance_levels: Sequence[int],
) -> dict[str, float | bool]:
    """Top ``levels`` of each side, then spread, mid_price, wap and imbalance_N.

    Only the levels these use are read: a deep book (Kraken's depth 1000) costs the
    bot's loop no more than a shallow one.
    """
    depth = max(levels, *imbalance_levels, 1)
    bid, ask = _levels("bids", bids[:depth]), _levels("asks", asks[:depth])
    fields: dict[str, float | bool] = {}
    for i, (price, qty) in enumerate(bid[:levels]):
        fields[f"bid_price_level_{i}"], fields[f"bid_volume_level_{i}"] = float(price), float(qty)
    for i, (price, qty) in enumerate(ask[:levels]):
        fields[f"ask_price_level_{i}"], fields[f"ask_volume_level_{i}"] = float(price), float(qty)
    fields["is_snapshot"] = bool(is_snapshot)
    if bid and ask:
        (bp, bq), (ap, aq) = bid[0], ask[0]
        spread, mid = ap - bp, (ap + bp) / 2
        fields["spread"], fields["mid_price"] = float(spread), float(mid)
        if bq + aq > 0:
            fields["wap"] = float((bp * aq + ap * bq) / (bq + aq))
    for n in imbalance_levels:
        bid_qty = sum((q for _p, q in bid[:n]), Decimal(0))
        ask_qty = sum((q for _p, q in ask[:n]), Decimal(0))
        if bid_qty + ask_qty > 0:
            fields[f"imbalance_{n}"] = float((bid_qty - ask_qty) / (bid_qty + ask_qty))
    return fields


__all__ = ["l2_fields"]
