"""``BotBridge``: Gal-Friday's bus events into the recorder, without importing the bot.

The bot is one asyncio loop whose ``PubSubManager`` unsubscribes a handler after
5 failures, so a recorder that raised into the bus would switch itself off.
:meth:`BotBridge.handle` therefore never raises and never waits: each event is
recognised by its class name and fields (duck-typed), translated through
:mod:`.vocabulary`, and handed to the recorder's non-blocking calls. Anything
refused (an unknown event, a value no column holds, an illegal transition)
becomes a dead letter with a ``system_logs`` row and counts in
``stats()["bridge_refused"]``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from . import vocabulary as vocab
from .errors import ValidationError
from .loghandler import lift_columns
from .records import LogEntry, Signal, json_default

if TYPE_CHECKING:
    from .recorder import Recorder

log = logging.getLogger(__name__)

# The bot's event types the bridge records (``ClosePositionCommand`` travels as an
# approved signal; the feature engine's dicts as FEATURES_CALCULATED).
EVENT_TYPES = (
    "TRADE_SIGNAL_PROPOSED",
    "TRADE_SIGNAL_APPROVED",
    "TRADE_SIGNAL_REJECTED",
    "EXECUTION_REPORT",
    "FILL",
    "TRADE_OUTCOME_REPORTED",
    "PREDICTION_GENERATED",
    "FEATURES_CALCULATED",
    "MARKET_DATA_OHLCV",
    "MARKET_DATA_L2",
    "LOG_ENTRY",
)
_FEATURE_DICT_TYPES = frozenset({"FEATURES_CALCULATED", "FEATURE_CALCULATED"})
# A bot P&L that differs from the derived trade's by more than this is a mismatch.
_PNL_TOLERANCE = Decimal("1e-8")


class BotBridge:
    """Records the bot's events: ``attach`` it to the bus, or call ``handle`` yourself."""

    def __init__(self, recorder: Recorder) -> None:
        self._rec = recorder
        self.handled: collections.Counter[str] = collections.Counter()
        # Refusals that could not even be kept (recorder closed or at its journal cap).
        self.lost = 0
        self._handlers: dict[str, Callable[[Any], None]] = {
            "TradeSignalProposedEvent": self._proposed,
            "TradeSignalApprovedEvent": self._approved,
            "TradeSignalRejectedEvent": self._rejected,
            "ClosePositionCommand": self._close_position,
            "ExecutionReportEvent": self._execution_report,
            "FillEvent": self._fill,
            "TradeOutcomeEvent": self._outcome,
            "PredictionEvent": self._prediction,
            "FeatureEvent": self._features,
            "MarketDataOHLCVEvent": self._ohlcv,
            "MarketDataL2Event": self._l2,
            "LogEvent": self._log,
        }

    def attach(self, pubsub: Any, event_types: Any) -> list[Any]:
        """Subscribe :meth:`ahandle` for each event type it records that ``event_types`` (the
        bot's ``EventType`` enum) has; returns the members subscribed."""
        subscribed = []
        for name in EVENT_TYPES:
            member = getattr(event_types, name, None)
            if member is not None:
                pubsub.subscribe(member, self.ahandle)
                subscribed.append(member)
        return subscribed

    def handle(self, event: Any) -> None:
        """Record one bot event; never raises, never blocks."""
        try:
            name = _name(event)
            handler = self._handlers.get(name)
            if handler is None:
                if not (isinstance(event, Mapping) and name in _FEATURE_DICT_TYPES):
                    raise ValidationError("event", f"{name} is not an event the recorder knows")
                handler = self._feature_dict
            handler(event)
            self.handled[name] += 1
        except Exception as exc:
            self._refuse(event, exc)

    async def ahandle(self, event: Any) -> None:
        """:meth:`handle` as a bus handler (the recording itself never waits)."""
        self.handle(event)

    def stats(self) -> dict[str, int]:
        return {**{f"handled_{k}": v for k, v in self.handled.items()}, "lost": self.lost}

    def _refuse(self, event: Any, exc: Exception) -> None:
        try:
            signal_id = getattr(event, "signal_id", None)
            pair = getattr(event, "trading_pair", None)
            self._rec.record_refusal(
                _name(event),
                _plain(event),
                f"{type(exc).__name__}: {exc}"[:2000],
                signal_id=vocab.uuid_of("signal_id", signal_id) if signal_id else None,
                trading_pair=pair if isinstance(pair, str) else None,
            )
        except Exception:  # closed or at its cap: counted, and the bus never sees it
            self.lost += 1
            log.warning("a bot event could not even be dead-lettered", exc_info=True)

    # -- signals ------------------------------------------------------------------------

    def _proposed(self, e: Any) -> None:
        prediction = getattr(e, "triggering_prediction", None) or {}
        value = prediction.get("prediction_value") if isinstance(prediction, Mapping) else None
        self._rec.record_signal(
            Signal(
                signal_id=vocab.uuid_of("signal_id", e.signal_id),
                trading_pair=e.trading_pair,
                exchange=e.exchange,
                strategy_id=e.strategy_id,
                side=vocab.side(e.side),
                entry_type=e.entry_type.upper(),
                proposed_entry_price=vocab.optional_decimal(
                    "proposed_entry_price", e.proposed_entry_price
                ),
                proposed_sl_price=vocab.decimal("proposed_sl_price", e.proposed_sl_price),
                proposed_tp_price=vocab.decimal("proposed_tp_price", e.proposed_tp_price),
                prediction_event_id=getattr(e, "triggering_prediction_event_id", None),
                prediction_value=float(value) if isinstance(value, (int, float)) else None,
                created_at=vocab.timestamp("timestamp", e.timestamp),
            )
        )

    def _approved(self, e: Any) -> None:
        self._rec.update_signal_status(
            vocab.uuid_of("signal_id", e.signal_id),
            "APPROVED",
            risk_check_details=_plain(getattr(e, "risk_parameters", None)) or None,
        )

    def _rejected(self, e: Any) -> None:
        self._rec.update_signal_status(
            vocab.uuid_of("signal_id", e.signal_id), "REJECTED", rejection_reason=e.reason
        )

    def _close_position(self, e: Any) -> None:
        self._rec.orders.close_position(e.trading_pair)
        self._rec.ledger.record_log(
            LogEntry(
                source_module=str(e.source_module)[:64] or "bot",
                log_level="WARNING",
                message=f"close position {e.side} {e.quantity} {e.trading_pair} (HALT)",
                trading_pair=e.trading_pair,
                context={"quantity": str(e.quantity), "side": str(e.side)},
                log_timestamp=vocab.timestamp("timestamp", e.timestamp),
            )
        )

    # -- orders -------------------------------------------------------------------------

    def _execution_report(self, e: Any) -> None:
        self._rec.record_execution_report(
            exchange_order_id=e.exchange_order_id,
            trading_pair=e.trading_pair,
            exchange=e.exchange,
            order_status=e.order_status,
            order_type=e.order_type,
            side=e.side,
            quantity_ordered=e.quantity_ordered,
            client_order_id=e.client_order_id,
            signal_id=e.signal_id,
            quantity_filled=e.quantity_filled,
            average_fill_price=e.average_fill_price,
            limit_price=e.limit_price,
            stop_price=e.stop_price,
            commission=e.commission,
            commission_asset=e.commission_asset,
            timestamp=e.timestamp_exchange or e.timestamp,
            error_message=e.error_message,
        )

    def _fill(self, e: Any) -> None:
        self._rec.record_exchange_fill(
            exchange_order_id=e.order_id,
            fill_id=e.fill_id,
            trading_pair=e.trading_pair,
            side=e.side,
            price=e.price,
            quantity=e.quantity,
            fee=e.fee,
            filled_at=e.timestamp,
        )

    def _outcome(self, e: Any) -> None:
        """The bot's own view of a finished trade, checked against the one derived from fills."""
        signal_id = vocab.uuid_of("signal_id", e.signal_id)
        trade = self._rec.ledger.trade_view(signal_id)
        problems = []
        if trade is None:
            problems.append("no trade has been derived from its fills (yet)")
        else:
            pnl = vocab.optional_decimal("pnl", e.pnl)
            if pnl is not None and abs(pnl - trade.realized_pnl) > _PNL_TOLERANCE:
                problems.append(f"pnl {pnl} differs from the derived {trade.realized_pnl}")
            if e.exit_reason and vocab.exit_reason(e.exit_reason) != trade.exit_reason:
                problems.append(
                    f"exit reason {e.exit_reason!r} differs from the derived {trade.exit_reason}"
                )
        if problems:
            self._rec.ledger.record_log(
                LogEntry(
                    source_module="galfriday_recorder.bridge",
                    log_level="WARNING",
                    message=f"trade outcome of signal {signal_id}: " + "; ".join(problems),
                    signal_id=signal_id,
                    context={"outcome": _plain(e)},
                )
            )

    # -- series -------------------------------------------------------------------------

    def _prediction(self, e: Any) -> None:
        self._rec.record_prediction(
            e.trading_pair,
            e.model_id,
            e.prediction_target,
            e.prediction_value,
            e.confidence,
            vocab.timestamp("timestamp_prediction_for", e.timestamp_prediction_for),
        )

    def _features(self, e: Any) -> None:
        self._record_features(e.trading_pair, e.features, e.timestamp_features_for, e.source_module)

    def _feature_dict(self, e: Mapping[str, Any]) -> None:
        """The feature engine publishes a plain dict: ``{"event_type", "payload": {...}}``."""
        payload = e.get("payload")
        if not isinstance(payload, Mapping):
            raise ValidationError("payload", "a feature event dict carries a payload mapping")
        self._record_features(
            payload.get("trading_pair"),
            payload.get("features"),
            payload.get("timestamp_features_for"),
            e.get("source_module") or "feature_engine",
        )

    def _record_features(self, pair: Any, features: Any, when: Any, source: Any) -> None:
        if not isinstance(features, Mapping):
            raise ValidationError("features", "must be a mapping of name to number")
        values = {k: v for k, v in features.items() if v is not None}
        self._rec.record_features(
            pair, str(source)[:64], values, vocab.timestamp("timestamp_features_for", when)
        )

    def _ohlcv(self, e: Any) -> None:
        self._rec.record_ohlcv(
            e.trading_pair,
            e.interval,
            vocab.decimal("open", e.open),
            vocab.decimal("high", e.high),
            vocab.decimal("low", e.low),
            vocab.decimal("close", e.close),
            vocab.decimal("volume", e.volume),
            vocab.timestamp("timestamp_bar_start", e.timestamp_bar_start),
        )

    def _l2(self, e: Any) -> None:
        self._rec.record_l2(
            e.trading_pair,
            e.bids,
            e.asks,
            is_snapshot=bool(e.is_snapshot),
            timestamp=vocab.timestamp("timestamp", e.timestamp_exchange or e.timestamp),
        )

    def _log(self, e: Any) -> None:
        context = dict(e.context) if isinstance(e.context, Mapping) else {}
        pair, signal_id, order_pk = lift_columns(context)
        self._rec.ledger.record_log(
            LogEntry(
                source_module=str(e.source_module)[:64] or "bot",
                log_level=_level(e.level),
                message=str(e.message).replace("\x00", "\\x00"),
                trading_pair=pair,
                signal_id=signal_id,
                order_pk=order_pk,
                context=_plain(context) or None,
                log_timestamp=vocab.timestamp("timestamp", e.timestamp),
                log_id=_event_id(e),
            )
        )


def _event_id(event: Any) -> uuid.UUID:
    """The bot's own event id as the row's id: handling one event twice writes one row."""
    event_id = getattr(event, "event_id", None)
    return event_id if isinstance(event_id, uuid.UUID) else uuid.uuid4()


def _name(event: Any) -> str:
    if isinstance(event, Mapping):
        return str(event.get("event_type", "dict"))
    return type(event).__name__


def _level(word: Any) -> str:
    level = str(word).strip().upper()
    return {"WARN": "WARNING", "FATAL": "CRITICAL", "EXCEPTION": "ERROR"}.get(level, level)


def _plain(value: Any) -> Any:
    """Plain JSON of whatever the bot passed (Decimals and odd types as strings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}

    def fallback(obj: Any) -> Any:
        try:
            return json_default(obj)
        except TypeError:
            return str(obj)

    return orjson.loads(orjson.dumps(value, default=fallback, option=orjson.OPT_NON_STR_KEYS))


__all__ = ["EVENT_TYPES", "BotBridge"]
