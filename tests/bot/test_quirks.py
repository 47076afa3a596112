"""The bot's quirks, each decided in orders.py / vocabulary.py, against real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from galfriday_recorder import Recorder, RecorderConfig
from galfriday_recorder.records import client_order_uuid

PAIR = "XRP/USD"


def _report(rec: Recorder, **fields: Any) -> None:
    base: dict[str, Any] = {
        "trading_pair": PAIR,
        "order_type": "MARKET",
        "side": "BUY",
        "quantity_ordered": "10",
    }
    rec.record_execution_report(**{**base, **fields})


def _orders(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT client_order_ref, exchange_order_id, status, quantity_filled, error_message "
            "FROM orders ORDER BY order_pk"
        ).fetchall()


@pytest.fixture
def rec(recorder_config: Callable[..., RecorderConfig]) -> Any:
    with Recorder(recorder_config()) as recorder:
        yield recorder


def test_statuses_in_the_bots_words(rec: Recorder, pg_dsn: str) -> None:
    _report(rec, exchange_order_id="O-1", client_order_id="gf-a", order_status="PENDING")
    _report(rec, exchange_order_id="O-2", client_order_id="gf-b", order_status="OPEN")
    _report(
        rec,
        exchange_order_id="O-2",
        client_order_id="gf-b",
        order_status="CANCELLED",
        error_message="User requested",
    )
    _report(rec, exchange_order_id="O-3", client_order_id="gf-c", order_status="FAILED")
    # A per-trade report with status UNKNOWN and nothing filled says nothing.
    _report(rec, exchange_order_id="O-4", client_order_id="gf-d", order_status="UNKNOWN")
    _report(rec, exchange_order_id="O-1", client_order_id="gf-a", order_status="UNKNOWN")
    assert rec.flush(30)
    assert _orders(pg_dsn) == [
        ("gf-a", "O-1", "PENDING_NEW", Decimal(0), None),
        ("gf-b", "O-2", "CANCELED", Decimal(0), "User requested"),
        ("gf-c", "O-3", "REJECTED", Decimal(0), None),
    ]
    assert rec.stats()["orders_reports_ignored"] == 2


def test_placeholder_ids_and_the_shared_halt_close_id(rec: Recorder, pg_dsn: str) -> None:
    for eid in ("OH-1", "OH-2"):
        _report(
            rec,
            exchange_order_id=eid,
            client_order_id="HALT_CLOSE",
            order_status="closed",
            quantity_filled="10",
            average_fill_price="0.5",
            commission="0.01",
        )
    # The bot's error report: no exchange id ("NO_EXCHANGE_ID"), its own client id.
    _report(
        rec,
        exchange_order_id="NO_EXCHANGE_ID",
        client_order_id=f"internal_{uuid.uuid4()}_error",
        order_status="REJECTED",
        error_message="EOrder:Insufficient funds",
    )
    assert rec.flush(30)
    got = _orders(pg_dsn)
    assert [(r[0], r[1], r[2]) for r in got[:2]] == [
        ("HALT_CLOSE:OH-1", "OH-1", "FILLED"),
        ("HALT_CLOSE:OH-2", "OH-2", "FILLED"),
    ]
    assert got[2][1:] == (None, "REJECTED", Decimal(0), "EOrder:Insufficient funds")


def test_string_ids_work_for_every_lookup(rec: Recorder, pg_dsn: str) -> None:
    ref = "gf-1a2b3c4d-1719999999999999"
    _report(rec, exchange_order_id="O-9", client_order_id=ref, order_status="NEW")
    rec.update_order(ref, "PENDING_CANCEL")  # by the string
    rec.update_order(client_order_uuid(ref), "CANCELED")  # by the UUID
    assert rec.flush(30)
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT client_order_id, status FROM orders WHERE client_order_ref = %s", (ref,)
        ).fetchone()
    assert row == (uuid.uuid5(uuid.UUID("6f1d3c2e-9a57-4b8e-8f0a-1c4e2b7d9a31"), ref), "CANCELED")


def test_kraken_asset_codes_and_exact_str_numbers(rec: Recorder, pg_dsn: str) -> None:
    _report(
        rec,
        exchange_order_id="O-5",
        client_order_id="gf-e",
        order_status="closed",
        quantity_filled="10",
        average_fill_price="0.12345678901",
        commission="0.000123456789",
        commission_asset="XXRP",
    )
    assert rec.flush(30)
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT fill_price, commission, commission_asset FROM fills").fetchone()
    assert row == (Decimal("0.12345678901"), Decimal("0.000123456789"), "XRP")


def test_a_refused_report_raises_at_the_public_call(rec: Recorder) -> None:
    from galfriday_recorder import ValidationError

    with pytest.raises(ValidationError, match="order_type"):
        _report(
            rec,
            exchange_order_id="O-7",
            client_order_id="gf-f",
            order_status="NEW",
            order_type="ICEBERG-ISH",
        )
    with pytest.raises(ValidationError, match="commission_asset"):
        _report(
            rec,
            exchange_order_id="O-8",
            client_order_id="gf-g",
            order_status="closed",
            quantity_filled="1",
            average_fill_price="1",
            commission="1",
            commission_asset="ZEUR",
        )
