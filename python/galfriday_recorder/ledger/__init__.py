"""The ledger: validated events in, a crash-safe journal, group commits to PostgreSQL.

Caller side (any thread): a recording call checks the record against the
in-memory order and signal state machines (:mod:`.state`) under a short lock
that no I/O ever holds, appends the events it causes to a deque and returns.
The first event after an idle spell wakes the background loop with one
``call_soon_threadsafe``; a busy writer just keeps draining.

Background side (:mod:`.writer`, on the
:class:`~galfriday_recorder.runtime.BackgroundLoop`): the journaler makes
events durable in the SQLite journal (:mod:`.journal`, the acknowledgement
point) and the committer writes them to PostgreSQL in group transactions with
idempotent statements (:mod:`.sql`). Until PostgreSQL has been read once (a
start while it is down), calls about what only it knows are held
(:mod:`.held`); a start rebuilds the state from PostgreSQL (:mod:`.recovery`)
and then from the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import orjson
import psycopg

from ..config import RecorderConfig
from ..errors import LedgerBackpressure, RecorderError, ValidationError
from ..executions import OrderFills
from ..loghandler import LedgerLogHandler
from ..records import (
    Configuration,
    Fill,
    LogEntry,
    Order,
    OrderUpdate,
    PortfolioSnapshot,
    Signal,
    SignalStatusUpdate,
    Trade,
    canonical_json,
    evidence,
)
from ..redaction import redact
from ..runtime import BackgroundLoop
from .held import Held, apply_held, fill_keys, held_refusal, missing_signal, order_keys
from .journal import GROUP, Journal, Row, encode_event, encode_group
from .recovery import RecoveryState, Scope, load_recovery_state, load_signals, read_start
from .sql import KIND_ORDER, STATEMENTS, STORED_FILLS, Bulk
from .state import ORDER_TRANSITIONS, LedgerState, Out, SignalNotLoaded, replayed_fill_id
from .writer import HELD, MANY, NOTHING, REFUSED_KIND, Writer, percentile

log = logging.getLogger(__name__)
T = TypeVar("T")

# Estimated journal bytes of an event still in the deque (for the size cap).
_QUEUED_EVENT_BYTES = 512
_REPLAY_BATCH = 1_000


class Ledger:
    """The relational ledger; see the module docstring for how events travel."""

    def __init__(self, config: RecorderConfig, loop: BackgroundLoop | None = None) -> None:
        self._config = config
        self._owns_loop = loop is None
        self._bg = loop if loop is not None else BackgroundLoop("galfriday-ledger")
        self._lock = threading.Lock()
        self._state = LedgerState()
        self._held = Held()
        self._writer = Writer(
            config,
            Journal(config.journal_path),
            resolve=self._resolve_held,
            load_state=self._load_pg_state_later,
            state_loaded=lambda: self._state.loaded,
        )
        self._queue = self._writer.queue
        self._started = False
        self._closed = False
        # Counters, caller side (under _lock).
        self._accepted = 0
        self._rejected = 0
        self._log_handlers: list[LedgerLogHandler] = []

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Open the journal, rebuild state (PostgreSQL if reachable, then the journal), start."""
        if self._started:
            return
        if self._closed:
            raise RecorderError("a closed ledger cannot be restarted; make a new one")
        self._writer.open()
        # The journal first: its fills join their cycles once PostgreSQL says which it
        # already holds (a crash after its commit, before the journal forgot them).
        self._replay_journal_into_state()
        rederived = self._load_pg_state(connect_timeout=2)
        self._bg.start()
        self._writer.wake_soon = self._bg.loop.call_soon_threadsafe
        self._bg.submit(self._writer.start_tasks()).result()
        self._started = True
        self._push_rederived(rederived)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted before the call, and everything derived from it
        (the trade of a held fill once resolved, the log row of a refused one), is
        committed to PostgreSQL or dead-lettered.

        Returns False, logging what is still missing, if that did not happen within
        ``timeout`` seconds.
        """
        if not self._started:
            return self._writer.pending_events == 0
        w = self._writer
        with w.done_cond:
            w.flushing += 1
        try:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to hurry
                assert w.wake_soon is not None
                w.wake_soon(w.hurry)
            if self._wait(w.done_cond, lambda w, target: w.done_seq >= target, timeout):
                return True
        finally:
            with w.done_cond:
                w.flushing -= 1
        log.warning(
            "ledger flush timed out: %d event(s) not yet in PostgreSQL (%d held for its state, "
            "%d not yet journaled); PostgreSQL %s",
            w.pending_events + len(self._queue),
            self._held.pending,
            len(self._queue),
            "connected" if w.pg_connected else "unreachable",
        )
        return False

    def wait_journaled(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted so far is acknowledged: in the journal, where a
        crash or ``kill -9`` cannot lose it. False if not within ``timeout`` seconds."""
        if not self._started:
            return not self._queue
        writer = self._writer
        return self._wait(
            writer.journaled_cond, lambda w, target: w.journal.last_seq >= target, timeout
        )

    def _wait(
        self,
        cond: threading.Condition,
        reached: Callable[[Writer, int], bool],
        timeout: float | None,
    ) -> bool:
        if self._bg.in_loop_thread():
            raise RecorderError("waiting on the ledger's own loop thread would deadlock")
        with self._lock:
            target = self._writer.base_seq + self._accepted
        deadline = None if timeout is None else time.monotonic() + timeout
        writer = self._writer
        with cond:
            while not reached(writer, target):
                if self._closed:  # the writer is gone: nothing more will happen here
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                cond.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``), then stop the writer; what is left stays journaled."""
        if not self._started or self._closed:
            self._closed = True
            return self._writer.pending_events == 0
        flushed = self.flush(timeout)
        with self._lock:
            self._closed = True
        for cond in (self._writer.done_cond, self._writer.journaled_cond):
            with cond:  # other threads waiting in flush() or wait_journaled() give up now
                cond.notify_all()
        with contextlib.suppress(RuntimeError):
            self._bg.submit(self._writer.stop_tasks()).result(timeout=10)
        if self._owns_loop:
            self._bg.stop()
        return flushed

    def stats(self) -> dict[str, int | float]:
        """Counters and latencies (last 4096 batches): ``journal_latency_ms_*`` is call to
        journal commit of the oldest event in a batch (the acknowledgement delay),
        ``commit_latency_ms_*`` the duration of one PostgreSQL group transaction."""
        w = self._writer
        latencies = list(w.latencies)
        journal_latencies = list(w.journal_latencies)
        return {
            "accepted": self._accepted,
            "rejected": self._rejected,
            "duplicates_ignored": self._state.duplicates,
            "queue_depth": len(self._queue),
            "journal_depth": w.pending_events,
            "journal_pending_bytes": w.pending_bytes,
            "journal_bytes": w.journal.file_bytes(),
            "journal_errors": w.journal_errors,
            "journal_latency_ms_p50": percentile(journal_latencies, 0.50),
            "journal_latency_ms_p99": percentile(journal_latencies, 0.99),
            "committed": w.committed,
            "commit_batches": w.batches,
            "commit_latency_ms_p50": percentile(latencies, 0.50),
            "commit_latency_ms_p99": percentile(latencies, 0.99),
            "dead_letters": w.dead,
            "held": self._held.pending,
            "log_records_dropped": sum(h.dropped for h in self._log_handlers),
            "pg_connected": w.pg_connected,
            "pg_errors": w.pg_errors,
            "commit_conflicts_retried": w.conflicts,
            "snapshots_replaced": w.snapshots_replaced,
        }

    # -- recording (caller thread) ---------------------------------------------------

    def _admit(self) -> None:
        """Refuse before any state changes: not running, or the journal at its cap."""
        if not self._started or self._closed:
            raise RecorderError("the ledger is not running (start() it; closed ones stay closed)")
        w = self._writer
        queued = len(self._queue) * _QUEUED_EVENT_BYTES
        if w.pending_bytes + queued >= self._config.journal_max_bytes:
            self._rejected += 1
            raise LedgerBackpressure(
                f"ledger journal at its cap of {self._config.journal_max_bytes} bytes "
                f"({w.pending_events} events waiting for PostgreSQL); event refused"
            )

    def _push(self, kind: str, event: Any, count: int = 1) -> None:
        """One queue entry (``count`` events in it, for the acknowledgement target)."""
        self._queue.append((kind, event, time.monotonic()))
        self._accepted += count
        writer = self._writer
        if writer.parked:
            writer.parked = False
            assert writer.wake_soon is not None
            writer.wake_soon(writer.wake)

    def _push_all(self, out: Out) -> None:
        """The events of one call, journaled in one transaction (a fill with its trade)."""
        if len(out) == 1:
            kind, event = out[0]
            self._push(kind, event)
        elif out:
            self._push(MANY, out, len(out))

    def _holding(self) -> bool:
        """Whether a call may have to be held (the common case answers no at once)."""
        return not self._state.loaded or bool(self._held.keys)

    def _hold(self, call: str, record: Any, keys: list[str], *, known: bool) -> bool:
        """Hold an event PostgreSQL's state is needed for, or that follows one held."""
        if not self._held.blocks(keys) and (known or self._state.loaded):
            return False
        self._hold_now(call, record, keys)
        return True

    def _hold_now(self, call: str, record: Any, keys: list[str]) -> None:
        """Journal a call the writer validates once it has read what it needs (see held.py)."""
        self._held.hold(keys)
        self._push(HELD, (record, {"held": call, "held_keys": keys}))

    def record_signal(self, signal: Signal) -> None:
        _require(signal, Signal, "signal")
        out: Out = []
        with self._lock:
            self._admit()
            self._state.record_signal(signal, out)
            self._push_all(out)

    def update_signal_status(
        self,
        signal_id: uuid.UUID,
        status: str,
        rejection_reason: str | None = None,
        risk_check_details: dict[str, Any] | None = None,
    ) -> None:
        update = SignalStatusUpdate(
            signal_id=signal_id,
            status=status,
            rejection_reason=rejection_reason,
            risk_check_details=risk_check_details,
        )
        out: Out = []
        keys = [f"s:{update.signal_id}"]
        with self._lock:
            self._admit()
            if self._holding() and self._hold(
                "signal_status", update, keys, known=update.signal_id in self._state.signals
            ):
                return
            try:
                self._state.signal_status(update, out)
            except SignalNotLoaded:  # decided before a restart, or forgotten: read it first
                self._hold_now("signal_status", update, keys)
            finally:
                self._push_all(out)

    def record_order(self, order: Order) -> None:
        _require(order, Order, "order")
        out: Out = []
        with self._lock:
            self._admit()
            self._state.record_order(order, out)
            self._push_all(out)

    def update_order(
        self,
        client_order_id: uuid.UUID,
        status: str,
        *,
        exchange_order_id: str | None = None,
        submitted_at: datetime | None = None,
        error_message: str | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        fields: dict[str, Any] = {} if updated_at is None else {"updated_at": updated_at}
        update = OrderUpdate(
            client_order_id=client_order_id,
            status=status,
            exchange_order_id=exchange_order_id,
            submitted_at=submitted_at,
            error_message=error_message,
            **fields,
        )
        out: Out = []
        with self._lock:
            self._admit()
            if self._holding():
                state = self._state.orders.get(update.client_order_id)
                keys = order_keys(update.client_order_id, update.exchange_order_id, state)
                if self._hold("order_update", update, keys, known=state is not None):
                    return
            try:
                self._state.order_update(update, out)
            finally:
                self._push_all(out)

    def record_fill(self, fill: Fill) -> None:
        """Record an execution; ignored (not doubled) if its ``(exchange, fill_id)`` is known."""
        if not isinstance(fill, Fill):
            _require(fill, Fill, "fill")
        out: Out = []
        with self._lock:
            self._admit()
            if not self._state.loaded or self._held.keys:  # _holding(), without the call
                state, known = self._state.fill_order(fill)
                if state is not None and fill.fill_id not in state.fill_ids:
                    try:  # what its order in memory refuses, refused at the call, held or not
                        self._state.check_fill(state, fill, out)
                    finally:
                        self._push_all(out)
                if self._hold("fill", fill, fill_keys(fill, state), known=known):
                    return
            try:
                self._state.fill(fill, out)
            except SignalNotLoaded:  # its cycle is rebuilt from PostgreSQL's fills first
                state, _known = self._state.fill_order(fill)
                self._hold_now("fill", fill, fill_keys(fill, state))
            finally:
                self._push_all(out)

    def record_trade(self, trade: Trade) -> None:
        """Record a trade cycle the bot computed itself (idempotent on ``trade_id``)."""
        self._record_plain("trade", trade, Trade)

    def record_portfolio_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        self._record_plain("snapshot", snapshot, PortfolioSnapshot)

    def record_log(self, entry: LogEntry) -> None:
        self._record_plain("log", entry, LogEntry)

    def record_log_later(self, build: Callable[[], LogEntry]) -> None:
        """Queue a log entry that the journaler builds (the logging handler's cheap path)."""
        if not callable(build):
            raise ValidationError("build", f"must be callable, not {type(build).__name__}")
        with self._lock:
            self._admit()
            self._push("log", build)

    def record_configuration(self, content: Mapping[str, Any]) -> str:
        """Store a configuration and make it the single active one; return its SHA-256."""
        if not isinstance(content, Mapping):
            raise ValidationError("content", f"must be a dict, not {type(content).__name__}")
        canonical = canonical_json(content)
        config_hash = hashlib.sha256(canonical).hexdigest()
        self._record_plain(
            "config",
            Configuration(config_hash=config_hash, config_content=orjson.loads(canonical)),
            Configuration,
        )
        return config_hash

    def _record_plain(self, kind: str, record: Any, cls: type) -> None:
        _require(record, cls, kind)
        with self._lock:
            self._admit()
            self._push(kind, record)

    def log_handler(self, level: int = logging.INFO) -> LedgerLogHandler:
        """A handler for ``logging``; what it cannot record shows in ``stats()``."""
        handler = LedgerLogHandler(self, level)
        self._log_handlers.append(handler)
        return handler

    def record_refused(self, what: str, event: Mapping[str, Any], reason: str) -> None:
        """Keep something a caller could not record (the bot bridge's refusals) as a dead
        letter: journaled now, moved to ``dead_letters`` by the committer, never written.
        ``event`` is kept as it is now (see :func:`~galfriday_recorder.records.evidence`)."""
        kept = evidence(event)
        with self._lock:
            self._admit()
            self._push(REFUSED_KIND, {"what": what, "reason": reason, "event": kept})

    def park(self, fill_key: str, exchange_order_id: str, payload: bytes) -> None:
        """Journal a fill that waits for its order (the loop thread writes it, at once)."""
        self._bg.loop.call_soon_threadsafe(
            self._writer.journal.park, fill_key, exchange_order_id, payload, time.time()
        )

    def unpark(self, fill_keys: list[str]) -> None:
        if fill_keys:
            self._bg.loop.call_soon_threadsafe(self._writer.journal.unpark, fill_keys)

    def parked(self) -> list[tuple[str, str, bytes, float]]:
        """The journaled waiting fills: (key, exchange order id, payload, wall-clock time)."""
        return self._bg.submit(_call(self._writer.journal.parked)).result()

    # Views of the state machines for the bot bridge, which reconciles reports against them.
    def order_view(self, client_order_id: uuid.UUID) -> tuple[Order, str, OrderFills] | None:
        """The order as recorded, its status now and what its fills add up to (a copy)."""
        with self._lock:
            state = self._state.orders.get(client_order_id)
            return None if state is None else (state.order, state.status, state.totals.copy())

    def order_by_exchange_id(self, exchange_order_id: str) -> uuid.UUID | None:
        with self._lock:
            return self._state.by_exchange_id.get(exchange_order_id)

    def signal_view(self, signal_id: uuid.UUID) -> Signal | None:
        with self._lock:
            state = self._state.signals.get(signal_id)
            return None if state is None else state.signal

    def trade_view(self, signal_id: uuid.UUID) -> Trade | None:
        """The last trade this process derived for a signal (recent ones only)."""
        with self._lock:
            return self._state.recent_trades.get(signal_id)

    def load_recovery_state(self, scope: Scope = "own") -> RecoveryState:
        """Flush what is pending (briefly), then read the recovery view from PostgreSQL:
        this recorder's open orders and cycles (``scope="own"``: its ``instance_name``'s
        rows and those written before instances were recorded) or everyone's (``"all"``)."""
        if scope not in ("own", "all"):
            raise ValidationError("scope", f"must be 'own' or 'all', not {scope!r}")
        self.flush(timeout=10)
        instance = self._config.instance_name if scope == "own" else None
        with psycopg.connect(self._config.pg_conninfo, connect_timeout=10) as conn:
            return load_recovery_state(conn, instance)

    def dead_letters(self) -> list[tuple[int, str, bytes, str]]:
        """Events PostgreSQL refused: (seq, kind, payload, error), read on the loop thread."""
        return self._bg.submit(_call(self._writer.journal.dead_letters)).result()

    # -- state from PostgreSQL and the journal (start, or the loop thread) ------------------

    def _load_pg_state(self, connect_timeout: int) -> Out:
        """Seed the state machines from PostgreSQL, then apply the journal replay that waited
        for it; return what to write: the trades stored fills close that no row holds, and
        repairs of signals' untraded quantities (:func:`.recovery.read_start`)."""
        with self._lock:
            waiting = [replayed_fill_id(item) for item in self._state.deferred]
            missing = self._state.missing_signals()
        try:
            with psycopg.connect(
                self._config.pg_conninfo, connect_timeout=connect_timeout, autocommit=True
            ) as conn:
                own = self._config.instance_name
                recovered, rederived = read_start(conn, own)
                stored = set(conn.execute(STORED_FILLS, ([f for f in waiting if f],)).fetchall())
                extra = load_signals(conn, missing - {s.signal_id for s in recovered.signals})
        except psycopg.Error as exc:
            log.warning(
                "ledger state not loaded from PostgreSQL yet (%s): %s",
                redact(self._config.pg_dsn),
                redact(str(exc)).strip(),
            )
            return []
        with self._lock:
            self._state.take_signals(extra.signals, extra.cycles)
            self._state.seed(recovered, stored)
        trades = sum(kind == "derived_trade" for kind, _event in rederived)
        if rederived:
            log.warning(
                "ledger: %d trade(s) that stored fills close had no trades row, re-derived; "
                "%d signal(s) whose untraded quantity needed setting again",
                trades,
                len(rederived) - trades,
            )
        return rederived

    def _load_pg_state_later(self, connect_timeout: int) -> None:
        """The writer's first connection after a start without PostgreSQL."""
        self._push_rederived(self._load_pg_state(connect_timeout))

    def _push_rederived(self, events: Out) -> None:
        with self._lock:
            self._push_all(events)

    def _replay_journal_into_state(self) -> None:
        """Apply journaled, uncommitted events to the state machines (nothing is re-emitted)."""
        journal, after = self._writer.journal, self._writer.done_seq
        while True:
            rows, more = journal.pending(after, _REPLAY_BATCH)
            for _seq, kind, payload in rows:
                with contextlib.suppress(RecorderError, ValueError, KeyError, TypeError):
                    p = orjson.loads(payload)
                    if kind == HELD:  # validated once PostgreSQL's state is in
                        self._held.hold(p["held_keys"])
                    elif kind == GROUP:
                        for k, event in p:
                            self._state.replay(k, event)
                    else:
                        self._state.replay(kind, p)
            if not more:
                return
            after = rows[-1][0]

    async def _resolve_held(self, rows: list[Row]) -> list[Row]:
        """Validate held events now that PostgreSQL's state is in, in journal order."""
        loop = asyncio.get_running_loop()
        stored, trades = await loop.run_in_executor(None, self._read_for_held, rows)
        rows, rewritten, refused = self._rewrite_held(rows, stored, trades)
        # The state machines have taken these events: resolving them again (a retry after
        # a failed rewrite) would find them applied and write nothing. So the rewrite waits
        # out a journal that refuses it (disk full) rather than fail the group.
        writer = self._writer
        await writer.until_journaled(
            "rewrite", functools.partial(writer.journal.rewrite, rewritten, refused)
        )
        writer.dead += len(refused)
        return rows

    def _read_for_held(self, rows: list[Row]) -> tuple[set[tuple[str, str]], list[Trade]]:
        """What resolving needs from PostgreSQL: which held fills it already has, and the
        signals (cycles rebuilt from their fills) held calls name that memory lacks."""
        held = [orjson.loads(payload) for _s, kind, payload in rows if kind == HELD]
        fills = [p for p in held if p["held"] == "fill"]
        with self._lock:
            missing = {
                sid for p in held if (sid := missing_signal(self._state, p["held"], p)) is not None
            }
        with psycopg.connect(self._config.pg_conninfo, connect_timeout=5, autocommit=True) as conn:
            ids = [p["fill_id"] for p in fills]
            stored = set(conn.execute(STORED_FILLS, (ids,)).fetchall()) if ids else set()
            loaded = load_signals(conn, missing)
        with self._lock:
            self._state.take_signals(loaded.signals, loaded.cycles)
        return stored, loaded.trades

    def _rewrite_held(
        self, rows: list[Row], stored: set[tuple[str, str]], trades: list[Trade]
    ) -> tuple[list[Row], list[Row], list[tuple[Row, str]]]:
        """Each held row becomes, in place (same seq), the events its call would have made,
        as one row (a fill and its trade commit together); one already applied becomes
        nothing; one refused goes to the dead letters and becomes the system_logs row
        saying why (its caller had no error). ``trades``: re-derived ones, with the first.
        Returns the rows to commit, the rewritten ones and the refused ones (for the
        journal)."""
        out_rows: list[Row] = []
        rewritten: list[Row] = []
        refused: list[tuple[Row, str]] = []
        writer = self._writer
        for row in rows:
            seq, kind, payload = row
            if kind != HELD:
                out_rows.append(row)
                continue
            held = orjson.loads(payload)
            call, keys = held.pop("held"), held.pop("held_keys")
            events: Out = [("derived_trade", trade) for trade in trades]
            trades = []
            with self._lock:
                self._held.release(keys)
                try:
                    apply_held(self._state, call, held, stored, events)
                except (RecorderError, ValueError, TypeError, KeyError) as exc:
                    refused.append((row, f"{type(exc).__name__}: {exc}"))
                    events.append(("log", held_refusal(seq, call, exc)))
            if not events:
                new: Row = (seq, NOTHING, payload)
            elif len(events) == 1:
                new = (seq, *encode_event(*events[0]))
            else:
                new = (seq, *encode_group(events))
            writer.pending_bytes += len(new[2]) - len(payload)
            rewritten.append(new)
            out_rows.append(new)
        return out_rows, rewritten, refused


async def _call(fn: Callable[[], T]) -> T:
    return fn()


def _require(record: Any, cls: type, name: str) -> None:
    if not isinstance(record, cls):
        raise ValidationError(name, f"expected {cls.__name__}, got {type(record).__name__}")


__all__ = ["KIND_ORDER", "ORDER_TRANSITIONS", "STATEMENTS", "Bulk", "Ledger", "encode_event"]
