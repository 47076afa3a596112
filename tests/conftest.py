"""Real servers for the whole test session: PostgreSQL, InfluxDB 1.x and VictoriaMetrics.

Each starts once, in a temporary directory on a free loopback port, and stops
at the end. Tests get an isolated database of their own (``pg_dsn``,
``influx_db``) so they can run in any order. Set ``GALFRIDAY_TEST_PG_DSN`` to
use an existing PostgreSQL server instead of the embedded one (the fault tests
that stop the server then skip).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import (
    InfluxService,
    PostgresService,
    VictoriaMetricsService,
)
from galfriday_recorder.migrate import migrate

EXTERNAL_PG = os.environ.get("GALFRIDAY_TEST_PG_DSN")


@pytest.fixture(scope="session")
def services_root() -> Iterator[Path]:
    """Outside pytest's rotating basetemp: a concurrent pytest run prunes old basetemps,
    which would delete a live server's data directory."""
    root = Path(tempfile.mkdtemp(prefix="galfriday-test-services-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_service(services_root: Path) -> Iterator[PostgresService | None]:
    """The embedded server, or None when tests run against ``GALFRIDAY_TEST_PG_DSN``."""
    if EXTERNAL_PG:
        yield None
        return
    service = PostgresService(services_root / "postgres")
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def pg_admin_dsn(pg_service: PostgresService | None) -> str:
    if pg_service is None:
        assert EXTERNAL_PG
        return EXTERNAL_PG
    return pg_service.dsn()


def _with_dbname(dsn: str, dbname: str) -> str:
    conninfo = psycopg.conninfo.conninfo_to_dict(dsn)
    conninfo["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**conninfo)  # type: ignore[arg-type]


@pytest.fixture
def empty_pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A brand-new, unmigrated database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_dbname(pg_admin_dsn, name)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(empty_pg_dsn: str) -> str:
    """A freshly migrated database of the full schema for one test."""
    migrate(empty_pg_dsn)
    return empty_pg_dsn


@pytest.fixture(scope="session")
def influx_service(services_root: Path) -> Iterator[InfluxService]:
    service = InfluxService(services_root / "influxdb")
    service.start()
    yield service
    service.stop()


@pytest.fixture
def influx_db(influx_service: InfluxService) -> Iterator[str]:
    """A fresh InfluxDB database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    influx_service.create_database(name)
    yield name
    influx_service.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def recorder_config(
    pg_dsn: str, influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> Callable[..., RecorderConfig]:
    """Makes a config on this test's database and InfluxDB, data under ``tmp_path``."""

    def make(**overrides: Any) -> RecorderConfig:
        return RecorderConfig.load(
            env={},
            pg_dsn=pg_dsn,
            influx_url=influx_service.url(),
            influx_database=influx_db,
            data_dir=tmp_path / "data",
            **overrides,
        )

    return make


@pytest.fixture(scope="session")
def victoria_service(services_root: Path) -> Iterator[VictoriaMetricsService]:
    service = VictoriaMetricsService(services_root / "victoria-metrics")
    service.start()
    yield service
    service.stop()
