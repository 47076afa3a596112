"""Updates folded into their row's insert store exactly what the unfolded statements do.

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
from galfriday_recorder.ledger.fold import fold
from galfriday_recorder.ledger.journal import Row, encode_event
from galfriday_recorder.ledger.sql import group_query, send_group, write
from galfriday_recorder.records import ORDER_STATUSES, OrderUpdate, SignalStatusUpdate

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


_VERDICT = st.one_of(
    st.none(),
    st.tuples(
        st.integers(0, 12),  # where it falls among the orders' events
        st.sampled_from(["APPROVED", "REJECTED"]),
        st.one_of(
            st.none(),
            st.dictionaries(  # what JSONB takes: no NUL, integers within 64 bits
                st.text(
                    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8
                ),
                st.integers(-(2**63), 2**63 - 1),
                max_size=2,
            ),
        ),
    ),
)


def _events(
    orders: int, updates: list[tuple[int, tuple[Any, ...]]], verdict: Any = None
) -> list[Row]:
    """A signal, its orders and their updates; ``verdict`` (one, as the state machine
    allows) anywhere after the signal."""
    signal = make_signal()
    made = [make_order(signal, created_at=T0) for _ in range(orders)]
    events = [encode_event("order", o) for o in made]
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
    if verdict is not None:
        at, status, details = verdict
        decided = SignalStatusUpdate(
            signal_id=signal.signal_id,
            status=status,
            rejection_reason="risk" if status == "REJECTED" else None,
            risk_check_details=details,
        )
        events.insert(min(at, len(events)), encode_event("signal_status", decided))
    events.insert(0, encode_event("signal", signal))
    return [(seq, kind, payload) for seq, (kind, payload) in enumerate(events, 1)]


async def _commit(conn: psycopg.AsyncConnection[Any], group: list[Row], *, folded: bool) -> None:
    """Folded: as the committer sends a group, one query; else statement by statement."""
    ordered = sorted(fold(group) if folded else group, key=lambda r: KIND_ORDER[r[1]])
    kinds = [
        (kind, [(s, p) for s, _k, p in same])
        for kind, same in itertools.groupby(ordered, key=lambda r: r[1])
    ]
    if folded:
        await send_group(conn, group_query(conn, kinds, INSTANCE))
        return
    async with conn.transaction():
        for kind, events in kinds:
            await write(conn, kind, events, INSTANCE)


async def _rows(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT client_order_id, status, exchange_order_id, submitted_at, error_message, "
        "last_updated_at, ledger_seq, quantity_filled FROM orders ORDER BY client_order_id"
    )
    orders = await cur.fetchall()
    cur = await conn.execute(
        "SELECT signal_id, status, rejection_reason, risk_check_details FROM signals"
    )
    return orders + await cur.fetchall()


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
    verdict=_VERDICT,
)
def test_folded_groups_store_what_one_event_at_a_time_does(
    pg_dsn: str, orders: int, updates: list[Any], cuts: list[int], replayed: int, verdict: Any
) -> None:
    events = _events(orders, updates, verdict)
    bounds = sorted({min(c, len(events)) for c in cuts} | {len(events)})
    groups = [events[a:b] for a, b in zip([0, *bounds], bounds, strict=False) if a < b]

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await _reset(conn)  # the database is shared by the examples
            for event in events:
                await _commit(conn, [event], folded=False)
            expected = await _rows(conn)
            await _reset(conn)
            for group in groups:
                await _commit(conn, group, folded=True)
            assert await _rows(conn) == expected
            # A crash after committing a prefix, before the journal delete: the replay's
            # group holds that prefix again and what follows, folded together.
            await _reset(conn)
            head = min(replayed, len(events))
            if head:
                await _commit(conn, events[:head], folded=True)
            await _commit(conn, events, folded=True)
            assert await _rows(conn) == expected

    asyncio.run(run())


def test_only_rows_with_later_updates_in_the_group_change() -> None:
    events = _events(2, [(0, ("NEW", "EX-1", None, None)), (0, ("FILLED", None, 5, "late"))])
    folded = fold(events)
    assert [r[:2] for r in folded] == [r[:2] for r in events]
    first = orjson.loads(folded[1][2])
    assert (first["status"], first["exchange_order_id"], first["ledger_seq"]) == (
        "FILLED",
        "EX-1-0",
        5,
    )
    assert first["error_message"] == "late"
    assert folded[2] is events[2]  # the other order: no update in the group, untouched
    assert fold(events[3:]) == events[3:]  # updates without their order


def test_a_verdict_rides_on_its_signal_and_an_update_on_its_order() -> None:
    events = _events(1, [(0, ("NEW", "EX-1", None, None))], (1, "APPROVED", {"risk": 1}))
    assert [kind for _s, kind, _p in events] == ["signal", "order", "signal_status", "order_update"]
    folded = fold(events)
    signal = orjson.loads(folded[0][2])
    assert (signal["status"], signal["risk_check_details"]) == ("APPROVED", {"risk": 1})
    assert orjson.loads(folded[1][2])["status"] == "NEW"
    assert folded[2:] == events[2:]  # the updates stay, for a replay


def test_a_folded_group_updates_no_row(pg_dsn: str) -> None:
    """What folding is for: no second row version (PostgreSQL's own count); unfolded, the
    same group updates both rows."""
    events = _events(1, [(0, ("NEW", "EX-1", None, None))], (1, "REJECTED", None))

    async def updated(folded: bool) -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await _reset(conn)
            ordered = sorted(fold(events) if folded else events, key=lambda r: KIND_ORDER[r[1]])
            async with conn.transaction():
                for kind, same in itertools.groupby(ordered, key=lambda r: r[1]):
                    await write(conn, kind, [(s, p) for s, _k, p in same], INSTANCE)
                cur = conn.cursor()
                await cur.execute(
                    "SELECT pg_stat_get_xact_tuples_updated('orders'::regclass), "
                    "pg_stat_get_xact_tuples_updated('signals'::regclass)"
                )
                row = await cur.fetchone()
                assert row is not None
                return int(row[0]), int(row[1])

    assert asyncio.run(updated(False)) == (1, 1)
    assert asyncio.run(updated(True)) == (0, 0)
