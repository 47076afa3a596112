"""The log columns lifted out of a context (the logging handler and the bridge share it)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from galfriday_recorder.loghandler import lift_columns

SID = uuid.uuid4()


@pytest.mark.parametrize(
    ("context", "columns", "rest"),
    [
        (
            {"signal_id": str(SID), "trading_pair": "XRP/USD", "order_pk": 3, "x": 1},
            ("XRP/USD", SID, 3),
            {"x": 1},
        ),
        ({"symbol": "BTC/USD", "signal_id": SID}, ("BTC/USD", SID, None), {}),
        ({"pair": "ETH/USD"}, ("ETH/USD", None, None), {}),
        # The first usable of trading_pair, symbol, pair; the others stay.
        (
            {"trading_pair": "X" * 17, "symbol": "DOGE/USD", "pair": "XDGUSD"},
            ("DOGE/USD", None, None),
            {"trading_pair": "X" * 17, "pair": "XDGUSD"},
        ),
        (
            {"signal_id": "not-a-uuid", "order_pk": True, "pair": ""},
            (None, None, None),
            {"signal_id": "not-a-uuid", "order_pk": True, "pair": ""},
        ),
        ({"order_pk": 2**31, "symbol": 5}, (None, None, None), {"order_pk": 2**31, "symbol": 5}),
        ({"pair": "A/B\x00"}, (None, None, None), {"pair": "A/B\x00"}),
    ],
)
def test_lift_columns(
    context: dict[str, Any], columns: tuple[Any, ...], rest: dict[str, Any]
) -> None:
    assert lift_columns(context) == columns
    assert context == rest
