"""A v1 write to a database InfluxDB does not have is answered with CREATE DATABASE
(``test_series_real`` has the case where the recorder may not create it)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.series import SeriesWriter

LINES = b"".join(b"m,t=a v=%di 17324000000%05d\n" % (i, i) for i in range(10))


def _writer(influx: InfluxService, tmp_path: Path, db: str, **overrides: Any) -> SeriesWriter:
    cfg = RecorderConfig.load(
        env={},
        influx_url=influx.url(),
        influx_database=db,
        data_dir=tmp_path,
        **overrides,
    )
    return SeriesWriter(cfg)


def test_missing_database_is_created_and_the_batch_lands(
    influx_service: InfluxService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = f'new "db" {uuid.uuid4().hex[:8]}'
    writer = _writer(influx_service, tmp_path, db)
    writer.start()
    try:
        writer.write(LINES)
        assert writer.flush(30)
        stats = writer.stats()
    finally:
        writer.close(30)
    try:
        answer = influx_service.query("SELECT count(v) FROM m", db=db)
        assert answer["results"][0]["series"][0]["values"][0][1] == 10
        assert stats["lines_written"] == 10
        assert stats["lines_spooled"] == 0
        assert f"InfluxDB had no database {db!r}: created it" in caplog.text
    finally:
        influx_service.query(f'DROP DATABASE "{db.replace(chr(34), chr(92) + chr(34))}"')
