"""The bot's event bus in small, for the tests: its ``subscribe`` interface, async handlers,
and a handler dropped after 5 failures, as Gal-Friday's ``PubSubManager`` does. The event
shapes are :mod:`galfriday_recorder.lab.botevents` (re-exported here).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from galfriday_recorder.lab.botevents import (
    ClosePositionCommand,
    EventType,
    ExecutionReportEvent,
    FeatureEvent,
    FillEvent,
    LogEvent,
    MarketDataL2Event,
    MarketDataOHLCVEvent,
    PredictionEvent,
    TradeOutcomeEvent,
    TradeSignalApprovedEvent,
    TradeSignalProposedEvent,
    TradeSignalRejectedEvent,
)

Handler = Callable[[Any], Awaitable[None]]


class PubSub:
    """The bot's bus in small: ``subscribe``, ``publish``, and 5 failures unsubscribe."""

    MAX_FAILURES = 5

    def __init__(self) -> None:
        self.handlers: dict[Any, list[Handler]] = defaultdict(list)
        self.failures: dict[Handler, int] = defaultdict(int)
        self.unsubscribed: list[Handler] = []

    def subscribe(self, event_type: Any, handler: Handler) -> None:
        self.handlers[event_type].append(handler)

    def unsubscribe(self, event_type: Any, handler: Handler) -> None:
        self.handlers[event_type].remove(handler)
        self.unsubscribed.append(handler)

    async def publish(self, event: Any) -> None:
        event_type = (
            event.event_type
            if not isinstance(event, dict)
            else EventType[str(event.get("event_type"))]
        )
        for handler in list(self.handlers[event_type]):
            try:
                await handler(event)
                self.failures[handler] = 0
            except Exception:
                self.failures[handler] += 1
                if self.failures[handler] >= self.MAX_FAILURES:
                    self.unsubscribe(event_type, handler)

    def publish_soon(self, event: Any) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self.publish(event))


__all__ = [
    "ClosePositionCommand",
    "EventType",
    "ExecutionReportEvent",
    "FeatureEvent",
    "FillEvent",
    "LogEvent",
    "MarketDataL2Event",
    "MarketDataOHLCVEvent",
    "PredictionEvent",
    "PubSub",
    "TradeOutcomeEvent",
    "TradeSignalApprovedEvent",
    "TradeSignalProposedEvent",
    "TradeSignalRejectedEvent",
]
