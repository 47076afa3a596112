"""``LedgerLogHandler``: Python logging into the ``system_logs`` table.

``emit`` only builds a record and hands it to the ledger's non-blocking queue.
It never raises into the caller (a refused record is counted in ``dropped``)
and never logs about itself: a thread-local flag stops re-entry, and records of
the ledger's own logger are skipped so a PostgreSQL outage cannot feed itself.

Context: ``trading_pair``, ``signal_id`` and ``order_pk`` from ``extra=`` go to
their columns (when they have the column's type; otherwise into the context);
``extra={"context": {...}}`` and any other non-standard attribute go into the
JSONB ``context`` (values that JSON cannot hold are stored as ``str``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

import orjson

from .records import LogEntry

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_OWN_LOGGER = "galfriday_recorder.ledger"
_LEVELS = (
    (logging.CRITICAL, "CRITICAL"),
    (logging.ERROR, "ERROR"),
    (logging.WARNING, "WARNING"),
    (logging.INFO, "INFO"),
)
_guard = threading.local()
_log = logging.getLogger(_OWN_LOGGER)
_formatter = logging.Formatter()


class LogSink(Protocol):
    def record_log(self, entry: LogEntry) -> None: ...


def level_name(levelno: int) -> str:
    """The schema's five levels; custom levels map to the nearest one below."""
    for threshold, name in _LEVELS:
        if levelno >= threshold:
            return name
    return "DEBUG"


class LedgerLogHandler(logging.Handler):
    """A ``logging.Handler`` writing to ``system_logs`` through the ledger."""

    def __init__(self, sink: LogSink, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._sink = sink
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(_guard, "active", False) or record.name.startswith(_OWN_LOGGER):
            return
        _guard.active = True
        try:
            self._sink.record_log(self.entry(record))
        except Exception as exc:  # backpressure, closed ledger, odd record: never the caller's
            self.dropped += 1
            if self.dropped == 1:  # the ledger's own logger, which this handler skips
                _log.warning("log records are being dropped (first: %s); see stats()", exc)
        finally:
            _guard.active = False

    def entry(self, record: logging.LogRecord) -> LogEntry:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        context: dict[str, Any] = {}
        given = extra.pop("context", None)
        if isinstance(given, Mapping):
            context.update(given)
        elif given is not None:
            context["context"] = given
        trading_pair = extra.pop("trading_pair", None)
        if trading_pair is not None and not (
            isinstance(trading_pair, str) and 0 < len(trading_pair) <= 16
        ):
            context["trading_pair"], trading_pair = trading_pair, None
        signal_id = extra.pop("signal_id", None)
        if signal_id is not None and not isinstance(signal_id, uuid.UUID):
            try:
                signal_id = uuid.UUID(str(signal_id))
            except ValueError:
                context["signal_id"], signal_id = signal_id, None
        order_pk = extra.pop("order_pk", None)
        if order_pk is not None and (
            isinstance(order_pk, bool) or not isinstance(order_pk, int) or not 0 < order_pk < 2**31
        ):
            context["order_pk"], order_pk = order_pk, None
        context.update(extra)
        exc_type = stack = None
        if record.exc_info and record.exc_info[0] is not None:
            cls = record.exc_info[0]
            exc_type = (
                cls.__qualname__
                if cls.__module__ == "builtins"
                else f"{cls.__module__}.{cls.__qualname__}"
            )
            stack = (self.formatter or _formatter).formatException(record.exc_info)
        if record.stack_info:
            stack = f"{stack}\n{record.stack_info}" if stack else record.stack_info
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the template rather than lose the record
            message = f"{record.msg!s} {record.args!r}"
        return LogEntry(
            source_module=record.name[:64] or "root",
            log_level=level_name(record.levelno),
            message=message.replace("\x00", "\\x00"),
            trading_pair=trading_pair,
            signal_id=signal_id,
            order_pk=order_pk,
            exception_type=exc_type,
            stack_trace=stack,
            context=_jsonable(context) if context else None,
            log_timestamp=datetime.fromtimestamp(record.created, timezone.utc),
        )


def _jsonable(context: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through orjson so whatever the caller passed becomes plain JSON."""
    result: dict[str, Any] = orjson.loads(
        orjson.dumps(context, default=str, option=orjson.OPT_NON_STR_KEYS)
    )
    return result
