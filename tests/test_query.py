"""The read side against real PostgreSQL and InfluxDB, on rows written by hand (not the ledger).

Every expected value below is worked out by hand from the rows inserted here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from galfriday_recorder import AsyncQuery, Query, RecorderConfig
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.ledger.recovery import load_recovery_state
from galfriday_recorder.query import Bar, to_pandas

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
SIG = {name: uuid.UUID(int=i + 1) for i, name in enumerate(["xrp", "doge", "closed", "no"])}
COID = {name: uuid.UUID(int=100 + i) for i, name in enumerate(["o1", "o2", "o3", "o4", "o5", "o6"])}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _signal(conn: psycopg.Connection[Any], key: str, pair: str, side: str, status: str) -> None:
    conn.execute(
        "INSERT INTO signals (signal_id, trading_pair, exchange, strategy_id, side, entry_type,"
        " proposed_sl_price, proposed_tp_price, status, rejection_reason, created_at)"
        " VALUES (%s, %s, 'kraken', 'alpha', %s, 'LIMIT', 0.4, 0.7, %s, %s, %s)",
        (SIG[key], pair, side, status, "risk" if status == "REJECTED" else None, at(0)),
    )


def _order(
    conn: psycopg.Connection[Any],
    key: str,
    signal: str,
    pair: str,
    side: str,
    kind: str,
    qty: str,
    status: str,
) -> int:
    row = conn.execute(
        "INSERT INTO orders (client_order_id, signal_id, trading_pair, exchange, side,"
        " order_type, quantity_ordered, limit_price, status, created_at, last_updated_at)"
        " VALUES (%s, %s, %s, 'kraken', %s, %s, %s, 0.5, %s, %s, %s) RETURNING order_pk",
        (COID[key], SIG[signal], pair, side, kind, D(qty), status, at(1), at(1)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _fill(
    conn: psycopg.Connection[Any],
    order_pk: int,
    fid: str,
    pair: str,
    side: str,
    qty: str,
    price: str,
    minute: float,
) -> None:
    conn.execute(
        "INSERT INTO fills (fill_id, order_pk, trading_pair, exchange, side, quantity_filled,"
        " fill_price, commission, commission_asset, liquidity_type, filled_at)"
        " VALUES (%s, %s, %s, 'kraken', %s, %s, %s, 0.01, 'USD', 'MAKER', %s)",
        (fid, order_pk, pair, side, D(qty), D(price), at(minute)),
    )


def _trade(
    conn: psycopg.Connection[Any],
    strategy: str,
    pair: str,
    pnl: str,
    exit_minute: float,
    signal: uuid.UUID | None = None,
) -> None:
    conn.execute(
        "INSERT INTO trades (trade_id, signal_id, trading_pair, exchange, strategy_id, side,"
        " entry_timestamp, exit_timestamp, quantity, average_entry_price, average_exit_price,"
        " total_commission, realized_pnl, realized_pnl_pct, exit_reason)"
        " VALUES (%s, %s, %s, 'kraken', %s, 'BUY', %s, %s, 10, 0.5, 0.6, 0.25, %s, 1.5, 'TP_HIT')",
        (uuid.uuid4(), signal, pair, strategy, at(0), at(exit_minute), D(pnl)),
    )


@pytest.fixture
def ledger_rows(pg_dsn: str) -> str:
    """Two open positions, one closed cycle, a rejected signal, five trades, four snapshots."""
    with psycopg.connect(pg_dsn) as conn:
        _signal(conn, "xrp", "XRP/USD", "BUY", "APPROVED")
        _signal(conn, "doge", "DOGE/USD", "SELL", "APPROVED")
        _signal(conn, "closed", "XRP/USD", "BUY", "APPROVED")
        _signal(conn, "no", "XRP/USD", "BUY", "REJECTED")
        o1 = _order(conn, "o1", "xrp", "XRP/USD", "BUY", "LIMIT", "100", "FILLED")
        _fill(conn, o1, "f1", "XRP/USD", "BUY", "60", "0.5", 2)
        _fill(conn, o1, "f2", "XRP/USD", "BUY", "40", "0.51", 3)
        o2 = _order(conn, "o2", "xrp", "XRP/USD", "SELL", "TAKE_PROFIT", "100", "PARTIALLY_FILLED")
        _fill(conn, o2, "f3", "XRP/USD", "SELL", "30", "0.52", 4)
        o3 = _order(conn, "o3", "doge", "DOGE/USD", "SELL", "MARKET", "1000", "FILLED")
        _fill(conn, o3, "f4", "DOGE/USD", "SELL", "1000", "0.1", 5)
        _order(conn, "o4", "doge", "DOGE/USD", "BUY", "STOP_LOSS", "1000", "NEW")
        o5 = _order(conn, "o5", "closed", "XRP/USD", "BUY", "LIMIT", "10", "FILLED")
        _fill(conn, o5, "f5", "XRP/USD", "BUY", "10", "0.5", 6)
        o6 = _order(conn, "o6", "closed", "XRP/USD", "SELL", "LIMIT", "10", "FILLED")
        _fill(conn, o6, "f6", "XRP/USD", "SELL", "10", "0.6", 7)
        # alpha: +10, -4, +3 -> running 10, 6, 9: drawdown 4. beta: -2, -1 -> drawdown 3.
        _trade(conn, "alpha", "XRP/USD", "10", 10, SIG["closed"])
        _trade(conn, "alpha", "DOGE/USD", "-4", 20)
        _trade(conn, "beta", "XRP/USD", "-2", 25)
        _trade(conn, "alpha", "XRP/USD", "3", 30)
        _trade(conn, "beta", "DOGE/USD", "-1", 40)
        # Saturday 10:00, Sunday 23:59, then Monday 2026-03-02 from 12:00 on.
        for minute, equity in (
            (-50 * 60, "95"),
            (-12 * 60 - 1, "97"),
            (0, "100"),
            (10, "120"),
            (20, "90"),
            (30, "110"),
        ):
            conn.execute(
                "INSERT INTO portfolio_snapshots (snapshot_timestamp, total_equity,"
                " available_balance, total_exposure_pct, daily_drawdown_pct,"
                " weekly_drawdown_pct, total_drawdown_pct, positions)"
                " VALUES (%s, %s, %s, 0, 0, 0, 0, '{}')",
                (at(minute), D(equity), D(equity)),
            )
    return pg_dsn


@pytest.fixture
def query(ledger_rows: str) -> Any:
    with Query(RecorderConfig(pg_dsn=ledger_rows)) as q:
        yield q


def test_open_positions_net_entry_and_unrealized_pnl(query: Query) -> None:
    xrp, doge = sorted(query.open_positions(), key=lambda p: p.trading_pair, reverse=True)
    assert (xrp.trading_pair, xrp.net_quantity, xrp.average_entry_price) == (
        "XRP/USD",
        D(70),
        D("0.504"),
    )
    assert (doge.net_quantity, doge.average_entry_price) == (D(-1000), D("0.1"))
    assert xrp.unrealized_pnl is None
    marked = {p.trading_pair: p for p in query.open_positions({"XRP/USD": D("0.55")})}
    assert marked["XRP/USD"].unrealized_pnl == D("3.22")  # 70 x (0.55 - 0.504)
    assert marked["DOGE/USD"].unrealized_pnl is None
    short = query.open_positions({"DOGE/USD": D("0.09")})
    assert {p.trading_pair: p.unrealized_pnl for p in short}["DOGE/USD"] == D("10")


def test_open_orders_and_signal(query: Query) -> None:
    assert [o.client_order_id for o in query.open_orders()] == [COID["o2"], COID["o4"]]
    (o4,) = query.open_orders("DOGE/USD")
    assert (o4.status, o4.order_type, o4.quantity_ordered) == ("NEW", "STOP_LOSS", D(1000))
    signal = query.signal(SIG["no"])
    assert signal is not None
    assert (signal.status, signal.rejection_reason, signal.proposed_tp_price) == (
        "REJECTED",
        "risk",
        D("0.7"),
    )
    assert query.signal(uuid.uuid4()) is None


def test_trades_filters_and_order(query: Query) -> None:
    assert [t.realized_pnl for t in query.trades()] == [D(-1), D(3), D(-2), D(-4), D(10)]
    assert [t.realized_pnl for t in query.trades(strategy_id="beta")] == [D(-1), D(-2)]
    assert [t.realized_pnl for t in query.trades(trading_pair="XRP/USD", limit=2)] == [D(3), D(-2)]
    window = query.trades(since=at(20), until=at(40))
    assert [t.exit_timestamp for t in window] == [at(30), at(25), at(20)]
    (first,) = query.trades(until=at(11))
    assert (first.signal_id, first.total_commission, first.realized_pnl_pct) == (
        SIG["closed"],
        D("0.25"),
        1.5,
    )


def test_fills_filters(query: Query) -> None:
    assert [f.fill_id for f in query.fills()] == ["f6", "f5", "f4", "f3", "f2", "f1"]
    assert [f.fill_id for f in query.fills(trading_pair="DOGE/USD")] == ["f4"]
    by_order = query.fills(client_order_id=COID["o1"])
    assert [(f.fill_id, f.quantity_filled, f.fill_price) for f in by_order] == [
        ("f2", D(40), D("0.51")),
        ("f1", D(60), D("0.5")),
    ]
    assert [f.fill_id for f in query.fills(since=at(3), until=at(5), limit=5)] == ["f3", "f2"]


def test_performance_per_strategy_and_portfolio_drawdown(query: Query) -> None:
    perf = query.performance()
    alpha, beta = perf.strategies
    assert (alpha.strategy_id, alpha.trades, alpha.wins, alpha.realized_pnl) == (
        "alpha",
        3,
        2,
        D(9),
    )
    assert (alpha.fees, alpha.max_drawdown) == (D("0.75"), D(4))
    assert (beta.trades, beta.wins, beta.realized_pnl, beta.max_drawdown) == (2, 0, D(-3), D(3))
    assert perf.portfolio_max_drawdown_pct == 25  # 120 -> 90
    later = query.performance(since=at(20), strategy_id="alpha")
    assert [(s.trades, s.realized_pnl, s.max_drawdown) for s in later.strategies] == [
        (2, D(-1), D(4))
    ]
    assert later.portfolio_max_drawdown_pct == 0  # 90 -> 110 only rises


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        # Tuesday 01:00: the day began at 110 (Monday 12:30), the week at 97 (Sunday 23:59).
        (datetime(2026, 3, 3, 1, tzinfo=timezone.utc), ("120", "110", "97", 1)),
        # Monday 12:28: two losses (-4, -2) since the +10 win; +3 comes at 12:30.
        (at(28), ("120", "97", "97", 2)),
        # Saturday noon: nothing before the day or the week began: their first snapshot.
        (datetime(2026, 2, 28, 12, tzinfo=timezone.utc), ("95", "95", "95", 0)),
    ],
)
def test_risk_state_as_of(query: Query, as_of: datetime, expected: tuple[Any, ...]) -> None:
    risk = query.risk_state(as_of)
    peak, day, week, losses = expected
    assert (risk.peak_equity, risk.day_start_equity, risk.week_start_equity) == (
        D(peak),
        D(day),
        D(week),
    )
    assert risk.consecutive_losses == losses
    assert risk.as_of == as_of


def test_recovery_state_carries_the_risk_state(query: Query, ledger_rows: str) -> None:
    with psycopg.connect(ledger_rows) as conn:
        risk = load_recovery_state(conn, None).risk
    assert dataclasses.replace(risk, as_of=T0) == dataclasses.replace(query.risk_state(), as_of=T0)
    assert (risk.peak_equity, risk.day_start_equity, risk.consecutive_losses) == (
        D(120),
        D(110),
        1,
    )


def test_to_pandas_keeps_decimals(query: Query) -> None:
    frame = to_pandas(query.trades(strategy_id="alpha"))
    assert list(frame["realized_pnl"]) == [D(3), D(-4), D(10)]
    assert frame["realized_pnl"].sum() == D(9)
    assert str(frame["exit_timestamp"].iloc[0]) == "2026-03-02 12:30:00+00:00"


def test_async_query_answers_the_same(ledger_rows: str) -> None:
    cfg = RecorderConfig(pg_dsn=ledger_rows)

    async def ask() -> tuple[Any, ...]:
        async with AsyncQuery(cfg) as q:
            return (
                await q.open_positions({"XRP/USD": D("0.55")}),
                await q.trades(strategy_id="alpha"),
                await q.fills(trading_pair="XRP/USD"),
                await q.open_orders(),
                await q.signal(SIG["xrp"]),
                await q.performance(),
            )

    with Query(cfg) as q:
        expected = (
            q.open_positions({"XRP/USD": D("0.55")}),
            q.trades(strategy_id="alpha"),
            q.fills(trading_pair="XRP/USD"),
            q.open_orders(),
            q.signal(SIG["xrp"]),
            q.performance(),
        )
    assert asyncio.run(ask()) == expected
    signal = expected[4]
    assert signal is not None
    assert signal.signal_id == SIG["xrp"]


def _write(influx: InfluxService, db: str, lines: str) -> None:
    req = urllib.request.Request(
        f"{influx.url()}/write?db={db}&precision=ns", data=lines.encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def test_ohlcv_and_latest_book_from_influxdb(influx_service: InfluxService, influx_db: str) -> None:
    base = 1_772_452_800_000_000_000  # 2026-03-02T12:00:00Z
    minute = 60_000_000_000
    bars = "".join(
        f"market_data_ohlcv,exchange=kraken,interval=1m,trading_pair=XRP/USD "
        f"open=0.5234{i},high=0.53,low=0.52,close=0.5251{i},volume=1234.5678901{i} "
        f"{base + i * minute}\n"
        for i in range(3)
    )
    other = (
        "market_data_ohlcv,exchange=kraken,interval=5m,trading_pair=XRP/USD "
        f"open=9,high=9,low=9,close=9,volume=9 {base + 9 * minute}\n"
        "market_data_ohlcv,exchange=kraken,interval=1m,trading_pair=DOGE/USD "
        f"open=8,high=8,low=8,close=8,volume=8 {base + 9 * minute}\n"
    )
    now = time.time_ns()
    books = (
        "market_data_l2,exchange=kraken,trading_pair=XRP/USD bid_price_level_0=0.5,"
        f"ask_price_level_0=0.6,mid_price=0.55,spread=0.1,wap=0.56,imbalance_5=0.1 {now - 2000}\n"
        "market_data_l2,exchange=kraken,trading_pair=XRP/USD bid_price_level_0=0.52341,"
        "ask_price_level_0=0.52347,mid_price=0.52344,spread=0.00006,spread_pct=0.0114626,"
        f"wap=0.523455,imbalance_5=-0.25,imbalance_10=0.125,is_snapshot=false {now - 1000}\n"
        "market_data_l2,exchange=kraken,trading_pair=DOGE/USD mid_price=7 "
        f"{now}\n"
    )
    _write(influx_service, influx_db, bars + other + books)
    cfg = RecorderConfig(influx_url=influx_service.url(), influx_database=influx_db)
    with Query(cfg) as q:
        latest = q.ohlcv("XRP/USD", "1m", limit=2)
        book = q.latest_book("XRP/USD")
        assert q.latest_book("ETH/USD") is None
        assert q.ohlcv("ETH/USD") == []
    assert latest == [
        Bar(
            datetime.fromtimestamp((base + minute * i) / 1e9, tz=timezone.utc),
            D(f"0.5234{i}"),
            D("0.53"),
            D("0.52"),
            D(f"0.5251{i}"),
            D(f"1234.5678901{i}"),
        )
        for i in (1, 2)
    ]
    assert book is not None
    assert (book.best_bid, book.best_ask, book.mid_price, book.spread) == (
        D("0.52341"),
        D("0.52347"),
        D("0.52344"),
        D("0.00006"),
    )
    assert (book.spread_pct, book.wap) == (D("0.0114626"), D("0.523455"))
    assert book.imbalance == {5: D("-0.25"), 10: D("0.125")}
    assert abs(book.time.timestamp() * 1e9 - (now - 1000)) < 1e4

    async def ask() -> Any:
        q = AsyncQuery(cfg)
        try:
            return await q.ohlcv("XRP/USD", "1m", limit=2), await q.latest_book("XRP/USD")
        finally:
            await q.close()

    assert asyncio.run(ask()) == (latest, book)


def test_influxql_values_are_bound_not_spliced(
    influx_service: InfluxService, influx_db: str
) -> None:
    hostile = "XRP/USD' OR trading_pair != '"
    _write(
        influx_service,
        influx_db,
        f"market_data_ohlcv,exchange=kraken,interval=1m,trading_pair=XRP/USD open=1,high=1,"
        f"low=1,close=1,volume=1 {time.time_ns()}\n",
    )
    cfg = RecorderConfig(influx_url=influx_service.url(), influx_database=influx_db)
    with Query(cfg) as q:
        assert q.ohlcv(hostile) == []
        assert len(q.ohlcv("XRP/USD")) == 1
