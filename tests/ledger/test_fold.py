"""An order's updates folded into its insert store exactly what the unfolded statements do.

Against real PostgreSQL: the same events go in as the committer sends a group
(folded, kind by kind, one transaction per group) and, as the independent
reference, one event per transaction in journal order without folding; every
split of the events into groups, and a replay of a committed group inside a
larger one (a crash between commit and journal delete), gives the same rows.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import orjson
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledgerkit import T0, make_order, make_signal

from galfriday_recorder.ledger import KIND_ORDER
from galfriday_recorder.ledger.fold import fold_order_updates
from galfriday_recorder.ledger.journal import Row, encode_event
from galfriday_recorder.ledger.sql import write
from galfriday_recorder.records import ORDER_STATUSES, OrderUpdate

INSTANCE = "fold-test"
_TEXT = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=64),
)
_UPDATE = st.tuples(
    st.sampled_from(sorted(ORDER_STATUSES)),
    _TEXT,  # exchange_order_id
    st.one_of(st.none(), st.integers(0, 10_000)),  # submitted_at, ms after T0
    _TEXT,  # error_message
)


def _events(orders: int, updates: list[tuple[int, tuple[Any, ...]]]) -> list[Row]:
    signal = make_signal()
    made = [make_order(signal, created_at=T0) for _ in range(orders)]
    events = [encode_event("signal", signal)] + [encode_event("order", o) for o in made]
    for n, (which, (status, exchange_id, submitted, error)) in enumerate(updates):
        update = OrderUpdate(
            client_order_id=made[which % orders].client_order_id,
            status=status,
            exchange_order_id=None if exchange_id is None else f"{exchange_id[:60]}-{n}",
            submitted_at=None if submitted is None else T0 + timedelta(milliseconds=submitted),
            error_message=error,
            updated_at=T0 + timedelta(seconds=n),
        )
        events.append(encode_event("order_update", update))
    return [(seq, kind, payload) for seq, (kind, payload) in enumerate(events, 1)]


async def _commit(conn: psycopg.AsyncConnection[Any], group: list[Row], *, fold: bool) -> None:
    ordered = sorted(fold_order_updates(group) if fold else group, key=lambda r: KIND_ORDER[r[1]])
    async with conn.transaction():
        cur = conn.cursor()
        for kind, same in itertools.groupby(ordered, key=lambda r: r[1]):
            await write(cur, kind, [(s, p) for s, _k, p in same], INSTANCE)


async def _orders(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT client_order_id, status, exchange_order_id, submitted_at, error_message, "
        "last_updated_at, ledger_seq, quantity_filled FROM orders ORDER BY client_order_id"
    )
    return await cur.fetchall()


async def _reset(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("TRUNCATE orders, signals CASCADE")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    orders=st.integers(1, 3),
    updates=st.lists(st.tuples(st.integers(0, 2), _UPDATE), max_size=8),
    cuts=st.lists(st.integers(1, 12), max_size=3),
    replayed=st.integers(0, 12),
)
def test_folded_groups_store_what_one_event_at_a_time_does(
    pg_dsn: str, orders: int, updates: list[Any], cuts: list[int], replayed: int
) -> None:
    events = _events(orders, updates)
    bounds = sorted({min(c, len(events)) for c in cuts} | {len(events)})
    groups = [events[a:b] for a, b in zip([0, *bounds], bounds, strict=False) if a < b]

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await _reset(conn)  # the database is shared by the examples
            for event in events:
                await _commit(conn, [event], fold=False)
            expected = await _orders(conn)
            await _reset(conn)
            for group in groups:
                await _commit(conn, group, fold=True)
            assert await _orders(conn) == expected
            # A crash after committing a prefix, before the journal delete: the replay's
            # group holds that prefix again and what follows, folded together.
            await _reset(conn)
            head = min(replayed, len(events))
            if head:
                await _commit(conn, events[:head], fold=True)
            await _commit(conn, events, fold=True)
            assert await _orders(conn) == expected

    asyncio.run(run())


def test_only_orders_with_later_updates_in_the_group_change() -> None:
    events = _events(2, [(0, ("NEW", "EX-1", None, None)), (0, ("FILLED", None, 5, "late"))])
    folded = fold_order_updates(events)
    assert [r[:2] for r in folded] == [r[:2] for r in events]
    first = orjson.loads(folded[1][2])
    assert (first["status"], first["exchange_order_id"], first["ledger_seq"]) == (
        "FILLED",
        "EX-1-0",
        5,
    )
    assert first["error_message"] == "late"
    assert folded[2] is events[2]  # the other order: no update in the group, untouched
    assert fold_order_updates(events[3:]) == events[3:]  # updates without their order
