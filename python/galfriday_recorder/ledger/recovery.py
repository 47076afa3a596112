"""What a restarting bot needs from the ledger, read back from PostgreSQL.

The same reads seed the ledger's in-memory state (order and signal state
machines, open trade cycles) when it starts. Several recorders may share the
database: given an ``instance`` name, the reads keep the signals and orders that
recorder wrote (``recorder_instance``), and those written before the column existed
(NULL), which every recorder counts as its own; ``instance=None`` reads everyone's.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from ..records import Configuration, Fill, Order, PortfolioSnapshot, Signal, Trade
from ..riskstate import RISK_STATE_SQL, RiskState, risk_state, risk_state_params
from .cycles import Cycle, FillOrder
from .state import TERMINAL_ORDER_STATUSES, Out

_ORDER_COLUMNS = (
    "o.order_pk, o.quantity_filled, o.client_order_id, o.exchange_order_id, o.signal_id, "
    "o.trading_pair, o.exchange, o.side, o.order_type, o.quantity_ordered, o.limit_price, "
    "o.stop_price, o.status, o.error_message, o.exit_reason, o.created_at, o.submitted_at, "
    "o.last_updated_at, o.client_order_ref"
)
FILL_COLUMNS = (
    "f.fill_pk, f.fill_id, o.client_order_id, f.exchange_order_id, f.trading_pair, "
    "f.exchange, f.side, f.quantity_filled, f.fill_price, f.commission, f.commission_asset, "
    "f.liquidity_type, f.filled_at"
)
HEAD_COLUMNS = "s.signal_id, s.side, s.trading_pair, s.exchange, s.strategy_id"
_SIGNAL_COLUMNS = (
    "s.signal_id, s.trading_pair, s.exchange, s.strategy_id, s.side, s.entry_type, "
    "s.proposed_entry_price, s.proposed_sl_price, s.proposed_tp_price, s.prediction_event_id, "
    "s.prediction_value, s.status, s.rejection_reason, s.risk_check_details, s.created_at"
)


@dataclasses.dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order not yet in a terminal status, with what has filled so far."""

    order: Order
    order_pk: int
    quantity_filled: Decimal
    fills: list[Fill]


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryState:
    open_orders: list[OpenOrder]
    latest_snapshot: PortfolioSnapshot | None
    active_configuration: Configuration | None
    open_cycles: list[Cycle]
    # Signals the state machines still need: undecided ones and those behind open
    # orders or open cycles.
    signals: list[Signal]
    risk: RiskState


def fill_from_row(row: dict[str, Any]) -> Fill:
    row = dict(row)
    fill_pk = row.pop("fill_pk")
    if row["fill_id"] is None:  # a row written by something else than this ledger
        row["fill_id"] = f"pk-{fill_pk}"
    return Fill(**row)


def _order(row: dict[str, Any]) -> tuple[int, Decimal, Order]:
    row = dict(row)
    return row.pop("order_pk"), row.pop("quantity_filled"), Order(**row)


def _own(alias: str) -> str:
    """The rows of table ``alias`` that recorder ``%(instance)s`` counts as its own."""
    return (
        f"(%(instance)s::text IS NULL OR {alias}.recorder_instance IS NULL "
        f"OR {alias}.recorder_instance = %(instance)s)"
    )


# An order still open, written as the predicate of the partial indexes on open orders
# (migrations 0003, 0005) so that any plan, a prepared statement's generic one too, reads
# the open orders through them instead of every order (constants, not input).
_OPEN = "o.status NOT IN ({})".format(", ".join(f"'{s}'" for s in TERMINAL_ORDER_STATUSES))
# Whose open orders and cycles a caller reads: its own recorder's, or every recorder's.
Scope = Literal["own", "all"]


def load_recovery_state(conn: psycopg.Connection[Any], instance: str | None) -> RecoveryState:
    """Read everything in one repeatable-read snapshot so the parts agree with each other:
    the open orders, open cycles and signals ``instance`` owns (everyone's if None); the
    latest snapshot, active configuration and risk state, which are the database's."""
    return read_start(conn, instance)[0]


def read_start(conn: psycopg.Connection[Any], instance: str | None) -> tuple[RecoveryState, Out]:
    """:func:`load_recovery_state`, and what a start writes (one derivation): the trades
    that stored fills of ``instance``'s signals close but no ``trades`` row holds, and a
    repair of each signal whose stored trades it derives are not all marked derived
    (history before migration 0007) or whose ``untraded_quantity`` disagrees with them
    (see ``sql._UNTRADED``: it sets the column again from what is stored when it commits).

    Only the signals whose entries are not all in a derived trade are read, through
    ``signals.untraded_quantity``: a start's read grows with the cycles left open, not
    with the history; ``galfriday-recorder verify`` checks everything.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE {_OPEN} "
            f"AND {_own('o')} ORDER BY o.order_pk",
            {"instance": instance},
        )
        orders = [_order(r) for r in cur.fetchall()]
        cur.execute(
            f"SELECT {FILL_COLUMNS} FROM fills f JOIN orders o USING (order_pk) "
            "WHERE o.order_pk = ANY(%s) ORDER BY f.fill_pk",
            ([pk for pk, _, _ in orders],),
        )
        fills_by_order: dict[uuid.UUID, list[Fill]] = {}
        for row in cur.fetchall():
            fill = fill_from_row(row)
            assert fill.client_order_id is not None
            fills_by_order.setdefault(fill.client_order_id, []).append(fill)
        open_orders = [
            OpenOrder(order, pk, filled, fills_by_order.get(order.client_order_id, []))
            for pk, filled, order in orders
        ]
        unfinished, off = _unfinished(cur, instance)
        derived = derive_cycles(cur, unfinished)
        flagged = _stored(cur, derived)
        repairs: Out = [("derived_trade", t) for t in derived if t.trade_id not in flagged]
        stored_ids: dict[uuid.UUID, list[str]] = {sid: [] for sid in unfinished}
        wrong = {sid for sid, by in off.items() if by != 0}
        for t in derived:
            if t.trade_id in flagged and t.signal_id is not None:  # derived: never None
                stored_ids[t.signal_id].append(str(t.trade_id))
                if not flagged[t.trade_id]:
                    wrong.add(t.signal_id)
        repairs += [
            ("untraded", {"signal_id": sid, "trade_ids": stored_ids[sid]})
            for sid in unfinished
            if sid in wrong
        ]
        cycles = [c for c in unfinished.values() if c.open_quantity != 0]
        behind = {c.signal_id for c in cycles}
        behind.update(o.signal_id for _pk, _filled, o in orders if o.signal_id is not None)
        cur.execute(
            f"SELECT {_SIGNAL_COLUMNS} FROM signals s WHERE (s.status = 'PROPOSED' "
            f"AND {_own('s')}) OR s.signal_id = ANY(%(behind)s)",
            {"behind": list(behind), "instance": instance},
        )
        signals = [Signal(**r) for r in cur.fetchall()]
        cur.execute(
            "SELECT snapshot_timestamp, total_equity, available_balance, "
            "total_exposure_pct, daily_drawdown_pct, weekly_drawdown_pct, "
            "total_drawdown_pct, positions FROM portfolio_snapshots "
            "ORDER BY snapshot_timestamp DESC LIMIT 1"
        )
        snap = cur.fetchone()
        cur.execute(
            "SELECT config_hash, config_content, loaded_at FROM configurations WHERE is_active"
        )
        config = cur.fetchone()
        params = risk_state_params(None)
        cur.execute(RISK_STATE_SQL, params)
        risk_row = cur.fetchone()
        assert risk_row is not None  # one row of scalar subqueries, always
        risk = risk_state(risk_row, params["as_of"])
    state = RecoveryState(
        open_orders=open_orders,
        latest_snapshot=PortfolioSnapshot(**snap) if snap else None,
        active_configuration=Configuration(**config) if config else None,
        open_cycles=cycles,
        signals=signals,
        risk=risk,
    )
    return state, repairs


def _unfinished(
    cur: psycopg.Cursor[dict[str, Any]], instance: str | None
) -> tuple[dict[uuid.UUID, Cycle], dict[uuid.UUID, Decimal]]:
    """Empty cycles of the signals whose entries are not all in a derived trade: each open
    cycle's, and each closed one's whose trade row is missing (or not yet known to be
    derived: history before migration 0007). Every entry fill belongs to one cycle of
    its signal and a trade's quantity is its cycle's entries, so the others are
    finished, however their exits (signal-less parts, excess) came.

    With each, how far its ``untraded_quantity`` is from its entry fills less its
    trades marked derived (zero unless the column is wrong)."""
    cur.execute(
        f"SELECT {HEAD_COLUMNS}, s.untraded_quantity - (SELECT COALESCE(sum(f.quantity_filled), "
        "0) FROM orders o JOIN fills f USING (order_pk) WHERE o.signal_id = s.signal_id "
        "AND f.side = s.side) + (SELECT COALESCE(sum(t.quantity), 0) FROM trades t "
        "WHERE t.signal_id = s.signal_id AND t.derived) AS off FROM signals s "
        f"WHERE s.untraded_quantity <> 0 AND {_own('s')}",
        {"instance": instance},
    )
    cycles, off = {}, {}
    for r in cur.fetchall():
        off[r["signal_id"]] = r.pop("off")
        cycles[r["signal_id"]] = Cycle(**r)
    return cycles, off


def derive_cycles(
    cur: psycopg.Cursor[dict[str, Any]], cycles: dict[uuid.UUID, Cycle]
) -> list[Trade]:
    """Run these signals' stored fills, and the parts of signal-less fills allocated to
    them (``fill_allocations``), through their cycles in the order PostgreSQL stored them
    (the ledger's order); return the trades they close. Reads these signals' rows only.
    The cycles are left holding what is still open, reordered oldest open first (the
    order the ledger shares the next signal-less fill in)."""
    if not cycles:
        return []
    cur.execute(
        f"SELECT {FILL_COLUMNS}, o.order_type, o.exit_reason, x.signal_id, x.allocated "
        "FROM (SELECT o.signal_id, f.fill_pk, NULL::numeric AS allocated FROM fills f "
        "JOIN orders o USING (order_pk) WHERE o.signal_id = ANY(%(ids)s) UNION ALL "
        "SELECT a.signal_id, a.fill_pk, a.quantity FROM fill_allocations a "
        "WHERE a.signal_id = ANY(%(ids)s)) x JOIN fills f ON f.fill_pk = x.fill_pk "
        "JOIN orders o ON o.order_pk = f.order_pk ORDER BY f.fill_pk",
        {"ids": list(cycles)},
    )
    opened: dict[uuid.UUID, Cycle] = {}  # open now, oldest first, as the ledger's were
    trades: list[Trade] = []
    for row in cur.fetchall():
        cycle, allocated = cycles[row.pop("signal_id")], row.pop("allocated")
        order = FillOrder(row["client_order_id"], row.pop("order_type"), row.pop("exit_reason"))
        opened.setdefault(cycle.signal_id, cycle)
        trade, _excess = cycle.apply(fill_from_row(row), order, available=allocated)
        if trade is not None:
            trades.append(trade)
        if cycle.open_quantity == 0:
            del opened[cycle.signal_id]
    ordered = {**opened, **cycles}
    cycles.clear()
    cycles.update(ordered)
    return trades


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedSignals:
    """Signals read on demand, with their open cycles and every trade their fills close."""

    signals: list[Signal]
    cycles: list[Cycle]
    trades: list[Trade]


def load_signals(conn: psycopg.Connection[Any], signal_ids: set[uuid.UUID]) -> LoadedSignals:
    """Read signals with their cycles rebuilt from their stored fills and allocations (one
    snapshot)."""
    if not signal_ids:
        return LoadedSignals([], [], [])
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute(
            f"SELECT {_SIGNAL_COLUMNS} FROM signals s WHERE s.signal_id = ANY(%s)",
            (list(signal_ids),),
        )
        signals = [Signal(**r) for r in cur.fetchall()]
        cycles = {
            s.signal_id: Cycle(s.signal_id, s.side, s.trading_pair, s.exchange, s.strategy_id)
            for s in signals
        }
        trades = _unstored(cur, derive_cycles(cur, cycles))
    return LoadedSignals(signals, [c for c in cycles.values() if c.open_quantity != 0], trades)


def _stored(cur: psycopg.Cursor[dict[str, Any]], trades: list[Trade]) -> dict[uuid.UUID, bool]:
    """Which of these trades have a row, and whether it is marked derived."""
    if not trades:
        return {}
    cur.execute(
        "SELECT trade_id, derived FROM trades WHERE trade_id = ANY(%s)",
        ([t.trade_id for t in trades],),
    )
    return {r["trade_id"]: r["derived"] for r in cur.fetchall()}


def _unstored(cur: psycopg.Cursor[dict[str, Any]], trades: list[Trade]) -> list[Trade]:
    stored = _stored(cur, trades)
    return [t for t in trades if t.trade_id not in stored]
