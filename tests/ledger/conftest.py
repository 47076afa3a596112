"""Fixtures for the ledger tests (real PostgreSQL from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.journal import Journal


@pytest.fixture
def ledger_config(pg_dsn: str, tmp_path: Path) -> RecorderConfig:
    return RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data", commit_interval_ms=2.0)


@pytest.fixture
def ledger(ledger_config: RecorderConfig) -> Iterator[Ledger]:
    led = Ledger(ledger_config)
    led.start()
    yield led
    led.close(timeout=30)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    j.open()
    yield j
    j.close()
