"""Runs each atheris fuzz target of the market core for a bounded time (``make fuzz``: longer)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize(
    ("harness", "seconds", "rss_mb", "max_len"),
    [("ingest", 20, 2048, 4096), ("lineproto", 10, 1024, 512)],
)
def test_fuzz_bounded(
    harness: str, seconds: int, rss_mb: int, max_len: int, tmp_path: Path
) -> None:
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    work.mkdir()
    # libFuzzer checks the peak RSS, and a child's peak starts at its parent's (Linux keeps
    # the larger across exec): after a test of this process that held a gigabyte, the
    # harness would be "out of memory" before it ran. The limit is the harness's own.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / f"fuzz_{harness}.py"),
            str(work),
            str(HERE / f"corpus_{harness}"),
            f"-max_total_time={seconds}",
            f"-rss_limit_mb={rss_mb + inherited_mb}",
            f"-max_len={max_len}",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert "Done" in proc.stderr, tail
    assert "cov:" in proc.stderr, tail  # the harness is instrumented: inputs evolve
