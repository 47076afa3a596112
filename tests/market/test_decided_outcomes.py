"""Inputs Kraken's recordings never contain, each with a decided, bounded,
counted outcome (README, "What happens when things go wrong")."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kraken_frames import SyntheticBook, trade_frame

from galfriday_recorder._core import MalformedFrame, MarketRecorder, UnknownSymbol
from galfriday_recorder.lab.synth import book_checksum

NOW = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z


def test_an_update_without_checksum_is_applied_unverified_and_counted() -> None:
    sb = SyntheticBook(seed=5)
    rec = MarketRecorder()
    rec.ingest(sb.snapshot_frame())
    entry = sb.set_level("bid", sb.mid - 1, 777)
    without = entry.replace(f',"checksum":{sb.expected_checksum()}', "")
    assert without != entry
    [top] = rec.ingest(sb.update_frame(without))
    assert not top.checksum_ok
    assert rec.book(sb.symbol).checksum() == sb.expected_checksum()  # applied
    assert rec.stats()["unverified_updates"] == 1
    [top] = rec.ingest(sb.update_frame(sb.set_level("ask", sb.mid + 1, 5)))
    assert top.checksum_ok  # the next checksum vouches for the whole book
    assert rec.stats()["unverified_updates"] == 1


def crossed_frame() -> str:
    bids, asks = [(1010, 100)], [(1000, 200)]  # best bid 10.10 above best ask 10.00
    return (
        '{"channel":"book","type":"snapshot","data":[{"symbol":"X/USD",'
        '"bids":[{"price":10.10,"qty":1.00}],"asks":[{"price":10.00,"qty":2.00}],'
        f'"checksum":{book_checksum(asks, bids)}}}]}}'
    )


def test_a_crossed_book_is_recorded_as_received_flagged_and_counted() -> None:
    rec = MarketRecorder()
    [top] = rec.ingest(crossed_frame())
    assert top.checksum_ok
    assert top.crossed
    assert top.spread == pytest.approx(-0.1)
    [line] = rec.drain().decode().splitlines()
    assert ",spread=-0.1," in line
    assert rec.stats()["crossed_books"] == 1
    sb = SyntheticBook(seed=1)
    [top] = rec.ingest(sb.snapshot_frame())
    assert not top.crossed
    assert rec.stats()["crossed_books"] == 1


@pytest.mark.parametrize(
    "frame",
    [
        '{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[],"asks":[]}],"data":[]}',
        '{"channel":"book","type":"snapshot","data":[],"data":[{"symbol":"A/B","bids":[],"asks":[]}]}',
        '{"channel":"book","type":"snapshot","type":"update","data":[]}',
        '{"channel":"book","channel":"trade","type":"snapshot","data":[]}',
        '{"channel":"trade","type":"update","data":[],"data":[]}',
    ],
)
def test_a_repeated_envelope_key_is_malformed(frame: str) -> None:
    rec = MarketRecorder()
    with pytest.raises(MalformedFrame, match="duplicate field"):
        rec.ingest(frame)
    assert rec.symbols() == []
    assert rec.stats()["malformed"] == 1


def test_trades_for_ever_new_symbols_stop_at_max_symbols() -> None:
    rec = MarketRecorder(max_symbols=100)
    items = ",".join(
        f'{{"symbol":"S{i}/USD","price":1.5,"qty":2,"timestamp":"2024-01-01T00:00:00Z"}}'
        for i in range(50_000)
    )
    with pytest.raises(UnknownSymbol, match=r"symbol number 101 \(max_symbols\)") as info:
        rec.ingest(f'{{"channel":"trade","type":"update","data":[{items}]}}')
    assert info.value.symbol == "S100/USD"  # the first refused
    assert len(rec.symbols()) == 100
    stats = rec.stats()
    assert stats["trades"] == 50_000
    assert stats["unknown_symbol"] == 49_900
    # Known symbols still work; so does a snapshot for one of them.
    rec.ingest(trade_frame("S7/USD", [("1.6", "1", NOW)]), received_at_ns=NOW)
    with pytest.raises(UnknownSymbol):
        rec.ingest(SyntheticBook(symbol="NEW/USD").snapshot_frame())


def test_a_trade_far_in_the_future_is_refused_and_bars_go_on() -> None:
    rec = MarketRecorder(ohlcv_intervals=("1m",), max_trade_ahead_ms=60_000)
    minute = 60_000_000_000
    rec.ingest(trade_frame("XRP/USD", [("0.5", "1", NOW)]), received_at_ns=NOW)
    with pytest.raises(MalformedFrame, match="max_trade_ahead_ms") as info:
        rec.ingest(
            trade_frame("XRP/USD", [("9.9", "1", NOW + 365 * 24 * 60 * minute)]),
            received_at_ns=NOW + 1,
        )
    assert info.value.symbol == "XRP/USD"
    # Within the allowance (clock skew) it counts.
    rec.ingest(trade_frame("XRP/USD", [("0.6", "2", NOW + minute)]), received_at_ns=NOW + 1)
    rec.ingest(
        trade_frame("XRP/USD", [("0.7", "3", NOW + 2 * minute)]), received_at_ns=NOW + minute
    )
    rec.flush_bars()
    lines = rec.drain().decode().splitlines()
    assert [ln.rsplit(" ", 1)[1] for ln in lines] == [str(NOW + k * minute) for k in range(3)]
    assert "9.9" not in "".join(lines)
    stats = rec.stats()
    assert (stats["future_trades"], stats["late_trades"], stats["bars"]) == (1, 0, 3)


V1_LEVEL = '["1.0","1.0","1700000000.0"]'


@pytest.mark.parametrize("depth", [1_000_000, 0, 11, 5000])
def test_a_v1_book_channel_of_no_kraken_depth_is_malformed(depth: int) -> None:
    rec = MarketRecorder(depth=10)
    with pytest.raises(MalformedFrame, match="not a Kraken book depth") as info:
        rec.ingest(f'[1,{{"as":[{V1_LEVEL}],"bs":[]}},"book-{depth}","XBT/USD"]')
    assert info.value.symbol == "XBT/USD"
    assert rec.symbols() == []


def test_a_v1_book_channel_of_a_kraken_depth_sets_the_depth() -> None:
    rec = MarketRecorder(depth=10)
    asks = ",".join(f'["{100 + i}.0","1.0","1700000000.0"]' for i in range(30))
    rec.ingest(f'[1,{{"as":[{asks}],"bs":[]}},"book-25","XBT/USD"]')
    assert len(rec.book("XBT/USD").asks) == 25
    assert rec.book("XBT/USD").asks[-1] == (Decimal("124.0"), Decimal("1.0"))
