"""``galfriday-recorder verify`` recomputes every trade from the stored fills; a start
re-derives the trades stored fills close and no row holds."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from ledgerkit import (
    as_before_migration_0007,
    make_fill,
    make_order,
    make_signal,
    quick_config,
    rows,
    started,
)

from galfriday_recorder.cli import main
from galfriday_recorder.ledger.verify import verify


def _kinds(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return sorted(d.kind for d in verify(conn))


def test_verify_lists_each_difference_and_a_start_rederives_missing_trades(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = quick_config(pg_dsn, tmp_path / "data")
    ledger = started(config)
    signals = [make_signal() for _ in range(3)]
    for signal in signals:
        ledger.record_signal(signal)
        entry = make_order(signal, quantity_ordered=Decimal(5))
        exit_ = make_order(signal, side="SELL", quantity_ordered=Decimal(5))
        ledger.record_order(entry)
        ledger.record_order(exit_)
        ledger.record_fill(make_fill(entry, "2", "1.5", commission=Decimal("0.01")))
        ledger.record_fill(make_fill(entry, "3", "1.75"))
        ledger.record_fill(make_fill(exit_, "5", "2", commission="0.1", commission_asset="XRP"))
    assert ledger.close(timeout=30)
    assert _kinds(pg_dsn) == []
    assert main(["verify", "--pg-dsn", pg_dsn]) == 0
    assert "0 difference(s)" in capsys.readouterr().out

    [trade_id] = rows(
        pg_dsn, "SELECT trade_id FROM trades WHERE signal_id = %s", signals[0].signal_id
    )[0]
    rows(pg_dsn, "DELETE FROM trades WHERE signal_id = %s RETURNING 1", signals[1].signal_id)
    rows(
        pg_dsn,
        "UPDATE trades SET realized_pnl = realized_pnl + 0.000000000000000001 "
        "WHERE trade_id = %s RETURNING 1",
        trade_id,
    )
    rows(
        pg_dsn,
        "INSERT INTO trades (trade_id, signal_id, trading_pair, exchange, strategy_id, side, "
        "entry_timestamp, exit_timestamp, quantity, average_entry_price, average_exit_price, "
        "total_commission, realized_pnl, realized_pnl_pct, exit_reason) SELECT "
        "gen_random_uuid(), signal_id, trading_pair, exchange, strategy_id, side, "
        "entry_timestamp, exit_timestamp, quantity, average_entry_price, average_exit_price, "
        "total_commission, realized_pnl, realized_pnl_pct, exit_reason FROM trades "
        "WHERE signal_id = %s RETURNING 1",
        signals[2].signal_id,
    )
    # The deleted row's entries are also said to be untraded now.
    assert _kinds(pg_dsn) == ["different", "extra", "missing", "untraded"]
    assert main(["verify", "--pg-dsn", pg_dsn]) == 1
    out = capsys.readouterr().out
    assert f"different trade {trade_id}" in out
    assert "realized_pnl" in out
    assert f"untraded signal {signals[1].signal_id}" in out

    # As history written before migration 0007, which knows no trade as derived: every
    # signal's entries count as untraded until a start reads it, writes the missing trade
    # back and marks the trades the fills derive (not signals[2]'s copy: extra).
    as_before_migration_0007(pg_dsn)
    assert rows(pg_dsn, "SELECT DISTINCT untraded_quantity FROM signals") == [(Decimal(5),)]
    assert _kinds(pg_dsn) == ["different", "extra", "missing"]
    again = started(config)
    assert again.close(timeout=30)
    assert _kinds(pg_dsn) == ["different", "extra"]
    assert rows(pg_dsn, "SELECT DISTINCT untraded_quantity FROM signals") == [(Decimal(0),)]
    assert rows(pg_dsn, "SELECT count(*) FROM trades WHERE NOT derived") == [(1,)]
