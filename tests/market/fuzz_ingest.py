"""atheris fuzz target: no input to `MarketRecorder.ingest` may crash or corrupt.

Run: ``python tests/market/fuzz_ingest.py WORKDIR tests/market/corpus_ingest -max_total_time=20``
(libFuzzer options; new inputs go to WORKDIR, the seed corpus stays read-only).
The Rust extension is not coverage-instrumented, so the harness turns each
outcome (error kind and the part of the frame it names, counters that moved,
tops returned) into Python branches that atheris does see: inputs that reach
a new outcome are kept and mutated further, seeded with valid Kraken frames.
Every input must either succeed or raise one of the recorder's own
exceptions, and the books must stay well-formed.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TypedDict

import atheris
from fuzz_outcomes import classify  # instrumented by its own decorator

# Not under atheris.instrument_imports(): it instruments Python bytecode only, so the
# Rust extension gains nothing, and importing it pulls in (and instruments) the whole
# package, which costs ~15 s at every start.
from galfriday_recorder._core import MarketRecorder, RecorderError

SNAPSHOT = (
    b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
    b'"bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0.00100000}]}]}'
)


class State(TypedDict):
    rec: MarketRecorder
    runs: int


state: State = {"rec": MarketRecorder(), "runs": 0}


def check(rec: MarketRecorder) -> None:
    for sym in rec.symbols():
        try:
            view = rec.book(sym)
        except RecorderError:
            continue  # trades/ohlc only: no book
        bids = [p for p, _ in view.bids]
        asks = [p for p, _ in view.asks]
        assert bids == sorted(bids, reverse=True), sym
        assert asks == sorted(asks), sym
        assert len(set(bids)) == len(bids)
        assert len(set(asks)) == len(asks)
        assert all(q > 0 for _, q in view.bids + view.asks)
        view.checksum()
    out = rec.drain()
    assert not out or out.endswith(b"\n")
    out.decode("utf-8")


def test_one_input(data: bytes) -> None:
    state["runs"] += 1
    if state["runs"] % 5000 == 0:  # keep memory bounded across millions of runs
        state["rec"] = MarketRecorder()
    rec = state["rec"]
    if state["runs"] % 50 == 1:
        rec.ingest(SNAPSHOT)
    before = rec.stats()
    error: BaseException | None = None
    tops = 0
    try:
        tops = len(rec.ingest(data, received_at_ns=state["runs"]))
    except RecorderError as e:
        error = e
    classify(error, tops, before, rec.stats())
    with contextlib.suppress(RecorderError):
        rec.ingest(data.decode("utf-8", errors="replace"))
    if state["runs"] % 10 == 0:
        check(rec)
    rec.flush_bars()
    rec.stats()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
