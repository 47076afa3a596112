"""The ledger: validated events in, a crash-safe journal, group commits to PostgreSQL.

Caller side (any thread): a recording call checks the record against the
in-memory order and signal state machines under a short lock that no I/O ever
holds, appends the event to a deque and returns. The first event after an idle
spell wakes the background loop with one ``call_soon_threadsafe``; a busy
writer just keeps draining.

Background side (the :class:`~galfriday_recorder.runtime.BackgroundLoop`):

1. the *journaler* drains the deque into the SQLite journal, one transaction
   per batch, which is the acknowledgement point (see :mod:`.journal`);
2. the *committer* reads journaled events in order and writes them to
   PostgreSQL in group transactions (every ``commit_interval_ms`` or
   ``commit_max_events``, whichever first), one pipelined statement per event
   kind that takes the journal payloads as they are (see :class:`Bulk`), then
   deletes them from the journal.

Every write is idempotent on a natural key (``signal_id``, ``client_order_id``,
``(exchange, fill_id)``, ``trade_id``, ``log_id``, ``snapshot_timestamp``,
``config_hash``; order updates apply only if newer than ``orders.ledger_seq``),
so replaying the journal after a crash between the PostgreSQL commit and the
journal delete writes nothing twice. A batch PostgreSQL refuses with a data or
integrity error is retried event by event under savepoints: the offending event
moves to the journal's ``dead_letters`` table and a ``system_logs`` row says
why; the rest commits. Connection failures are retried with exponential backoff
(capped at 2 s) while the journal keeps growing up to ``journal_max_bytes``,
where new events raise :class:`LedgerBackpressure`.

Until PostgreSQL has been read once (a start while it is down), a fill or status
update for an order or signal only it knows is *held*: journaled as it comes,
and validated by the committer, in journal order, once the state is in; a
refusal then becomes a dead letter, since the caller has returned.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
import psycopg

from .config import RecorderConfig, redact
from .cycles import Cycle, FillOrder
from .errors import (
    IllegalTransition,
    LedgerBackpressure,
    RecorderError,
    UnknownOrder,
    ValidationError,
)
from .executions import OrderFills
from .journal import Journal, Row
from .loghandler import LedgerLogHandler
from .records import (
    ORDER_STATUSES,
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
    dumps,
    utcnow,
)
from .recovery import TERMINAL_ORDER_STATUSES, RecoveryState, load_recovery_state
from .runtime import BackgroundLoop

log = logging.getLogger(__name__)
T = TypeVar("T")

ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "PENDING_NEW": ORDER_STATUSES,  # the exchange may report anything first
    "NEW": frozenset(
        {"NEW", "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "REJECTED", "EXPIRED"}
    ),
    "PARTIALLY_FILLED": frozenset(
        {"PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "EXPIRED"}
    ),
    # A cancel can fail (back to NEW / PARTIALLY_FILLED) or lose the race to a fill.
    "PENDING_CANCEL": frozenset(
        {"PENDING_CANCEL", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"}
    ),
    # Terminal: only a repeated report of the same status.
    "FILLED": frozenset({"FILLED"}),
    "CANCELED": frozenset({"CANCELED"}),
    "REJECTED": frozenset({"REJECTED"}),
    "EXPIRED": frozenset({"EXPIRED"}),
}
SIGNAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "PROPOSED": frozenset({"PROPOSED", "APPROVED", "REJECTED"}),
    "APPROVED": frozenset({"APPROVED"}),
    "REJECTED": frozenset({"REJECTED"}),
}
_TERMINAL = frozenset(TERMINAL_ORDER_STATUSES)
# Decided signals and finished orders kept in memory for the state machines.
_KEEP_SIGNALS = 100_000
_KEEP_TERMINAL_ORDERS = 100_000
_KEEP_RECENT_TRADES = 10_000
# Estimated journal bytes of an event still in the deque (for the size cap).
_QUEUED_EVENT_BYTES = 512
_JOURNAL_BATCH = 1_000
_CHECKPOINT_BYTES = 4 * 1024 * 1024
_BACKOFF_START, _BACKOFF_CAP = 0.05, 2.0
_LATENCY_SAMPLES = 4096
_DEAD_LETTER_NAMESPACE = uuid.UUID("0b9c1f64-0d7e-4d8e-a1c3-62b4c1de7a55")
_SOURCE = "galfriday_recorder.ledger"
_FILL_FIELDS = tuple(f.name for f in dataclasses.fields(Fill))


# -- SQL: one entry per event kind --------------------------------------------------

Params = tuple[Any, ...]
Statement = tuple[str, Callable[[int, dict[str, Any]], Params]]
Event = tuple[int, bytes]  # journal seq, orjson payload


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


@dataclasses.dataclass(frozen=True)
class Bulk:
    """A whole group of one kind as one statement over ``json_to_recordset``.

    The journal payloads go to PostgreSQL as they are, as one JSON array (each
    object gains a ``seq`` key, the journal sequence number), and the server
    parses them: no per-row work in Python and one statement per kind and
    batch. ``columns`` declares the payload fields read (``name type, ...``);
    ``statement`` has ``{rows}`` where the record set goes.
    """

    columns: str
    statement: str

    @functools.cached_property
    def sql(self) -> str:
        return self.statement.format(
            rows=f"json_to_recordset(%s::json) AS u(seq bigint, {self.columns})"
        )

    @staticmethod
    def params(events: list[Event]) -> Params:
        body = b",".join(b'{"seq":%d,' % seq + payload[1:] for seq, payload in events)
        return ((b"[" + body + b"]").decode(),)


def _insert(table: str, columns: str, conflict: str) -> Bulk:
    names = ", ".join(c.split()[0] for c in columns.split(","))
    return Bulk(columns, f"INSERT INTO {table} ({names}) SELECT {names} FROM {{rows}} {conflict}")


_SIGNAL = _insert(
    "signals",
    "signal_id uuid, trading_pair text, exchange text, strategy_id text, side text, "
    "entry_type text, proposed_entry_price numeric, proposed_sl_price numeric, "
    "proposed_tp_price numeric, prediction_event_id uuid, prediction_value real, status text, "
    "rejection_reason text, risk_check_details jsonb, created_at timestamptz",
    "ON CONFLICT (signal_id) DO NOTHING",
)
# A signal changes status once (PROPOSED -> verdict); the last event per signal wins.
_SIGNAL_STATUS = Bulk(
    "signal_id uuid, status text, rejection_reason text, risk_check_details jsonb",
    "UPDATE signals s SET status = u.status, rejection_reason = u.rejection_reason, "
    "risk_check_details = COALESCE(u.risk_check_details, s.risk_check_details) "
    "FROM (SELECT DISTINCT ON (signal_id) * FROM {rows} ORDER BY signal_id, seq DESC) u "
    "WHERE s.signal_id = u.signal_id",
)
_ORDER = Bulk(
    "client_order_id uuid, exchange_order_id text, signal_id uuid, trading_pair text, "
    "exchange text, side text, order_type text, quantity_ordered numeric, limit_price numeric, "
    "stop_price numeric, status text, error_message text, exit_reason text, "
    "created_at timestamptz, submitted_at timestamptz, last_updated_at timestamptz, "
    "client_order_ref text",
    "INSERT INTO orders (client_order_id, exchange_order_id, signal_id, trading_pair, "
    "exchange, side, order_type, quantity_ordered, limit_price, stop_price, status, "
    "error_message, exit_reason, created_at, submitted_at, last_updated_at, ledger_seq, "
    "client_order_ref) "
    "SELECT client_order_id, exchange_order_id, signal_id, trading_pair, exchange, side, "
    "order_type, quantity_ordered, limit_price, stop_price, status, error_message, "
    "exit_reason, created_at, submitted_at, last_updated_at, seq, client_order_ref FROM {rows} "
    "ON CONFLICT (client_order_id) DO NOTHING",
)
# Successive updates of one order fold into one: the last status, the last value given
# for each field; applied only if newer than the row (a replay never moves it back).
_ORDER_UPDATE = Bulk(
    "client_order_id uuid, status text, exchange_order_id text, submitted_at timestamptz, "
    "error_message text, updated_at timestamptz",
    "UPDATE orders o SET status = u.status, "
    "exchange_order_id = COALESCE(u.exchange_order_id, o.exchange_order_id), "
    "submitted_at = COALESCE(u.submitted_at, o.submitted_at), "
    "error_message = COALESCE(u.error_message, o.error_message), "
    "last_updated_at = u.updated_at, ledger_seq = u.seq "
    "FROM (SELECT client_order_id, max(seq) AS seq, "
    "(array_agg(status ORDER BY seq DESC))[1] AS status, "
    "(array_agg(exchange_order_id ORDER BY seq DESC) "
    "FILTER (WHERE exchange_order_id IS NOT NULL))[1] AS exchange_order_id, "
    "(array_agg(submitted_at ORDER BY seq DESC) "
    "FILTER (WHERE submitted_at IS NOT NULL))[1] AS submitted_at, "
    "(array_agg(error_message ORDER BY seq DESC) "
    "FILTER (WHERE error_message IS NOT NULL))[1] AS error_message, "
    "(array_agg(updated_at ORDER BY seq DESC))[1] AS updated_at "
    "FROM {rows} GROUP BY client_order_id) u "
    "WHERE o.client_order_id = u.client_order_id AND o.ledger_seq < u.seq",
)
# Fills and their orders' running totals in one statement; a duplicate fill inserts
# nothing and so adds nothing. An order PostgreSQL does not have makes order_pk NULL:
# refused, dead-lettered and logged rather than lost. The status a fill leads to
# applies only if the fill is newer than the row's last update.
_FILL = Bulk(
    "fill_id text, order_client_id uuid, exchange_order_id text, order_exchange_id text, "
    "trading_pair text, exchange text, side text, quantity_filled numeric, fill_price numeric, "
    "commission numeric, commission_asset text, liquidity_type text, filled_at timestamptz, "
    "order_status text",
    "WITH u AS (SELECT DISTINCT ON (exchange, fill_id) * FROM {rows} "
    "ORDER BY exchange, fill_id, seq), "
    "ins AS (INSERT INTO fills (fill_id, order_pk, exchange_order_id, trading_pair, exchange, "
    "side, quantity_filled, fill_price, commission, commission_asset, liquidity_type, "
    "filled_at) SELECT fill_id, (SELECT order_pk FROM orders o WHERE o.client_order_id = "
    "u.order_client_id), COALESCE(exchange_order_id, order_exchange_id), trading_pair, "
    "exchange, side, quantity_filled, fill_price, commission, commission_asset, "
    "liquidity_type, filled_at FROM u ORDER BY seq ON CONFLICT (exchange, fill_id) DO NOTHING "
    "RETURNING order_pk, exchange, fill_id), "
    "agg AS (SELECT ins.order_pk, sum(u.quantity_filled) AS qty, max(u.seq) AS seq, "
    "(array_agg(u.order_status ORDER BY u.seq DESC))[1] AS status, "
    "max(u.filled_at) AS filled_at FROM ins JOIN u USING (exchange, fill_id) "
    "GROUP BY ins.order_pk) "
    "UPDATE orders o SET quantity_filled = o.quantity_filled + agg.qty, "
    "status = CASE WHEN o.ledger_seq < agg.seq THEN agg.status ELSE o.status END, "
    "last_updated_at = GREATEST(o.last_updated_at, agg.filled_at), "
    "ledger_seq = GREATEST(o.ledger_seq, agg.seq) FROM agg WHERE o.order_pk = agg.order_pk",
)
_TRADE = Bulk(
    "trade_id uuid, signal_id uuid, trading_pair text, exchange text, strategy_id text, "
    "side text, entry_client_order_id uuid, exit_client_order_id uuid, "
    "entry_timestamp timestamptz, exit_timestamp timestamptz, quantity numeric, "
    "average_entry_price numeric, average_exit_price numeric, total_commission numeric, "
    "realized_pnl numeric, realized_pnl_pct real, exit_reason text",
    "INSERT INTO trades (trade_id, signal_id, trading_pair, exchange, strategy_id, side, "
    "entry_order_pk, exit_order_pk, entry_timestamp, exit_timestamp, quantity, "
    "average_entry_price, average_exit_price, total_commission, realized_pnl, "
    "realized_pnl_pct, exit_reason) SELECT trade_id, signal_id, trading_pair, exchange, "
    "strategy_id, side, (SELECT order_pk FROM orders WHERE client_order_id = "
    "u.entry_client_order_id), (SELECT order_pk FROM orders WHERE client_order_id = "
    "u.exit_client_order_id), entry_timestamp, exit_timestamp, quantity, average_entry_price, "
    "average_exit_price, total_commission, realized_pnl, realized_pnl_pct, exit_reason "
    "FROM {rows} ON CONFLICT (trade_id) DO NOTHING",
)
_LOG = _insert(
    "system_logs",
    "log_id uuid, log_timestamp timestamptz, source_module text, log_level text, "
    "message text, trading_pair text, signal_id uuid, order_pk integer, "
    "exception_type text, stack_trace text, context jsonb",
    "ON CONFLICT (log_id) DO NOTHING",
)
# The snapshot timestamp is the key: a later snapshot of the same instant replaces it
# (PostgreSQL refuses to update one row twice in a statement, hence DISTINCT ON).
_SNAPSHOT = Bulk(
    "snapshot_timestamp timestamptz, total_equity numeric, available_balance numeric, "
    "total_exposure_pct real, daily_drawdown_pct real, weekly_drawdown_pct real, "
    "total_drawdown_pct real, positions jsonb",
    "INSERT INTO portfolio_snapshots (snapshot_timestamp, total_equity, available_balance, "
    "total_exposure_pct, daily_drawdown_pct, weekly_drawdown_pct, total_drawdown_pct, "
    "positions) SELECT DISTINCT ON (snapshot_timestamp) snapshot_timestamp, total_equity, "
    "available_balance, total_exposure_pct, daily_drawdown_pct, weekly_drawdown_pct, "
    "total_drawdown_pct, positions FROM {rows} ORDER BY snapshot_timestamp, seq DESC "
    "ON CONFLICT (snapshot_timestamp) DO UPDATE SET total_equity = EXCLUDED.total_equity, "
    "available_balance = EXCLUDED.available_balance, "
    "total_exposure_pct = EXCLUDED.total_exposure_pct, "
    "daily_drawdown_pct = EXCLUDED.daily_drawdown_pct, "
    "weekly_drawdown_pct = EXCLUDED.weekly_drawdown_pct, "
    "total_drawdown_pct = EXCLUDED.total_drawdown_pct, positions = EXCLUDED.positions",
)
# Two statements per event, in order: the partial unique index allows one active row.
_CONFIG: tuple[Statement, ...] = (
    (
        "UPDATE configurations SET is_active = FALSE WHERE is_active AND config_hash <> %s",
        lambda _s, p: (p["config_hash"],),
    ),
    (
        "INSERT INTO configurations (config_hash, config_content, loaded_at, is_active) "
        "VALUES (%s, %s::jsonb, %s::timestamptz, TRUE) ON CONFLICT (config_hash) DO UPDATE "
        "SET is_active = TRUE, loaded_at = EXCLUDED.loaded_at",
        lambda _s, p: (p["config_hash"], _json(p["config_content"]), p["loaded_at"]),
    ),
)
# Within one group commit, events are written kind by kind in this order (and in
# journal order within a kind), one statement per kind. That is safe because rows
# only depend on kinds written before them (orders need their signal, fills and
# trades their orders), and order updates and fills commute: each sets the status
# only if it is newer than orders.ledger_seq.
KIND_ORDER = {
    kind: i
    for i, kind in enumerate(
        (
            "signal",
            "signal_status",
            "order",
            "order_update",
            "fill",
            "trade",
            "log",
            "snapshot",
            "config",
        )
    )
}
STATEMENTS: dict[str, Bulk | tuple[Statement, ...]] = {
    "signal": _SIGNAL,
    "signal_status": _SIGNAL_STATUS,
    "order": _ORDER,
    "order_update": _ORDER_UPDATE,
    "fill": _FILL,
    "trade": _TRADE,
    "log": _LOG,
    "snapshot": _SNAPSHOT,
    "config": _CONFIG,
}


class _Poison(Exception):
    """An event PostgreSQL refuses for good (or one that cannot be decoded)."""


# Errors that condemn an event rather than the connection or the schema.
_REFUSED = (_Poison, ValueError, psycopg.errors.IntegrityError, psycopg.errors.DataError)


class _SignalState:
    __slots__ = ("signal", "status")

    def __init__(self, signal: Signal, status: str) -> None:
        self.signal = signal
        self.status = status


class _OrderState:
    __slots__ = ("exchange_order_id", "fill_ids", "filled", "order", "signal", "status", "totals")

    def __init__(self, order: Order, signal: Signal | None) -> None:
        self.order = order
        self.signal = signal
        self.status = order.status
        self.exchange_order_id = order.exchange_order_id
        self.filled = Decimal(0)
        self.fill_ids: set[str] = set()
        # Value and commission of the fills too: what the bot's cumulative reports are against.
        self.totals = OrderFills()

    def add_fill(self, fill: Fill) -> None:
        self.fill_ids.add(fill.fill_id)
        self.filled += fill.quantity_filled
        self.totals.add(fill.quantity_filled, fill.fill_price, fill.commission)


# A replayed row (kind, payload), or a replayed fill whose order is known but whose
# signal's cycle is not (the order state has it; only the cycle waits).
_Deferred = tuple[str, dict[str, Any]] | tuple[_OrderState, Fill]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Ledger:
    """The relational ledger; see the module docstring for how events travel."""

    def __init__(self, config: RecorderConfig, loop: BackgroundLoop | None = None) -> None:
        self._config = config
        self._owns_loop = loop is None
        self._bg = loop if loop is not None else BackgroundLoop("galfriday-ledger")
        self._journal = Journal(config.journal_path)
        self._lock = threading.Lock()
        # (kind, event, monotonic time of the call): the time measures journal latency.
        self._queue: collections.deque[tuple[str, Any, float]] = collections.deque()
        self._signals: dict[uuid.UUID, _SignalState] = {}
        self._orders: dict[uuid.UUID, _OrderState] = {}
        self._by_exchange_id: dict[str, uuid.UUID] = {}
        self._terminal: collections.deque[uuid.UUID] = collections.deque()
        self._cycles: dict[uuid.UUID, Cycle] = {}
        # The last trades derived, by signal: the bot's own outcome is checked against them.
        self._recent_trades: collections.OrderedDict[uuid.UUID, Trade] = collections.OrderedDict()
        # Journal replay that needs PostgreSQL's state, which a start without it lacks
        # (_load_pg_state applies it, in journal order, once read): rows for orders or
        # signals only PostgreSQL knows, and fills whose signal's cycle only it knows.
        self._replay_later: list[_Deferred] = []
        # Held events: a fill or status update for an order or signal the ledger cannot
        # see until PostgreSQL answers. Journaled as they come, validated once it does.
        # Keys ("o:", "x:", "s:" + id) of those not yet resolved: later calls for the
        # same order or signal are held too, so they apply in the order they came.
        self._held_keys: collections.Counter[str] = collections.Counter()
        self._held_pending = 0
        self._started = False
        self._closed = False
        self._state_loaded = False
        # Counters: caller side (under _lock) ...
        self._accepted = 0
        self._rejected = 0
        self._duplicates = 0
        # ... and background side (written on the loop thread only).
        self._parked = True
        self._base_seq = 0
        self._done_seq = 0
        self._pending_events = 0
        self._pending_bytes = 0
        self._committed = 0
        self._batches = 0
        self._dead = 0
        self._log_handlers: list[LedgerLogHandler] = []
        self._pg_connected = 0
        self._pg_errors = 0
        self._journal_errors = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_SAMPLES)
        self._journal_latencies: collections.deque[float] = collections.deque(
            maxlen=_LATENCY_SAMPLES
        )
        self._done_cond = threading.Condition()
        self._wake_soon: Callable[..., Any] | None = None
        self._work: asyncio.Event | None = None
        self._journaled: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._checkpoint: asyncio.Future[None] | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Open the journal, rebuild state (PostgreSQL if reachable, then the journal), start."""
        if self._started:
            return
        if self._closed:
            raise RecorderError("a closed ledger cannot be restarted; make a new one")
        self._journal.open()
        self._base_seq = self._journal.last_seq
        count, size, first = self._journal.pending_stats()
        self._pending_events, self._pending_bytes = count, size
        self._done_seq = first - 1 if first is not None else self._base_seq
        self._load_pg_state(connect_timeout=2)
        self._replay_journal_into_state()
        self._bg.start()
        self._wake_soon = self._bg.loop.call_soon_threadsafe
        self._bg.submit(self._start_tasks()).result()
        self._started = True

    async def _start_tasks(self) -> None:
        self._work = asyncio.Event()
        self._journaled = asyncio.Event()
        self._journaled.set()  # replay whatever the journal holds
        self._tasks = [
            asyncio.get_running_loop().create_task(self._journal_loop()),
            asyncio.get_running_loop().create_task(self._commit_loop()),
        ]

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted so far is committed to PostgreSQL (or dead-lettered).

        Returns False if that did not happen within ``timeout`` seconds.
        """
        if not self._started:
            return self._pending_events == 0
        if self._bg.in_loop_thread():
            raise RecorderError("flush() would deadlock on the ledger's own loop thread")
        with self._lock:
            target = self._base_seq + self._accepted
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done_cond:
            while self._done_seq < target:
                if self._closed:  # the writer is gone: nothing more will commit here
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done_cond.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``), then stop the writer; what is left stays journaled."""
        if not self._started or self._closed:
            self._closed = True
            return self._pending_events == 0
        flushed = self.flush(timeout)
        with self._lock:
            self._closed = True
        with self._done_cond:  # other threads waiting in flush() give up now
            self._done_cond.notify_all()
        with contextlib.suppress(RuntimeError):
            self._bg.submit(self._stop_tasks()).result(timeout=10)
        if self._owns_loop:
            self._bg.stop()
        return flushed

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # What the deque still holds was accepted: journal it before leaving.
        while self._queue:
            self._journal_batch()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        self._journal.close()

    def stats(self) -> dict[str, int | float]:
        """Counters and latencies (last 4096 batches): ``journal_latency_ms_*`` is call to
        journal commit of the oldest event in a batch (the acknowledgement delay),
        ``commit_latency_ms_*`` the duration of one PostgreSQL group transaction."""
        latencies = list(self._latencies)
        journal_latencies = list(self._journal_latencies)
        return {
            "accepted": self._accepted,
            "rejected": self._rejected,
            "duplicates_ignored": self._duplicates,
            "queue_depth": len(self._queue),
            "journal_depth": self._pending_events,
            "journal_pending_bytes": self._pending_bytes,
            "journal_bytes": self._journal.file_bytes(),
            "journal_errors": self._journal_errors,
            "journal_latency_ms_p50": _percentile(journal_latencies, 0.50),
            "journal_latency_ms_p99": _percentile(journal_latencies, 0.99),
            "committed": self._committed,
            "commit_batches": self._batches,
            "commit_latency_ms_p50": _percentile(latencies, 0.50),
            "commit_latency_ms_p99": _percentile(latencies, 0.99),
            "dead_letters": self._dead,
            "held": self._held_pending,
            "log_records_dropped": sum(h.dropped for h in self._log_handlers),
            "pg_connected": self._pg_connected,
            "pg_errors": self._pg_errors,
        }

    # -- recording (caller thread) ---------------------------------------------------

    def _admit(self) -> None:
        """Refuse before any state changes: not running, or the journal at its cap."""
        if not self._started or self._closed:
            raise RecorderError("the ledger is not running (start() it; closed ones stay closed)")
        if (
            self._pending_bytes + len(self._queue) * _QUEUED_EVENT_BYTES
            >= self._config.journal_max_bytes
        ):
            self._rejected += 1
            raise LedgerBackpressure(
                f"ledger journal at its cap of {self._config.journal_max_bytes} bytes "
                f"({self._pending_events} events waiting for PostgreSQL); event refused"
            )

    def _push(self, kind: str, event: Any) -> None:
        self._queue.append((kind, event, time.monotonic()))
        self._accepted += 1
        if self._parked:
            self._parked = False
            assert self._wake_soon is not None
            self._wake_soon(self._wake)

    def _holding(self) -> bool:
        """Whether a call may have to be held (the common case answers no at once)."""
        return not self._state_loaded or bool(self._held_keys)

    def _held(self, call: str, record: Any, keys: list[str], *, known: bool) -> bool:
        """Hold an event PostgreSQL's state is needed for, or that follows one held."""
        if not any(key in self._held_keys for key in keys) and (known or self._state_loaded):
            return False
        self._held_keys.update(keys)
        self._held_pending += 1
        self._push("held", (record, {"held": call, "held_keys": keys}))
        return True

    def _release_held(self, keys: list[str]) -> None:
        self._held_keys.subtract(keys)
        for key in keys:
            if self._held_keys[key] <= 0:
                del self._held_keys[key]
        self._held_pending -= 1

    def _refuse(
        self, exc: RecorderError, *, signal_id: uuid.UUID | None = None, **context: Any
    ) -> RecorderError:
        """Record a refused transition in system_logs, and return the error to raise."""
        self._push(
            "log",
            LogEntry(
                source_module=_SOURCE,
                log_level="WARNING",
                message=str(exc),
                signal_id=signal_id,
                context=context,
            ),
        )
        return exc

    def record_signal(self, signal: Signal) -> None:
        _require(signal, Signal, "signal")
        with self._lock:
            self._admit()
            if signal.signal_id in self._signals:
                raise ValidationError("signal_id", f"signal {signal.signal_id} already recorded")
            self._remember_signal(signal, signal.status)
            self._push("signal", signal)

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
        with self._lock:
            self._admit()
            if self._holding() and self._held(
                "signal_status",
                update,
                [f"s:{update.signal_id}"],
                known=update.signal_id in self._signals,
            ):
                return
            self._push("signal_status", self._signal_status(update))

    def _signal_status(self, update: SignalStatusUpdate) -> SignalStatusUpdate:
        state = self._signals.get(update.signal_id)
        if state is None:
            raise ValidationError("signal_id", f"unknown signal {update.signal_id}")
        if update.status not in SIGNAL_TRANSITIONS[state.status]:
            raise self._refuse(
                IllegalTransition(
                    f"signal {update.signal_id}: {state.status} -> {update.status} is not allowed"
                ),
                signal_id=update.signal_id,
                old_status=state.status,
                new_status=update.status,
            )
        state.status = update.status
        return update

    def record_order(self, order: Order) -> None:
        _require(order, Order, "order")
        with self._lock:
            self._admit()
            cid = order.client_order_id
            if cid in self._orders:
                raise ValidationError("client_order_id", f"order {cid} already recorded")
            if (
                order.exchange_order_id is not None
                and order.exchange_order_id in self._by_exchange_id
            ):
                raise ValidationError(
                    "exchange_order_id", f"{order.exchange_order_id!r} belongs to another order"
                )
            self._remember_order(order)
            self._push("order", order)

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
        with self._lock:
            self._admit()
            if self._holding():
                state = self._orders.get(update.client_order_id)
                keys = _order_keys(update.client_order_id, update.exchange_order_id, state)
                if self._held("order_update", update, keys, known=state is not None):
                    return
            self._push("order_update", self._order_update(update))

    def _order_update(self, update: OrderUpdate) -> OrderUpdate:
        state = self._orders.get(update.client_order_id)
        if state is None:
            raise UnknownOrder(f"order {update.client_order_id} was never recorded")
        status = update.status
        if status not in ORDER_TRANSITIONS[state.status]:
            raise self._refuse(
                IllegalTransition(
                    f"order {update.client_order_id}: {state.status} -> "
                    f"{status} is not allowed; the order is unchanged"
                ),
                signal_id=state.order.signal_id,
                client_order_id=str(update.client_order_id),
                old_status=state.status,
                new_status=status,
            )
        eid = update.exchange_order_id
        if eid is not None and eid != state.exchange_order_id:
            if state.exchange_order_id is not None or eid in self._by_exchange_id:
                raise ValidationError(
                    "exchange_order_id", f"{eid!r} conflicts with a known exchange order id"
                )
            state.exchange_order_id = eid
            self._by_exchange_id[eid] = update.client_order_id
        self._set_status(state, status)
        return update

    def record_fill(self, fill: Fill) -> None:
        """Record an execution; ignored (not doubled) if its ``(exchange, fill_id)`` is known."""
        _require(fill, Fill, "fill")
        with self._lock:
            self._admit()
            if self._holding() and self._held_fill(fill):
                return
            for kind, event in self._fill(fill):
                self._push(kind, event)

    def _held_fill(self, fill: Fill) -> bool:
        cid = fill.client_order_id
        if cid is None and fill.exchange_order_id is not None:
            cid = self._by_exchange_id.get(fill.exchange_order_id)
        state = self._orders.get(cid) if cid is not None else None
        sid = state.order.signal_id if state is not None else None
        # The fill's trade cycle is its signal's: one only PostgreSQL may know.
        known = state is not None and (sid is None or sid in self._signals)
        keys = _order_keys(fill.client_order_id, fill.exchange_order_id, state)
        return self._held("fill", fill, keys, known=known)

    def _fill(self, fill: Fill) -> list[tuple[str, Any]]:
        """Validate and apply a fill: its event and the trade it closes; none if a duplicate."""
        state = self._order_of(fill)
        if fill.fill_id in state.fill_ids:
            self._duplicates += 1
            return []
        order = state.order
        for name in ("side", "trading_pair", "exchange"):
            if getattr(fill, name) != getattr(order, name):
                raise ValidationError(
                    name,
                    f"{getattr(fill, name)!r} differs from the order's {getattr(order, name)!r}",
                )
        if state.status == "REJECTED":
            raise self._refuse(
                IllegalTransition(f"order {order.client_order_id} was REJECTED; it cannot fill"),
                signal_id=order.signal_id,
                client_order_id=str(order.client_order_id),
            )
        filled = state.filled + fill.quantity_filled
        if filled > order.quantity_ordered:
            raise ValidationError(
                "quantity_filled",
                f"fills total {filled}, more than the order's {order.quantity_ordered}",
            )
        status = _status_after_fill(state.status, filled == order.quantity_ordered)
        state.add_fill(fill)
        self._set_status(state, status)
        extra = {
            "order_client_id": order.client_order_id,
            "order_exchange_id": state.exchange_order_id,
            "order_status": status,
        }
        events: list[tuple[str, Any]] = [("fill", (fill, extra))]
        trade = self._apply_to_cycle(state, fill, emit=True)
        if trade is not None:
            events.append(("trade", trade))
            if trade.signal_id is not None:
                self._recent_trades[trade.signal_id] = trade
                if len(self._recent_trades) > _KEEP_RECENT_TRADES:
                    self._recent_trades.popitem(last=False)
        return events

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
        letter: journaled now, moved to ``dead_letters`` by the committer, never written."""
        with self._lock:
            self._admit()
            self._push("refused", {"what": what, "reason": reason, "event": event})

    # Views of the state machines for the bot bridge, which reconciles reports against them.
    def order_view(self, client_order_id: uuid.UUID) -> tuple[Order, str, OrderFills] | None:
        """The order as recorded, its status now and what its fills add up to (a copy)."""
        with self._lock:
            state = self._orders.get(client_order_id)
            return None if state is None else (state.order, state.status, state.totals.copy())

    def order_by_exchange_id(self, exchange_order_id: str) -> uuid.UUID | None:
        with self._lock:
            return self._by_exchange_id.get(exchange_order_id)

    def trade_view(self, signal_id: uuid.UUID) -> Trade | None:
        """The last trade this process derived for a signal (recent ones only)."""
        with self._lock:
            return self._recent_trades.get(signal_id)

    def signal_view(self, signal_id: uuid.UUID) -> Signal | None:
        with self._lock:
            state = self._signals.get(signal_id)
            return None if state is None else state.signal

    def load_recovery_state(self) -> RecoveryState:
        """Flush what is pending (briefly), then read the recovery view from PostgreSQL."""
        self.flush(timeout=10)
        with psycopg.connect(self._config.pg_conninfo, connect_timeout=10) as conn:
            return load_recovery_state(conn)

    # -- in-memory state (callers hold _lock, or start() runs alone) -----------------

    def _remember_signal(self, signal: Signal, status: str) -> None:
        self._signals[signal.signal_id] = _SignalState(signal, status)
        if len(self._signals) > _KEEP_SIGNALS:
            del self._signals[next(iter(self._signals))]

    def _remember_order(self, order: Order) -> _OrderState:
        signal = None
        if order.signal_id is not None and order.signal_id in self._signals:
            signal = self._signals[order.signal_id].signal
        state = _OrderState(order, signal)
        self._orders[order.client_order_id] = state
        if order.exchange_order_id is not None:
            self._by_exchange_id[order.exchange_order_id] = order.client_order_id
        if state.status in _TERMINAL:
            self._retire(order.client_order_id)
        return state

    def _set_status(self, state: _OrderState, status: str) -> None:
        was_terminal = state.status in _TERMINAL
        state.status = status
        if status in _TERMINAL and not was_terminal:
            self._retire(state.order.client_order_id)

    def _retire(self, client_order_id: uuid.UUID) -> None:
        """Finished orders stay known for a while (late reports), then are forgotten."""
        self._terminal.append(client_order_id)
        if len(self._terminal) > _KEEP_TERMINAL_ORDERS:
            old = self._orders.pop(self._terminal.popleft(), None)
            if old is not None and old.exchange_order_id is not None:
                self._by_exchange_id.pop(old.exchange_order_id, None)

    def _order_of(self, fill: Fill) -> _OrderState:
        cid = fill.client_order_id
        if cid is None:
            assert fill.exchange_order_id is not None
            cid = self._by_exchange_id.get(fill.exchange_order_id)
        state = self._orders.get(cid) if cid is not None else None
        if state is None:
            raise UnknownOrder(
                f"fill {fill.fill_id!r} names an order the ledger does not know "
                f"(client_order_id={fill.client_order_id}, "
                f"exchange_order_id={fill.exchange_order_id!r})"
            )
        if (
            fill.exchange_order_id is not None
            and state.exchange_order_id is not None
            and fill.exchange_order_id != state.exchange_order_id
        ):
            raise ValidationError(
                "exchange_order_id",
                f"{fill.exchange_order_id!r} is not the exchange id of "
                f"order {state.order.client_order_id}",
            )
        return state

    def _apply_to_cycle(self, state: _OrderState, fill: Fill, *, emit: bool) -> Trade | None:
        signal = state.signal
        sid = state.order.signal_id
        if signal is None and sid is not None:
            if sid in self._signals:  # recorded before its signal was known
                signal = state.signal = self._signals[sid].signal
            elif not self._state_loaded:  # a replayed fill: it joins once PostgreSQL is read
                self._replay_later.append((state, fill))
        if signal is None:
            return None
        cycle = self._cycles.get(signal.signal_id)
        if cycle is None:
            cycle = Cycle(
                signal.signal_id,
                signal.side,
                signal.trading_pair,
                signal.exchange,
                signal.strategy_id,
            )
            self._cycles[signal.signal_id] = cycle
        order = state.order
        trade, excess = cycle.apply(
            fill, FillOrder(order.client_order_id, order.order_type, order.exit_reason)
        )
        if trade is not None or cycle.open_quantity == 0:
            del self._cycles[signal.signal_id]
        if excess and emit:
            self._push(
                "log",
                LogEntry(
                    source_module=_SOURCE,
                    log_level="WARNING",
                    signal_id=signal.signal_id,
                    message=f"exit fill {fill.fill_id!r} exceeds the open position of signal "
                    f"{signal.signal_id} by {excess}; the excess is not part of a trade",
                    context={"client_order_id": str(order.client_order_id), "excess": str(excess)},
                ),
            )
        return trade

    def _load_pg_state(self, connect_timeout: int) -> None:
        """Seed the state machines from PostgreSQL; what is already known wins (it is newer)."""
        with self._lock:
            waiting = [_replayed_fill_id(item) for item in self._replay_later]
        try:
            with psycopg.connect(self._config.pg_conninfo, connect_timeout=connect_timeout) as conn:
                state = load_recovery_state(conn)
                stored = set(conn.execute(_STORED_FILLS, ([f for f in waiting if f],)).fetchall())
        except psycopg.Error as exc:
            log.warning(
                "ledger state not loaded from PostgreSQL yet (%s): %s",
                redact(self._config.pg_dsn),
                redact(str(exc)).strip(),
            )
            return
        with self._lock:
            for signal in state.signals:
                if signal.signal_id not in self._signals:
                    self._remember_signal(signal, signal.status)
            for open_order in state.open_orders:
                if open_order.order.client_order_id in self._orders:
                    continue
                order_state = self._remember_order(open_order.order)
                for pg_fill in open_order.fills:
                    order_state.add_fill(pg_fill)
                order_state.filled = open_order.quantity_filled
            for cycle in state.open_cycles:
                self._cycles.setdefault(cycle.signal_id, cycle)
            self._state_loaded = True
            self._replay_deferred(stored)

    def _replay_deferred(self, stored: set[tuple[str, str]]) -> None:
        """Apply the replay that waited for PostgreSQL's state, in journal order.

        A fill PostgreSQL already holds (journaled by a process that crashed after
        committing it) is in the state read from it: not applied twice.
        """
        deferred, self._replay_later = self._replay_later, []
        for item in deferred:
            if isinstance(item[0], _OrderState):  # the order is known: only the cycle waited
                state, fill = item
                if (fill.exchange, fill.fill_id) not in stored:
                    self._apply_to_cycle(state, fill, emit=False)
            else:
                kind, p = item
                if kind != "fill" or (p["exchange"], p["fill_id"]) not in stored:
                    self._replay_event(kind, p)

    def _replay_journal_into_state(self) -> None:
        """Apply journaled, uncommitted events to the state machines (nothing is re-emitted).

        Events that PostgreSQL already had are recognised (known ids, fill ids) and skipped.
        """
        after = self._done_seq
        while rows := self._journal.pending(after, _JOURNAL_BATCH):
            for _seq, kind, payload in rows:
                with contextlib.suppress(RecorderError, ValueError, KeyError, TypeError):
                    self._replay_event(kind, orjson.loads(payload))
            after = rows[-1][0]

    def _replay_needs_pg(self, kind: str, p: dict[str, Any]) -> bool:
        """A replayed row about an order or signal that only PostgreSQL (not yet read) has."""
        if self._state_loaded:
            return False
        if kind == "signal_status":
            return uuid.UUID(p["signal_id"]) not in self._signals
        key = "client_order_id" if kind == "order_update" else "order_client_id"
        return uuid.UUID(p[key]) not in self._orders

    def _replay_event(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "held":  # validated once PostgreSQL's state is in (_resolve_held)
            self._held_keys.update(p["held_keys"])
            self._held_pending += 1
        elif kind == "signal":
            signal = Signal(**p)
            if signal.signal_id not in self._signals:
                self._remember_signal(signal, signal.status)
        elif kind in ("signal_status", "order_update", "fill") and self._replay_needs_pg(kind, p):
            self._replay_later.append((kind, p))
        elif kind == "signal_status":
            sig = self._signals.get(uuid.UUID(p["signal_id"]))
            if sig is not None and p["status"] in SIGNAL_TRANSITIONS[sig.status]:
                sig.status = p["status"]
        elif kind == "order":
            order = Order(**p)
            if order.client_order_id not in self._orders:
                self._remember_order(order)
        elif kind == "order_update":
            state = self._orders.get(uuid.UUID(p["client_order_id"]))
            if state is not None and p["status"] in ORDER_TRANSITIONS[state.status]:
                if p["exchange_order_id"] and state.exchange_order_id is None:
                    state.exchange_order_id = p["exchange_order_id"]
                    self._by_exchange_id[state.exchange_order_id] = state.order.client_order_id
                self._set_status(state, p["status"])
        elif kind == "fill":
            fill = Fill(**{name: p[name] for name in _FILL_FIELDS})
            state = self._orders.get(uuid.UUID(p["order_client_id"]))
            if state is not None and fill.fill_id not in state.fill_ids:
                state.add_fill(fill)
                self._set_status(state, p["order_status"])
                self._apply_to_cycle(state, fill, emit=False)

    # -- background: journal -----------------------------------------------------------

    def _wake(self) -> None:
        assert self._work is not None
        self._work.set()

    async def _journal_loop(self) -> None:
        assert self._work is not None
        delay = _BACKOFF_START
        while True:
            if not self._queue:
                self._parked = True
                if not self._queue:
                    await self._work.wait()
                self._work.clear()
                self._parked = False
            try:
                self._journal_batch()
                delay = _BACKOFF_START
            except Exception as exc:  # disk full, I/O error: keep the events, retry
                self._journal_errors += 1
                log.error("ledger journal write failed (will retry): %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_CAP)
            await asyncio.sleep(0)

    def _journal_batch(self) -> None:
        batch: list[tuple[str, Any, float]] = []
        pop = self._queue.popleft
        with contextlib.suppress(IndexError):
            for _ in range(_JOURNAL_BATCH):
                batch.append(pop())
        if not batch:
            return
        for i, (kind, event, at) in enumerate(batch):
            if callable(event):  # record_log_later; built once, even if the append is retried
                batch[i] = (kind, _built(event), at)
        rows = [encode_event(kind, event) for kind, event, _at in batch]
        try:
            self._journal.append(rows)
        except BaseException:
            self._queue.extendleft(reversed(batch))
            raise
        self._journal_latencies.append((time.monotonic() - batch[0][2]) * 1000)
        self._pending_bytes += sum(len(payload) for _kind, payload in rows)
        self._pending_events += len(rows)
        assert self._journaled is not None
        self._journaled.set()

    # -- background: commit ----------------------------------------------------------------

    async def _commit_loop(self) -> None:
        assert self._journaled is not None
        interval = self._config.commit_interval_ms / 1000
        limit = self._config.commit_max_events
        while True:
            if self._done_seq >= self._journal.last_seq:
                self._journaled.clear()
                await self._journaled.wait()
            if self._journal.last_seq - self._done_seq < limit:
                await asyncio.sleep(interval)  # let the group grow
            conn = await self._connection()
            high = self._journal.last_seq
            rows = self._journal.pending(self._done_seq, limit)
            everything = len(rows) < limit  # all of the journal up to ``high``
            first_held = next((i for i, row in enumerate(rows) if row[1] == "held"), None)
            if first_held is not None and not self._state_loaded:
                rows, everything = rows[:first_held], False  # the rest waits for the state
                if not rows:
                    await asyncio.sleep(_BACKOFF_CAP)
                    continue
            try:
                if first_held is not None and self._state_loaded:
                    rows = self._resolve_held(rows, await _stored_fills(conn, rows))
                live = [row for row in rows if row[1] != _NOTHING]
                dead = await self._commit(conn, live) if live else []
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                await self._disconnected(exc)
                continue
            except Exception as exc:  # e.g. schema missing: systemic, not one event
                self._pg_errors += 1
                log.error(
                    "ledger commit failed, will retry: %s: %s", type(exc).__name__, redact(str(exc))
                )
                await self._disconnected(exc)
                await asyncio.sleep(_BACKOFF_CAP)
                continue
            done = high if everything else rows[-1][0]
            if rows:
                self._journal.done(rows[-1][0], dead)
                self._maybe_checkpoint()
            self._pending_events -= len(rows)
            self._pending_bytes -= sum(len(r[2]) for r in rows)
            self._committed += len(live) - len(dead)
            self._dead += len(dead)
            with self._done_cond:
                self._done_seq = done
                self._done_cond.notify_all()

    def _resolve_held(self, rows: list[Row], stored: set[tuple[str, str]]) -> list[Row]:
        """Validate held events now that PostgreSQL's state is in, in journal order.

        Each becomes, in place (same seq), the event its call would have made; one
        already applied (a fill in ``stored``, PostgreSQL's ``(exchange, fill_id)``;
        a status the order or signal already has) becomes nothing; one refused
        becomes nothing too, and goes to the dead letters with a system_logs row
        saying why (its caller had no error).
        """
        out: list[Row] = []
        rewritten: list[Row] = []
        refused: list[tuple[Row, str]] = []
        for row in rows:
            seq, kind, payload = row
            if kind != "held":
                out.append(row)
                continue
            held = orjson.loads(payload)
            call, keys = held.pop("held"), held.pop("held_keys")
            with self._lock:
                self._release_held(keys)
                try:
                    events = self._apply_held(call, held, stored)
                except (RecorderError, ValueError, TypeError, KeyError) as exc:
                    events = []
                    refused.append((row, f"{type(exc).__name__}: {exc}"))
                    self._push("log", _held_refusal(seq, call, exc))
                for later in events[1:]:
                    self._push(*later)
            new = (seq, *encode_event(*events[0])) if events else (seq, _NOTHING, payload)
            self._pending_bytes += len(new[2]) - len(payload)
            rewritten.append(new)
            out.append(new)
        self._journal.rewrite(rewritten, refused)
        self._dead += len(refused)
        return out

    def _apply_held(
        self, call: str, held: dict[str, Any], stored: set[tuple[str, str]]
    ) -> list[tuple[str, Any]]:
        if call == "fill":
            fill = Fill(**{name: held[name] for name in _FILL_FIELDS})
            return [] if (fill.exchange, fill.fill_id) in stored else self._fill(fill)
        if call == "order_update":
            update = OrderUpdate(**held)
            order = self._orders.get(update.client_order_id)
            if order is not None and order.status == update.status:
                return []
            return [("order_update", self._order_update(update))]
        if call == "signal_status":
            status = SignalStatusUpdate(**held)
            signal = self._signals.get(status.signal_id)
            if signal is not None and signal.status == status.status:
                return []
            return [("signal_status", self._signal_status(status))]
        raise ValidationError("held", f"unknown held call {call!r}")

    def _maybe_checkpoint(self) -> None:
        """Start a journal checkpoint on a worker thread once the WAL is big enough."""
        idle = self._checkpoint is None or self._checkpoint.done()
        if idle and self._journal.wal_bytes() >= _CHECKPOINT_BYTES:
            loop = asyncio.get_running_loop()
            self._checkpoint = loop.run_in_executor(None, self._journal.checkpoint)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        delay = _BACKOFF_START
        while self._conn is None or self._conn.closed:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._config.pg_conninfo, autocommit=True, connect_timeout=5
                )
            except psycopg.Error as exc:
                self._pg_connected = 0
                self._pg_errors += 1
                log.debug(
                    "ledger cannot reach PostgreSQL at %s: %s",
                    redact(self._config.pg_dsn),
                    redact(str(exc)).strip(),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_CAP)
                continue
            self._pg_connected = 1
            if not self._state_loaded:
                await asyncio.get_running_loop().run_in_executor(None, self._load_pg_state, 5)
        return self._conn

    async def _disconnected(self, exc: Exception) -> None:
        self._pg_connected = 0
        self._pg_errors += 1
        log.warning(
            "ledger lost PostgreSQL (%s); events stay journaled and will be replayed",
            redact(str(exc)).strip(),
        )
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _commit(
        self, conn: psycopg.AsyncConnection[Any], rows: list[Row]
    ) -> list[tuple[Row, str]]:
        """Commit one group; on a refused event fall back to one savepoint per event.

        ``refused`` rows (:meth:`record_refused`) are dead letters from the start.
        """
        refused = [
            (row, str(orjson.loads(row[2])["reason"])) for row in rows if row[1] == "refused"
        ]
        if refused:
            rows = [row for row in rows if row[1] != "refused"]
            if not rows:
                return refused
        started = time.perf_counter()
        try:
            ordered = sorted(rows, key=lambda r: KIND_ORDER.get(r[1], -1))
            async with conn.transaction(), conn.pipeline():
                cur = conn.cursor()
                for kind, group in itertools.groupby(ordered, key=lambda r: r[1]):
                    await _write(cur, kind, [(s, p) for s, _k, p in group])
            dead: list[tuple[Row, str]] = []
        except _REFUSED:
            if conn.broken:
                raise psycopg.OperationalError("connection lost during commit") from None
            dead = await self._commit_one_by_one(conn, rows)
        self._latencies.append((time.perf_counter() - started) * 1000)
        self._batches += 1
        return dead + refused

    async def _commit_one_by_one(
        self, conn: psycopg.AsyncConnection[Any], rows: list[Row]
    ) -> list[tuple[Row, str]]:
        dead: list[tuple[Row, str]] = []
        async with conn.transaction():
            for row in rows:
                seq, kind, payload = row
                try:
                    async with conn.transaction():
                        await _write(conn.cursor(), kind, [(seq, payload)])
                except _REFUSED as exc:
                    reason = f"{type(exc).__name__}: {str(exc).strip()}"
                    dead.append((row, reason))
                    log.error(
                        "ledger event %d (%s) refused by PostgreSQL, dead-lettered: %s",
                        seq,
                        kind,
                        reason,
                    )
                    await _write(
                        conn.cursor(), "log", [(seq, dumps(_dead_letter_log(seq, kind, reason)))]
                    )
        return dead

    # -- introspection for tests and operators -------------------------------------------------

    def dead_letters(self) -> list[tuple[int, str, bytes, str]]:
        """Events PostgreSQL refused: (seq, kind, payload, error), read on the loop thread."""
        return self._bg.submit(_call(self._journal.dead_letters)).result()


async def _write(cur: psycopg.AsyncCursor[Any], kind: str, events: list[Event]) -> None:
    """Send one kind's events: one bulk statement, or (configurations) row by row in order."""
    handler = STATEMENTS.get(kind)
    if handler is None:
        raise _Poison(f"unknown or unserialisable event kind {kind!r}: {events[0][1][:200]!r}")
    if isinstance(handler, Bulk):
        await cur.execute(handler.sql, handler.params(events))
        return
    for seq, payload in events:
        decoded = orjson.loads(payload)
        for sql, params in handler:
            await cur.execute(sql, params(seq, decoded))


async def _call(fn: Callable[[], T]) -> T:
    return fn()


def _require(record: Any, cls: type, name: str) -> None:
    if not isinstance(record, cls):
        raise ValidationError(name, f"expected {cls.__name__}, got {type(record).__name__}")


def _status_after_fill(status: str, complete: bool) -> str:
    if status in _TERMINAL:  # e.g. a fill reported after the cancel: the status stands
        return status
    if complete:
        return "FILLED"
    return status if status == "PENDING_CANCEL" else "PARTIALLY_FILLED"


_NOTHING = "none"  # a resolved held event that writes nothing


def _order_keys(
    client_order_id: uuid.UUID | None, exchange_order_id: str | None, state: _OrderState | None
) -> list[str]:
    """The held-event keys that name one order: both its ids, as far as they are known."""
    keys = {f"o:{client_order_id}"} if client_order_id is not None else set()
    if exchange_order_id is not None:
        keys.add(f"x:{exchange_order_id}")
    if state is not None:
        keys.add(f"o:{state.order.client_order_id}")
        if state.exchange_order_id is not None:
            keys.add(f"x:{state.exchange_order_id}")
    return sorted(keys)


_STORED_FILLS = "SELECT exchange, fill_id FROM fills WHERE fill_id = ANY(%s)"


async def _stored_fills(
    conn: psycopg.AsyncConnection[Any], rows: list[Row]
) -> set[tuple[str, str]]:
    """``(exchange, fill_id)`` of the held fills in ``rows`` that PostgreSQL already has."""
    held = [orjson.loads(payload) for _seq, kind, payload in rows if kind == "held"]
    fill_ids = [p["fill_id"] for p in held if p["held"] == "fill"]
    if not fill_ids:
        return set()
    cur = await conn.execute(_STORED_FILLS, (fill_ids,))
    return {(exchange, fill_id) for exchange, fill_id in await cur.fetchall()}


def _replayed_fill_id(item: _Deferred) -> str | None:
    if isinstance(item[0], _OrderState):
        return item[1].fill_id
    kind, p = item
    return p["fill_id"] if kind == "fill" else None


def _held_refusal(seq: int, call: str, exc: Exception) -> LogEntry:
    return LogEntry(
        source_module=_SOURCE,
        log_level="ERROR",
        message=f"held {call} (ledger event {seq}) refused once PostgreSQL's state was read: "
        f"{type(exc).__name__}: {exc}"[:2000],
        context={"journal_seq": seq, "call": call},
    )


def _built(build: Callable[[], LogEntry]) -> LogEntry:
    """A deferred log entry; one that cannot be built leaves a row saying so (seqs stay dense)."""
    try:
        return build()
    except Exception as exc:
        return LogEntry(
            source_module=_SOURCE,
            log_level="ERROR",
            message=f"a log record could not be recorded: {type(exc).__name__}: {exc}"[:2000],
        )


def encode_event(kind: str, event: Any) -> tuple[str, bytes]:
    """Journal form of an event: one flat JSON object (a fill carries its order's fields).

    One that cannot be serialised is journaled as poison, to be dead-lettered.
    """
    try:
        if isinstance(event, tuple):
            record, extra = event
            return kind, dumps(extra)[:-1] + b"," + dumps(record)[1:]
        return kind, dumps(event)
    except TypeError as exc:
        return "poison", dumps({"kind": kind, "repr": repr(event)[:10_000], "error": str(exc)})


def _dead_letter_log(seq: int, kind: str, reason: str) -> dict[str, Any]:
    return {
        "log_id": str(uuid.uuid5(_DEAD_LETTER_NAMESPACE, str(seq))),
        "log_timestamp": utcnow().isoformat(),
        "source_module": _SOURCE,
        "log_level": "ERROR",
        "message": f"ledger event {seq} ({kind}) refused by PostgreSQL; kept in the journal's "
        f"dead_letters table: {reason}",
        "trading_pair": None,
        "signal_id": None,
        "order_pk": None,
        "exception_type": reason.partition(":")[0],
        "stack_trace": None,
        "context": {"journal_seq": seq, "kind": kind},
    }


__all__ = ["KIND_ORDER", "ORDER_TRANSITIONS", "STATEMENTS", "Ledger", "encode_event"]
