"""The migrated database holds the seed schema exactly: columns, types, constraints, indexes.

The expectations below are transcribed from ``gal-friday-database-schema.md``
section 2, column by column; the checks read them back from the catalog of a
freshly migrated real PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

N = "numeric"
TS = "timestamp with time zone"
VC = "character varying"

# table -> column -> (type, max length or numeric (precision, scale), NOT NULL, default contains)
SEED: dict[str, dict[str, tuple[str, Any, bool, str | None]]] = {
    "signals": {
        "signal_id": ("uuid", None, True, None),
        "trading_pair": (VC, 16, True, None),
        "exchange": (VC, 32, True, None),
        "strategy_id": (VC, 64, True, None),
        "side": (VC, 4, True, None),
        "entry_type": (VC, 10, True, None),
        "proposed_entry_price": (N, (38, 18), False, None),
        "proposed_sl_price": (N, (38, 18), True, None),
        "proposed_tp_price": (N, (38, 18), True, None),
        "prediction_event_id": ("uuid", None, False, None),
        "prediction_value": ("real", None, False, None),
        "status": (VC, 10, True, None),
        "rejection_reason": ("text", None, False, None),
        "risk_check_details": ("jsonb", None, False, None),
        "created_at": (TS, None, True, "now()"),
    },
    "orders": {
        "order_pk": ("integer", None, True, "nextval"),
        "client_order_id": ("uuid", None, True, None),
        "exchange_order_id": (VC, 64, False, None),
        "signal_id": ("uuid", None, False, None),
        "trading_pair": (VC, 16, True, None),
        "exchange": (VC, 32, True, None),
        "side": (VC, 4, True, None),
        "order_type": (VC, 16, True, None),
        "quantity_ordered": (N, (38, 18), True, None),
        "limit_price": (N, (38, 18), False, None),
        "stop_price": (N, (38, 18), False, None),
        "status": (VC, 20, True, None),
        "error_message": ("text", None, False, None),
        "created_at": (TS, None, True, "now()"),
        "submitted_at": (TS, None, False, None),
        "last_updated_at": (TS, None, True, "now()"),
    },
    "fills": {
        "fill_pk": ("integer", None, True, "nextval"),
        "fill_id": (VC, 64, False, None),
        "order_pk": ("integer", None, True, None),
        "exchange_order_id": (VC, 64, False, None),
        "trading_pair": (VC, 16, True, None),
        "exchange": (VC, 32, True, None),
        "side": (VC, 4, True, None),
        "quantity_filled": (N, (38, 18), True, None),
        "fill_price": (N, (38, 18), True, None),
        "commission": (N, (38, 18), True, None),
        "commission_asset": (VC, 16, True, None),
        "liquidity_type": (VC, 10, False, None),
        "filled_at": (TS, None, True, None),
    },
    "trades": {
        "trade_pk": ("integer", None, True, "nextval"),
        "trade_id": ("uuid", None, True, None),
        "signal_id": ("uuid", None, False, None),
        "trading_pair": (VC, 16, True, None),
        "exchange": (VC, 32, True, None),
        "strategy_id": (VC, 64, True, None),
        "side": (VC, 4, True, None),
        "entry_order_pk": ("integer", None, False, None),
        "exit_order_pk": ("integer", None, False, None),
        "entry_timestamp": (TS, None, True, None),
        "exit_timestamp": (TS, None, True, None),
        "quantity": (N, (38, 18), True, None),
        "average_entry_price": (N, (38, 18), True, None),
        "average_exit_price": (N, (38, 18), True, None),
        "total_commission": (N, (38, 18), True, None),
        "realized_pnl": (N, (38, 18), True, None),
        "realized_pnl_pct": ("real", None, True, None),
        "exit_reason": (VC, 32, True, None),
    },
    "system_logs": {
        "log_pk": ("bigint", None, True, "nextval"),
        "log_timestamp": (TS, None, True, "now()"),
        "source_module": (VC, 64, True, None),
        "log_level": (VC, 10, True, None),
        "message": ("text", None, True, None),
        "trading_pair": (VC, 16, False, None),
        "signal_id": ("uuid", None, False, None),
        "order_pk": ("integer", None, False, None),
        "exception_type": ("text", None, False, None),
        "stack_trace": ("text", None, False, None),
        "context": ("jsonb", None, False, None),
    },
    "portfolio_snapshots": {
        "snapshot_pk": ("integer", None, True, "nextval"),
        "snapshot_timestamp": (TS, None, True, "now()"),
        "total_equity": (N, (38, 18), True, None),
        "available_balance": (N, (38, 18), True, None),
        "total_exposure_pct": ("real", None, True, None),
        "daily_drawdown_pct": ("real", None, True, None),
        "weekly_drawdown_pct": ("real", None, True, None),
        "total_drawdown_pct": ("real", None, True, None),
        "positions": ("jsonb", None, True, None),
    },
    "configurations": {
        "config_pk": ("integer", None, True, "nextval"),
        "config_hash": (VC, 64, True, None),
        "config_content": ("jsonb", None, True, None),
        "loaded_at": (TS, None, True, "now()"),
        "is_active": ("boolean", None, True, "true"),
    },
}

PRIMARY_KEYS = {
    "signals": ["signal_id"],
    "orders": ["order_pk"],
    "fills": ["fill_pk"],
    "trades": ["trade_pk"],
    "system_logs": ["log_pk"],
    "portfolio_snapshots": ["snapshot_pk"],
    "configurations": ["config_pk"],
}
UNIQUES = {
    ("orders", ("client_order_id",)),
    ("orders", ("exchange_order_id",)),
    ("fills", ("exchange", "fill_id")),
    ("trades", ("trade_id",)),
    ("configurations", ("config_hash",)),
}
FOREIGN_KEYS = {
    ("orders", "signal_id", "signals", "signal_id"),
    ("fills", "order_pk", "orders", "order_pk"),
    ("trades", "signal_id", "signals", "signal_id"),
    ("trades", "entry_order_pk", "orders", "order_pk"),
    ("trades", "exit_order_pk", "orders", "order_pk"),
}
INDEXES = {
    "idx_signals_created_at": ("signals", ["created_at"], False),
    "idx_signals_trading_pair_status": ("signals", ["trading_pair", "status"], False),
    "idx_orders_signal_id": ("orders", ["signal_id"], False),
    "idx_orders_exchange_order_id": ("orders", ["exchange_order_id"], False),
    "idx_orders_status": ("orders", ["status"], False),
    "idx_orders_created_at": ("orders", ["created_at"], False),
    "idx_fills_order_pk": ("fills", ["order_pk"], False),
    "idx_fills_exchange_order_id": ("fills", ["exchange_order_id"], False),
    "idx_fills_filled_at": ("fills", ["filled_at"], False),
    "idx_trades_signal_id": ("trades", ["signal_id"], False),
    "idx_trades_entry_timestamp": ("trades", ["entry_timestamp"], False),
    "idx_trades_exit_timestamp": ("trades", ["exit_timestamp"], False),
    "idx_trades_trading_pair": ("trades", ["trading_pair"], False),
    "idx_system_logs_log_timestamp": ("system_logs", ["log_timestamp"], False),
    "idx_system_logs_log_level": ("system_logs", ["log_level"], False),
    "idx_system_logs_source_module": ("system_logs", ["source_module"], False),
    "idx_portfolio_snapshots_timestamp": ("portfolio_snapshots", ["snapshot_timestamp"], True),
    "idx_configurations_loaded_at": ("configurations", ["loaded_at"], False),
    "uq_configurations_one_active": ("configurations", ["is_active"], True),
}


@pytest.fixture
def conn(pg_dsn: str) -> Any:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        yield c


def test_every_seed_column_has_its_type_nullability_and_default(conn: Any) -> None:
    for table, columns in SEED.items():
        rows = conn.execute(
            "SELECT column_name, data_type, character_maximum_length, numeric_precision, "
            "numeric_scale, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s",
            (table,),
        ).fetchall()
        found = {r[0]: r for r in rows}
        assert set(columns) <= set(found), f"{table}: missing {set(columns) - set(found)}"
        for name, (dtype, size, not_null, default) in columns.items():
            _, got_type, max_len, precision, scale, nullable, got_default = found[name]
            assert got_type == dtype, f"{table}.{name}: {got_type} != {dtype}"
            if dtype == VC:
                assert max_len == size, f"{table}.{name}: length {max_len} != {size}"
            if dtype == N:
                assert (precision, scale) == size, f"{table}.{name}: numeric({precision},{scale})"
            assert (nullable == "NO") == not_null, f"{table}.{name}: nullability"
            if default is None:
                assert got_default is None, f"{table}.{name}: unexpected default {got_default}"
            else:
                assert got_default is not None, f"{table}.{name}: no default"
                assert default in got_default.lower(), (
                    f"{table}.{name}: default {got_default!r} lacks {default!r}"
                )


def _constraints(
    conn: Any, kind: str
) -> list[tuple[str, tuple[str, ...], str | None, tuple[str, ...]]]:
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                     ORDER BY k.o),
               c.confrelid::regclass::text,
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                     ORDER BY k.o)
        FROM pg_constraint c JOIN pg_namespace ns ON ns.oid = c.connamespace
        WHERE ns.nspname = 'public' AND c.contype = %s
        """,
        (kind,),
    ).fetchall()
    return [
        (t, tuple(cols), ft if ft != "-" else None, tuple(fcols or ()))
        for t, cols, ft, fcols in rows
    ]


def test_primary_unique_and_foreign_keys(conn: Any) -> None:
    pks = {t: list(cols) for t, cols, _, _ in _constraints(conn, "p")}
    for table, cols in PRIMARY_KEYS.items():
        assert pks.get(table) == cols, f"{table}: primary key {pks.get(table)}"
    uniques = {(t, cols) for t, cols, _, _ in _constraints(conn, "u")}
    assert uniques >= UNIQUES, f"missing unique constraints: {UNIQUES - uniques}"
    fks = {(t, cols[0], ft, fcols[0]) for t, cols, ft, fcols in _constraints(conn, "f")}
    assert fks >= FOREIGN_KEYS, f"missing foreign keys: {FOREIGN_KEYS - fks}"


def test_every_seed_index_exists(conn: Any) -> None:
    rows = conn.execute(
        """
        SELECT i.relname, t.relname, ix.indisunique,
               ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o)
        FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid
        JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
        WHERE ns.nspname = 'public'
        """
    ).fetchall()
    found = {name: (table, list(cols), unique) for name, table, unique, cols in rows}
    for name, expected in INDEXES.items():
        assert found.get(name) == expected, f"{name}: {found.get(name)} != {expected}"


# --- rows each constraint must reject --------------------------------------


def _signal(**over: Any) -> dict[str, Any]:
    row = {
        "signal_id": uuid.uuid4(),
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "strategy_id": "s1",
        "side": "BUY",
        "entry_type": "LIMIT",
        "proposed_entry_price": "0.5",
        "proposed_sl_price": "0.4",
        "proposed_tp_price": "0.6",
        "status": "PROPOSED",
        "rejection_reason": None,
    }
    row.update(over)
    return row


def _insert(conn: Any, table: str, row: dict[str, Any]) -> Any:
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    pk = {
        "signals": "signal_id",
        "orders": "order_pk",
        "fills": "fill_pk",
        "trades": "trade_pk",
        "system_logs": "log_pk",
        "portfolio_snapshots": "snapshot_pk",
        "configurations": "config_pk",
    }[table]
    return conn.execute(
        f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING {pk}", list(row.values())
    ).fetchone()[0]


def _order(signal_id: Any, **over: Any) -> dict[str, Any]:
    row = {
        "client_order_id": uuid.uuid4(),
        "signal_id": signal_id,
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity_ordered": "10",
        "limit_price": "0.5",
        "status": "NEW",
    }
    row.update(over)
    return row


def _fill(order_pk: Any, **over: Any) -> dict[str, Any]:
    row = {
        "fill_id": uuid.uuid4().hex,
        "order_pk": order_pk,
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "side": "BUY",
        "quantity_filled": "1",
        "fill_price": "0.5",
        "commission": "0.001",
        "commission_asset": "USD",
        "liquidity_type": "MAKER",
        "filled_at": "2026-01-01T00:00:00Z",
    }
    row.update(over)
    return row


def _trade(signal_id: Any, **over: Any) -> dict[str, Any]:
    row = {
        "trade_id": uuid.uuid4(),
        "signal_id": signal_id,
        "trading_pair": "XRP/USD",
        "exchange": "kraken",
        "strategy_id": "s1",
        "side": "BUY",
        "entry_timestamp": "2026-01-01T00:00:00Z",
        "exit_timestamp": "2026-01-01T00:05:00Z",
        "quantity": "10",
        "average_entry_price": "0.5",
        "average_exit_price": "0.6",
        "total_commission": "0.01",
        "realized_pnl": "0.99",
        "realized_pnl_pct": 19.8,
        "exit_reason": "TP_HIT",
    }
    row.update(over)
    return row


REJECTED_ROWS: list[tuple[str, str, dict[str, Any], type[Exception]]] = [
    ("signals side", "signals", {"side": "HOLD"}, psycopg.errors.CheckViolation),
    ("signals status", "signals", {"status": "MAYBE"}, psycopg.errors.CheckViolation),
    ("signals entry_type", "signals", {"entry_type": "STOP"}, psycopg.errors.CheckViolation),
    ("rejected without reason", "signals", {"status": "REJECTED"}, psycopg.errors.CheckViolation),
    (
        "reason while approved",
        "signals",
        {"status": "APPROVED", "rejection_reason": "x"},
        psycopg.errors.CheckViolation,
    ),
    ("negative sl price", "signals", {"proposed_sl_price": "-1"}, psycopg.errors.CheckViolation),
    ("missing tp price", "signals", {"proposed_tp_price": None}, psycopg.errors.NotNullViolation),
    (
        "pair too long",
        "signals",
        {"trading_pair": "X" * 17},
        psycopg.errors.StringDataRightTruncation,
    ),
    ("orders side", "orders", {"side": "LONG"}, psycopg.errors.CheckViolation),
    ("orders status", "orders", {"status": "DONE"}, psycopg.errors.CheckViolation),
    ("orders type", "orders", {"order_type": "FOK_MAGIC"}, psycopg.errors.CheckViolation),
    ("zero quantity", "orders", {"quantity_ordered": "0"}, psycopg.errors.CheckViolation),
    ("unknown signal", "orders", {"signal_id": uuid.uuid4()}, psycopg.errors.ForeignKeyViolation),
    ("fills side", "fills", {"side": "HOLD"}, psycopg.errors.CheckViolation),
    ("fills liquidity", "fills", {"liquidity_type": "BOTH"}, psycopg.errors.CheckViolation),
    ("negative commission", "fills", {"commission": "-0.1"}, psycopg.errors.CheckViolation),
    ("unknown order", "fills", {"order_pk": 10**9}, psycopg.errors.ForeignKeyViolation),
    ("trades side", "trades", {"side": "UP"}, psycopg.errors.CheckViolation),
    ("trades exit reason", "trades", {"exit_reason": "BORED"}, psycopg.errors.CheckViolation),
    (
        "exit before entry",
        "trades",
        {"exit_timestamp": "2025-01-01T00:00:00Z"},
        psycopg.errors.CheckViolation,
    ),
    (
        "trades unknown signal",
        "trades",
        {"signal_id": uuid.uuid4()},
        psycopg.errors.ForeignKeyViolation,
    ),
    (
        "trades unknown entry order",
        "trades",
        {"entry_order_pk": 10**9},
        psycopg.errors.ForeignKeyViolation,
    ),
]


@pytest.mark.parametrize(
    ("table", "override", "error"),
    [r[1:] for r in REJECTED_ROWS],
    ids=[r[0] for r in REJECTED_ROWS],
)
def test_constraint_rejects(
    conn: Any, table: str, override: dict[str, Any], error: type[Exception]
) -> None:
    signal_id = _insert(conn, "signals", _signal())
    order_pk = _insert(conn, "orders", _order(signal_id))
    builders: dict[str, Callable[..., dict[str, Any]]] = {
        "signals": _signal,
        "orders": lambda **o: _order(**{"signal_id": signal_id, **o}),
        "fills": lambda **o: _fill(**{"order_pk": order_pk, **o}),
        "trades": lambda **o: _trade(**{"signal_id": signal_id, **o}),
    }
    base = builders[table]
    _insert(conn, table, base())  # the same row without the fault is accepted
    with pytest.raises(error):
        _insert(conn, table, base(**override))


def test_natural_keys_are_unique(conn: Any) -> None:
    signal_id = _insert(conn, "signals", _signal())
    order = _order(signal_id, exchange_order_id="OABC-1")
    order_pk = _insert(conn, "orders", order)
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(conn, "orders", _order(signal_id, client_order_id=order["client_order_id"]))
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(conn, "orders", _order(signal_id, exchange_order_id="OABC-1"))
    fill = _fill(order_pk)
    _insert(conn, "fills", fill)
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(conn, "fills", _fill(order_pk, fill_id=fill["fill_id"]))
    snap = {
        "snapshot_timestamp": "2026-01-01T00:00:00Z",
        "total_equity": "1",
        "available_balance": "1",
        "total_exposure_pct": 0,
        "daily_drawdown_pct": 0,
        "weekly_drawdown_pct": 0,
        "total_drawdown_pct": 0,
        "positions": "{}",
    }
    _insert(conn, "portfolio_snapshots", snap)
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(conn, "portfolio_snapshots", snap)


def test_one_active_configuration(conn: Any) -> None:
    _insert(conn, "configurations", {"config_hash": "a" * 64, "config_content": "{}"})
    _insert(
        conn,
        "configurations",
        {"config_hash": "b" * 64, "config_content": "{}", "is_active": False},
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(conn, "configurations", {"config_hash": "c" * 64, "config_content": "{}"})
    with pytest.raises(psycopg.errors.CheckViolation):
        _insert(
            conn,
            "configurations",
            {"config_hash": "not-a-sha256", "config_content": "{}", "is_active": False},
        )


def test_numeric_keeps_kraken_values_exact(conn: Any) -> None:
    signal_id = _insert(
        conn,
        "signals",
        _signal(
            proposed_entry_price="0.0000001234",
            proposed_sl_price="99999999999999999999.99",
            proposed_tp_price="45283.50000000",
        ),
    )
    row = conn.execute(
        "SELECT proposed_entry_price::text, proposed_sl_price::text, "
        "proposed_tp_price::text FROM signals WHERE signal_id = %s",
        (signal_id,),
    ).fetchone()
    assert row == (
        "0.000000123400000000",
        "99999999999999999999.990000000000000000",
        "45283.500000000000000000",
    )
