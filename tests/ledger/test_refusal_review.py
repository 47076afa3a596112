"""Outside review: a group PostgreSQL refuses, settled in halves under savepoints.

Each test tries to make the settling lose, double or wrongly dead-letter an event, or
stall: a kill while a refused group is being settled (the ``settled`` fault step),
events that depend on each other across the halves (an order and its updates, a signal
and its verdict, fills and the trade they close), a refusal in the same group as a
conflict a retry resolves, the connection lost mid-settling, a group of which every
event is refused, a snapshot that replaces another, a refusal PostgreSQL says only at
the commit (a deferred constraint), a group refused only as a whole, and two refused
events under one journal seq. Everything is checked in PostgreSQL and in the journal
file, against what the script recorded.

Run as a script, this file is the recording process of the kill test (see ``_child``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal as signals
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from ledgerkit import T0, UNREACHABLE, make_fill, make_order, make_signal, make_snapshot, rows

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.journal import expand
from galfriday_recorder.ledger.state import SOURCE
from galfriday_recorder.ledger.verify import verify
from galfriday_recorder.records import Fill, LogEntry, Order, PortfolioSnapshot, Signal

NS = uuid.UUID("5f0c2d3e-8a41-4e7b-9c55-0d9e6b1a7f42")
TAG = "refusal-review"  # source_module of the script's own logs
LIVES = 10
Step = Callable[[Ledger], None]
Letter = tuple[str, str]  # (kind, key) of a dead letter


def _uid(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NS, ":".join(str(p) for p in parts))


@dataclasses.dataclass(frozen=True)
class Life:
    """One signal's whole cycle, with two logs and a snapshot. A ``poison`` signal is
    refused by the trigger on signals (and so its orders, fills and trade by their
    foreign keys); a ``killer`` one makes the trigger end its own connection."""

    index: int
    strategy: str
    refused_log: bool

    @property
    def poisoned(self) -> bool:
        return self.strategy == "poison"

    @property
    def signal(self) -> Signal:
        return make_signal(signal_id=_uid("s", self.index), strategy_id=self.strategy)

    @property
    def entry(self) -> Order:
        return make_order(
            self.signal, client_order_id=_uid("e", self.index), quantity_ordered=Decimal(10)
        )

    @property
    def exit(self) -> Order:
        return make_order(
            self.signal,
            client_order_id=_uid("x", self.index),
            side="SELL",
            order_type="TAKE_PROFIT",
            quantity_ordered=Decimal(10),
            limit_price=Decimal("0.6"),
        )

    @property
    def fills(self) -> tuple[Fill, Fill, Fill]:
        i = self.index
        return (
            make_fill(self.entry, "4", "0.5", fill_id=f"E{i}a"),
            make_fill(self.entry, "6", "0.5", fill_id=f"E{i}b"),
            make_fill(self.exit, "10", "0.6", fill_id=f"X{i}"),
        )

    @property
    def logs(self) -> tuple[str, str]:
        last = f"refuse-me:{self.index}" if self.refused_log else f"kept:{self.index}"
        return f"first:{self.index}", last

    @property
    def instant(self) -> Any:
        return T0 + timedelta(seconds=self.index)

    def steps(self) -> list[Step]:
        signal, entry, exit_, fills, logs = (
            self.signal,
            self.entry,
            self.exit,
            self.fills,
            self.logs,
        )
        sid, cid = signal.signal_id, entry.client_order_id
        snapshot = make_snapshot(snapshot_timestamp=self.instant, total_equity=10_000 + self.index)

        def log(message: str) -> Step:
            return lambda ledger: ledger.record_log(
                LogEntry(source_module=TAG, log_level="INFO", message=message)
            )

        return [
            lambda ledger: ledger.record_signal(signal),
            log(logs[0]),
            lambda ledger: ledger.record_order(entry),
            lambda ledger: ledger.update_order(
                cid, "NEW", exchange_order_id=f"XO-{self.index}", submitted_at=T0
            ),
            lambda ledger: ledger.record_fill(fills[0]),
            lambda ledger: ledger.update_signal_status(sid, "APPROVED"),
            lambda ledger: ledger.record_fill(fills[1]),
            lambda ledger: ledger.record_portfolio_snapshot(snapshot),
            lambda ledger: ledger.record_order(exit_),
            lambda ledger: ledger.record_fill(fills[2]),  # closes the cycle: fill and trade
            log(logs[1]),
        ]

    def letters(self) -> list[Letter]:
        """What the journal must keep as dead letters of this life."""
        out: list[Letter] = [("log", self.logs[1])] if self.refused_log else []
        if self.poisoned:
            sid = str(self.signal.signal_id)
            out += [("signal", sid), ("derived_trade", sid)]
            out += [("order", str(o.client_order_id)) for o in (self.entry, self.exit)]
            out += [("fill", f.fill_id) for f in self.fills]
        return out


def lives(
    poisoned: frozenset[int], refused_logs: frozenset[int] = frozenset(), killer: int = -1
) -> list[Life]:
    def strategy(i: int) -> str:
        return "poison" if i in poisoned else "killer" if i == killer else "s"

    return [Life(i, strategy(i), i in refused_logs) for i in range(LIVES)]


def interleaved(group: list[Life]) -> list[Step]:
    """The lives' steps, life i starting one round after life i-1: wherever a group is cut
    in halves, some life has an insert on one side and its update, fill or trade on the
    other."""
    queues = [life.steps() for life in group]
    width = len(queues[0])
    return [
        queues[i][r - i]
        for r in range(len(queues) + width - 1)
        for i in range(len(queues))
        if 0 <= r - i < width
    ]


def signal_step(signal: Signal) -> Step:
    return lambda ledger: ledger.record_signal(signal)


def snapshot_step(snapshot: PortfolioSnapshot) -> Step:
    return lambda ledger: ledger.record_portfolio_snapshot(snapshot)


# -- PostgreSQL side ---------------------------------------------------------------------


def _trigger(dsn: str, table: str, body: str, name: str) -> None:
    """A BEFORE INSERT row trigger on ``table`` running ``body`` (sequence ``tries`` at hand)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS tries")
        conn.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} RETURN NEW; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
        )


POISON_SIGNALS = (
    "IF NEW.strategy_id = 'poison' THEN RAISE 'poisoned signal %', NEW.signal_id; END IF;"
)
REFUSED_LOGS = "IF NEW.message LIKE 'refuse-me%' THEN RAISE 'refused log'; END IF;"


def _guards(dsn: str, signal_extra: str = "") -> None:
    _trigger(dsn, "signals", POISON_SIGNALS + signal_extra, "guard_signals")
    _trigger(dsn, "system_logs", REFUSED_LOGS, "guard_logs")


def _tries(dsn: str) -> int:
    [(value, called)] = rows(dsn, "SELECT last_value, is_called FROM tries")
    return int(value) if called else 0


# -- journal side ------------------------------------------------------------------------


def _config(dsn: str, data: Path) -> RecorderConfig:
    return RecorderConfig(pg_dsn=dsn, data_dir=data, commit_interval_ms=2.0)


def _journal(data: Path) -> tuple[list[tuple[int, str, bytes]], list[tuple[int, str, bytes]]]:
    """(events still to commit, dead letters) as the journal file holds them."""
    path = _config(UNREACHABLE, data).journal_path
    with contextlib.closing(sqlite3.connect(path)) as db:
        events = db.execute("SELECT seq, kind, payload FROM events ORDER BY seq").fetchall()
        dead = db.execute("SELECT seq, kind, payload FROM dead_letters ORDER BY seq").fetchall()
    return events, dead


def journaled_offline(data: Path, steps: list[Step]) -> list[tuple[int, str, bytes]]:
    """Record ``steps`` with PostgreSQL unreachable and stop: the next start finds them all
    in its journal and sends them as one group (fewer than ``commit_max_events``)."""
    ledger = Ledger(_config(UNREACHABLE, data))
    ledger.start()
    try:
        for step in steps:
            step(ledger)
        assert ledger.wait_journaled(30)
    finally:
        ledger.close(timeout=0.1)
    events, dead = _journal(data)
    assert dead == []
    return events


def replayed(dsn: str, data: Path, timeout: float = 60.0) -> dict[str, int | float]:
    """Start on PostgreSQL over the journal ``data`` holds, flush, stop; the stats."""
    ledger = Ledger(_config(dsn, data))
    ledger.start()
    try:
        assert ledger.flush(timeout=timeout)
        return ledger.stats()
    finally:
        ledger.close(timeout=10)


def _key(kind: str, payload: bytes) -> str:
    event = orjson.loads(payload)
    field = {"signal": "signal_id", "derived_trade": "signal_id", "order": "client_order_id"}
    return str(event[{"fill": "fill_id", "log": "message"}.get(kind) or field.get(kind, "")])


def _index(events: list[tuple[int, str, bytes]], kind: str, key: str) -> int:
    [i] = [i for i, (_s, k, p) in enumerate(events) if k == kind and _key(k, p) == key]
    return i


# -- the check ---------------------------------------------------------------------------


def check_stored_once(dsn: str, data: Path, group: list[Life]) -> list[tuple[int, str, bytes]]:
    """Every event of a life not poisoned is stored once, as the script left it; every
    refused event is a dead letter once, with one system_logs row; nothing else is; the
    journal holds nothing more; the trades are what the fills derive. The dead letters."""
    good = [life for life in group if not life.poisoned]
    stored = rows(dsn, "SELECT signal_id, status, untraded_quantity FROM signals")
    assert sorted(stored) == sorted((life.signal.signal_id, "APPROVED", 0) for life in good)
    orders = rows(
        dsn, "SELECT client_order_id, status, quantity_filled, exchange_order_id FROM orders"
    )
    expected_orders: list[tuple[uuid.UUID, str | None]] = [
        (life.entry.client_order_id, f"XO-{life.index}") for life in good
    ]
    expected_orders += [(life.exit.client_order_id, None) for life in good]
    assert sorted(orders, key=str) == sorted(
        ((cid, "FILLED", 10, eid) for cid, eid in expected_orders), key=str
    )
    fills = rows(dsn, "SELECT fill_id FROM fills")
    assert sorted(f for (f,) in fills) == sorted(f.fill_id for life in good for f in life.fills)
    trades = rows(dsn, "SELECT signal_id, quantity, realized_pnl, derived FROM trades")
    assert sorted(trades) == sorted((life.signal.signal_id, 10, 1, True) for life in good)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert verify(conn) == []
    logged = rows(dsn, "SELECT message FROM system_logs WHERE source_module = %s", TAG)
    kept = [m for life in group for m in life.logs if not m.startswith("refuse-me")]
    assert sorted(m for (m,) in logged) == sorted(kept)
    snapshots = rows(dsn, "SELECT snapshot_timestamp, total_equity FROM portfolio_snapshots")
    assert sorted(snapshots) == sorted((life.instant, 10_000 + life.index) for life in group)

    events, dead = _journal(data)
    assert events == []
    assert sorted((kind, _key(kind, payload)) for _s, kind, payload in dead) == sorted(
        letter for life in group for letter in life.letters()
    )
    said = rows(
        dsn,
        "SELECT (context->>'journal_seq')::bigint, context->>'kind' FROM system_logs "
        "WHERE source_module = %s AND log_level = 'ERROR'",
        SOURCE,
    )
    assert sorted(said) == sorted((seq, kind) for seq, kind, _p in dead)
    return dead


# -- 1. a kill while a refused group is settled --------------------------------------------

CHILD_POISONED = frozenset({2, 7})
CHILD_REFUSED_LOGS = frozenset({4})


def _child(argv: list[str]) -> int:
    """``test_refusal_review.py DSN DATA_DIR record|resume``: ``record`` holds the signals
    table while it records the script (a backlog, in groups as the timing makes them),
    lets go and flushes; ``resume`` only flushes what the journal holds. The parent sets
    ``GALFRIDAY_LEDGER_FAULT`` to kill it at a writer step."""
    dsn, data, mode = argv[0], Path(argv[1]), argv[2]
    ledger = Ledger(_config(dsn, data))
    ledger.start()
    ok = ledger.flush(timeout=30)  # connected and state read, before the lock
    if mode == "record":
        with psycopg.connect(dsn) as blocker:
            blocker.execute("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
            for step in interleaved(lives(CHILD_POISONED, CHILD_REFUSED_LOGS)):
                step(ledger)
            ok = ledger.wait_journaled(30) and ok
    ok = ledger.flush(timeout=60) and ok
    ledger.close(timeout=10)
    return 0 if ok else 3


def _run_child(dsn: str, tmp: Path, mode: str, fault: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "GALFRIDAY_LEDGER_FAULT"}
    if fault is not None:
        env["GALFRIDAY_LEDGER_FAULT"] = fault
    args = [sys.executable, __file__, dsn, str(tmp / "data"), mode]
    done = subprocess.run(args, env=env, timeout=120, capture_output=True, text=True)
    assert done.returncode in (0, -signals.SIGKILL), done.stderr[-3000:]
    return done.returncode


@pytest.mark.faults
@pytest.mark.parametrize(
    ("backlog", "first", "second"),
    [
        ("lock", "settled:1", "settled:2"),  # the first part settled; again at the second
        ("lock", "settled:5", "committed:1"),  # then after a commit, before the forget
        ("offline", "settled:9", "committed:1"),
        ("offline", "settled:30", "settled:17"),  # near the end (about 35 parts settle)
    ],
)
def test_a_kill_while_a_refused_group_settles_loses_and_doubles_nothing(
    pg_dsn: str, tmp_path: Path, backlog: str, first: str, second: str
) -> None:
    """SIGKILL after a part of a refused group settled (its transaction open), a restart
    killed again (mid-settling, or after its commit before the journal forgets the group),
    a clean restart: each event stored once, each refused one dead-lettered once with one
    system_logs row, the trades what the fills derive. The backlog is recorded by the
    child holding the signals table (its groups as the timing makes them), or journaled
    beforehand with PostgreSQL away (one group of 120 events, so both kills land in it)."""
    _guards(pg_dsn)
    group = lives(CHILD_POISONED, CHILD_REFUSED_LOGS)
    data = tmp_path / "data"
    total = sum(len(life.steps()) + 1 for life in group)  # the closing fill's trade: a row
    if backlog == "lock":
        assert _run_child(pg_dsn, tmp_path, "record", first) == -signals.SIGKILL
        assert _journal(data)[0]  # the group being settled is still journaled
        _run_child(pg_dsn, tmp_path, "resume", second)  # killed again, unless it finished
    else:
        assert len(journaled_offline(data, interleaved(group))) == total
        for fault in (first, second):
            assert _run_child(pg_dsn, tmp_path, "resume", fault) == -signals.SIGKILL
            events, dead = _journal(data)
            assert (len(events), dead) == (total, [])  # nothing forgotten or dead-lettered
    assert _run_child(pg_dsn, tmp_path, "resume") == 0
    dead = check_stored_once(pg_dsn, data, group)
    assert len(dead) == sum(len(life.letters()) for life in group) == 2 * 7 + 1


# -- 2. dependencies across the halves -----------------------------------------------------


@pytest.mark.parametrize(
    ("poisoned", "refused_logs"),
    [
        (frozenset({7}), frozenset()),  # the life cut between its order and its update
        (frozenset({0, 9}), frozenset({5})),  # first and last; a log in the middle
        (frozenset({3, 4, 5}), frozenset({1, 8})),
        (frozenset(range(LIVES)), frozenset()),  # every life refused
    ],
    ids=["cut-life", "edges", "middle", "all"],
)
def test_events_that_depend_on_each_other_across_the_halves(
    pg_dsn: str, tmp_path: Path, poisoned: frozenset[int], refused_logs: frozenset[int]
) -> None:
    """One group (a journal replayed at a start) whose halves separate signals from their
    verdicts, orders from their updates and fills, fills from the trade they close: the
    good lives end as recorded (verdict, exchange id, filled, trade), the poisoned ones are
    dead-lettered whole (signal, orders, fills, trade), their updates write nothing."""
    _guards(pg_dsn)
    group = lives(poisoned, refused_logs)
    data = tmp_path / "data"
    events = journaled_offline(data, interleaved(group))
    mid = len(events) // 2
    # The layout cuts dependencies at the first halving (what the test is about).
    keys: list[tuple[str, str, Callable[[Life], str]]] = [
        ("signal", "signal_status", lambda life: str(life.signal.signal_id)),
        ("order", "order_update", lambda life: str(life.entry.client_order_id)),
    ]
    for insert, update, key in keys:
        cut = [
            life
            for life in group
            if _index(events, insert, key(life)) < mid
            and any(
                k == update and str(orjson.loads(p)[_key_field(update)]) == key(life)
                for _s, k, p in events[mid:]
            )
        ]
        assert cut, f"no {insert} cut from its {update}"
    stats = replayed(pg_dsn, data)
    dead = check_stored_once(pg_dsn, data, group)
    assert stats["dead_letters"] == len(dead)


def _key_field(kind: str) -> str:
    return "signal_id" if kind == "signal_status" else "client_order_id"


# -- 3. a refusal beside a conflict a retry resolves --------------------------------------


@pytest.mark.parametrize(
    ("table", "code"),
    [
        ("signals", "serialization_failure"),
        ("signals", "deadlock_detected"),
        ("configurations", "unique_violation"),  # as the one-active index says it
    ],
)
def test_a_conflict_met_while_settling_retries_the_group_and_dead_letters_only_the_refused(
    pg_dsn: str, tmp_path: Path, table: str, code: str
) -> None:
    """The first event refused (so the whole group is refused before the conflicting row
    is reached), a row in the second half that meets a conflict the first three times it is
    written: the group is retried whole three times, and only the refused events end as
    dead letters, each with one system_logs row."""
    conflict = (
        f"IF nextval('tries') <= 3 THEN RAISE EXCEPTION 'conflict' USING ERRCODE = '{code}'"
        + (", CONSTRAINT = 'uq_configurations_one_active'" if table == "configurations" else "")
        + "; END IF;"
    )
    if table == "signals":
        _guards(pg_dsn, f"IF NEW.strategy_id = 'flaky' THEN {conflict} END IF;")
    else:
        _guards(pg_dsn)
        _trigger(pg_dsn, "configurations", conflict, "guard_configurations")
    poison, flaky = make_signal(strategy_id="poison"), make_signal(strategy_id="flaky")
    plain = [make_signal() for _ in range(40)]
    config: dict[str, Any] = {"risk": {"max": "0.02"}, "name": "refusal-review"}
    hashes: list[str] = []

    def log(message: str) -> Step:
        return lambda ledger: ledger.record_log(
            LogEntry(source_module=TAG, log_level="INFO", message=message)
        )

    steps: list[Step] = [signal_step(poison), *map(signal_step, plain[:20]), log("before")]
    steps += map(signal_step, plain[20:])
    steps += [
        signal_step(flaky),
        lambda ledger: hashes.append(ledger.record_configuration(config)),
        log("refuse-me:after-the-conflict"),
        log("after"),
    ]
    data = tmp_path / "data"
    events = journaled_offline(data, steps)
    assert _index(events, "signal", str(flaky.signal_id)) >= len(events) // 2
    stats = replayed(pg_dsn, data)
    assert _tries(pg_dsn) >= 4  # the conflict was met, three times, then passed
    stored = rows(pg_dsn, "SELECT signal_id FROM signals")
    assert sorted(s for (s,) in stored) == sorted(s.signal_id for s in [*plain, flaky])
    assert rows(pg_dsn, "SELECT config_hash, is_active FROM configurations") == [(hashes[0], True)]
    logged = rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = %s", TAG)
    assert sorted(m for (m,) in logged) == ["after", "before"]
    _events, dead = _journal(data)
    assert sorted((k, _key(k, p)) for _s, k, p in dead) == sorted(
        [("log", "refuse-me:after-the-conflict"), ("signal", str(poison.signal_id))]
    )
    said = rows(
        pg_dsn,
        "SELECT (context->>'journal_seq')::bigint FROM system_logs WHERE source_module = %s",
        SOURCE,
    )
    assert sorted(s for (s,) in said) == sorted(seq for seq, _k, _p in dead)
    assert (stats["commit_conflicts_retried"], stats["dead_letters"]) == (3, 2)


# -- 4. the connection lost mid-settling ---------------------------------------------------

TERMINATE = (
    "IF nextval('tries') <= 2 THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
    "PERFORM pg_sleep(5); END IF;"
)


@pytest.mark.faults
@pytest.mark.parametrize("where", ["first-half", "second-half", "dead-letter-row"])
def test_the_connection_lost_while_a_refused_group_settles_loses_and_doubles_nothing(
    pg_dsn: str, tmp_path: Path, where: str
) -> None:
    """The server ends the committer's connection twice while it settles a refused group
    (a killer signal in one half, or the first dead letter's system_logs row): the group is
    sent again on a new connection, each event stored once, each refused one dead-lettered
    once."""
    killer = {"first-half": 1, "second-half": 8}.get(where, -1)
    if where == "dead-letter-row":
        _guards(pg_dsn)
        _trigger(
            pg_dsn,
            "system_logs",
            f"IF NEW.source_module = '{SOURCE}' THEN {TERMINATE} END IF;",
            "kill_on_letter",
        )
    else:
        _guards(pg_dsn, f"IF NEW.strategy_id = 'killer' THEN {TERMINATE} END IF;")
    group = lives(frozenset({0, 5}), frozenset({3}), killer=killer)
    data = tmp_path / "data"
    journaled_offline(data, interleaved(group))
    stats = replayed(pg_dsn, data)
    assert _tries(pg_dsn) >= 3  # ended twice, then let through
    assert stats["pg_errors"] >= 2
    check_stored_once(pg_dsn, data, group)


# -- 5. every event of a large group refused ---------------------------------------------


def test_a_group_whose_every_event_is_refused_settles_in_bounded_time(
    pg_dsn: str, tmp_path: Path
) -> None:
    """2,000 signals, all refused, as one group (then a log): each dead-lettered once with
    one system_logs row, the log after them stored. The flush timeout is a liveness bound
    (it took a few seconds here), not a speed assertion."""
    _guards(pg_dsn)
    poisoned = [make_signal(strategy_id="poison") for _ in range(2000)]
    after = LogEntry(source_module=TAG, log_level="INFO", message="after")
    steps: list[Step] = [signal_step(s) for s in poisoned]
    steps.append(lambda ledger: ledger.record_log(after))
    data = tmp_path / "data"
    events = journaled_offline(data, steps)
    started = time.monotonic()
    stats = replayed(pg_dsn, data, timeout=120)
    elapsed = time.monotonic() - started
    assert rows(pg_dsn, "SELECT count(*) FROM signals") == [(0,)]
    assert rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = %s", TAG) == [
        ("after",)
    ]
    _events, dead = _journal(data)
    assert [seq for seq, _k, _p in dead] == [seq for seq, kind, _p in events if kind == "signal"]
    assert sorted(_key(k, p) for _s, k, p in dead) == sorted(str(s.signal_id) for s in poisoned)
    said = rows(
        pg_dsn,
        "SELECT (context->>'journal_seq')::bigint FROM system_logs WHERE source_module = %s",
        SOURCE,
    )
    assert sorted(s for (s,) in said) == [seq for seq, _k, _p in dead]
    assert stats["dead_letters"] == 2000
    print(f"2,000 refused events settled in {elapsed:.1f} s")


# -- 6. a snapshot that replaces another, in a refused group ---------------------------------


def test_a_replacing_snapshot_in_a_refused_group_is_counted_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A snapshot of an instant already stored (different content) beside refused ones: the
    part holding it is refused and split again several times, it replaces the stored one
    once and is counted once; a snapshot whose content is already stored is not counted."""
    _trigger(
        pg_dsn,
        "portfolio_snapshots",
        "IF NEW.total_equity = 666 THEN RAISE 'refused snapshot'; END IF;",
        "guard_snapshots",
    )
    same = make_snapshot(snapshot_timestamp=T0 + timedelta(hours=1))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for at, equity in [(T0, 10_000), (same.snapshot_timestamp, same.total_equity)]:
            conn.execute(
                "INSERT INTO portfolio_snapshots (snapshot_timestamp, total_equity, "
                "available_balance, total_exposure_pct, daily_drawdown_pct, "
                "weekly_drawdown_pct, total_drawdown_pct, positions) "
                "VALUES (%s, %s, 10000, 0, 0, 0, 0, '{}')",
                (at, equity),
            )
    refused = [
        make_snapshot(snapshot_timestamp=T0 + timedelta(minutes=m), total_equity=666)
        for m in (30, 90)
    ]
    replacing = make_snapshot(snapshot_timestamp=T0, total_equity=Decimal(20_000))
    fresh = [make_snapshot(snapshot_timestamp=T0 + timedelta(days=1, minutes=m)) for m in range(30)]
    order = [*fresh[:10], refused[0], replacing, same, *fresh[10:], refused[1]]
    steps: list[Step] = [snapshot_step(s) for s in order]
    data = tmp_path / "data"
    journaled_offline(data, steps)
    stats = replayed(pg_dsn, data)
    stored = dict(rows(pg_dsn, "SELECT snapshot_timestamp, total_equity FROM portfolio_snapshots"))
    assert stored[T0] == 20_000
    assert stored[same.snapshot_timestamp] == same.total_equity
    assert len(stored) == 2 + len(fresh)
    _events, dead = _journal(data)
    assert [k for _s, k, _p in dead] == ["snapshot", "snapshot"]
    assert (stats["snapshots_replaced"], stats["dead_letters"]) == (1, 2)


# -- 7. a refusal PostgreSQL says only at the group's commit ------------------------------


def test_a_refusal_deferred_to_the_commit_is_settled_too(pg_dsn: str, tmp_path: Path) -> None:
    """orders.signal_id made DEFERRABLE INITIALLY DEFERRED (a DBA's choice): an order of a
    refused signal breaks it only when the group commits. The group's settling must still
    end, dead-lettering that order, and the rest commits."""
    _guards(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        [(name,)] = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'orders'::regclass "
            "AND contype = 'f' AND confrelid = 'signals'::regclass"
        ).fetchall()
        conn.execute(f"ALTER TABLE orders ALTER CONSTRAINT {name} DEFERRABLE INITIALLY DEFERRED")
    good, poison = make_signal(), make_signal(strategy_id="poison")
    orders = [make_order(good), make_order(poison)]
    steps: list[Step] = [
        lambda ledger: ledger.record_signal(good),
        lambda ledger: ledger.record_signal(poison),
        lambda ledger: ledger.record_order(orders[0]),
        lambda ledger: ledger.record_order(orders[1]),
        lambda ledger: ledger.record_log(
            LogEntry(source_module=TAG, log_level="INFO", message="x")
        ),
    ]
    data = tmp_path / "data"
    journaled_offline(data, steps)
    ledger = Ledger(_config(pg_dsn, data))
    ledger.start()
    try:
        flushed = ledger.flush(timeout=10)
    finally:
        ledger.close(timeout=1)
    assert flushed, "the refused group never settled"
    assert rows(pg_dsn, "SELECT client_order_id FROM orders") == [(orders[0].client_order_id,)]
    _events, dead = _journal(data)
    assert sorted(k for _s, k, _p in dead) == ["order", "signal"]


# -- 8. a group refused only as a whole -----------------------------------------------------


def test_a_group_refused_only_as_a_whole_dead_letters_nothing(pg_dsn: str, tmp_path: Path) -> None:
    """A statement-level rule (no more than 25 signals a statement; never signals ``a`` and
    ``b`` in one statement) refuses the group and some of its halves, never one event: the
    halves go down until each part passes, nothing is dead-lettered, all is stored once."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION per_statement() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF (SELECT count(*) FROM new_rows) > 25 THEN RAISE 'too many at once'; END IF; "
            "IF (SELECT count(DISTINCT strategy_id) FROM new_rows "
            "WHERE strategy_id IN ('a', 'b')) = 2 THEN RAISE 'a beside b'; END IF; "
            "RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER per_statement AFTER INSERT ON signals REFERENCING NEW TABLE AS "
            "new_rows FOR EACH STATEMENT EXECUTE FUNCTION per_statement()"
        )
    plain = [make_signal() for _ in range(100)]
    pair = [make_signal(strategy_id="a"), make_signal(strategy_id="b")]
    group = [*plain[:37], *pair, *plain[37:]]
    data = tmp_path / "data"
    journaled_offline(data, [signal_step(s) for s in group])
    stats = replayed(pg_dsn, data)
    stored = rows(pg_dsn, "SELECT signal_id FROM signals")
    assert sorted(s for (s,) in stored) == sorted(s.signal_id for s in group)
    assert _journal(data) == ([], [])
    assert rows(pg_dsn, "SELECT count(*) FROM system_logs") == [(0,)]
    assert (stats["dead_letters"], stats["committed"]) == (0, len(group))


# -- 9. two refused events under one journal seq ----------------------------------------------


def test_both_refused_events_of_a_resolved_held_fill_are_kept(pg_dsn: str, tmp_path: Path) -> None:
    """A fill held while PostgreSQL was away closes a cycle once resolved: the fill and its
    trade are one journal row. Both refused (a price band on fills and on trades): both are
    kept, together, as that row's dead letter (in the row's group form), each said by a
    system_logs row. (The dead letter used to be one a seq, the last refused event's: the
    fill was lost, and its system_logs row took the trade's id.)"""
    _trigger(pg_dsn, "fills", "IF NEW.fill_price >= 1000 THEN RAISE 'fill band'; END IF;", "gf")
    _trigger(
        pg_dsn, "trades", "IF NEW.average_exit_price >= 1000 THEN RAISE 'trade band'; END IF;", "gt"
    )
    life, data = Life(0, "s", False), tmp_path / "data"
    ledger = Ledger(_config(pg_dsn, data))
    ledger.start()
    try:
        ledger.record_signal(life.signal)
        ledger.update_signal_status(life.signal.signal_id, "APPROVED")
        ledger.record_order(life.entry)
        ledger.record_fill(make_fill(life.entry, "10", "0.5", fill_id="E0"))
        ledger.record_order(life.exit)
        assert ledger.flush(timeout=30)
    finally:
        ledger.close(timeout=10)
    exit_fill = make_fill(life.exit, "10", "5000", fill_id="X0")
    [(_seq, kind, _payload)] = journaled_offline(
        data, [lambda ledger: ledger.record_fill(exit_fill)]
    )
    assert kind == "held"
    stats = replayed(pg_dsn, data)
    assert stats["dead_letters"] == 2  # the writer counted both
    assert rows(pg_dsn, "SELECT fill_id FROM fills") == [("E0",)]
    assert rows(pg_dsn, "SELECT count(*) FROM trades") == [(0,)]
    said = rows(pg_dsn, "SELECT context->>'kind' FROM system_logs WHERE source_module = %s", SOURCE)
    _events, dead = _journal(data)
    assert [k for _s, k, _p in dead] == ["group"]
    assert sorted((k, _key(k, p)) for _s, k, p in expand(dead)) == [
        ("derived_trade", str(life.signal.signal_id)),
        ("fill", "X0"),
    ]
    assert sorted(k for (k,) in said) == ["derived_trade", "fill"]


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
