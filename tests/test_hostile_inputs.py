"""Promise 5 as a table: each hostile input gets its exact error, and nothing else is harmed.

Every case runs against a started Recorder on the real servers with two live books
(XRP/USD, DOGE/USD). After the error the test proves the rest is intact: the other
book is unchanged (and the targeted one too, unless the case is meant to put it out
of sync), market data keeps flowing, ledger events still land in PostgreSQL, and
InfluxDB holds exactly the points the core produced.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from galfriday_recorder import (
    BookOutOfSync,
    Fill,
    InvalidPoint,
    LogEntry,
    MalformedFrame,
    Order,
    PortfolioSnapshot,
    Recorder,
    RecorderConfig,
    Signal,
    Trade,
    UnknownOrder,
    UnknownSymbol,
    ValidationError,
)
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.lab.synth import SyntheticKraken

T0 = datetime(2026, 2, 1, tzinfo=timezone.utc)
TEN_MB = 10 * 1024 * 1024


@dataclass
class Env:
    rec: Recorder
    pg_dsn: str
    influx: InfluxService
    db: str
    frames: list[bytes]  # the rest of the session: DOGE/USD frames only


@pytest.fixture
def env(
    recorder_config: Callable[..., RecorderConfig],
    pg_dsn: str,
    influx_service: InfluxService,
    influx_db: str,
) -> Iterator[Env]:
    config = recorder_config(batch_interval_s=0.1, metrics_interval_s=3600.0, ohlcv_intervals=())
    session = [f for _, f in SyntheticKraken(["XRP/USD", "DOGE/USD"], seed=5).session(400)]
    rec = Recorder(config).start()
    for frame in session[:250]:
        rec.on_market_frame(frame)
    rest = [f for f in session[250:] if b'"book"' in f and b"DOGE/USD" in f]
    try:
        yield Env(rec, pg_dsn, influx_service, influx_db, rest)
    finally:
        rec.close(30)


def _book(rec: Recorder, symbol: str) -> tuple[Any, ...]:
    b = rec.market.book(symbol)
    return (b.in_sync, b.checksum(), list(b.bids), list(b.asks))


def _xrp_update() -> bytes:
    frames = SyntheticKraken(["XRP/USD", "DOGE/USD"], seed=5).session(400)
    return [f for _, f in frames if b'"type":"update"' in f and b"XRP/USD" in f][200]


def _with_qty(qty: Any) -> bytes:
    doc = json.loads(_xrp_update())
    side = "bids" if doc["data"][0]["bids"] else "asks"
    doc["data"][0][side][0]["qty"] = qty
    return json.dumps(doc).encode()


def _ten_mb_book() -> bytes:
    levels = b",".join([b'{"price":0.62001,"qty":1.00000000}'] * (TEN_MB // 34))
    return (
        b'{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":['
        + levels
        + b'],"asks":[],"checksum":1}]}'
    )


MARKET_CASES: list[tuple[str, Callable[[], bytes | str], type[Exception], str, bool]] = [
    # id, frame, exception, message fragment, puts XRP/USD out of sync
    ("truncated-json", lambda: _xrp_update()[:150], MalformedFrame, "invalid JSON", False),
    ("empty-frame", lambda: b"", MalformedFrame, "empty frame", False),
    ("not-json", lambda: "{channel: book}", MalformedFrame, "invalid JSON", False),
    (
        "update-before-snapshot",
        lambda: _xrp_update().replace(b"XRP/USD", b"ADA/USD"),
        UnknownSymbol,
        'book update for "ADA/USD" before any snapshot',
        False,
    ),
    ("negative-qty", lambda: _with_qty(-1.5), MalformedFrame, "negative number (-1.5)", False),
    (
        "non-numeric-qty",
        lambda: _with_qty("abc"),
        MalformedFrame,
        'not a decimal number ("abc")',
        False,
    ),
    ("nan-qty", lambda: _with_qty("NaN"), MalformedFrame, "not a decimal number", False),
    (
        "symbol-with-space-and-comma",
        lambda: _xrp_update().replace(b"XRP/USD", b"XR P,USD"),
        UnknownSymbol,
        '"XR P,USD" before any snapshot',
        False,
    ),
    ("10mb-unclosed-arrays", lambda: b"[" * TEN_MB, MalformedFrame, "invalid JSON", False),
    ("10mb-deep-object", lambda: b'{"a":' * (TEN_MB // 5), MalformedFrame, "invalid JSON", False),
    (
        "10mb-book-bad-checksum",
        _ten_mb_book,
        BookOutOfSync,
        'checksum mismatch for "XRP/USD"',
        True,
    ),
]


@pytest.mark.parametrize(
    ("frame", "error", "fragment", "desyncs"),
    [pytest.param(*case[1:], id=case[0]) for case in MARKET_CASES],
)
def test_hostile_frame(
    env: Env,
    frame: Callable[[], bytes | str],
    error: type[Exception],
    fragment: str,
    desyncs: bool,
) -> None:
    rec = env.rec
    xrp, doge = _book(rec, "XRP/USD"), _book(rec, "DOGE/USD")
    assert xrp[0]
    assert doge[0]
    errors = rec.stats()["market_errors"]
    started = time.perf_counter()
    with pytest.raises(error) as caught:
        rec.on_market_frame(frame())
    took = time.perf_counter() - started
    assert type(caught.value) is error
    assert fragment in str(caught.value)
    assert took < 2.0, f"{took:.2f} s for one frame"
    assert rec.stats()["market_errors"] == errors + 1
    # Nothing else harmed: DOGE/USD untouched, XRP/USD untouched or (by design) out of sync.
    assert _book(rec, "DOGE/USD") == doge
    if desyncs:
        assert not rec.market.book("XRP/USD").in_sync
        with pytest.raises(BookOutOfSync, match="out of sync"):
            rec.on_market_frame(_xrp_update())
    else:
        assert _book(rec, "XRP/USD") == xrp
    tops = [t for f in env.frames for t in rec.on_market_frame(f)]
    assert tops
    assert {t.symbol for t in tops} == {"DOGE/USD"}
    assert _book(rec, "DOGE/USD") != doge  # the book moved on
    assert rec.flush(30)
    stats = rec.stats()
    answer = env.influx.query("SELECT count(is_snapshot) FROM market_data_l2", db=env.db)
    assert answer["results"][0]["series"][0]["values"][0][1] == stats["market_l2_points"]
    assert stats["series_lines_rejected"] == stats["series_lines_dropped"] == 0


def test_error_for_a_10mb_symbol_stays_short(env: Env) -> None:
    frame = b'{"channel":"book","type":"update","data":[{"symbol":"' + b"X" * TEN_MB + b'"}]}'
    with pytest.raises(UnknownSymbol) as caught:
        env.rec.on_market_frame(frame)
    assert len(str(caught.value)) < 1000


# -- series: tags with newlines, NaN features, naive timestamps ------------------------

SERIES_CASES: list[tuple[str, Callable[[Recorder], None], type[Exception], str]] = [
    (
        "nan-feature",
        lambda r: r.record_features("XRP/USD", "v1", {"rsi_14": 55.0, "momentum": float("nan")}),
        InvalidPoint,
        'field "momentum" is not finite',
    ),
    (
        "inf-prediction",
        lambda r: r.record_prediction("XRP/USD", "xgb", "up", float("inf")),
        InvalidPoint,
        'field "prediction_value" is not finite',
    ),
    (
        "newline-in-tag",
        lambda r: r.record_features("XRP/USD\nevil,x=1", "v1", {"rsi_14": 1.0}),
        InvalidPoint,
        "contains a newline",
    ),
    (
        "newline-in-tag-key-value",
        lambda r: r.record_prediction("XRP/USD", "m\r\nodel", "up", 0.5),
        InvalidPoint,
        "contains a newline",
    ),
    (
        "naive-series-timestamp",
        lambda r: r.record_features("XRP/USD", "v1", {"rsi_14": 1.0}, datetime(2026, 1, 1)),
        InvalidPoint,
        "naive datetime",
    ),
    # Values a store would take and type, mangle or drop: refused at the call, named.
    (
        "bool-for-float-field",
        lambda r: r.record_prediction("XRP/USD", "xgb", "up", True),
        InvalidPoint,
        'predictions field "prediction_value" is Float, not bool',
    ),
    (
        "str-for-float-field",
        lambda r: r.record_portfolio_metrics(
            total_equity="10000",  # type: ignore[arg-type]
            available_balance=1,
            unrealized_pnl=0,
            realized_pnl_session=0,
            total_exposure_pct=0,
            daily_drawdown_pct=0,
            weekly_drawdown_pct=0,
            total_drawdown_pct=0,
        ),
        InvalidPoint,
        'portfolio_metrics field "total_equity" is Float, not str',
    ),
    (
        "float-for-integer-field",
        lambda r: r.record_system_metrics({"event_queue_depth": 2.5}),
        InvalidPoint,
        'system_metrics field "event_queue_depth" is Integer, not float',
    ),
    (
        "int-past-float-range",
        lambda r: r.record_features("XRP/USD", "v1", {"rsi_14": 10**400}),
        InvalidPoint,
        "beyond a float's range",
    ),
    (
        "field-named-time",
        lambda r: r.record_features("XRP/USD", "v1", {"time": 1.0}),
        InvalidPoint,
        'field key "time" is named time',
    ),
    (
        "backslash-space-in-tag",
        lambda r: r.record_features("XRP/USD", "bs\\ space", {"rsi_14": 1.0}),
        InvalidPoint,
        "backslash before",
    ),
    (
        "trailing-backslash-in-tag",
        lambda r: r.record_prediction("XRP/USD", "model\\", "up", 0.5),
        InvalidPoint,
        "ends with a backslash",
    ),
    (
        "nul-in-field-key",
        lambda r: r.record_features("XRP/USD", "v1", {"rsi\x00": 1.0}),
        InvalidPoint,
        "contains NUL",
    ),
    (
        "lone-surrogate-in-tag",
        lambda r: r.record_features("XRP/USD", "v\udc80", {"rsi_14": 1.0}),
        InvalidPoint,
        "lone surrogate",
    ),
    (
        "quote-in-field-key",
        lambda r: r.record_features("XRP/USD", "v1", {'a"b': 1.0}),
        InvalidPoint,
        "double quote",
    ),
    (
        "datetime-past-2262",
        lambda r: r.record_features(
            "XRP/USD", "v1", {"rsi_14": 1.0}, datetime(2262, 4, 12, tzinfo=timezone.utc)
        ),
        InvalidPoint,
        "timestamp 92233",
    ),
    (
        "datetime-before-1677",
        lambda r: r.record_features(
            "XRP/USD", "v1", {"rsi_14": 1.0}, datetime(1677, 9, 21, tzinfo=timezone.utc)
        ),
        InvalidPoint,
        "outside InfluxDB's range",
    ),
    (
        "ns-past-int64",
        lambda r: r.record_features("XRP/USD", "v1", {"rsi_14": 1.0}, 2**63),
        InvalidPoint,
        "outside InfluxDB's range",
    ),
    # Raw line protocol handed straight to the writer, past encode_line: InfluxDB 1.x
    # answers 204 to these and stores nothing (or, without a timestamp, a new point for
    # each resend), so they are refused whole at the call.
    (
        "raw-comment-line",
        lambda r: r.series.write(b"predictions,model_id=m prediction_value=1 1\n#x f=1 2\n"),
        InvalidPoint,
        "line 2: a comment (b'#x f=1 2')",
    ),
    (
        "raw-blank-line-in-batch",
        lambda r: r.series.write(b"predictions f=1 1\n \t\npredictions f=2 2\n"),
        InvalidPoint,
        "line 2: a blank line",
    ),
    (
        "raw-line-without-timestamp",
        lambda r: r.series.write(b"predictions prediction_value=1"),
        InvalidPoint,
        "line 1: no timestamp at its end",
    ),
    (
        "raw-crlf-line",
        lambda r: r.series.write(b"predictions prediction_value=1 1\r\n"),
        InvalidPoint,
        "line 1: no timestamp at its end",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in SERIES_CASES],
)
def test_hostile_series_value(
    env: Env, call: Callable[[Recorder], None], error: type[Exception], fragment: str
) -> None:
    rec = env.rec
    with pytest.raises(error) as caught:
        call(rec)
    assert type(caught.value) is error
    assert isinstance(caught.value, ValueError)  # InvalidPoint is both
    assert fragment in str(caught.value)
    # The same series still takes good points, and nothing half-written reached InfluxDB.
    rec.record_features("XRP/USD", "v1", {"rsi_14": 42.5, "momentum": 0.25}, T0)
    assert rec.flush(30)
    answer = env.influx.query(
        "SELECT rsi_14, momentum FROM features WHERE feature_set_id = 'v1'", db=env.db
    )
    assert answer["results"][0]["series"][0]["values"] == [[int(T0.timestamp() * 1e9), 42.5, 0.25]]
    assert rec.stats()["series_lines_rejected"] == 0
    refused = env.influx.query("SELECT count(*) FROM predictions", db=env.db)
    assert "series" not in refused["results"][0]  # the refused prediction left no trace


# -- ledger: exact errors, and the next event still lands --------------------------------


def _signal(**kw: Any) -> Signal:
    values: dict[str, Any] = {
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "strategy_id": "s",
        "side": "BUY",
        "entry_type": "LIMIT",
        "proposed_entry_price": Decimal("0.5"),
        "proposed_sl_price": Decimal("0.45"),
        "proposed_tp_price": Decimal("0.55"),
        "created_at": T0,
    }
    values.update(kw)
    return Signal(**values)


def _fill(**kw: Any) -> Fill:
    values: dict[str, Any] = {
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "side": "BUY",
        "quantity_filled": Decimal("1"),
        "fill_price": Decimal("0.5"),
        "commission_asset": "USD",
        "client_order_id": uuid.uuid4(),
        "filled_at": T0,
    }
    values.update(kw)
    return Fill(**values)


def _shared(depth: int) -> list[Any]:
    """A list holding one list twice, ``depth`` levels deep: 3 * 2^depth - 1 values written
    out, from ``depth + 1`` lists in memory."""
    inner: list[Any] = [1]
    for _ in range(depth):
        inner = [inner, inner]
    return inner


LEDGER_CASES: list[tuple[str, Callable[[Recorder], object], type[Exception], str]] = [
    (
        "naive-created-at",
        lambda r: r.record_signal(_signal(created_at=datetime(2026, 1, 1))),
        ValidationError,
        "created_at: is a naive datetime",
    ),
    (
        "naive-filled-at",
        lambda r: r.record_fill(_fill(filled_at=datetime(2026, 1, 1))),
        ValidationError,
        "filled_at: is a naive datetime",
    ),
    (
        "fill-for-unknown-order",
        lambda r: r.record_fill(_fill()),
        UnknownOrder,
        "names an order the ledger does not know",
    ),
    (
        "fill-for-unknown-exchange-order",
        lambda r: r.record_fill(_fill(client_order_id=None, exchange_order_id="NOPE-1")),
        UnknownOrder,
        "NOPE-1",
    ),
    (
        "update-of-unknown-order",
        lambda r: r.update_order(uuid.uuid4(), "NEW"),
        UnknownOrder,
        "was never recorded",
    ),
    (
        "negative-quantity",
        lambda r: r.record_order(
            Order(
                trading_pair="XRP/USD",
                exchange="kraken",
                side="BUY",
                order_type="MARKET",
                quantity_ordered=Decimal("-1"),
            )
        ),
        ValidationError,
        "quantity_ordered: must be > 0",
    ),
    (
        "non-numeric-quantity",
        lambda r: r.record_fill(_fill(quantity_filled="ten")),
        ValidationError,
        "quantity_filled: 'ten' is not a number",
    ),
    (
        "float-price",
        lambda r: r.record_fill(_fill(fill_price=0.5)),
        ValidationError,
        "fill_price: must be Decimal, int or str",
    ),
    (
        "nan-price",
        lambda r: r.record_signal(_signal(proposed_sl_price=Decimal("NaN"))),
        ValidationError,
        "proposed_sl_price: must be finite",
    ),
    (
        "nul-in-text",
        lambda r: r.record_signal(_signal(strategy_id="a\x00b")),
        ValidationError,
        "strategy_id: contains a NUL",
    ),
    (
        "nul-in-json-value",
        lambda r: r.record_signal(_signal(risk_check_details={"why": ["ok", "a\x00"]})),
        ValidationError,
        "risk_check_details: contains a NUL",
    ),
    (
        "nul-in-json-key",
        lambda r: r.record_signal(_signal(risk_check_details={"a\x00": 1})),
        ValidationError,
        "risk_check_details: contains a NUL",
    ),
    (
        "json-of-shared-lists-40-deep",
        lambda r: r.record_signal(_signal(risk_check_details={"levels": _shared(40)})),
        ValidationError,
        "risk_check_details: holds more than 1,000,000 values once shared ones are written out",
    ),
    (
        "log-context-of-shared-lists",
        lambda r: r.ledger.record_log(
            LogEntry(source_module="bot", log_level="INFO", message="m", context={"a": _shared(60)})
        ),
        ValidationError,
        "context: holds more than 1,000,000 values",
    ),
    (
        "configuration-of-shared-lists",
        lambda r: r.record_configuration({"grid": _shared(30)}),
        ValidationError,
        "config_content: holds more than 1,000,000 values",
    ),
    (
        "real-overflow",
        lambda r: r.record_signal(_signal(prediction_value=3.5e38)),
        ValidationError,
        "prediction_value: 3.5e+38 is beyond REAL's range",
    ),
    (
        "real-underflow",
        lambda r: r.record_signal(_signal(prediction_value=1e-50)),
        ValidationError,
        "prediction_value: 1e-50 is too small for REAL",
    ),
    (
        "numeric-past-38-18",
        lambda r: r.record_signal(_signal(proposed_tp_price=Decimal("1e20"))),
        ValidationError,
        "proposed_tp_price: 1E+20 does not fit NUMERIC(38,18)",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in LEDGER_CASES],
)
def test_hostile_ledger_event(
    env: Env, call: Callable[[Recorder], object], error: type[Exception], fragment: str
) -> None:
    rec = env.rec
    before = rec.stats()["ledger_accepted"]
    with pytest.raises(error) as caught:
        call(rec)
    assert type(caught.value) is error
    assert fragment in str(caught.value)
    if isinstance(caught.value, ValidationError):
        assert str(caught.value).startswith(caught.value.field + ":")
    assert rec.stats()["ledger_accepted"] == before  # refused whole, nothing half-recorded
    good = _signal()
    rec.record_signal(good)
    assert rec.flush(30)
    with psycopg.connect(env.pg_dsn) as conn:
        assert conn.execute("SELECT signal_id FROM signals").fetchall() == [(good.signal_id,)]
        assert conn.execute("SELECT count(*) FROM fills").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)


# -- SQL-looking text in every text column: stored verbatim, never executed --------------

INJECT = "x'); DROP TABLE signals; -- \" $$ $1 %s %(a)s \\' ; SELECT pg_sleep(5); /* \u2603"
SHORT = "a'--/b\";DROP%s"  # fits VARCHAR(16)
ID64 = ("'; DELETE FROM orders; --" + INJECT)[:64]


def test_sql_looking_strings_in_every_text_column_are_stored_verbatim(env: Env) -> None:
    rec = env.rec
    assert len(SHORT) <= 16
    signal = _signal(
        trading_pair=SHORT,
        exchange=ID64[:32],
        strategy_id=ID64,
        risk_check_details={INJECT: INJECT},
    )
    rec.record_signal(signal)
    rec.update_signal_status(signal.signal_id, "REJECTED", INJECT, {"why": INJECT})
    order = Order(
        trading_pair=SHORT,
        exchange=ID64[:32],
        side="BUY",
        order_type="LIMIT",
        quantity_ordered=Decimal("2"),
        limit_price=Decimal("0.5"),
        signal_id=signal.signal_id,
        created_at=T0,
    )
    rec.record_order(order)
    rec.update_order(order.client_order_id, "NEW", exchange_order_id=ID64)
    fill = Fill(
        trading_pair=SHORT,
        exchange=ID64[:32],
        side="BUY",
        quantity_filled=Decimal("2"),
        fill_price=Decimal("0.5"),
        commission_asset=SHORT,
        client_order_id=order.client_order_id,
        fill_id=ID64[::-1],
        filled_at=T0,
    )
    rec.record_fill(fill)
    rec.update_order(order.client_order_id, "FILLED", error_message=INJECT)
    trade = Trade(
        signal_id=None,
        trading_pair=SHORT,
        exchange=ID64[:32],
        strategy_id=ID64,
        side="SELL",
        entry_timestamp=T0,
        exit_timestamp=T0 + timedelta(seconds=1),
        quantity=Decimal(1),
        average_entry_price=Decimal(1),
        average_exit_price=Decimal(1),
        total_commission=Decimal(0),
        realized_pnl=Decimal(0),
        realized_pnl_pct=0.0,
        exit_reason="MANUAL_CLOSE",
    )
    rec.record_trade(trade)
    rec.ledger.record_log(
        LogEntry(
            source_module=ID64,
            log_level="ERROR",
            message=INJECT,
            trading_pair=SHORT,
            exception_type=INJECT,
            stack_trace=INJECT,
            context={INJECT: [INJECT]},
            log_timestamp=T0,
        )
    )
    rec.record_portfolio_snapshot(
        PortfolioSnapshot(
            total_equity=Decimal(1),
            available_balance=Decimal(1),
            total_exposure_pct=0.0,
            daily_drawdown_pct=0.0,
            weekly_drawdown_pct=0.0,
            total_drawdown_pct=0.0,
            positions={INJECT: {"qty": INJECT}},
            snapshot_timestamp=T0,
        )
    )
    config_hash = rec.record_configuration({INJECT: INJECT})
    started = time.perf_counter()
    assert rec.flush(30)
    assert time.perf_counter() - started < 5  # no pg_sleep(5) ran
    with psycopg.connect(env.pg_dsn) as conn:

        def one(sql: str, *params: Any) -> tuple[Any, ...]:
            rows = conn.execute(sql, params).fetchall()
            assert len(rows) == 1, (sql, rows)
            return rows[0]

        assert one(
            "SELECT trading_pair, exchange, strategy_id, rejection_reason, risk_check_details "
            "FROM signals WHERE signal_id = %s",
            signal.signal_id,
        ) == (SHORT, ID64[:32], ID64, INJECT, {"why": INJECT})
        assert one(
            "SELECT trading_pair, exchange, exchange_order_id, error_message, status FROM orders"
        ) == (SHORT, ID64[:32], ID64, INJECT, "FILLED")
        assert one(
            "SELECT trading_pair, exchange, fill_id, commission_asset, exchange_order_id FROM fills"
        ) == (SHORT, ID64[:32], ID64[::-1], SHORT, ID64)
        assert one(
            "SELECT trading_pair, exchange, strategy_id FROM trades WHERE trade_id = %s",
            trade.trade_id,
        ) == (SHORT, ID64[:32], ID64)
        assert one(
            "SELECT source_module, message, trading_pair, exception_type, stack_trace, context "
            "FROM system_logs WHERE log_level = 'ERROR'"
        ) == (ID64, INJECT, SHORT, INJECT, INJECT, {INJECT: [INJECT]})
        assert one("SELECT positions FROM portfolio_snapshots") == ({INJECT: {"qty": INJECT}},)
        assert one(
            "SELECT config_content FROM configurations WHERE config_hash = %s", config_hash
        ) == ({INJECT: INJECT},)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables").fetchall()}
        assert {"signals", "orders", "fills", "trades", "system_logs"} <= tables
    # The same strings as InfluxDB tags round-trip exactly too (the seed's measurements
    # have no string fields; tests/series/test_roundtrip_property.py covers those).
    rec.record_system_metrics({"cpu_usage_pct": 1}, module_id=SHORT + " ,=x", timestamp=T0)
    rec.record_features("XR P,USD", "v1", {"rsi_14": 1.5}, T0)
    assert rec.flush(30)
    metrics = env.influx.query("SELECT module_id, cpu_usage_pct FROM system_metrics", db=env.db)
    assert metrics["results"][0]["series"][0]["values"][0][1:] == [SHORT + " ,=x", 1.0]
    pairs = env.influx.query('SHOW TAG VALUES FROM features WITH KEY = "trading_pair"', db=env.db)
    assert pairs["results"][0]["series"][0]["values"] == [["trading_pair", "XR P,USD"]]


def test_symbol_with_space_comma_and_equals_is_escaped_end_to_end(env: Env) -> None:
    """Kraken never sends such a symbol, but if an instrument does, its tag must not split."""
    rec = env.rec
    doge = _book(rec, "DOGE/USD")
    odd = b"XR P,U=SD"
    session = [f.replace(b"XRP/USD", odd) for _, f in SyntheticKraken(["XRP/USD"]).session(30)]
    tops = [t for f in session for t in rec.on_market_frame(f)]
    assert {t.symbol for t in tops} == {odd.decode()}
    assert _book(rec, "DOGE/USD") == doge
    assert rec.flush(30)
    answer = env.influx.query(
        'SHOW TAG VALUES FROM market_data_l2 WITH KEY = "trading_pair"', db=env.db
    )
    values = {v[1] for v in answer["results"][0]["series"][0]["values"]}
    assert values == {"XRP/USD", "DOGE/USD", odd.decode()}
    count = env.influx.query(
        "SELECT count(is_snapshot) FROM market_data_l2 WHERE trading_pair = 'XR P,U=SD'",
        db=env.db,
    )
    assert count["results"][0]["series"][0]["values"][0][1] == len(tops)
    assert rec.stats()["series_lines_rejected"] == 0


# -- NUMERIC(38,18) at its extremes: what the checks let through reads back identical ----

TOP = Decimal("99999999999999999999.999999999999999999")  # the largest NUMERIC(38,18)
TINY = Decimal("0.000000000000000001")
# Python's default context keeps 28 digits: -TOP, TOP - TINY or TINY + (TOP - TINY) there
# round to 1E+20, which NUMERIC(38,18) cannot hold. The values below are built exactly.
BOTTOM = TOP.copy_negate()
JUST_BELOW = Decimal("99999999999999999999.999999999999999998")


def test_numeric_38_18_extremes_read_back_identical(env: Env) -> None:
    """Fills summing to exactly the largest NUMERIC(38,18) quantity, at its largest and
    smallest prices, whether recorded as fills or derived from cumulative execution
    reports; the most negative P&L and equity; every value is stored to the last digit and
    the sums (the order's filled quantity, its status) are exact."""
    rec = env.rec
    signal = _signal(proposed_entry_price=TOP, proposed_sl_price=TINY, proposed_tp_price=TOP)
    rec.record_signal(signal)
    order = Order(
        trading_pair="XRP/USD",
        exchange="kraken",
        side="BUY",
        order_type="LIMIT",
        quantity_ordered=TOP,
        limit_price=TOP,
        signal_id=signal.signal_id,
    )
    rec.record_order(order)
    for fill_id, qty, price in (("f-tiny", TINY, TOP), ("f-rest", JUST_BELOW, TINY)):
        rec.record_fill(
            _fill(
                client_order_id=order.client_order_id,
                quantity_filled=qty,
                fill_price=price,
                commission=price,
                fill_id=fill_id,
            )
        )
    base: dict[str, Any] = {  # another pair: no open cycle for this sell to close
        "trading_pair": "DOGE/USD",
        "order_type": "MARKET",
        "side": "SELL",
        "quantity_ordered": str(TOP),
        "exchange_order_id": "O-TOP",
        "client_order_id": "gf-top",
    }
    rec.record_execution_report(
        **base,
        order_status="OPEN",
        quantity_filled=str(TINY),
        average_fill_price=str(TOP),
        commission=str(TINY),
    )
    rec.record_execution_report(
        **base,
        order_status="CLOSED",
        quantity_filled=str(TOP),
        average_fill_price=str(TOP),
        commission=str(TOP),
    )
    rec.record_trade(
        Trade(
            signal_id=None,
            trading_pair="XRP/USD",
            exchange="kraken",
            strategy_id="s",
            side="SELL",
            entry_timestamp=T0,
            exit_timestamp=T0 + timedelta(seconds=1),
            quantity=TOP,
            average_entry_price=TINY,
            average_exit_price=TOP,
            total_commission=TOP,
            realized_pnl=BOTTOM,
            realized_pnl_pct=-100.0,
            exit_reason="MANUAL_CLOSE",
        )
    )
    rec.record_portfolio_snapshot(
        PortfolioSnapshot(
            total_equity=BOTTOM,
            available_balance=TINY.copy_negate(),
            total_exposure_pct=0.0,
            daily_drawdown_pct=0.0,
            weekly_drawdown_pct=0.0,
            total_drawdown_pct=0.0,
            positions={},
            snapshot_timestamp=T0,
        )
    )
    assert rec.flush(30)
    assert rec.stats()["ledger_dead_letters"] == 0
    with psycopg.connect(env.pg_dsn) as conn:

        def all_rows(sql: str) -> list[tuple[Any, ...]]:
            return conn.execute(sql).fetchall()

        assert all_rows(
            "SELECT proposed_entry_price, proposed_sl_price, proposed_tp_price FROM signals"
        ) == [(TOP, TINY, TOP)]
        assert all_rows(
            "SELECT client_order_ref, quantity_ordered, quantity_filled, status FROM orders "
            "ORDER BY order_pk"
        ) == [(None, TOP, TOP, "FILLED"), ("gf-top", TOP, TOP, "FILLED")]
        assert all_rows(
            "SELECT quantity_filled, fill_price, commission FROM fills ORDER BY fill_pk"
        ) == [
            (TINY, TOP, TOP),
            (JUST_BELOW, TINY, TINY),
            (TINY, TOP, TINY),
            (JUST_BELOW, TOP, JUST_BELOW),
        ]
        assert all_rows(
            "SELECT quantity, average_entry_price, average_exit_price, total_commission, "
            "realized_pnl FROM trades"
        ) == [(TOP, TINY, TOP, TOP, BOTTOM)]
        assert all_rows("SELECT total_equity, available_balance FROM portfolio_snapshots") == [
            (BOTTOM, -TINY)
        ]
