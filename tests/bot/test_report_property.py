"""Cumulative reports and per-trade fills of one order, in any order the bus delivers them,
through the recorder into PostgreSQL: the stored fills hold each execution once, compared
with an independent sum of what the exchange executed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galfriday_recorder import BotBridge, Recorder, RecorderConfig
from galfriday_recorder.lab.botevents import ExecutionReportEvent, FillEvent

PAIR = "XRP/USD"
_PLACES = Decimal(1).scaleb(-18)
_ids = itertools.count()
_qty = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4)
_price = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(100), places=5)
_fee = st.decimals(min_value=Decimal(0), max_value=Decimal(1), places=8)


@pytest.fixture(scope="module")
def session(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str, influx_service: Any
) -> Iterator[tuple[Recorder, BotBridge, str]]:
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
    influx_service.query(f'CREATE DATABASE "{name}"')
    cfg = RecorderConfig.load(
        env={},
        pg_dsn=dsn,
        influx_url=influx_service.url(),
        influx_database=name,
        data_dir=tmp_path_factory.mktemp("data"),
    )
    with Recorder(cfg) as rec:
        yield rec, BotBridge(rec), dsn
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    trades=st.lists(st.tuples(_qty, _price, _fee), min_size=1, max_size=6),
    data=st.data(),
)
def test_any_delivery_order_stores_each_execution_once(
    session: tuple[Recorder, BotBridge, str],
    trades: list[tuple[Decimal, Decimal, Decimal]],
    data: st.DataObject,
) -> None:
    rec, bridge, dsn = session
    n = next(_ids)
    eid, ref = f"OP-{n}", f"gf-prop-{n}"
    total = sum(q for q, _p, _f in trades)
    base: dict[str, Any] = {
        "exchange_order_id": eid,
        "client_order_id": ref,
        "trading_pair": PAIR,
        "exchange": "kraken",
        "order_type": "MARKET",
        "side": "BUY",
        "quantity_ordered": total,
        "commission_asset": "ZUSD",
    }
    qty = value = fee = Decimal(0)
    reports = [ExecutionReportEvent(order_status="NEW", **base)]
    fills = []
    for i, (q, p, f) in enumerate(trades):
        qty, value, fee = qty + q, value + q * p, fee + f
        fills.append(
            FillEvent(
                order_id=eid,
                fill_id=f"T-{n}-{i}",
                trading_pair=PAIR,
                side="BUY",
                price=p,
                quantity=q,
                fee=f,
            )
        )
        priced = data.draw(st.booleans())  # a report without a price says no price
        reports.append(
            ExecutionReportEvent(
                order_status="CLOSED" if qty == total else "OPEN",
                quantity_filled=qty,
                average_fill_price=(value / qty).quantize(_PLACES) if priced else None,
                commission=fee,
                **base,
            )
        )
    # The final priced report always comes, and polls repeat any report.
    reports.append(
        ExecutionReportEvent(
            order_status="CLOSED",
            quantity_filled=qty,
            average_fill_price=(value / qty).quantize(_PLACES),
            commission=fee,
            **base,
        )
    )
    reports += data.draw(st.lists(st.sampled_from(reports), max_size=4))
    # The feed keeps its order, the poll keeps its order, the bus mixes them.
    picks = data.draw(st.permutations([0] * len(fills) + [1] * len(reports)))
    feed, poll = iter(fills), iter(reports)
    for pick in picks:
        bridge.handle(next(feed) if pick == 0 else next(poll))
    assert rec.flush(30)
    assert rec.stats()["bridge_refused"] == 0, rec.dead_letters()
    with psycopg.connect(dsn) as conn:
        stored = conn.execute(
            "SELECT f.quantity_filled, f.fill_price, f.commission FROM fills f "
            "JOIN orders o USING (order_pk) WHERE o.client_order_ref = %s",
            (ref,),
        ).fetchall()
        order = conn.execute(
            "SELECT status, quantity_filled FROM orders WHERE client_order_ref = %s", (ref,)
        ).fetchone()
    assert sum(q for q, _p, _f in stored) == total
    assert order == ("FILLED", total)
    assert abs(sum(q * p for q, p, _f in stored) - value) <= total * Decimal("1e-15")
    assert abs(sum(f for _q, _p, f in stored) - fee) <= Decimal("1e-15")
