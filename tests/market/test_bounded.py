"""Bounded work per frame: any level order gives the reference book, big frames
are refused above ``max_frame_bytes``, and a big frame runs without the GIL."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galfriday_recorder._core import MalformedFrame, MarketRecorder
from galfriday_recorder.lab.synth import book_checksum, fixed_text

PS, QS = 2, 8
Side = dict[int, int]


def _levels(levels: list[tuple[int, int]]) -> str:
    return ",".join(f'{{"price":{fixed_text(p, PS)},"qty":{fixed_text(q, QS)}}}' for p, q in levels)


def book_frame(
    kind: str, bids: list[tuple[int, int]], asks: list[tuple[int, int]], checksum: int
) -> str:
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"P/USD",'
        f'"bids":[{_levels(bids)}],"asks":[{_levels(asks)}],"checksum":{checksum}}}]}}'
    )


def reference(
    side: Side, changes: list[tuple[int, int]], bid: bool, depth: int
) -> list[tuple[int, int]]:
    """The book one change at a time, then cut to depth: the obvious model."""
    for p, q in changes:
        if q == 0:
            side.pop(p, None)
        else:
            side[p] = q
    kept = sorted(side.items(), key=lambda kv: -kv[0] if bid else kv[0])[:depth]
    side.clear()
    side.update(kept)
    return kept


def as_ints(rec: MarketRecorder) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    bv = rec.book("P/USD")

    def conv(lv: list[tuple[Decimal, Decimal]]) -> list[tuple[int, int]]:
        return [(int(p * 10**PS), int(q * 10**QS)) for p, q in lv]

    return conv(bv.bids), conv(bv.asks)


# Prices crowd a narrow band so updates hit existing levels, deletes and duplicates.
prices = st.integers(min_value=1, max_value=3_000)
qtys = st.one_of(st.just(0), st.integers(min_value=1, max_value=10**12), st.just(2**63 - 1))
level_lists = st.lists(st.tuples(prices, qtys), max_size=400)
orders = st.sampled_from(["as drawn", "ascending", "descending"])


def arrange(levels: list[tuple[int, int]], order: str) -> list[tuple[int, int]]:
    if order == "ascending":
        return sorted(levels, key=lambda lv: lv[0])
    if order == "descending":
        return sorted(levels, key=lambda lv: -lv[0])
    return levels


@settings(max_examples=150, deadline=None)
@given(
    depth=st.sampled_from([1, 10, 25, 100, 500, 1000]),
    snap_bids=level_lists,
    snap_asks=level_lists,
    upd_bids=level_lists,
    upd_asks=level_lists,
    order=orders,
)
def test_any_level_order_gives_the_reference_book(
    depth: int,
    snap_bids: list[tuple[int, int]],
    snap_asks: list[tuple[int, int]],
    upd_bids: list[tuple[int, int]],
    upd_asks: list[tuple[int, int]],
    order: str,
) -> None:
    rec = MarketRecorder(depth=depth, precisions={"P/USD": (PS, QS)})
    ref_b: Side = {}
    ref_a: Side = {}
    for kind, bids, asks in (("snapshot", snap_bids, snap_asks), ("update", upd_bids, upd_asks)):
        bids, asks = arrange(bids, order), arrange(asks, order)
        want_b = reference(ref_b, bids, True, depth)
        want_a = reference(ref_a, asks, False, depth)
        [top] = rec.ingest(book_frame(kind, bids, asks, book_checksum(want_a, want_b)))
        assert top.checksum_ok
        assert as_ints(rec) == (want_b, want_a)


def ascending_bids_frame(n: int) -> str:
    """The costly order before: every bid better than the last."""
    bids = [(1_000 + i, 10**8) for i in range(n)]
    return book_frame("update", bids, [], 0).replace(',"checksum":0', "")


def test_a_frame_above_max_frame_bytes_is_refused_unread() -> None:
    rec = MarketRecorder(max_frame_bytes=1_000)
    rec.ingest(book_frame("snapshot", [(5, 1)], [(6, 1)], book_checksum([(6, 1)], [(5, 1)])))
    big = ascending_bids_frame(50)
    assert len(big) > 1_000
    with pytest.raises(MalformedFrame, match=r"above max_frame_bytes \(1000\)"):
        rec.ingest(big)
    assert rec.stats()["malformed"] == 1
    assert as_ints(rec)[0] == [(5, 1)]  # untouched
    with pytest.raises(MalformedFrame):
        rec.ingest(big.encode())


@contextmanager
def no_forced_switches() -> Iterator[None]:
    """A thread holding the GIL keeps it until it gives it up itself."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_a_big_frame_releases_the_gil_while_it_is_handled() -> None:
    rec = MarketRecorder()
    rec.ingest(book_frame("snapshot", [(5, 1)], [(3_000_000, 1)], 0).replace(',"checksum":0', ""))
    frame = ascending_bids_frame(300_000).encode()  # about 10 MB
    assert len(frame) > 9_000_000
    entered, left = threading.Event(), threading.Event()

    def big() -> None:
        entered.set()
        rec.ingest(frame)
        left.set()

    with no_forced_switches():
        t = threading.Thread(target=big)
        t.start()
        entered.wait()
        # This thread gets the GIL back only when the other one gives it up:
        # inside ingest if it detaches, else after it returned.
        inside = not left.is_set()
        t.join()
    assert inside
    assert len(rec.book("P/USD").bids) == 10
