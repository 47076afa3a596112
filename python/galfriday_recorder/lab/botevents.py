"""Gal-Friday's event shapes: the bot's class and field names, none of its code.

Written from reading the bot (``gal_friday/core/events.py``): frozen dataclasses
with its field names and types (``Decimal`` money, ``str`` levels and bars) and
its ``EventType`` enum. The recorder never imports the bot; :mod:`.bridge`
recognises events by class name and fields, so the demo (and the tests) speak
to it with these.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from enum import Enum, auto
from typing import Any


class EventType(Enum):
    MARKET_DATA_L2 = auto()
    MARKET_DATA_OHLCV = auto()
    MARKET_DATA_TRADE = auto()
    FEATURES_CALCULATED = auto()
    PREDICTION_GENERATED = auto()
    TRADE_SIGNAL_PROPOSED = auto()
    TRADE_SIGNAL_APPROVED = auto()
    TRADE_SIGNAL_REJECTED = auto()
    EXECUTION_REPORT = auto()
    FILL = auto()
    TRADE_OUTCOME_REPORTED = auto()
    SYSTEM_STATE_CHANGE = auto()
    LOG_ENTRY = auto()
    PORTFOLIO_UPDATE = auto()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    source_module: str = "test"
    event_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    timestamp: dt.datetime = dataclasses.field(default_factory=_now)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MarketDataL2Event(Event):
    trading_pair: str
    exchange: str
    bids: Sequence[tuple[str, str]]
    asks: Sequence[tuple[str, str]]
    is_snapshot: bool
    timestamp_exchange: dt.datetime | None = None
    event_type: EventType = dataclasses.field(default=EventType.MARKET_DATA_L2, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MarketDataOHLCVEvent(Event):
    trading_pair: str
    exchange: str
    interval: str
    timestamp_bar_start: dt.datetime
    open: str
    high: str
    low: str
    close: str
    volume: str
    event_type: EventType = dataclasses.field(default=EventType.MARKET_DATA_OHLCV, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeatureEvent(Event):
    trading_pair: str
    exchange: str
    timestamp_features_for: dt.datetime
    features: dict[str, float]
    event_type: EventType = dataclasses.field(default=EventType.FEATURES_CALCULATED, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PredictionEvent(Event):
    trading_pair: str
    exchange: str
    timestamp_prediction_for: dt.datetime
    model_id: str
    prediction_target: str
    prediction_value: float
    confidence: float | None = None
    associated_features: dict[str, Any] | None = None
    event_type: EventType = dataclasses.field(default=EventType.PREDICTION_GENERATED, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TradeSignalProposedEvent(Event):
    signal_id: uuid.UUID
    trading_pair: str
    exchange: str
    side: str
    entry_type: str
    proposed_sl_price: Decimal
    proposed_tp_price: Decimal
    strategy_id: str
    proposed_entry_price: Decimal | None = None
    triggering_prediction_event_id: uuid.UUID | None = None
    triggering_prediction: dict[str, Any] | None = None
    event_type: EventType = dataclasses.field(default=EventType.TRADE_SIGNAL_PROPOSED, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TradeSignalApprovedEvent(Event):
    signal_id: uuid.UUID
    trading_pair: str
    exchange: str
    side: str
    order_type: str
    quantity: Decimal
    sl_price: Decimal
    tp_price: Decimal
    risk_parameters: dict[str, Any]
    limit_price: Decimal | None = None
    event_type: EventType = dataclasses.field(default=EventType.TRADE_SIGNAL_APPROVED, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TradeSignalRejectedEvent(Event):
    signal_id: uuid.UUID
    trading_pair: str
    exchange: str
    side: str
    reason: str
    event_type: EventType = dataclasses.field(default=EventType.TRADE_SIGNAL_REJECTED, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExecutionReportEvent(Event):
    exchange_order_id: str
    trading_pair: str
    exchange: str
    order_status: str
    order_type: str
    side: str
    quantity_ordered: Decimal
    signal_id: uuid.UUID | None = None
    client_order_id: str | None = None
    quantity_filled: Decimal = Decimal(0)
    average_fill_price: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    commission: Decimal | None = None
    commission_asset: str | None = None
    timestamp_exchange: dt.datetime | None = None
    error_message: str | None = None
    event_type: EventType = dataclasses.field(default=EventType.EXECUTION_REPORT, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FillEvent(Event):
    order_id: str
    fill_id: str
    trading_pair: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    event_type: EventType = dataclasses.field(default=EventType.FILL, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TradeOutcomeEvent(Event):
    signal_id: uuid.UUID
    strategy_id: str
    outcome: str
    pnl: Decimal | None = None
    exit_reason: str | None = None
    event_type: EventType = dataclasses.field(default=EventType.TRADE_OUTCOME_REPORTED, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogEvent(Event):
    level: str
    message: str
    context: dict[str, Any] | None = None
    event_type: EventType = dataclasses.field(default=EventType.LOG_ENTRY, init=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClosePositionCommand(Event):
    trading_pair: str
    quantity: Decimal
    side: str
    order_type: str = "MARKET"
    # The bot sends it under the approved-signal event type.
    event_type: EventType = dataclasses.field(default=EventType.TRADE_SIGNAL_APPROVED, init=False)


__all__ = [
    "ClosePositionCommand",
    "Event",
    "EventType",
    "ExecutionReportEvent",
    "FeatureEvent",
    "FillEvent",
    "LogEvent",
    "MarketDataL2Event",
    "MarketDataOHLCVEvent",
    "PredictionEvent",
    "TradeOutcomeEvent",
    "TradeSignalApprovedEvent",
    "TradeSignalProposedEvent",
    "TradeSignalRejectedEvent",
]
