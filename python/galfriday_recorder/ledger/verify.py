"""An auditor's check: every trade recomputed from the fills stored in PostgreSQL.

The ledger derives a trade from a signal's fills (see :mod:`.cycles`); here the
same derivation runs over every stored fill, in the order PostgreSQL stored
them, and the result is compared with the ``trades`` table: a trade the fills
close that no row holds is *missing*, a row no fill derives is *extra* (a
trade the bot recorded itself with ``record_trade`` is one), a row whose
numbers differ is *different*.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..records import Trade
from .cycles import Cycle
from .recovery import derive_trades

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


@dataclasses.dataclass(frozen=True, slots=True)
class Difference:
    kind: str  # missing, extra or different
    trade_id: uuid.UUID
    signal_id: uuid.UUID | None
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} trade {self.trade_id} (signal {self.signal_id}): {self.detail}"


def verify(conn: psycopg.Connection[Any]) -> list[Difference]:
    """Every difference between the stored trades and those the stored fills derive."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute(
            "SELECT s.signal_id, s.side, s.trading_pair, s.exchange, s.strategy_id "
            "FROM signals s WHERE EXISTS (SELECT 1 FROM orders o JOIN fills f "
            "USING (order_pk) WHERE o.signal_id = s.signal_id)"
        )
        cycles = {r["signal_id"]: Cycle(**r) for r in cur.fetchall()}
        derived = {t.trade_id: t for t in derive_trades(cur, cycles, None)}
        cur.execute(
            f"SELECT trade_id, realized_pnl_pct, {', '.join(_EXACT)} FROM trades ORDER BY trade_id"
        )
        stored = {r["trade_id"]: r for r in cur.fetchall()}
    diffs = [
        Difference("missing", t.trade_id, t.signal_id, _describe(t))
        for tid, t in derived.items()
        if tid not in stored
    ]
    for tid, row in stored.items():
        trade = derived.get(tid)
        if trade is None:
            diffs.append(Difference("extra", tid, row["signal_id"], "no stored fills derive it"))
            continue
        wrong = [
            f"{name} {row[name]} != {getattr(trade, name)}"
            for name in _EXACT
            if row[name] != getattr(trade, name)
        ]
        if not math.isclose(row["realized_pnl_pct"], trade.realized_pnl_pct, rel_tol=1e-6):
            wrong.append(f"realized_pnl_pct {row['realized_pnl_pct']} != {trade.realized_pnl_pct}")
        if wrong:
            diffs.append(Difference("different", tid, trade.signal_id, "; ".join(wrong)))
    return diffs


def _describe(trade: Trade) -> str:
    return (
        f"{trade.side} {trade.quantity} {trade.trading_pair}, "
        f"realized_pnl {trade.realized_pnl}, exit {trade.exit_timestamp.isoformat()}"
    )
