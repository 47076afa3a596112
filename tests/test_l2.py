"""A bot-held book as a market_data_l2 point: the fields, and work bounded by what is used."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TypedDict

import pytest

from galfriday_recorder.errors import ValidationError
from galfriday_recorder.l2 import l2_fields


def test_fields_of_the_top_levels() -> None:
    fields = l2_fields(
        [("0.50", "3"), ("0.49", "1")],
        [("0.52", "1"), ("0.53", "5")],
        is_snapshot=True,
        levels=1,
        imbalance_levels=(2,),
    )
    bp, bq, ap, aq = Decimal("0.50"), Decimal(3), Decimal("0.52"), Decimal(1)
    assert fields == {
        "bid_price_level_0": 0.5,
        "bid_volume_level_0": 3.0,
        "ask_price_level_0": 0.52,
        "ask_volume_level_0": 1.0,
        "is_snapshot": True,
        "spread": float(ap - bp),
        "mid_price": float((ap + bp) / 2),
        "wap": float((bp * aq + ap * bq) / (bq + aq)),
        "imbalance_2": float(Decimal(4 - 6) / 10),
    }


class _Options(TypedDict):
    """The keyword arguments of ``l2_fields``."""

    is_snapshot: bool
    levels: int
    imbalance_levels: Sequence[int]


def test_a_deep_book_reads_only_the_levels_it_records() -> None:
    """Kraken's depth 1000 (and a hostile 100,000) costs what depth 10 costs: levels
    past the deepest one used are not parsed, so even unparsable ones change nothing."""
    deep = [("0.5", "1")] * 10 + [("not a price", "x")] * 100_000
    shallow = [("0.5", "1")] * 10
    kwargs: _Options = {"is_snapshot": False, "levels": 5, "imbalance_levels": (5, 10)}
    assert l2_fields(deep, deep, **kwargs) == l2_fields(shallow, shallow, **kwargs)


def test_a_bad_level_within_the_used_depth_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"bids\[3\]"):
        l2_fields(
            [("0.5", "1")] * 3 + [("bad", "1")],
            [("0.6", "1")],
            is_snapshot=False,
            levels=10,
            imbalance_levels=(5,),
        )
