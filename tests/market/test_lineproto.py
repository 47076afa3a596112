"""`encode_line` and the recorder's lines, checked against a real InfluxDB 1.x."""

from __future__ import annotations

import math
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
from kraken_frames import SyntheticBook, ohlc_frame, trade_frame

from galfriday_recorder._core import InvalidPoint, MarketRecorder, encode_line


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
    # portfolio_metrics fields are Float whatever the caller passed: 2**62 too.
    assert line == (
        b"portfolio_metrics,account_id=main total_equity=10000.50,neg=-0.00000001,sci=1000,"
        b"big=4.611686018427388e18,tiny=1e-7 5\n"
    )
    # Outside the six measurements the caller's type is the field's type.
    assert encode_line("other", {}, {"big": 2**62}, 5) == b"other big=4611686018427387904i 5\n"


@pytest.mark.timeout(5, method="signal")  # a liveness bound, not a speed measurement
def test_a_decimal_exponent_costs_nothing_to_encode() -> None:
    """A Decimal's plain text holds every zero its exponent implies: 1E+999999999 would be
    a gigabyte (found by the fuzzer as an out-of-memory); such values go through float."""
    with pytest.raises(ValueError, match='"huge"'):
        encode_line("m", {}, {"huge": Decimal("1E+999999999")}, 1)
    assert encode_line("m", {}, {"tiny": Decimal("-1E-999999999")}, 1) == b"m tiny=-0.0 1\n"
    assert (
        encode_line("m", {}, {"exact": Decimal("1E+62")}, 1) == b"m exact=1" + b"0" * 62 + b" 1\n"
    )
    assert encode_line("m", {}, {"float": Decimal("1E+64")}, 1) == b"m float=1e64 1\n"


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


# Each measurement of the seed with ints, Decimals and floats for its Float fields.
SEED_POINTS: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("market_data_l2", {"exchange": "kraken", "trading_pair": "XRP/USD"},
     {"bid_price_level_0": 1, "spread": Decimal("0.5"), "is_snapshot": True, "imbalance_5": 0}),
    ("market_data_ohlcv", {"exchange": "kraken", "trading_pair": "XRP/USD", "interval": "1m"},
     {"open": 1, "high": Decimal(2), "low": 0, "close": 1.5, "volume": 10**20}),
    ("features", {"exchange": "kraken", "trading_pair": "XRP/USD", "feature_set_id": "v1"},
     {"rsi_14": 55, "momentum_5": Decimal("-1")}),
    ("predictions", {"exchange": "k", "trading_pair": "XRP/USD", "model_id": "m",
                     "prediction_target": "up"},
     {"prediction_value": 1, "confidence": 0}),
    ("portfolio_metrics", {"account_id": "main"},
     {"total_equity": 10000, "position_qty_XRPUSD": -(2**63), "total_drawdown_pct": 0}),
    ("system_metrics", {"host_id": "vm", "module_id": "risk"},
     {"cpu_usage_pct": 3, "event_queue_depth": 4, "websocket_connected": False,
      "api_call_latency_ms": Decimal("0.25")}),
]  # fmt: skip


def test_seed_field_types_whatever_the_caller_passed(influx_service: Any, influx_db: str) -> None:
    """The first write types a field for good: an int for a Float field must not make it integer."""
    ts = 1_700_000_000_000_000_000
    body = b"".join(encode_line(m, tags, fields, ts) for m, tags, fields in SEED_POINTS)
    # The same fields with floats afterwards: all stored (no type conflict, no partial write).
    body += b"".join(
        encode_line(
            m,
            tags,
            {k: 0.5 if not isinstance(v, bool) and k != "event_queue_depth" else v
             for k, v in fields.items()},
            ts + 1,
        )
        for m, tags, fields in SEED_POINTS
    )  # fmt: skip
    write(influx_service, influx_db, body)
    for m, _tags, fields in SEED_POINTS:
        expected = {
            k: "boolean" if isinstance(v, bool) else "integer" if k == "event_queue_depth"
            else "float"
            for k, v in fields.items()
        }  # fmt: skip
        assert field_types(influx_service, influx_db, m) == expected, m
        got = rows(influx_service, influx_db, f'SELECT * FROM "{m}" ORDER BY time')
        assert len(got) == 2, m
        for k, v in fields.items():  # JSON may carry an integral float as integer text
            read = got[0][k] if isinstance(v, bool) else float(got[0][k])
            assert read == (v if isinstance(v, bool) else float(v)), (m, k)


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "needle"),
    [
        ("predictions", {}, {"prediction_value": True}, 'predictions field "prediction_value"'),
        ("predictions", {}, {"confidence": "0.9"}, 'predictions field "confidence"'),
        ("predictions", {}, {"score": 0.9}, '"score" is not a field of predictions'),
        ("market_data_ohlcv", {}, {"trades": 3}, '"trades" is not a field of market_data_ohlcv'),
        ("market_data_l2", {}, {"is_snapshot": 1}, 'market_data_l2 field "is_snapshot"'),
        ("system_metrics", {}, {"event_queue_depth": 3.0}, 'system_metrics field "event_queue'),
        ("system_metrics", {}, {"event_queue_depth": True}, 'system_metrics field "event_queue'),
        ("system_metrics", {}, {"websocket_connected": 1}, 'system_metrics field "websocket'),
        ("features", {}, {"rsi_14": 10**400}, 'features field "rsi_14"'),
        ("features", {}, {"rsi_14": False}, 'features field "rsi_14"'),
        ("features", {"model_id": "x"}, {"rsi_14": 1.0}, 'tag "model_id" is not a tag of features'),
        ("portfolio_metrics", {}, {"total_equity": "1"}, 'portfolio_metrics field "total_equity"'),
    ],
)
def test_seed_field_kinds_refused(
    measurement: str, tags: dict[str, str], fields: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidPoint) as info:
        encode_line(measurement, tags, fields, 1)
    assert needle in str(info.value)


def _parse(line: bytes) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The core's lines (no escapes in its names): typed as InfluxDB would type them."""
    key, field_part, _ts = line.decode().split(" ")
    measurement, *tag_pairs = key.split(",")
    fields: dict[str, Any] = {}
    for pair in field_part.split(","):
        k, v = pair.split("=")
        fields[k] = (
            v == "true" if v in ("true", "false") else int(v[:-1]) if v[-1] == "i" else (float(v))
        )
    return measurement, dict(p.split("=") for p in tag_pairs), fields


def test_market_core_lines_follow_the_schema() -> None:
    """Every line of the core re-encodes through the schema check unchanged in kind."""
    sb = SyntheticBook(symbol="XRP/USD", mid=5_123_4, price_decimals=5, qty_decimals=8, seed=4)
    rec = MarketRecorder(ohlcv_intervals=["1m"])
    rec.ingest(sb.snapshot_frame())
    for f in sb.updates(20):
        rec.ingest(f)
    t0 = 1_700_000_100_000_000_000
    rec.ingest(trade_frame("XRP/USD", [("0.51234", "100.5", t0)]))
    rec.ingest(ohlc_frame("XRP/USD", "0.5", "0.6", "0.4", "0.55", "1234.5", t0, 60))
    rec.flush_bars()
    lines = rec.drain().splitlines()
    assert {line.split(b",")[0] for line in lines} == {b"market_data_l2", b"market_data_ohlcv"}
    for line in lines:
        measurement, tags, fields = _parse(line)
        assert encode_line(measurement, tags, fields, 1)  # raises on a kind the schema refuses
        assert not any(type(v) is int for v in fields.values()), line


def test_encode_line_type_errors() -> None:
    with pytest.raises(TypeError, match='"obj"'):
        encode_line("m", {}, {"obj": object()}, 1)  # type: ignore[dict-item]  # deliberately wrong type
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
    assert top.ask_price is not None
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
