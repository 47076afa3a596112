"""Retention on real servers: InfluxDB 1.x policies and continuous queries, raw L2 routed to
its own policy, and system_logs deleted in batches."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from galfriday_recorder import Query, Recorder, RecorderConfig
from galfriday_recorder.errors import ConfigError
from galfriday_recorder.influxql import InfluxQL
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.lab.synth import SyntheticKraken
from galfriday_recorder.retention import (
    delete_old_logs,
    influx_apply,
    influx_status,
    logs_status,
    split_l2,
)

L2 = st.binary(max_size=40).map(lambda b: b"market_data_l2,p=" + b.replace(b"\n", b"") + b"\n")
BAR = st.binary(max_size=40).map(lambda b: b"market_data_ohlcv,p=" + b.replace(b"\n", b"") + b"\n")


@given(st.lists(st.one_of(L2, BAR), max_size=60))
def test_split_l2_keeps_every_line_in_order(lines: list[bytes]) -> None:
    l2, bars = split_l2(b"".join(lines))
    assert l2 == b"".join(line for line in lines if line.startswith(b"market_data_l2,"))
    assert bars == b"".join(line for line in lines if line.startswith(b"market_data_ohlcv,"))


@pytest.mark.parametrize("bad", ["72h; DROP DATABASE x", "72", "0h", "inf", "3 d"])
def test_durations_are_checked_before_they_reach_influxql(bad: str) -> None:
    with pytest.raises(ConfigError, match="retention_l2_raw must be an InfluxQL duration"):
        RecorderConfig(retention_l2_raw=bad)


def _write(influx: InfluxService, db: str, rp: str, lines: str) -> None:
    req = urllib.request.Request(
        f"{influx.url()}/write?db={db}&rp={rp}&precision=ns", data=lines.encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def test_apply_creates_policies_and_queries_and_backfills_exact_means(
    influx_service: InfluxService, influx_db: str
) -> None:
    cfg = RecorderConfig(
        influx_url=influx_service.url(),
        influx_database=influx_db,
        influx_l2_rp="l2_raw",
        retention_l2_raw="3d",
        imbalance_levels=(5,),
    )
    reader = InfluxQL(cfg)
    try:
        influx_apply(reader)
        first = influx_status(reader)
        influx_apply(reader)  # again: policies altered, queries replaced, nothing doubled
        status = influx_status(reader)
        assert status == first
        assert status.policies["l2_raw"] == "72h0m0s"
        assert status.policies["l2_aggregates"] == "0s"  # INF
        assert sorted(status.continuous_queries) == [
            "cq_market_data_l2_1m",
            "cq_market_data_l2_1s",
        ]
        assert (
            "mean(imbalance_5) AS imbalance_5" in status.continuous_queries["cq_market_data_l2_1s"]
        )
        t0 = (int(datetime.now(timezone.utc).timestamp()) // 60 - 5) * 60 * 1_000_000_000
        tags = "market_data_l2,exchange=kraken,trading_pair=XRP/USD"
        _write(
            influx_service,
            influx_db,
            "l2_raw",
            f"{tags} mid_price=1,spread=0.5,wap=1,imbalance_5=0.25 {t0 + 100_000_000}\n"
            f"{tags} mid_price=2,spread=0.25,wap=2,imbalance_5=-0.75 {t0 + 500_000_000}\n"
            f"{tags} mid_price=4,spread=1,wap=3,imbalance_5=1 {t0 + 1_200_000_000}\n",
        )
        influx_apply(reader, backfill=True)
        per_second = reader.rows(
            'SELECT mid_price, spread, wap, imbalance_5 FROM "l2_aggregates"."market_data_l2_1s"'
            " WHERE trading_pair = 'XRP/USD'"
        )
        per_minute = reader.rows(
            'SELECT mid_price, spread FROM "l2_aggregates"."market_data_l2_1m" GROUP BY *'
        )
    finally:
        reader.close()
    columns = ("time", "mid_price", "spread", "wap", "imbalance_5")
    assert [tuple(r[c] for c in columns) for r in per_second] == [
        (t0, 1.5, 0.375, 1.5, -0.25),
        (t0 + 1_000_000_000, 4, 1, 3, 1),
    ]
    ((minute,),) = [
        [(r["time"], r["mid_price"], r["spread"], r["trading_pair"]) for r in per_minute]
    ]
    assert minute[0] == t0
    assert float(minute[1]) == pytest.approx(7 / 3, rel=1e-15)
    assert float(minute[2]) == pytest.approx(1.75 / 3, rel=1e-15)
    assert minute[3] == "XRP/USD"  # tags kept: GROUP BY *


def test_recorder_routes_raw_l2_to_its_policy(
    recorder_config: Callable[..., RecorderConfig], influx_db: str
) -> None:
    # The simulated session is dated 2026-01-01: a 72 h policy would refuse it (HTTP 400).
    cfg = recorder_config(influx_l2_rp="l2_raw", retention_l2_raw="INF", ohlcv_intervals=("1m",))
    reader = InfluxQL(cfg)
    try:
        influx_apply(reader)
        with Recorder(cfg) as rec:
            for ts, frame in SyntheticKraken(["XRP/USD"], seed=3).session(3_000):
                rec.on_market_frame(frame, ts)
            assert rec.flush(30)
            stats = rec.stats()
        with Query(cfg) as query:  # reads raw L2 from its policy
            book = query.latest_book("XRP/USD", lookback_s=10**9)
        counts = {
            (rp, m): reader.rows(f'SELECT count(*) FROM "{rp}"."{m}"')
            for rp in ("autogen", "l2_raw")
            for m in ("market_data_l2", "market_data_ohlcv")
        }
    finally:
        reader.close()
    assert counts[("autogen", "market_data_l2")] == []
    assert counts[("l2_raw", "market_data_ohlcv")] == []
    raw = counts[("l2_raw", "market_data_l2")][0]["count_mid_price"]
    assert raw == stats["series_l2_lines_written"] > 1000
    assert counts[("autogen", "market_data_ohlcv")][0]["count_close"] >= 1
    assert book is not None
    assert book.mid_price is not None


def test_old_logs_go_in_batches_and_new_ones_stay(pg_dsn: str) -> None:
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    with psycopg.connect(pg_dsn) as conn:
        for i in range(15):
            age = timedelta(days=40 + i) if i < 10 else timedelta(days=i - 10)
            conn.execute(
                "INSERT INTO system_logs (log_id, log_timestamp, source_module, log_level, message)"
                " VALUES (%s, %s, 'bot', 'INFO', %s)",
                (uuid.uuid4(), now - age, f"line {i}"),
            )
    assert logs_status(pg_dsn, 30, now=now)["older_than_max_age"] == 10
    assert delete_old_logs(pg_dsn, 30, now=now, batch=3) == 10
    status = logs_status(pg_dsn, 30, now=now)
    assert (status["system_logs"], status["older_than_max_age"]) == (5, 0)
    assert status["oldest"] == now - timedelta(days=4)
    with psycopg.connect(pg_dsn) as conn:
        kept = [r[0] for r in conn.execute("SELECT message FROM system_logs ORDER BY 1")]
    assert kept == [f"line {i}" for i in range(10, 15)]


def test_cli_retention_apply_and_status(
    influx_service: InfluxService, influx_db: str, pg_dsn: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from galfriday_recorder.cli import main

    where = ["--home", str(tmp_path), "--pg-dsn", pg_dsn, "--influx-url", influx_service.url()]
    assert main(["retention", "apply", *where, "--database", influx_db]) == 0
    out = capsys.readouterr().out
    assert "influxdb: retention policy 'l2_raw' keeps 72h0m0s" in out
    assert "influxdb: continuous query 'cq_market_data_l2_1m'" in out
    assert "postgresql: deleted 0 system_logs rows" in out
    assert main(["retention", "status", *where, "--database", influx_db]) == 0
    assert "GALFRIDAY_INFLUX_L2_RP=l2_raw" in capsys.readouterr().out

    monkeypatch.setenv("GALFRIDAY_INFLUX_L2_RP", "l2_raw")
    assert main(["spool", "status", *where, "--database", influx_db]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/data/{influx_db}/spool\n" in out
    assert f"raw L2 (influx_l2_rp):\ndirectory        {tmp_path}/data/{influx_db}/l2/spool" in out
    assert main(["doctor", *where, "--database", influx_db]) == 0
    assert (
        f"[ok  ] spool: {tmp_path}/data/{influx_db}/l2/spool: 0 file(s)" in capsys.readouterr().out
    )
