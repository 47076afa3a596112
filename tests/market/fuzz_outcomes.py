"""Outcome classifier of the fuzz target, imported instrumented by atheris.

The Rust extension carries no coverage counters, so each distinct outcome of
an input (error kind, what the message names, counters that moved, tops
returned) is made a distinct Python branch here; libFuzzer then keeps the
inputs that reach new outcomes.
"""

from __future__ import annotations

from typing import Any

import atheris

KEYWORDS = (
    "invalid JSON",
    "empty",
    "neither",
    "data",
    "type",
    "symbol",
    "bids",
    "asks",
    "price",
    "qty",
    "volume",
    "timestamp",
    "checksum",
    "v1",
    "trade",
    "ohlc",
    "instrument",
    "range",
    "snapshot",
    "negative",
    "newline",
)
COUNTERS = ("snapshots", "book_messages", "trades", "bars", "ohlc", "instruments", "ignored")


@atheris.instrument_func
def classify(
    error: BaseException | None, tops: int, before: dict[str, Any], after: dict[str, Any]
) -> int:
    """Branches per outcome, so libFuzzer keeps inputs that reach new ones."""
    score = 0
    if error is None:
        score += 1
    elif type(error).__name__ == "MalformedFrame":
        msg = str(error)
        for i, word in enumerate(KEYWORDS):
            if word in msg:
                score += 1 << i
    elif type(error).__name__ == "BookOutOfSync":
        score += 3
    elif type(error).__name__ == "UnknownSymbol":
        score += 5
    if tops == 1:
        score += 7
    elif tops > 1:
        score += 11
    for name in COUNTERS:
        if after[name] > before[name]:
            score += 13
    return score
