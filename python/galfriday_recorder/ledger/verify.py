"""An auditor's check: every trade recomputed from the fills stored in PostgreSQL.

The ledger derives a trade from a signal's fills (see :mod:`.cycles`); here the
same derivation runs over every stored fill, in the order PostgreSQL stored
them, and the result is compared with the ``trades`` table: a trade the fills
close that no row holds is *missing*, a row no fill derives is *extra* (a
trade the bot recorded itself with ``record_trade`` is one), a row whose
numbers differ is *different*.

A fill of an order without a signal counts for the cycles its stored allocations
name (what restarts rebuild from). Those allocations are checked on their own
against an independent replay of the rule that made them (each such fill reduces
the open cycles of its pair, oldest first, each recorder its own): an allocation
the replay does not make, makes otherwise or makes and no row holds is an
*allocation* difference.

Each signal's ``untraded_quantity`` (what a start reads instead of the history) must
be its entry fills less its trades marked ``derived``; otherwise an *untraded*
difference. (A row marked derived that no fill derives is *extra*.) A cycle the fills
close whose trade no row can hold (a number beyond NUMERIC(38,18)) is *unstorable*.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..records import Trade
from .cycles import Cycle, FillOrder, reduce_cycles
from .recovery import FILL_COLUMNS, HEAD_COLUMNS, derive_cycles, fill_from_row

# Compared exactly; realized_pnl_pct is a PostgreSQL real, compared to its precision.
_EXACT = (
    "signal_id",
    "quantity",
    "average_entry_price",
    "average_exit_price",
    "total_commission",
    "realized_pnl",
    "exit_reason",
    "entry_timestamp",
    "exit_timestamp",
)
# (exchange, fill_id, signal_id) -> quantity
Allocations = dict[tuple[str, str, uuid.UUID], Decimal]


@dataclasses.dataclass(frozen=True, slots=True)
class Difference:
    kind: str  # missing, extra, different, allocation, untraded or unstorable
    subject: str  # "trade <id>", "allocation of fill <exchange>:<fill_id>", "signal <id>"
    signal_id: uuid.UUID | None
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} (signal {self.signal_id}): {self.detail}"


def verify(conn: psycopg.Connection[Any]) -> list[Difference]:
    """Every difference between the stored trades and those the stored fills derive, and
    between the stored allocations and those the oldest-first rule makes."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute(
            f"SELECT {HEAD_COLUMNS} FROM signals s WHERE EXISTS (SELECT 1 FROM orders o "
            "JOIN fills f USING (order_pk) WHERE o.signal_id = s.signal_id) "
            "OR EXISTS (SELECT 1 FROM fill_allocations a WHERE a.signal_id = s.signal_id)"
        )
        heads = cur.fetchall()
        cycles = {r["signal_id"]: Cycle(**r) for r in heads}
        derived = {t.trade_id: t for t in derive_cycles(cur, cycles)}
        unstorable = [
            Difference("unstorable", f"trade of signal {c.signal_id}", c.signal_id, reason)
            for c in cycles.values()
            for reason in c.unstorable
        ]
        cur.execute(
            f"SELECT trade_id, realized_pnl_pct, {', '.join(_EXACT)} FROM trades ORDER BY trade_id"
        )
        stored = {r["trade_id"]: r for r in cur.fetchall()}
        replayed = _replay_allocations(cur, {r["signal_id"]: Cycle(**r) for r in heads})
        cur.execute(
            "SELECT f.exchange, f.fill_id, a.signal_id, a.quantity FROM fill_allocations a "
            "JOIN fills f USING (fill_pk)"
        )
        allocated = {(r["exchange"], r["fill_id"], r["signal_id"]): r["quantity"] for r in cur}
        cur.execute(
            "SELECT s.signal_id, s.untraded_quantity AS stored, COALESCE((SELECT "
            "sum(f.quantity_filled) FROM orders o JOIN fills f USING (order_pk) WHERE "
            "o.signal_id = s.signal_id AND f.side = s.side), 0) - COALESCE((SELECT "
            "sum(t.quantity) FROM trades t WHERE t.signal_id = s.signal_id AND t.derived), 0) "
            "AS want FROM signals s"
        )
        untraded = [r for r in cur if r["stored"] != r["want"]]
    return (
        unstorable
        + _trade_differences(derived, stored)
        + _allocation_differences(replayed, allocated)
        + [
            Difference(
                "untraded",
                f"signal {r['signal_id']}",
                r["signal_id"],
                f"stored {_plain(r['stored'])}, its entry fills less its derived trades give "
                f"{_plain(r['want'])}",
            )
            for r in untraded
        ]
    )


def _trade_differences(
    derived: dict[uuid.UUID, Trade], stored: dict[uuid.UUID, dict[str, Any]]
) -> list[Difference]:
    diffs = [
        Difference("missing", f"trade {tid}", t.signal_id, _describe(t))
        for tid, t in derived.items()
        if tid not in stored
    ]
    for tid, row in stored.items():
        trade = derived.get(tid)
        if trade is None:
            diffs.append(
                Difference("extra", f"trade {tid}", row["signal_id"], "no stored fills derive it")
            )
            continue
        wrong = [
            f"{name} {row[name]} != {getattr(trade, name)}"
            for name in _EXACT
            if row[name] != getattr(trade, name)
        ]
        if not math.isclose(row["realized_pnl_pct"], trade.realized_pnl_pct, rel_tol=1e-6):
            wrong.append(f"realized_pnl_pct {row['realized_pnl_pct']} != {trade.realized_pnl_pct}")
        if wrong:
            diffs.append(Difference("different", f"trade {tid}", trade.signal_id, "; ".join(wrong)))
    return diffs


def _allocation_differences(replayed: Allocations, stored: Allocations) -> list[Difference]:
    diffs = []
    for key in sorted(replayed.keys() | stored.keys(), key=str):
        want, have = replayed.get(key), stored.get(key)
        if want != have:
            exchange, fill_id, signal_id = key
            diffs.append(
                Difference(
                    "allocation",
                    f"of fill {exchange}:{fill_id}",
                    signal_id,
                    f"the rule takes {_plain(want)}, stored {_plain(have)}",
                )
            )
    return diffs


def _plain(quantity: Decimal | None) -> str:
    return "0" if quantity is None else f"{quantity.normalize():f}"


def _replay_allocations(
    cur: psycopg.Cursor[dict[str, Any]], cycles: dict[uuid.UUID, Cycle]
) -> Allocations:
    """Replay every stored fill in stored order, the fills of orders without a signal
    shared among the cycles open at the time, oldest first (:func:`.cycles.reduce_cycles`),
    as each recorder did: its own such fill reduced the cycles its orders opened and
    those of rows older than ``recorder_instance`` (NULL, everyone's); a NULL one any."""
    cur.execute(
        f"SELECT {FILL_COLUMNS}, o.signal_id, o.order_type, o.exit_reason, o.recorder_instance "
        "FROM fills f JOIN orders o USING (order_pk) ORDER BY f.fill_pk"
    )
    opened: dict[uuid.UUID, Cycle] = {}  # open now, oldest first, as the ledger's were
    owners: dict[uuid.UUID, str | None] = {}  # the recorder whose fill opened each cycle
    allocations: Allocations = {}
    for row in cur.fetchall():
        signal_id, owner = row.pop("signal_id"), row.pop("recorder_instance")
        order = FillOrder(row["client_order_id"], row.pop("order_type"), row.pop("exit_reason"))
        fill = fill_from_row(row)
        if signal_id is not None:
            cycle = cycles[signal_id]
            opened.setdefault(signal_id, cycle)
            owners.setdefault(signal_id, owner)
            cycle.apply(fill, order)
            reduced = [cycle]
        else:
            mine = [
                c for c in opened.values() if owner is None or owners[c.signal_id] in (owner, None)
            ]
            touched, _left = reduce_cycles(mine, fill, order)
            for cycle, quantity, _trade in touched:
                allocations[(fill.exchange, fill.fill_id, cycle.signal_id)] = quantity
            reduced = [cycle for cycle, _quantity, _trade in touched]
        for cycle in reduced:
            if cycle.open_quantity == 0:
                opened.pop(cycle.signal_id, None)
    return allocations


def _describe(trade: Trade) -> str:
    return (
        f"{trade.side} {trade.quantity} {trade.trading_pair}, "
        f"realized_pnl {trade.realized_pnl}, exit {trade.exit_timestamp.isoformat()}"
    )
