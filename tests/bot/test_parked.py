"""A fill before its order: parked and journaled, applied when the order is reported (across a
restart too), refused into the dead letters after ``orphan_fill_timeout_s``."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import psycopg

from galfriday_recorder import Recorder, RecorderConfig

PAIR = "XRP/USD"


def _fill(rec: Recorder, eid: str, fill_id: str) -> None:
    rec.record_exchange_fill(
        exchange_order_id=eid,
        fill_id=fill_id,
        trading_pair=PAIR,
        side="buy",
        price="0.5",
        quantity="4",
        fee="0.002",
    )


def _report(rec: Recorder, eid: str, status: str, filled: str) -> None:
    rec.record_execution_report(
        exchange_order_id=eid,
        client_order_id=f"gf-{eid}",
        trading_pair=PAIR,
        order_status=status,
        order_type="market",
        side="BUY",
        quantity_ordered="10",
        quantity_filled=filled,
        average_fill_price="0.5" if filled != "0" else None,
        commission="0.002" if filled != "0" else None,
    )


def test_a_parked_fill_survives_a_restart_and_joins_its_order(
    recorder_config: Callable[..., RecorderConfig], pg_dsn: str
) -> None:
    cfg = recorder_config(orphan_fill_timeout_s=600)
    with Recorder(cfg) as rec:
        _fill(rec, "OP-1", "T-1")
        assert rec.stats()["orders_parked_fills"] == 1
    with Recorder(cfg) as rec:
        assert rec.stats()["orders_parked_fills"] == 1
        _report(rec, "OP-1", "open", "4")  # the report that covers it comes later
        assert rec.stats()["orders_parked_fills"] == 0
        assert rec.flush(30)
    with Recorder(cfg) as rec:  # applied, so no longer waiting
        assert rec.stats()["orders_parked_fills"] == 0
        assert rec.dead_letters() == []
    with psycopg.connect(pg_dsn) as conn:
        got = conn.execute(
            "SELECT f.fill_id, f.quantity_filled, o.status, o.client_order_ref FROM fills f "
            "JOIN orders o USING (order_pk)"
        ).fetchall()
    assert got == [("T-1", Decimal(4), "PARTIALLY_FILLED", "gf-OP-1")]


def test_an_orphan_fill_is_refused_after_the_timeout_even_across_a_restart(
    recorder_config: Callable[..., RecorderConfig], pg_dsn: str
) -> None:
    cfg = recorder_config(orphan_fill_timeout_s=0.4)
    with Recorder(cfg) as rec:
        _fill(rec, "OP-2", "T-2")
        rec.close(timeout=0)  # before the sweep: still parked, journaled
    time.sleep(0.5)
    with Recorder(cfg) as rec:
        deadline = time.monotonic() + 10
        while rec.stats()["bridge_refused"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rec.flush(30)
        dead = rec.dead_letters()
        stats = rec.stats()
    assert stats["bridge_refused"] == 1
    assert stats["orders_parked_fills"] == 0
    assert [(d["kind"], d["event"]["fill_id"]) for d in dead] == [("refused", "T-2")]
    assert "OP-2" in dead[0]["reason"]
    with psycopg.connect(pg_dsn) as conn:
        logged = conn.execute(
            "SELECT log_level, trading_pair FROM system_logs "
            "WHERE message LIKE 'FillEvent refused%%'"
        ).fetchall()
        fills = conn.execute("SELECT count(*) FROM fills").fetchone()
    assert logged == [("WARNING", PAIR)]
    assert fills == (0,)
    with Recorder(cfg) as rec:
        assert rec.stats()["orders_parked_fills"] == 0
