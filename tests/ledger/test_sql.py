"""Every table receives rows through the public API and reads back exactly."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledgerkit import (
    T0,
    make_fill,
    make_order,
    make_signal,
    make_snapshot,
    quick_config,
    rows,
    started,
    store_finished_cycles,
)

from galfriday_recorder.errors import ValidationError
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.journal import encode_event
from galfriday_recorder.ledger.sql import group_query, send_group
from galfriday_recorder.records import LogEntry, PortfolioSnapshot, Trade


def test_every_table_round_trips(ledger: Ledger, pg_dsn: str) -> None:
    signal = make_signal(
        proposed_entry_price=Decimal("0.512345678901234567"),
        prediction_event_id=uuid.uuid4(),
        prediction_value=0.75,
    )
    ledger.record_signal(signal)
    ledger.update_signal_status(
        signal.signal_id, "APPROVED", risk_check_details={"exposure": "0.1", "ok": True}
    )
    rejected = make_signal()
    ledger.record_signal(rejected)
    ledger.update_signal_status(rejected.signal_id, "REJECTED", rejection_reason="drawdown")

    entry = make_order(signal, quantity_ordered=Decimal("150"))
    ledger.record_order(entry)
    submitted = T0 + timedelta(milliseconds=5)
    ledger.update_order(
        entry.client_order_id,
        "NEW",
        exchange_order_id="OQCLML-BW3P3-BUCMWZ",
        submitted_at=submitted,
        updated_at=submitted,
    )
    f1 = make_fill(entry, "100", "0.5", commission=Decimal("0.1"), liquidity_type="MAKER")
    f2 = make_fill(
        entry,
        "50",
        "0.52",
        commission=Decimal("0.05"),
        commission_asset="XRP",
        client_order_id=None,
        exchange_order_id="OQCLML-BW3P3-BUCMWZ",
        filled_at=T0 + timedelta(seconds=1),
    )
    ledger.record_fill(f1)
    ledger.record_fill(f1)  # a duplicate is ignored, not doubled
    ledger.record_fill(f2)
    exit_ = make_order(
        signal,
        side="SELL",
        order_type="TAKE_PROFIT",
        quantity_ordered=Decimal("150"),
        stop_price=Decimal("0.55"),
    )
    ledger.record_order(exit_)
    ledger.record_fill(
        make_fill(
            exit_, "150", "0.55", commission=Decimal("0.2"), filled_at=T0 + timedelta(seconds=60)
        )
    )
    explicit = Trade(
        signal_id=None,
        trading_pair="DOGE/USD",
        exchange="kraken",
        strategy_id="manual",
        side="SELL",
        entry_timestamp=T0,
        exit_timestamp=T0 + timedelta(hours=1),
        quantity=Decimal("1000"),
        average_entry_price=Decimal("0.1"),
        average_exit_price=Decimal("0.09"),
        total_commission=Decimal("0.3"),
        realized_pnl=Decimal("9.7"),
        realized_pnl_pct=9.7,
        exit_reason="SIGNAL_EXIT",
    )
    ledger.record_trade(explicit)
    snap = PortfolioSnapshot(
        total_equity=Decimal("10000.123456789012345678"),
        available_balance="9000.5",  # type: ignore[arg-type]  # deliberately a str: converted
        total_exposure_pct=12.5,
        daily_drawdown_pct=0.5,
        weekly_drawdown_pct=1.0,
        total_drawdown_pct=2.0,
        positions={"XRP/USD": {"qty": "150", "entry": "0.5"}},
        snapshot_timestamp=T0.astimezone(timezone(timedelta(hours=2))),
    )
    ledger.record_portfolio_snapshot(snap)
    first_hash = ledger.record_configuration(
        {"risk": {"max_dd": Decimal("0.1")}, "pairs": ["XRP/USD"]}
    )
    content = {"pairs": ["XRP/USD", "DOGE/USD"], "risk": {"max_dd": "0.2"}}
    second_hash = ledger.record_configuration(content)
    ledger.record_log(
        LogEntry(
            source_module="strategy",
            log_level="INFO",
            message="hello",
            trading_pair="XRP/USD",
            signal_id=signal.signal_id,
            context={"k": [1, 2]},
            log_timestamp=T0,
        )
    )
    assert ledger.flush(timeout=30)

    (sig,) = rows(
        pg_dsn,
        "SELECT proposed_entry_price, proposed_sl_price, status, "
        "risk_check_details, created_at, prediction_value FROM signals "
        "WHERE signal_id = %s",
        signal.signal_id,
    )
    assert sig[0] == Decimal("0.512345678901234567")
    assert sig[1] == Decimal("0.45")
    assert sig[2] == "APPROVED"
    assert sig[3] == {"exposure": "0.1", "ok": True}
    assert sig[4] == T0
    assert sig[5] == 0.75
    assert rows(
        pg_dsn,
        "SELECT status, rejection_reason FROM signals WHERE signal_id = %s",
        rejected.signal_id,
    ) == [("REJECTED", "drawdown")]

    (order,) = rows(
        pg_dsn,
        "SELECT order_pk, status, exchange_order_id, submitted_at, "
        "quantity_filled, created_at FROM orders WHERE client_order_id = %s",
        entry.client_order_id,
    )
    assert order[1:] == ("FILLED", "OQCLML-BW3P3-BUCMWZ", submitted, Decimal(150), T0)
    fills = rows(
        pg_dsn,
        "SELECT fill_id, quantity_filled, fill_price, commission, "
        "commission_asset, liquidity_type, filled_at, exchange_order_id "
        "FROM fills WHERE order_pk = %s ORDER BY fill_pk",
        order[0],
    )
    assert fills == [
        (
            f1.fill_id,
            Decimal(100),
            Decimal("0.5"),
            Decimal("0.1"),
            "USD",
            "MAKER",
            T0,
            "OQCLML-BW3P3-BUCMWZ",
        ),
        (
            f2.fill_id,
            Decimal(50),
            Decimal("0.52"),
            Decimal("0.05"),
            "XRP",
            None,
            T0 + timedelta(seconds=1),
            "OQCLML-BW3P3-BUCMWZ",
        ),
    ]
    derived = rows(
        pg_dsn,
        "SELECT quantity, average_entry_price, average_exit_price, "
        "total_commission, realized_pnl, exit_reason, entry_order_pk, "
        "exit_order_pk IS NOT NULL FROM trades WHERE signal_id = %s",
        signal.signal_id,
    )
    assert derived == [
        (
            Decimal(150),
            Decimal("0.506666666666666667"),
            Decimal("0.55"),
            Decimal("0.326"),
            Decimal("6.174"),
            "TP_HIT",
            order[0],
            True,
        )
    ]
    assert rows(
        pg_dsn,
        "SELECT realized_pnl, side, exit_timestamp FROM trades WHERE trade_id = %s",
        explicit.trade_id,
    ) == [(Decimal("9.7"), "SELL", T0 + timedelta(hours=1))]
    assert rows(
        pg_dsn,
        "SELECT total_equity, available_balance, positions, "
        "snapshot_timestamp FROM portfolio_snapshots",
    ) == [
        (
            Decimal("10000.123456789012345678"),
            Decimal("9000.5"),
            {"XRP/USD": {"qty": "150", "entry": "0.5"}},
            T0,
        )
    ]
    configs = rows(
        pg_dsn,
        "SELECT config_hash, config_content, is_active FROM configurations ORDER BY config_pk",
    )
    assert configs == [
        (first_hash, {"risk": {"max_dd": "0.1"}, "pairs": ["XRP/USD"]}, False),
        (second_hash, content, True),
    ]
    assert (
        second_hash
        == hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )
    assert rows(
        pg_dsn,
        "SELECT source_module, log_level, message, trading_pair, signal_id, "
        "context, log_timestamp FROM system_logs WHERE source_module = "
        "'strategy'",
    ) == [("strategy", "INFO", "hello", "XRP/USD", signal.signal_id, {"k": [1, 2]}, T0)]
    stats = ledger.stats()
    assert stats["duplicates_ignored"] == 1
    assert stats["journal_depth"] == 0
    assert stats["committed"] == stats["accepted"]
    assert stats["pg_connected"] == 1

    # A configuration loaded again becomes the active one again.
    ledger.record_configuration({"pairs": ["XRP/USD"], "risk": {"max_dd": Decimal("0.1")}})
    assert ledger.flush(timeout=30)
    assert rows(pg_dsn, "SELECT config_hash FROM configurations WHERE is_active") == [(first_hash,)]


def test_recovery_state(ledger: Ledger) -> None:
    signal = make_signal()
    ledger.record_signal(signal)
    ledger.update_signal_status(signal.signal_id, "APPROVED")
    entry = make_order(signal, quantity_ordered=Decimal("10"))
    ledger.record_order(entry)
    ledger.update_order(entry.client_order_id, "NEW", exchange_order_id="E1")
    fill = make_fill(entry, "4", "0.5", commission=Decimal("0.01"))
    ledger.record_fill(fill)
    closed = make_order(quantity_ordered=Decimal("1"))
    ledger.record_order(closed)
    ledger.update_order(closed.client_order_id, "CANCELED")
    ledger.record_portfolio_snapshot(
        make_snapshot(total_equity=1, available_balance=1, positions=[])
    )
    later = make_snapshot(
        total_equity=2,
        available_balance=1,
        positions=[],
        snapshot_timestamp=T0 + timedelta(minutes=1),
    )
    ledger.record_portfolio_snapshot(later)
    config_hash = ledger.record_configuration({"a": 1})

    state = ledger.load_recovery_state()
    assert [o.order.client_order_id for o in state.open_orders] == [entry.client_order_id]
    open_order = state.open_orders[0]
    assert open_order.order.status == "PARTIALLY_FILLED"
    assert open_order.order.exchange_order_id == "E1"
    assert open_order.quantity_filled == Decimal(4)
    assert [f.fill_id for f in open_order.fills] == [fill.fill_id]
    assert open_order.fills[0].fill_price == Decimal("0.5")
    assert state.latest_snapshot == later
    assert state.active_configuration is not None
    assert state.active_configuration.config_hash == config_hash
    (cycle,) = state.open_cycles
    assert cycle.signal_id == signal.signal_id
    assert cycle.open_quantity == Decimal(4)
    assert cycle.entry_value == Decimal(2)


def test_log_handler_records_context_and_exceptions(ledger: Ledger, pg_dsn: str) -> None:
    logger = logging.getLogger("bot.strategy")
    logger.setLevel(logging.DEBUG)
    handler = ledger.log_handler(logging.INFO)
    logger.addHandler(handler)
    sid = uuid.uuid4()
    words = ["placed"]
    context: dict[str, object] = {"spread": "0.001"}
    try:
        logger.debug("not recorded: below the handler's level")
        logger.info(
            "entry %s",
            words,
            extra={
                "trading_pair": "XRP/USD",
                "signal_id": str(sid),
                "order_pk": 7,
                "context": context,
                "latency_ms": 3.5,
                "when": T0,
            },
        )
        # The row is built later, on the ledger's thread, from what the call passed then.
        words[0], context["spread"], context["late"] = "changed", "0.5", True
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("order failed", extra={"trading_pair": "X" * 40})
    finally:
        logger.removeHandler(handler)
    assert ledger.flush(timeout=30)
    got = rows(
        pg_dsn,
        "SELECT source_module, log_level, message, trading_pair, signal_id, "
        "order_pk, context, exception_type, stack_trace FROM system_logs "
        "ORDER BY log_timestamp",
    )
    assert len(got) == 2
    info, error = got
    assert info[:7] == (
        "bot.strategy",
        "INFO",
        "entry ['placed']",
        "XRP/USD",
        sid,
        7,
        {"spread": "0.001", "latency_ms": 3.5, "when": T0.isoformat()},
    )
    assert info[7:] == (None, None)
    assert error[1:4] == ("ERROR", "order failed", None)
    assert error[6] == {"trading_pair": "X" * 40}  # too long for the column: kept in context
    assert error[7] == "ValueError"
    assert 'raise ValueError("boom")' in error[8]
    assert handler.dropped == 0


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_a_log_record_with_an_unprintable_value_is_kept(ledger: Ledger, pg_dsn: str) -> None:
    logger = logging.getLogger("bot.odd")
    handler = ledger.log_handler(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.warning("before")
        logger.warning("odd", extra={"thing": _Unprintable()})  # returns: never the caller's
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    assert ledger.flush(timeout=30)
    got = rows(
        pg_dsn,
        "SELECT message, context FROM system_logs WHERE source_module = 'bot.odd' "
        "ORDER BY log_timestamp",
    )
    assert got == [
        ("before", None),
        ("odd", {"thing": "<unprintable _Unprintable>"}),
        ("after", None),
    ]
    assert handler.dropped == 0
    assert ledger.stats()["log_records_dropped"] == 0


class _NulError(Exception):
    pass


def test_log_handler_escapes_nul_and_lone_surrogates_everywhere(
    ledger: Ledger, pg_dsn: str
) -> None:
    """PostgreSQL stores neither NUL nor a lone surrogate: the record is kept, escaped."""
    logger = logging.getLogger("bot.nul\x00")
    handler = ledger.log_handler(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.warning(
            "m\x00 %s %s",
            "arg\x00",
            "sur\udc80",
            extra={
                "context": {"k\x00": ["v\x00", {"\udcff": "x"}], "n": 2**70},
                "trading_pair": "XRP\x00USD",
                "note": "x\udc80\x00",
            },
        )
        try:
            raise _NulError("boom\x00 \ud800")
        except _NulError:
            logger.exception("failed\x00")
    finally:
        logger.removeHandler(handler)
    assert ledger.flush(timeout=30)
    got = rows(
        pg_dsn,
        "SELECT source_module, message, trading_pair, context, stack_trace FROM system_logs "
        "WHERE source_module LIKE 'bot.nul%%' ORDER BY log_timestamp",
    )
    assert len(got) == 2
    warning, error = got
    assert warning[:3] == ("bot.nul\\x00", "m\\x00 arg\\x00 sur\\udc80", None)
    assert warning[3] == {
        "k\\x00": ["v\\x00", {"\\udcff": "x"}],
        "n": str(2**70),
        "trading_pair": "XRP\\x00USD",
        "note": "x\\udc80\\x00",
    }
    assert error[1] == "failed\\x00"
    assert "boom\\x00 \\ud800" in error[4]
    assert handler.dropped == 0


def _rows_scanned(dsn: str) -> dict[str, int]:
    """Rows read by whole-table scans of signals and orders so far, once every other
    backend has left (a backend's counts reach the statistics when it goes idle or exits)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "a backend did not leave"
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        scanned = conn.execute(
            "SELECT relname, seq_tup_read FROM pg_stat_user_tables "
            "WHERE relname IN ('signals', 'orders')"
        ).fetchall()
    return {name: int(count) for name, count in scanned}


@pytest.mark.parametrize("stored", [300, 3_000, 10_000])
def test_a_group_reads_only_its_own_rows_whatever_the_tables_hold(
    pg_dsn: str, tmp_path: Path, stored: int
) -> None:
    """Bounded work: verdicts, order updates, fills and derived trades find their rows by
    key. With 10,000 finished cycles stored, the planner read the signals table whole
    for each group's verdicts and derived trades (980,690 rows over 1,500 cycles); with
    a few hundred to about a thousand, it read it whole at the default cost of a random
    page, testing each row against every key of the group."""
    store_finished_cycles(pg_dsn, stored)
    before = _rows_scanned(pg_dsn)
    ledger = started(quick_config(pg_dsn, tmp_path / "data"))
    try:
        for _ in range(40):
            signal = make_signal()
            ledger.record_signal(signal)
            entry, exit_ = make_order(signal), make_order(signal, side="SELL")
            ledger.update_signal_status(signal.signal_id, "APPROVED")
            ledger.record_order(entry)
            ledger.update_order(entry.client_order_id, "NEW")
            ledger.record_fill(make_fill(entry, "150", "0.5"))
            ledger.record_order(exit_)
            ledger.update_order(exit_.client_order_id, "NEW")
            ledger.record_fill(make_fill(exit_, "150", "0.6"))
        assert ledger.flush(timeout=30)
        stats = ledger.stats()
        assert stats["committed"] == stats["accepted"] == 40 * 9  # the trades included
    finally:
        ledger.close(timeout=30)
    assert rows(pg_dsn, "SELECT count(*) FROM trades") == [(40,)]
    assert _rows_scanned(pg_dsn) == before


def test_a_dict_changed_after_its_record_was_built_changes_nothing_recorded(
    ledger: Ledger, pg_dsn: str
) -> None:
    """A record holds the JSON of its dicts as they were when it was built: the journaler
    serialises later, on its own thread, and used to store whatever the caller's dict
    held by then."""
    details = {"checks": [{"limit": Decimal("0.1")}], "ok": True}
    context = {"step": 1, "nested": {"pairs": ["XRP/USD"]}}
    positions = {"XRP/USD": {"qty": "150"}}
    signal = make_signal(risk_check_details=details)
    entry = LogEntry(source_module="bot", log_level="INFO", message="m", context=context)
    snapshot = make_snapshot(positions=positions)
    ledger.record_signal(signal)
    ledger.record_log(entry)
    ledger.record_portfolio_snapshot(snapshot)
    details["ok"] = False
    details["checks"][0]["limit"] = Decimal(1)  # type: ignore[index]
    context["nested"]["pairs"].append("BTC/USD")  # type: ignore[index]
    positions["XRP/USD"]["qty"] = "0"
    assert ledger.flush(timeout=30)
    assert rows(pg_dsn, "SELECT risk_check_details FROM signals") == [
        ({"checks": [{"limit": "0.1"}], "ok": True},)
    ]
    assert rows(pg_dsn, "SELECT context FROM system_logs WHERE message = 'm'") == [
        ({"step": 1, "nested": {"pairs": ["XRP/USD"]}},)
    ]
    assert rows(pg_dsn, "SELECT positions FROM portfolio_snapshots") == [
        ({"XRP/USD": {"qty": "150"}},)
    ]


# Weighted toward what quoting a value into a query could get wrong.
_QUOTED_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            ("'", "''", "\\", "\\'", "%", "%s", "%%", "%(x)s", ";", '"', "$$", "E'", "\n")
        ),
        st.sampled_from(("\x00", "\x01", "\x7f", "é", "\U0001d11e", "\\u0000", "*/", "--")),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=20,
).map("".join)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(_QUOTED_TEXT, min_size=1, max_size=6))
def test_text_bound_into_a_group_query_reads_back_identical(pg_dsn: str, texts: list[str]) -> None:
    """A group's parameters are quoted into its query on this side (``sql.GroupQuery``):
    quotes, backslashes, placeholders, comments and any character either are refused at
    the call (a NUL) or read back identical, as a message and as a JSONB key and value.
    The query goes as the committer sends it, without the committer's fallback (event by
    event, the server binding the parameters) to hide a misquoted one."""
    entries = []
    for text in texts:
        if "\x00" in text:
            with pytest.raises(ValidationError, match="NUL"):
                LogEntry(source_module="quoting", log_level="INFO", message=text)
            continue
        context = {text: [text]}
        entries.append(LogEntry(source_module="q", log_level="INFO", message=text, context=context))
    events = [(seq, encode_event("log", entry)[1]) for seq, entry in enumerate(entries, 1)]

    async def send() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await send_group(conn, group_query(conn, [("log", events)], "quoting-test"))

    if events:
        asyncio.run(send())
    stored = rows(
        pg_dsn,
        "SELECT log_id, message, context FROM system_logs WHERE log_id = ANY(%s)",
        [e.log_id for e in entries],
    )
    assert {log_id: (message, context) for log_id, message, context in stored} == {
        e.log_id: (e.message, e.context) for e in entries
    }
