"""How long data is kept: ``galfriday-recorder retention apply|status``.

Raw ``market_data_l2`` is the bulk of what the recorder writes. On InfluxDB 1.x it
goes (with ``influx_l2_rp`` set) to a retention policy of its own that keeps it
``retention_l2_raw`` (72 h); continuous queries keep 1 s and 1 min means of mid,
spread, WAP and imbalance in ``market_data_l2_1s`` and ``market_data_l2_1m`` under
a policy that keeps them ``retention_l2_aggregates`` (INF). Everything else stays
in the database's default policy. In PostgreSQL, ``system_logs`` older than
``retention_system_logs_days`` are deleted in small batches, each its own
transaction, so no lock is held for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from .config import RecorderConfig
from .influxql import InfluxQL, InfluxQueryError, quote_ident

AGGREGATES_RP = "l2_aggregates"
DEFAULT_RAW_RP = "l2_raw"
AGGREGATE_INTERVALS = (("1s", "market_data_l2_1s"), ("1m", "market_data_l2_1m"))
LOG_BATCH = 10_000


def writer_configs(config: RecorderConfig) -> list[RecorderConfig]:
    """One config per series writer: the main one, and raw L2's when it has a policy of its
    own (its own spool under ``data_dir/l2``, so a replay goes back to that policy)."""
    if not config.influx_l2_rp or config.influx_l2_rp == config.influx_rp:
        return [config]
    return [config, config.replace(influx_rp=config.influx_l2_rp, data_dir=config.data_dir / "l2")]


def raw_rp(config: RecorderConfig) -> str:
    return config.influx_l2_rp or DEFAULT_RAW_RP


def aggregate_fields(config: RecorderConfig) -> list[str]:
    return ["mid_price", "spread", "wap", *(f"imbalance_{n}" for n in config.imbalance_levels)]


def aggregate_select(config: RecorderConfig, interval: str, target: str, where: str = "") -> str:
    """The SELECT of one continuous query (with ``where``, run by hand to backfill)."""
    db = quote_ident(config.influx_database)
    means = ", ".join(f"mean({f}) AS {f}" for f in aggregate_fields(config))
    return (
        f"SELECT {means} INTO {db}.{quote_ident(AGGREGATES_RP)}.{quote_ident(target)} "
        f'FROM {db}.{quote_ident(raw_rp(config))}."market_data_l2" '
        f"{where}GROUP BY time({interval}), *"
    )


def influx_statements(config: RecorderConfig, existing_rps: set[str]) -> list[str]:
    """What ``apply`` runs on InfluxDB 1.x, in order; safe to run again."""
    db = quote_ident(config.influx_database)
    statements = []
    for rp, duration in (
        (raw_rp(config), config.retention_l2_raw),
        (AGGREGATES_RP, config.retention_l2_aggregates),
    ):
        verb = "ALTER" if rp in existing_rps else "CREATE"
        statements.append(
            f"{verb} RETENTION POLICY {quote_ident(rp)} ON {db} DURATION {duration} REPLICATION 1"
        )
    for interval, target in AGGREGATE_INTERVALS:
        name = quote_ident(f"cq_{target}")
        statements.append(f"DROP CONTINUOUS QUERY {name} ON {db}")
        statements.append(
            f"CREATE CONTINUOUS QUERY {name} ON {db} BEGIN "
            f"{aggregate_select(config, interval, target)} END"
        )
    return statements


@dataclass(frozen=True)
class InfluxRetention:
    policies: dict[str, str]  # name -> duration
    continuous_queries: dict[str, str]  # name -> query


def influx_status(reader: InfluxQL) -> InfluxRetention:
    db = reader.config.influx_database
    policies = {
        r["name"]: r["duration"]
        for r in reader.rows(f"SHOW RETENTION POLICIES ON {quote_ident(db)}", db="")
    }
    queries = {
        r["name"]: r["query"]
        for r in _show_cqs(reader)
        if r.get("database", db) == db and r["name"].startswith("cq_market_data_l2_")
    }
    return InfluxRetention(policies, queries)


def _show_cqs(reader: InfluxQL) -> list[dict[str, Any]]:
    """SHOW CONTINUOUS QUERIES answers one series per database, named after it."""
    answer = reader.raw("SHOW CONTINUOUS QUERIES", db="")
    out = []
    for series in (answer.get("results") or [{}])[0].get("series", []):
        for values in series.get("values", []):
            out.append(
                {
                    "database": series.get("name"),
                    **dict(zip(series["columns"], values, strict=True)),
                }
            )
    return out


def influx_apply(reader: InfluxQL, *, backfill: bool = False) -> list[str]:
    """Create or update the policies and continuous queries; ``backfill`` also aggregates
    the raw data already there (a continuous query covers only what arrives after it)."""
    config = reader.config
    existing = set(influx_status(reader).policies)
    done = []
    for statement in influx_statements(config, existing):
        if statement.startswith("DROP CONTINUOUS QUERY"):
            try:
                reader.raw(statement, db="")
            except InfluxQueryError as exc:  # absent on a first apply
                if "not found" not in str(exc):
                    raise
                continue
        else:
            reader.raw(statement, db="")
        done.append(statement)
    if backfill:
        for interval, target in AGGREGATE_INTERVALS:
            statement = aggregate_select(config, interval, target, "WHERE time > 0 ")
            reader.raw(statement, db=config.influx_database)
            done.append(statement)
    return done


_L2 = b"market_data_l2,"


def split_l2(data: bytes) -> tuple[bytes, bytes]:
    """The core's lines as (``market_data_l2`` lines, the others: its OHLCV bars).

    Bars are a few lines a minute among thousands of book lines, so the common case is
    one search that finds none.
    """
    if b"\nmarket_data_ohlcv," not in data and not data.startswith(b"market_data_ohlcv,"):
        return data, b""
    lines = data.split(b"\n")  # not splitlines(): a tag or string may hold a \r
    tail = lines.pop()  # after the last newline: b"" for whole lines
    l2 = [line for line in lines if line.startswith(_L2)]
    rest = [line for line in lines if not line.startswith(_L2)]
    return _joined(l2), _joined(rest) + tail


def _joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def delete_old_logs(
    dsn: str, max_age_days: float, *, now: datetime | None = None, batch: int = LOG_BATCH
) -> int:
    """Delete ``system_logs`` older than ``max_age_days``, ``batch`` rows per transaction."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=max_age_days)
    total = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            cur = conn.execute(
                "DELETE FROM system_logs WHERE log_pk IN (SELECT log_pk FROM system_logs "
                "WHERE log_timestamp < %s ORDER BY log_timestamp LIMIT %s)",
                (cutoff, batch),
            )
            total += cur.rowcount
            if cur.rowcount < batch:
                return total


def logs_status(dsn: str, max_age_days: float, *, now: datetime | None = None) -> dict[str, Any]:
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=max_age_days)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE log_timestamp < %s), min(log_timestamp) "
            "FROM system_logs",
            (cutoff,),
        ).fetchone()
    assert row is not None
    return {"system_logs": int(row[0]), "older_than_max_age": int(row[1]), "oldest": row[2]}


V2_ADVICE = (
    "InfluxDB 2.x/3.x keeps data per bucket (database): give the L2 bucket a retention "
    "period (`influx bucket update --retention 72h`, 3.x: the database's retention "
    "period) and downsample with a task; see the README's retention section."
)
