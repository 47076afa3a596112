"""Kill a recording process at each writer step, restart it (PostgreSQL up or down), and
check that every event is stored exactly once and every trade its fills close exists.

The child (``crash_child.py``) runs a scripted session of interleaved signals in every
status, with canceled, open and filled orders; the fault hook
(``GALFRIDAY_LEDGER_FAULT``) SIGKILLs it at a chosen step of the writer. The expected
trades come from plain arithmetic on the script, and ``verify`` recomputes every trade
from the stored fills.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from crash_child import expected_trades, plans, script
from ledgerkit import UNREACHABLE, rows

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger.verify import verify

CHILD = Path(__file__).with_name("crash_child.py")


def _run(
    dsn: str, tmp: Path, seed: int, *, fault: str | None = None, stop: int | None = None
) -> int:
    env = {k: v for k, v in os.environ.items() if k != "GALFRIDAY_LEDGER_FAULT"}
    if fault is not None:
        env["GALFRIDAY_LEDGER_FAULT"] = fault
    args = [sys.executable, str(CHILD), dsn, str(tmp / "data"), str(tmp / "progress"), str(seed)]
    if stop is not None:
        args.append(str(stop))
    done = subprocess.run(args, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode


def _progress(tmp: Path) -> int:
    path = tmp / "progress"
    return int(path.read_text()) if path.exists() else -1


@pytest.mark.faults
@pytest.mark.parametrize(
    ("fault", "pg_down", "seed"),
    [
        ("journal-inside:9", False, 1),  # inside a journal transaction (a fill and its trade)
        ("journaled:9", False, 2),  # after the journal commit
        ("commit:2", False, 3),  # journaled, before the PostgreSQL commit
        ("committed:2", False, 4),  # after the PostgreSQL commit, before the journal forgets
        ("committed:1", True, 5),
        ("journaled:7", True, 6),
        ("commit:2", True, 7),
    ],
)
def test_a_kill_at_any_writer_step_loses_and_doubles_nothing(
    pg_dsn: str, tmp_path: Path, fault: str, pg_down: bool, seed: int
) -> None:
    steps = script(seed)
    assert _run(pg_dsn, tmp_path, seed, fault=fault) == -signal.SIGKILL
    if pg_down:  # a restart while PostgreSQL is down, trading on, then a clean stop
        assert _run(UNREACHABLE, tmp_path, seed, stop=_progress(tmp_path) + 8) == 0
    _run(pg_dsn, tmp_path, seed, fault=fault)  # killed again, later, unless it finished
    restarts = 0
    while _progress(tmp_path) < len(steps) - 1 or restarts == 0:
        assert _run(pg_dsn, tmp_path, seed) == 0
        restarts += 1

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert verify(conn) == []
    expected = expected_trades(seed)
    trades = rows(pg_dsn, "SELECT signal_id, quantity, realized_pnl FROM trades")
    assert len(trades) == len(expected)
    assert set(trades) == expected
    count = {kind: sum(1 for s in steps if s[0] == kind) for kind in ("order", "fill")}
    assert rows(pg_dsn, "SELECT count(*) FROM signals") == [(len(plans(seed)),)]
    assert rows(pg_dsn, "SELECT count(*) FROM orders") == [(count["order"],)]
    assert rows(pg_dsn, "SELECT count(*), count(DISTINCT fill_id) FROM fills") == [
        (count["fill"], count["fill"])
    ]
    assert rows(
        pg_dsn, "SELECT count(*) FROM orders WHERE status NOT IN ('FILLED', 'CANCELED')"
    ) == [(0,)]
    assert rows(pg_dsn, "SELECT count(*) FROM orders WHERE quantity_filled NOT IN (0, 10)") == [
        (0,)
    ]
    journal = sqlite3.connect(
        RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data").journal_path
    )
    try:
        assert journal.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
        assert journal.execute("SELECT count(*) FROM events").fetchone() == (0,)
    finally:
        journal.close()
    assert rows(pg_dsn, "SELECT count(*) FROM system_logs WHERE log_level = 'ERROR'") == [(0,)]
