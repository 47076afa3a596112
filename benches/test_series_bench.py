"""Series writer throughput end to end, beside influxdb-client's batching WriteApi, same run.

Each round pushes ``POINTS`` market_data_l2 points (tags exchange/trading_pair,
ten float fields and a boolean) through HTTP into a real server and waits until
the server has acknowledged them all. The recorder gets the line-protocol bytes
pre-built (the Rust core encodes them before the hand-off) in chunks of
``CHUNK`` lines, the size of a typical drain, through ``write_encoded`` as the
recorder hands them over (``test_bench_hand_over`` prices ``write``'s scan of raw
text beside it); influxdb-client gets pre-built
``Point`` objects and serialises them itself, with its default ``WriteOptions``.

InfluxDB 1.6 has no ``/api/v2/write``, so the like-for-like comparison with
influxdb-client runs on VictoriaMetrics (both through ``/api/v2/write``); the
recorder's v1 ``/write`` into InfluxDB 1.6 is measured beside it. Reported per
benchmark in ``extra_info`` and printed: points/s, the CPU the recorder's own
threads spend per point (psutil per-thread times), the whole process's CPU
per point, and the ratios to influxdb-client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import InfluxService, VictoriaMetricsService
from galfriday_recorder.series import SeriesWriter

POINTS = 100_000
CHUNK = 100
ROUNDS = 3
T0 = 1_732_400_000_000_000_000
PAIRS = ("XRP/USD", "DOGE/USD", "ADA/USD", "SOL/USD")
RESULTS: dict[str, dict[str, float]] = {}

pytestmark = pytest.mark.benchmark(group="series writer: 100k points end to end")


def _fields(i: int) -> dict[str, float | bool]:
    mid = 0.5 + (i % 1000) * 1e-5
    return {
        "bid_price_level_0": mid - 0.0001,
        "bid_volume_level_0": 1500.0 + i % 97,
        "ask_price_level_0": mid + 0.0001,
        "ask_volume_level_0": 980.5 + i % 89,
        "bid_price_level_1": mid - 0.0002,
        "ask_price_level_1": mid + 0.0002,
        "spread": 0.0002,
        "mid_price": mid,
        "wap": mid + 1e-6,
        "imbalance_5": 0.125,
        "is_snapshot": False,
    }


def _line(i: int, ts: int) -> bytes:
    fields = ",".join(f"{k}={'false' if v is False else repr(v)}" for k, v in _fields(i).items())
    pair = PAIRS[i % len(PAIRS)]
    return f"market_data_l2,exchange=kraken,trading_pair={pair} {fields} {ts}\n".encode()


def _chunks(round_no: int) -> list[bytes]:
    base = T0 + round_no * 10 * POINTS
    return [
        b"".join(_line(i, base + i) for i in range(start, start + CHUNK))
        for start in range(0, POINTS, CHUNK)
    ]


def _writer_threads_cpu() -> float:
    """CPU seconds of the series writer's own threads (loop, HTTP and disk workers)."""
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith("galfriday-series")}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def _run_recorder(config: RecorderConfig) -> Callable[[list[bytes]], dict[str, float]]:
    def one_round(chunks: list[bytes]) -> dict[str, float]:
        writer = SeriesWriter(config)
        writer.start()
        cpu0, proc0, t0 = _writer_threads_cpu(), time.process_time(), time.perf_counter()
        for chunk in chunks:
            writer.write_encoded(chunk, market=True)  # as the recorder hands the core's lines
        assert writer.flush(timeout=120)
        elapsed = time.perf_counter() - t0
        own_cpu, proc_cpu = _writer_threads_cpu() - cpu0, time.process_time() - proc0
        stats = writer.stats()
        writer.close(timeout=10)
        assert stats["lines_written"] == POINTS
        assert stats["lines_spooled"] == stats["lines_rejected"] == 0
        return {"elapsed": elapsed, "own_cpu": own_cpu, "proc_cpu": proc_cpu}

    return one_round


def _bench(
    benchmark: Any,
    name: str,
    prepare: Callable[[int], Any],
    one_round: Callable[[Any], dict[str, float]],
) -> None:
    """Run ``one_round`` on fresh input from ``prepare`` (untimed) ``ROUNDS`` times."""
    samples: list[dict[str, float]] = []
    rounds = iter(range(ROUNDS))
    benchmark.pedantic(
        lambda data: samples.append(one_round(data)),
        setup=lambda: ((prepare(next(rounds)),), {}),
        rounds=ROUNDS,
        iterations=1,
    )
    best = min(samples, key=lambda s: s["elapsed"])
    result = {
        "points_per_s": POINTS / best["elapsed"],
        "process_cpu_us_per_point": best["proc_cpu"] / POINTS * 1e6,
    }
    if "own_cpu" in best:
        result["writer_threads_cpu_us_per_point"] = best["own_cpu"] / POINTS * 1e6
    RESULTS[name] = result
    benchmark.extra_info.update({k: round(v, 3) for k, v in result.items()})


def test_bench_recorder_v1_influxdb(
    benchmark: Any, influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> None:
    config = RecorderConfig(
        influx_url=influx_service.url(), influx_database=influx_db, data_dir=tmp_path
    )
    _bench(benchmark, "recorder v1 -> InfluxDB 1.6", _chunks, _run_recorder(config))


def test_bench_recorder_v2_victoria(
    benchmark: Any, victoria_service: VictoriaMetricsService, tmp_path: Path
) -> None:
    config = RecorderConfig(
        influx_url=victoria_service.url(),
        influx_api="v2",
        influx_org="bench",
        influx_bucket="bench",
        data_dir=tmp_path,
    )
    _bench(benchmark, "recorder v2 -> VictoriaMetrics", _chunks, _run_recorder(config))


def test_bench_baseline_influxdb_client_batching_victoria(
    benchmark: Any,
    victoria_service: VictoriaMetricsService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write.point import Point
    from influxdb_client.client.write_api import WriteOptions
    from influxdb_client.domain.write_precision import WritePrecision

    def prepare(round_no: int) -> list[Point]:
        base = T0 + round_no * 10 * POINTS
        points = []
        for i in range(POINTS):
            # influxdb-client ships py.typed but leaves Point's methods unannotated
            point = Point("market_data_l2").tag("exchange", "kraken")  # type: ignore[no-untyped-call]
            point = point.tag("trading_pair", PAIRS[i % len(PAIRS)])
            for key, value in _fields(i).items():
                point = point.field(key, value)
            points.append(point.time(base + i, WritePrecision.NS))
        return points

    def one_round(points: list[Point]) -> dict[str, float]:
        errors: list[object] = []
        with InfluxDBClient(url=victoria_service.url(), token="bench", org="bench") as client:
            proc0, t0 = time.process_time(), time.perf_counter()
            write_api = client.write_api(
                write_options=WriteOptions(),
                error_callback=lambda conf, data, exc: errors.append(exc),
            )
            for point in points:
                write_api.write("bench", "bench", point)
            write_api.close()  # flushes every pending batch and waits for it
            elapsed = time.perf_counter() - t0
            proc_cpu = time.process_time() - proc0
        assert not errors
        return {"elapsed": elapsed, "proc_cpu": proc_cpu}

    _bench(benchmark, "influxdb-client WriteApi -> VictoriaMetrics", prepare, one_round)
    baseline = RESULTS["influxdb-client WriteApi -> VictoriaMetrics"]["points_per_s"]
    with capsys.disabled():
        print()
        for name, result in RESULTS.items():
            shown = ", ".join(f"{k}={v:,.2f}" for k, v in result.items())
            print(
                f"  {name}: {shown}, ratio to influxdb-client="
                f"{result['points_per_s'] / baseline:.2f}x"
            )


@pytest.mark.benchmark(group="series writer: handing over 100k raw points")
@pytest.mark.parametrize("method", ["write", "write_encoded"])
def test_bench_hand_over(benchmark: Any, method: str, tmp_path: Path) -> None:
    """The call alone (no server): ``write`` scans raw text for lines InfluxDB would take
    and not store (blank, comment, no timestamp); ``write_encoded`` trusts the encoder."""
    chunks = _chunks(0)
    config = RecorderConfig(influx_url="http://127.0.0.1:9", data_dir=tmp_path)

    def hand_over(writer: SeriesWriter) -> None:
        for chunk in chunks:
            getattr(writer, method)(chunk, market=True)
        assert writer.stats()["pending_lines"] == POINTS

    benchmark.pedantic(
        hand_over, setup=lambda: ((SeriesWriter(config),), {}), rounds=5, iterations=1
    )
    benchmark.extra_info["us_per_point"] = round(benchmark.stats.stats.median / POINTS * 1e6, 3)
