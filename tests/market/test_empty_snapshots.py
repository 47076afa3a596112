"""Empty snapshots (new or illiquid pairs) keep the pair's precision, so the
first orders carry their trailing zeros and Kraken's checksum of them matches."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kraken_frames import instrument_frame

from galfriday_recorder._core import BookOutOfSync, MarketRecorder
from galfriday_recorder.lab.synth import book_checksum

# Kraken's CRC32 input is each level's price and volume text, dot and leading
# zeros removed: "1.2300" x "5.00000000" -> "12300" "500000000".
BID = ("1.2300", "5.00000000")
ASK = ("1.2400", "0.50000000")
CRC = book_checksum([(12400, 50_000_000)], [(12300, 500_000_000)])


def v1_update(side: str, level: tuple[str, str], checksum: int) -> str:
    return (
        f'[6304,{{"{side}":[["{level[0]}","{level[1]}","1700000000.000001"]],'
        f'"c":"{checksum}"}},"book-25","PERP/EUR"]'
    )


def test_v1_empty_snapshot_then_orders_with_trailing_zeros() -> None:
    rec = MarketRecorder(depth=25)
    [top] = rec.ingest('[6304,{"as":[],"bs":[]},"book-25","PERP/EUR"]')
    assert top.bid_price is None
    assert top.ask_price is None
    bid_only = book_checksum([], [(12300, 500_000_000)])
    [top] = rec.ingest(v1_update("b", BID, bid_only))
    assert top.checksum_ok
    [top] = rec.ingest(v1_update("a", ASK, CRC))
    assert top.checksum_ok
    bv = rec.book("PERP/EUR")
    assert (bv.price_decimals, bv.qty_decimals) == (4, 8)
    assert bv.bids == [(Decimal("1.2300"), Decimal("5.00000000"))]
    assert str(bv.asks[0][0]) == "1.2400"
    assert bv.checksum() == CRC
    line = rec.drain().decode().splitlines()[-1]
    assert "bid_price_level_0=1.2300,bid_volume_level_0=5.00000000" in line


def v2_frame(kind: str, bids: str, asks: str, checksum: int) -> str:
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"NEW/EUR",'
        f'"bids":[{bids}],"asks":[{asks}],"checksum":{checksum}}}]}}'
    )


# v2 numbers are JSON numbers: a writer may drop their trailing zeros.
V2_BID = '{"price":1.23,"qty":5}'
V2_ASK = '{"price":1.24,"qty":0.5}'


@pytest.mark.parametrize("source", ["instrument", "configured"])
def test_v2_empty_snapshot_takes_the_precision_from_instrument_or_config(source: str) -> None:
    if source == "configured":
        rec = MarketRecorder(precisions={"NEW/EUR": (4, 8)})
    else:
        rec = MarketRecorder()
        rec.ingest(instrument_frame([("NEW/EUR", 4, 8)]))
    empty = book_checksum([], [])
    [top] = rec.ingest(v2_frame("snapshot", "", "", empty))
    assert top.checksum_ok
    [top] = rec.ingest(v2_frame("update", V2_BID, V2_ASK, CRC))
    assert top.checksum_ok
    bv = rec.book("NEW/EUR")
    assert (bv.price_decimals, bv.qty_decimals) == (4, 8)
    assert bv.asks == [(Decimal("1.2400"), Decimal("0.50000000"))]


def test_v2_empty_snapshot_of_an_unknown_pair_takes_the_first_number_text() -> None:
    """Neither configured nor announced: the first levels' text sets the scales.
    Written in full (as Kraken does) the checksum matches; with trailing zeros
    dropped it cannot, and the book says so until the next snapshot."""
    rec = MarketRecorder()
    rec.ingest(v2_frame("snapshot", "", "", book_checksum([], [])))
    full_bid, full_ask = '{"price":1.2300,"qty":5.00000000}', '{"price":1.2400,"qty":0.50000000}'
    [top] = rec.ingest(v2_frame("update", full_bid, full_ask, CRC))
    assert top.checksum_ok
    assert rec.book("NEW/EUR").price_decimals == 4

    short = MarketRecorder()
    short.ingest(v2_frame("snapshot", "", "", book_checksum([], [])))
    with pytest.raises(BookOutOfSync):
        short.ingest(v2_frame("update", V2_BID, V2_ASK, CRC))
    assert not short.book("NEW/EUR").in_sync
