"""The ledger's journal beside a thread busy in Python: a bot computing while it records.

The stdlib ``sqlite3`` lets go of the GIL around every step of a statement; winning it
back from a thread that holds it costs up to the switch interval (5 ms). So the work
that matters here is the number of steps per batch, and the N that makes a batch slow
is its number of events.

- ``journal: appending``: one batch of 1,000 events (the journaler's largest) as the
  journal writes it (one statement) and, as the baseline, a statement per row
  (``executemany``, what the journal did before), both beside a busy thread.
- ``journal: reading``: 500 events read back (a committer's group after a restart or an
  outage), one aggregate statement against a plain ``fetchall`` of a row per step.
- ``journal: 64 MiB read back``: from 300 rows of 1 MiB (a read stops near 64 MiB), against
  a plain ``SELECT`` of exactly the rows kept.
- ``ledger: acknowledged beside a busy thread``: 800 events recorded, then
  ``wait_journaled`` (the acknowledgement) and ``flush`` (PostgreSQL), with the busy
  thread and, as the baseline, without it: what a busy bot costs the ledger end to end.
"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.journal import Journal
from test_ledger_bench import build_cycles, recorders

APPENDED = 1_000
READ = 500
BIG_ROW = 1024 * 1024
ROUNDS = 3


@contextlib.contextmanager
def busy_thread() -> Iterator[None]:
    """A thread that never waits: it gives the GIL up only when asked to."""
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _events(n: int) -> list[tuple[str, bytes]]:
    return [
        ("log", b'{"log_id":"%032d","message":"tick","context":{"i":%d}}' % (i, i))
        for i in range(n)
    ]


def _row_per_step_append(
    db: sqlite3.Connection, first: int, events: list[tuple[str, bytes]]
) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO events (seq, kind, payload) VALUES (?, ?, ?)",
        [(first + i, kind, payload) for i, (kind, payload) in enumerate(events)],
    )
    db.execute("COMMIT")


def _timed_beside_busy_thread(benchmark: Any, run: Callable[[], Any]) -> int:
    """How many times ``run`` ran (once with ``--benchmark-disable``)."""
    ran = 0

    def counted() -> None:
        nonlocal ran
        run()
        ran += 1

    with busy_thread():
        benchmark.pedantic(counted, rounds=ROUNDS, iterations=1)
    return ran


@pytest.mark.benchmark(group="journal: appending 1,000 events beside a thread busy in Python")
def test_bench_journal_append(benchmark: Any, journal: Journal) -> None:
    events = _events(APPENDED)
    ran = _timed_beside_busy_thread(benchmark, lambda: journal.append(events))
    rows, _more = journal.pending(0, APPENDED * ROUNDS)
    assert len(rows) == APPENDED * ran


@pytest.mark.benchmark(group="journal: appending 1,000 events beside a thread busy in Python")
def test_bench_journal_append_row_per_step_baseline(benchmark: Any, journal: Journal) -> None:
    events = _events(APPENDED)
    seqs = iter(range(1, ROUNDS + 2))
    ran = _timed_beside_busy_thread(
        benchmark, lambda: _row_per_step_append(journal.db, next(seqs) * APPENDED, events)
    )
    assert journal.db.execute("SELECT count(*) FROM events").fetchone() == (APPENDED * ran,)


@pytest.mark.benchmark(group="journal: reading back 500 events beside a thread busy in Python")
def test_bench_journal_read(benchmark: Any, journal: Journal) -> None:
    journal.append(_events(READ))
    _timed_beside_busy_thread(benchmark, lambda: journal.pending(0, READ))
    assert len(journal.pending(0, READ)[0]) == READ


@pytest.mark.benchmark(group="journal: reading back 500 events beside a thread busy in Python")
def test_bench_journal_read_row_per_step_baseline(benchmark: Any, journal: Journal) -> None:
    journal.append(_events(READ))
    select = "SELECT seq, kind, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
    _timed_beside_busy_thread(benchmark, lambda: journal.db.execute(select, (0, READ)).fetchall())


@pytest.fixture
def big_rows(journal: Journal) -> Journal:
    """300 rows of 1 MiB: a backlog of large events (a read keeps about 64 MiB of them)."""
    for _ in range(6):
        journal.append([("log", b"x" * BIG_ROW)] * 50)
    return journal


@pytest.mark.benchmark(group="journal: 64 MiB read back from a backlog of 1 MiB rows")
def test_bench_journal_read_big_rows(benchmark: Any, big_rows: Journal) -> None:
    """Bounded work: the rows' sizes are read first, then only the payloads kept (the
    read once carried every payload of its first ``limit`` rows: 16 s for 1,000 MiB)."""
    rows, more = benchmark.pedantic(
        lambda: big_rows.pending(0, 500, 64 * BIG_ROW), rounds=ROUNDS, iterations=1
    )
    assert (len(rows), more) == (64, True)


@pytest.mark.benchmark(group="journal: 64 MiB read back from a backlog of 1 MiB rows")
def test_bench_journal_read_big_rows_plain_select_baseline(
    benchmark: Any, big_rows: Journal
) -> None:
    """The least any read of those 64 rows costs: a plain ``SELECT`` of exactly them."""
    select = "SELECT seq, kind, payload FROM events ORDER BY seq LIMIT 64"
    rows = benchmark.pedantic(
        lambda: big_rows.db.execute(select).fetchall(), rounds=ROUNDS, iterations=1
    )
    assert len(rows) == 64


def _acknowledged(benchmark: Any, pg_dsn: str, tmp_path: Path, busy: bool) -> None:
    led = Ledger(RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data"))
    led.start()
    rec = recorders(led)
    rounds = iter(range(ROUNDS + 1))
    journaled: list[float] = []
    committed: list[float] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (build_cycles(50, start=next(rounds) * 50),), {}

    def run(cycles: list[list[tuple[str, Any]]]) -> None:
        for cycle in cycles:
            for kind, arg in cycle:
                rec[kind](arg)
        began = time.perf_counter()
        assert led.wait_journaled(timeout=120)
        journaled.append(time.perf_counter() - began)
        assert led.flush(timeout=120)
        committed.append(time.perf_counter() - began)

    try:
        with busy_thread() if busy else contextlib.nullcontext():
            benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    finally:
        led.close(timeout=60)
    benchmark.extra_info.update(
        {
            "journaled_after_ms_median": round(statistics.median(journaled) * 1000, 1),
            "committed_after_ms_median": round(statistics.median(committed) * 1000, 1),
        }
    )


@pytest.mark.benchmark(group="ledger: 800 events recorded, acknowledged and committed")
def test_bench_ledger_beside_busy_thread(benchmark: Any, pg_dsn: str, tmp_path: Path) -> None:
    _acknowledged(benchmark, pg_dsn, tmp_path, busy=True)


@pytest.mark.benchmark(group="ledger: 800 events recorded, acknowledged and committed")
def test_bench_ledger_no_busy_thread_baseline(benchmark: Any, pg_dsn: str, tmp_path: Path) -> None:
    _acknowledged(benchmark, pg_dsn, tmp_path, busy=False)
