"""``json_values``: what a JSON field holds once written out, counted over what it holds in
memory, so that a few shared lists nested deep are refused before anything writes them.

Against a memoised count in Python and orjson's own output; then the shapes an outside
review found slipping past an earlier walk (a bomb behind 256 levels, inside a
dataclass, an enum, a mapping or a set), through every caller.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galfriday_recorder._core import json_values
from galfriday_recorder.errors import ValidationError
from galfriday_recorder.records import MAX_JSON_VALUES, canonical_json, evidence, json_object

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text())


@st.composite
def shared_json(draw: st.DrawFn) -> Any:
    """JSON built bottom-up from a pool of containers, each maybe used many times (a DAG)."""
    pool: list[Any] = [draw(json_leaf)]
    for _ in range(draw(st.integers(0, 30))):
        picks = draw(st.lists(st.sampled_from(pool), max_size=4))
        shape = draw(st.sampled_from(["list", "tuple", "dict"]))
        if shape == "dict":
            pool.append({f"k{i}": v for i, v in enumerate(picks)})
        else:
            pool.append(picks if shape == "list" else tuple(picks))
    return pool[-1]


def _expansion(value: Any, memo: dict[int, int]) -> int:
    """Values written out, counted with a memo by identity (the reference)."""
    if not isinstance(value, (dict, list, tuple)):
        return 1
    if id(value) not in memo:
        children = value.values() if isinstance(value, dict) else value
        memo[id(value)] = 1 + sum(_expansion(child, memo) for child in children)
    return memo[id(value)]


def _written(value: Any) -> int:
    if isinstance(value, (dict, list)):
        children = value.values() if isinstance(value, dict) else value
        return 1 + sum(_written(child) for child in children)
    return 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=shared_json(), limit=st.sampled_from([0, 5, 1_000, 10**12]))
def test_json_values_counts_what_orjson_writes(value: Any, limit: int) -> None:
    """Against a memoised count and, where it is small enough to write out, orjson's own
    output parsed and counted; past ``limit`` it only says so."""
    counted, expected = json_values(value, limit), _expansion(value, {})
    if expected > limit:
        assert counted > limit
        return
    assert counted == expected
    if expected <= 100_000:
        assert counted == _written(orjson.loads(orjson.dumps(value)))


def _bomb(depth: int) -> list[Any]:
    """A list holding one list twice, ``depth`` levels deep: 2^(depth + 1) - 1 values."""
    inner: list[Any] = []
    for _ in range(depth):
        inner = [inner, inner]
    return inner


def _wrapped(value: Any, levels: int) -> list[Any]:
    for _ in range(levels):
        value = [value]
    assert isinstance(value, list)
    return value


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: can sit in a set
class _Holder:
    held: Any


_BOMB = _bomb(40)
_BombEnum = enum.Enum("_BombEnum", {"BOMB": _BOMB})
_HOSTILE = {
    "behind_256_levels": _wrapped(_BOMB, 256),
    "deep_first_then_shallow": {"z": _wrapped(_BOMB, 255), "a": _BOMB},
    "in_a_dataclass": [_Holder(_BOMB)],
    "in_an_enum": [_BombEnum.BOMB],
    "in_a_mapping_proxy": types.MappingProxyType({"a": _BOMB}),
    "in_a_frozenset": frozenset({_Holder(_BOMB)}),
}


@pytest.mark.parametrize("value", list(_HOSTILE.values()), ids=list(_HOSTILE))
def test_a_shared_bomb_is_counted_past_the_limit_wherever_it_hides(value: Any) -> None:
    assert json_values(value, MAX_JSON_VALUES) > MAX_JSON_VALUES


@pytest.mark.parametrize("value", list(_HOSTILE.values()), ids=list(_HOSTILE))
def test_every_caller_refuses_it_or_keeps_its_size(value: Any) -> None:
    """Each would otherwise write 2^41 values out (orjson, ``_finite``, a repr, or the
    configuration's sorted copy) and take all memory."""
    expected = f"more than {MAX_JSON_VALUES:,} values"
    for build in (lambda: json_object("context", [value]), lambda: canonical_json({"v": value})):
        with pytest.raises(ValidationError, match=expected):
            build()
    assert expected in orjson.loads(orjson.dumps(evidence(value)))


def test_a_value_holding_itself_is_past_any_limit() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    mapping: dict[str, Any] = {}
    mapping["self"] = {"again": mapping}
    assert json_values(looped, 10**12) > 10**12
    assert json_values(mapping, 10**12) > 10**12


def test_depth_alone_is_counted_not_refused_here() -> None:
    """100,000 levels: counted on a heap stack (no overflow of the thread's); orjson's own
    depth limit then refuses it with its own reason."""
    deep = _wrapped(1, 100_000)
    assert json_values(deep, MAX_JSON_VALUES) == 100_001
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        json_object("context", deep)
