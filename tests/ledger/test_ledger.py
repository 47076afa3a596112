"""Bad input gets a clear error naming what was wrong, and nothing else is lost."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledgerkit import T0, make_fill, make_order, make_signal, rows, started

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.errors import IllegalTransition, UnknownOrder, ValidationError
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.records import LogEntry, PortfolioSnapshot


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("proposed_sl_price", 0.45, "must be Decimal, int or str"),
        ("proposed_sl_price", Decimal("NaN"), "finite"),
        ("proposed_tp_price", Decimal("Infinity"), "finite"),
        ("proposed_tp_price", "abc", "not a number"),
        ("proposed_tp_price", Decimal("-1"), "> 0"),
        ("proposed_tp_price", Decimal("1e21"), "NUMERIC"),
        ("proposed_tp_price", Decimal("0.0000000000000000001"), "18 decimals"),
        ("created_at", datetime(2026, 1, 1), "naive"),
        ("created_at", "yesterday", "ISO 8601"),
        ("trading_pair", "X" * 17, "holds 16"),
        ("strategy_id", "s" * 65, "holds 64"),
        ("side", "LONG", "not one of"),
        ("status", "MAYBE", "not one of"),
        ("signal_id", "not-a-uuid", "not a UUID"),
        ("signal_id", 42, "must be a UUID"),
        ("prediction_value", float("nan"), "finite"),
        ("prediction_value", 1e39, "beyond REAL"),
        ("prediction_value", 3.5e38, "beyond REAL"),
        ("prediction_value", -(10**39), "beyond REAL"),
        ("prediction_value", 1e-50, "too small for REAL"),
        ("prediction_value", Decimal("-7e-46"), "too small for REAL"),
        ("proposed_tp_price", Decimal("100000000000000000000"), "NUMERIC"),
        ("risk_check_details", {"x": object()}, "JSON"),
        ("risk_check_details", {"x": "a\x00b"}, "NUL"),
        ("risk_check_details", {"k\x00": 1}, "NUL"),
        ("risk_check_details", {"deep": [{"x": ["\x00"]}]}, "NUL"),
        ("risk_check_details", {"x": "\udc80"}, "JSON"),
        ("risk_check_details", {"x": 2**64}, "JSON"),
    ],
)
def test_signal_field_errors_name_the_field(field: str, value: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        make_signal(**{field: value})
    assert info.value.field == field


def test_column_domains_at_their_edges_are_stored_exactly(ledger: Ledger, pg_dsn: str) -> None:
    """What the checks let through, PostgreSQL stores: REAL's extremes and subnormals,
    NUMERIC(38,18)'s true maximum, and text that only looks like an escaped NUL."""
    top = Decimal("99999999999999999999.999999999999999999")
    edges = [3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45, 1e-40]
    signals = [
        make_signal(
            prediction_value=v,
            proposed_tp_price=top,
            proposed_sl_price=Decimal("1e-18"),
            risk_check_details={"text": "\\u0000 is not NUL", "\\u0000": [1]},
        )
        for v in edges
    ]
    for signal in signals:
        ledger.record_signal(signal)
    ledger.record_portfolio_snapshot(
        PortfolioSnapshot(
            total_equity=top.copy_negate(),  # -top would round to 28 digits
            available_balance=top,
            total_exposure_pct=3.4028234663852886e38,
            daily_drawdown_pct=1.401298464324817e-45,
            weekly_drawdown_pct=0,
            total_drawdown_pct=-1e-38,
            positions=[],
            snapshot_timestamp=T0,
        )
    )
    assert ledger.flush(timeout=30)
    assert ledger.stats()["dead_letters"] == 0
    got = rows(
        pg_dsn,
        "SELECT prediction_value::float8, proposed_tp_price, proposed_sl_price, "
        "risk_check_details FROM signals",
    )
    as_float4 = [struct.unpack("<f", struct.pack("<f", v))[0] for v in edges]
    assert as_float4[3] != 1e-40  # a subnormal float4: PostgreSQL rounds it, and keeps it
    assert sorted(r[0] for r in got) == sorted(as_float4)
    for _, tp, sl, details in got:
        assert (tp, sl) == (top, Decimal("1e-18"))
        assert details == {"text": "\\u0000 is not NUL", "\\u0000": [1]}
    assert rows(
        pg_dsn,
        "SELECT total_equity, available_balance, total_exposure_pct::float8, "
        "daily_drawdown_pct::float8 FROM portfolio_snapshots",
    ) == [(top.copy_negate(), top, 3.4028234663852886e38, 1.401298464324817e-45)]


def test_record_rules() -> None:
    with pytest.raises(ValidationError, match="required when status is REJECTED"):
        make_signal(status="REJECTED")
    with pytest.raises(ValidationError, match="must be None"):
        make_signal(status="APPROVED", rejection_reason="no")
    with pytest.raises(ValidationError) as info:
        make_order(quantity_ordered=1.5)
    assert info.value.field == "quantity_ordered"
    with pytest.raises(ValidationError) as info:
        make_order(exchange_order_id="E" * 65)
    assert info.value.field == "exchange_order_id"
    order = make_order()
    with pytest.raises(ValidationError, match="neither currency"):
        make_fill(order, "1", "1", commission=Decimal("0.1"), commission_asset="EUR")
    with pytest.raises(ValidationError, match="needs client_order_id or exchange_order_id"):
        make_fill(order, "1", "1", client_order_id=None)
    with pytest.raises(ValidationError) as info:
        LogEntry(source_module="m" * 65, log_level="INFO", message="x")
    assert info.value.field == "source_module"
    with pytest.raises(ValidationError) as info:
        LogEntry(source_module="m", log_level="TRACE", message="x")
    assert info.value.field == "log_level"
    with pytest.raises(ValidationError, match="required") as info:
        LogEntry(source_module="m", log_level="INFO", message=None)  # type: ignore[arg-type]
    assert info.value.field == "message"
    with pytest.raises(ValidationError, match="NUL"):
        LogEntry(source_module="m", log_level="INFO", message="a\x00b")
    with pytest.raises(ValidationError) as info:
        PortfolioSnapshot(
            total_equity=1.0,  # type: ignore[arg-type]  # deliberately wrong type: refused
            available_balance=1,  # type: ignore[arg-type]  # deliberately an int: converted
            total_exposure_pct=0,
            daily_drawdown_pct=0,
            weekly_drawdown_pct=0,
            total_drawdown_pct=0,
            positions={},
        )
    assert info.value.field == "total_equity"
    # Aware datetimes of any zone are kept as the same instant in UTC.
    assert (
        make_signal(created_at=datetime.fromisoformat("2026-11-24T12:00:00+02:00")).created_at == T0
    )


def test_bad_calls_refused_and_nothing_else_lost(ledger: Ledger, pg_dsn: str) -> None:
    signal = make_signal()
    ledger.record_signal(signal)
    with pytest.raises(ValidationError, match="already recorded"):
        ledger.record_signal(signal)
    with pytest.raises(ValidationError, match="expected Signal"):
        ledger.record_signal({"signal_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        ledger.update_signal_status(signal.signal_id, "REJECTED")
    assert info.value.field == "rejection_reason"
    ledger.update_signal_status(signal.signal_id, "APPROVED")
    with pytest.raises(IllegalTransition, match="APPROVED -> REJECTED"):
        ledger.update_signal_status(signal.signal_id, "REJECTED", rejection_reason="late")

    order = make_order(signal, quantity_ordered=Decimal(10))
    ledger.record_order(order)
    with pytest.raises(UnknownOrder):
        ledger.update_order(uuid.uuid4(), "NEW")
    with pytest.raises(UnknownOrder):
        ledger.record_fill(
            make_fill(order, "1", "0.5", client_order_id=None, exchange_order_id="NOPE")
        )
    with pytest.raises(ValidationError, match="naive") as info:
        ledger.update_order(order.client_order_id, "NEW", submitted_at=datetime(2026, 1, 1))
    assert info.value.field == "submitted_at"
    with pytest.raises(ValidationError, match="not one of"):
        ledger.update_order(order.client_order_id, "OPEN")
    ledger.update_order(order.client_order_id, "NEW", exchange_order_id="E-1")
    with pytest.raises(ValidationError) as info:
        ledger.record_fill(make_fill(order, "1", "0.5", side="SELL"))
    assert info.value.field == "side"
    with pytest.raises(ValidationError, match="more than the order's"):
        ledger.record_fill(make_fill(order, "11", "0.5"))
    ledger.record_fill(make_fill(order, "10", "0.5"))
    with pytest.raises(IllegalTransition, match="FILLED -> NEW"):
        ledger.update_order(order.client_order_id, "NEW", error_message="should not apply")
    ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="after"))
    assert ledger.flush(timeout=30)

    assert rows(
        pg_dsn, "SELECT status, quantity_filled, error_message, exchange_order_id FROM orders"
    ) == [("FILLED", Decimal(10), None, "E-1")]
    assert rows(pg_dsn, "SELECT status FROM signals") == [("APPROVED",)]
    assert rows(pg_dsn, "SELECT count(*) FROM fills") == [(1,)]
    refusals = rows(
        pg_dsn,
        "SELECT log_level, message, context FROM system_logs "
        "WHERE source_module = 'galfriday_recorder.ledger' "
        "ORDER BY log_timestamp",
    )
    assert [r[0] for r in refusals] == ["WARNING", "WARNING"]
    assert "APPROVED -> REJECTED" in refusals[0][1]
    assert "FILLED -> NEW" in refusals[1][1]
    assert refusals[1][2]["client_order_id"] == str(order.client_order_id)
    assert rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = 't'") == [("after",)]


def test_poison_event_is_dead_lettered_and_logged(ledger: Ledger, pg_dsn: str) -> None:
    """An event PostgreSQL refuses (here: an order whose signal it never saw) blocks nothing."""
    ghost = make_signal()  # never recorded, but known to the order as a reference only
    ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="before"))
    bad = make_order(ghost)
    ledger.record_order(bad)
    good = make_order()
    ledger.record_order(good)
    ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="after"))
    assert ledger.flush(timeout=30)
    assert rows(pg_dsn, "SELECT client_order_id FROM orders") == [(good.client_order_id,)]
    assert rows(
        pg_dsn, "SELECT message FROM system_logs WHERE source_module = 't' ORDER BY log_timestamp"
    ) == [("before",), ("after",)]
    (dead_log,) = rows(
        pg_dsn,
        "SELECT log_level, message, context->>'kind' FROM system_logs "
        "WHERE source_module = 'galfriday_recorder.ledger'",
    )
    assert dead_log[0] == "ERROR"
    assert "ForeignKeyViolation" in dead_log[1]
    assert dead_log[2] == "order"
    (letter,) = ledger.dead_letters()
    assert letter[1] == "order"
    assert str(bad.client_order_id).encode() in letter[2]
    assert ledger.stats()["dead_letters"] == 1


def test_a_refused_signal_names_each_dependant_it_takes_with_it(
    ledger: Ledger, pg_dsn: str
) -> None:
    """PostgreSQL refuses a signal the checks let through (a trigger of the test's own raises
    the error a REAL out of range gives);
    its order and fill cannot be stored either, and each is named in the dead letters and in
    system_logs, with why."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.strategy_id = 'poison' THEN RAISE EXCEPTION 'poisoned signal' "
            "USING ERRCODE = 'numeric_value_out_of_range'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON signals FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    signal = make_signal(strategy_id="poison")
    ledger.record_signal(signal)
    order = make_order(signal, quantity_ordered=Decimal(2))
    ledger.record_order(order)
    fill = make_fill(order, "1", "0.5")
    ledger.record_fill(fill)
    ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="after"))
    assert ledger.flush(timeout=30)
    assert rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = 't'") == [("after",)]
    letters = {kind: payload for _seq, kind, payload, _error in ledger.dead_letters()}
    assert set(letters) == {"signal", "order", "fill"}
    assert str(signal.signal_id).encode() in letters["signal"]
    assert str(order.client_order_id).encode() in letters["order"]
    assert fill.fill_id.encode() in letters["fill"]
    said = rows(
        pg_dsn,
        "SELECT context->>'kind', message FROM system_logs "
        "WHERE source_module = 'galfriday_recorder.ledger' AND log_level = 'ERROR'",
    )
    assert sorted(kind for kind, _ in said) == ["fill", "order", "signal"]
    assert any("poisoned signal" in message for _, message in said)


def _trigger_on_signals(pg_dsn: str, body: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE tries")
        conn.execute(
            "CREATE FUNCTION guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"DECLARE found_id uuid; BEGIN {body} RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER guard BEFORE INSERT ON signals FOR EACH ROW EXECUTE FUNCTION guard()"
        )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "IF NEW.strategy_id = 'poison' THEN "
            "RAISE EXCEPTION 'no poison here: %', NEW.strategy_id; END IF;",
            "RaiseException: no poison here: poison",
        ),
        ("ASSERT NEW.strategy_id <> 'poison', 'asserted away';", "AssertFailure: asserted away"),
        (
            "IF NEW.strategy_id = 'poison' THEN "
            "SELECT signal_id INTO STRICT found_id FROM signals WHERE false; END IF;",
            "NoDataFound: query returned no rows",
        ),
        (
            "IF NEW.strategy_id = 'poison' THEN SELECT signal_id INTO STRICT found_id "
            "FROM (VALUES (NEW.signal_id), (NEW.signal_id)) AS v(signal_id); END IF;",
            "TooManyRows: query returned more than one row",
        ),
        (
            "IF NEW.strategy_id = 'poison' THEN "
            "RAISE EXCEPTION USING ERRCODE = 'P0000', MESSAGE = 'plpgsql says no'; END IF;",
            "PlpgsqlError: plpgsql says no",
        ),
    ],
    ids=["raise", "assert", "no-data-found", "too-many-rows", "P0000"],
)
def test_a_trigger_refusing_an_event_dead_letters_it_and_the_rest_commits(
    ledger: Ledger, pg_dsn: str, body: str, reason: str
) -> None:
    """A trigger's RAISE (SQLSTATE class P0) refuses that event for good: retrying it would
    never end, and would hold back every event after it."""
    _trigger_on_signals(pg_dsn, body)
    before, poison, after = make_signal(), make_signal(strategy_id="poison"), make_signal()
    for signal in (before, poison, after):
        ledger.record_signal(signal)
    ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="after"))
    assert ledger.flush(timeout=30)
    assert sorted(r[0] for r in rows(pg_dsn, "SELECT signal_id FROM signals")) == sorted(
        [before.signal_id, after.signal_id]
    )
    assert rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = 't'") == [("after",)]
    [(_seq, kind, payload, error)] = ledger.dead_letters()
    assert kind == "signal"
    assert str(poison.signal_id).encode() in payload
    assert reason in error
    [(logged_kind, message)] = rows(
        pg_dsn,
        "SELECT context->>'kind', message FROM system_logs "
        "WHERE source_module = 'galfriday_recorder.ledger' AND log_level = 'ERROR'",
    )
    assert logged_kind == "signal"
    assert reason in message
    stats = ledger.stats()
    assert (stats["dead_letters"], stats["commit_conflicts_retried"]) == (1, 0)


def test_a_backlog_goes_in_groups_made_ahead_each_event_once(pg_dsn: str, tmp_path: Path) -> None:
    """A backlog's groups go back to back, each made while the one before it is in
    PostgreSQL (here another session holds the signals table while the callers record):
    a refused event in a later group costs only itself, the group after it is made again,
    and every other event is stored once."""
    _trigger_on_signals(pg_dsn, "IF NEW.strategy_id = 'poison' THEN RAISE 'no'; END IF;")
    config = RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data", commit_max_events=40)
    ledger = started(config)
    signals = [make_signal(strategy_id="poison" if i == 150 else "s") for i in range(300)]
    try:
        assert ledger.flush(timeout=30)  # connected and state read, before the lock
        with psycopg.connect(pg_dsn) as blocker:
            blocker.execute("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
            for i, signal in enumerate(signals):
                ledger.record_signal(signal)
                ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=str(i)))
            assert ledger.wait_journaled(10)
        assert ledger.flush(timeout=60)
        stats = ledger.stats()
    finally:
        ledger.close(timeout=10)
    stored = sorted(r[0] for r in rows(pg_dsn, "SELECT signal_id FROM signals"))
    assert stored == sorted(s.signal_id for s in signals if s.strategy_id != "poison")
    logged = rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = 't'")
    assert sorted(int(m) for (m,) in logged) == list(range(300))
    assert (stats["dead_letters"], stats["committed"]) == (1, 599)
    assert stats["commit_batches"] >= 600 // 40


BACKLOG = 120  # signals, each with a log and every third with its entry order


def _poisoned_positions() -> st.SearchStrategy[list[int]]:
    """Which signals the trigger refuses, weighted toward the edges of a group's halves."""
    edges = [0, 1, BACKLOG // 2 - 1, BACKLOG // 2, BACKLOG - 1]
    return st.one_of(
        st.lists(st.sampled_from(edges), min_size=1, unique=True),
        st.lists(st.integers(0, BACKLOG - 1), min_size=1, max_size=8, unique=True),
        st.integers(0, BACKLOG - 2).map(lambda i: [i, i + 1]),
        st.just(list(range(BACKLOG))),
    )


def test_refused_events_cost_only_themselves_wherever_they_are(pg_dsn: str, tmp_path: Path) -> None:
    """A group PostgreSQL refuses is settled in parts: wherever the refused events are
    (first, last, at a half's edge, side by side, every one), exactly they and what depends
    on them (an order of a refused signal) are dead-lettered, with a system_logs row each,
    and every other event is stored once."""
    _trigger_on_signals(pg_dsn, "IF NEW.strategy_id = 'poison' THEN RAISE 'no'; END IF;")

    @settings(max_examples=12, deadline=None, database=None)
    @given(poisoned=_poisoned_positions())
    def example(poisoned: list[int]) -> None:
        data = tmp_path / uuid.uuid4().hex
        ledger = started(RecorderConfig(pg_dsn=pg_dsn, data_dir=data))
        signals = [
            make_signal(strategy_id="poison" if i in poisoned else "s") for i in range(BACKLOG)
        ]
        orders = {i: make_order(signals[i]) for i in range(0, BACKLOG, 3)}
        tag = uuid.uuid4().hex
        try:
            assert ledger.flush(timeout=30)  # connected and state read, before the lock
            with psycopg.connect(pg_dsn) as blocker:  # the backlog goes in one group
                blocker.execute("LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
                for i, signal in enumerate(signals):
                    ledger.record_signal(signal)
                    ledger.record_log(LogEntry(source_module=tag, log_level="INFO", message=str(i)))
                    if i in orders:
                        ledger.record_order(orders[i])
                assert ledger.wait_journaled(10)
            assert ledger.flush(timeout=60)
            letters = ledger.dead_letters()
        finally:
            ledger.close(timeout=10)
        ids = [s.signal_id for s in signals]
        stored = rows(pg_dsn, "SELECT signal_id FROM signals WHERE signal_id = ANY(%s)", ids)
        assert sorted(sid for (sid,) in stored) == sorted(
            s.signal_id for i, s in enumerate(signals) if i not in poisoned
        )
        cids = [o.client_order_id for o in orders.values()]
        placed = rows(
            pg_dsn, "SELECT client_order_id FROM orders WHERE client_order_id = ANY(%s)", cids
        )
        assert sorted(cid for (cid,) in placed) == sorted(
            o.client_order_id for i, o in orders.items() if i not in poisoned
        )
        logged = rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = %s", tag)
        assert sorted(int(m) for (m,) in logged) == list(range(BACKLOG))
        refused = {str(signals[i].signal_id): "signal" for i in poisoned} | {
            str(orders[i].client_order_id): "order" for i in poisoned if i in orders
        }
        kept = {}
        for _seq, kind, payload, _error in letters:
            event = orjson.loads(payload)
            kept[event.get("signal_id") if kind == "signal" else event["client_order_id"]] = kind
        assert kept == refused
        said = rows(
            pg_dsn,
            "SELECT count(*) FROM system_logs WHERE context->>'journal_seq' = ANY(%s)",
            [str(seq) for seq, _k, _p, _e in letters],
        )
        assert said == [(len(letters),)]

    example()


@pytest.mark.parametrize("code", ["serialization_failure", "deadlock_detected"])
def test_a_conflict_a_retry_resolves_is_retried_not_dead_lettered(
    ledger: Ledger, pg_dsn: str, code: str
) -> None:
    """The same trigger raising a serialization failure or a deadlock (twice, then not): the
    group is retried whole and every event commits."""
    _trigger_on_signals(
        pg_dsn,
        f"IF nextval('tries') <= 2 THEN RAISE EXCEPTION 'conflict' USING ERRCODE = '{code}'; "
        "END IF;",
    )
    signals = [make_signal() for _ in range(3)]
    for signal in signals:
        ledger.record_signal(signal)
    assert ledger.flush(timeout=30)
    assert len(rows(pg_dsn, "SELECT signal_id FROM signals")) == 3
    stats = ledger.stats()
    assert (stats["dead_letters"], stats["commit_conflicts_retried"]) == (0, 2)
    assert ledger.dead_letters() == []


class _Unserialisable:
    def __repr__(self) -> str:
        return "<a thing JSON has no form for>"


@pytest.mark.parametrize(
    ("event", "kept"),
    [
        (
            {"price": float("nan"), "levels": [float("inf"), -float("inf"), 1.5], "n": 1},
            {"price": "nan", "levels": ["inf", "-inf", 1.5], "n": 1},
        ),
        ({"qty": Decimal("1.50"), "at": T0}, {"qty": "1.50", "at": "2026-11-24T10:00:00+00:00"}),
        ({"thing": _Unserialisable()}, "{'thing': <a thing JSON has no form for>}"),
        ({1: "a key JSON cannot hold"}, "{1: 'a key JSON cannot hold'}"),
    ],
    ids=["non_finite", "decimal_and_time", "unserialisable", "int_key"],
)
def test_a_refused_event_is_kept_as_it_was_given(ledger: Ledger, event: Any, kept: Any) -> None:
    """A dead letter is the evidence of what the bot sent: a NaN is kept as ``nan``, not
    as JSON's ``null``, and a change to the event after the call is not kept."""
    ledger.record_refused("fill", event, "bad price")
    if isinstance(event.get("levels"), list):
        event["levels"].append(99.0)
    event["n"] = 2
    assert ledger.flush(timeout=30)
    [(_seq, kind, payload, error)] = ledger.dead_letters()
    assert (kind, error) == ("refused", "bad price")
    assert orjson.loads(payload) == {"what": "fill", "reason": "bad price", "event": kept}


class _Hostile(Mapping[str, Any]):
    """A mapping that cannot be read or printed."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iteration")

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        raise ValueError("no repr")


def test_a_refused_event_of_shared_lists_is_kept_as_its_size_not_written_out(
    ledger: Ledger,
) -> None:
    """Written out (or printed), a list holding one list twice, 40 levels deep, is 2^41
    values: it would take every byte of memory. It is kept as what it is instead."""
    nested: list[Any] = [1]
    for _ in range(40):
        nested = [nested, nested]
    # Deliberately wrong type (not a Mapping): a refused event is kept whatever it is.
    ledger.record_refused("fill", nested, "shared")  # type: ignore[arg-type]
    small: list[Any] = [[1]]
    # Written out as before.
    ledger.record_refused("fill", [small, small], "shared, small")  # type: ignore[arg-type]
    assert ledger.flush(timeout=30)
    events = [orjson.loads(payload)["event"] for _s, _k, payload, _e in ledger.dead_letters()]
    assert events == ["<list: more than 1,000,000 values>", [[[1]], [[1]]]]


def test_a_refused_event_that_cannot_be_read_is_kept_as_what_failed(ledger: Ledger) -> None:
    ledger.record_refused("fill", _Hostile(), "unreadable")
    assert ledger.flush(timeout=30)
    [(_seq, _kind, payload, _error)] = ledger.dead_letters()
    assert orjson.loads(payload)["event"] == "<_Hostile: repr failed: ValueError>"
