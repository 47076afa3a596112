"""The journal on its own: what goes in comes back byte for byte, in bounded work.

A batch is one SQLite statement, a read one more (see ``journal._APPEND``): the stdlib
module lets go of the GIL at every step, and winning it back beside a thread busy in
Python costs up to 5 ms a step, so a statement a row made 1,000 events take seconds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galfriday_recorder.ledger import journal as journal_module
from galfriday_recorder.ledger.journal import Journal, JournalError, Row, encode_event

_PAYLOADS = st.one_of(
    st.binary(max_size=64),  # empty, NUL, invalid UTF-8, anything
    st.text(max_size=64).map(str.encode),  # escapes, astral planes
    st.sampled_from([b"\x00", b"\xff\xfe", b'{"a":"\\u0000"}', b"'); DROP TABLE events;--"]),
    st.integers(1, 3000).map(lambda n: b"x" * n),  # past the tiny budgets below
)
_KINDS = st.sampled_from(["fill", "log", "group", "poison", "é", ""])  # the ledger's own names
_BATCHES = st.lists(st.lists(st.tuples(_KINDS, _PAYLOADS), min_size=1, max_size=40), max_size=5)


def _read_all(j: Journal, after: int, limit: int, max_bytes: int) -> list[Row]:
    """Everything after ``after``, read as the committer does, checking each read's bounds."""
    out: list[Row] = []
    while True:
        rows, more = j.pending(after, limit, max_bytes)
        assert 1 <= len(rows) <= limit or (not rows and not more)
        if len(rows) > 1:
            assert sum(len(payload) for _seq, _kind, payload in rows) <= max_bytes
        out += rows
        if not more:
            return out
        after = rows[-1][0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=_BATCHES,
    statement_bytes=st.sampled_from([1, 100, 2000, 64 * 1024 * 1024]),
    limit=st.integers(1, 50),
    max_bytes=st.sampled_from([1, 150, 5000, 64 * 1024 * 1024]),
)
def test_what_is_appended_reads_back_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[tuple[str, bytes]]],
    statement_bytes: int,
    limit: int,
    max_bytes: int,
) -> None:
    """Compared with SQLite's own rows, read plainly, and with what was given."""
    path = tmp_path_factory.mktemp("j") / "journal.db"
    j = Journal(path)
    j.open()
    try:
        start = j.last_seq
        expected: list[Row] = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(journal_module, "_STATEMENT_BYTES", statement_bytes)
            for batch in batches:
                first, last = j.append(batch)
                assert (first, last) == (
                    start + len(expected) + 1,
                    start + len(expected) + len(batch),
                )
                expected += [(first + i, kind, payload) for i, (kind, payload) in enumerate(batch)]
        assert _read_all(j, start, limit, max_bytes) == expected
        with sqlite3.connect(path) as db:
            stored = db.execute("SELECT seq, kind, payload FROM events ORDER BY seq").fetchall()
        assert stored == expected
        assert all(type(payload) is bytes for _seq, _kind, payload in stored)
        if len(expected) > 2:  # a read from the middle starts after its seq
            middle = expected[len(expected) // 2][0]
            assert _read_all(j, middle, limit, max_bytes) == [r for r in expected if r[0] > middle]
    finally:
        j.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(st.tuples(_KINDS, _PAYLOADS), min_size=1, max_size=40),
    replaced=st.lists(st.tuples(st.integers(0, 39), _KINDS, _PAYLOADS), max_size=40),
    statement_bytes=st.sampled_from([1, 100, 64 * 1024 * 1024]),
)
def test_a_rewrite_replaces_what_it_names_and_nothing_else(
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[tuple[str, bytes]],
    replaced: list[tuple[int, str, bytes]],
    statement_bytes: int,
) -> None:
    j = Journal(tmp_path_factory.mktemp("j") / "journal.db")
    j.open()
    try:
        first, _last = j.append(batch)
        expected = {
            first + i: (first + i, kind, payload) for i, (kind, payload) in enumerate(batch)
        }
        rows = {}  # one row per seq: a rewrite names each event once
        for i, kind, payload in replaced:
            if i < len(batch):
                rows[first + i] = (first + i, kind, payload)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(journal_module, "_STATEMENT_BYTES", statement_bytes)
            j.rewrite(list(rows.values()), [])
        expected.update(rows)
        assert _read_all(j, 0, 1000, 64 * 1024 * 1024) == sorted(expected.values())
    finally:
        j.close()


def test_a_batch_of_empty_payloads_is_stored_empty(journal: Journal) -> None:
    """``substr`` of an empty blob is NULL: a batch of nothing but empty payloads (one
    empty blob for the statement) must still store each as empty, not fail NOT NULL."""
    first, last = journal.append([("a", b""), ("b", b"")])
    journal.rewrite([(first, "c", b"")], [])
    assert journal.pending(0, 10) == ([(first, "c", b""), (last, "b", b"")], False)


def test_an_event_past_256_mib_is_journaled_as_poison() -> None:
    """Beside the 64 MiB a read may hold, a longer row would pass SQLite's 1e9-byte value
    limit, and every read and append after it would fail."""
    kind, payload = encode_event("log", {"message": "x" * (256 * 1024 * 1024)})
    assert kind == "poison"
    assert len(payload) < 20_000
    assert orjson.loads(payload)["error"].endswith("bytes, past a journal row's limit")


def test_an_empty_journal_reads_as_nothing_more(journal: Journal) -> None:
    assert journal.pending(0, 500) == ([], False)
    journal.append([("log", b"{}")])
    assert journal.pending(journal.last_seq, 500) == ([], False)


def test_a_row_past_the_budget_comes_alone_and_the_rest_after_it(journal: Journal) -> None:
    first, _last = journal.append([("log", b"a" * 10), ("log", b"b" * 1000), ("log", b"c")])
    assert journal.pending(first - 1, 10, 100) == ([(first, "log", b"a" * 10)], True)
    assert journal.pending(first, 10, 100) == ([(first + 1, "log", b"b" * 1000)], True)
    assert journal.pending(first + 1, 10, 100) == ([(first + 2, "log", b"c")], False)


def test_a_failed_batch_leaves_nothing_and_no_seq_used(journal: Journal) -> None:
    """A span that SQLite refuses rolls back the spans before it in the same batch."""
    first, _last = journal.append([("log", b"kept")])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal_module, "_STATEMENT_BYTES", 4)
        with pytest.raises(sqlite3.Error):
            journal.append([("log", b"span one"), ("log", b"span two"), (None, b"x")])  # type: ignore[list-item]
    assert journal.last_seq == first
    assert journal.pending(0, 10) == ([(first, "log", b"kept")], False)
    assert journal.append([("log", b"next")]) == (first + 1, first + 1)


@pytest.mark.parametrize("events", [1, 1_000, 20_000])
def test_a_batch_is_a_few_statements_whatever_its_size(journal: Journal, events: int) -> None:
    """Bounded work: the statements SQLite runs for one batch do not grow with it (a
    statement per row would be ``events`` of them, and each a GIL hand-off)."""
    ran: list[str] = []
    journal.db.set_trace_callback(ran.append)
    journal.append([("log", b'{"i":%d}' % i) for i in range(events)])
    rows, more = journal.pending(0, events)
    assert (len(rows), more) == (events, False)
    journal.rewrite([(seq, "none", b"{}") for seq, _kind, _payload in rows], [])
    journal.db.set_trace_callback(None)
    # BEGIN, the insert, COMMIT; the read; BEGIN, the update, COMMIT
    assert len(ran) == 7, [statement[:30] for statement in ran]


def test_an_sqlite_too_old_for_the_journal_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 32, 3))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.32.3")
    with pytest.raises(JournalError, match=r"needs SQLite 3\.33\.0 or later .* has 3\.32\.3"):
        Journal(tmp_path / "journal.db").open()
    assert not (tmp_path / "journal.db").exists()
