"""Fewer row versions per group commit: an order's later updates ride on its insert.

Every ``orders`` row version costs an entry in each of its indexes (status is
indexed, so no update of it is HOT). When an order and updates of it are in one
group, the order is inserted as the updates leave it (last status, last value
given of each field, ``ledger_seq`` of the last update), and the update statement
then finds the row already as new and writes nothing. The update events stay in
the group: if the insert finds the order already stored (a replay after a crash
between the PostgreSQL commit and the journal delete), they apply as before.
"""

from __future__ import annotations

from typing import Any

import orjson

from .journal import Row

# Order fields an update sets: the update's key, the order's key.
_LATEST = (
    ("exchange_order_id", "exchange_order_id"),
    ("submitted_at", "submitted_at"),
    ("error_message", "error_message"),
)


def fold_order_updates(rows: list[Row]) -> list[Row]:
    """``rows`` (journal order) with each order carrying its later updates in the group."""
    kinds = {kind for _seq, kind, _payload in rows}
    if "order" not in kinds or "order_update" not in kinds:
        return rows
    orders: dict[str, tuple[int, int, dict[str, Any]]] = {}  # id -> (index, seq, payload)
    folded: set[str] = set()
    for i, (seq, kind, payload) in enumerate(rows):
        if kind == "order":
            order = orjson.loads(payload)
            orders.setdefault(order["client_order_id"], (i, seq, order))
        elif kind == "order_update":
            update = orjson.loads(payload)
            key = update["client_order_id"]
            found = orders.get(key)
            if found is None or found[1] >= seq:  # same seq: the update never applied
                continue
            order = found[2]
            order["status"] = update["status"]
            order["last_updated_at"] = update["updated_at"]
            order["ledger_seq"] = seq
            for field, column in _LATEST:
                if update.get(field) is not None:
                    order[column] = update[field]
            folded.add(key)
    if not folded:
        return rows
    out = list(rows)
    for key in folded:
        i, seq, order = orders[key]
        out[i] = (seq, "order", orjson.dumps(order))
    return out
