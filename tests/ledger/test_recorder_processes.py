"""Four recorder processes on one fresh database: they start together (the migrations run
once), record configurations and snapshots at the same moments and a stream of signals,
orders and fills each; one is SIGKILLed mid-stream and restarted. Afterwards PostgreSQL
holds each event exactly once, one active configuration (the last committed), no dead
letter anywhere, trades ``verify`` agrees with, and each recorder's recovery sees its
own open orders and cycles (``scope="all"``: everyone's).

The children are ``fleet_child.py``; they meet at files in the test's directory.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, cast

import orjson
import psycopg
import pytest
from fleet_child import (
    CONFIGS,
    FINAL_CONFIG,
    SNAPSHOTS,
    TRADED,
    expected_rows,
    oid,
    script,
)
from ledgerkit import rows

from galfriday_recorder.config import RecorderConfig, default_instance_name
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.ledger.verify import verify
from galfriday_recorder.migrate import discover

CHILD = Path(__file__).with_name("fleet_child.py")
FLEET = 4
KILLED = 0
KILL_AT = CONFIGS + SNAPSHOTS + 1 + 9 * 5 + 4  # inside the stream, between two entry fills
WAIT_S = 90.0


def _wait(done: Callable[[], bool], children: list[subprocess.Popen[bytes]], what: str) -> None:
    """Poll until ``done``; fail at once if a child has died, or after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not done():
        failed = [cast(list[str], c.args)[3] for c in children if c.poll() not in (None, 0)]
        assert not failed, f"recorder {failed} exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.faults
def test_four_recorder_processes_share_one_fresh_database(
    empty_pg_dsn: str, influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> None:
    dsn = empty_pg_dsn
    logs: list[IO[bytes]] = []

    def spawn(index: int, *extra: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"log-{index}-{len(logs)}", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        args = [str(tmp_path), str(index), dsn, influx_service.url(), influx_db, *extra]
        return subprocess.Popen(
            [sys.executable, str(CHILD), *args], stdout=log, stderr=subprocess.STDOUT
        )

    def progress(index: int) -> int:
        path = tmp_path / f"progress-{index}"
        return int(path.read_text()) if path.exists() else -1

    steps = script()
    children = [spawn(i, *([str(KILL_AT)] if i == KILLED else [])) for i in range(FLEET)]
    try:
        # Everyone imported and waiting: then all start at once and race to migrate.
        _wait(
            lambda: all((tmp_path / f"ready-{i}").exists() for i in range(FLEET)), children, "ready"
        )
        (tmp_path / "go").touch()
        _wait(lambda: progress(KILLED) >= KILL_AT, children, "the stream")
        children[KILLED].send_signal(signal.SIGKILL)
        assert children[KILLED].wait(timeout=30) == -signal.SIGKILL
        assert progress(KILLED) < len(steps) - 1  # killed mid-stream, not after it
        children[KILLED] = spawn(KILLED)  # resumes after its last acknowledged step
        _wait(
            lambda: all((tmp_path / f"streamed-{i}").exists() for i in range(FLEET)),
            children,
            "every stream",
        )
        # The configurations raced: the one active is one recorder's last.
        assert rows(dsn, "SELECT config_content FROM configurations WHERE is_active") in (
            [({"recorder": i, "version": CONFIGS - 1},)] for i in range(FLEET)
        )
        (tmp_path / "check").touch()  # recorder 3 records the final configuration
        for child in children:
            assert child.wait(timeout=WAIT_S) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for log in logs:
            log.close()

    output = {p.name: p.read_text() for p in tmp_path.glob("log-*")}
    for name, text in output.items():
        assert "Traceback" not in text, (name, text[-3000:])
        assert "migrations not applied" not in text, (name, text[-3000:])
        assert "ERROR" not in text, (name, text[-3000:])
    results = [orjson.loads((tmp_path / f"result-{i}.json").read_bytes()) for i in range(FLEET)]
    names = [default_instance_name(tmp_path / f"r{i}") for i in range(FLEET)]
    assert [r["instance"] for r in results] == names
    assert len(set(names)) == FLEET

    # Migrations: each once, by whichever process got the lock first.
    assert rows(dsn, "SELECT version FROM schema_migrations ORDER BY version") == [
        (m.version,) for m in discover()
    ]
    # Each event exactly once, each recorder's rows its own.
    per = expected_rows()
    for table in ("signals", "orders"):
        assert dict(rows(dsn, f"SELECT recorder_instance, count(*) FROM {table} GROUP BY 1")) == {
            name: per[table] for name in names
        }
    assert rows(dsn, "SELECT count(*), count(DISTINCT (exchange, fill_id)) FROM fills") == [
        (FLEET * per["fills"], FLEET * per["fills"])
    ]
    entry = (4 * Decimal("0.50") + 6 * Decimal("0.52")) / 10
    exit_ = (3 * Decimal("0.55") + 7 * Decimal("0.56")) / 10
    expected_trades = {
        (oid(i, "s", j), 10 * (exit_ - entry)) for i in range(FLEET) for j in range(TRADED)
    } | {(oid(i, "s", "closed"), 10 * (Decimal("0.48") - Decimal("0.50"))) for i in range(FLEET)}
    trades = rows(dsn, "SELECT signal_id, realized_pnl FROM trades")
    assert len(trades) == FLEET * per["trades"]
    assert set(trades) == expected_trades
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert verify(conn) == []
    # Configurations: every one stored once, the final one (committed last) active.
    assert rows(dsn, "SELECT count(*) FROM configurations") == [(FLEET * CONFIGS + 1,)]
    assert rows(dsn, "SELECT config_content FROM configurations WHERE is_active") == [
        (FINAL_CONFIG,)
    ]
    # Snapshots: each instant once; the one all wrote holds one recorder's.
    assert rows(dsn, "SELECT count(*) FROM portfolio_snapshots") == [(FLEET * SNAPSHOTS + 1,)]
    (shared,) = rows(
        dsn, "SELECT total_equity FROM portfolio_snapshots ORDER BY snapshot_timestamp LIMIT 1"
    )
    assert shared[0] in {Decimal(1000 + i) for i in range(FLEET)}
    # No dead letter, nothing left behind, nothing logged as an error.
    assert [r["dead_letters"] for r in results] == [0] * FLEET
    assert all(r["closed"] for r in results)
    for i in range(FLEET):
        _assert_journal_empty(RecorderConfig(data_dir=tmp_path / f"r{i}").journal_path)
    assert rows(dsn, "SELECT count(*) FROM system_logs WHERE log_level = 'ERROR'") == [(0,)]
    # Recovery: each its own open order and open cycle; scope="all": everyone's.
    own_orders = [str(oid(i, "o", "open-order", "entry")) for i in range(FLEET)]
    own_cycles = [str(oid(i, "s", "open-cycle")) for i in range(FLEET)]
    for i, result in enumerate(results):
        assert result["own"] == {"open_orders": [own_orders[i]], "open_cycles": [own_cycles[i]]}
        assert result["all"] == {
            "open_orders": sorted(own_orders),
            "open_cycles": sorted(own_cycles),
        }
    # Self-metrics: one host_id per recorder, its instance name.
    hosts = influx_service.query(
        'SHOW TAG VALUES FROM system_metrics WITH KEY = "host_id"', db=influx_db
    )
    assert sorted(v[1] for v in hosts["results"][0]["series"][0]["values"]) == sorted(names)


def _assert_journal_empty(path: Path) -> None:
    journal = sqlite3.connect(path)
    try:
        counts: list[Any] = [
            journal.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("events", "dead_letters")
        ]
    finally:
        journal.close()
    assert counts == [0, 0], path
