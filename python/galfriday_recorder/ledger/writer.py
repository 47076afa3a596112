"""The ledger's background side: the journaler and the committer, on one event loop.

1. the *journaler* drains the deque into the SQLite journal, one transaction
   per batch, which is the acknowledgement point (see :mod:`.journal`);
2. the *committer* reads journaled events in order and writes them to
   PostgreSQL in group transactions of at most ``commit_max_events`` (a group
   smaller than a journal batch waits up to ``commit_interval_ms`` to grow, unless
   a flush waits for it), then deletes them from the journal. A group is one query
   (:class:`.sql.GroupQuery`): a statement per event kind that takes the journal
   payloads as they are (:class:`.sql.Bulk`). The next group is made while one is
   in PostgreSQL, so a backlog's groups follow each other with little between them.

A batch PostgreSQL refuses with a data or integrity error is retried in halves
under savepoints, down to the offending event, which moves to the journal's
``dead_letters`` table and a ``system_logs`` row says why; the rest commits.
Connection failures are retried with exponential backoff (capped at 2 s) while
the journal keeps growing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg

from ..config import RecorderConfig
from ..records import LogEntry, dumps
from ..redaction import redact
from . import fault, fold
from .journal import Journal, Row, encode_event, expand
from .sql import (
    KIND_ORDER,
    REFUSED,
    SESSION,
    GroupQuery,
    dead_letter_log,
    group_query,
    send_group,
    write,
)
from .state import SOURCE

log = logging.getLogger("galfriday_recorder.ledger")

_JOURNAL_BATCH = 1_000
# Rows journaled this session and not yet committed, kept so the committer need not read
# back what was just written; past this many (PostgreSQL away) it reads the journal again.
_TAIL_ROWS = 20_000
_CHECKPOINT_BYTES = 4 * 1024 * 1024
# A group's payloads stop near this (one event at least): PostgreSQL takes no message
# of 1 GiB or more, and a group past it would break the connection on every retry. Bound
# into the group's query a payload at most doubles (quotes and backslashes), so one event
# at the journal's row cap (256 MiB) makes a query of at most about 512 MiB.
_GROUP_BYTES = 64 * 1024 * 1024
BACKOFF_START, BACKOFF_CAP = 0.05, 2.0
_LATENCY_SAMPLES = 4096
HELD = "held"  # journal kind of a held event
NOTHING = "none"  # journal kind of a resolved held event that writes nothing
REFUSED_KIND = "refused"  # journal kind of what a caller could not record: a dead letter
MANY = "many"  # a queue entry holding the events of one call, journaled in one transaction

# (kind, event, monotonic time of the call): the time measures journal latency.
Queued = tuple[str, Any, float]
# Resolves the held rows of a group once PostgreSQL's state is in: the rows as they are
# to be committed, same seqs (reading PostgreSQL on a worker thread as it needs).
Resolver = Callable[[list[Row]], Awaitable[list[Row]]]


Dead = tuple[Row, str]  # a refused event and why


class _Group:
    """One group commit: the journal rows it settles and, once made, its query."""

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], rows: list[Row], everything: bool, high: int
    ) -> None:
        self.conn = conn
        self.rows = rows  # resolved held rows included
        self.everything = everything  # the journal held nothing more up to ``high``
        self.high = high
        self.live = expand([row for row in rows if row[1] != NOTHING])
        self.refused: list[Dead] = [
            (row, str(orjson.loads(row[2])["reason"]))
            for row in self.live
            if row[1] == REFUSED_KIND
        ]
        self.sent = [r for r in self.live if r[1] != REFUSED_KIND] if self.refused else self.live
        self._query: GroupQuery | None = None

    def query(self, instance: str) -> GroupQuery:
        """Its query (:func:`_query`), made once: ahead, or when it is sent."""
        if self._query is None:
            self._query = _query(self.conn, self.sent, instance)
        return self._query


def _first_held(rows: list[Row]) -> int | None:
    """Where the first held event is (one resolved only once what came before it is in)."""
    return next((i for i, row in enumerate(rows) if row[1] == HELD), None)


def _query(conn: psycopg.AsyncConnection[Any], rows: list[Row], instance: str) -> GroupQuery:
    """Rows as one query: folded, kind by kind (:data:`.sql.KIND_ORDER`)."""
    ordered = sorted(fold.fold(rows), key=lambda r: KIND_ORDER.get(r[1], -1))
    kinds = [
        (kind, [(s, p) for s, _k, p in same])
        for kind, same in itertools.groupby(ordered, key=lambda r: r[1])
    ]
    return group_query(conn, kinds, instance)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Writer:
    """Journal and commit what the ledger's callers queue; counters for ``stats()``."""

    def __init__(
        self,
        config: RecorderConfig,
        journal: Journal,
        *,
        resolve: Resolver,
        load_state: Callable[[int], object],
        state_loaded: Callable[[], bool],
    ) -> None:
        self._config = config
        self.journal = journal
        self._resolve = resolve
        self._load_state = load_state
        self._state_loaded = state_loaded
        self.queue: collections.deque[Queued] = collections.deque()
        self._tail: collections.deque[Row] = collections.deque()
        # Written on the loop thread only (read anywhere for stats).
        self.parked = True
        self.base_seq = 0
        self.done_seq = 0
        self.pending_events = 0
        self.pending_bytes = 0
        self.committed = 0
        self.batches = 0
        self.dead = 0
        self.pg_connected = 0
        self.pg_errors = 0
        self.snapshots_replaced = 0
        self.conflicts = 0  # group commits retried after losing a race to another process
        self.journal_errors = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_SAMPLES)
        self.journal_latencies: collections.deque[float] = collections.deque(
            maxlen=_LATENCY_SAMPLES
        )
        self.done_cond = threading.Condition()  # done_seq moved (flush)
        self.journaled_cond = threading.Condition()  # journal.last_seq moved (wait_journaled)
        self.wake_soon: Callable[..., Any] | None = None
        self._work: asyncio.Event | None = None
        self._journaled: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self.flushing = 0  # callers waiting in flush(), counted under done_cond
        # A group smaller than this waits commit_interval_ms to grow. A journal batch's
        # worth means the callers are in a burst: waiting would only let the journaler's
        # next batch hold the loop first while PostgreSQL sits idle.
        self._grown = min(config.commit_max_events, _JOURNAL_BATCH)
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._next: _Group | None = None  # made while the group before it was sent
        self._checkpoint: asyncio.Future[None] | None = None

    def open(self) -> None:
        """Open the journal and take its counts (before the loop runs)."""
        self.journal.open()
        self.base_seq = self.journal.last_seq
        count, size, first = self.journal.pending_stats()
        self.pending_events, self.pending_bytes = count, size
        self.done_seq = first - 1 if first is not None else self.base_seq

    async def start_tasks(self) -> None:
        self._work = asyncio.Event()
        self._journaled = asyncio.Event()
        self._journaled.set()  # replay whatever the journal holds
        self._hurry = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._journal_loop()),
            loop.create_task(self._commit_loop()),
        ]

    async def stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # What the deque still holds was accepted: journal it before leaving.
        while self.queue:
            self._journal_batch()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        self.journal.close()

    def wake(self) -> None:
        assert self._work is not None
        self._work.set()

    def hurry(self) -> None:
        """The group being gathered goes now (a flush waits for it, or it has grown)."""
        assert self._hurry is not None
        self._hurry.set()

    # -- journal -------------------------------------------------------------------------

    async def _journal_loop(self) -> None:
        assert self._work is not None
        delay = BACKOFF_START
        while True:
            if not self.queue:
                self.parked = True
                if not self.queue:
                    await self._work.wait()
                self._work.clear()
                self.parked = False
            try:
                self._journal_batch()
                delay = BACKOFF_START
            except Exception as exc:  # disk full, I/O error: keep the events, retry
                self.journal_errors += 1
                log.error("ledger journal write failed (will retry): %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
            await asyncio.sleep(0)

    def _journal_batch(self) -> None:
        batch: list[Queued] = []
        pop = self.queue.popleft
        with contextlib.suppress(IndexError):
            for _ in range(_JOURNAL_BATCH):
                batch.append(pop())
        if not batch:
            return
        for i, (kind, event, at) in enumerate(batch):
            if callable(event):  # record_log_later; built once, even if the append is retried
                batch[i] = (kind, _built(event), at)
        rows: list[tuple[str, bytes]] = []
        for kind, event, _at in batch:
            if kind == MANY:  # a fill and the trade it closes: never split
                rows.extend(encode_event(k, e) for k, e in event)
            else:
                rows.append(encode_event(kind, event))
        try:
            first, _last = self.journal.append(rows)
        except BaseException:
            self.queue.extendleft(reversed(batch))
            raise
        tail = self._tail
        if len(tail) + len(rows) > _TAIL_ROWS:
            tail.clear()
        else:
            tail.extend((seq, kind, payload) for seq, (kind, payload) in enumerate(rows, first))
        if fault.ARMED:
            fault.reached("journaled")
        with self.journaled_cond:
            self.journaled_cond.notify_all()
        self.journal_latencies.append((time.monotonic() - batch[0][2]) * 1000)
        self.pending_bytes += sum(len(payload) for _kind, payload in rows)
        self.pending_events += len(rows)
        assert self._journaled is not None
        self._journaled.set()
        if self.journal.last_seq - self.done_seq >= self._grown:
            self.hurry()  # the group the committer lets grow has grown

    # -- commit --------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        assert self._journaled is not None
        assert self._hurry is not None
        interval = self._config.commit_interval_ms / 1000
        limit = self._config.commit_max_events
        while True:
            if self.done_seq >= self.journal.last_seq:
                self._journaled.clear()
                await self._journaled.wait()
            if self.journal.last_seq - self.done_seq < self._grown and not self.flushing:
                # Let the group grow, unless a flush is waiting for it. (Not wait_for: on
                # Python 3.11 it can swallow a cancellation that meets the event being set.)
                self._hurry.clear()
                timer = asyncio.get_running_loop().call_later(interval, self._hurry.set)
                try:
                    await self._hurry.wait()
                finally:
                    timer.cancel()
            conn = await self._connection()
            group = self._made_ahead(conn)
            if group is None:
                high = self.journal.last_seq
                rows, everything = self._pending(self.done_seq, limit)
                first_held = _first_held(rows)
                if first_held is not None and (first_held > 0 or not self._state_loaded()):
                    # What came before a held event is in PostgreSQL before it is resolved
                    # (it may read it); the rest waits for PostgreSQL's state.
                    rows, everything = rows[:first_held], False
                    if not rows:
                        await asyncio.sleep(BACKOFF_CAP)
                        continue
            try:
                if group is None:
                    if first_held == 0:
                        rows = await self._resolve(rows)
                        self._retail(rows)
                    group = _Group(conn, rows, everything, high)
                if fault.ARMED:
                    fault.reached("commit")
                dead = await self._commit(conn, group)
                if fault.ARMED:
                    fault.reached("committed")
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if _transient(exc):  # nothing committed; the same group again, soon
                    self.conflicts += 1
                    log.info("ledger commit met another writer, retrying: %s", exc)
                    await asyncio.sleep(BACKOFF_START)
                    continue
                await self._disconnected(exc)
                continue
            except psycopg.errors.UniqueViolation as exc:
                if not _transient(exc):
                    raise
                self.conflicts += 1
                log.info("ledger commit met another writer, retrying: %s", exc)
                await asyncio.sleep(BACKOFF_START)
                continue
            except Exception as exc:  # e.g. schema missing: systemic, not one event
                self.pg_errors += 1
                log.error(
                    "ledger commit failed, will retry: %s: %s", type(exc).__name__, redact(str(exc))
                )
                await self._disconnected(exc)
                await asyncio.sleep(BACKOFF_CAP)
                continue
            rows = group.rows
            done = group.high if group.everything else rows[-1][0]
            if rows:
                forget = functools.partial(self.journal.done, rows[-1][0], dead)
                await self.until_journaled("forget", forget)
                self._maybe_checkpoint()
                tail = self._tail
                while tail and tail[0][0] <= done:
                    tail.popleft()
            self.pending_events -= len(rows)
            self.pending_bytes -= sum(len(r[2]) for r in rows)
            self.committed += len(group.live) - len(dead)
            self.dead += len(dead)
            with self.done_cond:
                self.done_seq = done
                self.done_cond.notify_all()

    async def until_journaled(self, what: str, write: Callable[[], None]) -> None:
        """A journal write that must land before the committer goes on (the state or the
        dead letters already moved past it): retried with backoff while the journal
        refuses it (disk full, I/O error), as the journaler retries its appends."""
        delay = BACKOFF_START
        while True:
            try:
                write()
                return
            except Exception as exc:
                self.journal_errors += 1
                log.error("ledger journal %s failed (will retry): %s", what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)

    def _pending(self, after: int, limit: int) -> tuple[list[Row], bool]:
        """The rows to commit after seq ``after``, at most ``limit`` and about
        ``_GROUP_BYTES``, and whether they are all the journal holds: from the tail if it
        follows on, else from the journal (a start with a backlog, or a tail dropped while
        PostgreSQL was away)."""
        tail = self._tail
        if not (tail and tail[0][0] == self.done_seq + 1):
            rows, more = self.journal.pending(after, limit, _GROUP_BYTES)
            return rows, not more
        skip = after - self.done_seq
        rows = list(itertools.islice(tail, skip, skip + limit))
        size = 0
        for i, row in enumerate(rows):
            size += len(row[2])
            if size > _GROUP_BYTES and i:
                return rows[:i], False
        return rows, len(rows) < limit

    def _retail(self, rows: list[Row]) -> None:
        """Resolved held rows replace their tail copies (a retried group must not resolve
        them twice)."""
        tail = self._tail
        if tail and rows and tail[0][0] == rows[0][0]:
            for i, row in enumerate(rows):
                tail[i] = row

    def _maybe_checkpoint(self) -> None:
        """Start a journal checkpoint on a worker thread once the WAL is big enough."""
        idle = self._checkpoint is None or self._checkpoint.done()
        if idle and self.journal.wal_bytes() >= _CHECKPOINT_BYTES:
            loop = asyncio.get_running_loop()
            self._checkpoint = loop.run_in_executor(None, self.journal.checkpoint)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        delay = BACKOFF_START
        while self._conn is None or self._conn.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._config.pg_conninfo, autocommit=True, connect_timeout=5
                )
                try:
                    await conn.execute(SESSION)
                except psycopg.Error:
                    await conn.close()
                    raise
                self._conn = conn
            except psycopg.Error as exc:
                self.pg_connected = 0
                self.pg_errors += 1
                log.debug(
                    "ledger cannot reach PostgreSQL at %s: %s",
                    redact(self._config.pg_dsn),
                    redact(str(exc)).strip(),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            self.pg_connected = 1
            if not self._state_loaded():
                await asyncio.get_running_loop().run_in_executor(None, self._load_state, 5)
        return self._conn

    async def _disconnected(self, exc: Exception) -> None:
        self.pg_connected = 0
        self.pg_errors += 1
        log.warning(
            "ledger lost PostgreSQL (%s); events stay journaled and will be replayed",
            redact(str(exc)).strip(),
        )
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    def _made_ahead(self, conn: psycopg.AsyncConnection[Any]) -> _Group | None:
        """The group made while the one before it was in PostgreSQL, if it is still the
        one to send: it follows on, and it is a full group, or nothing came since."""
        group, self._next = self._next, None
        if group is None or group.conn is not conn or group.rows[0][0] != self.done_seq + 1:
            return None
        small = group.everything and len(group.rows) < self._grown
        if small and group.high != self.journal.last_seq:  # more came: one larger group
            return None
        return group

    def _make_next(self, group: _Group, made: list[_Group]) -> None:
        """Make the group after ``group`` (into ``made``) while ``group`` is in PostgreSQL;
        none if it starts with a held event (resolved only once ``group`` is committed) or
        cannot be made here (the loop makes it again, where a refusal is handled)."""
        with contextlib.suppress(*REFUSED, sqlite3.Error):  # anything else: the loop says it
            high = self.journal.last_seq
            rows, everything = self._pending(group.rows[-1][0], self._config.commit_max_events)
            first_held = _first_held(rows)
            if first_held is not None:
                rows, everything = rows[:first_held], False
            if rows:
                ahead = _Group(group.conn, rows, everything, high)
                ahead.query(self._config.instance_name)
                made.append(ahead)

    async def _commit(self, conn: psycopg.AsyncConnection[Any], group: _Group) -> list[Dead]:
        """Commit one group; if PostgreSQL refuses an event, in parts (:meth:`_commit_split`).

        While the group is in PostgreSQL the next one is made (:meth:`_make_next`).
        ``refused`` rows (``Ledger.record_refused``) are dead letters from the start.
        """
        if not group.sent:
            return group.refused
        started = time.perf_counter()
        made: list[_Group] = []
        try:
            query = group.query(self._config.instance_name)
            # Runs once the query is sent: the send below starts at once and yields only to
            # wait for the socket or the results (a task would start after whatever else is
            # ready, such as the journaler's next batch).
            making = asyncio.get_running_loop().call_soon(self._make_next, group, made)
            try:
                self._replaced(await send_group(conn, query))
            finally:
                making.cancel()
            self._next = made[0] if made else None
            dead: list[Dead] = []
        except REFUSED as exc:
            if conn.broken:
                raise psycopg.OperationalError("connection lost during commit") from None
            if _transient(exc):
                raise
            dead = await self._commit_split(conn, group.sent)
        self.latencies.append((time.perf_counter() - started) * 1000)
        self.batches += 1
        return dead + group.refused

    async def _commit_split(
        self, conn: psycopg.AsyncConnection[Any], rows: list[Row]
    ) -> list[Dead]:
        """A group PostgreSQL refused, again in halves under savepoints, down to the events it
        refuses: k of them among n cost about 2k·log2(n/8) + 8k sends rather than n (a
        group of 2,000 one event at a time took a second)."""
        dead: list[Dead] = []
        instants: list[Any] = []
        async with conn.transaction():
            # A deferred constraint would refuse at COMMIT, past every savepoint, and the
            # group again on every retry: checked at each statement here instead.
            await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for part in _parts(rows):
                await self._settle(conn, part, dead, instants)
        self._replaced(instants)
        return dead

    async def _settle(
        self,
        conn: psycopg.AsyncConnection[Any],
        rows: list[Row],
        dead: list[Dead],
        instants: list[Any],
    ) -> None:
        """Write ``rows`` under a savepoint (several as one group query), or else their parts
        (:func:`_parts`), or dead-letter the one event left."""
        instance = self._config.instance_name
        try:
            async with conn.transaction():
                if len(rows) == 1:
                    seq, kind, payload = rows[0]
                    instants += await write(conn, kind, [(seq, payload)], instance)
                else:
                    instants += await send_group(conn, _query(conn, rows, instance))
            if fault.ARMED:
                fault.reached("settled")
        except REFUSED as exc:
            if _transient(exc):  # another process won a race: retry the group
                raise
            if len(rows) > 1:
                for part in _parts(rows):
                    await self._settle(conn, part, dead, instants)
                return
            seq, kind, _payload = rows[0]
            reason = f"{type(exc).__name__}: {str(exc).strip()}"
            dead.append((rows[0], reason))
            log.error(
                "ledger event %d (%s) refused by PostgreSQL, dead-lettered: %s", seq, kind, reason
            )
            letter = dumps(dead_letter_log(self.journal.instance, rows[0], reason))
            await write(conn, "log", [(seq, letter)], instance)

    def _replaced(self, instants: list[Any]) -> None:
        """Snapshots that replaced a different one of the same instant: counted and said."""
        if instants:
            self.snapshots_replaced += len(instants)
            log.warning(
                "ledger: %d portfolio snapshot(s) replaced a different one of the same instant "
                "(another recorder on this database, or one instant recorded twice): %s",
                len(instants),
                ", ".join(str(t) for t in instants[:5]),
            )


# A refused part this small is written again an event at a time: halving it further
# would cost more sends than its events (when most of them are refused, each level of
# halves sends them all again).
_ALONE = 8


def _parts(rows: list[Row]) -> list[list[Row]]:
    """A refused part's parts: its halves, or its events one by one."""
    if len(rows) <= _ALONE:
        return [[row] for row in rows]
    half = len(rows) // 2
    return [rows[:half], rows[half:]]


# A race with another process that a retry resolves: the one-active configuration
# (two processes activating theirs at once), serialization failures, deadlocks.
_ONE_ACTIVE_CONFIG = "uq_configurations_one_active"


def _transient(exc: Exception) -> bool:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return exc.diag.constraint_name == _ONE_ACTIVE_CONFIG
    return isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected))


def _built(build: Callable[[], LogEntry]) -> LogEntry:
    """A deferred log entry; one that cannot be built leaves a row saying so (seqs stay dense)."""
    try:
        return build()
    except Exception as exc:
        return LogEntry(
            source_module=SOURCE,
            log_level="ERROR",
            message=f"a log record could not be recorded: {type(exc).__name__}: {exc}"[:2000],
        )
