"""A whole Gal-Friday session through ``BotBridge.attach`` on the bot's own bus shapes, ending
in exact rows and trades in PostgreSQL and points in InfluxDB."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from botkit import (
    ClosePositionCommand,
    EventType,
    ExecutionReportEvent,
    FeatureEvent,
    FillEvent,
    LogEvent,
    MarketDataL2Event,
    MarketDataOHLCVEvent,
    PredictionEvent,
    PubSub,
    TradeOutcomeEvent,
    TradeSignalApprovedEvent,
    TradeSignalProposedEvent,
    TradeSignalRejectedEvent,
)

from galfriday_recorder import Recorder, RecorderConfig
from galfriday_recorder.bridge import BotBridge
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.ledger.verify import verify
from galfriday_recorder.records import client_order_uuid

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
PAIR = "XRP/USD"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _report(**fields: Any) -> ExecutionReportEvent:
    base: dict[str, Any] = {
        "trading_pair": PAIR,
        "exchange": "kraken",
        "order_type": "LIMIT",
        "side": "BUY",
        "quantity_ordered": Decimal(100),
        "limit_price": Decimal("0.5"),
        "commission_asset": "ZUSD",
    }
    return ExecutionReportEvent(**{**base, **fields})


def _rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


async def _session(bus: PubSub, s1: uuid.UUID, s2: uuid.UUID, s3: uuid.UUID) -> None:
    entry_ref = f"gf-{str(s1)[:8]}-1719999999999999"
    sl_ref = f"gf-sl-{str(s1)[:8]}-1720000000000001"
    for event in [
        PredictionEvent(
            trading_pair=PAIR,
            exchange="kraken",
            timestamp_prediction_for=_at(0),
            model_id="xgb-1",
            prediction_target="prob_up_5m",
            prediction_value=0.71,
            confidence=0.4,
        ),
        FeatureEvent(
            trading_pair=PAIR,
            exchange="kraken",
            timestamp_features_for=_at(0),
            features={"rsi_14": 55.5, "spread_pct": 0.01},
        ),
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "FEATURES_CALCULATED",
            "timestamp": _at(1).isoformat() + "Z",
            "source_module": "FeatureEngine",
            "payload": {
                "trading_pair": PAIR,
                "exchange": "kraken",
                "timestamp_features_for": _at(1).isoformat() + "Z",
                "features": {"rsi_14": 56.0, "macd": -0.002, "missing": None},
            },
        },
        MarketDataOHLCVEvent(
            trading_pair=PAIR,
            exchange="kraken",
            interval="1m",
            timestamp_bar_start=_at(0),
            open="0.5",
            high="0.51",
            low="0.49",
            close="0.505",
            volume="12345.678",
        ),
        MarketDataL2Event(
            trading_pair=PAIR,
            exchange="kraken",
            bids=[("0.5000", "100"), ("0.4990", "300")],
            asks=[("0.5010", "200"), ("0.5020", "50")],
            is_snapshot=True,
            timestamp_exchange=_at(0),
        ),
        TradeSignalProposedEvent(
            signal_id=s1,
            trading_pair=PAIR,
            exchange="kraken",
            side="BUY",
            entry_type="LIMIT",
            proposed_entry_price=Decimal("0.5"),
            proposed_sl_price=Decimal("0.49"),
            proposed_tp_price=Decimal("0.52"),
            strategy_id="mr-1",
            triggering_prediction={"prediction_value": 0.71},
            timestamp=_at(2),
        ),
        TradeSignalApprovedEvent(
            signal_id=s1,
            trading_pair=PAIR,
            exchange="kraken",
            side="BUY",
            order_type="LIMIT",
            quantity=Decimal(100),
            sl_price=Decimal("0.49"),
            tp_price=Decimal("0.52"),
            risk_parameters={"max_risk": Decimal("0.02")},
            limit_price=Decimal("0.5"),
        ),
        # The order, acknowledged; then a trade fill; then polls repeating cumulative figures.
        _report(
            signal_id=s1,
            client_order_id=entry_ref,
            exchange_order_id="OENTRY-1",
            order_status="NEW",
            timestamp_exchange=_at(3),
        ),
        FillEvent(
            order_id="OENTRY-1",
            fill_id="TRADE-1",
            trading_pair=PAIR,
            side="BUY",
            price=Decimal("0.5"),
            quantity=Decimal(40),
            fee=Decimal("0.02"),
            timestamp=_at(4),
        ),
        _report(
            signal_id=s1,
            client_order_id=entry_ref,
            exchange_order_id="OENTRY-1",
            order_status="OPEN",
            quantity_filled=Decimal(40),
            average_fill_price=Decimal("0.5"),
            commission=Decimal("0.02"),
            timestamp_exchange=_at(5),
        ),
        # A report without a price: its quantity waits.
        _report(
            signal_id=s1,
            client_order_id=entry_ref,
            exchange_order_id="OENTRY-1",
            order_status="OPEN",
            quantity_filled=Decimal(70),
            timestamp_exchange=_at(6),
        ),
    ]:
        await bus.publish(event)
    closed = _report(
        signal_id=s1,
        client_order_id=entry_ref,
        exchange_order_id="OENTRY-1",
        order_status="CLOSED",
        quantity_filled=Decimal(100),
        average_fill_price=Decimal("0.503"),
        commission=Decimal("0.0503"),
        timestamp_exchange=_at(7),
    )
    for _poll in range(3):  # the 5 s poll repeats it
        await bus.publish(closed)
    for event in [
        # The exchange's trade fill for what the report already wrote: not counted twice.
        FillEvent(
            order_id="OENTRY-1",
            fill_id="TRADE-2",
            trading_pair=PAIR,
            side="BUY",
            price=Decimal("0.505"),
            quantity=Decimal(60),
            fee=Decimal("0.0303"),
            timestamp=_at(7),
        ),
        # The stop-loss fills before its order is reported, which carries the entry's side.
        FillEvent(
            order_id="OSL-1",
            fill_id="TRADE-3",
            trading_pair=PAIR,
            side="SELL",
            price=Decimal("0.49"),
            quantity=Decimal(100),
            fee=Decimal("0.049"),
            timestamp=_at(20),
        ),
        _report(
            signal_id=s1,
            client_order_id=sl_ref,
            exchange_order_id="OSL-1",
            order_type="stop-loss",
            limit_price=None,
            stop_price=Decimal("0.49"),
            order_status="OPEN",
            timestamp_exchange=_at(10),
        ),
        _report(
            signal_id=s1,
            client_order_id=sl_ref,
            exchange_order_id="OSL-1",
            order_type="STOP",
            limit_price=None,
            stop_price=Decimal("0.49"),
            order_status="CLOSED",
            quantity_filled=Decimal(100),
            average_fill_price=Decimal("0.49"),
            commission=Decimal("0.049"),
            timestamp_exchange=_at(21),
        ),
        TradeOutcomeEvent(signal_id=s1, strategy_id="mr-1", outcome="LOSS", pnl=Decimal("-1.3")),
        # A SELL signal, entered, then closed by a HALT without a signal.
        TradeSignalProposedEvent(
            signal_id=s2,
            trading_pair=PAIR,
            exchange="kraken",
            side="SELL",
            entry_type="MARKET",
            proposed_sl_price=Decimal("0.62"),
            proposed_tp_price=Decimal("0.55"),
            strategy_id="mr-1",
            timestamp=_at(30),
        ),
        TradeSignalApprovedEvent(
            signal_id=s2,
            trading_pair=PAIR,
            exchange="kraken",
            side="SELL",
            order_type="MARKET",
            quantity=Decimal(50),
            sl_price=Decimal("0.62"),
            tp_price=Decimal("0.55"),
            risk_parameters={},
        ),
        _report(
            signal_id=s2,
            client_order_id=f"gf-{str(s2)[:8]}-1720000000000002",
            exchange_order_id="OENTRY-2",
            order_type="MARKET",
            side="SELL",
            limit_price=None,
            quantity_ordered=Decimal(50),
            order_status="CLOSED",
            quantity_filled=Decimal(50),
            average_fill_price=Decimal("0.6"),
            commission=Decimal("0.03"),
            timestamp_exchange=_at(31),
        ),
        ClosePositionCommand(trading_pair=PAIR, quantity=Decimal(50), side="BUY"),
        _report(
            client_order_id="HALT_CLOSE",
            exchange_order_id="OHALT-1",
            order_type="market",
            side="buy",
            limit_price=None,
            quantity_ordered=Decimal(50),
            order_status="closed",
            quantity_filled=Decimal(50),
            average_fill_price=Decimal("0.59"),
            commission=Decimal("0.0295"),
            timestamp_exchange=_at(40),
        ),
        TradeSignalProposedEvent(
            signal_id=s3,
            trading_pair=PAIR,
            exchange="kraken",
            side="BUY",
            entry_type="MARKET",
            proposed_sl_price=Decimal("0.4"),
            proposed_tp_price=Decimal("0.6"),
            strategy_id="mr-1",
        ),
        TradeSignalRejectedEvent(
            signal_id=s3, trading_pair=PAIR, exchange="kraken", side="BUY", reason="exposure"
        ),
        LogEvent(
            source_module="ExecutionHandler",
            level="warning",
            message="slippage high",
            context={"signal_id": str(s1), "symbol": PAIR, "slippage_bps": 12},
        ),
        # Refused: an event the recorder does not know, and a report no order can hold.
        {"event_type": "FEATURES_CALCULATED", "payload": "not a mapping"},
        _report(
            client_order_id="gf-bad-1",
            exchange_order_id="OBAD-1",
            order_status="NEW",
            quantity_ordered="abc",
        ),
        # A fill whose order never comes.
        FillEvent(
            order_id="ONEVER-1",
            fill_id="TRADE-9",
            trading_pair=PAIR,
            side="BUY",
            price=Decimal(1),
            quantity=Decimal(1),
            fee=Decimal(0),
        ),
    ]:
        await bus.publish(event)


def test_a_bot_session_through_the_bus(
    recorder_config: Callable[..., RecorderConfig],
    pg_dsn: str,
    influx_service: InfluxService,
    influx_db: str,
) -> None:
    cfg = recorder_config(orphan_fill_timeout_s=0.5)
    s1, s2, s3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    bus = PubSub()
    with Recorder(cfg) as rec:
        bridge = BotBridge(rec)
        subscribed = bridge.attach(bus, EventType)
        assert EventType.EXECUTION_REPORT in subscribed
        assert EventType.PORTFOLIO_UPDATE not in subscribed
        asyncio.run(_session(bus, s1, s2, s3))
        deadline = asyncio.run(_wait_for(lambda: rec.stats()["bridge_refused"] >= 3))
        assert deadline, rec.stats()
        assert rec.flush(30)
        stats = rec.stats()
        dead = rec.dead_letters()
        bridge_stats = bridge.stats()
    assert bus.unsubscribed == []  # the bridge never raised into the bus
    assert bridge_stats["lost"] == 0
    assert stats["bridge_refused"] == 3
    assert sorted(d["kind"] for d in dead) == ["refused"] * 3
    reasons = " | ".join(d["reason"] for d in dead)
    assert "payload" in reasons
    assert "quantity_ordered" in reasons
    assert "orphan_fill_timeout_s" in reasons
    assert any(d["event"].get("fill_id") == "TRADE-9" for d in dead)
    assert stats["orders_trade_fills_covered"] == 1  # TRADE-2
    assert stats["orders_exit_sides_corrected"] == 1

    entry, sl = (
        client_order_uuid(f"gf-{str(s1)[:8]}-1719999999999999"),
        client_order_uuid(f"gf-sl-{str(s1)[:8]}-1720000000000001"),
    )
    orders = _rows(
        pg_dsn,
        "SELECT client_order_id, client_order_ref, side, order_type, status, quantity_filled, "
        "exit_reason FROM orders ORDER BY order_pk",
    )
    assert [o[0] for o in orders[:2]] == [entry, sl]
    assert orders[0][1:] == (
        f"gf-{str(s1)[:8]}-1719999999999999",
        "BUY",
        "LIMIT",
        "FILLED",
        Decimal(100),
        None,
    )
    assert orders[1][2:6] == ("SELL", "STOP_LOSS", "FILLED", Decimal(100))
    halt = [o for o in orders if o[1] == "HALT_CLOSE:OHALT-1"]
    assert len(halt) == 1
    assert halt[0][2:] == ("BUY", "MARKET", "FILLED", Decimal(50), "SHUTDOWN")
    fills = _rows(
        pg_dsn,
        "SELECT f.fill_id, f.quantity_filled, f.fill_price, f.commission, f.commission_asset "
        "FROM fills f "
        "JOIN orders USING (order_pk) WHERE client_order_id = ANY(%s) ORDER BY f.fill_pk",
        [entry, sl],
    )
    assert fills == [
        ("TRADE-1", Decimal(40), Decimal("0.5"), Decimal("0.02"), "USD"),
        ("rpt:OENTRY-1:100", Decimal(60), Decimal("0.505"), Decimal("0.0303"), "USD"),
        ("TRADE-3", Decimal(100), Decimal("0.49"), Decimal("0.049"), "USD"),
    ]
    trade = _rows(
        pg_dsn,
        "SELECT quantity, average_entry_price, average_exit_price, total_commission, "
        "realized_pnl, exit_reason FROM trades WHERE signal_id = %s",
        s1,
    )
    # (0.49 - 0.503) * 100 - (0.02 + 0.0303 + 0.049)
    assert trade == [
        (
            Decimal(100),
            Decimal("0.503"),
            Decimal("0.49"),
            Decimal("0.0993"),
            Decimal("-1.3993"),
            "SL_HIT",
        )
    ]
    # The HALT close had no signal: it closed the open SELL cycle of s2.
    # (0.6 - 0.59) * 50 - (0.03 + 0.0295)
    assert _rows(
        pg_dsn,
        "SELECT side, quantity, average_exit_price, realized_pnl, exit_reason FROM trades "
        "WHERE signal_id = %s",
        s2,
    ) == [("SELL", Decimal(50), Decimal("0.59"), Decimal("0.4405"), "SHUTDOWN")]
    with psycopg.connect(pg_dsn) as conn:
        assert verify(conn) == []  # the auditor derives the same trades from the fills
    signals = dict(_rows(pg_dsn, "SELECT signal_id, status FROM signals"))
    assert signals == {s1: "APPROVED", s2: "APPROVED", s3: "REJECTED"}
    logs = _rows(
        pg_dsn,
        "SELECT source_module, log_level, trading_pair, signal_id, context FROM system_logs "
        "WHERE message = 'slippage high'",
    )
    assert logs == [("ExecutionHandler", "WARNING", PAIR, s1, {"slippage_bps": 12})]
    outcome = _rows(
        pg_dsn, "SELECT message FROM system_logs WHERE message LIKE 'trade outcome of signal%%'"
    )
    assert len(outcome) == 1
    assert "pnl -1.3 differs from the derived -1.3993" in outcome[0][0]

    def count(measurement: str, field: str) -> int:
        got = influx_service.query(f"SELECT count({field}) FROM {measurement}", db=influx_db)
        return int(got["results"][0]["series"][0]["values"][0][1])

    assert count("predictions", "prediction_value") == 1
    assert count("features", "rsi_14") == 2
    assert count("market_data_ohlcv", "close") == 1
    l2 = influx_service.query(
        "SELECT bid_price_level_1, spread, wap, imbalance_5 FROM market_data_l2", db=influx_db
    )
    assert l2["results"][0]["series"][0]["values"][0][1:] == pytest.approx(
        [0.499, 0.001, (0.5 * 200 + 0.501 * 100) / 300, (400 - 250) / 650], rel=1e-15
    )


async def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()
