"""The series writer against real servers: InfluxDB 1.6 (v1 /write) and VictoriaMetrics (v2)."""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from lpkit import lp, wait_for

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import InfluxService, VictoriaMetricsService
from galfriday_recorder.series import SeriesWriter, spool_replay
from galfriday_recorder.spool import Spool, SpoolLocked, spool_status

T0 = 1_732_400_000_123_456_789

# Three points of every seed measurement, with the seed's tag and field names.
SEED: dict[str, tuple[bool, list[tuple[dict[str, str], dict[str, Any]]]]] = {
    "market_data_l2": (
        True,
        [
            (
                {"exchange": "kraken", "trading_pair": pair},
                {
                    "bid_price_level_0": 0.5123 + i,
                    "bid_volume_level_0": 1500.25,
                    "ask_price_level_0": 0.5125 + i,
                    "ask_volume_level_0": 980.5,
                    "bid_price_level_1": 0.5122 + i,
                    "ask_price_level_1": 0.5126 + i,
                    "is_snapshot": i == 0,
                    "spread": 0.0002,
                    "mid_price": 0.5124 + i,
                    "wap": 0.51238123456789,
                    "imbalance_5": -0.125,
                    "imbalance_10": 0.3,
                },
            )
            for i, pair in enumerate(["XRP/USD", "DOGE/USD", "XRP/USD"])
        ],
    ),
    "market_data_ohlcv": (
        True,
        [
            (
                {"exchange": "kraken", "trading_pair": "XRP/USD", "interval": iv},
                {"open": 0.51, "high": 0.52 + i, "low": 0.505, "close": 0.515, "volume": 12345.678},
            )
            for i, iv in enumerate(["1m", "5m", "1m"])
        ],
    ),
    "features": (
        False,
        [
            (
                {"exchange": "kraken", "trading_pair": "DOGE/USD", "feature_set_id": "default_v1"},
                {
                    "rsi_14": 55.5 + i,
                    "spread_pct": 0.0123,
                    "book_imbalance_5": -0.2,
                    "momentum_5": 1e-7,
                },
            )
            for i in range(3)
        ],
    ),
    "predictions": (
        False,
        [
            (
                {
                    "exchange": "kraken",
                    "trading_pair": "XRP/USD",
                    "model_id": "xgb v1",
                    "prediction_target": "up_5m",
                },
                {"prediction_value": 0.73 + i / 10, "confidence": 0.9},
            )
            for i in range(3)
        ],
    ),
    "portfolio_metrics": (
        False,
        [
            (
                {"account_id": "main"},
                {
                    "total_equity": 100000.5 + i,
                    "available_balance": 50000.25,
                    "unrealized_pnl": -12.75,
                    "realized_pnl_session": 3.5,
                    "total_exposure_pct": 49.9,
                    "daily_drawdown_pct": 0.5,
                    "weekly_drawdown_pct": 1.25,
                    "total_drawdown_pct": 2.0,
                    "position_qty_XRPUSD": 1000.0,
                    "position_value_XRPUSD": 512.3,
                },
            )
            for i in range(3)
        ],
    ),
    "system_metrics": (
        False,
        [
            (
                {"host_id": "vm-1", "module_id": "recorder"},
                {
                    "cpu_usage_pct": 12.5,
                    "memory_usage_mb": 256.0,
                    "event_queue_depth": 7 + i,
                    "api_call_latency_ms": 45.2,
                    "prediction_latency_ms": 3.1,
                    "end_to_end_latency_ms": 80.0,
                    "websocket_connected": True,
                    "api_error_rate": 0.01,
                },
            )
            for i in range(3)
        ],
    ),
}


def test_v1_round_trip_of_all_six_measurements(
    influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> None:
    config = RecorderConfig(
        influx_url=influx_service.url(),
        influx_database=influx_db,
        data_dir=tmp_path,
        batch_interval_s=0.05,
    )
    writer = SeriesWriter(config)
    writer.start()
    for offset, (measurement, (market, points)) in enumerate(SEED.items()):
        for i, (tags, fields) in enumerate(points):
            writer.write(lp(measurement, tags, fields, T0 + offset * 1000 + i), market=market)
    assert writer.close(timeout=20)
    stats = writer.stats()
    assert stats["lines_written"] == 18
    assert stats["lines_spooled"] == stats["lines_rejected"] == stats["lines_dropped"] == 0

    for offset, (measurement, (_, points)) in enumerate(SEED.items()):
        answer = influx_service.query(f'SELECT * FROM "{measurement}"', db=influx_db)
        series = answer["results"][0]["series"][0]
        rows = [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
        expected = [
            {"time": T0 + offset * 1000 + i, **tags, **fields}
            for i, (tags, fields) in enumerate(points)
        ]
        assert rows == expected


def test_a_bad_line_is_reported_and_the_good_ones_stored(
    influx_service: InfluxService,
    influx_db: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = RecorderConfig(
        influx_url=influx_service.url(), influx_database=influx_db, data_dir=tmp_path
    )
    writer = SeriesWriter(config)
    writer.start()
    good = [
        lp("features", {"trading_pair": "XRP/USD"}, {"rsi_14": 40.0 + i}, T0 + i) for i in range(4)
    ]
    with caplog.at_level(logging.WARNING, logger="galfriday_recorder.series"):
        writer.write(
            b"".join(good[:2]) + b"features,trading_pair=XRP/USD rsi_14= 5\n" + b"".join(good[2:])
        )
        assert writer.close(timeout=20)
    stats = writer.stats()
    assert stats["lines_rejected"] == 1
    assert stats["lines_written"] == 4
    assert stats["retries"] == stats["lines_spooled"] == 0
    [record] = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "rsi_14= 5" in record.getMessage()
    answer = influx_service.query('SELECT rsi_14 FROM "features"', db=influx_db)
    assert answer["results"][0]["series"][0]["values"] == [[T0 + i, 40.0 + i] for i in range(4)]


def _stored_points(influx: InfluxService, db: str) -> int:
    """Every point the database holds, counted per series so no field is missed."""
    answer = influx.query("SELECT * FROM /.*/ GROUP BY *", db=db)
    return sum(len(series["values"]) for series in answer["results"][0].get("series", []))


def test_counters_equal_what_influxdb_holds_exactly(
    influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> None:
    """A batch InfluxDB refuses whole or in part is split until each bad line stands alone.

    InfluxDB 1.6 refuses the whole batch for a type conflict inside it, runs the lines
    after an unbalanced quote into one parse error, and leaves a parse error out of a
    partial write's message when a later point is dropped; none of that may cost a good
    line, nor be counted as written.
    """
    config = RecorderConfig(
        influx_url=influx_service.url(), influx_database=influx_db, data_dir=tmp_path
    )
    writer = SeriesWriter(config)
    writer.start()
    bad = [
        b"conflict f=2i %d\n",  # f is float in the same batch: 1.6 answers 400 to all of it
        b"m f= %d\n",  # unparsable
        b'm f="open %d\n',  # an unbalanced quote: InfluxDB reads on into the next lines
        b"m time=1 %d\n",  # a field named time
    ]
    # Stored, though not as meant: 1.x's line splitter reads these escapes otherwise.
    batch = b'conflict f=1.5 %d\nm,t=a\\\\ b,u=" f=1 %d\n' % (T0, T0)
    good = 2
    for i in range(60):
        batch += b"good,n=%d f=%d.5 %d\n" % (i % 7, i, T0 + i)
        good += 1
        if i % 15 == 5:
            batch += bad[i // 15] % (T0 + i)
    writer.write(batch)
    assert writer.close(timeout=60)
    stats = writer.stats()
    stored = _stored_points(influx_service, influx_db)
    assert stats["lines_written"] == stored
    assert stats["lines_rejected"] == len(bad)
    assert stats["lines_written"] + stats["lines_rejected"] == good + len(bad)
    assert stats["lines_spooled"] == stats["lines_dropped"] == 0


def _export(victoria: VictoriaMetricsService, metric: str) -> list[dict[str, Any]]:
    urllib.request.urlopen(f"{victoria.url()}/internal/force_flush").close()
    with urllib.request.urlopen(f"{victoria.url()}/api/v1/export?match[]={metric}") as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line]


def test_v2_writes_reach_victoria_metrics(
    victoria_service: VictoriaMetricsService, tmp_path: Path
) -> None:
    measurement = f"ohlcv_{uuid.uuid4().hex[:8]}"
    config = RecorderConfig(
        influx_url=victoria_service.url(),
        influx_api="v2",
        influx_org="galfriday",
        influx_bucket="market",
        influx_token="not-checked",
        data_dir=tmp_path,
    )
    writer = SeriesWriter(config)
    writer.start()
    ms = 1_732_400_000_000
    for i in range(5):
        writer.write(
            lp(
                measurement,
                {"exchange": "kraken", "trading_pair": "XRP/USD", "interval": "1m"},
                {"open": 0.5 + i, "close": 0.25 * i},
                (ms + 60_000 * i) * 1_000_000,
            ),
            market=True,
        )
    assert writer.close(timeout=20)
    assert writer.stats()["lines_written"] == 5

    rows: list[dict[str, Any]] = []

    def exported() -> bool:
        rows.extend(_export(victoria_service, f"{measurement}_close"))
        return bool(rows)

    assert wait_for(exported, 10)
    [row] = rows
    assert row["metric"] == {
        "__name__": f"{measurement}_close",
        "exchange": "kraken",
        "trading_pair": "XRP/USD",
        "interval": "1m",
    }
    assert row["values"] == [0.25 * i for i in range(5)]
    assert row["timestamps"] == [ms + 60_000 * i for i in range(5)]
    [opens] = _export(victoria_service, f"{measurement}_open")
    assert opens["values"] == [0.5 + i for i in range(5)]


def test_a_missing_database_spools_until_it_is_created(
    influx_service: InfluxService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = f"t_{uuid.uuid4().hex[:12]}"
    config = RecorderConfig(
        influx_url=influx_service.url(),
        influx_database=db,
        data_dir=tmp_path,
        influx_create_database=False,
    )
    writer = SeriesWriter(config)
    writer.start()
    try:
        with caplog.at_level(logging.ERROR, logger="galfriday_recorder.series"):
            writer.write(
                b"".join(
                    lp("predictions", {"model_id": "m"}, {"prediction_value": 0.5}, T0 + i)
                    for i in range(10)
                )
            )
            assert not writer.flush(timeout=5)
        assert writer.stats()["influx_up"] == 0
        assert writer.stats()["lines_spooled"] == 10
        assert "database not found" in caplog.text
        assert f"""--data-urlencode 'q=CREATE DATABASE "{db}"'""" in caplog.text  # what to run
        influx_service.create_database(db)
        assert writer.drain_spool(timeout=30)
        assert writer.close(timeout=10)
        answer = influx_service.query('SELECT count(prediction_value) FROM "predictions"', db=db)
        assert answer["results"][0]["series"][0]["values"][0][1] == 10
    finally:
        influx_service.query(f'DROP DATABASE "{db}"')


def test_spool_replay_by_hand(
    influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> None:
    config = RecorderConfig(
        influx_url=influx_service.url(), influx_database=influx_db, data_dir=tmp_path
    )
    spool = Spool(config.spool_dir, config.spool_max_bytes)
    spool.open()
    for part in range(3):
        lines = b"".join(
            lp("portfolio_metrics", {"account_id": "main"}, {"total_equity": 1.0 * i}, T0 + i)
            for i in range(part * 100, part * 100 + 100)
        )
        assert spool.add(lines, 100, market=False)
    with pytest.raises(SpoolLocked):
        spool_replay(config, timeout=5)
    spool.close()
    assert spool_status(config)["lines"] == 300

    result = spool_replay(config, timeout=30)
    assert result == {
        "drained": True,
        "lines_replayed": 300,
        "lines_rejected": 0,
        "lines_dropped": 0,
        "files_left": 0,
        "bytes_left": 0,
    }
    answer = influx_service.query(
        'SELECT count(total_equity) FROM "portfolio_metrics"', db=influx_db
    )
    assert answer["results"][0]["series"][0]["values"][0][1] == 300
