"""Typed, validated ledger records: one frozen dataclass per seed table (plus status updates).

Validation happens when a record is built, on the bot's thread, so the ledger
call itself only checks state. Money and quantities are ``Decimal`` (``int`` and
``str`` are converted exactly; ``float`` is refused because it is already
inexact), timestamps are aware and normalised to UTC, ids are UUIDs. Every
failure raises :class:`ValidationError` naming the field. Records serialise
with orjson as they are (dataclasses, UUIDs and datetimes natively, ``Decimal``
through :func:`json_default`), which is how they go into the journal.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import orjson

from ._core import json_values
from .errors import ValidationError

SIDES = frozenset({"BUY", "SELL"})
ENTRY_TYPES = frozenset({"LIMIT", "MARKET"})
SIGNAL_STATUSES = frozenset({"PROPOSED", "APPROVED", "REJECTED"})
ORDER_TYPES = frozenset(
    {
        "LIMIT",
        "MARKET",
        "STOP_LOSS",
        "TAKE_PROFIT",
        "STOP_LOSS_LIMIT",
        "TAKE_PROFIT_LIMIT",
        "TRAILING_STOP",
        "TRAILING_STOP_LIMIT",
        "ICEBERG",
        "SETTLE_POSITION",
    }
)
ORDER_STATUSES = frozenset(
    {
        "PENDING_NEW",
        "NEW",
        "PARTIALLY_FILLED",
        "FILLED",
        "PENDING_CANCEL",
        "CANCELED",
        "REJECTED",
        "EXPIRED",
    }
)
LIQUIDITY_TYPES = frozenset({"MAKER", "TAKER"})
EXIT_REASONS = frozenset(
    {
        "TP_HIT",
        "SL_HIT",
        "TIME_EXIT",
        "MANUAL_CLOSE",
        "TRAILING_STOP",
        "SIGNAL_EXIT",
        "RISK_LIMIT",
        "SHUTDOWN",
    }
)
LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
# Where a string client order id (the bot's ``gf-...``) lands in the UUID column: uuid5.
CLIENT_ORDER_NAMESPACE = uuid.UUID("6f1d3c2e-9a57-4b8e-8f0a-1c4e2b7d9a31")
# NUMERIC(38, 18): at most 20 digits before the point.
_MONEY_LIMIT = Decimal(10) ** 20
_MONEY_BITS = (10**20).bit_length()  # an int of more bits is past the limit
_ZERO = Decimal(0)
# Sums and products of NUMERIC(38,18) values, exact: Python's default context keeps 28
# digits, so the largest quantity plus the smallest one would round past the column.
EXACT = Context(prec=80)

_FLOAT4 = struct.Struct("<f")
_FLOAT4_NORMAL, _FLOAT4_MAX = 1.1754943508222875e-38, 3.4028234663852886e38
# A NUL as orjson writes it (``\u0000`` after an even run of backslashes): JSONB refuses it.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def json_default(obj: Any) -> Any:
    """orjson fallback: Decimals as exact strings; anything else is not ledger data."""
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=json_default)


# ``a + b`` of values within NUMERIC(38,18) (at most 39 digits): exact in 80 digits, never
# rounded to the calling thread's context, which the bot may lower. The bound method is
# also the cheapest exact sum (no Python frame, no look-up of the thread's context).
exact_sum: Callable[[Decimal, Decimal], Decimal] = EXACT.add


# -- field checkers ---------------------------------------------------------


def money(
    name: str,
    value: Any,
    *,
    optional: bool = False,
    positive: bool = False,
    non_negative: bool = False,
) -> Decimal | None:
    """An exact Decimal within NUMERIC(38,18), from Decimal, int or str; never from float."""
    if value is None:
        if optional:
            return None
        raise ValidationError(name, "is required")
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise ValidationError(
            name, f"must be Decimal, int or str (exact), not {type(value).__name__}"
        )
    if isinstance(value, int) and value.bit_length() > _MONEY_BITS:  # converting is quadratic
        raise ValidationError(
            name, f"an int of {value.bit_length()} bits does not fit NUMERIC(38,18)"
        )
    try:
        dec = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValidationError(name, f"{value!r} is not a number") from None
    if not dec.is_finite():
        raise ValidationError(name, f"must be finite, not {dec}")
    if dec.is_zero():  # 0E+999999999999999999 is 0, but PostgreSQL refuses that text
        dec = _ZERO
    if dec.copy_abs() >= _MONEY_LIMIT:  # copy_abs is exact; abs() rounds to 28 digits
        raise ValidationError(name, f"{dec} does not fit NUMERIC(38,18)")
    if dec.as_tuple().exponent < -18:  # type: ignore[operator]
        raise ValidationError(name, f"{dec} has more than 18 decimals")
    if positive and dec <= 0:
        raise ValidationError(name, f"must be > 0, not {dec}")
    if non_negative and dec < 0:
        raise ValidationError(name, f"must be >= 0, not {dec}")
    return dec


def real(name: str, value: Any, *, optional: bool = False) -> float | None:
    """A finite number for a REAL column (statistics, not money, so floats are fine here)."""
    if value is None:
        if optional:
            return None
        raise ValidationError(name, "is required")
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValidationError(name, f"must be a number, not {type(value).__name__}")
    try:
        result = float(value)
    except (OverflowError, ValueError):  # ints past 1e308, Decimal("sNaN")
        raise ValidationError(name, f"must be a finite number, not {value}") from None
    if not math.isfinite(result):
        raise ValidationError(name, f"must be finite, not {value}")
    if _FLOAT4_NORMAL <= abs(result) <= _FLOAT4_MAX or result == 0.0:
        return result  # the common case: a normal float4, no conversion needed to know
    # PostgreSQL converts to float4 as C does and refuses what becomes infinite or 0.
    try:
        as_real = _FLOAT4.unpack(_FLOAT4.pack(result))[0]
    except OverflowError:
        raise ValidationError(name, f"{value} is beyond REAL's range (±3.4028235e38)") from None
    if as_real == 0.0 and result != 0.0:
        raise ValidationError(name, f"{value} is too small for REAL (underflows to 0)")
    return result


def text(
    name: str,
    value: Any,
    max_len: int | None = None,
    *,
    optional: bool = False,
    allow_empty: bool = False,
    choices: frozenset[str] | None = None,
) -> str | None:
    """A str for a VARCHAR/TEXT column: length within the column, no NUL (PostgreSQL refuses)."""
    if value is None:
        if optional:
            return None
        raise ValidationError(name, "is required")
    if not isinstance(value, str):
        raise ValidationError(name, f"must be str, not {type(value).__name__}")
    if choices is not None and value not in choices:
        raise ValidationError(name, f"{value!r} is not one of {sorted(choices)}")
    if not value and choices is None and not optional and not allow_empty:
        raise ValidationError(name, "must not be empty")
    if max_len is not None and len(value) > max_len:
        raise ValidationError(name, f"is {len(value)} characters, the column holds {max_len}")
    if "\x00" in value:
        raise ValidationError(name, "contains a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: the journal could not store it
        raise ValidationError(name, "is not valid UTF-8 (lone surrogate)") from None
    return value


def uuid_value(name: str, value: Any, *, optional: bool = False) -> uuid.UUID | None:
    if value is None:
        if optional:
            return None
        raise ValidationError(name, "is required")
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValidationError(name, f"{value!r} is not a UUID") from None
    raise ValidationError(name, f"must be a UUID, not {type(value).__name__}")


def timestamp(name: str, value: Any, *, optional: bool = False) -> datetime | None:
    """An aware datetime converted to UTC; naive ones are refused, they are ambiguous."""
    if value is None:
        if optional:
            return None
        raise ValidationError(name, "is required")
    if isinstance(value, str):  # journal payloads carry RFC 3339 text
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(name, f"{value!r} is not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise ValidationError(name, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(name, "is a naive datetime; give a timezone-aware one (UTC)")
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise ValidationError(name, f"{value.isoformat()} is out of range in UTC") from None
    if type(utc) is not datetime:  # a pandas.Timestamp: orjson writes no datetime subclass
        utc = datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=timezone.utc)
    return utc


def json_object(name: str, value: Any, *, optional: bool = False) -> Any:
    """A value for a JSONB column: must serialise. Returned as its JSON copy (a Decimal
    becomes its string): the record keeps what it will store, so a caller changing its
    dict after building the record changes nothing recorded."""
    if value is None:
        if optional:
            return None
        raise ValidationError(name, "is required")
    if not isinstance(value, (Mapping, list)):
        raise ValidationError(name, f"must be a dict or list, not {type(value).__name__}")
    refuse_expanding(name, value)
    try:  # one level deeper, as the journal writes it inside its record (orjson's depth limit)
        data = dumps([value])
    except TypeError as exc:
        raise ValidationError(name, f"is not JSON-serialisable: {exc}") from None
    if b"\\u0000" in data and _JSON_NUL.search(data):
        raise ValidationError(name, "contains a NUL character, which JSONB cannot store")
    _refuse_non_finite(name, value, data)
    return orjson.loads(data)[0]


# Values a JSON field may hold once written out. A few shared lists nested deep expand
# exponentially (a list holding one list twice, 40 levels deep, is 2^41 values): orjson
# would write them all and take every byte of memory the bot has.
MAX_JSON_VALUES = 1_000_000


def _expands(value: Any) -> bool:
    return json_values(value, MAX_JSON_VALUES) > MAX_JSON_VALUES


def refuse_expanding(name: str, value: Any) -> None:
    """``ValidationError`` naming ``name`` if ``value`` would expand past the limit (or holds
    itself), before anything walks it whole."""
    if _expands(value):
        raise ValidationError(
            name, f"holds more than {MAX_JSON_VALUES:,} values once shared ones are written out"
        )


def _refuse_non_finite(name: str, value: Any, data: bytes) -> None:
    """orjson writes a NaN or infinity as null: refused, not silently lost (only JSON with a
    null in it is walked)."""
    if b"null" in data and _finite(value) != value:
        raise ValidationError(name, "holds a NaN or infinity, which JSON cannot")


def _finite(value: Any) -> Any:
    """``value`` with each NaN or infinity as its text (JSON has neither): equal to
    ``value`` when it holds none."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_finite(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


# What a dead letter keeps of an event JSON cannot hold: the start of its repr.
_EVIDENCE_CHARS = 65_536


def evidence(event: Any) -> orjson.Fragment:
    """An event kept as a caller gave it, serialised now (later changes to it are not
    kept): a NaN or infinity as its text, where JSON would hold ``null``; an event JSON
    cannot hold at all (another type, a key not a string, nesting too deep) as the start
    of its repr (which, like the serialisation tried first, costs the event's size)."""
    if _expands(event):  # its repr would expand as much
        return orjson.Fragment(
            dumps(f"<{type(event).__name__}: more than {MAX_JSON_VALUES:,} values>")
        )
    try:
        return orjson.Fragment(dumps(_finite(event)))
    except Exception:  # TypeError, RecursionError, or a mapping whose items() raise
        try:
            text = repr(event)
        except Exception as exc:  # a hostile __repr__
            text = f"<{type(event).__name__}: repr failed: {type(exc).__name__}>"
        return orjson.Fragment(dumps(text[:_EVIDENCE_CHARS]))


def client_order_uuid(ref: str | uuid.UUID) -> uuid.UUID:
    """The seed's ``client_order_id`` for any id the bot uses: a UUID as it is, else uuid5."""
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref)
    except ValueError:
        return uuid.uuid5(CLIENT_ORDER_NAMESPACE, ref)


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# -- records ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """A trade signal from the strategy arbitrator, PROPOSED until the risk manager decides."""

    trading_pair: str
    exchange: str
    strategy_id: str
    side: str
    entry_type: str
    proposed_sl_price: Decimal
    proposed_tp_price: Decimal
    proposed_entry_price: Decimal | None = None
    prediction_event_id: uuid.UUID | None = None
    prediction_value: float | None = None
    status: str = "PROPOSED"
    rejection_reason: str | None = None
    risk_check_details: dict[str, Any] | None = None
    signal_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    created_at: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _set(self, "signal_id", uuid_value("signal_id", self.signal_id))
        text("trading_pair", self.trading_pair, 16)
        text("exchange", self.exchange, 32)
        text("strategy_id", self.strategy_id, 64)
        text("side", self.side, choices=SIDES)
        text("entry_type", self.entry_type, choices=ENTRY_TYPES)
        _set(
            self,
            "proposed_entry_price",
            money("proposed_entry_price", self.proposed_entry_price, optional=True, positive=True),
        )
        _set(
            self,
            "proposed_sl_price",
            money("proposed_sl_price", self.proposed_sl_price, positive=True),
        )
        _set(
            self,
            "proposed_tp_price",
            money("proposed_tp_price", self.proposed_tp_price, positive=True),
        )
        _set(
            self,
            "prediction_event_id",
            uuid_value("prediction_event_id", self.prediction_event_id, optional=True),
        )
        _set(
            self, "prediction_value", real("prediction_value", self.prediction_value, optional=True)
        )
        text("status", self.status, choices=SIGNAL_STATUSES)
        check_rejection(self.status, self.rejection_reason)
        _set(
            self,
            "risk_check_details",
            json_object("risk_check_details", self.risk_check_details, optional=True),
        )
        _set(self, "created_at", timestamp("created_at", self.created_at))


def check_rejection(status: str, reason: str | None) -> None:
    """The seed's rule: a rejection says why, and only a rejection has a reason."""
    text("rejection_reason", reason, optional=True)
    if status == "REJECTED" and not reason:
        raise ValidationError("rejection_reason", "is required when status is REJECTED")
    if status != "REJECTED" and reason is not None:
        raise ValidationError("rejection_reason", f"must be None when status is {status}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SignalStatusUpdate:
    """The risk manager's verdict on a PROPOSED signal."""

    signal_id: uuid.UUID
    status: str
    rejection_reason: str | None = None
    risk_check_details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _set(self, "signal_id", uuid_value("signal_id", self.signal_id))
        text("status", self.status, choices=SIGNAL_STATUSES)
        check_rejection(self.status, self.rejection_reason)
        _set(
            self,
            "risk_check_details",
            json_object("risk_check_details", self.risk_check_details, optional=True),
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as created by the bot; ``exit_reason`` names why an exit order closes a cycle.

    ``client_order_ref`` keeps a string client order id exactly (``orders.client_order_ref``);
    given one, ``client_order_id`` is always :func:`client_order_uuid` of it.
    """

    trading_pair: str
    exchange: str
    side: str
    order_type: str
    quantity_ordered: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    signal_id: uuid.UUID | None = None
    client_order_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    exchange_order_id: str | None = None
    status: str = "PENDING_NEW"
    error_message: str | None = None
    exit_reason: str | None = None
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    submitted_at: datetime | None = None
    last_updated_at: datetime | None = None
    client_order_ref: str | None = None

    def __post_init__(self) -> None:
        if text("client_order_ref", self.client_order_ref, 64, optional=True) is not None:
            _set(self, "client_order_id", client_order_uuid(self.client_order_ref))  # type: ignore[arg-type]
        _set(self, "client_order_id", uuid_value("client_order_id", self.client_order_id))
        _set(self, "signal_id", uuid_value("signal_id", self.signal_id, optional=True))
        text("trading_pair", self.trading_pair, 16)
        text("exchange", self.exchange, 32)
        text("side", self.side, choices=SIDES)
        text("order_type", self.order_type, choices=ORDER_TYPES)
        _set(
            self,
            "quantity_ordered",
            money("quantity_ordered", self.quantity_ordered, positive=True),
        )
        _set(
            self,
            "limit_price",
            money("limit_price", self.limit_price, optional=True, positive=True),
        )
        _set(self, "stop_price", money("stop_price", self.stop_price, optional=True, positive=True))
        text("exchange_order_id", self.exchange_order_id, 64, optional=True)
        text("status", self.status, choices=ORDER_STATUSES)
        text("error_message", self.error_message, optional=True)
        if self.exit_reason is not None:
            text("exit_reason", self.exit_reason, choices=EXIT_REASONS)
        _set(self, "created_at", timestamp("created_at", self.created_at))
        _set(self, "submitted_at", timestamp("submitted_at", self.submitted_at, optional=True))
        updated = timestamp("last_updated_at", self.last_updated_at, optional=True)
        _set(self, "last_updated_at", updated or self.created_at)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdate:
    """A status change of an order (and fields that arrive late, like ``exchange_order_id``)."""

    client_order_id: uuid.UUID
    status: str
    exchange_order_id: str | None = None
    submitted_at: datetime | None = None
    error_message: str | None = None
    updated_at: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _set(self, "client_order_id", uuid_value("client_order_id", self.client_order_id))
        text("status", self.status, choices=ORDER_STATUSES)
        text("exchange_order_id", self.exchange_order_id, 64, optional=True)
        _set(self, "submitted_at", timestamp("submitted_at", self.submitted_at, optional=True))
        text("error_message", self.error_message, optional=True)
        _set(self, "updated_at", timestamp("updated_at", self.updated_at))


def _fill_id() -> str:
    return f"gf-{uuid.uuid4().hex}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution. Names its order by ``client_order_id`` or ``exchange_order_id``.

    A fill without an exchange ``fill_id`` gets a generated one when it is built,
    so the journal replays it idempotently; two separately built fills without an
    id cannot be recognised as duplicates (the exchange gave nothing to compare).
    A commission is paid in the pair's quote or base currency.
    """

    trading_pair: str
    exchange: str
    side: str
    quantity_filled: Decimal
    fill_price: Decimal
    commission_asset: str
    commission: Decimal = Decimal(0)
    client_order_id: uuid.UUID | None = None
    exchange_order_id: str | None = None
    fill_id: str = dataclasses.field(default_factory=_fill_id)
    liquidity_type: str | None = None
    filled_at: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        text("fill_id", self.fill_id, 64)
        _set(
            self,
            "client_order_id",
            uuid_value("client_order_id", self.client_order_id, optional=True),
        )
        text("exchange_order_id", self.exchange_order_id, 64, optional=True)
        if self.client_order_id is None and self.exchange_order_id is None:
            raise ValidationError(
                "client_order_id", "a fill needs client_order_id or exchange_order_id"
            )
        text("trading_pair", self.trading_pair, 16)
        text("exchange", self.exchange, 32)
        text("side", self.side, choices=SIDES)
        _set(self, "quantity_filled", money("quantity_filled", self.quantity_filled, positive=True))
        _set(self, "fill_price", money("fill_price", self.fill_price, positive=True))
        _set(self, "commission", money("commission", self.commission, non_negative=True))
        text("commission_asset", self.commission_asset, 16)
        if self.commission and self.commission_asset not in split_pair(self.trading_pair):
            raise ValidationError(
                "commission_asset",
                f"{self.commission_asset!r} is neither currency of {self.trading_pair}",
            )
        text("liquidity_type", self.liquidity_type, optional=True, choices=LIQUIDITY_TYPES)
        _set(self, "filled_at", timestamp("filled_at", self.filled_at))


def split_pair(trading_pair: str) -> tuple[str, str]:
    """``"XRP/USD"`` -> ``("XRP", "USD")``: base and quote currency."""
    base, sep, quote = trading_pair.partition("/")
    if not sep or not base or not quote:
        raise ValidationError("trading_pair", f"{trading_pair!r} is not BASE/QUOTE")
    return base, quote


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    """A closed trade cycle; the ledger derives these from fills, or the bot records one."""

    signal_id: uuid.UUID | None
    trading_pair: str
    exchange: str
    strategy_id: str
    side: str
    entry_timestamp: datetime
    exit_timestamp: datetime
    quantity: Decimal
    average_entry_price: Decimal
    average_exit_price: Decimal
    total_commission: Decimal
    realized_pnl: Decimal
    realized_pnl_pct: float
    exit_reason: str
    entry_client_order_id: uuid.UUID | None = None
    exit_client_order_id: uuid.UUID | None = None
    trade_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        _set(self, "trade_id", uuid_value("trade_id", self.trade_id))
        _set(self, "signal_id", uuid_value("signal_id", self.signal_id, optional=True))
        text("trading_pair", self.trading_pair, 16)
        text("exchange", self.exchange, 32)
        text("strategy_id", self.strategy_id, 64)
        text("side", self.side, choices=SIDES)
        for name in ("entry_client_order_id", "exit_client_order_id"):
            _set(self, name, uuid_value(name, getattr(self, name), optional=True))
        _set(self, "entry_timestamp", timestamp("entry_timestamp", self.entry_timestamp))
        _set(self, "exit_timestamp", timestamp("exit_timestamp", self.exit_timestamp))
        if self.exit_timestamp < self.entry_timestamp:
            raise ValidationError("exit_timestamp", "is before entry_timestamp")
        for name in ("quantity", "average_entry_price", "average_exit_price"):
            _set(self, name, money(name, getattr(self, name), positive=True))
        _set(
            self,
            "total_commission",
            money("total_commission", self.total_commission, non_negative=True),
        )
        _set(self, "realized_pnl", money("realized_pnl", self.realized_pnl))
        _set(self, "realized_pnl_pct", real("realized_pnl_pct", self.realized_pnl_pct))
        text("exit_reason", self.exit_reason, choices=EXIT_REASONS)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """A system_logs row; ``log_id`` makes its journal replay idempotent."""

    source_module: str
    log_level: str
    message: str
    trading_pair: str | None = None
    signal_id: uuid.UUID | None = None
    order_pk: int | None = None
    exception_type: str | None = None
    stack_trace: str | None = None
    context: dict[str, Any] | None = None
    log_timestamp: datetime = dataclasses.field(default_factory=utcnow)
    log_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        _set(self, "log_id", uuid_value("log_id", self.log_id))
        text("source_module", self.source_module, 64)
        text("log_level", self.log_level, choices=LOG_LEVELS)
        text("message", self.message, allow_empty=True)
        text("trading_pair", self.trading_pair, 16, optional=True)
        _set(self, "signal_id", uuid_value("signal_id", self.signal_id, optional=True))
        if self.order_pk is not None and (
            isinstance(self.order_pk, bool)
            or not isinstance(self.order_pk, int)
            or not 0 < self.order_pk < 2**31
        ):
            raise ValidationError("order_pk", f"must be a positive INTEGER, not {self.order_pk!r}")
        text("exception_type", self.exception_type, optional=True)
        text("stack_trace", self.stack_trace, optional=True)
        _set(self, "context", json_object("context", self.context, optional=True))
        _set(self, "log_timestamp", timestamp("log_timestamp", self.log_timestamp))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioSnapshot:
    """The portfolio at one instant; the timestamp is its natural key."""

    total_equity: Decimal
    available_balance: Decimal
    total_exposure_pct: float
    daily_drawdown_pct: float
    weekly_drawdown_pct: float
    total_drawdown_pct: float
    positions: dict[str, Any] | list[Any]
    snapshot_timestamp: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _set(self, "total_equity", money("total_equity", self.total_equity))
        _set(self, "available_balance", money("available_balance", self.available_balance))
        for name in (
            "total_exposure_pct",
            "daily_drawdown_pct",
            "weekly_drawdown_pct",
            "total_drawdown_pct",
        ):
            _set(self, name, real(name, getattr(self, name)))
        _set(self, "positions", json_object("positions", self.positions))
        _set(self, "snapshot_timestamp", timestamp("snapshot_timestamp", self.snapshot_timestamp))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Configuration:
    """A configuration as loaded; ``config_hash`` is SHA-256 of its canonical JSON."""

    config_hash: str
    config_content: dict[str, Any]
    loaded_at: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        text("config_hash", self.config_hash, 64)
        if len(self.config_hash) != 64 or any(
            c not in "0123456789abcdef" for c in self.config_hash
        ):
            raise ValidationError("config_hash", "must be 64 lowercase hex digits")
        if not isinstance(self.config_content, Mapping):
            raise ValidationError("config_content", "must be a dict")
        _set(self, "config_content", json_object("config_content", self.config_content))
        _set(self, "loaded_at", timestamp("loaded_at", self.loaded_at))


def canonical_json(content: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, Decimals as strings: the bytes the config hash is taken of."""
    refuse_expanding("config_content", content)
    try:
        data = orjson.dumps(content, default=json_default, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise ValidationError("config_content", f"is not JSON-serialisable: {exc}") from None
    _refuse_non_finite("config_content", content, data)
    return data


__all__ = [
    "Configuration",
    "Fill",
    "LogEntry",
    "Order",
    "OrderUpdate",
    "PortfolioSnapshot",
    "Signal",
    "SignalStatusUpdate",
    "Trade",
    "canonical_json",
    "client_order_uuid",
    "split_pair",
]
