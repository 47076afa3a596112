"""Fail when a same-run ratio fell below its committed reference (``make bench-check``).

``benches/reference.json`` maps ``"group :: benchmark"`` (as ``report.py`` names
them) to the ratio against the group's baseline measured when it was written,
and the fraction it may fall below that before the check fails. Ratios of two
runs on the same machine cancel most of the machine's speed, so they can be
committed; absolute times cannot (``--benchmark-compare`` covers those, on one
machine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import ratios


def check(measured: dict[str, float], reference: dict[str, dict[str, float]]) -> list[str]:
    """One line per reference entry; lines starting with FAIL are regressions."""
    out = []
    for key, ref in sorted(reference.items()):
        floor = ref["ratio"] * (1 - ref["tolerance"])
        got = measured.get(key)
        if got is None:
            out.append(f"FAIL {key}: not measured in this run")
        elif got < floor:
            out.append(f"FAIL {key}: {got:.2f}x, below {floor:.2f}x (reference {ref['ratio']}x)")
        else:
            out.append(f"ok   {key}: {got:.2f}x (at least {floor:.2f}x)")
    return out


def main(argv: list[str]) -> int:
    run = json.loads(Path(argv[1]).read_text())
    reference = json.loads(Path(argv[2]).read_text())
    measured = ratios(run)
    # A partial run (BENCHES=...) checks the groups it ran and names the rest.
    groups = {key.split(" :: ")[0] for key in measured}
    ran = {k: v for k, v in reference.items() if k.split(" :: ")[0] in groups}
    lines = check(measured, ran)
    lines += [f"skip {k}: its group did not run" for k in sorted(reference.keys() - ran.keys())]
    print("\n".join(lines))
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
