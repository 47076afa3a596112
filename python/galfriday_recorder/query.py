"""The read side: what a bot and an operator ask the ledger and the time series.

``Query`` answers on the caller's thread, ``AsyncQuery`` on the caller's event
loop; both run the same statements and build the same typed rows (records
with exact ``Decimal``s from PostgreSQL's ``NUMERIC``; InfluxDB's float fields
as the ``Decimal`` of the text InfluxDB answers). Each statement is served by
an index (``sql/0003_read_indexes.sql``) and has a benchmark on 1M rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import dict_row

from .config import RecorderConfig
from .influxql import InfluxQL, l2_source
from .records import Fill, Order, Signal, Trade
from .riskstate import RISK_STATE_SQL, RiskState, risk_state, risk_state_params

T = TypeVar("T")
_SCALE = Decimal("1e-18")


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """The open trade cycles of one pair, netted: ``net_quantity`` > 0 is long."""

    trading_pair: str
    exchange: str
    net_quantity: Decimal
    average_entry_price: Decimal  # volume-weighted over the open quantity
    open_cycles: int
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None  # at mark_price, before exit fees


@dataclasses.dataclass(frozen=True, slots=True)
class StrategyPerformance:
    """Closed trades of one strategy; ``max_drawdown`` is of its cumulative realized P&L."""

    strategy_id: str
    trades: int
    wins: int
    realized_pnl: Decimal
    fees: Decimal
    max_drawdown: Decimal  # quote currency, peak-to-trough of the running P&L

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Performance:
    strategies: list[StrategyPerformance]
    # Of total_equity in portfolio_snapshots over the same period: (peak - trough) / peak.
    portfolio_max_drawdown_pct: Decimal


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclasses.dataclass(frozen=True, slots=True)
class BookMetrics:
    """The latest ``market_data_l2`` point of a pair: top of book and derived metrics."""

    time: datetime
    best_bid: Decimal | None
    best_ask: Decimal | None
    mid_price: Decimal | None
    spread: Decimal | None
    spread_pct: Decimal | None
    wap: Decimal | None
    imbalance: dict[int, Decimal]  # levels -> imbalance over them


@dataclasses.dataclass(frozen=True)
class _Statement(Generic[T]):
    """One SQL statement and how its rows become the answer."""

    sql: str
    params: Mapping[str, Any]
    build: Callable[[list[dict[str, Any]]], T]


def _q(value: Decimal) -> Decimal:
    return value.quantize(_SCALE, rounding=ROUND_HALF_EVEN)


_TRADE_COLUMNS = (
    "t.trade_id, t.signal_id, t.trading_pair, t.exchange, t.strategy_id, t.side, "
    "t.entry_timestamp, t.exit_timestamp, t.quantity, t.average_entry_price, "
    "t.average_exit_price, t.total_commission, t.realized_pnl, t.realized_pnl_pct, "
    "t.exit_reason, eo.client_order_id AS entry_client_order_id, "
    "xo.client_order_id AS exit_client_order_id"
)
_FILL_COLUMNS = (
    "f.fill_pk, f.fill_id, o.client_order_id, f.exchange_order_id, f.trading_pair, "
    "f.exchange, f.side, f.quantity_filled, f.fill_price, f.commission, f.commission_asset, "
    "f.liquidity_type, f.filled_at"
)
_ORDER_COLUMNS = (
    "o.client_order_id, o.exchange_order_id, o.signal_id, o.trading_pair, o.exchange, o.side, "
    "o.order_type, o.quantity_ordered, o.limit_price, o.stop_price, o.status, o.error_message, "
    "o.exit_reason, o.created_at, o.submitted_at, o.last_updated_at"
)
_SIGNAL_COLUMNS = (
    "s.signal_id, s.trading_pair, s.exchange, s.strategy_id, s.side, s.entry_type, "
    "s.proposed_entry_price, s.proposed_sl_price, s.proposed_tp_price, s.prediction_event_id, "
    "s.prediction_value, s.status, s.rejection_reason, s.risk_check_details, s.created_at"
)


def _where(**filters: tuple[str, Any]) -> tuple[str, dict[str, Any]]:
    """``AND``-ed conditions for the filters given (value not None), and their parameters.

    Only the conditions in use are in the text, so each combination gets a plan that
    uses its index (``x IS NULL OR ...`` would defeat a generic plan).
    """
    used = {name: (cond, value) for name, (cond, value) in filters.items() if value is not None}
    text = " AND ".join(cond for cond, _ in used.values()) or "true"
    return text, {name: value for name, (_, value) in used.items()}


def _fill(row: dict[str, Any]) -> Fill:
    fill_pk = row.pop("fill_pk")
    if row["fill_id"] is None:  # a row written by something else than this ledger
        row["fill_id"] = f"pk-{fill_pk}"
    return Fill(**row)


def _positions(marks: Mapping[str, Decimal] | None) -> _Statement[list[Position]]:
    def build(rows: list[dict[str, Any]]) -> list[Position]:
        by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            by_pair.setdefault((r["trading_pair"], r["exchange"]), []).append(r)
        out = []
        with localcontext() as ctx:
            ctx.prec = 80
            for (pair, exchange), cycles in sorted(by_pair.items()):
                net = Decimal(0)
                open_total = Decimal(0)
                cost = Decimal(0)
                for c in cycles:
                    direction = 1 if c["side"] == "BUY" else -1
                    qty = c["entry_qty"] - c["exit_qty"]
                    c["avg"] = c["entry_value"] / c["entry_qty"]
                    net += direction * qty
                    open_total += qty
                    cost += qty * c["avg"]
                mark = None if marks is None else marks.get(pair)
                pnl = None
                if mark is not None:
                    pnl = _q(
                        sum(
                            (
                                (1 if c["side"] == "BUY" else -1)
                                * (c["entry_qty"] - c["exit_qty"])
                                * (mark - c["avg"])
                                for c in cycles
                            ),
                            Decimal(0),
                        )
                    )
                out.append(
                    Position(pair, exchange, net, _q(cost / open_total), len(cycles), mark, pnl)
                )
        return out

    # A cycle is open while its signal has fills that do not net to zero and no trade.
    return _Statement(
        "SELECT s.trading_pair, s.exchange, s.side, "
        "sum(f.quantity_filled) FILTER (WHERE f.side = s.side) AS entry_qty, "
        "sum(f.quantity_filled * f.fill_price) FILTER (WHERE f.side = s.side) AS entry_value, "
        "coalesce(sum(f.quantity_filled) FILTER (WHERE f.side <> s.side), 0) AS exit_qty "
        "FROM signals s JOIN orders o ON o.signal_id = s.signal_id "
        "JOIN fills f ON f.order_pk = o.order_pk "
        "WHERE s.status = 'APPROVED' "
        "AND NOT EXISTS (SELECT 1 FROM trades t WHERE t.signal_id = s.signal_id) "
        "GROUP BY s.signal_id HAVING sum(f.quantity_filled) FILTER (WHERE f.side = s.side) "
        "> coalesce(sum(f.quantity_filled) FILTER (WHERE f.side <> s.side), 0)",
        {},
        build,
    )


def _newest_first(
    source: str,
    time_column: str,
    tiebreak: str,
    window: tuple[datetime | None, datetime | None],
    limit: int,
    build: Callable[[list[dict[str, Any]]], list[T]],
    **filters: tuple[str, Any],
) -> _Statement[list[T]]:
    """``source`` rows with ``since <= time_column < until`` and ``filters``, newest first."""
    since, until = window
    where, params = _where(
        since=(f"{time_column} >= %(since)s", since),
        until=(f"{time_column} < %(until)s", until),
        **filters,
    )
    return _Statement(
        f"{source} WHERE {where} ORDER BY {time_column} DESC, {tiebreak} DESC LIMIT %(limit)s",
        {**params, "limit": limit},
        build,
    )


def _trades(
    since: datetime | None,
    until: datetime | None,
    strategy_id: str | None,
    trading_pair: str | None,
    limit: int,
) -> _Statement[list[Trade]]:
    return _newest_first(
        f"SELECT {_TRADE_COLUMNS} FROM trades t "
        "LEFT JOIN orders eo ON eo.order_pk = t.entry_order_pk "
        "LEFT JOIN orders xo ON xo.order_pk = t.exit_order_pk",
        "t.exit_timestamp",
        "t.trade_pk",
        (since, until),
        limit,
        lambda rows: [Trade(**r) for r in rows],
        strategy=("t.strategy_id = %(strategy)s", strategy_id),
        pair=("t.trading_pair = %(pair)s", trading_pair),
    )


def _fills(
    since: datetime | None,
    until: datetime | None,
    trading_pair: str | None,
    client_order_id: uuid.UUID | None,
    limit: int,
) -> _Statement[list[Fill]]:
    return _newest_first(
        f"SELECT {_FILL_COLUMNS} FROM fills f JOIN orders o ON o.order_pk = f.order_pk",
        "f.filled_at",
        "f.fill_pk",
        (since, until),
        limit,
        lambda rows: [_fill(r) for r in rows],
        pair=("f.trading_pair = %(pair)s", trading_pair),
        coid=("o.client_order_id = %(coid)s", client_order_id),
    )


def _open_orders(trading_pair: str | None) -> _Statement[list[Order]]:
    where, params = _where(pair=("o.trading_pair = %(pair)s", trading_pair))
    return _Statement(
        f"SELECT {_ORDER_COLUMNS} FROM orders o "
        "WHERE o.status NOT IN ('FILLED', 'CANCELED', 'REJECTED', 'EXPIRED') "
        f"AND {where} ORDER BY o.order_pk",
        params,
        lambda rows: [Order(**r) for r in rows],
    )


def _signal(signal_id: uuid.UUID) -> _Statement[Signal | None]:
    return _Statement(
        f"SELECT {_SIGNAL_COLUMNS} FROM signals s WHERE s.signal_id = %(id)s",
        {"id": signal_id},
        lambda rows: Signal(**rows[0]) if rows else None,
    )


def _performance(
    since: datetime | None, until: datetime | None, strategy_id: str | None
) -> _Statement[Performance]:
    def build(rows: list[dict[str, Any]]) -> Performance:
        drawdown = rows[0]["portfolio_drawdown"] if rows else None
        return Performance(
            [
                StrategyPerformance(
                    r["strategy_id"],
                    int(r["trades"]),
                    int(r["wins"]),
                    r["pnl"],
                    r["fees"],
                    r["max_drawdown"],
                )
                for r in rows
                if r["strategy_id"] is not None
            ],
            Decimal(0) if drawdown is None else drawdown,
        )

    where, params = _where(
        since=("exit_timestamp >= %(since)s", since),
        until=("exit_timestamp < %(until)s", until),
        strategy=("strategy_id = %(strategy)s", strategy_id),
    )
    window, window_params = _where(
        since=("snapshot_timestamp >= %(since)s", since),
        until=("snapshot_timestamp < %(until)s", until),
    )
    # Running P&L per strategy in exit order; its drawdown is the largest fall from a
    # running peak that starts at 0 (the strategy's P&L before its first trade).
    return _Statement(
        "WITH t AS (SELECT strategy_id, realized_pnl, total_commission, exit_timestamp, "
        "trade_pk, sum(realized_pnl) OVER (PARTITION BY strategy_id "
        "ORDER BY exit_timestamp, trade_pk) AS running FROM trades "
        f"WHERE {where}), "
        "d AS (SELECT *, greatest(0, max(running) OVER (PARTITION BY strategy_id "
        "ORDER BY exit_timestamp, trade_pk)) - running AS fall FROM t), "
        "s AS (SELECT strategy_id, count(*) AS trades, "
        "count(*) FILTER (WHERE realized_pnl > 0) AS wins, sum(realized_pnl) AS pnl, "
        "sum(total_commission) AS fees, greatest(0, max(fall)) AS max_drawdown "
        "FROM d GROUP BY strategy_id), "
        "p AS (SELECT max((peak - total_equity) / peak) * 100 AS portfolio_drawdown FROM "
        "(SELECT total_equity, max(total_equity) OVER (ORDER BY snapshot_timestamp) AS peak "
        "FROM portfolio_snapshots "
        f"WHERE {window}) e WHERE peak > 0) "
        "SELECT s.*, p.portfolio_drawdown FROM p LEFT JOIN s ON true ORDER BY s.strategy_id",
        {**params, **window_params},
        build,
    )


def _risk(as_of: datetime | None) -> _Statement[RiskState]:
    params = risk_state_params(as_of)
    return _Statement(RISK_STATE_SQL, params, lambda rows: risk_state(rows[0], params["as_of"]))


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).replace(
        microsecond=ns % 1_000_000_000 // 1000
    )


def _bars(rows: list[dict[str, Any]]) -> list[Bar]:
    return [
        Bar(_utc(r["time"]), r["open"], r["high"], r["low"], r["close"], r["volume"])
        for r in reversed(rows)
    ]


def _book(rows: list[dict[str, Any]]) -> BookMetrics | None:
    if not rows:
        return None
    r = rows[0]
    prefix = "imbalance_"
    return BookMetrics(
        time=_utc(r["time"]),
        best_bid=r.get("bid_price_level_0"),
        best_ask=r.get("ask_price_level_0"),
        mid_price=r.get("mid_price"),
        spread=r.get("spread"),
        spread_pct=r.get("spread_pct"),
        wap=r.get("wap"),
        imbalance={
            int(k[len(prefix) :]): v
            for k, v in r.items()
            if k.startswith(prefix) and k[len(prefix) :].isdigit() and v is not None
        },
    )


_OHLCV = (
    "SELECT open, high, low, close, volume FROM market_data_ohlcv "
    "WHERE trading_pair = $pair AND interval = $interval ORDER BY time DESC LIMIT {limit}"
)
_LATEST_BOOK = (
    "SELECT * FROM {source} WHERE trading_pair = $pair AND time > now() - {lookback}s "
    "ORDER BY time DESC LIMIT 1"
)


class _Reads:
    """What both flavours share: the configuration and the InfluxDB reader."""

    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self._influx: InfluxQL | None = None

    def _influxql(self) -> InfluxQL:
        if self._influx is None:
            self._influx = InfluxQL(self.config)
        return self._influx

    def _ohlcv(self, trading_pair: str, interval: str, limit: int) -> list[Bar]:
        sql = _OHLCV.format(limit=int(limit))
        rows = self._influxql().rows(sql, {"pair": trading_pair, "interval": interval})
        return _bars(rows)

    def _latest_book(self, trading_pair: str, lookback_s: int) -> BookMetrics | None:
        sql = _LATEST_BOOK.format(source=l2_source(self.config), lookback=int(lookback_s))
        return _book(self._influxql().rows(sql, {"pair": trading_pair}))

    def _close_influx(self) -> None:
        if self._influx is not None:
            self._influx.close()
            self._influx = None


class Query(_Reads):
    """Synchronous reads on one PostgreSQL connection (opened on first use, thread-safe)."""

    def __init__(self, config: RecorderConfig) -> None:
        super().__init__(config)
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def _run(self, statement: _Statement[T]) -> T:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.config.pg_conninfo, autocommit=True, row_factory=dict_row
            )
        rows = self._conn.execute(statement.sql, statement.params).fetchall()
        return statement.build(rows)

    def open_positions(self, marks: Mapping[str, Decimal] | None = None) -> list[Position]:
        """Net open quantity per pair; ``marks`` (pair -> price) adds unrealized P&L."""
        return self._run(_positions(marks))

    def trades(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        strategy_id: str | None = None,
        trading_pair: str | None = None,
        limit: int = 1000,
    ) -> list[Trade]:
        """Closed trades, newest exit first, ``since <= exit < until``."""
        return self._run(_trades(since, until, strategy_id, trading_pair, limit))

    def fills(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        trading_pair: str | None = None,
        client_order_id: uuid.UUID | None = None,
        limit: int = 1000,
    ) -> list[Fill]:
        """Fills, newest first."""
        return self._run(_fills(since, until, trading_pair, client_order_id, limit))

    def open_orders(self, trading_pair: str | None = None) -> list[Order]:
        return self._run(_open_orders(trading_pair))

    def signal(self, signal_id: uuid.UUID) -> Signal | None:
        return self._run(_signal(signal_id))

    def performance(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        strategy_id: str | None = None,
    ) -> Performance:
        return self._run(_performance(since, until, strategy_id))

    def risk_state(self, as_of: datetime | None = None) -> RiskState:
        """Peak equity, the day's and week's starting equity, the current losing streak."""
        return self._run(_risk(as_of))

    def ohlcv(self, trading_pair: str, interval: str = "1m", limit: int = 100) -> list[Bar]:
        """The latest ``limit`` bars of a pair, oldest first."""
        return self._ohlcv(trading_pair, interval, limit)

    def latest_book(self, trading_pair: str, lookback_s: int = 3600) -> BookMetrics | None:
        """The newest book point of a pair within ``lookback_s``, or None."""
        return self._latest_book(trading_pair, lookback_s)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._close_influx()

    def __enter__(self) -> Query:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncQuery(_Reads):
    """The same reads on the caller's event loop (psycopg's async connection; InfluxDB's
    blocking HTTP in a worker thread)."""

    def __init__(self, config: RecorderConfig) -> None:
        super().__init__(config)
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None

    async def _run(self, statement: _Statement[T]) -> T:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.config.pg_conninfo, autocommit=True, row_factory=dict_row
            )
        cur = await self._conn.execute(statement.sql, statement.params)
        return statement.build(await cur.fetchall())

    async def open_positions(self, marks: Mapping[str, Decimal] | None = None) -> list[Position]:
        return await self._run(_positions(marks))

    async def trades(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        strategy_id: str | None = None,
        trading_pair: str | None = None,
        limit: int = 1000,
    ) -> list[Trade]:
        return await self._run(_trades(since, until, strategy_id, trading_pair, limit))

    async def fills(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        trading_pair: str | None = None,
        client_order_id: uuid.UUID | None = None,
        limit: int = 1000,
    ) -> list[Fill]:
        return await self._run(_fills(since, until, trading_pair, client_order_id, limit))

    async def open_orders(self, trading_pair: str | None = None) -> list[Order]:
        return await self._run(_open_orders(trading_pair))

    async def signal(self, signal_id: uuid.UUID) -> Signal | None:
        return await self._run(_signal(signal_id))

    async def performance(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        strategy_id: str | None = None,
    ) -> Performance:
        return await self._run(_performance(since, until, strategy_id))

    async def risk_state(self, as_of: datetime | None = None) -> RiskState:
        return await self._run(_risk(as_of))

    async def ohlcv(self, trading_pair: str, interval: str = "1m", limit: int = 100) -> list[Bar]:
        return await asyncio.to_thread(self._ohlcv, trading_pair, interval, limit)

    async def latest_book(self, trading_pair: str, lookback_s: int = 3600) -> BookMetrics | None:
        return await asyncio.to_thread(self._latest_book, trading_pair, lookback_s)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self._close_influx()

    async def __aenter__(self) -> AsyncQuery:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def to_pandas(rows: Iterable[Any]) -> Any:
    """Typed rows as a ``pandas.DataFrame`` (pandas is optional: ImportError without it)."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(r) for r in rows])
