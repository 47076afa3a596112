"""Promise 3 under real faults: InfluxDB stopped mid-stream, a process killed with data spooled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lpkit import numbered

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import InfluxService, free_port
from galfriday_recorder.series import SeriesWriter
from galfriday_recorder.spool import spool_status

pytestmark = pytest.mark.faults


def _count(influx: InfluxService, db: str) -> int:
    answer = influx.query("SELECT count(f) FROM probe", db=db)
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_influxdb_outage_while_writing_100k_points_loses_nothing(
    influx_service: InfluxService,
    influx_db: str,
    tmp_path: Path,
) -> None:
    url = influx_service.url()
    total = 100_000
    config = RecorderConfig(
        influx_url=influx_service.url(),
        influx_database=influx_db,
        data_dir=tmp_path,
        batch_interval_s=0.1,
        influx_timeout_s=2.0,
    )
    writer = SeriesWriter(config)
    writer.start()
    worst = [0.0]

    def produce() -> None:
        for start in range(0, total, 100):
            data = numbered(100, start)
            began = time.perf_counter()
            writer.write(data)
            worst[0] = max(worst[0], time.perf_counter() - began)
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.8)
        influx_service.stop()
        time.sleep(4.0)  # longer than the fresh-retry budget: batches must go to the spool
        assert writer.stats()["influx_up"] == 0
    finally:
        influx_service.start()
        producer.join()
    assert influx_service.url() == url
    assert writer.drain_spool(timeout=60)
    assert writer.close(timeout=10)

    stats = writer.stats()
    assert _count(influx_service, influx_db) == total
    assert stats["lines_spooled"] > 0
    assert stats["lines_dropped"] == stats["lines_rejected"] == 0
    assert stats["spool_files"] == 0
    assert spool_status(config)["files"] == 0
    assert worst[0] < 0.05


_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from lpkit import numbered
from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.series import SeriesWriter

config = RecorderConfig(influx_url=sys.argv[1], influx_database=sys.argv[2],
                        data_dir=Path(sys.argv[3]), batch_max_lines=1000)
writer = SeriesWriter(config)
writer.start()
writer.write(numbered(20000), market=True)
writer.flush(timeout=30)
print(writer.stats()["lines_spooled"], flush=True)
time.sleep(120)
"""


def test_points_spooled_by_a_killed_process_arrive_after_restart(
    influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            dead_url,
            influx_db,
            str(tmp_path),
            str(Path(__file__).parent),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "20000"
        assert spool_status(RecorderConfig(data_dir=tmp_path))["in_use"] is True
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    config = RecorderConfig(
        influx_url=influx_service.url(), influx_database=influx_db, data_dir=tmp_path
    )
    before = spool_status(config)
    assert (before["lines"], before["in_use"]) == (20000, False)
    assert _count(influx_service, influx_db) == 0
    writer = SeriesWriter(config)
    writer.start()
    assert writer.drain_spool(timeout=30)
    assert writer.close(timeout=10)
    assert _count(influx_service, influx_db) == 20000
    assert spool_status(config)["files"] == 0
