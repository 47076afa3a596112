"""``LedgerLogHandler``: Python logging into the ``system_logs`` table.

``emit`` formats the message (and any traceback) on the caller's thread, as
:class:`logging.handlers.QueueHandler` does, so later changes to the arguments
cannot alter it, and hands the rest to the ledger's non-blocking queue: the
:class:`~galfriday_recorder.records.LogEntry` is built and validated on the
ledger's own thread, which keeps a log line's cost to the trading loop close
to that of ``logging`` itself. ``emit`` never raises into the caller (a refused
or unbuildable record is counted in ``dropped``) and never logs about itself: a
thread-local flag stops re-entry, and records of the ledger's own logger are
skipped so a PostgreSQL outage cannot feed itself.

Context: ``trading_pair`` (or the bot's ``symbol`` / ``pair``), ``signal_id`` and
``order_pk``, from ``extra=`` or from the bot's ``extra={"context": {...}}``, go to
their columns (when they have the column's type; otherwise into the context);
``extra={"context": {...}}`` and any other non-standard attribute go into the
JSONB ``context`` (values that JSON cannot hold are stored as ``str``). NUL and
lone surrogates, which PostgreSQL cannot store, are escaped wherever they are
(message, arguments, traceback, context keys and values) as ``\x00`` and
``\udc80``: a record is never lost for its text.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

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
    def record_log_later(self, build: Callable[[], LogEntry]) -> None:
        """Queue ``build`` to be called off the caller's thread."""


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
        self._refused = 0  # caller threads
        self._unbuildable = 0  # the ledger's thread

    @property
    def dropped(self) -> int:
        """Records not recorded: refused by the ledger, or impossible to turn into a row."""
        return self._refused + self._unbuildable

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(_guard, "active", False) or record.name.startswith(_OWN_LOGGER):
            return
        _guard.active = True
        try:
            attrs = record.__dict__
            extra = {k: attrs[k] for k in attrs.keys() - _STANDARD_ATTRS}
            given = extra.get("context")
            if isinstance(given, Mapping):
                extra["context"] = dict(given)  # the caller may change it once we return
            taken = _Taken(
                record.name,
                record.levelno,
                record.created,
                _message(record),
                extra,
                *self._trace(record),
            )
            self._sink.record_log_later(functools.partial(self._build, taken))
        except Exception as exc:  # backpressure, closed ledger, odd record: never the caller's
            self._refused += 1
            self._first_drop(exc)
        finally:
            _guard.active = False

    def _first_drop(self, exc: Exception) -> None:
        if self.dropped == 1:  # the ledger's own logger, which this handler skips
            _log.warning("log records are being dropped (first: %s); see stats()", exc)

    def _build(self, taken: _Taken) -> LogEntry:
        """Called on the ledger's thread; a record no row can hold is counted as dropped."""
        try:
            return _entry(taken)
        except Exception as exc:
            self._unbuildable += 1
            self._first_drop(exc)
            raise

    def _trace(self, record: logging.LogRecord) -> tuple[str | None, str | None]:
        """The exception type and the formatted traceback and stack, if the record has them."""
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
        return exc_type, stack


class _Taken(NamedTuple):
    """What ``emit`` keeps of a record: not the record, whose traceback holds frames alive."""

    name: str
    levelno: int
    created: float
    message: str
    extra: dict[str, Any]
    exc_type: str | None
    stack: str | None


def _entry(taken: _Taken) -> LogEntry:
    extra = dict(taken.extra)
    context: dict[str, Any] = {}
    given = extra.pop("context", None)
    if isinstance(given, Mapping):
        context.update(given)
    elif given is not None:
        context["context"] = given
    # ``extra=`` names win over the same names inside ``context``.
    for key in _COLUMN_KEYS:
        if key in extra:
            context[key] = extra.pop(key)
    trading_pair, signal_id, order_pk = lift_columns(context)
    context.update(extra)
    if trading_pair is not None and _storable(trading_pair) != trading_pair:
        context["trading_pair"], trading_pair = trading_pair, None
    return LogEntry(
        source_module=_storable(taken.name)[:64] or "root",
        log_level=level_name(taken.levelno),
        message=_storable(taken.message),
        trading_pair=trading_pair,
        signal_id=signal_id,
        order_pk=order_pk,
        exception_type=None if taken.exc_type is None else _storable(taken.exc_type),
        stack_trace=None if taken.stack is None else _storable(taken.stack),
        context=_jsonable(context) if context else None,
        log_timestamp=datetime.fromtimestamp(taken.created, timezone.utc),
    )


# The bot says ``symbol`` or ``pair`` as often as ``trading_pair``.
_PAIR_KEYS = ("trading_pair", "symbol", "pair")
_COLUMN_KEYS = (*_PAIR_KEYS, "signal_id", "order_pk")


def lift_columns(context: dict[str, Any]) -> tuple[str | None, uuid.UUID | None, int | None]:
    """Take ``trading_pair`` (or ``symbol`` / ``pair``), ``signal_id`` and ``order_pk`` out of
    a log context for their columns; a value the column cannot hold stays in the context."""
    trading_pair = None
    for key in _PAIR_KEYS:
        value = context.get(key)
        if isinstance(value, str) and 0 < len(value) <= 16 and "\x00" not in value:
            trading_pair = context.pop(key)
            break
    signal_id = context.get("signal_id")
    if signal_id is not None and not isinstance(signal_id, uuid.UUID):
        try:
            signal_id = uuid.UUID(str(signal_id))
        except ValueError:
            signal_id = None
    if signal_id is not None:
        del context["signal_id"]
    order_pk = context.get("order_pk")
    if isinstance(order_pk, bool) or not isinstance(order_pk, int) or not 0 < order_pk < 2**31:
        order_pk = None
    else:
        del context["order_pk"]
    return trading_pair, signal_id, order_pk


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-args: keep the template rather than lose the record
        return f"{record.msg!s} {record.args!r}"


def _storable(text: str) -> str:
    """``text`` with NUL and lone surrogates escaped: PostgreSQL stores neither."""
    if "\x00" not in text and text.isascii():  # the common case, at the cost of two scans
        return text
    text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


_JSON_NATIVE = (int, float, bool, type(None))
_MAX_DEPTH = 100


def _cleaned(obj: Any, depth: int = 0) -> Any:
    """Plain JSON values with every string storable; past 64-bit ints and deep nesting as str."""
    if isinstance(obj, str):
        return _storable(obj)
    if depth < _MAX_DEPTH and isinstance(obj, Mapping):
        return {_storable(str(k)): _cleaned(v, depth + 1) for k, v in obj.items()}
    if depth < _MAX_DEPTH and isinstance(obj, (list, tuple)):
        return [_cleaned(v, depth + 1) for v in obj]
    if isinstance(obj, _JSON_NATIVE) and not (isinstance(obj, int) and abs(obj) >= 2**63):
        return obj
    try:
        return _storable(str(obj))
    except Exception:  # a __str__ that raises: say what it was rather than lose the record
        return f"<unprintable {type(obj).__qualname__}>"


def _jsonable(context: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through orjson so whatever the caller passed becomes plain, storable JSON."""
    try:
        data = orjson.dumps(context, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # a lone surrogate, an int past 64 bits, nesting too deep
        data = orjson.dumps(_cleaned(context))
    result: dict[str, Any] = orjson.loads(data)
    if b"\\u0000" in data:  # a NUL somewhere (or a harmless escaped backslash before u0000)
        result = _cleaned(result)
    return result
