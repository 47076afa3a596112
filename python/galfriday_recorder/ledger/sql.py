"""The SQL the committer sends: one statement per event kind, idempotent on natural keys.

Every write is idempotent on a natural key (``signal_id``, ``client_order_id``,
``(exchange, fill_id)``, an allocation's fill and signal, ``trade_id``, ``log_id``,
``snapshot_timestamp``, ``config_hash``; order updates apply only if newer than
``orders.ledger_seq``), so replaying the journal after a crash between the
PostgreSQL commit and the journal delete writes nothing twice.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from ..records import utcnow
from .state import SOURCE

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
    reports_replaced: bool = False  # RETURNING (key, replaced) rows
    # The statement's first parameter is the recorder's instance name (rows it owns).
    owned: bool = False

    @functools.cached_property
    def sql(self) -> str:
        return self.statement.format(
            rows=f"json_to_recordset(%s::json) AS u(seq bigint, {self.columns})"
        )

    def params(self, events: list[Event], instance: str | None = None) -> Params:
        body = b",".join(b'{"seq":%d,' % seq + payload[1:] for seq, payload in events)
        rows = (b"[" + body + b"]").decode()
        return (instance, rows) if self.owned else (rows,)


def _insert(table: str, columns: str, conflict: str, *, owned: bool = False) -> Bulk:
    names = ", ".join(c.split()[0] for c in columns.split(","))
    into, select = names, names
    if owned:
        into, select = f"{names}, recorder_instance", f"{names}, %s::text"
    return Bulk(
        columns,
        f"INSERT INTO {table} ({into}) SELECT {select} FROM {{rows}} {conflict}",
        owned=owned,
    )


_SIGNAL = _insert(
    "signals",
    "signal_id uuid, trading_pair text, exchange text, strategy_id text, side text, "
    "entry_type text, proposed_entry_price numeric, proposed_sl_price numeric, "
    "proposed_tp_price numeric, prediction_event_id uuid, prediction_value real, status text, "
    "rejection_reason text, risk_check_details jsonb, created_at timestamptz",
    "ON CONFLICT (signal_id) DO NOTHING",
    owned=True,
)
# The updates below find their rows by ``= ANY(ARRAY(SELECT key FROM u))``, an index
# lookup of the group's keys. Joined to the record set alone (which the planner takes for
# 100 rows), a table of a few thousand to about 20,000 rows was read whole on every group.
#
# A signal changes status once (PROPOSED -> verdict); the last event per signal wins.
# A row that holds the verdict already (inserted with it, .fold; a replay) is not
# written again.
_SIGNAL_STATUS = Bulk(
    "signal_id uuid, status text, rejection_reason text, risk_check_details jsonb",
    "WITH u AS (SELECT DISTINCT ON (signal_id) * FROM {rows} ORDER BY signal_id, seq DESC) "
    "UPDATE signals s SET status = u.status, rejection_reason = u.rejection_reason, "
    "risk_check_details = COALESCE(u.risk_check_details, s.risk_check_details) FROM u "
    "WHERE s.signal_id = ANY(ARRAY(SELECT signal_id FROM u)) AND s.signal_id = u.signal_id "
    "AND (s.status, s.rejection_reason, s.risk_check_details) "
    "IS DISTINCT FROM (u.status, u.rejection_reason, "
    "COALESCE(u.risk_check_details, s.risk_check_details))",
)
_ORDER = Bulk(
    "client_order_id uuid, exchange_order_id text, signal_id uuid, trading_pair text, "
    "exchange text, side text, order_type text, quantity_ordered numeric, limit_price numeric, "
    "stop_price numeric, status text, error_message text, exit_reason text, "
    "created_at timestamptz, submitted_at timestamptz, last_updated_at timestamptz, "
    "client_order_ref text, ledger_seq bigint",
    "INSERT INTO orders (client_order_id, exchange_order_id, signal_id, trading_pair, "
    "exchange, side, order_type, quantity_ordered, limit_price, stop_price, status, "
    "error_message, exit_reason, created_at, submitted_at, last_updated_at, ledger_seq, "
    "client_order_ref, recorder_instance) "
    "SELECT client_order_id, exchange_order_id, signal_id, trading_pair, exchange, side, "
    "order_type, quantity_ordered, limit_price, stop_price, status, error_message, "
    "exit_reason, created_at, submitted_at, last_updated_at, COALESCE(ledger_seq, seq), "
    "client_order_ref, %s::text "
    "FROM {rows} ON CONFLICT (client_order_id) DO NOTHING",
    owned=True,
)
# ledger_seq: given when the order carries its later updates in the group (.fold).
# Successive updates of one order fold into one: the last status, the last value given
# for each field; applied only if newer than the row (a replay never moves it back).
_ORDER_UPDATE = Bulk(
    "client_order_id uuid, status text, exchange_order_id text, submitted_at timestamptz, "
    "error_message text, updated_at timestamptz",
    "WITH u AS (SELECT client_order_id, max(seq) AS seq, "
    "(array_agg(status ORDER BY seq DESC))[1] AS status, "
    "(array_agg(exchange_order_id ORDER BY seq DESC) "
    "FILTER (WHERE exchange_order_id IS NOT NULL))[1] AS exchange_order_id, "
    "(array_agg(submitted_at ORDER BY seq DESC) "
    "FILTER (WHERE submitted_at IS NOT NULL))[1] AS submitted_at, "
    "(array_agg(error_message ORDER BY seq DESC) "
    "FILTER (WHERE error_message IS NOT NULL))[1] AS error_message, "
    "(array_agg(updated_at ORDER BY seq DESC))[1] AS updated_at "
    "FROM {rows} GROUP BY client_order_id) "
    "UPDATE orders o SET status = u.status, "
    "exchange_order_id = COALESCE(u.exchange_order_id, o.exchange_order_id), "
    "submitted_at = COALESCE(u.submitted_at, o.submitted_at), "
    "error_message = COALESCE(u.error_message, o.error_message), "
    "last_updated_at = u.updated_at, ledger_seq = u.seq FROM u "
    "WHERE o.client_order_id = ANY(ARRAY(SELECT client_order_id FROM u)) "
    "AND o.client_order_id = u.client_order_id AND o.ledger_seq < u.seq",
)
# Fills and their orders' running totals in one statement, and an entry fill (on its
# signal's side) in its signal's untraded quantity; a duplicate fill inserts nothing and
# so adds nothing. An order PostgreSQL does not have makes order_pk NULL: refused,
# dead-lettered and logged rather than lost. The status a fill leads to applies only if
# the fill is newer than the row's last update.
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
    "GROUP BY ins.order_pk), "
    "entries AS (UPDATE signals s SET untraded_quantity = s.untraded_quantity + e.qty "
    "FROM (SELECT o.signal_id, u.side, sum(u.quantity_filled) AS qty FROM ins "
    "JOIN u USING (exchange, fill_id) JOIN orders o ON o.order_pk = ins.order_pk "
    "GROUP BY o.signal_id, u.side) e WHERE s.signal_id = e.signal_id AND s.side = e.side) "
    "UPDATE orders o SET quantity_filled = o.quantity_filled + agg.qty, "
    "status = CASE WHEN o.ledger_seq < agg.seq THEN agg.status ELSE o.status END, "
    "last_updated_at = GREATEST(o.last_updated_at, agg.filled_at), "
    "ledger_seq = GREATEST(o.ledger_seq, agg.seq) FROM agg WHERE o.order_pk = agg.order_pk",
)
# The part of a signal-less fill each cycle took; the fill is written just before.
_ALLOCATION = Bulk(
    "exchange text, fill_id text, signal_id uuid, quantity numeric",
    "INSERT INTO fill_allocations (fill_pk, signal_id, quantity) SELECT (SELECT fill_pk "
    "FROM fills f WHERE f.exchange = u.exchange AND f.fill_id = u.fill_id), signal_id, "
    "quantity FROM {rows} ON CONFLICT (fill_pk, signal_id) DO NOTHING",
)
_TRADE_COLUMNS = (
    "trade_id uuid, signal_id uuid, trading_pair text, exchange text, strategy_id text, "
    "side text, entry_client_order_id uuid, exit_client_order_id uuid, "
    "entry_timestamp timestamptz, exit_timestamp timestamptz, quantity numeric, "
    "average_entry_price numeric, average_exit_price numeric, total_commission numeric, "
    "realized_pnl numeric, realized_pnl_pct real, exit_reason text"
)
_TRADE_INSERT = (
    "INSERT INTO trades (trade_id, signal_id, trading_pair, exchange, strategy_id, side, "
    "entry_order_pk, exit_order_pk, entry_timestamp, exit_timestamp, quantity, "
    "average_entry_price, average_exit_price, total_commission, realized_pnl, "
    "realized_pnl_pct, exit_reason, derived) SELECT trade_id, signal_id, trading_pair, "
    "exchange, strategy_id, side, (SELECT order_pk FROM orders WHERE client_order_id = "
    "u.entry_client_order_id), (SELECT order_pk FROM orders WHERE client_order_id = "
    "u.exit_client_order_id), entry_timestamp, exit_timestamp, quantity, average_entry_price, "
    "average_exit_price, total_commission, realized_pnl, realized_pnl_pct, exit_reason, "
    "{derived} FROM (SELECT DISTINCT ON (trade_id) * FROM {{rows}} ORDER BY trade_id, seq) u "
    "ON CONFLICT (trade_id) "
)
# A trade the bot recorded itself (record_trade).
_TRADE = Bulk(_TRADE_COLUMNS, _TRADE_INSERT.format(derived="false") + "DO NOTHING")
# A trade the ledger derived from its signal's fills: its entries are traded now. A row
# the bot wrote first under the same id becomes the derived one (once: a replay finds
# it derived and changes nothing). One row per id in a statement (DISTINCT ON above):
# an update may not touch a row twice in one.
_DERIVED_TRADE = Bulk(
    _TRADE_COLUMNS,
    "WITH ins AS ("
    + _TRADE_INSERT.format(derived="true")
    + "DO UPDATE SET derived = true WHERE NOT trades.derived RETURNING signal_id, quantity) "
    "UPDATE signals s SET untraded_quantity = s.untraded_quantity - t.qty "
    "FROM (SELECT signal_id, sum(quantity) AS qty FROM ins GROUP BY signal_id) t "
    "WHERE s.signal_id = ANY(ARRAY(SELECT signal_id FROM ins)) AND s.signal_id = t.signal_id",
)
# A start's repair of a signal (see recovery.read_start): the stored trades it derives
# are marked derived, and its untraded quantity is set again from what is stored, once
# its row is locked (so a fill another transaction is adding counts once, by that
# transaction). A value, not a difference: applying it twice, or from two recorders, gives
# the same.
_UNTRADED: tuple[Statement, ...] = (
    ("SELECT 1 FROM signals WHERE signal_id = %s FOR UPDATE", lambda _s, p: (p["signal_id"],)),
    (
        "UPDATE trades SET derived = true WHERE trade_id = ANY(%s::uuid[]) AND NOT derived",
        lambda _s, p: (p["trade_ids"],),
    ),
    (
        "UPDATE signals s SET untraded_quantity = (SELECT COALESCE(sum(f.quantity_filled), 0) "
        "FROM orders o JOIN fills f USING (order_pk) WHERE o.signal_id = s.signal_id "
        "AND f.side = s.side) - (SELECT COALESCE(sum(t.quantity), 0) FROM trades t "
        "WHERE t.signal_id = s.signal_id AND t.derived) WHERE s.signal_id = %s",
        lambda _s, p: (p["signal_id"],),
    ),
)
_LOG = _insert(
    "system_logs",
    "log_id uuid, log_timestamp timestamptz, source_module text, log_level text, "
    "message text, trading_pair text, signal_id uuid, order_pk integer, "
    "exception_type text, stack_trace text, context jsonb",
    "ON CONFLICT (log_id) DO NOTHING",
)
# The snapshot timestamp is the key: a later snapshot of the same instant replaces it
# (PostgreSQL refuses to update one row twice in a statement, hence DISTINCT ON), and
# the rows really replaced (not a replay of the same content) come back, to be said:
# two recorders writing one instant are never silent.
_SNAPSHOT = Bulk(
    "snapshot_timestamp timestamptz, total_equity numeric, available_balance numeric, "
    "total_exposure_pct real, daily_drawdown_pct real, weekly_drawdown_pct real, "
    "total_drawdown_pct real, positions jsonb",
    "INSERT INTO portfolio_snapshots AS p (snapshot_timestamp, total_equity, available_balance, "
    "total_exposure_pct, daily_drawdown_pct, weekly_drawdown_pct, total_drawdown_pct, "
    "positions) SELECT DISTINCT ON (snapshot_timestamp) snapshot_timestamp, total_equity, "
    "available_balance, total_exposure_pct, daily_drawdown_pct, weekly_drawdown_pct, "
    "total_drawdown_pct, positions FROM {rows} ORDER BY snapshot_timestamp, seq DESC "
    "ON CONFLICT (snapshot_timestamp) DO UPDATE SET total_equity = EXCLUDED.total_equity, "
    "available_balance = EXCLUDED.available_balance, "
    "total_exposure_pct = EXCLUDED.total_exposure_pct, "
    "daily_drawdown_pct = EXCLUDED.daily_drawdown_pct, "
    "weekly_drawdown_pct = EXCLUDED.weekly_drawdown_pct, "
    "total_drawdown_pct = EXCLUDED.total_drawdown_pct, positions = EXCLUDED.positions "
    "WHERE (p.total_equity, p.available_balance, p.total_exposure_pct, p.daily_drawdown_pct, "
    "p.weekly_drawdown_pct, p.total_drawdown_pct, p.positions) IS DISTINCT FROM "
    "(EXCLUDED.total_equity, EXCLUDED.available_balance, EXCLUDED.total_exposure_pct, "
    "EXCLUDED.daily_drawdown_pct, EXCLUDED.weekly_drawdown_pct, EXCLUDED.total_drawdown_pct, "
    "EXCLUDED.positions) RETURNING p.snapshot_timestamp, p.xmax::text <> '0'",
    reports_replaced=True,
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
# The committer's session. Its updates find their rows by key (``= ANY(...)`` over the
# group's keys, above); at the default cost of a random page (4, a spinning disk's) the
# planner reads a table of up to about a thousand rows whole instead, testing every row
# against every key of the group: an order-update statement of 100 keys took 2.4 ms on
# 200 orders and 14.5 ms for 500 keys on 1,000, against 0.6 ms and 2.2 ms through the index.
# 1.1 is the usual figure for SSDs and for tables held in memory, as a ledger's are.
SESSION = "SET random_page_cost = 1.1"
# Within one group commit, events are written kind by kind in this order (and in
# journal order within a kind), one statement per kind. That is safe because rows
# only depend on kinds written before them (orders need their signal, fills and
# trades their orders, allocations their fill), and order updates and fills
# commute: each sets the status only if it is newer than orders.ledger_seq.
KIND_ORDER = {
    kind: i
    for i, kind in enumerate(
        (
            "signal",
            "signal_status",
            "order",
            "order_update",
            "fill",
            "allocation",
            "derived_trade",
            "untraded",
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
    "allocation": _ALLOCATION,
    "derived_trade": _DERIVED_TRADE,
    "untraded": _UNTRADED,
    "trade": _TRADE,
    "log": _LOG,
    "snapshot": _SNAPSHOT,
    "config": _CONFIG,
}


class Poison(Exception):
    """An event PostgreSQL refuses for good (or one that cannot be decoded)."""


# Errors that condemn an event rather than the connection or the schema: bad data
# (class 22), a constraint (23), a PL/pgSQL trigger's RAISE, ASSERT or STRICT (class
# P0: the database's owner refusing the row; a retry would meet it again, for ever).
# psycopg derives each P0 class from ProgrammingError, not from PlpgsqlError.
# ProgramLimitExceeded (54000) is a value past a server limit (a JSONB string or object
# over 256 MiB): the same group meets it again on every retry, so retrying it would
# stall every later event; psycopg makes it an OperationalError, caught here first.
REFUSED = (
    Poison,
    ValueError,
    psycopg.errors.IntegrityError,
    psycopg.errors.DataError,
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.PlpgsqlError,
    psycopg.errors.RaiseException,
    psycopg.errors.NoDataFound,
    psycopg.errors.TooManyRows,
    psycopg.errors.AssertFailure,
)


def _statements(kind: str, events: list[Event], instance: str) -> list[tuple[str, Params, bool]]:
    """One kind's events as statements: (SQL, parameters, whether its rows name the rows
    that replaced different content, as snapshots' do). Signals and orders are written as
    ``instance``'s."""
    handler = STATEMENTS.get(kind)
    if handler is None:
        raise Poison(f"unknown or unserialisable event kind {kind!r}: {events[0][1][:200]!r}")
    if isinstance(handler, Bulk):
        return [(handler.sql, handler.params(events, instance), handler.reports_replaced)]
    out: list[tuple[str, Params, bool]] = []
    for seq, payload in events:  # configurations and repairs: row by row, in order
        decoded = orjson.loads(payload)
        out.extend((sql, params(seq, decoded), False) for sql, params in handler)
    return out


def _replaced(rows: list[Any]) -> list[Any]:
    return [key for key, changed in rows if changed]


async def write(
    conn: psycopg.AsyncConnection[Any], kind: str, events: list[Event], instance: str
) -> list[Any]:
    """Send one kind's events, a statement at a time; return the keys of the rows that
    replaced different content (snapshots)."""
    out: list[Any] = []
    async with conn.cursor() as cur:
        for sql, params, reports in _statements(kind, events, instance):
            await cur.execute(sql, params)
            if reports:
                out += _replaced(await cur.fetchall())
    return out


@dataclasses.dataclass(frozen=True)
class GroupQuery:
    """A group's statements, kind by kind, as one query with its parameters bound: one
    transaction (the server runs a query of several statements as one) and one message
    each way. Sent a statement at a time, even pipelined, each statement waited for the
    socket, and with callers recording flat out each such wait took up to the
    interpreter's switch interval (5 ms) to get the GIL back. Binding on this side (a
    client cursor) is the only way to send several statements in one; made before it is
    sent, the query can be made while the group before it is in PostgreSQL."""

    text: str
    reports: tuple[bool, ...]  # per statement: its rows name rows that replaced others


def group_query(
    conn: psycopg.AsyncConnection[Any], kinds: list[tuple[str, list[Event]]], instance: str
) -> GroupQuery:
    parts = [part for kind, events in kinds for part in _statements(kind, events, instance)]
    text = psycopg.AsyncClientCursor(conn).mogrify(
        ";".join(sql for sql, _p, _r in parts), [v for part in parts for v in part[1]]
    )
    return GroupQuery(text, tuple(reports for _s, _p, reports in parts))


async def send_group(conn: psycopg.AsyncConnection[Any], query: GroupQuery) -> list[Any]:
    """Run a :func:`group_query`; return what :func:`write` returns."""
    out: list[Any] = []
    async with psycopg.AsyncClientCursor(conn) as cur:
        await cur.execute(query.text)
        for reports in query.reports:
            if reports:
                out += _replaced(await cur.fetchall())
            cur.nextset()
    return out


STORED_FILLS = "SELECT exchange, fill_id FROM fills WHERE fill_id = ANY(%s)"

_DEAD_LETTER_NAMESPACE = uuid.UUID("0b9c1f64-0d7e-4d8e-a1c3-62b4c1de7a55")


def dead_letter_log(instance: int, row: tuple[int, str, bytes], reason: str) -> dict[str, Any]:
    """The system_logs row that says an event was refused (journal form); its id is the
    same on a replay, and unique among the journals (``instance``) on one database and
    among the events of one journal row (a resolved held fill and its trade share a seq)."""
    seq, kind, payload = row
    digest = hashlib.blake2b(payload, digest_size=8).hexdigest()
    return {
        "log_id": str(uuid.uuid5(_DEAD_LETTER_NAMESPACE, f"{instance}:{seq}:{kind}:{digest}")),
        "log_timestamp": utcnow().isoformat(),
        "source_module": SOURCE,
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
