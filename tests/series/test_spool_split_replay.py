"""A batch InfluxDB refuses whole is split; a replay stopped part way resends nothing.

The spool file holds good lines and three InfluxDB 1.6 refuses (a type conflict, which
makes it refuse the whole batch, a parse error, a field named ``time``). Its replay goes
through a relay to the real ``influxd`` that forwards requests until two parts are
stored, then stops the replay one of three ways: the server "goes away" (503), the
writer is closed with a request out, or the process is killed with a request out. A
second writer replays the rest. A fresh batch split and then closed part way is
spooled with only its unsettled lines, the same way. Every line must be settled
(stored, or refused alone) exactly once across both, and the counters must equal what
InfluxDB holds.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lpkit import FakeInflux, Reply, post_lines

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import InfluxService, free_port
from galfriday_recorder.series import SeriesWriter

pytestmark = pytest.mark.faults

T0 = 1_700_000_000_000_000_000
BAD = [b"conflict f=2i %d", b"m f= %d", b"m time=1 %d"]


def _batch() -> tuple[bytes, list[bytes]]:
    lines = [b"conflict f=1.5 %d" % T0]
    bad: list[bytes] = []
    for i in range(90):
        lines.append(b"good,n=%d f=%d.5 %d" % (i % 5, i, T0 + i))
        if i % 30 == 20:
            bad.append(BAD[i // 30] % (T0 + i))
            lines.append(bad[-1])
    return b"\n".join(lines) + b"\n", bad


class Relay:
    """Forwards each request to the real server until ``stored_before_stop`` parts are
    stored; then answers as ``stop`` says (503, or a hang) until ``resume()``."""

    def __init__(self, influx: InfluxService, db: str, stop: Reply) -> None:
        self.influx, self.db, self.stop = influx, db, stop
        self.stored_parts = 0
        self.stopping = True
        self.stopped = threading.Event()
        self.settled: list[bytes] = []  # lines stored, or refused in a request of their own
        self.fake = FakeInflux(self._answer)

    def resume(self) -> None:
        self.stopping = False

    def _answer(self, n: int, lines: list[bytes]) -> Reply:
        if self.stopping and self.stored_parts >= 2:
            self.stopped.set()
            return self.stop
        status, body = post_lines(self.influx.url(), self.db, b"\n".join(lines) + b"\n")
        if 200 <= status < 300:
            self.stored_parts += 1
        if 200 <= status < 300 or (status == 400 and len(lines) == 1):
            self.settled.extend(lines)
        return Reply(status, body=body.encode())


def _count(influx: InfluxService, db: str) -> int:
    answer = influx.query("SELECT * FROM /.*/ GROUP BY *", db=db)
    return sum(len(series["values"]) for series in answer["results"][0].get("series", []))


def _spooled(data: bytes, data_dir: Path) -> None:
    """Spool ``data`` as one file, through a writer whose server is not there."""
    writer = SeriesWriter(
        RecorderConfig(
            influx_url=f"http://127.0.0.1:{free_port()}",
            influx_database="nowhere",
            data_dir=data_dir,
            influx_timeout_s=0.5,
        )
    )
    writer.start()
    writer.write(data)
    writer.close(timeout=10)
    assert writer.stats()["spool_files"] == 1


_CHILD = """
import sys
from pathlib import Path
from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.series import SeriesWriter
writer = SeriesWriter(RecorderConfig(influx_url=sys.argv[1], influx_database=sys.argv[2],
                                     data_dir=Path(sys.argv[3])))
writer.start()
writer.drain_spool(timeout=120)
"""


@pytest.mark.parametrize("how", ["server-gone", "close", "kill", "fresh-close"])
def test_a_replay_stopped_mid_split_resends_and_recounts_nothing(
    influx_service: InfluxService, influx_db: str, tmp_path: Path, how: str
) -> None:
    data, bad = _batch()
    if how != "fresh-close":  # that one is split as a fresh batch, then spooled by close()
        _spooled(data, tmp_path)
    relay = Relay(
        influx_service, influx_db, Reply(503) if how == "server-gone" else Reply(hang=True)
    )
    written: int | float = 0
    rejected: int | float = 0
    with relay.fake:
        config = RecorderConfig(
            influx_url=relay.fake.url(), influx_database=influx_db, data_dir=tmp_path
        )
        if how == "kill":
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, config.influx_url, influx_db, str(tmp_path)]
            )
            try:
                assert relay.stopped.wait(60)
            finally:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
        else:
            first = SeriesWriter(config)
            first.start()
            if how == "fresh-close":
                first.write(data)
            assert relay.stopped.wait(60)
            if how == "server-gone":
                assert not first.drain_spool(timeout=1)
                relay.resume()
                assert first.drain_spool(timeout=60)
            assert first.close(timeout=1) is (how == "server-gone")
            stats = first.stats()
            written, rejected = stats["lines_written"], stats["lines_rejected"]
        spooled: list[Path | None] = [*sorted(tmp_path.glob("spool/*.lp.gz"))]
        [left] = spooled or [None]
        if left is not None:  # what the file still holds is exactly what is not settled
            assert oct(left.stat().st_mode & 0o777) == "0o600"
            rest = gzip.decompress(left.read_bytes()).splitlines()
            assert rest == data.splitlines()[len(relay.settled) :]
            assert left.name.endswith(f"-{len(rest)}.lp.gz")
        relay.resume()
        second = SeriesWriter(config)
        second.start()
        assert second.drain_spool(timeout=60)
        assert second.close(timeout=10)
    stats = second.stats()
    written += stats["lines_written"]
    rejected += stats["lines_rejected"]
    assert sorted(relay.settled) == sorted(data.splitlines())  # each line once, none lost
    stored = _count(influx_service, influx_db)
    assert stored == len(data.splitlines()) - len(bad)
    if how == "kill":  # the killed process's counters died with it: the second's alone
        assert written + rejected == len(rest)
    else:
        assert (written, rejected) == (stored, len(bad))
    assert not list(tmp_path.glob("spool/*.lp.gz"))
