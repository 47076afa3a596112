"""An outside review of ``signals.untraded_quantity`` (migration 0007) and of the start
that reads and corrects it (``recovery.read_start``).

Every check compares the column with an independent recomputation from the stored
rows: the signal's entry fills (its orders' fills on its side) less the trades in
``trades`` that the bot did not record itself (the test knows which it recorded).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import replace
from decimal import Decimal, localcontext
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledgerkit import (
    as_before_migration_0007,
    closed_by_other,
    differences,
    make_fill,
    make_order,
    make_signal,
    make_trade,
    rows,
    started,
)
from psycopg import sql

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.errors import ValidationError
from galfriday_recorder.ledger import STATEMENTS, Bulk, Ledger, encode_event
from galfriday_recorder.ledger.cycles import trade_id_for
from galfriday_recorder.records import Signal, Trade

# A recording process that starts (and so corrects), flushes and closes; the parent
# arms GALFRIDAY_LEDGER_FAULT to kill it at a writer step instead.
_CHILD = """
import sys
from pathlib import Path
from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.errors import ValidationError
from galfriday_recorder.ledger import Ledger
ledger = Ledger(RecorderConfig(pg_dsn=sys.argv[1], data_dir=Path(sys.argv[2]),
                               instance_name=sys.argv[3], commit_interval_ms=1.0))
ledger.start()
sys.exit(0 if ledger.close(timeout=60) else 3)
"""


def _config(dsn: str, data: Path, instance: str = "rec-a") -> RecorderConfig:
    return RecorderConfig(pg_dsn=dsn, data_dir=data, instance_name=instance, commit_interval_ms=2.0)


def _untraded(dsn: str, signal_id: uuid.UUID) -> Decimal:
    [(value,)] = rows(dsn, "SELECT untraded_quantity FROM signals WHERE signal_id = %s", signal_id)
    return Decimal(value)


def _expected(dsn: str, signal_id: uuid.UUID, bot_trades: set[uuid.UUID]) -> Decimal:
    """Entry fills less the trades the bot did not record, summed by PostgreSQL."""
    [(value,)] = rows(
        dsn,
        "SELECT (SELECT COALESCE(sum(f.quantity_filled), 0) FROM fills f JOIN orders o "
        "USING (order_pk) JOIN signals s ON s.signal_id = o.signal_id "
        "WHERE o.signal_id = %s AND f.side = s.side) - (SELECT COALESCE(sum(quantity), 0) "
        "FROM trades WHERE signal_id = %s AND NOT trade_id = ANY(%s))",
        signal_id,
        signal_id,
        list(bot_trades),
    )
    return Decimal(value)


def _bot_trade(sig: Signal, qty: str, **kw: object) -> Trade:
    return make_trade(sig, quantity=Decimal(qty), **kw)


def _enter(ledger: Ledger, sig: Signal, qty: str, price: str = "0.5") -> str:
    """One entry order of ``sig`` filled at once; returns the fill id."""
    entry = make_order(sig, quantity_ordered=Decimal(qty))
    ledger.record_order(entry)
    fill = make_fill(entry, qty, price)
    ledger.record_fill(fill)
    return fill.fill_id


def _exit(ledger: Ledger, sig: Signal, qty: str, price: str = "0.6") -> None:
    side = "SELL" if sig.side == "BUY" else "BUY"
    close = make_order(sig, side=side, order_type="TAKE_PROFIT", quantity_ordered=Decimal(qty))
    ledger.record_order(close)
    ledger.record_fill(make_fill(close, qty, price))


def _open_cycles(config: RecorderConfig) -> dict[uuid.UUID, Decimal]:
    ledger = started(config)
    try:
        return {c.signal_id: c.open_quantity for c in ledger.load_recovery_state().open_cycles}
    finally:
        assert ledger.close(timeout=30)


def _history_with_bot_trade(
    config: RecorderConfig, entry: str, bot_qty: str
) -> tuple[Signal, set[uuid.UUID]]:
    """A signal with one open cycle of ``entry`` and a trade of ``bot_qty`` the bot
    recorded itself, then migration 0007 run on that history (its backfill knows no
    trade as derived)."""
    ledger = started(config)
    sig = make_signal()
    ledger.record_signal(sig)
    _enter(ledger, sig, entry)
    bot = _bot_trade(sig, bot_qty)
    ledger.record_trade(bot)
    assert ledger.close(timeout=30)
    as_before_migration_0007(config.pg_dsn)
    return sig, {bot.trade_id}


@pytest.mark.parametrize("bot_qty", ["4", "25"])  # below, above the entries
def test_a_start_corrects_backfilled_history_to_the_independent_sum(
    pg_dsn: str, tmp_path: Path, bot_qty: str
) -> None:
    config = _config(pg_dsn, tmp_path / "a")
    sig, bot = _history_with_bot_trade(config, "10", bot_qty)
    assert _untraded(pg_dsn, sig.signal_id) == 10  # the backfill counts every entry
    assert _open_cycles(config) == {sig.signal_id: Decimal(10)}
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, bot) == 10
    assert _open_cycles(config) == {sig.signal_id: Decimal(10)}  # a second start: no change
    assert _untraded(pg_dsn, sig.signal_id) == 10


@pytest.mark.parametrize(
    ("entry", "bot_qty"),
    [
        ("12345678901234567.123456789012345678", "0.000000000000000001"),
        ("0.000000000000000003", "0.000000000000000001"),
        ("99999999999999999.999999999999999999", "99999999999999999.999999999999999998"),
    ],
)
def test_a_correction_at_numeric_extremes_is_exact(
    pg_dsn: str, tmp_path: Path, entry: str, bot_qty: str
) -> None:
    config = _config(pg_dsn, tmp_path / "a")
    sig, bot = _history_with_bot_trade(config, entry, bot_qty)
    assert _open_cycles(config) == {sig.signal_id: Decimal(entry)}
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, bot)
    assert _untraded(pg_dsn, sig.signal_id) == Decimal(entry)


def test_the_backfill_does_not_hide_an_open_cycle_when_bot_trades_equal_the_entries(
    pg_dsn: str, tmp_path: Path
) -> None:
    config = _config(pg_dsn, tmp_path / "a")
    ledger = started(config)
    sig = make_signal()
    ledger.record_signal(sig)
    _enter(ledger, sig, "10")
    _exit(ledger, sig, "10")  # cycle 1 closed: a derived trade of 10
    bot = _bot_trade(sig, "10")  # and the bot's own record of that cycle
    ledger.record_trade(bot)
    _enter(ledger, sig, "10")  # cycle 2, open
    assert ledger.close(timeout=30)
    assert _untraded(pg_dsn, sig.signal_id) == 10  # right before the migration reruns
    as_before_migration_0007(pg_dsn)
    assert _open_cycles(config) == {sig.signal_id: Decimal(10)}
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, {bot.trade_id})


def _run_child(dsn: str, data: Path, instance: str, fault: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "GALFRIDAY_LEDGER_FAULT"}
    if fault is not None:
        env["GALFRIDAY_LEDGER_FAULT"] = fault
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, dsn, str(data), instance],
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode


def _history_needing_a_repair(config: RecorderConfig) -> tuple[Signal, set[uuid.UUID]]:
    """Before migration 0007: a cycle of 10 closed (its trade derived), a trade of 4 the
    bot recorded itself, a second cycle of 10 open. The backfill counts 20 untraded; the
    truth is 10, which only a start can tell (it derives the first trade)."""
    ledger = started(config)
    sig = make_signal()
    ledger.record_signal(sig)
    _enter(ledger, sig, "10")
    _exit(ledger, sig, "10")
    bot = _bot_trade(sig, "4")
    ledger.record_trade(bot)
    _enter(ledger, sig, "10")
    assert ledger.close(timeout=30)
    as_before_migration_0007(config.pg_dsn)
    return sig, {bot.trade_id}


@pytest.mark.faults
@pytest.mark.parametrize("fault", ["commit:1", "committed:1"])
def test_a_start_killed_around_its_repair_repairs_once(
    pg_dsn: str, tmp_path: Path, fault: str
) -> None:
    """Killed before the repair commits (it is journaled), or after (it is still in the
    journal): the next start replays it, and may make it again; the column ends right."""
    config = _config(pg_dsn, tmp_path / "a")
    sig, bot = _history_needing_a_repair(config)
    assert _untraded(pg_dsn, sig.signal_id) == 20
    assert _run_child(pg_dsn, tmp_path / "a", "rec-a", fault) == -signal.SIGKILL
    assert _untraded(pg_dsn, sig.signal_id) == (20 if fault == "commit:1" else 10)
    assert _open_cycles(config) == {sig.signal_id: Decimal(10)}
    assert _open_cycles(config) == {sig.signal_id: Decimal(10)}  # and again
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, bot) == 10
    assert rows(pg_dsn, "SELECT quantity, derived FROM trades ORDER BY quantity") == [
        (Decimal(4), False),
        (Decimal(10), True),
    ]
    assert differences(pg_dsn) == [
        f"extra trade {next(iter(bot))} (signal {sig.signal_id}): no stored fills derive it"
    ]


def test_a_start_without_postgresql_corrects_once_it_is_back(
    pg_dsn: str, pg_admin_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL away at the start (the database renamed), a held exit meanwhile, then
    back: the late correction and the held exit's trade both count, once."""
    config = _config(pg_dsn, tmp_path / "a")
    sig, bot = _history_with_bot_trade(config, "10", "4")
    name = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    assert isinstance(name, str)
    away = f"{name}_away"

    def rename(old: str, new: str) -> None:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(old), sql.Identifier(new)
                )
            )

    rename(name, away)
    ledger = Ledger(config)
    try:
        ledger.start()
        assert "ledger state not loaded from PostgreSQL yet" in caplog.text
        _exit(ledger, sig, "10")
        assert ledger.wait_journaled(timeout=30)
    finally:
        rename(away, name)
    assert ledger.close(timeout=60)
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, bot) == 0
    assert rows(pg_dsn, "SELECT count(*) FROM trades WHERE signal_id = %s", sig.signal_id) == [(2,)]
    assert _open_cycles(config) == {}


def test_two_recorders_starting_together_correct_a_shared_signal_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    config_a = _config(pg_dsn, tmp_path / "a", "rec-a")
    config_b = _config(pg_dsn, tmp_path / "b", "rec-b")
    sig, bot = _history_with_bot_trade(config_a, "10", "4")
    rows(pg_dsn, "UPDATE signals SET recorder_instance = NULL RETURNING 1")
    rows(pg_dsn, "UPDATE orders SET recorder_instance = NULL RETURNING 1")
    first, second = Ledger(config_a), Ledger(config_b)
    # A row lock held elsewhere keeps the first start's correction from committing
    # until the second start has read: the order two real processes may meet.
    with psycopg.connect(pg_dsn) as blocker:
        blocker.execute("SELECT 1 FROM signals WHERE signal_id = %s FOR UPDATE", (sig.signal_id,))
        first.start()
        second.start()
    assert first.close(timeout=30)
    assert second.close(timeout=30)
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, bot) == 10


def _bot_trade_under_the_derived_id(config: RecorderConfig, *, reenter: bool = False) -> Signal:
    """A cycle of 10 the bot records itself, first, under the id the ledger derives (then,
    if ``reenter``, a second cycle of 10 left open)."""
    ledger = started(config)
    sig = make_signal()
    ledger.record_signal(sig)
    first_fill = _enter(ledger, sig, "10")
    derived_id = trade_id_for(sig.signal_id, f"kraken:{first_fill}")
    ledger.record_trade(_bot_trade(sig, "10", trade_id=derived_id))
    assert ledger.flush(timeout=30)
    _exit(ledger, sig, "10")
    if reenter:
        _enter(ledger, sig, "10")
    assert ledger.close(timeout=30)
    return sig


def test_a_bot_trade_with_the_derived_id_is_corrected_at_the_next_start(
    pg_dsn: str, tmp_path: Path
) -> None:
    config = _config(pg_dsn, tmp_path / "a")
    sig = _bot_trade_under_the_derived_id(config)
    assert _open_cycles(config) == {}
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, set()) == 0
    assert differences(pg_dsn) == []


def test_a_bot_trade_with_the_derived_id_leaves_the_column_right_at_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    sig = _bot_trade_under_the_derived_id(_config(pg_dsn, tmp_path / "a"))
    assert _untraded(pg_dsn, sig.signal_id) == 0
    assert differences(pg_dsn) == []


def test_reentries_excess_exits_and_duplicate_fills_keep_the_column_exact(
    pg_dsn: str, tmp_path: Path
) -> None:
    config = _config(pg_dsn, tmp_path / "a")
    ledger = started(config)
    sig = make_signal()
    ledger.record_signal(sig)
    entry = make_order(sig, quantity_ordered=Decimal("7"))
    ledger.record_order(entry)
    fill = make_fill(entry, "3", "0.5")
    ledger.record_fill(fill)
    ledger.record_fill(replace(fill))  # the same fill again (refused or ignored)
    ledger.record_fill(make_fill(entry, "4", "0.5"))
    _exit(ledger, sig, "9")  # 2 more than the cycle holds
    _enter(ledger, sig, "5")  # re-entered after the close
    _exit(ledger, sig, "2")  # a partial exit: no trade yet, all 5 untraded
    assert ledger.close(timeout=30)
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, set()) == 5
    assert _open_cycles(config) == {sig.signal_id: Decimal(3)}
    assert _untraded(pg_dsn, sig.signal_id) == 5


def test_a_bot_trade_recorded_now_does_not_hide_an_open_cycle(pg_dsn: str, tmp_path: Path) -> None:
    config = _config(pg_dsn, tmp_path / "a")
    ledger = started(config)
    sig = make_signal()
    ledger.record_signal(sig)
    _enter(ledger, sig, "10")
    bot = _bot_trade(sig, "10")
    ledger.record_trade(bot)
    assert ledger.close(timeout=30)
    assert _open_cycles(config) == {sig.signal_id: Decimal(10)}
    assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, {bot.trade_id})
    assert differences(pg_dsn) == [
        f"extra trade {bot.trade_id} (signal {sig.signal_id}): no stored fills derive it"
    ]


def test_cycles_closed_by_signal_less_fills_across_a_restart(pg_dsn: str, tmp_path: Path) -> None:
    config = _config(pg_dsn, tmp_path / "a")
    ledger = started(config)
    older, newer = make_signal(), make_signal()
    for sig in (older, newer):
        ledger.record_signal(sig)
        _enter(ledger, sig, "6")
    closed_by_other(ledger, "8", "C-1")  # older closed, newer 2 of 6 out
    assert ledger.close(timeout=30)
    assert _open_cycles(config) == {newer.signal_id: Decimal(4)}
    again = started(config)
    closed_by_other(again, "4", "C-2")
    assert again.close(timeout=30)
    for sig in (older, newer):
        assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, set()) == 0
    assert _open_cycles(config) == {}
    assert differences(pg_dsn) == []


# Two entries of 6e19 each fit NUMERIC(38,18); their cycle's trade (1.2e20) does not.
_BIG = "60000000000000000000"


def _cycle_beyond_numeric(config: RecorderConfig) -> tuple[Signal, bool]:
    """A signal entered twice by ``_BIG`` and closed by two exits of ``_BIG``; whether the
    closing ``record_fill`` raised."""
    ledger = started(config)
    sig = make_signal()
    ledger.record_signal(sig)
    _enter(ledger, sig, _BIG, "0.000000000000000001")
    _enter(ledger, sig, _BIG, "0.000000000000000001")
    _exit(ledger, sig, _BIG, "0.000000000000000002")
    raised = False
    try:
        _exit(ledger, sig, _BIG, "0.000000000000000002")
    except ValidationError:
        raised = True
    assert ledger.close(timeout=30)
    return sig, raised


def test_a_cycle_beyond_numeric_is_said_and_does_not_stop_a_start(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Its closing fill is accepted and stored like the others; the trade no row can hold
    is a system_logs warning, and at every start a candidate that derives nothing."""
    config = _config(pg_dsn, tmp_path / "a")
    sig, raised = _cycle_beyond_numeric(config)
    assert not raised
    stored = rows(
        pg_dsn,
        "SELECT count(*) FROM fills f JOIN orders o USING (order_pk) WHERE o.signal_id = %s",
        sig.signal_id,
    )
    assert stored == [(4,)]
    [(message,)] = rows(
        pg_dsn, "SELECT message FROM system_logs WHERE signal_id = %s", sig.signal_id
    )
    assert "cannot be stored" in message
    assert "quantity" in message
    assert rows(pg_dsn, "SELECT count(*) FROM trades") == [(0,)]
    assert _open_cycles(config) == {}
    assert _open_cycles(config) == {}
    assert [d.split(" (signal")[0] for d in differences(pg_dsn)] == [
        f"unstorable trade of signal {sig.signal_id}"
    ]


# Quantities weighted toward the extremes (1e-18, 35 significant digits) that keep a
# cycle's sums inside NUMERIC(38,18).
_QTY = st.sampled_from(
    [
        "0.000000000000000001",
        "3",
        "7.5",
        "12345678901234567.123456789012345678",
        "1000000000000000",
    ]
)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), st.integers(0, 2), _QTY),
        st.tuples(st.just("exit"), st.integers(0, 2), _QTY),
        st.tuples(st.just("other"), st.just(0), _QTY),
        st.tuples(st.just("bot"), st.integers(0, 2), _QTY),
        st.tuples(st.just("restart"), st.just(0), st.just("0")),
    ),
    min_size=1,
    max_size=14,
)


class _Model:
    """Open quantity and untraded entries per signal by plain arithmetic (at 80 digits:
    run inside a wide ``localcontext``); cycles open in the order they opened (the order
    a signal-less fill reduces them in)."""

    def __init__(self, count: int) -> None:
        self.open = [Decimal(0)] * count
        self.untraded = [Decimal(0)] * count
        self.order: list[int] = []

    def enter(self, i: int, qty: Decimal) -> None:
        if self.open[i] == 0:
            self.order.append(i)
        self.open[i] += qty
        self.untraded[i] += qty

    def reduce(self, i: int, qty: Decimal) -> Decimal:
        taken = min(qty, self.open[i])
        self.open[i] -= taken
        if self.open[i] == 0 and taken:
            self.untraded[i] = Decimal(0)
            self.order.remove(i)
        return taken

    def other(self, qty: Decimal) -> None:
        for i in list(self.order):
            qty -= self.reduce(i, qty)
            if qty == 0:
                break


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=_OPS)
def test_any_session_with_restarts_keeps_the_column_equal_to_plain_arithmetic(
    pg_dsn: str, tmp_path: Path, ops: list[tuple[str, int, str]]
) -> None:
    config = _config(pg_dsn, tmp_path / uuid.uuid4().hex, uuid.uuid4().hex[:12])
    pair = f"P{uuid.uuid4().hex[:6]}/USD"  # a pair of this example's own
    sigs = [make_signal(trading_pair=pair) for _ in range(3)]
    model, bot = _Model(len(sigs)), set[uuid.UUID]()
    with localcontext() as ctx:
        ctx.prec = 80
        _run_session(pg_dsn, config, sigs, ops, model, bot)


def _run_session(
    pg_dsn: str,
    config: RecorderConfig,
    sigs: list[Signal],
    ops: list[tuple[str, int, str]],
    model: _Model,
    bot: set[uuid.UUID],
) -> None:
    pair = sigs[0].trading_pair
    ledger = started(config)
    for sig in sigs:
        ledger.record_signal(sig)
    for n, (kind, i, qty) in enumerate(ops):
        if kind == "enter":
            _enter(ledger, sigs[i], qty)
            model.enter(i, Decimal(qty))
        elif kind == "exit":
            _exit(ledger, sigs[i], qty)
            model.reduce(i, Decimal(qty))
        elif kind == "other":
            close = make_order(side="SELL", trading_pair=pair, quantity_ordered=Decimal(qty))
            ledger.record_order(close)
            ledger.record_fill(make_fill(close, qty, "0.6", fill_id=f"O-{n}-{pair}"))
            model.other(Decimal(qty))
        elif kind == "bot":
            trade = _bot_trade(sigs[i], qty)
            ledger.record_trade(trade)
            bot.add(trade.trade_id)
        else:
            assert ledger.close(timeout=30)
            ledger = started(config)
            recovered = {
                c.signal_id: c.open_quantity for c in ledger.load_recovery_state().open_cycles
            }
            assert recovered == {
                s.signal_id: model.open[k] for k, s in enumerate(sigs) if model.open[k]
            }
    assert ledger.close(timeout=30)
    for k, sig in enumerate(sigs):
        assert _untraded(pg_dsn, sig.signal_id) == _expected(pg_dsn, sig.signal_id, bot)
        assert _untraded(pg_dsn, sig.signal_id) == model.untraded[k]
    assert _open_cycles(config) == {
        s.signal_id: model.open[k] for k, s in enumerate(sigs) if model.open[k]
    }
    found = [d for d in differences(pg_dsn) if not d.startswith("extra trade")]
    assert found == []


def test_one_derived_trade_twice_in_a_group_is_written_once(ledger: Ledger, pg_dsn: str) -> None:
    """A start's re-derived trade and the same trade from elsewhere (a held fill's
    resolution) may meet in one group: one row, its entries taken off once, and again
    nothing on a replay."""
    sig = make_signal()
    ledger.record_signal(sig)
    first_fill = _enter(ledger, sig, "10")
    assert ledger.flush(timeout=30)
    trade = _bot_trade(sig, "10", trade_id=trade_id_for(sig.signal_id, f"kraken:{first_fill}"))
    _kind, payload = encode_event("derived_trade", trade)
    statement = STATEMENTS["derived_trade"]
    assert isinstance(statement, Bulk)
    with psycopg.connect(pg_dsn) as conn:
        for group in ([(1, payload), (2, payload)], [(3, payload)]):  # then a replay
            with conn.transaction():
                conn.execute(statement.sql, statement.params(group, "rec-a"))
    assert rows(pg_dsn, "SELECT trade_id, derived FROM trades") == [(trade.trade_id, True)]
    assert _untraded(pg_dsn, sig.signal_id) == 0
