"""Raw text handed straight to ``SeriesWriter.write``: every line it accepts is stored or
counted refused, against the real InfluxDB 1.6.

InfluxDB 1.x answers 204 to a blank line (empty, or only spaces and tabs) and to a
comment (``#`` first), and stores nothing of them; ``write`` refuses such text with
``InvalidPoint`` naming the line. Every other line, hostile or not (CR, a field or tag
named ``time``, type conflicts, truncations, garbage), is either stored (counted in
``lines_written``) or refused by the server (``lines_rejected``); the counters are
compared with what the server holds. A line without a timestamp of its own is refused
too: the server would stamp it on arrival, so a split batch's resend stored it twice.
Each valid line is its own series, so InfluxDB's deduplication of identical points
cannot hide a miscount.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from galfriday_recorder import InvalidPoint
from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.series import SeriesWriter

EXAMPLES = int(os.environ.get("GALFRIDAY_PROPERTY_EXAMPLES", "150")) // 3
T0 = 1_700_000_000_000_000_000
GARBAGE = st.binary(max_size=24).map(lambda b: b.replace(b"\n", b"")) | st.lists(
    st.sampled_from([b" ", b",", b"=", b'"', b"\\", b"#", b"\t", b"\r", b"f", b"1", b"i", b"."]),
    max_size=12,
).map(b"".join)


def _valid(m: bytes, i: int) -> bytes:
    return b"%s,i=%d f=%d.5 %d" % (m, i, i, T0 + i)


@st.composite
def raw_line(draw: st.DrawFn, m: bytes, i: int, refusable: bool) -> bytes:
    line = _valid(m, i)
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "valid",
                "comment",
                "blank",
                "cr",
                "leading-ws",
                "trailing-ws",
                "time-field",
                "time-and-more",
                "time-tag",
                "no-timestamp",
                "integer-f",
                "truncated",
                "garbage",
            ]
        )
    )
    if kind in ("comment", "blank", "cr", "no-timestamp", "truncated") and not refusable:
        kind = "valid"
    event(kind)
    ws = draw(st.sampled_from([b"", b" ", b"\t", b" \t "]))
    match kind:
        case "comment":
            return ws + b"#" + draw(st.sampled_from([line, b"", b" x"]))
        case "blank":
            return ws
        case "cr":
            return draw(st.sampled_from([b"\r", line + b"\r", b" \r"]))
        case "leading-ws":
            return ws + line
        case "trailing-ws":
            return line + ws
        case "time-field":
            return b"%s,i=%d time=1 %d" % (m, i, T0 + i)
        case "time-and-more":
            return b"%s,i=%d time=1,g=2.5 %d" % (m, i, T0 + i)
        case "time-tag":
            return b"%s,i=%d,time=x f=1.5 %d" % (m, i, T0 + i)
        case "no-timestamp":
            return b"%s,i=%d f=1.5" % (m, i)
        case "integer-f":  # a type conflict with the float f of the other lines
            return b"%s,i=%d f=%di %d" % (m, i, i, T0 + i)
        case "truncated":
            return line[: draw(st.integers(1, len(line)))]
        case "garbage":
            return b"%s,i=%d%s %d" % (m, i, draw(GARBAGE), T0 + i)
    return line


@st.composite
def batches(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    m = b"m" + uuid.uuid4().hex[:10].encode()
    refusable = draw(st.integers(0, 3)) == 0  # mostly batches the server must take
    lines = [draw(raw_line(m, i, refusable)) for i in range(draw(st.integers(1, 40)))]
    return m, lines


def _refused(line: bytes) -> str | None:
    """Why ``write`` must refuse this line: InfluxDB 1.x skips it (nothing but spaces and
    tabs, or those and then ``#``), or it has no timestamp of its own (the server would
    stamp each resend anew)."""
    rest = line.lstrip(b" \t")
    if not rest or rest.startswith(b"#"):
        return "a (comment|blank line)"
    _head, space, stamp = line.rstrip(b" \t").rpartition(b" ")
    digits = stamp[1:] if stamp.startswith(b"-") else stamp
    return None if space and digits.isdigit() else "no timestamp"


def _stored(influx: InfluxService, db: str, m: bytes) -> int:
    answer = influx.query(f'SELECT * FROM "{m.decode()}" GROUP BY *', db=db)
    return sum(len(s["values"]) for s in answer["results"][0].get("series", []))


@pytest.fixture
def writer(influx_service: InfluxService, influx_db: str, tmp_path: Path) -> Iterator[SeriesWriter]:
    w = SeriesWriter(
        RecorderConfig(
            influx_url=influx_service.url(),
            influx_database=influx_db,
            data_dir=tmp_path,
            batch_interval_s=0.05,
        )
    )
    w.start()
    yield w
    w.close(timeout=10)


@settings(
    max_examples=max(EXAMPLES, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=batches(), newline_last=st.booleans())
def test_every_raw_line_written_is_stored_or_counted(
    writer: SeriesWriter,
    influx_service: InfluxService,
    influx_db: str,
    batch: tuple[bytes, list[bytes]],
    newline_last: bool,
) -> None:
    m, drawn = batch
    data = b"\n".join(drawn) + (b"\n" if newline_last else b"")
    if not data:
        return  # nothing handed over
    lines = data.split(b"\n")  # as InfluxDB reads it: a final newline ends the last line
    if data.endswith(b"\n"):
        lines.pop()
    before = writer.stats()
    refused = [(n, why) for n, line in enumerate(lines, 1) if (why := _refused(line))]
    if refused:
        with pytest.raises(InvalidPoint, match=f"^line {refused[0][0]}: {refused[0][1]}"):
            writer.write(data)
        assert writer.stats()["pending_lines"] == before["pending_lines"] == 0
        event("refused at the call")
        return
    writer.write(data)
    event("accepted")
    assert writer.flush(timeout=30)
    after = writer.stats()
    written = after["lines_written"] - before["lines_written"]
    rejected = after["lines_rejected"] - before["lines_rejected"]
    assert written == _stored(influx_service, influx_db, m), data
    assert written + rejected == len(lines), data
    assert after["lines_dropped"] == after["lines_spooled"] == 0
