"""Turn a pytest-benchmark JSON file into one table of results and ratios (``make bench``).

Benchmarks are grouped (``@pytest.mark.benchmark(group=...)``); in each group
the benchmark whose name contains ``baseline`` is what the others are compared
with, measured in the same run. Throughputs and other figures a benchmark
computes itself travel in ``benchmark.extra_info`` and are shown as they are.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=False)
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"{rustc.stdout.strip() or 'rustc unknown'}"
    )


def groups_of(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench.get("group") or bench["name"], []).append(bench)
    return groups


def baseline_of(benches: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((b for b in benches if "baseline" in b["name"].lower()), None)


def ratios(data: dict[str, Any]) -> dict[str, float]:
    """``"group :: name"`` -> baseline median / its median (above 1: faster)."""
    out = {}
    for group, benches in groups_of(data).items():
        baseline = baseline_of(benches)
        for b in benches:
            if baseline is not None and b is not baseline:
                out[f"{group} :: {b['name']}"] = baseline["stats"]["median"] / b["stats"]["median"]
    return out


def render(data: dict[str, Any]) -> str:
    groups = groups_of(data)
    rows = [
        "| group | benchmark | median | mean | rounds | vs baseline | figures |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, benches in sorted(groups.items()):
        baseline = baseline_of(benches)
        for b in sorted(benches, key=lambda b: "baseline" in b["name"].lower()):
            stats = b["stats"]
            ratio = ""
            if baseline is not None and b is not baseline:
                speedup = baseline["stats"]["median"] / stats["median"]
                ratio = f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"
            figures = ", ".join(f"{k}={v}" for k, v in sorted(b.get("extra_info", {}).items()))
            rows.append(
                f"| {group} | {b['name']} | {_fmt_time(stats['median'])} | "
                f"{_fmt_time(stats['mean'])} | {stats['rounds']} | {ratio} | {figures} |"
            )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# Benchmark results\n\nMeasured {when} on {_machine()}.\n"
        "Each ratio compares with the baseline measured in the same run (`make bench`).\n\n"
        + "\n".join(rows)
        + "\n"
    )


NOTES = "\n## Where the time goes"


def main(argv: list[str]) -> int:
    source, target = Path(argv[1]), Path(argv[2])
    text = render(json.loads(source.read_text()))
    # The hand-written profile notes below the table survive a new run.
    old = target.read_text() if target.exists() else ""
    if NOTES in old:
        text += old[old.index(NOTES) :]
    target.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
