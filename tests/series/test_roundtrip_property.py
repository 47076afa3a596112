"""Accepted means stored: every line ``encode_line`` returns reads back identical from the
real InfluxDB 1.6; everything else is refused at the call with ``InvalidPoint``.

Names, keys and values are drawn with the characters that matter to line protocol
(backslash, space, comma, equals, quotes, ``#``, tab, NUL, CR, LF) weighted up beside
any unicode (lone surrogates included), floats with subnormals and extremes, int64 at
and past its ends, timestamps across and beyond InfluxDB's range. Each example gets a
fresh database, so a field typed by one example cannot refuse the next.

``GALFRIDAY_PROPERTY_EXAMPLES`` sets the number of examples (``make test``: 150;
``make fuzz``: thousands).
"""

from __future__ import annotations

import calendar
import json
import math
import os
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lpkit import post_lines

from galfriday_recorder._core import InvalidPoint, encode_line
from galfriday_recorder.lab.services import InfluxService, VictoriaMetricsService
from galfriday_recorder.recorder import _ns

EXAMPLES = int(os.environ.get("GALFRIDAY_PROPERTY_EXAMPLES", "150"))
SEED_MEASUREMENTS = {
    "market_data_l2",
    "market_data_ohlcv",
    "features",
    "predictions",
    "portfolio_metrics",
    "system_metrics",
}
MIN_NS, MAX_NS = -(2**63) + 2, 2**63 - 2

SPECIALS = [*'\\ ,="#\t\x00\r\n', "\\ ", "\\,", "\\=", '\\"', "\\\\", "time"]
# Mostly characters a line can carry (the escaped ones included), so most examples
# get written and read back; in the second kind of name, what must be refused.
chars = st.one_of(
    st.sampled_from(list("abcXYZ019_/.-")),
    st.sampled_from(list("abcXYZ019_/.-")),
    st.characters(codec="utf-8", exclude_characters="\\\n\r\x00"),
    st.sampled_from([" ", ",", "=", '"', "#", "\t", "\\a", "time"]),
)
hostile_chars = st.one_of(
    chars, st.sampled_from(SPECIALS), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
)
names = st.one_of(
    st.lists(chars, min_size=1, max_size=12).map("".join),
    st.lists(chars, min_size=1, max_size=12).map("".join),
    st.lists(hostile_chars, min_size=0, max_size=6).map("".join),
)
floats = st.one_of(
    st.floats(allow_subnormal=True),
    st.sampled_from(
        [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1e-7, 1e16]
    ),
)
ints = st.one_of(
    st.integers(-(2**63) - 1, 2**63),
    st.sampled_from([-(2**63), 2**63 - 1, 0, -1]),
)
values = st.one_of(floats, ints, st.booleans(), names)
timestamps = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([MIN_NS, MAX_NS, MIN_NS - 1, MAX_NS + 1, 0, -1]),
)


def _store_and_read(
    influx: InfluxService, body: bytes
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Write ``body`` to a fresh database; every series (tags apart) and every field's type."""
    db = "roundtrip"
    influx.create_database(db)
    try:
        status, answer = post_lines(influx.url(), db, body)
        assert status == 204, (body[:2000], status, answer)
        [result] = influx.query("SELECT * FROM /.*/ GROUP BY *", db=db)["results"]
        assert "error" not in result, result
        kinds = influx.query("SHOW FIELD KEYS", db=db)["results"][0]
    finally:
        influx.query(f'DROP DATABASE "{db}"')
    types = {k: t for s in kinds.get("series", []) for k, t in s["values"]}
    return result.get("series", []), types


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "float", str: "string"}[type(value)]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=4),
    fields=st.dictionaries(names, values, min_size=1, max_size=4),
    ts=timestamps,
)
def test_accepted_lines_read_back_identical_from_influxdb(
    influx_service: InfluxService,
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, Any],
    ts: int,
) -> None:
    if measurement in SEED_MEASUREMENTS:  # typed by the schema; tested in test_lineproto
        return
    try:
        line = encode_line(measurement, tags, fields, ts)
    except InvalidPoint:
        event("refused at the call")
        return
    event("written and read back")
    series, types = _store_and_read(influx_service, line)
    expected_tags = {k: v for k, v in tags.items() if v}
    assert len(series) == 1, (line, series)
    [got] = series
    assert got["name"] == measurement, line
    assert {k: v for k, v in got.get("tags", {}).items() if v} == expected_tags, line
    [row] = got["values"]
    read = dict(zip(got["columns"], row, strict=True))
    assert read.pop("time") == ts, line
    assert set(read) == set(fields), line
    for key, value in fields.items():
        assert types[key] == _kind(value), (line, key)
        if isinstance(value, float):
            assert math.isfinite(value), (line, key)
            assert float(read[key]) == value, (line, key)
        else:
            assert read[key] == value, (line, key)


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "ts"),
    [
        ("m", {"t": "x" * 60_000}, {"f": 1.0}, 1),  # a key near 1.x's 64 KiB limit
        ("m", {}, {"s": "\\" * 100_000 + '"' * 100_000}, 2),  # a 200 kB string of escapes
        ("m" * 30_000, {"k" * 30_000: "v"}, {"f": 1}, MAX_NS),
    ],
)
def test_huge_lines_read_back_identical(
    influx_service: InfluxService,
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, Any],
    ts: int,
) -> None:
    series, _types = _store_and_read(influx_service, encode_line(measurement, tags, fields, ts))
    [got] = series
    assert got["name"] == measurement
    assert got.get("tags", {}) == tags
    [row] = got["values"]
    assert dict(zip(got["columns"], row, strict=True)) == {"time": ts, **fields}


def test_series_key_past_the_limit_is_refused() -> None:
    with pytest.raises(InvalidPoint, match="series key"):
        encode_line("m", {"t": "x" * 65_530}, {"f": 1.0}, 1)


def _vm_export(victoria: VictoriaMetricsService, case: str) -> list[dict[str, Any]]:
    urllib.request.urlopen(f"{victoria.url()}/internal/force_flush").close()
    query = urllib.parse.urlencode({"match[]": f'{{case="{case}"}}'})
    with urllib.request.urlopen(f"{victoria.url()}/api/v1/export?{query}") as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line]


@settings(
    max_examples=max(EXAMPLES // 3, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(names, st.one_of(floats, ints, st.booleans()), min_size=1, max_size=3),
    ts=st.integers(1_735_689_600_000, int(time.time() * 1000)).map(lambda ms: ms * 1_000_000),
)
def test_accepted_lines_read_back_from_victoria_metrics(
    victoria_service: VictoriaMetricsService,
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, Any],
    ts: int,
) -> None:
    """The v2 path: every name and tag reads back exactly from VictoriaMetrics.

    VictoriaMetrics is lossy by design: milliseconds within its retention and not
    far in the future (it drops the rest silently), numbers only, and about 12
    significant digits (4.466783519960724e-291 reads back as 4.4667835199599994e-291,
    subnormals as 0);
    so times are whole ms since 2025 and values close.
    """
    if measurement in SEED_MEASUREMENTS or "case" in tags or "__name__" in tags:
        return
    case = uuid.uuid4().hex
    try:
        line = encode_line(measurement, {**tags, "case": case}, fields, ts)
    except InvalidPoint:
        event("refused at the call")
        return
    event("written and read back")
    req = urllib.request.Request(
        f"{victoria_service.url()}/api/v2/write?org=o&bucket=b&precision=ns",
        data=line,
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204
    got: dict[str, Any] = {}
    deadline = time.monotonic() + 10  # a new series takes a moment to be searchable
    while len(got) < len(fields) and time.monotonic() < deadline:
        got = {row["metric"]["__name__"]: row for row in _vm_export(victoria_service, case)}
    expected_labels = {k: v for k, v in tags.items() if v} | {"case": case}
    assert set(got) == {f"{measurement}_{key}" for key in fields}, line
    for key, value in fields.items():
        row = got[f"{measurement}_{key}"]
        labels = {k: v for k, v in row["metric"].items() if k != "__name__"}
        assert labels == expected_labels, line
        assert row["timestamps"] == [ts // 1_000_000], line
        [read] = row["values"]
        assert math.isclose(read, float(value), rel_tol=1e-11, abs_tol=1e-300), line


# -- timestamps: any aware datetime in InfluxDB's range, exact to the ns --------------------

FIRST = datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=timezone.utc)  # MIN_NS rounded up to µs
LAST = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc)  # MAX_NS rounded down
zones = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)


@settings(max_examples=EXAMPLES * 10, deadline=None)
@given(st.datetimes(timezones=zones))
def test_datetimes_become_exact_ns_or_are_refused(when: datetime) -> None:
    expected = calendar.timegm(when.utctimetuple()) * 10**9 + when.microsecond * 1000
    if FIRST <= when <= LAST:
        assert _ns(when) == expected
        assert encode_line("m", {}, {"f": 1.0}, _ns(when)).endswith(b" %d\n" % expected)
    else:
        with pytest.raises(InvalidPoint, match="timestamp"):
            encode_line("m", {}, {"f": 1.0}, _ns(when))


def test_the_edges_of_the_range_are_stored_to_the_ns(influx_service: InfluxService) -> None:
    edges = [
        FIRST,
        LAST,
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc),  # was 1 s late
        datetime(1970, 1, 1, tzinfo=timezone(timedelta(hours=-5), "EST")),
    ]
    body = b"".join(
        encode_line("m", {"i": str(i)}, {"f": 1.0}, _ns(t)) for i, t in enumerate(edges)
    )
    series, _types = _store_and_read(influx_service, body)
    got = {s["tags"]["i"]: s["values"][0][0] for s in series}
    assert got == {str(i): calendar.timegm(t.utctimetuple()) * 10**9 + t.microsecond * 1000
                   for i, t in enumerate(edges)}  # fmt: skip
    assert got["2"] == -500_000_000
