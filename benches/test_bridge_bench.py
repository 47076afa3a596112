"""The bot's event loop while the bridge records 1,000 events/s, beside the same loop without it.

One asyncio loop, as in Gal-Friday: a publisher puts 10 bot events on the bus every
10 ms (a trade cycle's worth: proposal, approval, three cumulative reports, a fill,
a prediction, features, a bar, a log line), and a probe measures how late a 1 ms
sleep wakes up (the loop's lag). The baseline is the same loop and bus with a
handler that does nothing. ``extra_info`` carries lag p50/p99/max in µs.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "bot"))

from botkit import (
    EventType,
    ExecutionReportEvent,
    FeatureEvent,
    FillEvent,
    LogEvent,
    MarketDataOHLCVEvent,
    PredictionEvent,
    PubSub,
    TradeSignalApprovedEvent,
    TradeSignalProposedEvent,
)

from galfriday_recorder import BotBridge, Recorder, RecorderConfig

SECONDS = 5.0
BATCH = 10  # events per tick
TICK_S = 0.010  # 10 events / 10 ms = 1,000 events/s
PAIR = "XRP/USD"


def _cycle(n: int) -> list[Any]:
    """One trade cycle's events (10), each with fresh ids."""
    sid = uuid.uuid4()
    ref, eid = f"gf-{n}", f"O-{n}"
    now = datetime.now(timezone.utc)

    def report(status: str, filled: str, price: str | None) -> ExecutionReportEvent:
        return ExecutionReportEvent(
            exchange_order_id=eid,
            client_order_id=ref,
            signal_id=sid,
            trading_pair=PAIR,
            exchange="kraken",
            order_status=status,
            order_type="MARKET",
            side="BUY",
            quantity_ordered=Decimal(10),
            quantity_filled=Decimal(filled),
            average_fill_price=None if price is None else Decimal(price),
            commission=None if price is None else Decimal(filled) / 1000,
        )

    return [
        TradeSignalProposedEvent(
            signal_id=sid,
            trading_pair=PAIR,
            exchange="kraken",
            side="BUY",
            entry_type="MARKET",
            proposed_sl_price=Decimal("0.4"),
            proposed_tp_price=Decimal("0.6"),
            strategy_id="bench",
        ),
        TradeSignalApprovedEvent(
            signal_id=sid,
            trading_pair=PAIR,
            exchange="kraken",
            side="BUY",
            order_type="MARKET",
            quantity=Decimal(10),
            sl_price=Decimal("0.4"),
            tp_price=Decimal("0.6"),
            risk_parameters={"max_risk": "0.02"},
        ),
        report("NEW", "0", None),
        report("OPEN", "4", "0.5"),
        FillEvent(
            order_id=eid,
            fill_id=f"T-{n}",
            trading_pair=PAIR,
            side="BUY",
            price=Decimal("0.5"),
            quantity=Decimal(4),
            fee=Decimal("0.004"),
        ),
        report("OPEN", "4", "0.5"),  # the poll repeats itself
        PredictionEvent(
            trading_pair=PAIR,
            exchange="kraken",
            timestamp_prediction_for=now,
            model_id="m",
            prediction_target="up",
            prediction_value=0.6,
        ),
        FeatureEvent(
            trading_pair=PAIR,
            exchange="kraken",
            timestamp_features_for=now,
            features={"rsi": 50.0, "spread": 0.001},
        ),
        MarketDataOHLCVEvent(
            trading_pair=PAIR,
            exchange="kraken",
            interval="1m",
            timestamp_bar_start=now,
            open="0.5",
            high="0.51",
            low="0.49",
            close="0.5",
            volume="100",
        ),
        LogEvent(level="INFO", message="tick", context={"signal_id": str(sid), "pair": PAIR}),
    ]


async def _loop_lag(subscribe: Callable[[PubSub], object]) -> tuple[list[float], int]:
    bus = PubSub()
    subscribe(bus)
    cycles = [_cycle(n) for n in range(int(SECONDS / TICK_S))]
    lateness: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - t - 0.001)

    async def publisher() -> int:
        sent, start = 0, time.perf_counter()
        for i, events in enumerate(cycles):
            for event in events:
                await bus.publish(event)
                sent += 1
            delay = start + (i + 1) * TICK_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        stop.set()
        return sent

    probing = asyncio.get_running_loop().create_task(probe())
    sent = await publisher()
    await probing
    assert not bus.unsubscribed
    return lateness, sent


def _run(benchmark: Any, subscribe: Callable[[PubSub], object]) -> None:
    got: dict[str, Any] = {}

    def once() -> None:
        got["lag"], got["sent"] = asyncio.run(_loop_lag(subscribe))

    benchmark.pedantic(once, rounds=1, iterations=1)
    lag = sorted(got["lag"])
    benchmark.extra_info["events"] = got["sent"]
    benchmark.extra_info["events_per_s"] = round(got["sent"] / benchmark.stats.stats.max)
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        benchmark.extra_info[f"lag_{name}_us"] = round(lag[int(q * (len(lag) - 1))] * 1e6, 1)
    benchmark.extra_info["lag_max_us"] = round(lag[-1] * 1e6, 1)


@pytest.mark.benchmark(group="bridge: the bot's loop at 1,000 events/s")
def test_loop_without_recorder(benchmark: Any) -> None:
    async def nothing(_event: Any) -> None:
        return None

    def subscribe(bus: PubSub) -> None:
        for member in EventType:
            bus.subscribe(member, nothing)

    _run(benchmark, subscribe)


@pytest.mark.benchmark(group="bridge: the bot's loop at 1,000 events/s")
def test_loop_with_bridge(benchmark: Any, recorder_config: Callable[..., RecorderConfig]) -> None:
    with Recorder(recorder_config()) as rec:
        bridge = BotBridge(rec)
        _run(benchmark, lambda bus: bridge.attach(bus, EventType) and None)
        assert rec.flush(120)
        stats = rec.stats()
    assert stats["bridge_refused"] == 0, stats
    assert bridge.lost == 0
    benchmark.extra_info["ledger_committed"] = stats["ledger_committed"]
