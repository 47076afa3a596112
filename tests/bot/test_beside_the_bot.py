"""The recorder beside the bot's own database: its SQLAlchemy DSN, its own ``orders`` table,
a section of its configuration, its secrets, and its asyncio loop."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
from botkit import EventType, ExecutionReportEvent, PubSub, TradeSignalProposedEvent

from galfriday_recorder import BotBridge, Recorder, RecorderConfig
from galfriday_recorder.services import InfluxService


def _asyncpg_url(conninfo: str) -> str:
    """The bot's form of the same database: ``postgresql+asyncpg://user@host:port/db``."""
    p = psycopg.conninfo.conninfo_to_dict(conninfo)
    return f"postgresql+asyncpg://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"


def test_own_schema_beside_the_bots_orders_table(
    empty_pg_dsn: str, tmp_path: Path, influx_service: InfluxService, influx_db: str
) -> None:
    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        # The bot's own SQLAlchemy table of the same name, with other columns.
        conn.execute("CREATE TABLE orders (id SERIAL PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO orders (note) VALUES ('the bot''s row')")
    section = {
        "pg_dsn": _asyncpg_url(empty_pg_dsn),
        "pg_schema": "recorder",
        "data_dir": str(tmp_path / "data"),
        "commit_interval_ms": 2,
        "influx_url": influx_service.url(),
        "influx_database": influx_db,
    }
    cfg = RecorderConfig.from_mapping(section)
    sid = uuid.uuid4()
    bus = PubSub()

    async def bot() -> tuple[int, int]:
        rec = await Recorder(cfg).astart()
        BotBridge(rec).attach(bus, EventType)
        await bus.publish(
            TradeSignalProposedEvent(
                signal_id=sid,
                trading_pair="XRP/USD",
                exchange="kraken",
                side="BUY",
                entry_type="MARKET",
                proposed_sl_price=Decimal("0.4"),
                proposed_tp_price=Decimal("0.6"),
                strategy_id="s",
            )
        )
        await bus.publish(
            ExecutionReportEvent(
                exchange_order_id="OX-1",
                client_order_id="gf-x-1",
                trading_pair="XRP/USD",
                exchange="kraken",
                order_status="OPEN",
                order_type="MARKET",
                side="BUY",
                quantity_ordered=Decimal(5),
                signal_id=sid,
            )
        )
        rec.record_configuration(
            {"exchange": {"api_key": "k", "api_secret": "s"}, "database": section}
        )
        flushed = await rec.aflush()
        assert flushed
        recovered = await rec.aload_recovery_state()
        await rec.aclose()
        return len(recovered.open_orders), len(recovered.signals)

    assert asyncio.run(bot()) == (1, 1)
    with psycopg.connect(empty_pg_dsn) as conn:
        assert conn.execute("SELECT note FROM public.orders").fetchall() == [("the bot's row",)]
        assert conn.execute("SELECT client_order_ref, status FROM recorder.orders").fetchall() == [
            ("gf-x-1", "NEW")
        ]
        assert conn.execute("SELECT count(*) FROM recorder.schema_migrations").fetchone() == (3,)
        assert conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone() == (None,)
        (content,) = conn.execute(
            "SELECT config_content FROM recorder.configurations WHERE is_active"
        ).fetchone()
    assert content["exchange"] == {"api_key": "***", "api_secret": "***"}
    assert content["database"]["pg_schema"] == "recorder"
