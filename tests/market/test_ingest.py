"""The Rust market core through its Python face: books, errors, metrics, lines."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from kraken_frames import (
    SyntheticBook,
    instrument_frame,
    multi_symbol_frame,
    ohlc_frame,
    trade_frame,
)

from galfriday_recorder._core import (
    BookOutOfSync,
    MalformedFrame,
    MarketRecorder,
    RecorderError,
    UnknownSymbol,
)
from galfriday_recorder.lab.synth import fixed_text, rfc3339

# Kraken's documented v2 checksum example (docs "Spot Websockets (v2) Book Checksum").
DOC_BIDS = [
    ("45283.5", "0.10000000"),
    ("45283.4", "1.54582015"),
    ("45282.1", "0.10000000"),
    ("45281.0", "0.10000000"),
    ("45280.3", "1.54592586"),
    ("45279.0", "0.07990000"),
    ("45277.6", "0.03310103"),
    ("45277.5", "0.30000000"),
    ("45277.3", "1.54602737"),
    ("45276.6", "0.15445238"),
]
DOC_ASKS = [
    ("45285.2", "0.00100000"),
    ("45286.4", "1.54571953"),
    ("45286.6", "1.54571109"),
    ("45289.6", "1.54560911"),
    ("45290.2", "0.15890660"),
    ("45291.8", "1.54553491"),
    ("45294.7", "0.04454749"),
    ("45296.1", "0.35380000"),
    ("45297.5", "0.09945542"),
    ("45299.5", "0.18772827"),
]


def doc_snapshot(checksum: int = 3310070434, symbol: str = "BTC/USD") -> str:
    def lv(levels: list[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

    return (
        f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{symbol}",'
        f'"bids":[{lv(DOC_BIDS)}],"asks":[{lv(DOC_ASKS)}],"checksum":{checksum}}}]}}'
    )


def lines(rec: MarketRecorder) -> list[str]:
    return rec.drain().decode().splitlines()


def fields_of(line: str) -> dict[str, str]:
    _, fields, _ = line.split(" ")
    return dict(kv.split("=", 1) for kv in fields.split(","))


def view_as_ints(
    rec: MarketRecorder, sb: SyntheticBook
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    bv = rec.book(sb.symbol)
    scale_p, scale_q = 10**sb.ps, 10**sb.qs

    def conv(lv: list[tuple[Decimal, Decimal]]) -> list[tuple[int, int]]:
        return [(int(p * scale_p), int(q * scale_q)) for p, q in lv]

    return conv(bv.bids), conv(bv.asks)


def test_documented_example_book() -> None:
    rec = MarketRecorder()
    [top] = rec.ingest(doc_snapshot().encode(), received_at_ns=1_000)
    assert top.symbol == "BTC/USD"
    assert top.is_snapshot
    assert top.checksum_ok
    assert top.timestamp_ns == 1_000
    assert top.bid_price == Decimal("45283.5")
    assert str(top.bid_qty) == "0.10000000"
    assert top.ask_price == Decimal("45285.2")
    assert str(top.ask_qty) == "0.00100000"
    assert top.spread == pytest.approx(1.7)
    assert top.mid_price == pytest.approx(45284.35)
    bq, aq = 0.1, 0.001
    assert top.wap == pytest.approx((45283.5 * aq + 45285.2 * bq) / (bq + aq))
    assert top.spread_pct == pytest.approx(1.7 / 45284.35 * 100)
    assert set(top.imbalances) == {5, 10}
    b5 = sum(Decimal(q) for _, q in DOC_BIDS[:5])
    a5 = sum(Decimal(q) for _, q in DOC_ASKS[:5])
    assert top.imbalances[5] == pytest.approx(float((b5 - a5) / (b5 + a5)))
    assert "BTC/USD" in repr(top)
    bv = rec.book("BTC/USD")
    assert bv.checksum() == 3310070434
    assert bv.in_sync
    assert bv.bids[0] == (Decimal("45283.5"), Decimal("0.10000000"))
    assert [str(p) for p, _ in bv.asks] == [p for p, _ in DOC_ASKS]
    [line] = lines(rec)
    assert line.startswith("market_data_l2,exchange=kraken,trading_pair=BTC/USD ")
    f = fields_of(line)
    assert f["bid_price_level_0"] == "45283.5"
    assert f["bid_volume_level_0"] == "0.10000000"
    assert f["ask_price_level_9"] == "45299.5"
    assert f["is_snapshot"] == "true"
    assert float(f["spread"]) == pytest.approx(1.7)
    assert {"mid_price", "wap", "imbalance_5", "imbalance_10"} <= f.keys()
    assert line.endswith(" 1000")


def test_random_session_tracks_the_exchange_book() -> None:
    sb = SyntheticBook(depth=10, seed=7)
    rec = MarketRecorder(depth=10)
    rec.ingest(sb.snapshot_frame())
    for frame in sb.updates(3000):
        [top] = rec.ingest(frame)
        assert top.checksum_ok
    assert view_as_ints(rec, sb) == sb.view()
    assert rec.book(sb.symbol).checksum() == sb.expected_checksum()
    stats = rec.stats()
    assert stats["book_messages"] == 3001
    assert stats["out_of_sync"] == 0
    assert stats["lines"] == 3001
    assert len(lines(rec)) == 3001
    assert rec.stats()["buffered_bytes"] == 0


def test_deep_subscription_and_truncation() -> None:
    sb = SyntheticBook(depth=25, seed=3)
    rec = MarketRecorder(depth=25, l2_levels=3)
    rec.ingest(sb.snapshot_frame())
    for frame in sb.updates(500):
        rec.ingest(frame)
    bids, asks = view_as_ints(rec, sb)
    assert len(bids) <= 25
    assert (bids, asks) == sb.view()
    f = fields_of(lines(rec)[-1])
    assert "bid_price_level_2" in f
    assert "bid_price_level_3" not in f


def test_deletes_and_truncation_explicit() -> None:
    rec = MarketRecorder(depth=2, imbalance_levels=(1,))
    snap = (
        '{"channel":"book","type":"snapshot","data":[{"symbol":"X/USD",'
        '"bids":[{"price":10.0,"qty":1.0},{"price":9.0,"qty":1.0}],'
        '"asks":[{"price":11.0,"qty":1.0},{"price":12.0,"qty":1.0}]}]}'
    )
    [top] = rec.ingest(snap)
    assert not top.checksum_ok  # no checksum in the frame: nothing verified
    # insert above the best bid: the worst bid falls out (no delete is sent)
    rec.ingest(
        '{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[{"price":10.5,"qty":2.0}],"asks":[]}]}'
    )
    assert rec.book("X/USD").bids == [
        (Decimal("10.5"), Decimal("2.0")),
        (Decimal("10.0"), Decimal("1.0")),
    ]
    # qty 0 deletes; deleting an absent level is harmless
    rec.ingest(
        '{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[{"price":10.5,"qty":0},{"price":1.0,"qty":0}],"asks":[{"price":11.0,"qty":0.0}]}]}'
    )
    bv = rec.book("X/USD")
    assert bv.bids == [(Decimal("10.0"), Decimal("1.0"))]
    assert bv.asks == [(Decimal("12.0"), Decimal("1.0"))]


def test_out_of_sync_then_recovery() -> None:
    sb = SyntheticBook(seed=11)
    rec = MarketRecorder()
    rec.ingest(sb.snapshot_frame())
    rec.drain()
    good = sb.update_frame(sb.set_level("bid", sb.mid - 1, 12345))
    bad = good.replace(f'"checksum":{sb.expected_checksum()}', '"checksum":1')
    with pytest.raises(BookOutOfSync) as info:
        rec.ingest(bad)
    err = info.value
    assert isinstance(err, RecorderError)
    assert err.symbol == "BTC/USD"
    assert err.expected == 1
    assert err.computed == sb.expected_checksum()
    assert "expected 1" in str(err)
    assert not rec.book("BTC/USD").in_sync
    # later updates raise too and record nothing
    with pytest.raises(BookOutOfSync):
        rec.ingest(sb.update_frame(sb.set_level("ask", sb.mid + 1, 5)))
    assert rec.drain() == b""
    assert rec.stats()["out_of_sync"] == 2
    # a new snapshot recovers
    [top] = rec.ingest(sb.snapshot_frame())
    assert top.checksum_ok
    assert rec.book("BTC/USD").in_sync
    [top] = rec.ingest(sb.update_frame(sb.set_level("ask", sb.mid + 2, 7)))
    assert top.checksum_ok
    assert len(lines(rec)) == 2


def test_snapshot_with_wrong_checksum_is_out_of_sync() -> None:
    rec = MarketRecorder()
    with pytest.raises(BookOutOfSync) as info:
        rec.ingest(doc_snapshot(checksum=42))
    assert info.value.computed == 3310070434
    assert rec.drain() == b""


def test_unknown_symbol() -> None:
    rec = MarketRecorder()
    with pytest.raises(UnknownSymbol) as info:
        rec.ingest(
            '{"channel":"book","type":"update","data":[{"symbol":"NOPE/USD","bids":[{"price":1.0,"qty":1.0}],"asks":[]}]}'
        )
    assert info.value.symbol == "NOPE/USD"
    with pytest.raises(UnknownSymbol):
        rec.book("NOPE/USD")
    with pytest.raises(UnknownSymbol):
        rec.book("never/seen")


MALFORMED = [
    b"",
    b"   ",
    b"not json",
    b"42",
    b'"a string"',
    b"\xff\xfe\x00",
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":1.0,"qty":1.0}',
    b'{"channel":"book","type":"update"}',
    b'{"channel":"book","type":"sometimes","data":[]}',
    b'{"channel":"book","type":"update","data":{"symbol":"ETH/USD"}}',
    b'{"channel":"book","type":"update","data":[{"bids":[]}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":"abc","qty":1}]}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":-5.0,"qty":1}]}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":1e999,"qty":1}]}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":1.0}]}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":99999999999999999999999,"qty":1}]}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[],"checksum":-1}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[],"checksum":99999999999}]}',
    b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[],"timestamp":"yesterday"}]}',
    b'{"channel":"book","type":"snapshot","data":[{"symbol":"bad\\nsym","bids":[]}]}',
    b'{"channel":"book","type":"snapshot","data":[{"symbol":"","bids":[]}]}',
    b'{"channel":"trade","type":"update","data":[{"symbol":"ETH/USD","price":1.0,"qty":1.0}]}',
    b'{"channel":"ohlc","type":"update","data":[{"symbol":"ETH/USD","open":"x"}]}',
    b'{"channel":"instrument","type":"snapshot","data":[1,2]}',
    b"[1,2]",
    b'[1,{"as":[["1.0"]]},"book-10","ETH/USD"]',
    b'[1,{"a":[["1.0","x","1.0"]]},"book-10","ETH/USD"]',
    b'[1,{"a":[["1.0","1.0","1.0"]],"c":"abc"},"book-10","ETH/USD"]',
    b'[1,{"as":[["1.0","1.0","1.0"]],"a":[["1.0","1.0","1.0"]]},"book-10","ETH/USD"]',
]


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_frames_leave_other_books_intact(frame: bytes) -> None:
    rec = MarketRecorder()
    rec.ingest(doc_snapshot())
    before = rec.book("BTC/USD")
    rec.drain()
    with pytest.raises(MalformedFrame) as info:
        rec.ingest(frame)
    assert str(info.value)  # says what and where
    after = rec.book("BTC/USD")
    assert after.checksum() == before.checksum() == 3310070434
    assert after.bids == before.bids
    assert after.in_sync
    assert rec.drain() == b""
    assert rec.stats()["malformed"] >= 1


def test_malformed_message_says_where() -> None:
    rec = MarketRecorder()
    frame = (
        b'{"channel":"book","type":"update","data":'
        b'[{"symbol":"BTC/USD","bids":[{"price":1.5,"qty":"x"}]}]}'
    )
    with pytest.raises(MalformedFrame) as info:
        rec.ingest(frame)
    msg = str(info.value)
    pos = frame.index(b'"x"')
    assert "bids[0].qty" in msg
    assert f"at byte {pos}" in msg
    assert info.value.symbol == "BTC/USD"


def test_multi_symbol_frame_with_one_bad_entry() -> None:
    a = SyntheticBook(symbol="AAA/USD", seed=1)
    b = SyntheticBook(symbol="BBB/USD", seed=2)
    rec = MarketRecorder()
    tops = rec.ingest(multi_symbol_frame("snapshot", [a.snapshot_entry(), b.snapshot_entry()]))
    assert [t.symbol for t in tops] == ["AAA/USD", "BBB/USD"]
    rec.drain()
    bad = '{"symbol":"AAA/USD","bids":[{"price":"oops","qty":1}],"asks":[]}'
    good = b.set_level("bid", b.mid - 1, 777)
    with pytest.raises(MalformedFrame) as info:
        rec.ingest(multi_symbol_frame("update", [bad, good]))
    assert [t.symbol for t in info.value.tops] == ["BBB/USD"]
    assert info.value.symbol == "AAA/USD"
    assert rec.book("BBB/USD").checksum() == b.expected_checksum()
    assert rec.book("AAA/USD").checksum() == a.expected_checksum()
    [line] = lines(rec)
    assert "trading_pair=BBB/USD" in line


def test_v1_book_frames() -> None:
    sb = SyntheticBook(symbol="XBT/USD", price_decimals=5, qty_decimals=8, mid=5_541_30000, seed=5)
    rec = MarketRecorder()
    [top] = rec.ingest(sb.v1_snapshot_frame())
    assert top.symbol == "XBT/USD"
    assert top.is_snapshot
    assert rec.book("XBT/USD").price_decimals == 5
    for _ in range(300):
        side, price, qty = sb.random_op()
        tops = rec.ingest(sb.v1_update_frame(side, price, qty))
        assert tops[0].checksum_ok
    assert view_as_ints(rec, sb) == sb.view()
    # an update carrying both sides in two maps, with a republish flag
    sb.asks[sb.mid + 1] = 50_000_000
    sb.bids[sb.mid - 1] = 25_000_000
    frame = (
        f'[336,{{"a":[["{fixed_text(sb.mid + 1, 5)}","0.50000000","1700000000.000001","r"]]}},'
        f'{{"b":[["{fixed_text(sb.mid - 1, 5)}","0.25000000","1700000000.000002"]],'
        f'"c":"{sb.expected_checksum()}"}},"book-10","XBT/USD"]'
    )
    [top] = rec.ingest(frame)
    assert top.checksum_ok
    assert top.timestamp_ns >= 1_700_000_000_000_002_000
    assert top.bid_price == Decimal(fixed_text(sb.mid - 1, 5))


def test_ignored_frames_return_nothing() -> None:
    rec = MarketRecorder()
    for frame in [
        '{"channel":"heartbeat"}',
        '{"channel":"status","type":"update","data":[{"system":"online","version":"2.0.0"}]}',
        '{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"x","time_out":"y"}',
        '{"event":"heartbeat"}',
        '{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD"}]}',
    ]:
        assert rec.ingest(frame) == []
    assert rec.drain() == b""
    assert rec.stats()["ignored"] == 5


def test_timestamps_strictly_increase_per_symbol() -> None:
    sb = SyntheticBook(seed=4)
    rec = MarketRecorder()
    rec.ingest(sb.snapshot_frame(), received_at_ns=5_000)
    entry = sb.set_level("bid", sb.mid - 1, 11)
    kraken_ts = '"timestamp":"2023-10-06T17:35:55.440295Z"'
    e1 = entry.replace(f'"timestamp":"{rfc3339(sb.ts)}"', kraken_ts)
    entry2 = sb.set_level("bid", sb.mid - 1, 12)
    e2 = entry2.replace(f'"timestamp":"{rfc3339(sb.ts)}"', kraken_ts)
    [t1] = rec.ingest(sb.update_frame(e1))
    [t2] = rec.ingest(sb.update_frame(e2))
    assert t1.timestamp_ns == 1_696_613_755_440_295_000
    assert t2.timestamp_ns == t1.timestamp_ns + 1
    stamps = [int(line.rsplit(" ", 1)[1]) for line in lines(rec)]
    assert stamps == [5_000, t1.timestamp_ns, t1.timestamp_ns + 1]


def test_sampling_and_modes() -> None:
    sb = SyntheticBook(seed=9)
    frames = sb.cyclic_updates(50)
    snap = SyntheticBook(seed=9).snapshot_frame()
    rec = MarketRecorder(l2_sample_interval_ms=1000)
    rec.ingest(snap, received_at_ns=0)
    for i, f in enumerate(frames):
        rec.ingest(f.replace('"timestamp"', '"ts_ignored"'), received_at_ns=(i + 1) * 100_000_000)
    # 0 .. 10 s in 100 ms steps: one point per second
    assert len(lines(rec)) == 11
    assert rec.stats()["l2_sampled_out"] == 90

    rec = MarketRecorder(l2_mode="metrics")
    rec.ingest(snap)
    [line] = lines(rec)
    fields = fields_of(line)
    assert not any(k.startswith(("bid_", "ask_")) for k in fields)
    assert {
        "is_snapshot",
        "spread",
        "mid_price",
        "wap",
        "imbalance_5",
        "imbalance_10",
    } == fields.keys()

    rec = MarketRecorder(l2_mode="off")
    assert len(rec.ingest(snap)) == 1
    assert rec.drain() == b""


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="l2_mode"):
        MarketRecorder(l2_mode="most")
    with pytest.raises(ValueError, match="interval"):
        MarketRecorder(ohlcv_intervals=("1 minute",))
    with pytest.raises(ValueError, match="depth"):
        MarketRecorder(depth=0)
    with pytest.raises(ValueError, match="precisions"):
        MarketRecorder(precisions={"X": (30, 2)})
    with pytest.raises(TypeError):
        MarketRecorder().ingest(123)  # type: ignore[arg-type]


def test_trades_build_exact_bars() -> None:
    rec = MarketRecorder(ohlcv_intervals=("1m", "5m"))
    t0 = 1_700_000_100_000_000_000  # a 5-minute boundary + 0
    assert t0 % 300_000_000_000 == 0
    assert (
        rec.ingest(
            trade_frame(
                "ETH/USD",
                [
                    ("2000.10", "0.5", t0 + 1),
                    ("2001.5", "0.25", t0 + 2),
                    ("1999.99", "0.00000001", t0 + 3),
                ],
            )
        )
        == []
    )
    assert rec.drain() == b""
    rec.ingest(trade_frame("ETH/USD", [("2002", "1", t0 + 60_000_000_000)]))
    [bar] = lines(rec)
    assert bar == (
        "market_data_ohlcv,exchange=kraken,interval=1m,trading_pair=ETH/USD "
        f"open=2000.10,high=2001.5,low=1999.99,close=1999.99,volume=0.75000001 {t0}"
    )
    assert rec.flush_bars() == 2
    out = sorted(lines(rec))
    assert out[0].startswith("market_data_ohlcv,exchange=kraken,interval=1m,")
    assert out[0].endswith(
        f"open=2002,high=2002,low=2002,close=2002,volume=1 {t0 + 60_000_000_000}"
    )
    assert "interval=5m" in out[1]
    assert "volume=1.75000001" in out[1]
    assert "high=2002," in out[1]
    assert rec.flush_bars() == 0
    # a late trade does not reopen a closed bar
    rec.ingest(trade_frame("ETH/USD", [("1", "1", t0 + 120_000_000_000)]))
    rec.ingest(trade_frame("ETH/USD", [("1", "1", t0)]))
    assert rec.stats()["late_trades"] == 1
    assert rec.stats()["trades"] == 6


def test_ohlc_frames_recorded_as_given() -> None:
    rec = MarketRecorder()
    begin = 1_696_436_700_000_000_000
    assert (
        rec.ingest(
            ohlc_frame(
                "MATIC/USD", "0.5624", "0.5628", "0.5622", "0.5627", "30927.68066226", begin, 5
            )
        )
        == []
    )
    rec.ingest(ohlc_frame("MATIC/USD", "1", "2", "0.5", "1.5", "10", begin, 60))
    rec.ingest(ohlc_frame("MATIC/USD", "1", "2", "0.5", "1.5", "10", begin, 1440))
    out = lines(rec)
    assert out[0] == (
        "market_data_ohlcv,exchange=kraken,interval=5m,trading_pair=MATIC/USD "
        f"open=0.5624,high=0.5628,low=0.5622,close=0.5627,volume=30927.68066226 {begin}"
    )
    assert "interval=1h" in out[1]
    assert "interval=1d" in out[2]


def test_instrument_precision_sets_book_scale() -> None:
    rec = MarketRecorder()
    assert rec.ingest(instrument_frame([("DOGE/USD", 7, 8)])) == []
    # snapshot numbers written with fewer decimals than the instrument's precision
    sb = SyntheticBook(symbol="DOGE/USD", mid=1_500_000, price_decimals=7, qty_decimals=8, seed=2)
    frame = (
        '{"channel":"book","type":"snapshot","data":[{"symbol":"DOGE/USD",'
        '"bids":[{"price":0.15,"qty":100}],"asks":[{"price":0.1500001,"qty":2.5}],'
        f'"checksum":{0}}}]}}'
    )
    sb.bids = {1_500_000: 100 * 10**8}
    sb.asks = {1_500_001: 250_000_000}
    frame = frame.replace('"checksum":0', f'"checksum":{sb.expected_checksum()}')
    [top] = rec.ingest(frame)
    assert top.checksum_ok
    bv = rec.book("DOGE/USD")
    assert (bv.price_decimals, bv.qty_decimals) == (7, 8)
    assert str(top.bid_price) == "0.1500000"
    assert str(top.ask_qty) == "2.50000000"


def test_configured_precision_wins() -> None:
    rec = MarketRecorder(precisions={"XRP/USD": (5, 8)})
    rec.ingest(
        '{"channel":"book","type":"snapshot","data":[{"symbol":"XRP/USD",'
        '"bids":[{"price":0.5,"qty":1}],"asks":[{"price":0.51,"qty":1}]}]}'
    )
    assert rec.book("XRP/USD").bids == [(Decimal("0.50000"), Decimal("1.00000000"))]
    assert str(rec.book("XRP/USD").bids[0][0]) == "0.50000"


def test_update_with_more_decimals_widens_the_book_exactly() -> None:
    rec = MarketRecorder()
    rec.ingest(
        '{"channel":"book","type":"snapshot","data":[{"symbol":"Z/USD",'
        '"bids":[{"price":1.5,"qty":1.0}],"asks":[{"price":2.5,"qty":1.0}]}]}'
    )
    rec.ingest(
        '{"channel":"book","type":"update","data":[{"symbol":"Z/USD","bids":[{"price":1.55,"qty":0.125}],"asks":[]}]}'
    )
    assert rec.book("Z/USD").bids == [
        (Decimal("1.55"), Decimal("0.125")),
        (Decimal("1.5"), Decimal("1")),
    ]


def test_stats_and_symbols() -> None:
    rec = MarketRecorder()
    rec.ingest(doc_snapshot())
    rec.ingest(doc_snapshot(symbol="ETH/USD").replace("3310070434", str(3310070434)))
    s = rec.stats()
    for key in (
        "frames",
        "book_messages",
        "lines",
        "buffered_bytes",
        "malformed",
        "out_of_sync",
        "ingest_ns_p50",
        "ingest_ns_p99",
        "ingest_ns_max",
    ):
        assert key in s
    assert s["frames"] == 2
    assert s["lines"] == 2
    assert s["buffered_bytes"] > 0
    assert 0 < s["ingest_ns_p50"] <= s["ingest_ns_p99"] <= s["ingest_ns_max"]
    assert rec.symbols() == ["BTC/USD", "ETH/USD"]


def test_an_undrained_buffer_stops_at_its_cap_and_counts_what_it_drops() -> None:
    sb = SyntheticBook(symbol="XRP/USD", mid=62_345, price_decimals=5, seed=3)
    rec = MarketRecorder(max_buffer_bytes=4096)
    rec.ingest(sb.snapshot_frame())
    for frame in sb.cyclic_updates(100):  # 200 frames
        rec.ingest(frame)  # nobody drains: the bot keeps trading, memory stays put
    s = rec.stats()
    assert s["book_messages"] == 201
    assert s["lines"] + s["lines_dropped"] == 201
    assert s["lines_dropped"] > 150
    assert rec.book("XRP/USD").checksum() == sb.expected_checksum()
    lines = rec.drain().splitlines(keepends=True)
    assert len(lines) == s["lines"]
    # Lines stop once the cap is reached; the last one to fit may cross it.
    assert 4096 <= s["buffered_bytes"] < 4096 + len(lines[-1])
    rec.ingest(sb.cyclic_updates(1)[0])
    assert rec.stats()["lines"] == s["lines"] + 1  # drained: room again


def test_threads_share_one_recorder() -> None:
    rec = MarketRecorder()
    books = [SyntheticBook(symbol=f"S{i}/USD", seed=i) for i in range(4)]
    for sb in books:
        rec.ingest(sb.snapshot_frame())
    streams = [sb.updates(1500) for sb in books]
    errors: list[BaseException] = []
    drained: list[bytes] = []

    def run(frames: list[str]) -> None:
        try:
            for f in frames:
                rec.ingest(f.encode())
                if len(drained) < 1000:
                    drained.append(rec.drain())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for sb in books:
        assert rec.book(sb.symbol).checksum() == sb.expected_checksum()
    total = b"".join(drained) + rec.drain()
    assert total.count(b"\n") == 4 + 4 * 1500
