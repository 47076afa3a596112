"""The read side on tables of 1M rows: each query beside the same query with index scans off.

One database holds 1M signals, orders, fills, trades and portfolio snapshots (4
pairs, 8 strategies, one cycle a second); 50 cycles are still open and 50 orders
working. The baseline of each PostgreSQL query is the same statement with
``enable_indexscan`` and ``enable_bitmapscan`` off, so the ratio is what its index
buys. InfluxDB holds 1M ``market_data_l2`` points and 1M one-minute bars; its
baseline is the floor of any request, a ``/ping``.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from galfriday_recorder import Query, RecorderConfig
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.migrate import migrate
from galfriday_recorder.series import SeriesWriter

ROWS = 1_000_000
OPEN_EVERY = 20_000  # every 20,000th cycle is still open: 50 of them
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PAIRS = ("XRP/USD", "DOGE/USD", "ETH/USD", "BTC/USD")
ROUNDS = 7

_FILL_TABLES = f"""
SET session_replication_role = replica;  -- no FK triggers while loading (superuser)
INSERT INTO signals (signal_id, trading_pair, exchange, strategy_id, side, entry_type,
    proposed_sl_price, proposed_tp_price, status, created_at)
SELECT md5('s' || i)::uuid, (ARRAY{list(PAIRS)})[i % 4 + 1], 'kraken', 'strat_' || i % 8,
    'BUY', 'LIMIT', 0.4, 0.6, 'APPROVED', '{T0.isoformat()}'::timestamptz + i * interval '1 s'
FROM generate_series(1, {ROWS}) i;
INSERT INTO orders (client_order_id, signal_id, trading_pair, exchange, side, order_type,
    quantity_ordered, limit_price, status, created_at, last_updated_at)
SELECT md5('o' || i)::uuid, md5('s' || i)::uuid, (ARRAY{list(PAIRS)})[i % 4 + 1], 'kraken',
    'BUY', 'LIMIT', 100, 0.5, CASE WHEN i % {OPEN_EVERY} = 0 THEN 'NEW' ELSE 'FILLED' END,
    '{T0.isoformat()}'::timestamptz + i * interval '1 s',
    '{T0.isoformat()}'::timestamptz + i * interval '1 s'
FROM generate_series(1, {ROWS}) i;
INSERT INTO fills (fill_id, order_pk, trading_pair, exchange, side, quantity_filled,
    fill_price, commission, commission_asset, filled_at)
SELECT 'f' || i, i, (ARRAY{list(PAIRS)})[i % 4 + 1], 'kraken', 'BUY', 100,
    0.5 + (i % 100) * 0.0001, 0.013, 'USD', '{T0.isoformat()}'::timestamptz + i * interval '1 s'
FROM generate_series(1, {ROWS}) i;
INSERT INTO trades (trade_id, signal_id, trading_pair, exchange, strategy_id, side,
    entry_timestamp, exit_timestamp, quantity, average_entry_price, average_exit_price,
    total_commission, realized_pnl, realized_pnl_pct, exit_reason)
SELECT md5('t' || i)::uuid, CASE WHEN i % {OPEN_EVERY} = 0 THEN NULL ELSE md5('s' || i)::uuid END,
    (ARRAY{list(PAIRS)})[i % 4 + 1], 'kraken', 'strat_' || i % 8, 'BUY',
    '{T0.isoformat()}'::timestamptz + i * interval '1 s',
    '{T0.isoformat()}'::timestamptz + (i + 30) * interval '1 s', 100, 0.5,
    0.5 + (i % 7 - 3) * 0.001,
    0.026, (i % 7 - 3) * 0.1 - 0.026, (i % 7 - 3) * 0.2, 'TP_HIT'
FROM generate_series(1, {ROWS}) i;
INSERT INTO portfolio_snapshots (snapshot_timestamp, total_equity, available_balance,
    total_exposure_pct, daily_drawdown_pct, weekly_drawdown_pct, total_drawdown_pct, positions)
SELECT '{T0.isoformat()}'::timestamptz + i * interval '1 s', 10000 + (i % 1000) * 0.5, 10000,
    0, 0, 0, 0, '{{}}'
FROM generate_series(1, {ROWS}) i;
SET session_replication_role = origin;
ANALYZE;
"""


@pytest.fixture(scope="module")
def big_dsn(pg_admin_dsn: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    conninfo = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    conninfo["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**conninfo)  # type: ignore[arg-type]
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_FILL_TABLES)
    yield dsn
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _queries(dsn: str) -> Iterator[tuple[Query, Query]]:
    fast = Query(RecorderConfig(pg_dsn=dsn))
    slow = Query(
        RecorderConfig(
            pg_dsn=psycopg.conninfo.make_conninfo(
                dsn, options="-c enable_indexscan=off -c enable_bitmapscan=off"
            )
        )
    )
    yield fast, slow
    fast.close()
    slow.close()


@pytest.fixture(scope="module")
def queries(big_dsn: str) -> Iterator[tuple[Query, Query]]:
    yield from _queries(big_dsn)


LAST_HOUR = T0 + timedelta(seconds=ROWS) - timedelta(hours=1)
_OPEN = range(OPEN_EVERY, ROWS + 1, OPEN_EVERY)
# Exits at T0 + i + 30 s: those in the last hour, on ETH/USD (i % 4 == 2).
_ETH_LAST_HOUR = sum(1 for i in range(ROWS - 3630, ROWS + 1) if i % 4 == 2)
CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    # name: (method, arguments, rows expected)
    "trades-of-a-strategy": ("trades", {"strategy_id": "strat_3", "limit": 100}, 100),
    "trades-of-a-pair-last-hour": (
        "trades",
        {"trading_pair": "ETH/USD", "since": LAST_HOUR, "limit": 10_000},
        _ETH_LAST_HOUR,
    ),
    "fills-of-a-pair": ("fills", {"trading_pair": "XRP/USD", "limit": 100}, 100),
    "fills-of-an-order": ("fills", {"client_order_id": uuid.UUID(bytes=bytes(16))}, 0),
    "open-orders": ("open_orders", {}, len(_OPEN)),
    "signal-by-id": ("signal", {"signal_id": uuid.UUID(bytes=bytes(16))}, 0),
    "open-positions": ("open_positions", {}, len({PAIRS[i % 4] for i in _OPEN})),
    "performance-last-hour": ("performance", {"since": LAST_HOUR}, 8),
    "risk-state": ("risk_state", {}, 1),
}


def _size(answer: Any) -> int:
    if answer is None:
        return 0
    if hasattr(answer, "strategies"):
        return len(answer.strategies)
    return len(answer) if isinstance(answer, list) else 1


@pytest.mark.parametrize("variant", ["indexed", "baseline-seqscan"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_query_on_1m_rows(
    benchmark: Any, queries: tuple[Query, Query], case: str, variant: str
) -> None:
    method, kwargs, expected = CASES[case]
    query = queries[0] if variant == "indexed" else queries[1]
    if case == "fills-of-an-order":
        kwargs = {"client_order_id": uuid.UUID(_md5("o777"))}
        expected = 1
    if case == "signal-by-id":
        kwargs = {"signal_id": uuid.UUID(_md5("s777"))}
        expected = 1
    benchmark.group = f"query-{case}"
    answer = benchmark.pedantic(
        getattr(query, method), kwargs=kwargs, rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    assert _size(answer) == expected
    benchmark.extra_info["rows_returned"] = _size(answer)


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()  # mirrors md5(...)::uuid in the SQL


@pytest.fixture(scope="module")
def big_influx(influx_service: InfluxService, tmp_path_factory: pytest.TempPathFactory) -> str:
    db = f"bench_{uuid.uuid4().hex[:8]}"
    influx_service.create_database(db)
    cfg = RecorderConfig(
        influx_url=influx_service.url(),
        influx_database=db,
        data_dir=tmp_path_factory.mktemp("qbench"),
    )
    writer = SeriesWriter(cfg)
    writer.start()
    now_ns = int(datetime.now(timezone.utc).timestamp()) * 1_000_000_000
    minute = 60_000_000_000
    chunk: list[bytes] = []
    for i in range(ROWS):
        pair = PAIRS[i % 4]
        mid = 0.5 + (i % 1000) * 1e-5
        chunk.append(
            b"market_data_l2,exchange=kraken,trading_pair=%s bid_price_level_0=%r,"
            b"ask_price_level_0=%r,mid_price=%r,spread=0.0002,wap=%r,imbalance_5=0.1 %d\n"
            % (pair.encode(), mid - 1e-4, mid + 1e-4, mid, mid, now_ns - (ROWS - i) * 1_000_000)
        )
        chunk.append(
            b"market_data_ohlcv,exchange=kraken,interval=1m,trading_pair=%s open=%r,high=%r,"
            b"low=%r,close=%r,volume=100 %d\n"
            % (pair.encode(), mid, mid, mid, mid, now_ns - (ROWS - i) // 4 * minute)
        )
        if len(chunk) >= 10_000:
            writer.write(b"".join(chunk))
            chunk.clear()
    writer.write(b"".join(chunk))
    assert writer.close(300)
    return db


@pytest.mark.parametrize("case", ["ohlcv-latest-100", "latest-book", "baseline-ping"])
def test_influx_query_on_1m_points(
    benchmark: Any, influx_service: InfluxService, big_influx: str, case: str
) -> None:
    benchmark.group = "query-influxdb"
    cfg = RecorderConfig(influx_url=influx_service.url(), influx_database=big_influx)
    with Query(cfg) as q:
        if case == "ohlcv-latest-100":
            answer = benchmark.pedantic(
                q.ohlcv, args=("XRP/USD", "1m", 100), rounds=ROUNDS, warmup_rounds=1
            )
            assert len(answer) == 100
        elif case == "latest-book":
            book = benchmark.pedantic(q.latest_book, args=("BTC/USD",), rounds=ROUNDS)
            assert book is not None
            assert book.mid_price is not None
        else:

            def ping() -> int:
                with urllib.request.urlopen(f"{influx_service.url()}/ping", timeout=5) as r:
                    return int(r.status)

            assert benchmark.pedantic(ping, rounds=ROUNDS) == 204
