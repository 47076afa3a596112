"""The bot's vocabulary table: pure, no server."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from galfriday_recorder import vocabulary as vocab
from galfriday_recorder.errors import ValidationError
from galfriday_recorder.records import EXIT_REASONS, ORDER_STATUSES, ORDER_TYPES


@pytest.mark.parametrize(
    ("word", "filled", "expected"),
    [
        ("OPEN", "0", "NEW"),
        ("open", "0", "NEW"),
        ("Submitted", "0", "NEW"),
        ("ACKNOWLEDGED", "0", "NEW"),
        ("OPEN", "0.5", "PARTIALLY_FILLED"),
        ("pending", "0", "PENDING_NEW"),
        ("CANCELLED", "0", "CANCELED"),
        ("cancelled", "1", "CANCELED"),
        ("CLOSED", "1", "FILLED"),
        ("failed", "0", "REJECTED"),
        ("expired", "0", "EXPIRED"),
        ("partially_filled", "1", "PARTIALLY_FILLED"),
    ],
)
def test_order_statuses(word: str, filled: str, expected: str) -> None:
    assert vocab.order_status(word, Decimal(filled)) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("STOP", "STOP_LOSS"),
        ("STOP_LIMIT", "STOP_LOSS_LIMIT"),
        ("stop-loss", "STOP_LOSS"),
        ("take-profit", "TAKE_PROFIT"),
        ("stop-loss-limit", "STOP_LOSS_LIMIT"),
        ("take-profit-limit", "TAKE_PROFIT_LIMIT"),
        ("trailing-stop", "TRAILING_STOP"),
        ("settle-position", "SETTLE_POSITION"),
        ("limit", "LIMIT"),
        ("Market", "MARKET"),
    ],
)
def test_order_types(word: str, expected: str) -> None:
    assert vocab.order_type(word) == expected


@pytest.mark.parametrize("word", ["UNKNOWN", "", "stop loss!", "NEW\x00"])
def test_unknown_words_name_the_field(word: str) -> None:
    with pytest.raises(ValidationError) as err:
        vocab.order_type(word)
    assert err.value.field == "order_type"
    with pytest.raises(ValidationError) as err:
        vocab.order_status(word)
    assert err.value.field == "order_status"


def test_every_seed_word_maps_to_itself_in_any_case() -> None:
    for s in ORDER_STATUSES:
        assert vocab.order_status(s.lower()) == s
    for t in ORDER_TYPES:
        assert vocab.order_type(t.lower().replace("_", "-")) == t
    for r in EXIT_REASONS:
        assert vocab.exit_reason(r.lower()) == r


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("tp_hit", "TP_HIT"),
        ("stop_loss", "SL_HIT"),
        ("manual", "MANUAL_CLOSE"),
        ("halt", "SHUTDOWN"),
    ],
)
def test_exit_reasons(word: str, expected: str) -> None:
    assert vocab.exit_reason(word) == expected


@pytest.mark.parametrize(
    ("code", "pair", "expected"),
    [
        ("ZUSD", "XRP/USD", "USD"),
        ("XXRP", "XRP/USD", "XRP"),
        ("XXBT", "BTC/USD", "BTC"),
        ("XXBT", "XBT/USD", "XBT"),
        ("XBT", "BTC/EUR", "BTC"),
        ("ZEUR", "BTC/EUR", "EUR"),
        ("usd", "XRP/USD", "USD"),
        (None, "XRP/USD", "USD"),
        ("", "DOGE/USD", "USD"),
    ],
)
def test_commission_assets(code: str | None, pair: str, expected: str) -> None:
    assert vocab.commission_asset(code, pair) == expected


def test_a_foreign_commission_asset_is_refused() -> None:
    with pytest.raises(ValidationError, match="neither currency"):
        vocab.commission_asset("ZEUR", "XRP/USD")


@given(st.decimals(allow_nan=False, allow_infinity=False, places=18))
def test_numbers_as_str_are_exact(value: Decimal) -> None:
    assert vocab.decimal("price", str(value)) == value
    assert vocab.optional_decimal("price", "") is None
    assert str(vocab.decimal("price", str(value))) == str(value)


@pytest.mark.parametrize("value", [0.1, float("nan"), True, "1.0.0", "abc", [1]])
def test_inexact_or_not_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as err:
        vocab.decimal("price", value)
    assert err.value.field == "price"


@pytest.mark.parametrize(
    "text",
    [
        "2024-07-01T12:00:00.123456+00:00Z",
        "2024-07-01T12:00:00.123456Z",
        "2024-07-01T12:00:00.123456+00:00",
        "2024-07-01T14:00:00.123456+02:00",
    ],
)
def test_bot_timestamps(text: str) -> None:
    expected = datetime(2024, 7, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert vocab.timestamp("timestamp", text) == expected


@given(st.datetimes(timezones=st.just(timezone.utc), min_value=datetime(1971, 1, 1)))
def test_isoformat_plus_z_round_trips(when: datetime) -> None:
    """The portfolio manager's ``isoformat() + "Z"``, for any instant."""
    assert vocab.timestamp("t", when.isoformat() + "Z") == when


def test_naive_and_garbage_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="naive"):
        vocab.timestamp("t", "2024-07-01T12:00:00")
    with pytest.raises(ValidationError):
        vocab.timestamp("t", "yesterday")
    assert vocab.timestamp("t", 0) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert (
        vocab.timestamp("t", datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1)))).hour == 23
    )


@given(st.text(min_size=1, max_size=64))
def test_client_order_ids_map_deterministically(ref: str) -> None:
    first = vocab.client_order_uuid(ref)
    assert first == vocab.client_order_uuid(ref)
    assert isinstance(first, uuid.UUID)


def test_bot_order_ids_become_uuid5_and_uuids_stay() -> None:
    ref = "gf-1a2b3c4d-1719999999999999"
    assert vocab.client_order_uuid(ref) == uuid.uuid5(vocab.CLIENT_ORDER_NAMESPACE, ref)
    assert vocab.client_order_uuid("gf-sl-1a2b3c4d-1") != vocab.client_order_uuid(ref)
    u = uuid.uuid4()
    assert vocab.client_order_uuid(u) == u
    assert vocab.client_order_uuid(str(u)) == u
