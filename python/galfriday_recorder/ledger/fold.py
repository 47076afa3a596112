"""Fewer row versions per group commit: a row's later updates in the group ride on its insert.

Every row version costs an entry in each index of its table, and no update of an
order's or a signal's status is HOT (both are indexed). When a row and updates of
it are in one group, the row is inserted as the updates leave it, and the update
statement then finds it already as new and writes nothing (an order's
``ledger_seq`` is the last update's; a signal's verdict is the one stored). The
update events stay in the group: if the insert finds the row already stored (a
replay after a crash between the PostgreSQL commit and the journal delete), they
apply as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from .journal import Row

Payload = dict[str, Any]

# Order fields an update sets when it gives them.
_LATEST = ("exchange_order_id", "submitted_at", "error_message")


def _order_update(order: Payload, seq: int, update: Payload) -> None:
    order["status"] = update["status"]
    order["last_updated_at"] = update["updated_at"]
    order["ledger_seq"] = seq
    for field in _LATEST:
        if update.get(field) is not None:
            order[field] = update[field]


def _verdict(signal: Payload, _seq: int, update: Payload) -> None:
    signal["status"] = update["status"]
    signal["rejection_reason"] = update["rejection_reason"]
    if update.get("risk_check_details") is not None:
        signal["risk_check_details"] = update["risk_check_details"]


# The insert's kind -> the kind of its updates, the key both carry, how an update applies.
_FOLDS: dict[str, tuple[str, str, Callable[[Payload, int, Payload], None]]] = {
    "order": ("order_update", "client_order_id", _order_update),
    "signal": ("signal_status", "signal_id", _verdict),
}
_INSERT_OF = {update: insert for insert, (update, _key, _apply) in _FOLDS.items()}


def fold(rows: list[Row]) -> list[Row]:
    """``rows`` (journal order) with each insert carrying its later updates in the group."""
    kinds = {kind for _seq, kind, _payload in rows}
    folding = {insert for insert, (update, _k, _a) in _FOLDS.items() if {insert, update} <= kinds}
    if not folding:
        return rows
    inserts: dict[tuple[str, str], tuple[int, int, Payload]] = {}  # -> (index, seq, payload)
    folded: set[tuple[str, str]] = set()
    for i, (seq, kind, payload) in enumerate(rows):
        if kind in folding:
            row = orjson.loads(payload)
            inserts.setdefault((kind, row[_FOLDS[kind][1]]), (i, seq, row))
            continue
        insert = _INSERT_OF.get(kind)
        if insert is None or insert not in folding:
            continue
        _update, key, apply = _FOLDS[insert]
        update = orjson.loads(payload)
        target = (insert, update[key])
        found = inserts.get(target)
        if found is None or found[1] >= seq:  # same seq: the update never applied
            continue
        apply(found[2], seq, update)
        folded.add(target)
    if not folded:
        return rows
    out = list(rows)
    for target in folded:
        i, seq, row = inserts[target]
        out[i] = (seq, target[0], orjson.dumps(row))
    return out
