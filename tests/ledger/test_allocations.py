"""Fills of orders without a signal: which cycles each reduced is stored with it
(``fill_allocations``), restarts rebuild cycles from those rows, and ``verify`` checks
them against an independent replay of the oldest-first rule."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from decimal import Context, Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledgerkit import (
    allocations,
    as_before_migration_0006,
    closed_by_other,
    differences,
    entered,
    make_fill,
    make_order,
    make_signal,
    open_cycles,
    quick_config,
    rows,
    started,
)

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import PostgresService
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.cycles import Allocation
from galfriday_recorder.ledger.state import LedgerState, Out


def test_the_state_machine_gives_each_part_before_the_trade_it_closes() -> None:
    """No server: a signal-less fill's events, in journal order, and none on a replay."""
    state = LedgerState()
    state.loaded = True
    out: Out = []
    older, newer = make_signal(), make_signal()
    for signal in (older, newer):
        state.record_signal(signal, out)
        entry = make_order(signal, quantity_ordered=Decimal(3))
        state.record_order(entry, out)
        state.fill(make_fill(entry, "3", "0.5"), out)
    close = make_order(side="SELL", quantity_ordered=Decimal(4))
    state.record_order(close, out)
    out.clear()
    state.fill(make_fill(close, "4", "0.6", fill_id="C"), out)
    assert [kind for kind, _event in out] == ["fill", "allocation", "derived_trade", "allocation"]
    assert [event for kind, event in out if kind == "allocation"] == [
        Allocation("kraken", "C", older.signal_id, Decimal(3)),
        Allocation("kraken", "C", newer.signal_id, Decimal(1)),
    ]
    assert [c.open_quantity for c in state.cycles.of_pair("kraken", "XRP/USD")] == [Decimal(2)]


def test_a_signal_less_fill_stores_the_part_each_cycle_took(ledger: Ledger, pg_dsn: str) -> None:
    older, newer = make_signal(), make_signal()
    for signal, qty in ((older, "10"), (newer, "8")):
        ledger.record_signal(signal)
        entry = make_order(signal, quantity_ordered=Decimal(qty))
        ledger.record_order(entry)
        ledger.record_fill(make_fill(entry, qty, "0.5"))
    close = make_order(side="SELL", quantity_ordered=Decimal(15))
    ledger.record_order(close)
    ledger.record_fill(make_fill(close, "15", "0.6", fill_id="CLOSE-1", commission=Decimal("3")))
    assert ledger.flush(timeout=30)
    assert allocations(pg_dsn) == [
        ("CLOSE-1", older.signal_id, Decimal(10)),
        ("CLOSE-1", newer.signal_id, Decimal(5)),
    ]
    # The older cycle closed with two thirds of the fill's commission.
    assert rows(pg_dsn, "SELECT signal_id, quantity, total_commission FROM trades") == [
        (older.signal_id, Decimal(10), Decimal(2))
    ]
    assert differences(pg_dsn) == []

    # Changed, lost or invented allocations are each named.
    rows(
        pg_dsn,
        "UPDATE fill_allocations SET quantity = 4 WHERE signal_id = %s RETURNING 1",
        newer.signal_id,
    )
    rows(pg_dsn, "DELETE FROM fill_allocations WHERE signal_id = %s RETURNING 1", older.signal_id)
    diffs = differences(pg_dsn)
    assert sorted(d.split(" ", 1)[0] for d in diffs) == ["allocation", "allocation", "extra"]
    assert any("the rule takes 10, stored 0" in d for d in diffs)
    assert any("the rule takes 5, stored 4" in d for d in diffs)


def test_a_cycle_comes_back_whole_after_a_restart_whatever_other_cycles_did(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The reviewer's case: a signal-less fill closed the older cycle, whose own exit then
    came as excess; a start must give the newer cycle back with its 10 open."""
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    older, newer = make_signal(), make_signal()
    for signal in (older, newer):
        first.record_signal(signal)
        entry = make_order(signal, quantity_ordered=Decimal(10))
        first.record_order(entry)
        first.record_fill(make_fill(entry, "10", "0.5"))
    close = make_order(side="SELL", quantity_ordered=Decimal(10))
    first.record_order(close)
    first.record_fill(make_fill(close, "10", "0.6"))
    late = make_order(older, side="SELL", quantity_ordered=Decimal(10))
    first.record_order(late)
    first.record_fill(make_fill(late, "10", "0.6"))
    assert first.close(timeout=30)

    second = started(config)
    [cycle] = second.load_recovery_state().open_cycles
    assert (cycle.signal_id, cycle.open_quantity) == (newer.signal_id, Decimal(10))
    assert second.close(timeout=30)


# -- restarts do not change what the fills derive: a property against an independent model --

_QTY = st.sampled_from(
    [
        Decimal(1),
        Decimal(2),
        Decimal(3),
        Decimal(7),
        Decimal("0.000000000000000001"),
        Decimal("12345678901234567.123456789012345678"),
    ]
)
_PAIRS = ("XRP/USD", "ETH/USD")
_STEP = st.one_of(
    st.tuples(st.just("enter"), st.integers(0, 5), _QTY),  # signal k enters (again)
    st.tuples(st.just("exit"), st.integers(0, 5), _QTY),  # signal k's own exit, maybe excess
    st.tuples(st.just("close"), st.integers(0, 1), _QTY),  # a signal-less close on pair p
    st.tuples(st.just("restart"), st.just(0), st.just(Decimal(0))),
)


_EXACT = Context(prec=80)  # the model's own arithmetic: sums of 18-decimal quantities
_SCALE = Decimal("1e-18")  # the columns' scale


class _Model:
    """What the fills derive, kept without the ledger's code: open cycles per pair in the
    order they opened, each a signal and its entries and exits."""

    def __init__(self) -> None:
        self.open: dict[uuid.UUID, list[Decimal]] = {}  # signal -> [entered, exited], by age
        self.pair: dict[uuid.UUID, str] = {}
        self.trades: list[tuple[uuid.UUID, Decimal]] = []

    def enter(self, signal: uuid.UUID, pair: str, qty: Decimal) -> None:
        self.pair[signal] = pair
        held = self.open.setdefault(signal, [Decimal(0), Decimal(0)])
        held[0] = _EXACT.add(held[0], qty)

    def exit(self, signal: uuid.UUID, qty: Decimal) -> None:
        if signal in self.open:
            self._take(signal, qty)

    def close(self, pair: str, qty: Decimal) -> None:
        for signal in [s for s in self.open if self.pair[s] == pair]:
            if qty == 0:
                break
            qty = _EXACT.subtract(qty, self._take(signal, qty))

    def _take(self, signal: uuid.UUID, qty: Decimal) -> Decimal:
        entered, exited = self.open[signal]
        took = min(qty, _EXACT.subtract(entered, exited))
        self.open[signal][1] = exited = _EXACT.add(exited, took)
        if exited == entered:
            del self.open[signal]
            self.trades.append((signal, entered))
        return took


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_STEP, min_size=1, max_size=24))
def test_restarts_derive_what_one_uninterrupted_run_would(
    pg_dsn: str, tmp_path: Path, steps: list[tuple[str, int, Decimal]]
) -> None:
    # Each example is its own recorder (instance), so examples do not see each other's cycles.
    config = RecorderConfig(
        pg_dsn=pg_dsn, data_dir=tmp_path / uuid.uuid4().hex, commit_interval_ms=2
    )
    signals = [make_signal(trading_pair=_PAIRS[k % 2]) for k in range(6)]
    model = _Model()
    ledger = started(config)
    recorded: set[uuid.UUID] = set()
    try:
        for n, (what, k, qty) in enumerate(steps):
            if what == "restart":
                assert ledger.close(timeout=30)
                ledger = started(config)
                continue
            if what == "close":
                order = make_order(trading_pair=_PAIRS[k], side="SELL", quantity_ordered=qty)
                model.close(_PAIRS[k], qty)
            else:
                signal = signals[k]
                if signal.signal_id not in recorded:
                    ledger.record_signal(signal)
                    recorded.add(signal.signal_id)
                side = "BUY" if what == "enter" else "SELL"
                order = make_order(signal, side=side, quantity_ordered=qty)
                if what == "enter":
                    model.enter(signal.signal_id, signal.trading_pair, qty)
                else:
                    model.exit(signal.signal_id, qty)
            ledger.record_order(order)
            fill_id = f"F{n}-{uuid.uuid4().hex[:8]}"  # examples share the database
            ledger.record_fill(make_fill(order, str(qty), str(n + 1), fill_id=fill_id))
        assert ledger.flush(timeout=30)
        open_now = open_cycles(ledger)
    finally:
        assert ledger.close(timeout=30)
    mine = [s.signal_id for s in signals]
    stored = rows(
        pg_dsn,
        "SELECT signal_id, quantity FROM trades WHERE signal_id = ANY(%s)",
        mine,
    )
    assert sorted(stored) == sorted(model.trades)
    assert open_now == {s: _EXACT.subtract(e, x) for s, (e, x) in model.open.items()}
    assert differences(pg_dsn) == []


def test_migration_0006_gives_history_the_allocations_the_ledger_made(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Two recorders, cycles opened and closed in turn, closes spanning several cycles, an
    own exit beyond what a close left: the backfill's rows are the ledger's own."""
    for instance in ("one", "two"):
        config = RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / instance, instance_name=instance)
        ledger = started(config)
        a, b = entered(ledger, "10"), entered(ledger, "4")
        closed_by_other(ledger, "12", f"{instance}-C1")  # a's 10, b's 2
        entered(ledger, "5")
        own = make_order(b, side="SELL", quantity_ordered=Decimal(7))
        ledger.record_order(own)
        ledger.record_fill(make_fill(own, "7", "0.7"))  # b's 2 left, 5 excess
        again = make_order(a, quantity_ordered=Decimal(3))  # a entered again
        ledger.record_order(again)
        ledger.record_fill(make_fill(again, "3", "0.5"))
        closed_by_other(ledger, "6", f"{instance}-C2")  # the third's 5, a's 1
        assert ledger.close(timeout=30)
    made = allocations(pg_dsn)
    assert len(made) == 8
    as_before_migration_0006(pg_dsn)
    assert allocations(pg_dsn) == made
    assert differences(pg_dsn) == []


# -- outside review of the allocations (regressions that pass) ---------------------------


def test_a_close_spans_a_recovered_cycle_and_one_opened_after_the_restart(
    pg_dsn: str, tmp_path: Path
) -> None:
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    older = entered(first, "10").signal_id
    assert first.close(timeout=30)

    second = started(config)
    newer = entered(second, "10").signal_id
    close = make_order(side="SELL", quantity_ordered=Decimal(15))
    second.record_order(close)
    second.record_fill(make_fill(close, "15", "0.6", fill_id="SPAN"))
    assert second.close(timeout=30)
    assert allocations(pg_dsn) == [("SPAN", older, Decimal(10)), ("SPAN", newer, Decimal(5))]

    third = started(config)
    assert open_cycles(third) == {newer: Decimal(5)}
    assert third.close(timeout=30)
    assert rows(pg_dsn, "SELECT signal_id, quantity FROM trades") == [(older, Decimal(10))]
    assert differences(pg_dsn) == []


def test_a_signal_less_order_canceled_after_a_partial_fill_allocates_what_filled(
    pg_dsn: str, tmp_path: Path
) -> None:
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    signal = entered(first, "10").signal_id
    close = make_order(side="SELL", quantity_ordered=Decimal(10))
    first.record_order(close)
    # Commission 0.3 USD on 4: all of it is this cycle's (it took the whole fill).
    first.record_fill(make_fill(close, "4", "0.6", fill_id="PART", commission=Decimal("0.3")))
    first.record_fill(make_fill(close, "4", "0.6", fill_id="PART", commission=Decimal("0.3")))
    first.update_order(close.client_order_id, "CANCELED")
    assert first.stats()["duplicates_ignored"] == 1
    assert first.close(timeout=30)

    second = started(config)
    assert open_cycles(second) == {signal: Decimal(6)}
    rest = make_order(make_signal(signal_id=signal), side="SELL", quantity_ordered=Decimal(6))
    second.record_order(rest)
    second.record_fill(make_fill(rest, "6", "0.7", commission=Decimal("0.1")))
    assert second.close(timeout=30)
    assert allocations(pg_dsn) == [("PART", signal, Decimal(4))]
    # 10 in at 0.5 (5.0); out 4 at 0.6 and 6 at 0.7 (2.4 + 4.2 = 6.6); fees 0.4.
    assert rows(
        pg_dsn,
        "SELECT quantity, average_exit_price, total_commission, realized_pnl FROM trades",
    ) == [(Decimal(10), Decimal("0.66"), Decimal("0.4"), Decimal("1.2"))]
    assert differences(pg_dsn) == []


def test_a_signal_less_fill_shared_at_the_numeric_extremes(ledger: Ledger, pg_dsn: str) -> None:
    tiny, huge = Decimal("1e-18"), Decimal("12345678901234567.123456789012345678")
    first = entered(ledger, f"{tiny:f}", "2.5").signal_id
    second = entered(ledger, f"{huge:f}", "0.5").signal_id
    total = _EXACT.add(tiny, huge)  # 12345678901234567.123456789012345679: 35 digits
    close = make_order(side="SELL", quantity_ordered=total)
    ledger.record_order(close)
    ledger.record_fill(make_fill(close, f"{total:f}", "0.6", fill_id="X", commission=Decimal(7)))
    assert ledger.flush(timeout=30)
    assert allocations(pg_dsn) == [("X", second, huge), ("X", first, tiny)]
    # The commission shared pro rata, each share rounded half-even to 18 decimals at the
    # close: the tiny part's share (7e-18 / 1.2e16) rounds to nothing.
    big = _EXACT.divide(_EXACT.multiply(Decimal(7), huge), total)
    want = {
        first: (tiny, Decimal(0), Decimal("-0.000000000000000002")),  # -1.9e-18, half-even
        second: (
            huge,
            big.quantize(_SCALE, context=_EXACT),
            _EXACT.subtract(_EXACT.multiply(Decimal("0.1"), huge), big).quantize(
                _SCALE, context=_EXACT
            ),
        ),
    }
    got = rows(pg_dsn, "SELECT signal_id, quantity, total_commission, realized_pnl FROM trades")
    assert {sid: (q, c, p) for sid, q, c, p in got} == want
    assert differences(pg_dsn) == []


def test_two_recorders_on_one_database_each_close_their_own_cycles(
    pg_dsn: str, tmp_path: Path
) -> None:
    one, two = quick_config(pg_dsn, tmp_path / "one"), quick_config(pg_dsn, tmp_path / "two")
    assert one.instance_name != two.instance_name
    first, second = started(one), started(two)
    mine = entered(first, "10").signal_id  # older, first's
    theirs = entered(second, "10").signal_id  # newer, second's
    close = make_order(side="SELL", quantity_ordered=Decimal(4))
    first.record_order(close)
    first.record_fill(make_fill(close, "4", "0.6", fill_id="ONE"))
    close = make_order(side="SELL", quantity_ordered=Decimal(10))
    second.record_order(close)
    second.record_fill(make_fill(close, "10", "0.6", fill_id="TWO"))
    assert first.close(timeout=30)
    assert second.close(timeout=30)
    # Each took its own cycle, although the other's was older (first's close) or open.
    # (The two recorders commit in either order.)
    assert sorted(allocations(pg_dsn)) == [("ONE", mine, Decimal(4)), ("TWO", theirs, Decimal(10))]
    assert rows(pg_dsn, "SELECT signal_id FROM trades") == [(theirs,)]

    first, second = started(one), started(two)
    assert (open_cycles(first), open_cycles(second)) == ({mine: Decimal(6)}, {})
    assert first.close(timeout=30)
    assert second.close(timeout=30)
    assert differences(pg_dsn) == []


def test_the_verify_command_names_an_allocation_that_went_missing(
    ledger: Ledger, pg_dsn: str, tmp_path: Path
) -> None:
    signal = entered(ledger, "10").signal_id
    close = make_order(side="SELL", quantity_ordered=Decimal(10))
    ledger.record_order(close)
    ledger.record_fill(make_fill(close, "10", "0.6", fill_id="GONE"))
    assert ledger.flush(timeout=30)
    command = [str(Path(sys.executable).with_name("galfriday-recorder")), "verify"]
    env = {**os.environ, "GALFRIDAY_DATA_DIR": str(tmp_path / "cli")}
    clean = subprocess.run([*command, "--pg-dsn", pg_dsn], env=env, capture_output=True, text=True)
    assert (clean.returncode, clean.stdout.splitlines()[-1].split(": ", 1)[-1]) == (
        0,
        "0 difference(s) between trades and fills",
    )
    rows(pg_dsn, "DELETE FROM fill_allocations RETURNING 1")
    done = subprocess.run([*command, "--pg-dsn", pg_dsn], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert f"allocation of fill kraken:GONE (signal {signal}): the rule takes 10, stored 0" in (
        done.stdout
    )


def test_a_signal_less_fill_sent_again_after_a_restart_is_ignored(
    pg_dsn: str, tmp_path: Path
) -> None:
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    signal = entered(first, "10").signal_id
    close = make_order(side="SELL", quantity_ordered=Decimal(10))  # stays open: 4 of 10
    first.record_order(close)
    again = make_fill(close, "4", "0.6", fill_id="AGAIN")
    first.record_fill(again)
    assert first.close(timeout=30)

    second = started(config)
    second.record_fill(again)  # the exchange's report, re-sent: already applied
    second.record_fill(make_fill(close, "6", "0.6", fill_id="REST"))
    assert second.stats()["duplicates_ignored"] == 1
    assert second.close(timeout=30)
    assert allocations(pg_dsn) == [("AGAIN", signal, Decimal(4)), ("REST", signal, Decimal(6))]
    assert rows(pg_dsn, "SELECT signal_id, quantity FROM trades") == [(signal, Decimal(10))]
    assert rows(pg_dsn, "SELECT status FROM orders WHERE signal_id IS NULL") == [("FILLED",)]
    assert differences(pg_dsn) == []


def test_a_journal_replay_gives_a_cycle_its_parts_where_they_came(
    pg_service: PostgresService | None, pg_dsn: str, tmp_path: Path
) -> None:
    """Journaled, never committed (PostgreSQL stopped mid-session): entry 10, a close of 4,
    the signal's own exit of 10 (6 of it closes the cycle), a re-entry of 3. A replay
    that gave the close's part to the cycle later would close the re-entry with it."""
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    pg_service.stop()
    try:
        signal = entered(first, "10")
        closed_by_other(first, "4", "C-4")
        exit_ = make_order(signal, side="SELL", quantity_ordered=Decimal(10))
        first.record_order(exit_)
        first.record_fill(make_fill(exit_, "10", "0.7"))
        again = make_order(signal, quantity_ordered=Decimal(3))
        first.record_order(again)
        first.record_fill(make_fill(again, "3", "0.5"))
        assert first.wait_journaled(timeout=30)
        assert not first.close(timeout=1)
    finally:
        pg_service.start()
    second = started(config)
    closed_by_other(second, "3", "C-3")  # the re-entry is the cycle open
    assert second.close(timeout=30)
    assert sorted(rows(pg_dsn, "SELECT quantity FROM trades")) == [(Decimal(3),), (Decimal(10),)]
    assert allocations(pg_dsn) == [
        ("C-4", signal.signal_id, Decimal(4)),
        ("C-3", signal.signal_id, Decimal(3)),
    ]
    assert differences(pg_dsn) == []
