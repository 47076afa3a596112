"""Several recorders on one database: races another writer causes are retried, never
dead-lettered, and the rows a ledger writes about itself never collide."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from ledgerkit import make_order, make_signal, make_snapshot, rows

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.records import PortfolioSnapshot


def test_concurrent_configurations_and_dead_letters_of_four_ledgers(
    pg_dsn: str, tmp_path: Path
) -> None:
    ledgers = [
        Ledger(RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / f"r{i}", commit_interval_ms=1))
        for i in range(4)
    ]
    for ledger in ledgers:
        ledger.start()
    go = threading.Barrier(len(ledgers))

    def configure(i: int, ledger: Ledger) -> None:
        go.wait()
        for n in range(6):
            ledger.record_configuration({"recorder": i, "version": n})
            ledger.flush(timeout=30)  # one group per configuration: the most races

    threads = [threading.Thread(target=configure, args=(i, led)) for i, led in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # One refused event per ledger: each dead-letter log row must survive (ids unique).
    for ledger in ledgers:
        ledger.record_order(make_order(make_signal()))  # a signal PostgreSQL never saw
    assert all(ledger.close(timeout=60) for ledger in ledgers)
    stats = [ledger.stats() for ledger in ledgers]
    assert [s["dead_letters"] for s in stats] == [1, 1, 1, 1]
    assert rows(
        pg_dsn, "SELECT count(*), count(*) FILTER (WHERE is_active) FROM configurations"
    ) == [(24, 1)]
    assert rows(
        pg_dsn, "SELECT count(*) FROM system_logs WHERE message LIKE '%%refused by PostgreSQL%%'"
    ) == [(4,)]


def test_two_recorders_writing_one_snapshot_instant_are_counted_and_said(
    pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def snapshot(equity: str) -> PortfolioSnapshot:
        return make_snapshot(total_equity=Decimal(equity), available_balance=Decimal(equity))

    first, second = (
        Ledger(RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / name, commit_interval_ms=1))
        for name in ("a", "b")
    )
    first.start()
    second.start()
    first.record_portfolio_snapshot(snapshot("100"))
    assert first.flush(timeout=30)
    second.record_portfolio_snapshot(snapshot("100"))  # the same content: nothing to say
    assert second.flush(timeout=30)
    assert second.stats()["snapshots_replaced"] == 0
    with caplog.at_level(logging.WARNING, logger="galfriday_recorder.ledger"):
        second.record_portfolio_snapshot(snapshot("101"))
        assert second.flush(timeout=30)
    assert first.close(timeout=30)
    assert second.close(timeout=30)
    assert (first.stats()["snapshots_replaced"], second.stats()["snapshots_replaced"]) == (0, 1)
    assert "replaced a different one of the same instant" in caplog.text
    assert rows(pg_dsn, "SELECT total_equity FROM portfolio_snapshots") == [(Decimal(101),)]
