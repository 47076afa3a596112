"""Runs the atheris fuzz target of the line-protocol encoder for a bounded time (about 10 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_fuzz_line_encoder_bounded(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_lineproto.py"),
            str(work),
            str(HERE / "corpus"),
            "-max_total_time=10",
            "-rss_limit_mb=1024",
            "-max_len=512",
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
