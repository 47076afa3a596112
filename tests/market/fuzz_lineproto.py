"""atheris fuzz target for the line-protocol encoder (``galfriday_recorder._core.encode_line``).

Run: ``python tests/market/fuzz_lineproto.py WORKDIR tests/market/corpus_lineproto`` plus
libFuzzer options such as ``-max_total_time=20`` (new inputs go to WORKDIR, the seed corpus
stays read-only).

Each input becomes a measurement, a tag set, a field set (floats including NaN and
infinities, 64-bit and larger ints, bools, strings, Decimals, None) and a timestamp.
The encoder must either raise ValueError/TypeError or return exactly one line that:
ends in ``" <ts>\\n"`` and holds no other newline, is UTF-8, never carries a non-finite
number or an int beyond 64 bits, does not depend on the order tags were given in, and,
parsed back with the line-protocol escaping rules, gives the same measurement, tags
(sorted, ``None`` left out) and fields.
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import atheris

# Not under atheris.instrument_imports(): the Rust extension cannot be instrumented, and
# instrumenting the package it pulls in (psycopg, influxdb-client...) costs ~15 s at start.
from galfriday_recorder._core import encode_line

OUTCOMES = (
    "newline",
    "not finite",
    "64 bits",
    "must not be empty",
    "backslash",
    "unsupported type",
    "at least one field",
    "carriage",
    "tab",
    "Decimal",
    "too long",
    "control",
    "comment",
    "whitespace",
    "NUL",
    "named time",
    "double quote",
    "range",
    "series key",
    "not a field",
    "not a tag",
    "surrogate",
    " is Float",
    " is Integer",
    " is Boolean",
    " is String",
)
SPECIAL = ',= "\\\n\r\t'


@atheris.instrument_func
def _text(fdp: atheris.FuzzedDataProvider) -> str:
    n = fdp.ConsumeIntInRange(0, 12)
    if fdp.ConsumeBool():  # mostly the characters that need escaping
        return "".join(
            SPECIAL[fdp.ConsumeIntInRange(0, len(SPECIAL) - 1)]
            if fdp.ConsumeBool()
            else chr(fdp.ConsumeIntInRange(0x20, 0x7E))
            for _ in range(n)
        )
    return fdp.ConsumeUnicodeNoSurrogates(n)


@atheris.instrument_func
def _value(fdp: atheris.FuzzedDataProvider) -> Any:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 0:
        return fdp.ConsumeRegularFloat()
    if kind == 1:
        return fdp.ConsumeFloat()  # NaN, infinities, subnormals too
    if kind == 2:
        return fdp.ConsumeInt(9)  # up to 72 bits, beyond int64 on purpose
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return _text(fdp)
    if kind == 5:
        try:
            return Decimal(fdp.ConsumeUnicodeNoSurrogates(24))
        except InvalidOperation:
            return Decimal("1.10")
    if kind == 6:
        return None
    return fdp.ConsumeBytes(2)  # an unsupported type


@atheris.instrument_func
def _split(text: str, stops: str, escapable: str) -> tuple[str, str]:
    """Read up to the first unescaped char of ``stops``; return (unescaped, rest)."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
            continue
        if ch in stops:
            break
        out.append(ch)
        i += 1
    return "".join(out), text[i:]


@atheris.instrument_func
def _parse(line: str) -> tuple[str, dict[str, str], dict[str, str], str]:
    measurement, rest = _split(line, ", ", ", ")
    tags: dict[str, str] = {}
    while rest.startswith(","):
        key, rest = _split(rest[1:], "=", ",= ")
        value, rest = _split(rest[1:], ", ", ",= ")
        tags[key] = value
    assert rest.startswith(" "), line
    rest = rest[1:]
    fields: dict[str, str] = {}
    while True:
        key, rest = _split(rest, "=", ",= ")
        rest = rest[1:]
        if rest.startswith('"'):
            value, rest = _split(rest[1:], '"', '"\\')
            value = '"' + value
            rest = rest[1:]
        else:
            value, rest = _split(rest, ", ", "")
        fields[key] = value
        if not rest.startswith(","):
            break
        rest = rest[1:]
    assert rest.startswith(" "), line
    return measurement, tags, fields, rest[1:]


@atheris.instrument_func
def _expected_field(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, str):
        return '"' + value
    return None  # floats and Decimals: compared numerically below


@atheris.instrument_func
def _outcome(message: str) -> int:
    """Distinct errors as distinct Python branches, so atheris keeps inputs reaching new ones."""
    for i, word in enumerate(OUTCOMES):
        if word in message:
            return i
    raise AssertionError(f"an error message naming nothing known: {message!r}")


@atheris.instrument_func
def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    measurement = _text(fdp)
    tags = {
        _text(fdp): (None if fdp.ConsumeIntInRange(0, 9) == 0 else _text(fdp))
        for _ in range(fdp.ConsumeIntInRange(0, 4))
    }
    fields = {_text(fdp): _value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))}
    ts = fdp.ConsumeInt(8)
    try:
        line = encode_line(measurement, tags, fields, ts)
    except (ValueError, TypeError) as exc:
        _outcome(str(exc))
        return
    assert isinstance(line, bytes)
    text = line.decode("utf-8")
    assert text.endswith(f" {ts}\n"), text
    assert text.count("\n") == 1, text
    assert encode_line(measurement, dict(reversed(tags.items())), fields, ts) == line
    kept_fields = {k: v for k, v in fields.items() if v is not None}
    for value in kept_fields.values():
        assert not isinstance(value, bytes), text
        if isinstance(value, float):
            assert math.isfinite(value), text
        if isinstance(value, int) and not isinstance(value, bool):
            assert -(2**63) <= value < 2**63, text
        if isinstance(value, Decimal):
            assert value.is_finite(), text
            assert math.isfinite(float(value)), text
    every = [
        measurement,
        *tags,
        *(v for v in tags.values() if v),
        *kept_fields,
        *(v for v in kept_fields.values() if isinstance(v, str)),
    ]
    if any("\\" in s for s in every):
        return  # backslash rules differ per element in InfluxDB; the rest is still checked
    got_m, got_tags, got_fields, _ = _parse(text[:-1])
    assert got_m == measurement, (got_m, text)
    assert got_tags == {k: v for k, v in sorted(tags.items()) if v}, (got_tags, text)
    assert set(got_fields) == set(kept_fields), (got_fields, text)
    for key, value in kept_fields.items():
        expected = _expected_field(value)
        if expected is not None:
            assert got_fields[key] == expected, (key, got_fields[key], text)
        else:
            assert float(got_fields[key]) == float(value), (key, got_fields[key], text)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
