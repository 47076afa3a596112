"""Outside review: events the ledger's calls accept that then stall the committer or are lost.

The property, for every recording call and hostile values (NUL, lone surrogates, escapes,
column-length edges, huge strings, deep and large JSON, extreme timestamps, non-finite and
exotic Decimals): the call raises a clear error (a :class:`RecorderError`) and nothing is
journaled, or after ``flush`` the row reads back from PostgreSQL as given, or the event is
dead-lettered and a plain event recorded after it still commits (nothing stalls).
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ledgerkit import make_order, make_signal, make_trade, quick_config, rows, started

from galfriday_recorder.errors import RecorderError
from galfriday_recorder.ledger import Ledger, journal
from galfriday_recorder.records import (
    EXIT_REASONS,
    LOG_LEVELS,
    Fill,
    LogEntry,
    Order,
    PortfolioSnapshot,
    dumps,
    timestamp,
)

FLUSH = 30.0
# The largest event: a query near 512 MiB took 25 s in PostgreSQL on CI's machine, and its
# journal row is forgotten after that; a liveness bound, far above that, not a speed.
HUGE_FLUSH = 300.0
EXAMPLES = 40
_FLOAT4 = struct.Struct("<f")

# -- hostile values -------------------------------------------------------------------

_NASTY_CHARS = ["\x00", "\ud800", "\udfff", "\\", "\\u0000", '"', "'", "\uffff", "\U0010ffff"]
_NASTY_CHARS += ["\u2028", "\x1f", "\x7f", "é", "%s", "{rows}", "--", ";"]


def texts(max_len: int | None = None) -> st.SearchStrategy[str]:
    """Short strings built from troublesome characters, and strings at the column edge."""
    parts = st.lists(st.one_of(st.sampled_from(_NASTY_CHARS), st.text(max_size=4)), max_size=6)
    short = parts.map("".join)
    edges = [0, 1, 64, 100_000] if max_len is None else [max_len - 1, max_len, max_len + 1]
    sized = st.builds(lambda n, c: c * max(n, 0), st.sampled_from(edges), st.sampled_from("aé€"))
    return st.one_of(short, sized)


_SPECIAL_DECIMALS = [
    "0",
    "-0",
    "0E-18",
    "0E-30",
    "-0E+999999999999999999",
    "0E+1000000",
    "1E-18",
    "1E+19",
    "-1E+19",
    "99999999999999999999.999999999999999999",
    "100000000000000000000",
    "1E-19",
    "0.5000000000000000000",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "1" + "0" * 40,
    "0." + "0" * 17 + "1",
]


def decimals() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([Decimal(s) for s in _SPECIAL_DECIMALS]),
        st.decimals(allow_nan=True, allow_infinity=True, places=None),
        st.decimals(min_value=Decimal("-1E+20"), max_value=Decimal("1E+20"), places=18),
        st.integers(min_value=-(10**21), max_value=10**21),
        st.sampled_from(["1.5", "abc", "", " 1", "1e5", "-0.0"]),
        st.floats(),
    )


def reals() -> st.SearchStrategy[Any]:
    specials: list[float | Decimal] = [
        0.0,
        -0.0,
        1e-40,
        1e-45,
        7e-46,
        1e-46,
        3.4028234663852886e38,
        3.4028236e38,
    ]
    specials += [float("nan"), float("inf"), -float("inf"), 10**40, Decimal("1e-50")]
    return st.one_of(st.sampled_from(specials), st.floats(), st.integers(-(10**40), 10**40))


def timestamps() -> st.SearchStrategy[Any]:
    zones = st.sampled_from(
        [timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, seconds=-1))]
    )
    extremes = [
        datetime.min.replace(tzinfo=timezone.utc),
        datetime.max.replace(tzinfo=timezone.utc),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
        datetime(2026, 1, 1),  # naive
        "2026-01-01T00:00:00+00:00",
    ]
    try:  # the bot's pandas: Timestamp is a datetime subclass, with nanoseconds
        import pandas as pd
    except ImportError:
        pass
    else:
        extremes += [
            pd.Timestamp("2026-11-26T05:00:00.123456789", tz="Asia/Kolkata"),
            pd.Timestamp.min.tz_localize("UTC"),
            pd.Timestamp.max.tz_localize("UTC"),
            pd.Timestamp("2026-01-01"),  # naive
        ]
    return st.one_of(st.sampled_from(extremes), st.datetimes(timezones=zones))


def _json_leaf() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30]),
        st.integers(),
        st.floats(),
        st.sampled_from([float("nan"), float("inf"), -0.0, 5e-324, 1.7976931348623157e308]),
        texts(),
        st.sampled_from([Decimal("1E+400"), Decimal("-0"), Decimal("1e-30")]),
    )


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def json_values() -> st.SearchStrategy[Any]:
    tree = st.recursive(
        _json_leaf(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(texts(), inner, max_size=4)
        ),
        max_leaves=12,
    )
    shaped = st.one_of(st.dictionaries(texts(), tree, max_size=4), st.lists(tree, max_size=4))
    specials = st.sampled_from(
        [
            _deep(250),
            _deep(253),
            _deep(254),
            _deep(255),
            _deep(300),
            {"x": "y" * 1_000_000},
            [[]] * 10_000,
        ]
    )
    return st.one_of(shaped, specials, st.none(), st.sampled_from(["str", 5, {1, 2}]))


HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- the property -----------------------------------------------------------------------


@pytest.fixture
def hostile_ledger(pg_dsn: str, tmp_path: Path) -> Iterator[Ledger]:
    led = started(quick_config(pg_dsn, tmp_path / "data"))
    yield led
    led.close(timeout=10)


def unique(value: str) -> str:
    """The value made unique across examples (the ledger ignores a reused key), same length
    when it has 8 characters to spare, so the column-length edges stay edges."""
    tag = uuid.uuid4().hex[:8]
    return value[:-8] + tag if len(value) >= 8 else value + tag


def one_row(dsn: str, sql: str, *params: Any) -> tuple[Any, ...]:
    found = rows(dsn, sql, *params)
    assert len(found) == 1, (sql, params, found)
    return found[0]


def _plain_commits(ledger: Ledger, dsn: str) -> None:
    """A plain event recorded now reaches PostgreSQL: nothing before it stalls the group."""
    entry = LogEntry(source_module="stall-review", log_level="INFO", message="plain")
    ledger.record_log(entry)
    assert ledger.flush(FLUSH), f"a plain event did not commit: {ledger.stats()}"
    one_row(dsn, "SELECT 1 FROM system_logs WHERE log_id = %s", entry.log_id)


def attempt(ledger: Ledger, dsn: str, call: Callable[[], Any]) -> bool:
    """Run ``call``; False if it refused with a RecorderError (and journaled nothing).
    True if it was accepted and stored: one dead-lettered instead fails here, naming why,
    unless ``call`` is expected to dead-letter (checked by the caller)."""
    before = ledger.stats()
    try:
        call()
    except RecorderError:
        after = ledger.stats()
        assert after["accepted"] == before["accepted"], "a refused call journaled events"
        return False
    _plain_commits(ledger, dsn)
    return True


def stored(ledger: Ledger, dsn: str, call: Callable[[], Any]) -> bool:
    """As :func:`attempt`, and an accepted event was stored, not dead-lettered."""
    dead = len(ledger.dead_letters())
    if not attempt(ledger, dsn, call):
        return False
    letters = ledger.dead_letters()
    assert len(letters) == dead, f"accepted, then dead-lettered: {letters[dead:]}"
    return True


R = TypeVar("R")


def stored_row(
    ledger: Ledger,
    dsn: str,
    build: Callable[[], R],
    record: Callable[[R], Any],
    sql: str,
    key: Callable[[R], tuple[Any, ...]],
) -> tuple[R, tuple[Any, ...]] | None:
    """Build a record and record it: None if either refused it (nothing journaled), else
    the record and its row as ``sql`` reads it back by ``key`` (one accepted and then
    dead-lettered fails in :func:`stored`)."""
    try:
        made = build()
    except RecorderError:
        return None
    if not stored(ledger, dsn, lambda: record(made)):
        return None
    return made, one_row(dsn, sql, *key(made))


def same_real(stored: float | None, given: float | None) -> bool:
    """A REAL column holds the given float rounded to float4 (read back as its shortest text)."""
    if stored is None or given is None:
        return stored is given
    as_real = _FLOAT4.unpack(_FLOAT4.pack(given))[0]
    return bool(_FLOAT4.unpack(_FLOAT4.pack(stored))[0] == as_real)


def json_equal(dsn: str, column: str, table: str, key: str, key_value: Any, given: Any) -> None:
    """The stored JSONB is the given value as JSON (PostgreSQL compares, numbers exactly)."""
    expected = None if given is None else dumps(given).decode()
    same = one_row(
        dsn,
        f"SELECT {column} IS NOT DISTINCT FROM %s::jsonb FROM {table} WHERE {key} = %s",
        expected,
        key_value,
    )
    assert same == (True,), (column, given)


# -- per call -------------------------------------------------------------------------


@HOSTILE
@given(
    pair=texts(16),
    strategy=texts(64),
    sl=decimals(),
    entry=st.one_of(st.none(), decimals()),
    prediction=st.one_of(st.none(), reals()),
    details=json_values(),
    created=timestamps(),
)
def test_record_signal(
    hostile_ledger: Ledger,
    pg_dsn: str,
    pair: str,
    strategy: str,
    sl: Any,
    entry: Any,
    prediction: Any,
    details: Any,
    created: Any,
) -> None:
    fields = {
        "trading_pair": pair,
        "strategy_id": strategy,
        "proposed_sl_price": sl,
        "proposed_entry_price": entry,
        "prediction_value": prediction,
        "risk_check_details": details,
        "created_at": created,
    }
    made = stored_row(
        hostile_ledger,
        pg_dsn,
        lambda: make_signal(**fields),
        hostile_ledger.record_signal,
        "SELECT trading_pair, strategy_id, proposed_sl_price, proposed_entry_price, "
        "prediction_value, created_at FROM signals WHERE signal_id = %s",
        lambda signal: (signal.signal_id,),
    )
    if made is None:
        return
    signal, got = made
    assert got[:4] + got[5:] == (
        pair,
        strategy,
        signal.proposed_sl_price,
        signal.proposed_entry_price,
        signal.created_at,
    )
    assert same_real(got[4], signal.prediction_value)
    json_equal(pg_dsn, "risk_check_details", "signals", "signal_id", signal.signal_id, details)


@HOSTILE
@given(
    reject=st.booleans(),
    reason=texts(),
    details=json_values(),
)
def test_update_signal_status(
    hostile_ledger: Ledger, pg_dsn: str, reject: bool, reason: str, details: Any
) -> None:
    signal = make_signal()
    hostile_ledger.record_signal(signal)
    status = "REJECTED" if reject else "APPROVED"
    given_reason = reason if reject else None
    call = lambda: hostile_ledger.update_signal_status(  # noqa: E731
        signal.signal_id, status, rejection_reason=given_reason, risk_check_details=details
    )
    if not stored(hostile_ledger, pg_dsn, call):
        return
    got = one_row(
        pg_dsn,
        "SELECT status, rejection_reason FROM signals WHERE signal_id = %s",
        signal.signal_id,
    )
    assert got == (status, given_reason)
    json_equal(pg_dsn, "risk_check_details", "signals", "signal_id", signal.signal_id, details)


@HOSTILE
@given(
    quantity=decimals(),
    limit=st.one_of(st.none(), decimals()),
    exchange_order_id=st.one_of(st.none(), texts(64)),
    error=st.one_of(st.none(), texts()),
    ref=st.one_of(st.none(), texts(64)),
    created=timestamps(),
)
def test_record_order(
    hostile_ledger: Ledger,
    pg_dsn: str,
    quantity: Any,
    limit: Any,
    exchange_order_id: str | None,
    error: str | None,
    ref: str | None,
    created: Any,
) -> None:
    made = stored_row(
        hostile_ledger,
        pg_dsn,
        lambda: make_order(
            quantity_ordered=quantity,
            limit_price=limit,
            exchange_order_id=None if exchange_order_id is None else unique(exchange_order_id),
            error_message=error,
            client_order_ref=None if ref is None else unique(ref),
            created_at=created,
        ),
        hostile_ledger.record_order,
        "SELECT quantity_ordered, limit_price, exchange_order_id, error_message, "
        "client_order_ref, created_at FROM orders WHERE client_order_id = %s",
        lambda order: (order.client_order_id,),
    )
    if made is None:
        return
    order, got = made
    assert got == (
        order.quantity_ordered,
        order.limit_price,
        order.exchange_order_id,
        order.error_message,
        order.client_order_ref,
        order.created_at,
    )


@HOSTILE
@given(
    exchange_order_id=st.one_of(st.none(), texts(64)),
    error=st.one_of(st.none(), texts()),
    submitted=st.one_of(st.none(), timestamps()),
    updated=timestamps(),
)
def test_update_order(
    hostile_ledger: Ledger,
    pg_dsn: str,
    exchange_order_id: str | None,
    error: str | None,
    submitted: Any,
    updated: Any,
) -> None:
    order = make_order()
    hostile_ledger.record_order(order)
    eid = None if exchange_order_id is None else unique(exchange_order_id)

    def call() -> None:
        hostile_ledger.update_order(
            order.client_order_id,
            "NEW",
            exchange_order_id=eid,
            submitted_at=submitted,
            error_message=error,
            updated_at=updated,
        )

    if not stored(hostile_ledger, pg_dsn, call):
        return
    got = one_row(
        pg_dsn,
        "SELECT status, exchange_order_id, error_message, submitted_at, last_updated_at "
        "FROM orders WHERE client_order_id = %s",
        order.client_order_id,
    )
    assert got == (
        "NEW",
        eid,
        error,
        timestamp("submitted_at", submitted, optional=True),
        timestamp("updated_at", updated),
    )


@HOSTILE
@given(
    fill_id=texts(64),
    quantity=decimals(),
    price=decimals(),
    commission=decimals(),
    filled=timestamps(),
)
def test_record_fill(
    hostile_ledger: Ledger,
    pg_dsn: str,
    fill_id: str,
    quantity: Any,
    price: Any,
    commission: Any,
    filled: Any,
) -> None:
    order = make_order(quantity_ordered=Decimal("99999999999999999999"))
    hostile_ledger.record_order(order)
    made = stored_row(
        hostile_ledger,
        pg_dsn,
        lambda: Fill(
            client_order_id=order.client_order_id,
            trading_pair=order.trading_pair,
            exchange=order.exchange,
            side=order.side,
            quantity_filled=quantity,
            fill_price=price,
            commission=commission,
            commission_asset="USD",
            fill_id=unique(fill_id),
            filled_at=filled,
        ),
        hostile_ledger.record_fill,
        "SELECT quantity_filled, fill_price, commission, filled_at FROM fills "
        "WHERE exchange = %s AND fill_id = %s",
        lambda fill: (fill.exchange, fill.fill_id),
    )
    if made is None:
        return
    fill, got = made
    assert got == (fill.quantity_filled, fill.fill_price, fill.commission, fill.filled_at)


@HOSTILE
@given(
    strategy=texts(64),
    quantity=decimals(),
    pnl=decimals(),
    pct=reals(),
    entry=timestamps(),
    exit_after=st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(days=1)]),
)
def test_record_trade(
    hostile_ledger: Ledger,
    pg_dsn: str,
    strategy: str,
    quantity: Any,
    pnl: Any,
    pct: Any,
    entry: Any,
    exit_after: timedelta,
) -> None:
    try:  # the test's own arithmetic past the type's range (datetime.max + 1 day)
        exit_at = entry + exit_after if isinstance(entry, datetime) else entry
    except (OverflowError, ValueError):
        return
    made = stored_row(
        hostile_ledger,
        pg_dsn,
        lambda: make_trade(
            strategy_id=strategy,
            entry_timestamp=entry,
            exit_timestamp=exit_at,
            quantity=quantity,
            realized_pnl=pnl,
            realized_pnl_pct=pct,
            exit_reason=sorted(EXIT_REASONS)[0],
            entry_client_order_id=uuid.uuid4(),
        ),
        hostile_ledger.record_trade,
        "SELECT strategy_id, quantity, realized_pnl, realized_pnl_pct, entry_timestamp, "
        "exit_timestamp FROM trades WHERE trade_id = %s",
        lambda trade: (trade.trade_id,),
    )
    if made is None:
        return
    trade, got = made
    assert got[:3] + got[4:] == (
        strategy,
        trade.quantity,
        trade.realized_pnl,
        trade.entry_timestamp,
        trade.exit_timestamp,
    )
    assert same_real(got[3], trade.realized_pnl_pct)


@HOSTILE
@given(
    source=texts(64),
    level=st.sampled_from([*sorted(LOG_LEVELS), "TRACE", ""]),
    message=texts(),
    exception_type=st.one_of(st.none(), texts()),
    stack=st.one_of(st.none(), texts()),
    order_pk=st.one_of(st.none(), st.sampled_from([0, 1, 2**31 - 1, 2**31, -1, True])),
    context=json_values(),
    at=timestamps(),
)
def test_record_log(
    hostile_ledger: Ledger,
    pg_dsn: str,
    source: str,
    level: str,
    message: str,
    exception_type: str | None,
    stack: str | None,
    order_pk: Any,
    context: Any,
    at: Any,
) -> None:
    made = stored_row(
        hostile_ledger,
        pg_dsn,
        lambda: LogEntry(
            source_module=source,
            log_level=level,
            message=message,
            exception_type=exception_type,
            stack_trace=stack,
            order_pk=order_pk,
            context=context,
            log_timestamp=at,
        ),
        hostile_ledger.record_log,
        "SELECT source_module, log_level, message, exception_type, stack_trace, order_pk, "
        "log_timestamp FROM system_logs WHERE log_id = %s",
        lambda entry: (entry.log_id,),
    )
    if made is None:
        return
    entry, got = made
    assert got == (source, level, message, exception_type, stack, order_pk, entry.log_timestamp)
    json_equal(pg_dsn, "context", "system_logs", "log_id", entry.log_id, context)


@HOSTILE
@given(
    equity=decimals(),
    pct=reals(),
    positions=json_values(),
    at=timestamps(),
)
def test_record_portfolio_snapshot(
    hostile_ledger: Ledger, pg_dsn: str, equity: Any, pct: Any, positions: Any, at: Any
) -> None:
    made = stored_row(
        hostile_ledger,
        pg_dsn,
        lambda: PortfolioSnapshot(
            total_equity=equity,
            available_balance=equity,
            total_exposure_pct=pct,
            daily_drawdown_pct=pct,
            weekly_drawdown_pct=0,
            total_drawdown_pct=0,
            positions=positions,
            snapshot_timestamp=at,
        ),
        hostile_ledger.record_portfolio_snapshot,
        "SELECT total_equity, total_exposure_pct FROM portfolio_snapshots "
        "WHERE snapshot_timestamp = %s",
        lambda snapshot: (snapshot.snapshot_timestamp,),
    )
    if made is None:
        return
    snapshot, got = made
    assert got[0] == snapshot.total_equity
    assert same_real(got[1], snapshot.total_exposure_pct)
    json_equal(
        pg_dsn,
        "positions",
        "portfolio_snapshots",
        "snapshot_timestamp",
        snapshot.snapshot_timestamp,
        positions,
    )


@HOSTILE
@given(content=json_values())
def test_record_configuration(hostile_ledger: Ledger, pg_dsn: str, content: Any) -> None:
    result: list[str] = []
    if not stored(
        hostile_ledger, pg_dsn, lambda: result.append(hostile_ledger.record_configuration(content))
    ):
        return
    (config_hash,) = result
    got = one_row(
        pg_dsn, "SELECT is_active FROM configurations WHERE config_hash = %s", config_hash
    )
    assert got == (True,)
    json_equal(pg_dsn, "config_content", "configurations", "config_hash", config_hash, content)


@HOSTILE
@given(what=texts(), event=json_values(), reason=texts())
def test_record_refused_is_a_dead_letter_and_stalls_nothing(
    hostile_ledger: Ledger, pg_dsn: str, what: str, event: Any, reason: str
) -> None:
    dead = len(hostile_ledger.dead_letters())
    if not attempt(
        hostile_ledger, pg_dsn, lambda: hostile_ledger.record_refused(what, event, reason)
    ):
        return
    assert len(hostile_ledger.dead_letters()) == dead + 1


@HOSTILE
@given(
    built=st.sampled_from(
        [None, "text", 5, [1], {}, {"message": "x"}, object(), {1, 2}, ValueError("boom")]
    )
)
def test_record_log_later_builds_anything_and_stalls_nothing(
    hostile_ledger: Ledger, pg_dsn: str, built: Any
) -> None:
    def build() -> Any:
        if isinstance(built, Exception):
            raise built
        return built

    attempt(hostile_ledger, pg_dsn, lambda: hostile_ledger.record_log_later(build))


# -- findings: each accepted at the call, then lost or stalling ---------------------------


def test_a_zero_commission_with_a_huge_exponent_is_stored(
    hostile_ledger: Ledger, pg_dsn: str
) -> None:
    order = make_order()
    hostile_ledger.record_order(order)
    fill = Fill(
        client_order_id=order.client_order_id,
        trading_pair=order.trading_pair,
        exchange=order.exchange,
        side=order.side,
        quantity_filled=Decimal(1),
        fill_price=Decimal("0.5"),
        commission=Decimal("0E+999999999999999999"),
        commission_asset="USD",
        fill_id="zero-commission",
    )
    assert stored(hostile_ledger, pg_dsn, lambda: hostile_ledger.record_fill(fill))
    got = one_row(pg_dsn, "SELECT commission FROM fills WHERE fill_id = 'zero-commission'")
    assert got == (Decimal(0),)


def test_a_pandas_timestamp_is_stored(hostile_ledger: Ledger, pg_dsn: str) -> None:
    pd = pytest.importorskip("pandas")
    at = pd.Timestamp("2026-11-26T05:00:00.123456", tz="Europe/Paris")
    signal = make_signal(created_at=at)
    assert stored(hostile_ledger, pg_dsn, lambda: hostile_ledger.record_signal(signal))
    got = one_row(pg_dsn, "SELECT created_at FROM signals WHERE signal_id = %s", signal.signal_id)
    assert got == (datetime(2026, 11, 26, 4, 0, 0, 123456, tzinfo=timezone.utc),)


def test_json_as_deep_as_the_call_accepts_is_stored(hostile_ledger: Ledger, pg_dsn: str) -> None:
    signal = make_signal()
    hostile_ledger.record_signal(signal)
    details = _deep(254)
    call = lambda: hostile_ledger.update_signal_status(  # noqa: E731
        signal.signal_id, "APPROVED", risk_check_details=details
    )
    if stored(hostile_ledger, pg_dsn, call):
        json_equal(pg_dsn, "risk_check_details", "signals", "signal_id", signal.signal_id, details)


def test_a_jsonb_value_past_the_server_limit_stalls_nothing(
    hostile_ledger: Ledger, pg_dsn: str
) -> None:
    huge = LogEntry(
        source_module="stall-review",
        log_level="INFO",
        message="huge",
        context={"x": "a" * 2**28},  # one byte past jsonb's limit
    )
    hostile_ledger.record_log(huge)
    del huge
    _plain_commits(hostile_ledger, pg_dsn)
    # Its journal form passes 256 MiB too: kept as poison (its first 10,000 characters),
    # not as 256 MiB of dead letter, and never sent to PostgreSQL.
    [(_seq, kind, payload, _error)] = hostile_ledger.dead_letters()
    assert kind == "poison"
    assert orjson.loads(payload)["error"].endswith("bytes, past a journal row's limit")


def test_the_largest_event_quoted_into_a_group_query_is_stored(
    hostile_ledger: Ledger, pg_dsn: str
) -> None:
    """The worst case of binding a group on this side: one event just under the journal's
    row cap, all backslashes (each one two bytes of JSON, each of those doubled in the
    query's literal): a query near 512 MiB, which PostgreSQL takes (its limit is 1 GiB).
    Stored whole, and nothing after it stalls."""
    n = (journal._MAX_ROW_BYTES - 4096) // 2
    entry = LogEntry(source_module="stall-review", log_level="INFO", message="\\" * n)
    hostile_ledger.record_log(entry)
    del entry
    assert hostile_ledger.flush(HUGE_FLUSH), f"not committed: {hostile_ledger.stats()}"
    assert hostile_ledger.dead_letters() == []
    _plain_commits(hostile_ledger, pg_dsn)
    got = one_row(
        pg_dsn,
        "SELECT length(message), message = repeat(E'\\\\', %s) FROM system_logs "
        "WHERE source_module = 'stall-review' AND message <> 'plain'",
        n,
    )
    assert got == (n, True)


def test_a_trade_for_a_signal_postgres_lacks_is_dead_lettered_and_stalls_nothing(
    hostile_ledger: Ledger, pg_dsn: str
) -> None:
    """record_trade does not check its signal (one may be older than memory): PostgreSQL's
    foreign key refuses it, and it is kept, said, and passed."""
    trade = make_trade(signal_id=uuid.uuid4())
    assert attempt(hostile_ledger, pg_dsn, lambda: hostile_ledger.record_trade(trade))
    [(_seq, kind, _payload, error)] = hostile_ledger.dead_letters()
    assert (kind, error.split(":")[0]) == ("trade", "ForeignKeyViolation")
    assert rows(pg_dsn, "SELECT 1 FROM trades WHERE trade_id = %s", trade.trade_id) == []
    logged = rows(pg_dsn, "SELECT context->>'kind' FROM system_logs WHERE log_level = 'ERROR'")
    assert logged == [("trade",)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_float_in_json_is_refused_at_the_call(
    hostile_ledger: Ledger, pg_dsn: str, value: float
) -> None:
    context = {"spread": [1.5, {"ratio": value}]}
    with pytest.raises(RecorderError):
        LogEntry(source_module="m", log_level="INFO", message="m", context=context)
    with pytest.raises(RecorderError):
        hostile_ledger.record_configuration({"risk": context})
    assert hostile_ledger.stats()["accepted"] == 0


@pytest.mark.timeout(5, method="signal")  # a liveness bound, not a speed measurement
def test_a_huge_int_quantity_is_refused_at_once(hostile_ledger: Ledger) -> None:
    with pytest.raises(RecorderError):
        make_order(quantity_ordered=10 ** (10**6))
    assert hostile_ledger.stats()["accepted"] == 0


def extreme_amounts() -> st.SearchStrategy[Decimal]:
    """Valid NUMERIC(38,18) amounts > 0, weighted to the column's ends."""
    ends = ["1E-18", "99999999999999999999.999999999999999999", "1E+19", "0.333333333333333333"]
    return st.one_of(
        st.sampled_from([Decimal(e) for e in ends]),
        st.decimals(
            min_value=Decimal("1E-18"), max_value=Decimal("99999999999999999999"), places=18
        ),
    )


@HOSTILE
@given(
    entry_qty=extreme_amounts(),
    entry_price=extreme_amounts(),
    exit_price=extreme_amounts(),
    commission=st.one_of(st.just(Decimal(0)), extreme_amounts()),
    base_commission=st.booleans(),
)
def test_a_cycle_with_hostile_numbers(
    hostile_ledger: Ledger,
    pg_dsn: str,
    entry_qty: Any,
    entry_price: Any,
    exit_price: Any,
    commission: Any,
    base_commission: bool,
) -> None:
    """An entry and an exit fill at extreme quantities, prices and fees: the fills are
    stored (never dead-lettered) and the trade they close is stored or, if no row can hold
    it, said in system_logs; nothing stalls."""
    signal = make_signal()
    entry = make_order(signal, quantity_ordered=Decimal("99999999999999999999"))
    exit_order = make_order(
        side="SELL", signal_id=signal.signal_id, quantity_ordered=Decimal("99999999999999999999")
    )
    for record in (signal, entry, exit_order):
        assert stored(
            hostile_ledger,
            pg_dsn,
            functools.partial(
                getattr(hostile_ledger, f"record_{type(record).__name__.lower()}"), record
            ),
        )

    def fill(order: Order, price: Any) -> Fill:
        return Fill(
            client_order_id=order.client_order_id,
            trading_pair=order.trading_pair,
            exchange=order.exchange,
            side=order.side,
            quantity_filled=entry_qty,
            fill_price=price,
            commission=commission,
            commission_asset="XRP" if base_commission else "USD",
        )

    try:
        fills = [fill(entry, entry_price), fill(exit_order, exit_price)]
    except RecorderError:
        return
    for f in fills:
        if not stored(hostile_ledger, pg_dsn, functools.partial(hostile_ledger.record_fill, f)):
            return
    trades = rows(pg_dsn, "SELECT quantity FROM trades WHERE signal_id = %s", signal.signal_id)
    said = rows(
        pg_dsn,
        "SELECT 1 FROM system_logs WHERE signal_id = %s OR message LIKE %s",
        signal.signal_id,
        f"%{signal.signal_id}%",
    )
    event("trade stored" if trades else "trade said unstorable")
    assert trades == [(fills[0].quantity_filled,)] or (not trades and said), (trades, said)


def test_an_event_too_big_for_the_journal_stalls_nothing(pg_dsn: str, tmp_path: Path) -> None:
    ledger = started(quick_config(pg_dsn, tmp_path / "data"))
    try:
        message = "\x01" * 170_000_000
        ledger.record_log(LogEntry(source_module="m", log_level="INFO", message=message))
        del message
        _plain_commits(ledger, pg_dsn)
        assert [kind for _seq, kind, _p, _e in ledger.dead_letters()] == ["poison"]
    finally:
        closed = ledger.close(timeout=10)
    assert closed


@pytest.mark.xfail(
    strict=True,
    reason="record_order does not check its signal_id: an order naming a signal neither "
    "memory nor PostgreSQL has is accepted, refused by orders_signal_id_fkey and "
    "dead-lettered, and the fills then accepted for it (the state machine has the order) "
    "are dead-lettered too (fills.order_pk NULL); not fixed here: the call cannot tell an "
    "unknown signal from one evicted from memory without reading PostgreSQL (a held call)",
)
def test_an_order_for_a_signal_nobody_has_is_refused_or_stored(
    hostile_ledger: Ledger, pg_dsn: str
) -> None:
    order = make_order(signal_id=uuid.uuid4())
    if stored(hostile_ledger, pg_dsn, lambda: hostile_ledger.record_order(order)):
        one_row(pg_dsn, "SELECT 1 FROM orders WHERE client_order_id = %s", order.client_order_id)
