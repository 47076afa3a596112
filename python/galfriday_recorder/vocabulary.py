"""The bot's words for orders, exits, assets, numbers and times, turned into the seed's.

Gal-Friday (and Kraken behind it) names things its own way: ``OPEN`` and
``CANCELLED`` orders, ``STOP`` or ``stop-loss`` order types, ``ZUSD`` commission
assets, numbers as ``str`` and timestamps like ``2024-07-01T12:00:00+00:00Z``.
This module is the one table that maps them, pure and without I/O, so the
bridge and ``Recorder.record_execution_report`` speak the same language. The
README's "Gal-Friday's vocabulary" section is this table in prose.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ValidationError
from .records import (
    CLIENT_ORDER_NAMESPACE,
    EXIT_REASONS,
    ORDER_STATUSES,
    ORDER_TYPES,
    client_order_uuid,
    split_pair,
)

# Any case; looked up after ``.strip().upper()`` with ``-`` and spaces as ``_``.
ORDER_STATUS_WORDS: dict[str, str] = {
    **{s: s for s in ORDER_STATUSES},
    "PENDING": "PENDING_NEW",
    "PENDING_SUBMIT": "PENDING_NEW",
    "OPEN": "NEW",
    "SUBMITTED": "NEW",
    "ACKNOWLEDGED": "NEW",
    "CANCELLED": "CANCELED",
    "PENDING_CANCELLED": "PENDING_CANCEL",
    "CLOSED": "FILLED",
    "FAILED": "REJECTED",
}
ORDER_TYPE_WORDS: dict[str, str] = {
    **{t: t for t in ORDER_TYPES},
    "STOP": "STOP_LOSS",
    "STOP_LIMIT": "STOP_LOSS_LIMIT",
    "TRAILING_STOP_LOSS": "TRAILING_STOP",
}
EXIT_REASON_WORDS: dict[str, str] = {
    **{r: r for r in EXIT_REASONS},
    "TP": "TP_HIT",
    "TAKE_PROFIT": "TP_HIT",
    "SL": "SL_HIT",
    "STOP_LOSS": "SL_HIT",
    "TIME": "TIME_EXIT",
    "TIMEOUT": "TIME_EXIT",
    "MANUAL": "MANUAL_CLOSE",
    "SIGNAL": "SIGNAL_EXIT",
    "RISK": "RISK_LIMIT",
    "HALT": "SHUTDOWN",
}
# Kraken's legacy asset codes (X prefix for crypto, Z for fiat) and its XBT/XDG.
_ASSET_CODES: dict[str, str] = {
    "XXBT": "BTC",
    "XBT": "BTC",
    "XXDG": "DOGE",
    "XDG": "DOGE",
    "XETH": "ETH",
    "XXRP": "XRP",
    "XLTC": "LTC",
    "XXLM": "XLM",
    "XETC": "ETC",
    "XXMR": "XMR",
    "XZEC": "ZEC",
    "ZUSD": "USD",
    "ZEUR": "EUR",
    "ZGBP": "GBP",
    "ZCAD": "CAD",
    "ZJPY": "JPY",
    "ZCHF": "CHF",
    "ZAUD": "AUD",
}


def _key(word: Any, field: str) -> str:
    if not isinstance(word, str):
        raise ValidationError(field, f"must be str, not {type(word).__name__}")
    return word.strip().upper().replace("-", "_").replace(" ", "_")


def _lookup(table: dict[str, str], word: Any, field: str) -> str:
    found = table.get(_key(word, field))
    if found is None:
        raise ValidationError(field, f"{word!r} is not a known {field.replace('_', ' ')}")
    return found


def order_status(word: Any, quantity_filled: Decimal = Decimal(0)) -> str:
    """The seed's status; an open order with something filled is ``PARTIALLY_FILLED``."""
    status = _lookup(ORDER_STATUS_WORDS, word, "order_status")
    if status == "NEW" and quantity_filled > 0:
        return "PARTIALLY_FILLED"
    return status


def is_unknown(word: Any) -> bool:
    """The bot's ``UNKNOWN`` status (a per-trade report that knows no order state)."""
    return isinstance(word, str) and word.strip().upper() == "UNKNOWN"


def order_type(word: Any) -> str:
    return _lookup(ORDER_TYPE_WORDS, word, "order_type")


def exit_reason(word: Any) -> str:
    return _lookup(EXIT_REASON_WORDS, word, "exit_reason")


def side(word: Any) -> str:
    key = _key(word, "side")
    if key not in ("BUY", "SELL"):
        raise ValidationError("side", f"{word!r} is neither BUY nor SELL")
    return key


def asset(code: str, trading_pair: str) -> str:
    """A commission asset in the pair's own spelling: ``ZUSD`` -> ``USD`` for ``XRP/USD``."""
    base, quote = split_pair(trading_pair)
    key = _key(code, "commission_asset")
    if key in (base, quote):
        return key
    plain = _ASSET_CODES.get(key, key)
    for currency in (base, quote):
        if plain == _ASSET_CODES.get(currency, currency):
            return currency
    raise ValidationError("commission_asset", f"{code!r} is neither currency of {trading_pair}")


def commission_asset(code: str | None, trading_pair: str) -> str:
    """The pair's quote currency when the bot names none (Kraken charges fees in it)."""
    return split_pair(trading_pair)[1] if not code else asset(code, trading_pair)


def decimal(field: str, value: Any) -> Decimal:
    """``str``, ``int`` or ``Decimal`` exactly; a float is refused (it is already inexact)."""
    if value is None:
        raise ValidationError(field, "is required")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationError(field, f"must be Decimal, int or str, not {type(value).__name__}")
    try:
        return Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValidationError(field, f"{value!r} is not a number") from None


def optional_decimal(field: str, value: Any) -> Decimal | None:
    """As :func:`decimal`; ``None`` and ``""`` (the bot's "no price") are no number."""
    return None if value is None or value == "" else decimal(field, value)


def uuid_of(field: str, value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValidationError(field, f"{value!r} is not a UUID") from None


def timestamp(field: str, value: Any) -> datetime:
    """An aware UTC datetime from a datetime, ISO text (``+00:00Z`` and ``Z`` too) or epoch s."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("+00:00Z", "+0000Z")):
            text = text[:-1]
        elif text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(field, f"{value!r} is not an ISO 8601 timestamp") from None
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            value = datetime.fromtimestamp(float(value), timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise ValidationError(field, f"{value!r} is not a time") from None
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "is a naive datetime; give a timezone-aware one (UTC)")
    return value.astimezone(timezone.utc)


__all__ = [
    "CLIENT_ORDER_NAMESPACE",
    "EXIT_REASON_WORDS",
    "ORDER_STATUS_WORDS",
    "ORDER_TYPE_WORDS",
    "asset",
    "client_order_uuid",
    "commission_asset",
    "decimal",
    "exit_reason",
    "is_unknown",
    "optional_decimal",
    "order_status",
    "order_type",
    "side",
    "timestamp",
    "uuid_of",
]
