"""The facade end to end on real servers: every method lands, and the bot's loop never waits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from galfriday_recorder import (
    Fill,
    Order,
    PortfolioSnapshot,
    Recorder,
    RecorderConfig,
    Signal,
    Trade,
)
from galfriday_recorder.lab.services import InfluxService, PostgresService
from galfriday_recorder.lab.synth import SyntheticKraken
from galfriday_recorder.report import SEED_MEASUREMENTS, SEED_TABLES, measurement_counts

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _config(make: Callable[..., RecorderConfig], **extra: object) -> RecorderConfig:
    return make(metrics_interval_s=0.2, batch_interval_s=0.1, **extra)


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SEED_TABLES}  # type: ignore[index]


def test_every_method_lands_in_every_table_and_measurement(
    recorder_config: Callable[..., RecorderConfig],
    pg_dsn: str,
    influx_service: InfluxService,
    influx_db: str,
) -> None:
    cfg = _config(recorder_config)
    market = SyntheticKraken(["XRP/USD"], seed=3, step_ns=1_000_000_000)
    with Recorder(cfg) as rec:
        tops = [t for _, f in market.session(200) for t in rec.on_market_frame(f)]
        assert tops
        assert {t.symbol for t in tops} == {"XRP/USD"}
        bot_log = logging.getLogger("galfriday.test")
        bot_log.setLevel(logging.INFO)
        bot_log.addHandler(rec.log_handler())
        signal = Signal(
            trading_pair="XRP/USD",
            exchange="kraken",
            strategy_id="s1",
            side="BUY",
            entry_type="LIMIT",
            proposed_entry_price=Decimal("0.62000"),
            proposed_sl_price=Decimal("0.61000"),
            proposed_tp_price=Decimal("0.64000"),
            created_at=T0,
        )
        rec.record_signal(signal)
        rec.update_signal_status(signal.signal_id, "APPROVED", None, {"max_exposure": "ok"})
        entry = Order(
            trading_pair="XRP/USD",
            exchange="kraken",
            side="BUY",
            order_type="LIMIT",
            quantity_ordered=Decimal("100"),
            limit_price=Decimal("0.62000"),
            signal_id=signal.signal_id,
            created_at=T0,
        )
        rec.record_order(entry)
        rec.update_order(
            entry.client_order_id,
            "NEW",
            exchange_order_id="OQCLML-1",
            submitted_at=T0,
            updated_at=T0,
        )
        rec.record_fill(
            Fill(
                trading_pair="XRP/USD",
                exchange="kraken",
                side="BUY",
                quantity_filled=Decimal("100"),
                fill_price=Decimal("0.62000"),
                commission=Decimal("0.1612"),
                commission_asset="USD",
                client_order_id=entry.client_order_id,
                fill_id="T1",
                liquidity_type="MAKER",
                filled_at=T0 + timedelta(seconds=1),
            )
        )
        exit_order = Order(
            trading_pair="XRP/USD",
            exchange="kraken",
            side="SELL",
            order_type="TAKE_PROFIT",
            quantity_ordered=Decimal("100"),
            stop_price=Decimal("0.64000"),
            signal_id=signal.signal_id,
            created_at=T0,
        )
        rec.record_order(exit_order)
        rec.update_order(exit_order.client_order_id, "NEW", exchange_order_id="OQCLML-2")
        rec.record_fill(
            Fill(
                trading_pair="XRP/USD",
                exchange="kraken",
                side="SELL",
                quantity_filled=Decimal("100"),
                fill_price=Decimal("0.64000"),
                commission=Decimal("0.1664"),
                commission_asset="USD",
                exchange_order_id="OQCLML-2",
                fill_id="T2",
                filled_at=T0 + timedelta(seconds=60),
            )
        )
        rec.record_trade(
            Trade(
                signal_id=None,
                trading_pair="XRP/USD",
                exchange="kraken",
                strategy_id="manual",
                side="BUY",
                entry_timestamp=T0,
                exit_timestamp=T0 + timedelta(seconds=5),
                quantity=Decimal("1"),
                average_entry_price=Decimal("0.6"),
                average_exit_price=Decimal("0.61"),
                total_commission=Decimal("0"),
                realized_pnl=Decimal("0.01"),
                realized_pnl_pct=1.6667,
                exit_reason="MANUAL_CLOSE",
            )
        )
        rec.record_portfolio_snapshot(
            PortfolioSnapshot(
                total_equity=Decimal("10001.6724"),
                available_balance=Decimal("10001.6724"),
                total_exposure_pct=0.0,
                daily_drawdown_pct=0.0,
                weekly_drawdown_pct=0.0,
                total_drawdown_pct=0.0,
                positions={},
                snapshot_timestamp=T0,
            )
        )
        config_hash = rec.record_configuration({"strategy": "s1", "risk": {"max": "0.3"}})
        bot_log.info("filled", extra={"trading_pair": "XRP/USD", "signal_id": signal.signal_id})
        rec.record_ohlcv(
            "XRP/USD",
            "15m",
            Decimal("0.62"),
            Decimal("0.65"),
            Decimal("0.61"),
            Decimal("0.64"),
            Decimal("12345.5"),
            T0,
        )
        rec.record_features("XRP/USD", "default_v1", {"rsi_14": 55.5, "spread_pct": 0.01}, T0)
        rec.record_prediction("XRP/USD", "xgb", "up_5m", 0.71, confidence=0.4, timestamp=T0)
        rec.record_portfolio_metrics(
            total_equity=Decimal("10001.6724"),
            available_balance=Decimal("10001.6724"),
            unrealized_pnl=Decimal(0),
            realized_pnl_session=Decimal("1.6724"),
            total_exposure_pct=0.0,
            daily_drawdown_pct=0.0,
            weekly_drawdown_pct=0.0,
            total_drawdown_pct=0.0,
            positions={"XRP/USD": (Decimal(0), Decimal(0))},
            timestamp=T0,
        )
        rec.record_system_metrics(
            {"api_call_latency_ms": 42.0, "websocket_connected": True},
            module_id="bot",
            timestamp=T0,
        )
        time.sleep(0.5)  # at least one self-metrics sample
        report = rec.flush(30)
        assert report, report
        stats = rec.stats()
    assert stats["market_book_messages"] >= 200
    counts = _counts(pg_dsn)
    assert [t for t in SEED_TABLES if not counts[t]] == []
    with psycopg.connect(pg_dsn) as conn:
        derived = conn.execute(
            "SELECT realized_pnl, exit_reason FROM trades WHERE signal_id = %s", (signal.signal_id,)
        ).fetchone()
        active = conn.execute("SELECT config_hash FROM configurations WHERE is_active").fetchall()
    # (0.64 - 0.62) * 100 - 0.1612 - 0.1664, exactly
    assert derived == (Decimal("1.672400000000000000"), "TP_HIT")
    assert active == [(config_hash,)]
    points = measurement_counts(influx_service.query, influx_db)
    assert all(points[m] > 0 for m in SEED_MEASUREMENTS), points
    own = influx_service.query(
        "SELECT count(cpu_usage_pct) FROM system_metrics WHERE module_id = 'recorder'", db=influx_db
    )
    assert own["results"][0]["series"][0]["values"][0][1] >= 1
    # Every system_metrics point (the bot's and the recorder's own) names this recorder.
    hosts = influx_service.query(
        'SHOW TAG VALUES FROM system_metrics WITH KEY = "host_id"', db=influx_db
    )
    assert [v[1] for v in hosts["results"][0]["series"][0]["values"]] == [cfg.instance_name]
    with psycopg.connect(pg_dsn) as conn:
        owners = conn.execute(
            "SELECT DISTINCT recorder_instance FROM signals UNION "
            "SELECT DISTINCT recorder_instance FROM orders"
        ).fetchall()
    assert owners == [(cfg.instance_name,)]


def test_a_life_shorter_than_the_metrics_interval_still_reports_itself(
    recorder_config: Callable[..., RecorderConfig],
    influx_service: InfluxService,
    influx_db: str,
) -> None:
    """A recorder closed before its first self-metrics tick writes one sample at close."""
    cfg = recorder_config(metrics_interval_s=3600.0)
    with Recorder(cfg):
        pass
    own = influx_service.query(
        "SELECT count(cpu_usage_pct) FROM system_metrics WHERE module_id = 'recorder' "
        f"AND host_id = '{cfg.instance_name}'",
        db=influx_db,
    )
    assert own["results"][0]["series"][0]["values"][0][1] == 1


def test_bad_input_raises_and_harms_nothing(recorder_config: Callable[..., RecorderConfig]) -> None:
    from galfriday_recorder import MalformedFrame, UnknownSymbol, ValidationError

    cfg = _config(recorder_config)
    market = SyntheticKraken(["XRP/USD"], seed=5)
    with Recorder(cfg) as rec:
        frames = [f for _, f in market.session(50)]
        for f in frames:
            rec.on_market_frame(f)
        with pytest.raises(MalformedFrame):
            rec.on_market_frame(b'{"channel":"book","type":"update","data":[{"symbol":')
        with pytest.raises(UnknownSymbol):
            rec.on_market_frame(
                b'{"channel":"book","type":"update","data":[{"symbol":"ZZZ/USD",'
                b'"bids":[{"price":1.0,"qty":1.0}],"asks":[],"checksum":1}]}'
            )
        with pytest.raises(ValueError, match="rsi_14"):
            rec.record_features("XRP/USD", "v1", {"rsi_14": float("nan")})
        with pytest.raises(ValidationError, match="proposed_sl_price"):
            Signal(
                trading_pair="XRP/USD",
                exchange="kraken",
                strategy_id="s",
                side="BUY",
                entry_type="LIMIT",
                proposed_sl_price=0.5,  # type: ignore[arg-type]
                proposed_tp_price=Decimal("0.7"),
            )
        before = rec.market.book("XRP/USD")
        assert before.in_sync
        assert rec.stats()["market_errors"] == 2
        assert rec.flush(30)


@pytest.mark.faults
def test_bot_loop_never_waits_while_both_databases_are_down(
    recorder_config: Callable[..., RecorderConfig],
    pg_service: PostgresService | None,
    pg_dsn: str,
    influx_service: InfluxService,
    influx_db: str,
) -> None:
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    cfg = _config(recorder_config, l2_levels=2)
    frames = [f for _, f in SyntheticKraken(["XRP/USD", "DOGE/USD"], seed=9).session(100_000)]
    snapshots = len(range(0, len(frames), 10))
    lateness: list[float] = []

    async def bot(rec: Recorder) -> None:
        for i, frame in enumerate(frames):
            rec.on_market_frame(frame)
            if i % 10 == 0:
                rec.record_system_metrics({"event_queue_depth": i})
                t = T0 + timedelta(microseconds=i)
                rec.record_portfolio_snapshot(
                    PortfolioSnapshot(
                        total_equity=Decimal(i),
                        available_balance=Decimal(i),
                        total_exposure_pct=0.0,
                        daily_drawdown_pct=0.0,
                        weekly_drawdown_pct=0.0,
                        total_drawdown_pct=0.0,
                        positions={"i": i},
                        snapshot_timestamp=t,
                    )
                )
            if i % 100 == 0:
                await asyncio.sleep(0)

    async def timer(stop: asyncio.Event) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - t - 0.001)

    async def session(rec: Recorder) -> None:
        stop = asyncio.Event()
        ticker = asyncio.create_task(timer(stop))
        await bot(rec)
        stop.set()
        await ticker

    rec = Recorder(cfg).start()
    try:
        pg_service.stop()
        influx_service.stop()
        asyncio.run(session(rec))
        worst = max(lateness)
        print(f"\nworst timer lateness with both databases down: {worst * 1000:.2f} ms")
        # A call that waited on a writer would wait out its backoff (doubling to a cap of
        # 2 s for the ledger, 5 s for the series) and pass 0.5 s within the session; the
        # margin is for what a shared 2-core machine adds (one CI run reached 252 ms; a
        # gen-2 collection took 38 ms unloaded).
        assert worst < 0.5, f"the bot's loop waited {worst * 1000:.1f} ms"
        assert not rec.flush(1.0)  # nothing can be committed while the servers are down
    finally:
        pg_service.start()
        influx_service.start()
    try:
        # flush() does not wait out an outage: until the writer has seen InfluxDB again
        # (its backoff), a spool counts as not written. drain_spool() waits through it.
        assert rec.series.drain_spool(timeout=120)
        report = rec.flush(120)
        assert report, report
        stats = rec.stats()
    finally:
        rec.close(30)
    assert _counts(pg_dsn)["portfolio_snapshots"] == snapshots
    points = measurement_counts(influx_service.query, influx_db)
    assert points["system_metrics"] >= snapshots
    assert stats["series_lines_dropped"] == 0
    assert points["market_data_l2"] == stats["market_book_messages"]


def test_a_full_market_buffer_is_counted_and_said(
    recorder_config: Callable[..., RecorderConfig], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = recorder_config(buffer_max_bytes=2048, metrics_interval_s=0.1)
    frames = [f for _, f in SyntheticKraken(["XRP/USD"], seed=2).session(500)]
    with (
        caplog.at_level(logging.WARNING, logger="galfriday_recorder.recorder"),
        Recorder(cfg) as rec,
    ):
        for frame in frames:  # far faster than one 20 ms drain: the buffer fills
            rec.on_market_frame(frame)
        assert rec.stats()["market_lines_dropped"] > 0
        deadline = time.monotonic() + 5
        while "market lines dropped" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "market lines dropped since the last sample" in caplog.text
