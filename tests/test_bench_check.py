"""``make bench-check``'s verdict: a same-run ratio below its reference fails."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))

import check


def run(ours_s: float, baseline_s: float, group: str = "g") -> dict[str, object]:
    def bench(name: str, median: float) -> dict[str, object]:
        return {"name": name, "group": group, "stats": {"median": median}}

    return {"benchmarks": [bench("test_ours", ours_s), bench("test_x_baseline", baseline_s)]}


REFERENCE = {"g :: test_ours": {"ratio": 100, "tolerance": 0.3}}


def verdict(tmp_path: Path, data: dict[str, object], reference: Mapping[str, object]) -> int:
    (tmp_path / "run.json").write_text(json.dumps(data))
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    return check.main(["check.py", str(tmp_path / "run.json"), str(tmp_path / "ref.json")])


def test_a_ratio_at_or_above_its_floor_passes(tmp_path: Path) -> None:
    assert verdict(tmp_path, run(1e-6, 70e-6), REFERENCE) == 0  # exactly the floor, 70x
    assert verdict(tmp_path, run(1e-6, 200e-6), REFERENCE) == 0


def test_a_ratio_below_its_floor_fails_and_says_by_how_much(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verdict(tmp_path, run(1e-6, 69e-6), REFERENCE) == 1
    assert "FAIL g :: test_ours: 69.00x, below 70.00x" in capsys.readouterr().out


def test_a_group_that_ran_without_the_benchmark_fails(tmp_path: Path) -> None:
    data = run(1e-6, 100e-6)
    reference = {**REFERENCE, "g :: test_gone": {"ratio": 1, "tolerance": 0.5}}
    assert verdict(tmp_path, data, reference) == 1


def test_groups_not_run_are_named_not_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = {**REFERENCE, "other :: test_y": {"ratio": 1, "tolerance": 0.5}}
    assert verdict(tmp_path, run(1e-6, 100e-6), reference) == 0
    assert "skip other :: test_y" in capsys.readouterr().out
