"""`encode_line` and the recorder's lines, checked against a real InfluxDB 1.x."""

from __future__ import annotations

import math
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
from kraken_frames import SyntheticBook, ohlc_frame, trade_frame

from galfriday_recorder._core import MarketRecorder, encode_line


def test_encode_line_basics() -> None:
    line = encode_line(
        "system_metrics",
        {"module_id": "", "host_id": "vm-1"},
        {"cpu_usage_pct": 12.5, "event_queue_depth": 3, "websocket_connected": True, "one": 1.0},
        1_700_000_000_000_000_000,
    )
    assert line == (
        b"system_metrics,host_id=vm-1 cpu_usage_pct=12.5,event_queue_depth=3i,"
        b"websocket_connected=true,one=1.0 1700000000000000000\n"
    )


def test_encode_line_escaping() -> None:
    line = encode_line(
        "wea ther,m",
        {"z": "last", "loc ation": "us,mid=west", "a": "first"},
        {"temp=rature": 1.5, "s": 'he said "hi" \\ bye', "f,g": False},
        0,
    )
    assert line == (
        b"wea\\ ther\\,m,a=first,loc\\ ation=us\\,mid\\=west,z=last "
        b'temp\\=rature=1.5,s="he said \\"hi\\" \\\\ bye",f\\,g=false 0\n'
    )


def test_encode_line_values() -> None:
    line = encode_line(
        "portfolio_metrics",
        {"account_id": "main"},
        {
            "total_equity": Decimal("10000.50"),
            "neg": Decimal("-0.00000001"),
            "sci": Decimal("1E+3"),
            "skipped": None,
            "big": 2**62,
            "tiny": 1e-7,
        },
        5,
    )
    assert line == (
        b"portfolio_metrics,account_id=main total_equity=10000.50,neg=-0.00000001,sci=1000,"
        b"big=4611686018427387904i,tiny=1e-7 5\n"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("m", {}, {"x": math.nan}, 1), "'x'|\"x\""),
        (("m", {}, {"inf_field": math.inf}, 1), "inf_field"),
        (("m", {}, {"ninf": -math.inf}, 1), "ninf"),
        (("m", {}, {"d": Decimal("NaN")}, 1), '"d"'),
        (("m", {}, {"d": Decimal("-Infinity")}, 1), '"d"'),
        (("m", {"host": "a\nb"}, {"x": 1}, 1), "newline"),
        (("m", {}, {"msg": "a\nb"}, 1), '"msg"'),
        (("m\n", {}, {"x": 1}, 1), "measurement"),
        (("m", {}, {"bad\nkey": 1}, 1), "field key"),
        (("m", {}, {}, 1), "at least one field"),
        (("m", {}, {"x": None}, 1), "at least one field"),
        (("", {}, {"x": 1}, 1), "measurement"),
        (("m", {"t": "ends\\"}, {"x": 1}, 1), "backslash"),
        (("m", {}, {"big": 2**64}, 1), '"big"'),
    ],
)
def test_encode_line_refusals(args: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        encode_line(*args)
    assert any(n in str(info.value) for n in needle.split("|")), str(info.value)


def test_encode_line_type_errors() -> None:
    with pytest.raises(TypeError, match='"obj"'):
        encode_line("m", {}, {"obj": object()}, 1)
    with pytest.raises(TypeError):
        encode_line("m", {"t": 5}, {"x": 1}, 1)  # type: ignore[dict-item]


# --- real InfluxDB -------------------------------------------------------------


def write(influx: Any, db: str, body: bytes) -> None:
    req = urllib.request.Request(
        f"{influx.url()}/write?db={db}&precision=ns", data=body, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204


def rows(influx: Any, db: str, q: str) -> list[dict[str, Any]]:
    answer = influx.query(q, db=db)
    out = []
    for result in answer["results"]:
        assert "error" not in result, result
        for series in result.get("series", []):
            for values in series["values"]:
                out.append(dict(zip(series["columns"], values, strict=True)))
    return out


def field_types(influx: Any, db: str, measurement: str) -> dict[str, str]:
    return {
        r["fieldKey"]: r["fieldType"]
        for r in rows(influx, db, f'SHOW FIELD KEYS FROM "{measurement}"')
    }


def test_general_lines_round_trip_through_influxdb(influx_service: Any, influx_db: str) -> None:
    tricky_tags = {
        "exchange": "kraken",
        "trading_pair": "XRP/USD",
        "feature_set_id": "set one, with=equals",
        "model id": "a\\b",
    }
    fields: dict[str, Any] = {
        "rsi_14": 55.25,
        "count": 42,
        "ok": True,
        "note": 'say "hi" \\ there, ok=yes',
        "one": 1.0,
        "money": Decimal("-12.50"),
        "small": 1e-7,
        "comma,key": 3.5,
    }
    ts = 1_700_000_000_123_456_789
    body = encode_line("fea tures,x", tricky_tags, fields, ts)
    body += encode_line("system_metrics", {"host_id": "vm 1"}, {"event_queue_depth": 7}, ts)
    write(influx_service, influx_db, body)

    [row] = rows(influx_service, influx_db, 'SELECT * FROM "fea tures,x"')
    assert row["time"] == ts
    for k, v in tricky_tags.items():
        assert row[k] == v
    assert row["rsi_14"] == 55.25
    assert row["count"] == 42
    assert row["ok"] is True
    assert row["note"] == fields["note"]
    assert row["one"] == 1.0
    assert row["money"] == -12.5
    assert row["small"] == 1e-7
    assert row["comma,key"] == 3.5
    types = field_types(influx_service, influx_db, "fea tures,x")
    assert types["one"] == "float"
    assert types["money"] == "float"
    assert types["count"] == "integer"
    assert types["ok"] == "boolean"
    assert types["note"] == "string"
    [row] = rows(influx_service, influx_db, 'SELECT * FROM "system_metrics"')
    assert row["host_id"] == "vm 1"
    assert row["event_queue_depth"] == 7


def test_market_lines_round_trip_through_influxdb(influx_service: Any, influx_db: str) -> None:
    sb = SyntheticBook(symbol="XRP/USD", mid=5_123_4, price_decimals=5, qty_decimals=8, seed=3)
    rec = MarketRecorder()
    rec.ingest(sb.snapshot_frame())
    tops = []
    for f in sb.updates(200):
        tops += rec.ingest(f)
    t0 = 1_700_000_100_000_000_000
    rec.ingest(
        trade_frame("XRP/USD", [("0.51234", "100.5", t0), ("0.51300", "1", t0 + 61_000_000_000)])
    )
    rec.ingest(ohlc_frame("XRP/USD", "0.5", "0.6", "0.4", "0.55", "1234.5", t0, 60))
    rec.flush_bars()
    write(influx_service, influx_db, rec.drain())

    got = rows(influx_service, influx_db, 'SELECT * FROM "market_data_l2" ORDER BY time')
    assert len(got) == 201
    last, top = got[-1], tops[-1]
    assert last["time"] == top.timestamp_ns
    assert last["exchange"] == "kraken"
    assert last["trading_pair"] == "XRP/USD"
    bids, _asks = sb.view()
    for i, (p, q) in enumerate(bids):
        assert last[f"bid_price_level_{i}"] == float(Decimal(p) / 10**5)
        assert last[f"bid_volume_level_{i}"] == float(Decimal(q) / 10**8)
    assert last["ask_price_level_0"] == float(top.ask_price)
    assert last["spread"] == top.spread
    assert last["wap"] == top.wap
    assert last["imbalance_5"] == top.imbalances[5]
    assert last["is_snapshot"] is False
    assert got[0]["is_snapshot"] is True

    bars = rows(influx_service, influx_db, 'SELECT * FROM "market_data_ohlcv" ORDER BY time')
    by_interval = {(b["interval"], b["time"]): b for b in bars}
    one = by_interval[("1m", t0)]
    assert (one["open"], one["high"], one["low"], one["close"], one["volume"]) == (
        0.51234,
        0.51234,
        0.51234,
        0.51234,
        100.5,
    )
    five = by_interval[("5m", t0)]
    assert five["volume"] == 101.5
    assert five["close"] == 0.513
    hour = by_interval[("1h", t0)]
    assert hour["volume"] == 1234.5
    assert set(field_types(influx_service, influx_db, "market_data_ohlcv").values()) == {"float"}
