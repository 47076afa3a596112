"""Kraken v1 ``trade`` and ``ohlc-N`` frames build the same bars and
``market_data_ohlcv`` points as their v2 counterparts."""

from __future__ import annotations

import pytest
from kraken_frames import ohlc_frame, trade_frame

from galfriday_recorder._core import MalformedFrame, MarketRecorder

# The examples of Kraken's v1 documentation (docs.kraken.com, websocket-v1 trade and ohlc).
DOC_V1_TRADE = (
    '[0,[["5541.20000","0.15850568","1534614057.321597","s","l",""],'
    '["6060.00000","0.02455000","1534614057.324998","b","l",""]],"trade","XBT/USD"]'
)
DOC_V1_OHLC = (
    '[42,["1542057314.748456","1542057360.435743","3586.70000","3586.70000",'
    '"3586.60000","3586.60000","3586.68894","0.03373000",2],"ohlc-5","XBT/USD"]'
)


def drained(rec: MarketRecorder) -> list[str]:
    rec.flush_bars()
    return rec.drain().decode().splitlines()


def test_documented_v1_trades_build_the_bars_v2_trades_build() -> None:
    v1 = MarketRecorder(ohlcv_intervals=("1m",))
    assert v1.ingest(DOC_V1_TRADE) == []
    v2 = MarketRecorder(ohlcv_intervals=("1m",))
    v2.ingest(
        trade_frame(
            "XBT/USD",
            [
                ("5541.20000", "0.15850568", 1534614057_321597000),
                ("6060.00000", "0.02455000", 1534614057_324998000),
            ],
        )
    )
    lines = drained(v1)
    assert lines == drained(v2)
    assert lines == [
        "market_data_ohlcv,exchange=kraken,interval=1m,trading_pair=XBT/USD "
        "open=5541.20000,high=6060.00000,low=5541.20000,close=6060.00000,"
        "volume=0.18305568 1534614000000000000"
    ]
    assert v1.stats()["trades"] == 2


def test_documented_v1_ohlc_is_the_v2_point() -> None:
    v1 = MarketRecorder()
    assert v1.ingest(DOC_V1_OHLC) == []
    [line] = v1.drain().decode().splitlines()
    # The running 5-minute candle last updated at 1542057314.7 s starts at 1542057300 s.
    begin_ns = 1_542_057_300_000_000_000
    assert line == (
        "market_data_ohlcv,exchange=kraken,interval=5m,trading_pair=XBT/USD "
        "open=3586.70000,high=3586.70000,low=3586.60000,close=3586.60000,"
        f"volume=0.03373000 {begin_ns}"
    )
    v2 = MarketRecorder()
    v2.ingest(
        ohlc_frame(
            "XBT/USD",
            "3586.70000",
            "3586.70000",
            "3586.60000",
            "3586.60000",
            "0.03373000",
            begin_ns,
            5,
        )
    )
    assert v2.drain().decode().splitlines() == [line]
    assert v1.stats()["ohlc"] == 1


def test_v1_ohlc_with_a_whole_minute_etime() -> None:
    """Kraken's live etime is the interval's end: the bar starts one interval earlier."""
    rec = MarketRecorder()
    rec.ingest(
        '[42,["1629469015.282374","1629469080.000000","1.5","2","1","1.75","1.6","10",4],'
        '"ohlc-1","XBT/USD"]'
    )
    [line] = rec.drain().decode().splitlines()
    assert line.endswith(" 1629469020000000000")
    assert ",interval=1m," in line


@pytest.mark.parametrize(
    "frame",
    [
        '[0,[["5541.2","0.1"]],"trade","XBT/USD"]',
        '[0,[["5541.2","x","1534614057.3"]],"trade","XBT/USD"]',
        '[0,"nope","trade","XBT/USD"]',
        '[42,["1542057314.7","1542057360.4","1","1","1"],"ohlc-5","XBT/USD"]',
        '[42,["1","1542057360","1","1","1","1","1","1",1],"ohlc-x","XBT/USD"]',
        '[42,["1","99999999999999999999","1","1","1","1","1","1",1],"ohlc-5","XBT/USD"]',
    ],
)
def test_bad_v1_trade_and_ohlc_frames_are_malformed(frame: str) -> None:
    rec = MarketRecorder()
    with pytest.raises(MalformedFrame) as info:
        rec.ingest(frame)
    assert info.value.symbol == "XBT/USD"
    assert rec.drain() == b""
