"""The one object the bot launches: market core, ledger and series writer behind one facade.

Every recording method returns without waiting on I/O. Market frames are
parsed and encoded in Rust on the caller's thread; the encoded lines stay in
the core's buffer until the background loop drains them (every
``_DRAIN_INTERVAL_S``), so the trading loop never touches a batch. Ledger
events go through the ledger's journal; series points through the series
writer. All three share one background thread running a uvloop loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import FrameType, TracebackType
from typing import Any
from uuid import UUID

import orjson
import psutil

from . import vocabulary as vocab
from ._core import BookTop, InvalidPoint, MarketRecorder, encode_line
from .config import RecorderConfig, redact_mapping
from .l2 import l2_fields
from .ledger import ORDER_TRANSITIONS, Ledger
from .ledger.recovery import RecoveryState, Scope
from .loghandler import LedgerLogHandler
from .migrate import migrate
from .orders import OrderDesk, TradeFill
from .query import AsyncQuery, Query
from .records import (
    Fill,
    LogEntry,
    Order,
    PortfolioSnapshot,
    Signal,
    Trade,
    client_order_uuid,
    dumps,
    refuse_expanding,
    utcnow,
)
from .redaction import redact
from .retention import split_l2, writer_configs
from .runtime import BackgroundLoop
from .series import SeriesWriter

log = logging.getLogger(__name__)

_DRAIN_INTERVAL_S = 0.02
Timestamp = datetime | int | None
FieldValue = float | int | bool | str | Decimal


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _ns(ts: Timestamp) -> int:
    """Nanoseconds since the epoch from an aware datetime, an int of ns, or now.

    Exact integer arithmetic (``timestamp()`` is a float and ``int()`` of it
    truncates toward zero: a time before 1970 landed a second late); the
    encoder refuses what falls outside InfluxDB's range.
    """
    if ts is None:
        return time.time_ns()
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise InvalidPoint("timestamp: naive datetime; pass an aware (UTC) datetime")
        return (ts - _EPOCH) // _MICROSECOND * 1000
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise TypeError(f"timestamp: expected datetime or int ns, not {type(ts).__name__}")
    return ts


@dataclass(frozen=True)
class FlushReport:
    """What a flush or close got done in time; truthy when everything did."""

    ledger_committed: bool
    series_written: bool
    ledger_pending: int
    series_pending: int

    def __bool__(self) -> bool:
        return self.ledger_committed and self.series_written


class Recorder:
    """In-process recorder: ``with Recorder(cfg) as rec:`` or ``async with``, or start()/close()."""

    def __init__(
        self, config: RecorderConfig | None = None, *, install_signal_handlers: bool = False
    ) -> None:
        self.config = config if config is not None else RecorderConfig.load()
        cfg = self.config
        self._loop = BackgroundLoop()
        self.market = MarketRecorder(
            exchange=cfg.exchange,
            depth=cfg.book_depth,
            l2_levels=cfg.l2_levels,
            imbalance_levels=cfg.imbalance_levels,
            ohlcv_intervals=cfg.ohlcv_intervals,
            l2_sample_interval_ms=cfg.l2_sample_interval_ms,
            max_buffer_bytes=cfg.buffer_max_bytes,
            max_frame_bytes=cfg.max_frame_bytes,
            max_symbols=cfg.max_symbols,
            max_trade_ahead_ms=cfg.max_trade_ahead_ms,
        )
        self.ledger = Ledger(cfg, self._loop)
        # Raw L2 may go to a retention policy of its own, through a writer of its own.
        self._writers = [SeriesWriter(c, self._loop) for c in writer_configs(cfg)]
        self.series = self._writers[0]
        self.l2_series = self._writers[1] if len(self._writers) > 1 else None
        self.orders = OrderDesk(
            self.ledger, cfg.exchange, cfg.orphan_fill_timeout_s, ORDER_TRANSITIONS
        )
        self._refused = 0
        self._install_signals = install_signal_handlers
        self._previous_handlers: dict[int, Any] = {}
        self._tasks: list[concurrent.futures.Future[None]] = []
        self._started = False
        self._closed = False
        self._process = psutil.Process(os.getpid())
        self._market_errors = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        pg, influx = redact(self.config.pg_dsn), redact(self.config.influx_url)
        return f"Recorder(pg={pg!r}, influx={influx!r})"

    # -- life cycle -------------------------------------------------------
    def start(self) -> Recorder:
        """Migrate (when configured), replay journal and spool, start the background loop."""
        with self._lock:
            if self._started:
                return self
            if self.config.apply_migrations and self.config.pg_dsn:
                try:
                    migrate(self.config.pg_conninfo, schema=self.config.pg_schema)
                except Exception as exc:  # PostgreSQL may be down: the journal carries on
                    log.warning("migrations not applied at start: %s", redact(str(exc)))
            self._loop.start()
            self.ledger.start()
            self.orders.restore(self.ledger.parked())
            for writer in self._writers:
                writer.start()
            self._tasks = [
                self._loop.submit(self._drain_market()),
                self._loop.submit(self._sample_metrics()),
                self._loop.submit(self._expire_orphan_fills()),
            ]
            if self._install_signals:
                self._hook_signals()
            self._started = True
        return self

    def flush(self, timeout: float | None = 30.0) -> FlushReport:
        """Wait until all recorded so far is committed (ledger) and written or spooled (series)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drain_now()
        ledger_ok = self.ledger.flush(_remaining(deadline))
        series_ok = all([w.flush(_remaining(deadline)) for w in self._writers])
        return FlushReport(
            ledger_committed=ledger_ok,
            series_written=series_ok,
            ledger_pending=int(self.ledger.stats().get("journal_depth", 0)),
            series_pending=self._series_pending(),
        )

    def _series_pending(self) -> int:
        return sum(int(w.stats().get("pending_lines", 0)) for w in self._writers)

    def close(self, timeout: float | None = 30.0) -> FlushReport:
        """Emit open bars, flush, stop writers and loop; what is left stays journaled/spooled."""
        with self._lock:
            if self._closed or not self._started:
                self._closed = True
                return FlushReport(True, True, 0, 0)
            self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        self.market.flush_bars()
        for task in self._tasks:
            task.cancel()
        self._sample_self_metrics()  # the last one: a life shorter than the interval has one too
        self._drain_now()
        ledger_ok = self.ledger.close(_remaining(deadline))
        series_ok = all([w.close(_remaining(deadline)) for w in self._writers])
        report = FlushReport(
            ledger_committed=ledger_ok,
            series_written=series_ok,
            ledger_pending=int(self.ledger.stats().get("journal_depth", 0)),
            series_pending=self._series_pending(),
        )
        self._loop.stop()
        self._unhook_signals()
        if not report:
            log.warning("recorder closed with work left: %s", report)
        return report

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Recorder:
        return await self.astart()

    # The bot is one asyncio loop: these wait in a worker thread, never on its loop.
    async def astart(self) -> Recorder:
        return await asyncio.get_running_loop().run_in_executor(None, self.start)

    async def aflush(self, timeout: float | None = 30.0) -> FlushReport:
        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    async def aclose(self, timeout: float | None = 30.0) -> FlushReport:
        return await asyncio.get_running_loop().run_in_executor(None, self.close, timeout)

    async def aload_recovery_state(self, scope: Scope = "own") -> RecoveryState:
        return await asyncio.get_running_loop().run_in_executor(
            None, self.load_recovery_state, scope
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _hook_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("signal handlers not installed: start() was not called on the main thread")
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _unhook_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Close cleanly, then let the bot's own handler (or the default) take over."""
        previous = self._previous_handlers.get(signum)
        self.close()
        if callable(previous):
            previous(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)

    # -- market data (hot path) ------------------------------------------
    def on_market_frame(
        self, frame: bytes | str, received_at_ns: int | None = None
    ) -> list[BookTop]:
        """Parse one raw Kraken frame; book tops for the bot, lines buffered in Rust."""
        try:
            return self.market.ingest(frame, received_at_ns)
        except Exception:
            self._market_errors += 1
            raise

    def _drain_now(self) -> None:
        data = self.market.drain()
        if not data:
            return
        if self.l2_series is None:
            self.series.write_encoded(data, market=True)
            return
        l2, bars = split_l2(data)
        if l2:
            self.l2_series.write_encoded(l2, market=True)
        if bars:
            self.series.write_encoded(bars, market=True)

    async def _drain_market(self) -> None:
        while True:
            await asyncio.sleep(_DRAIN_INTERVAL_S)
            try:
                self._drain_now()
            except Exception:  # a dead drain would leave the core to drop every line
                log.exception("draining market lines failed")

    # -- ledger -----------------------------------------------------------
    def record_signal(self, signal: Signal) -> None:
        self.ledger.record_signal(signal)

    def update_signal_status(
        self,
        signal_id: UUID,
        status: str,
        rejection_reason: str | None = None,
        risk_check_details: dict[str, Any] | None = None,
    ) -> None:
        self.ledger.update_signal_status(signal_id, status, rejection_reason, risk_check_details)

    def record_order(self, order: Order) -> None:
        self.ledger.record_order(order)

    def update_order(
        self,
        client_order_id: UUID | str,
        status: str,
        *,
        exchange_order_id: str | None = None,
        submitted_at: datetime | None = None,
        error_message: str | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        """``client_order_id`` is the UUID, or the string the order was recorded with."""
        self.ledger.update_order(
            client_order_uuid(client_order_id),
            status,
            exchange_order_id=exchange_order_id,
            submitted_at=submitted_at,
            error_message=error_message,
            updated_at=updated_at,
        )

    def record_fill(self, fill: Fill) -> None:
        self.ledger.record_fill(fill)

    def record_trade(self, trade: Trade) -> None:
        self.ledger.record_trade(trade)

    def record_portfolio_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        self.ledger.record_portfolio_snapshot(snapshot)

    def record_portfolio_state(self, state: Mapping[str, Any]) -> None:
        """The bot's ``PortfolioManager.get_current_state()`` as it is (numbers as ``str``,
        ``...+00:00Z`` times): a ``portfolio_snapshots`` row and a ``portfolio_metrics`` point.

        ``available_balance`` is the available funds in ``valuation_currency``; positions
        are kept in the row as the bot gives them.
        """
        when = vocab.timestamp("timestamp", state.get("timestamp") or utcnow())
        currency = state.get("valuation_currency", "USD")
        funds = state.get("available_funds") or {}
        equity = vocab.decimal("total_equity", state.get("total_equity"))
        available = vocab.decimal("available_funds", funds.get(currency, "0"))
        pcts = {
            name: float(vocab.decimal(name, state.get(name, "0")))
            for name in (
                "total_exposure_pct",
                "daily_drawdown_pct",
                "weekly_drawdown_pct",
                "total_drawdown_pct",
            )
        }
        positions = state.get("positions") or {}
        self.record_portfolio_snapshot(
            PortfolioSnapshot(
                total_equity=equity,
                available_balance=available,
                positions=dict(positions),
                snapshot_timestamp=when,
                **pcts,
            )
        )
        unrealized = sum(
            (
                vocab.decimal("unrealized_pnl", p["unrealized_pnl"])
                for p in positions.values()
                if isinstance(p, Mapping) and p.get("unrealized_pnl") is not None
            ),
            Decimal(0),
        )
        self.record_portfolio_metrics(
            total_equity=equity,
            available_balance=available,
            unrealized_pnl=unrealized,
            realized_pnl_session=sum(
                (
                    vocab.decimal("realized_pnl", p.get("realized_pnl") or "0")
                    for p in positions.values()
                    if isinstance(p, Mapping)
                ),
                Decimal(0),
            ),
            positions={
                pair: (
                    vocab.decimal("quantity", p.get("quantity", "0")),
                    vocab.decimal("current_market_value", p.get("current_market_value") or "0"),
                )
                for pair, p in positions.items()
                if isinstance(p, Mapping)
            },
            timestamp=when,
            total_exposure_pct=pcts["total_exposure_pct"],
            daily_drawdown_pct=pcts["daily_drawdown_pct"],
            weekly_drawdown_pct=pcts["weekly_drawdown_pct"],
            total_drawdown_pct=pcts["total_drawdown_pct"],
        )

    def record_configuration(self, content: Mapping[str, Any]) -> str:
        """Store the bot's configuration with secret-looking keys masked; return its hash."""
        if not isinstance(content, Mapping):
            return self.ledger.record_configuration(content)  # refused there, naming the field
        refuse_expanding("config_content", content)  # before redacting walks it all
        return self.ledger.record_configuration(redact_mapping(content))

    # -- the bot's own shapes (see bridge.py for its events) ---------------------------
    def record_execution_report(self, **report: Any) -> None:
        """One of the bot's cumulative execution reports, in its own words and field names
        (``exchange_order_id``, ``order_status``, ``quantity_filled``, ``average_fill_price``,
        ``commission``, ...): the order on first sight, fills for what is new, its status."""
        self.orders.report(**report)

    def record_exchange_fill(
        self,
        *,
        exchange_order_id: str,
        fill_id: str,
        trading_pair: str,
        side: str,
        price: Any,
        quantity: Any,
        fee: Any = 0,
        commission_asset: str | None = None,
        filled_at: Any = None,
    ) -> None:
        """One execution by its exchange trade id (the bot's ``FillEvent``); it waits up to
        ``orphan_fill_timeout_s`` for its order if that has not been reported yet."""
        self.orders.trade_fill(
            TradeFill(
                exchange_order_id=exchange_order_id,
                fill_id=fill_id,
                trading_pair=trading_pair,
                side=vocab.side(side),
                price=vocab.decimal("price", price),
                quantity=vocab.decimal("quantity", quantity),
                fee=vocab.decimal("fee", fee),
                commission_asset=vocab.commission_asset(commission_asset, trading_pair),
                filled_at=vocab.timestamp("filled_at", filled_at) if filled_at else utcnow(),
            )
        )

    def record_refusal(
        self,
        what: str,
        event: Mapping[str, Any],
        reason: str,
        *,
        signal_id: UUID | None = None,
        trading_pair: str | None = None,
    ) -> None:
        """Something the bot sent that cannot be recorded: a dead letter and a log row."""
        self._refused += 1
        self.ledger.record_refused(what, event, reason)
        self.ledger.record_log(
            LogEntry(
                source_module="galfriday_recorder.bridge",
                log_level="WARNING",
                message=f"{what} refused, kept in the dead letters: {reason}"[:2000],
                signal_id=signal_id,
                trading_pair=trading_pair if trading_pair and len(trading_pair) <= 16 else None,
                context={"what": what},
            )
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        """Everything refused for good: ``{"seq", "kind", "reason", "event"}`` each, oldest
        first (PostgreSQL's refusals and the bridge's, whose ``kind`` is ``"refused"``)."""
        out = []
        for seq, kind, payload, reason in self.ledger.dead_letters():
            try:
                event: Any = orjson.loads(payload)
            except orjson.JSONDecodeError:
                event = payload.decode(errors="replace")
            if kind == "refused" and isinstance(event, dict):
                event = event.get("event")
            out.append({"seq": seq, "kind": kind, "reason": reason, "event": event})
        return out

    async def _expire_orphan_fills(self) -> None:
        interval = min(1.0, self.config.orphan_fill_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                for fill in self.orders.expired():
                    self.record_refusal(
                        "FillEvent",
                        orjson.loads(dumps(fill)),
                        f"its order {fill.exchange_order_id!r} was not reported within "
                        f"orphan_fill_timeout_s ({self.config.orphan_fill_timeout_s} s)",
                        trading_pair=fill.trading_pair,
                    )
            except Exception:  # the next round tries again; a dead sweep would park forever
                log.exception("expiring parked fills failed")

    def log_handler(self, level: int = logging.INFO) -> LedgerLogHandler:
        return self.ledger.log_handler(level)

    def load_recovery_state(self, scope: Scope = "own") -> RecoveryState:
        """This recorder's open orders and cycles (``"own"``) or every recorder's (``"all"``),
        with the database's latest snapshot, active configuration and risk state."""
        return self.ledger.load_recovery_state(scope)

    # -- reads ------------------------------------------------------------
    def query(self) -> Query:
        """Reads on the caller's thread, on a connection of their own (close it when done)."""
        return Query(self.config)

    def async_query(self) -> AsyncQuery:
        """The same reads on the caller's event loop."""
        return AsyncQuery(self.config)

    # -- series -----------------------------------------------------------
    def _point(
        self,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, FieldValue],
        timestamp: Timestamp,
        *,
        market: bool = False,
    ) -> None:
        # Raw L2 from the bot (record_l2) goes where the core's raw L2 goes.
        raw_l2 = measurement == "market_data_l2" and self.l2_series is not None
        writer = self.l2_series if raw_l2 and self.l2_series else self.series
        writer.write_encoded(
            encode_line(measurement, dict(tags), dict(fields), _ns(timestamp)), market=market
        )

    def _tags(self, trading_pair: str, **extra: str) -> dict[str, str]:
        return {"exchange": self.config.exchange, "trading_pair": trading_pair, **extra}

    def record_ohlcv(
        self,
        trading_pair: str,
        interval: str,
        open: Decimal | float,
        high: Decimal | float,
        low: Decimal | float,
        close: Decimal | float,
        volume: Decimal | float,
        timestamp: Timestamp,
    ) -> None:
        """One bar the bot built or fetched itself (the core records Kraken's own bars)."""
        self._point(
            "market_data_ohlcv",
            self._tags(trading_pair, interval=interval),
            {"open": open, "high": high, "low": low, "close": close, "volume": volume},
            timestamp,
            market=True,
        )

    def record_l2(
        self,
        trading_pair: str,
        bids: Sequence[Sequence[Any]],
        asks: Sequence[Sequence[Any]],
        *,
        is_snapshot: bool = False,
        timestamp: Timestamp = None,
    ) -> None:
        """A book the bot holds already (levels best first, as ``str``): one ``market_data_l2``
        point with the core's fields; raw Kraken frames belong in :meth:`on_market_frame`."""
        fields = l2_fields(
            bids,
            asks,
            is_snapshot=is_snapshot,
            levels=self.config.l2_levels,
            imbalance_levels=self.config.imbalance_levels,
        )
        self._point("market_data_l2", self._tags(trading_pair), fields, timestamp, market=True)

    def record_features(
        self,
        trading_pair: str,
        feature_set_id: str,
        values: Mapping[str, float],
        timestamp: Timestamp = None,
    ) -> None:
        self._point(
            "features", self._tags(trading_pair, feature_set_id=feature_set_id), values, timestamp
        )

    def record_prediction(
        self,
        trading_pair: str,
        model_id: str,
        target: str,
        value: float,
        confidence: float | None = None,
        timestamp: Timestamp = None,
    ) -> None:
        fields: dict[str, FieldValue] = {"prediction_value": value}
        if confidence is not None:
            fields["confidence"] = confidence
        self._point(
            "predictions",
            self._tags(trading_pair, model_id=model_id, prediction_target=target),
            fields,
            timestamp,
        )

    def record_portfolio_metrics(
        self,
        *,
        total_equity: Decimal | float,
        available_balance: Decimal | float,
        unrealized_pnl: Decimal | float,
        realized_pnl_session: Decimal | float,
        total_exposure_pct: float,
        daily_drawdown_pct: float,
        weekly_drawdown_pct: float,
        total_drawdown_pct: float,
        positions: Mapping[str, tuple[Decimal | float, Decimal | float]] | None = None,
        account_id: str = "main",
        timestamp: Timestamp = None,
    ) -> None:
        """``positions`` maps a pair to (qty, value): fields ``position_qty_XRPUSD`` and so on."""
        fields: dict[str, FieldValue] = {
            "total_equity": total_equity,
            "available_balance": available_balance,
            "unrealized_pnl": unrealized_pnl,
            "realized_pnl_session": realized_pnl_session,
            "total_exposure_pct": total_exposure_pct,
            "daily_drawdown_pct": daily_drawdown_pct,
            "weekly_drawdown_pct": weekly_drawdown_pct,
            "total_drawdown_pct": total_drawdown_pct,
        }
        for pair, (qty, value) in (positions or {}).items():
            asset = "".join(ch for ch in pair if ch.isalnum())
            fields[f"position_qty_{asset}"] = qty
            fields[f"position_value_{asset}"] = value
        self._point("portfolio_metrics", {"account_id": account_id}, fields, timestamp)

    def record_system_metrics(
        self,
        values: Mapping[str, FieldValue],
        *,
        module_id: str | None = None,
        timestamp: Timestamp = None,
    ) -> None:
        """The bot's own figures (``api_call_latency_ms``, ``websocket_connected``, ...)."""
        tags = {"host_id": self.config.host_id}
        if module_id:
            tags["module_id"] = module_id
        self._point("system_metrics", tags, values, timestamp)

    # -- self-metrics -----------------------------------------------------
    def stats(self) -> dict[str, float | int]:
        """Every figure the recorder keeps, flat, for the bot's health checks."""
        out: dict[str, float | int] = {
            "market_errors": self._market_errors,
            "bridge_refused": self._refused,
            "orders_parked_fills": self.orders.parked(),
        }
        out.update({f"orders_{k}": v for k, v in self.orders.counts.items()})
        for prefix, part in (
            ("market", self.market.stats()),
            ("ledger", self.ledger.stats()),
            ("series", self.series.stats()),
            *((("series_l2", self.l2_series.stats()),) if self.l2_series else ()),
        ):
            out.update({f"{prefix}_{k}": v for k, v in part.items()})
        return out

    def _self_metrics(self) -> dict[str, FieldValue]:
        stats = self.stats()
        ledger_tries = stats.get("ledger_committed", 0) + stats.get("ledger_pg_errors", 0)
        series_tries = stats.get("series_batches_written", 0) + stats.get("series_retries", 0)
        errors = stats.get("ledger_pg_errors", 0) + stats.get("series_retries", 0)
        return {
            "cpu_usage_pct": float(self._process.cpu_percent(None)),
            "memory_usage_mb": self._process.memory_info().rss / 1_048_576,
            "event_queue_depth": int(
                stats.get("ledger_journal_depth", 0) + stats.get("series_pending_lines", 0)
            ),
            "journal_depth": int(stats.get("ledger_journal_depth", 0)),
            "spool_bytes": int(stats.get("series_spool_bytes", 0)),
            "lines_dropped": int(
                stats.get("series_lines_dropped", 0) + stats.get("market_lines_dropped", 0)
            ),
            "log_records_dropped": int(stats.get("ledger_log_records_dropped", 0)),
            "pg_write_latency_ms_p99": float(stats.get("ledger_commit_latency_ms_p99", 0.0)),
            "influx_write_latency_ms_p99": float(stats.get("series_write_latency_ms_p99", 0.0)),
            "api_error_rate": errors / max(ledger_tries + series_tries, 1),
            "hot_path_ingest_us_p50": stats.get("market_ingest_ns_p50", 0) / 1000,
            "hot_path_ingest_us_p99": stats.get("market_ingest_ns_p99", 0) / 1000,
        }

    def _sample_self_metrics(self) -> None:
        try:
            self.record_system_metrics(self._self_metrics(), module_id="recorder")
        except Exception:
            log.exception("self-metrics sample failed")

    async def _sample_metrics(self) -> None:
        self._process.cpu_percent(None)
        market_dropped = 0
        while True:
            await asyncio.sleep(self.config.metrics_interval_s)
            self._sample_self_metrics()
            # The core cannot log: say here when its buffer was full (the series writer
            # logs its own drops).
            dropped = self.market.stats()["lines_dropped"]
            if dropped > market_dropped:
                log.warning(
                    "%d market lines dropped since the last sample: the core's buffer was "
                    "at buffer_max_bytes (%d) because nothing drained it",
                    dropped - market_dropped,
                    self.config.buffer_max_bytes,
                )
            market_dropped = dropped


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


__all__ = ["FlushReport", "Recorder"]
