"""The local servers start, answer, and restart on the same address."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from galfriday_recorder.lab.services import InfluxService, PostgresService, VictoriaMetricsService


def test_influxdb_round_trip(influx_service: InfluxService, influx_db: str) -> None:
    body = b"probe,host=a value=1.5 1700000000000000000\n"
    req = urllib.request.Request(
        f"{influx_service.url()}/write?db={influx_db}&precision=ns", data=body, method="POST"
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    answer = influx_service.query("SELECT value FROM probe", db=influx_db)
    assert answer["results"][0]["series"][0]["values"] == [[1700000000000000000, 1.5]]


def test_victoria_metrics_accepts_v2_writes(victoria_service: VictoriaMetricsService) -> None:
    body = b"probe_v2,host=b value=2.5 1700000000000000000\n"
    req = urllib.request.Request(
        f"{victoria_service.url()}/api/v2/write?bucket=x&org=y", data=body, method="POST"
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    urllib.request.urlopen(f"{victoria_service.url()}/internal/force_flush").close()
    deadline = time.monotonic() + 10
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline and not rows:
        with urllib.request.urlopen(
            f"{victoria_service.url()}/api/v1/export?match[]=probe_v2_value"
        ) as resp:
            rows = [json.loads(line) for line in resp.read().splitlines() if line]
        time.sleep(0.2)
    assert rows[0]["values"] == [2.5]
    assert rows[0]["timestamps"] == [1700000000000]
    assert rows[0]["metric"]["host"] == "b"  # type: ignore[index]


def test_postgres_restarts_on_the_same_dsn(tmp_path: Path) -> None:
    service = PostgresService(tmp_path / "pg")
    service.start()
    try:
        dsn = service.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        service.stop(hard=True)
        assert not service.running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
        service.start()
        assert service.dsn() == dsn
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    finally:
        service.stop()
    assert service.status()["running"] is False
