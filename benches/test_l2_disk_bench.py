"""Bytes on disk per L2 update in InfluxDB 1.x, after compaction: what a day of L2 costs.

Depth-10 ``market_data_l2`` points (every level, the metrics) from the core for a
synthetic 4-pair session go into a private influxd whose shards compact within
seconds; once the WAL is empty and the TSM files stop changing, the shard's size
divided by the points is the figure. The baseline is the same points as line
protocol, uncompressed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galfriday_recorder import MarketRecorder, RecorderConfig
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.lab.synth import SyntheticKraken
from galfriday_recorder.series import SeriesWriter

UPDATES = 100_000
PAIRS = ["XRP/USD", "DOGE/USD", "ETH/USD", "BTC/USD"]


class CompactingInflux(InfluxService):
    data_settings = (
        '  cache-snapshot-write-cold-duration = "1s"\n  compact-full-write-cold-duration = "2s"\n'
    )


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompactingInflux]:
    service = CompactingInflux(tmp_path_factory.mktemp("l2disk") / "influxdb")
    service.start()
    yield service
    service.stop()


def _l2_lines() -> tuple[bytes, int]:
    core = MarketRecorder(depth=10, l2_levels=10, ohlcv_intervals=[])
    chunks = []
    for i, (ts, frame) in enumerate(SyntheticKraken(PAIRS, seed=5).session(UPDATES)):
        core.ingest(frame, ts)
        if i % 10_000 == 0:
            chunks.append(core.drain())  # the core's buffer is bounded
    chunks.append(core.drain())
    assert core.stats()["lines_dropped"] == 0
    data = b"".join(chunks)
    return data, data.count(b"\n")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _settled(influx: CompactingInflux, db: str, timeout: float = 300) -> int:
    """The shard's bytes once the WAL is empty and the TSM files stop changing."""
    data, wal = influx.root / "data" / db, influx.root / "wal" / db
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = _size(data)
        busy = _size(wal) > 0 or any(p.suffix == ".tmp" for p in data.rglob("*"))
        if size != last or busy:
            last, stable_since = size, time.monotonic()
        elif time.monotonic() - stable_since > 8:
            return size
        time.sleep(1)
    raise AssertionError("InfluxDB did not settle")


@pytest.mark.benchmark(group="l2-bytes-on-disk")
def test_l2_bytes_per_update_after_compaction(benchmark: Any, influx: CompactingInflux) -> None:
    data, lines = _l2_lines()
    db = "l2disk"
    influx.create_database(db)
    cfg = RecorderConfig(
        influx_url=influx.url(),
        influx_database=db,
        data_dir=influx.root / "spool",
        buffer_max_bytes=2 * len(data),  # all handed over at once
    )

    def store() -> None:
        writer = SeriesWriter(cfg)
        writer.start()
        writer.write(data, market=True)
        assert writer.close(300)

    benchmark.pedantic(store, rounds=1, iterations=1)
    stored = influx.query('SELECT count(mid_price) FROM "market_data_l2"', db=db)
    # A few lines share a series and a nanosecond (the snapshots): one point each.
    points = stored["results"][0]["series"][0]["values"][0][1]
    assert lines - 100 < points <= lines
    size = _settled(influx, db)
    benchmark.extra_info.update(
        {
            "points": points,
            "bytes_on_disk": size,
            "bytes_per_update": round(size / points, 1),
            "line_protocol_bytes_per_update": round(len(data) / lines, 1),
            "compression_vs_line_protocol": round(len(data) / size, 1),
            "per_day_at_10_updates_s_4_pairs_mb": round(size / points * 10 * 4 * 86400 / 1e6),
        }
    )
    print(f"\n{points:,} L2 points: {size / points:.1f} bytes each on disk, "
          f"{len(data) / lines:.0f} as line protocol")  # fmt: skip
