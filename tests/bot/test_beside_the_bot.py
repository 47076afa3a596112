"""The recorder beside the bot's own database: its SQLAlchemy DSN, its own ``orders`` table,
a section of its configuration, its secrets, and its asyncio loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from botkit import EventType, ExecutionReportEvent, PubSub, TradeSignalProposedEvent

from galfriday_recorder import BotBridge, Recorder, RecorderConfig
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.migrate import discover


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
        assert conn.execute("SELECT count(*) FROM recorder.schema_migrations").fetchone() == (
            len(discover()),
        )
        assert conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone() == (None,)
        row = conn.execute(
            "SELECT config_content FROM recorder.configurations WHERE is_active"
        ).fetchone()
        assert row is not None
        (content,) = row
    assert content["exchange"] == {"api_key": "***", "api_secret": "***"}
    assert content["database"]["pg_schema"] == "recorder"


def test_the_bots_portfolio_state_as_it_is(
    recorder_config: Callable[..., RecorderConfig],
    pg_dsn: str,
    influx_service: InfluxService,
    influx_db: str,
) -> None:
    """``PortfolioManager.get_current_state()``: numbers as str, ``isoformat() + "Z"``."""
    when = datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    state = {
        "timestamp": when.isoformat() + "Z",
        "valuation_currency": "USD",
        "total_equity": "10012.345678901234567",
        "available_funds": {"USD": "9000.5", "XRP": "10"},
        "positions": {
            "XRP/USD": {
                "base_asset": "XRP",
                "quote_asset": "USD",
                "quantity": "2000",
                "average_entry_price": "0.5",
                "current_market_value": "1011.845678901234567",
                "unrealized_pnl": "11.845678901234567",
                "realized_pnl": "3.5",
                "trade_count": 0,
            }
        },
        "total_exposure_pct": "10.106",
        "daily_drawdown_pct": "0.25",
        "weekly_drawdown_pct": "1.5",
        "total_drawdown_pct": "2",
    }
    with Recorder(recorder_config()) as rec:
        rec.record_portfolio_state(state)
        assert rec.flush(30)
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT snapshot_timestamp, total_equity, available_balance, daily_drawdown_pct, "
            "positions->'XRP/USD'->>'unrealized_pnl' FROM portfolio_snapshots"
        ).fetchone()
    assert row == (
        when,
        Decimal("10012.345678901234567"),
        Decimal("9000.5"),
        0.25,
        "11.845678901234567",
    )
    got = influx_service.query(
        "SELECT total_equity, unrealized_pnl, position_qty_XRPUSD FROM portfolio_metrics",
        db=influx_db,
    )
    values = got["results"][0]["series"][0]["values"][0]
    assert values[0] == int(when.timestamp()) * 10**9 + 123456000
    assert values[1:] == [10012.345678901234, 11.845678901234567, 2000.0]
