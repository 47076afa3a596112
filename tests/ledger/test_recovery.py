"""A restarted ledger rebuilds its state machines and open cycles (PostgreSQL, then journal)."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ledgerkit import (
    UNREACHABLE,
    make_fill,
    make_order,
    make_signal,
    quick_config,
    rows,
    started,
    with_entry_order,
)

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.errors import IllegalTransition, RecorderError, ValidationError
from galfriday_recorder.lab.services import PostgresService
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.loghandler import LedgerLogHandler
from galfriday_recorder.records import LogEntry, Order, Signal


def _bought(
    config: RecorderConfig, qty: str, price: str, exchange_order_id: str | None, **fill: Any
) -> tuple[Signal, Order]:
    """A first session: a signal and its 10-lot entry order, filled ``qty``, all committed."""
    first = started(config)
    signal, entry = with_entry_order(first, 10)
    if exchange_order_id is not None:
        first.update_order(entry.client_order_id, "NEW", exchange_order_id=exchange_order_id)
    first.record_fill(make_fill(entry, qty, price, **fill))
    assert first.close(timeout=30)
    return signal, entry


def test_state_from_postgres_continues_an_open_cycle(pg_dsn: str, tmp_path: Path) -> None:
    config = quick_config(pg_dsn, tmp_path / "data")
    signal, entry = _bought(config, "4", "1.5", "E-ENTRY", commission=Decimal("0.01"))

    second = started(config)
    # Known after the restart: by exchange id, with what had filled already.
    second.record_fill(
        make_fill(entry, "6", "1", client_order_id=None, exchange_order_id="E-ENTRY")
    )
    with pytest.raises(IllegalTransition):
        second.update_order(entry.client_order_id, "NEW")
    exit_ = make_order(signal, side="SELL", order_type="STOP_LOSS", quantity_ordered=Decimal(10))
    second.record_order(exit_)
    second.record_fill(make_fill(exit_, "10", "1.1", commission=Decimal("0.02")))
    assert second.close(timeout=30)
    # entry 6 + 6 = 12, exit 11: (11 - 12) - 0.03
    assert rows(
        pg_dsn, "SELECT quantity, average_entry_price, realized_pnl, exit_reason FROM trades"
    ) == [(Decimal(10), Decimal("1.2"), Decimal("-1.03"), "SL_HIT")]
    assert rows(pg_dsn, "SELECT status, quantity_filled FROM orders ORDER BY order_pk") == [
        ("FILLED", Decimal(10)),
        ("FILLED", Decimal(10)),
    ]


def test_state_from_the_journal_while_postgres_is_down(pg_dsn: str, tmp_path: Path) -> None:
    offline = RecorderConfig(pg_dsn=UNREACHABLE, data_dir=tmp_path / "data")
    first = started(offline)
    _signal, order = with_entry_order(first, 10)
    first.update_order(order.client_order_id, "NEW", exchange_order_id="E-1")
    first.record_fill(make_fill(order, "4", "0.5"))
    assert not first.close(timeout=0.2)

    second = started(offline)  # PostgreSQL still down: the journal alone rebuilds the state
    second.record_fill(make_fill(order, "6", "0.5", client_order_id=None, exchange_order_id="E-1"))
    with pytest.raises(IllegalTransition, match="FILLED -> NEW"):
        second.update_order(order.client_order_id, "NEW")
    assert not second.close(timeout=0.2)

    third = started(offline.replace(pg_dsn=pg_dsn))
    assert third.flush(timeout=30)
    assert third.close(timeout=5)
    assert rows(pg_dsn, "SELECT status, quantity_filled, exchange_order_id FROM orders") == [
        ("FILLED", Decimal(10), "E-1")
    ]
    assert rows(pg_dsn, "SELECT count(*) FROM fills") == [(2,)]


def test_a_fill_held_for_postgres_is_still_checked_against_its_order_at_the_call(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Until PostgreSQL is read, a fill of an order without a signal is held (the cycles
    it reduces are PostgreSQL's); what its order, in memory, refuses is refused at the
    call all the same, not dead-lettered later."""
    offline = RecorderConfig(pg_dsn=UNREACHABLE, data_dir=tmp_path / "data")
    first = started(offline)
    close = make_order(side="SELL", quantity_ordered=Decimal(10))  # no signal
    rejected = make_order(side="SELL", quantity_ordered=Decimal(5))
    first.record_order(close)
    first.record_order(rejected)
    first.update_order(rejected.client_order_id, "REJECTED", error_message="no funds")
    with pytest.raises(ValidationError, match="side"):
        first.record_fill(make_fill(close, "4", "0.6", side="BUY"))
    with pytest.raises(ValidationError, match="more than the order's 10"):
        first.record_fill(make_fill(close, "11", "0.6"))
    with pytest.raises(IllegalTransition, match="REJECTED"):
        first.record_fill(make_fill(rejected, "1", "0.6"))
    first.record_fill(make_fill(close, "10", "0.6", fill_id="GOOD"))
    first.record_fill(make_fill(close, "10", "0.6", fill_id="GOOD"))  # re-sent while held
    assert not first.close(timeout=0.2)

    second = started(offline.replace(pg_dsn=pg_dsn))
    assert second.flush(timeout=30)
    assert second.stats()["dead_letters"] == 0
    assert second.close(timeout=5)
    assert rows(pg_dsn, "SELECT fill_id, quantity_filled FROM fills") == [("GOOD", Decimal(10))]
    assert rows(
        pg_dsn, "SELECT status FROM orders WHERE client_order_id = %s", close.client_order_id
    ) == [("FILLED",)]


def test_events_for_what_only_postgres_knows_are_held_until_it_answers(
    pg_service: PostgresService | None, pg_dsn: str, tmp_path: Path
) -> None:
    """A restart before PostgreSQL is back: calls about orders and signals only it knows
    are journaled at once (acknowledged), then validated in order once it answers."""
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    config = quick_config(pg_dsn, tmp_path / "data")
    signal, entry = _bought(config, "4", "0.5", "E-OLD")

    pg_service.stop()
    try:
        second = started(config)
        fresh = make_signal()  # recorded now: memory knows its cycle whole
        second.record_signal(fresh)
        other = make_order(fresh, quantity_ordered=Decimal(3))  # validated at once
        second.record_order(other)
        second.update_order(other.client_order_id, "NEW", exchange_order_id="E-NEW")
        second.record_fill(make_fill(other, "3", "0.5"))
        with pytest.raises(IllegalTransition):
            second.update_order(other.client_order_id, "NEW")
        # ... and ones it does not know yet: no error now, each checked later, in order.
        second.update_order(entry.client_order_id, "NEW")  # it is PARTIALLY_FILLED: refused
        more = make_fill(entry, "2", "0.5", client_order_id=None, exchange_order_id="E-OLD")
        second.record_fill(more)
        second.record_fill(more)  # a duplicate report: ignored
        stop = make_order(signal, side="SELL", order_type="STOP_LOSS", quantity_ordered=Decimal(6))
        second.record_order(stop)
        second.update_order(stop.client_order_id, "NEW", exchange_order_id="X-NEW")
        second.record_fill(make_fill(stop, "6", "0.45", commission=Decimal("0.01")))
        assert second.stats()["held"] == 4
    finally:
        pg_service.start()
    assert second.flush(timeout=60)
    second.record_fill(make_fill(entry, "4", "0.5"))  # validated at once again
    assert second.flush(timeout=30)
    [(_seq, kind, _payload, error)] = second.dead_letters()
    assert kind == "held"
    assert error.startswith("IllegalTransition: ")
    assert second.close(timeout=30)
    stats = second.stats()
    assert (stats["held"], stats["dead_letters"], stats["duplicates_ignored"]) == (0, 1, 1)
    assert rows(
        pg_dsn,
        "SELECT exchange_order_id, status, quantity_filled FROM orders ORDER BY exchange_order_id",
    ) == [
        ("E-NEW", "FILLED", Decimal(3)),
        ("E-OLD", "FILLED", Decimal(10)),
        ("X-NEW", "FILLED", Decimal(6)),
    ]
    assert rows(pg_dsn, "SELECT count(*) FROM fills") == [(5,)]
    # The stop closed the 6 bought (4 before the restart, 2 after): 2.70 - 3.00 - 0.01.
    assert rows(pg_dsn, "SELECT signal_id, quantity, realized_pnl, exit_reason FROM trades") == [
        (signal.signal_id, Decimal(6), Decimal("-0.31"), "SL_HIT")
    ]
    [said] = rows(pg_dsn, "SELECT message FROM system_logs WHERE log_level = 'ERROR'")
    assert said[0].startswith("held order_update")


def test_journaled_fills_for_orders_only_postgres_knows_join_their_cycle_once_read(
    pg_service: PostgresService | None, pg_dsn: str, tmp_path: Path
) -> None:
    """Fills journaled during an outage, then a restart before PostgreSQL is back: the
    replay waits for its state, and the cycle comes out exact."""
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    signal, entry = with_entry_order(first, 10)
    first.record_fill(make_fill(entry, "4", "0.5"))
    assert first.flush(timeout=30)  # committed: after a restart only PostgreSQL knows them
    pg_service.stop()
    try:
        first.record_fill(make_fill(entry, "3", "0.5"))  # journaled, not committed
        exit_ = make_order(signal, side="SELL", quantity_ordered=Decimal(2))
        first.record_order(exit_)
        first.record_fill(make_fill(exit_, "2", "0.6"))
        assert not first.close(timeout=0.5)
        second = started(config)  # replays: the entry's order and the exit's signal unknown
    finally:
        pg_service.start()
    assert second.flush(timeout=60)
    rest = make_order(signal, side="SELL", quantity_ordered=Decimal(5))
    second.record_order(rest)
    second.record_fill(make_fill(rest, "5", "0.7"))
    assert second.close(timeout=30)
    # 7 bought at 0.5; 2 sold at 0.6 and 5 at 0.7: 1.2 + 3.5 - 3.5.
    assert rows(pg_dsn, "SELECT quantity, average_exit_price, realized_pnl FROM trades") == [
        (Decimal(7), Decimal("0.671428571428571429"), Decimal("1.2"))
    ]
    assert rows(pg_dsn, "SELECT count(*) FROM system_logs WHERE log_level = 'WARNING'") == [(0,)]


def test_a_call_after_held_ones_for_the_same_order_waits_its_turn(
    pg_service: PostgresService | None, pg_dsn: str, tmp_path: Path
) -> None:
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    config = quick_config(pg_dsn, tmp_path / "data")
    _signal, entry = _bought(config, "4", "0.5", "E-1")
    pg_service.stop()
    try:
        offline = started(config)
        offline.record_fill(make_fill(entry, "6", "0.5"))  # held: completes the order
        assert not offline.close(timeout=0.2)
    finally:
        pg_service.start()
    ledger = started(config)  # reads PostgreSQL; the held fill is not resolved yet
    # A cancel now must not overtake the fill it follows: FILLED -> CANCELED is refused,
    # at once or (held behind the fill) when it is resolved.
    with contextlib.suppress(IllegalTransition):
        ledger.update_order(entry.client_order_id, "CANCELED")
    assert ledger.close(timeout=30)
    assert rows(pg_dsn, "SELECT status, quantity_filled FROM orders") == [("FILLED", Decimal(10))]


def test_a_fill_both_journaled_and_committed_counts_once_after_a_late_merge(
    pg_service: PostgresService | None, pg_dsn: str, tmp_path: Path
) -> None:
    """A crash between PostgreSQL's commit and the journal's delete, then a restart
    without PostgreSQL: the replayed fill is in the cycle PostgreSQL rebuilds, once."""
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    config = quick_config(pg_dsn, tmp_path / "data")
    journal, saved = config.journal_path.parent, tmp_path / "journal-before-commit"
    signal, _entry = _bought(config, "10", "0.5", None)

    pg_service.stop()
    try:
        offline = started(config)  # a partial exit while PostgreSQL is down: journaled only
        exit_ = make_order(signal, side="SELL", order_type="LIMIT", quantity_ordered=Decimal(4))
        offline.record_order(exit_)
        offline.record_fill(make_fill(exit_, "4", "0.6"))
        assert not offline.close(timeout=0.5)
    finally:
        pg_service.start()
    shutil.copytree(journal, saved)
    assert started(config).close(timeout=30)  # committed, and forgotten by the journal
    shutil.rmtree(journal)
    shutil.copytree(saved, journal)  # ... as if the process died before forgetting them

    pg_service.stop()
    try:
        again = started(config)  # replays the exit fill, which waits for its signal
    finally:
        pg_service.start()
    assert again.flush(timeout=60)
    rest = make_order(signal, side="SELL", order_type="LIMIT", quantity_ordered=Decimal(6))
    again.record_order(rest)
    again.record_fill(make_fill(rest, "6", "0.7"))
    assert again.close(timeout=30)
    # 4 at 0.6 and 6 at 0.7 against 10 at 0.5: 2.4 + 4.2 - 5.0; the replayed 4 counted once.
    assert rows(pg_dsn, "SELECT quantity, average_exit_price, realized_pnl FROM trades") == [
        (Decimal(10), Decimal("0.66"), Decimal("1.6"))
    ]
    assert rows(pg_dsn, "SELECT count(*) FROM system_logs WHERE log_level = 'WARNING'") == [(0,)]


class _Echo:
    """A sink that logs while it records: the handler must not recurse."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def record_log_later(self, build: Callable[[], LogEntry]) -> None:
        entry = build()
        self.entries.append(entry)
        logging.getLogger("bot.echo").warning("recording %s", entry.message)


def test_log_handler_never_recurses_and_never_raises(tmp_path: Path) -> None:
    logger = logging.getLogger("bot.echo")
    echo = _Echo()
    handler = LedgerLogHandler(echo)
    logger.addHandler(handler)
    closed = Ledger(RecorderConfig(pg_dsn=UNREACHABLE, data_dir=tmp_path / "data"))
    refusing = closed.log_handler()
    logger.addHandler(refusing)
    try:
        logger.warning("once")
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(refusing)
    # A broken %-format still records something (emitted directly: pytest's own
    # log capture would raise on it).
    bad = logger.makeRecord("bot.echo", logging.ERROR, __file__, 1, "bad args %d", ("x",), None)
    handler.emit(bad)
    refusing.emit(bad)
    assert [e.message for e in echo.entries] == ["once", "bad args %d ('x',)"]
    assert refusing.dropped == 2  # a ledger that is not running refuses; the caller is unharmed
    assert closed.stats()["log_records_dropped"] == 2  # and says so where operators look
    with pytest.raises(RecorderError, match="not running"):
        closed.record_log(echo.entries[0])


def test_signals_in_every_status_before_a_restart_trade_after_it(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Signals PROPOSED, APPROVED (no order yet), APPROVED with a canceled first entry,
    APPROVED with an open part-filled entry, and REJECTED before a restart; after it, each
    that may trade does, and flush() returns only once every derived trade is stored."""
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    proposed, approved, canceled, open_, rejected = (make_signal() for _ in range(5))
    for signal in (proposed, approved, canceled, open_, rejected):
        first.record_signal(signal)
    for signal in (approved, canceled, open_):
        first.update_signal_status(signal.signal_id, "APPROVED")
    first.update_signal_status(rejected.signal_id, "REJECTED", rejection_reason="risk")
    gone = make_order(canceled, quantity_ordered=Decimal(10))
    first.record_order(gone)
    first.update_order(gone.client_order_id, "CANCELED")
    held_entry = make_order(open_, quantity_ordered=Decimal(10))
    first.record_order(held_entry)
    first.record_fill(make_fill(held_entry, "4", "1"))
    assert first.close(timeout=30)

    second = started(config)
    second.update_signal_status(proposed.signal_id, "APPROVED")
    second.record_fill(make_fill(held_entry, "6", "1"))
    for signal in (proposed, approved, canceled):
        entry = make_order(signal, quantity_ordered=Decimal(10))
        second.record_order(entry)
        second.record_fill(make_fill(entry, "10", "1"))
    for signal in (proposed, approved, canceled, open_):
        exit_ = make_order(signal, side="SELL", quantity_ordered=Decimal(10))
        second.record_order(exit_)
        second.record_fill(make_fill(exit_, "10", "1.25"))
    assert second.flush(timeout=60)
    # Read before close(): flush() alone must have put every derived trade in PostgreSQL.
    assert sorted(rows(pg_dsn, "SELECT signal_id, quantity, realized_pnl FROM trades")) == sorted(
        (s.signal_id, Decimal(10), Decimal("2.5")) for s in (proposed, approved, canceled, open_)
    )
    assert second.close(timeout=30)
    assert second.stats()["dead_letters"] == 0
