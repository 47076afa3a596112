"""The ledger's crash-safe local journal: SQLite in WAL mode (stdlib ``sqlite3``).

An event is acknowledged once its transaction here commits. With
``synchronous=NORMAL`` in WAL mode a committed transaction survives a crash or
``kill -9`` of the process (the WAL is in the OS page cache and replayed on the
next open); ``synchronous=FULL`` (``durable=True``) adds an fsync per commit
and also survives power loss, at some cost in latency. Checkpoints, where the
fsyncs happen, run on a second connection from a worker thread
(:meth:`Journal.checkpoint`) so that they never stall journaling.

Sequence numbers are monotonic across restarts, even after the journal is
emptied: a new session starts above both the last sequence ever used and the
current time in microseconds, so ``orders.ledger_seq`` in PostgreSQL can order
status updates by them. Events are deleted once committed to PostgreSQL; an
event PostgreSQL refuses for good moves to ``dead_letters``, kept for a human.

The database file and its ``-wal``/``-shm`` companions are mode 0600 whatever
the umask: the file is created with that mode before SQLite opens it, and
SQLite gives its companions the database file's mode. An exclusive ``flock``
keeps a second process from sharing one journal.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import RecorderError
from ..filelock import lock_exclusive
from ..records import dumps
from . import fault

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    kind    TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq       INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,
    payload   BLOB NOT NULL,
    error     TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS parked (
    fill_key          TEXT PRIMARY KEY,
    exchange_order_id TEXT NOT NULL,
    payload           BLOB NOT NULL,
    parked_at         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

Row = tuple[int, str, bytes]

# Many rows, one SQLite statement. The stdlib module lets go of the GIL around every
# step of a statement and must win it back after: beside a thread busy in Python, that
# costs up to the switch interval (5 ms) per step, so a row per step made 1,000 events
# take seconds to journal. A batch is one statement (a span of it past
# ``_STATEMENT_BYTES``, one more: SQLite takes no value of 1 GB), its payloads one blob
# that ``json_each`` cuts by offset; a read comes back the same way.
_STATEMENT_BYTES = 64 * 1024 * 1024
_SQLITE_NEEDED = (3, 33, 0)  # UPDATE ... FROM (json_each and window functions are older)
# ?1: a JSON array of [seq, kind, offset, length], one per row; ?2: the payloads.
_ROWS = (
    "json_extract(r.value, '$[0]') AS seq, json_extract(r.value, '$[1]') AS kind, "
    "coalesce(substr(?2, json_extract(r.value, '$[2]'), json_extract(r.value, '$[3]')), x'') "
    "AS payload "
    "FROM json_each(?1) AS r"
)
_APPEND = f"INSERT INTO events (seq, kind, payload) SELECT {_ROWS}"
_REWRITE = (
    f"UPDATE events SET kind = u.kind, payload = u.payload FROM (SELECT {_ROWS}) AS u "
    "WHERE events.seq = u.seq"
)
# The rows after ?1, at most ?2 of them, while their running size stays within ?3 (the
# first one whatever its size); and whether a row is left after those. The sizes come
# first, alone (``length`` reads no payload): only the payloads kept are read.
_PENDING = (
    "WITH firsts AS MATERIALIZED (SELECT seq, length(payload) AS size FROM events "
    "WHERE seq > ?1 ORDER BY seq LIMIT ?2), "
    "kept AS (SELECT e.seq, e.kind, e.payload FROM (SELECT seq, "
    "sum(size) OVER (ORDER BY seq) AS upto, row_number() OVER (ORDER BY seq) AS i "
    "FROM firsts) AS f JOIN events AS e USING (seq) WHERE f.upto <= ?3 OR f.i = 1 "
    "ORDER BY e.seq) "
    "SELECT json_group_array(seq), json_group_array(kind), json_group_array(length(payload)), "
    "CAST(coalesce(group_concat(payload, ''), '') AS BLOB), "
    "EXISTS (SELECT 1 FROM events WHERE seq > coalesce((SELECT max(seq) FROM kept), ?1)) "
    "FROM kept"
)


def _spans(sizes: list[int]) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` spans of rows within ``_STATEMENT_BYTES`` each (one row at least)."""
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > _STATEMENT_BYTES:
            yield start, i
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)


# A checkpoint is due when the WAL passes this size; it is truncated back to it after.
_WAL_LIMIT = 16 * 1024 * 1024


class JournalError(RecorderError):
    """The journal cannot be opened or written."""


class Journal:
    """One SQLite file; every method is called from one thread at a time (the loop thread)."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = path
        self._durable = durable
        self._db: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self.last_seq = 0
        self.instance = 0

    def open(self) -> None:
        if sqlite3.sqlite_version_info < _SQLITE_NEEDED:
            raise JournalError(
                f"the journal needs SQLite {'.'.join(map(str, _SQLITE_NEEDED))} or later "
                f"(UPDATE ... FROM); Python's sqlite3 has {sqlite3.sqlite_version}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = lock_exclusive(self.path)
        if fd is None:
            raise JournalError(f"journal {self.path} is in use by another process")
        self._lock_fd = fd
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
            # Checkpoints (the fsyncs) run on another connection, off the writer's thread.
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
            db.executescript(_SCHEMA)
            self._checkpointer = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            self.close()
            raise JournalError(f"cannot open journal {self.path}: {exc}") from None
        self._db = db
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)
        row = db.execute(
            "SELECT max(v) FROM (SELECT value AS v FROM meta WHERE key = 'last_seq' "
            "UNION ALL SELECT max(seq) FROM events UNION ALL SELECT max(seq) FROM dead_letters)"
        ).fetchone()
        self.last_seq = max(int(row[0] or 0), time.time_ns() // 1000)
        # This journal's name among all the recorders on one database, kept for its life.
        db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)",
            (secrets.randbits(62),),
        )
        self.instance = int(
            db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]
        )

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("journal is closed")
        return self._db

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def append(self, events: Iterable[tuple[str, bytes]]) -> tuple[int, int]:
        """Journal events in one transaction; return (first seq, last seq)."""
        first = self.last_seq + 1
        rows = [(first + i, kind, payload) for i, (kind, payload) in enumerate(events)]
        last = first + len(rows) - 1
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._put(_APPEND, rows)
            if fault.ARMED:
                fault.reached("journal-inside")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.last_seq = last
        return first, last

    def rewrite(self, rows: list[Row], dead: list[tuple[Row, str]]) -> None:
        """Replace events in place, keeping their sequence numbers (held events, resolved);
        ``dead`` (the original row, why) go to the dead letters in the same transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._put(_REWRITE, rows)
            self._dead_letter(dead)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _put(self, statement: str, rows: list[Row]) -> None:
        """``rows`` through ``_APPEND`` or ``_REWRITE``: a statement a span of them."""
        for start, stop in _spans([len(payload) for _seq, _kind, payload in rows]):
            shape, offset = [], 1
            for seq, kind, payload in rows[start:stop]:
                shape.append((seq, kind, offset, len(payload)))
                offset += len(payload)
            joined = b"".join(payload for _seq, _kind, payload in rows[start:stop])
            self.db.execute(statement, (orjson.dumps(shape), joined))

    def pending(
        self, after: int, limit: int, max_bytes: int = _STATEMENT_BYTES
    ) -> tuple[list[Row], bool]:
        """Journaled events not yet committed, oldest first: at most ``limit`` and
        ``max_bytes`` (one event at least), and whether the journal holds more."""
        seqs, kinds, lengths, joined, more = self.db.execute(
            _PENDING, (after, limit, max_bytes)
        ).fetchone()
        rows, offset = [], 0
        shape = zip(orjson.loads(seqs), orjson.loads(kinds), orjson.loads(lengths), strict=True)
        for seq, kind, length in shape:
            rows.append((seq, kind, joined[offset : offset + length]))
            offset += length
        return rows, bool(more)

    def pending_stats(self) -> tuple[int, int, int | None]:
        """(count, payload bytes, first seq) of the events still to commit."""
        count, size, first = self.db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0), min(seq) FROM events"
        ).fetchone()
        return int(count), int(size), first

    def done(self, upto: int, dead: list[tuple[Row, str]]) -> None:
        """Forget events up to ``upto`` (committed), keeping refused ones as dead letters."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._dead_letter(dead)
            # The events table may empty now: the last seq used outlives it here (open()
            # takes the larger of this and the events still held).
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (self.last_seq,)
            )
            db.execute("DELETE FROM events WHERE seq <= ?", (upto,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _dead_letter(self, dead: list[tuple[Row, str]]) -> None:
        """One dead letter a seq: the refused events of one group row (a resolved held
        fill and the trade it closes) stay together, in the row's own form."""
        if not dead:
            return
        by_seq: dict[int, list[tuple[str, bytes, str]]] = {}
        for (seq, kind, payload), error in dead:
            by_seq.setdefault(seq, []).append((kind, payload, error))
        letters = []
        for seq, same in by_seq.items():
            kind, payload, error = same[0]
            if len(same) > 1:
                kind, payload = GROUP, _group_payload([(k, p) for k, p, _e in same])
                error = "; ".join(f"{k}: {e}" for k, _p, e in same)
            letters.append((seq, kind, payload, error, time.time()))
        self.db.executemany(
            "INSERT OR REPLACE INTO dead_letters (seq, kind, payload, error, failed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            letters,
        )

    def dead_letters(self) -> list[tuple[int, str, bytes, str]]:
        return self.db.execute(
            "SELECT seq, kind, payload, error FROM dead_letters ORDER BY seq"
        ).fetchall()

    # Fills that came before their order (the bot bridge's): kept here until the order
    # is reported or they are refused, so a restart does not lose them.
    def park(self, fill_key: str, exchange_order_id: str, payload: bytes, at: float) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO parked (fill_key, exchange_order_id, payload, parked_at) "
            "VALUES (?, ?, ?, ?)",
            (fill_key, exchange_order_id, payload, at),
        )

    def unpark(self, fill_keys: list[str]) -> None:
        self.db.executemany("DELETE FROM parked WHERE fill_key = ?", [(k,) for k in fill_keys])

    def parked(self) -> list[tuple[str, str, bytes, float]]:
        return self.db.execute(
            "SELECT fill_key, exchange_order_id, payload, parked_at FROM parked ORDER BY parked_at"
        ).fetchall()

    def wal_bytes(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except FileNotFoundError:
            return 0

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (PASSIVE: never blocks the writer).

        Safe to call from another thread than the writer's: it has its own connection.
        A failed checkpoint loses nothing (the WAL holds the data); the next one retries.
        """
        if self._checkpointer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total


# A longer event is poison. SQLite refuses a row near its 1e9-byte SQLITE_MAX_LENGTH, and
# the journaler would retry it for ever with everything after it waiting; a read puts
# one row beside up to 64 MiB of others (``pending``) in one value; and PostgreSQL takes
# no JSONB string past 256 MiB, so nothing longer could be stored there anyway.
_MAX_ROW_BYTES = 256 * 1024 * 1024
_POISON_CHARS = 10_000  # of the event, kept in the dead letter


def encode_event(kind: str, event: Any) -> tuple[str, bytes]:
    """Journal form of an event: one flat JSON object (a fill carries its order's fields).

    One that cannot be serialised, or too big for a journal row, is journaled as poison,
    to be dead-lettered.
    """
    try:
        if isinstance(event, tuple):
            record, extra = event
            payload = dumps(extra)[:-1] + b"," + dumps(record)[1:]
        else:
            payload = dumps(event)
    except TypeError as exc:
        return _poison(kind, repr(event)[:_POISON_CHARS], str(exc))
    if len(payload) > _MAX_ROW_BYTES:
        start = payload[:_POISON_CHARS].decode(errors="replace")
        return _poison(kind, start, f"{len(payload)} bytes, past a journal row's limit")
    return kind, payload


def _poison(kind: str, start: str, error: str) -> tuple[str, bytes]:
    return "poison", dumps({"kind": kind, "repr": start, "error": error})


GROUP = "group"  # one row holding the events one cause made (a resolved held event)


def encode_group(events: list[tuple[str, Any]]) -> tuple[str, bytes]:
    """Several events as one journal row, so they are journaled (and committed) together."""
    return GROUP, _group_payload([encode_event(kind, event) for kind, event in events])


def _group_payload(events: list[tuple[str, bytes]]) -> bytes:
    return b"[" + b",".join(b'["%s",%s]' % (k.encode(), p) for k, p in events) + b"]"


def expand(rows: list[Row]) -> list[Row]:
    """Rows as the committer writes them: a group becomes its events, under its seq."""
    if not any(row[1] == GROUP for row in rows):
        return rows
    out: list[Row] = []
    for seq, kind, payload in rows:
        if kind == GROUP:
            out.extend((seq, k, orjson.dumps(p)) for k, p in orjson.loads(payload))
        else:
            out.append((seq, kind, payload))
    return out
