"""Promise 1 and 3 against hostile InfluxDB endpoints on loopback, through the full Recorder.

Each server is a stdlib socket loop in a thread on 127.0.0.1 that reads the request
and then misbehaves: never answers, answers too slowly, hangs up halfway through
the status line, or drips the answer one byte at a time (each read within the
timeout, the whole far beyond it). It stops itself at a deadline. The recorder,
with a real PostgreSQL, must time out, retry, spool, and keep the trading loop
free; a second recorder on the same data directory, pointed at the real InfluxDB,
then replays the spool: every market point arrives.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from galfriday_recorder import PortfolioSnapshot, Recorder, RecorderConfig
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.lab.synth import SyntheticKraken
from galfriday_recorder.spool import spool_status

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
TIMEOUT_S = 0.5  # the recorder's influx_timeout_s
BOT_SECONDS = 4.0  # > FRESH_RETRY_BUDGET_S (3 s): batches must reach the spool
CALL_BOUND_S = 0.05  # generous: a frame takes microseconds, a ledger call well under 1 ms


@dataclass
class HostileServer:
    """Accepts connections on loopback and misbehaves in one of four ways."""

    behaviour: str
    lifetime_s: float = 60.0
    requests: int = 0
    connections: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._deadline = time.monotonic() + self.lifetime_s
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _accept(self) -> None:
        while self._running():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)
        self._sock.close()

    def _read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data and self._running():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length and self._running():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return False
            body += chunk
        self.requests += 1
        return True

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        answer = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        try:
            while self._running() and self._read_request(conn):
                if self.behaviour == "never-answers":
                    self._stop.wait(max(self._deadline - time.monotonic(), 0))
                elif self.behaviour == "answers-slowly":
                    self._stop.wait(TIMEOUT_S * 6)
                    conn.sendall(answer)
                elif self.behaviour == "closes-mid-response":
                    # Headers promise a body; the connection ends ten bytes into it.
                    conn.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 64\r\n"
                        b'Content-Type: application/json\r\n\r\n{"error":'
                    )
                    break
                elif self.behaviour == "drips-bytes":
                    for i in range(len(answer)):
                        if self._stop.wait(TIMEOUT_S * 0.6):
                            break
                        conn.sendall(answer[i : i + 1])
        except OSError as exc:  # the client gave up on us: expected
            self.errors.append(type(exc).__name__)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)


def _bot(rec: Recorder, seconds: float) -> tuple[list[float], int]:
    """The trading loop: frames, features, snapshots; every call's duration."""
    frames = SyntheticKraken(["XRP/USD", "DOGE/USD"], seed=4).session(1_000_000)
    durations: list[float] = []
    snapshots = 0
    end = time.monotonic() + seconds
    for i, (received_at_ns, frame) in enumerate(frames):
        if time.monotonic() > end:
            break
        t = time.perf_counter()
        rec.on_market_frame(frame, received_at_ns)
        durations.append(time.perf_counter() - t)
        if i % 50 == 0:
            t = time.perf_counter()
            rec.record_features("XRP/USD", "v1", {"rsi_14": 50.0 + i % 7}, received_at_ns)
            rec.record_portfolio_snapshot(
                PortfolioSnapshot(
                    total_equity=Decimal(i),
                    available_balance=Decimal(i),
                    total_exposure_pct=0.0,
                    daily_drawdown_pct=0.0,
                    weekly_drawdown_pct=0.0,
                    total_drawdown_pct=0.0,
                    positions={},
                    snapshot_timestamp=T0 + timedelta(milliseconds=i),
                )
            )
            durations.append(time.perf_counter() - t)
            snapshots += 1
        if i % 200 == 0:
            time.sleep(0.001)  # a bot yields to its event loop now and then
    return durations, snapshots


@pytest.mark.parametrize(
    "behaviour",
    [
        "never-answers",
        "answers-slowly",
        "closes-mid-response",
        "drips-bytes",
    ],
)
def test_hostile_influxdb_endpoint_spools_and_never_holds_the_bot(
    behaviour: str, pg_dsn: str, influx_service: InfluxService, influx_db: str, tmp_path: Path
) -> None:
    server = HostileServer(behaviour)
    config = RecorderConfig.load(
        env={},
        pg_dsn=pg_dsn,
        influx_url=server.url,
        influx_database=influx_db,
        data_dir=tmp_path / "data",
        influx_timeout_s=TIMEOUT_S,
        batch_interval_s=0.1,
        metrics_interval_s=3600.0,
        l2_levels=2,
        ohlcv_intervals=(),
    )
    try:
        rec = Recorder(config).start()
        try:
            durations, snapshots = _bot(rec, BOT_SECONDS)
            _poll(lambda: rec.stats()["series_lines_spooled"] > 0, 5, "lines in the spool")
            report = rec.flush(timeout=10)
            stats = rec.stats()
        finally:
            closed = rec.close(timeout=5)
    finally:
        server.stop()
    worst = max(durations)
    print(
        f"\n  {behaviour}: {len(durations)} calls, worst {worst * 1000:.2f} ms, "
        f"{server.connections} connections / {server.requests} requests, "
        f"retries {stats['series_retries']}, spooled {stats['series_lines_spooled']} lines"
    )
    assert worst < CALL_BOUND_S, f"the trading loop waited {worst * 1000:.1f} ms"
    assert report.ledger_committed
    assert not report.series_written
    assert not closed.series_written
    assert closed.ledger_committed
    assert stats["series_influx_up"] == 0
    assert stats["series_lines_written"] == 0
    assert stats["series_retries"] > 0
    assert server.requests >= 2
    assert stats["series_lines_spooled"] > 0
    assert stats["series_lines_dropped"] == stats["series_lines_rejected"] == 0
    on_disk = spool_status(config)
    assert on_disk["files"] > 0
    assert on_disk["in_use"] is False
    assert on_disk["market_lines"] == stats["market_lines"]  # every market line is on disk
    with psycopg.connect(pg_dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM portfolio_snapshots").fetchone()
    assert stored == (snapshots,)  # the ledger never noticed

    # The real server comes into view: a new recorder on the same data dir replays it all.
    with Recorder(config.replace(influx_url=influx_service.url())) as again:
        assert again.series.drain_spool(timeout=60)
    answer = influx_service.query("SELECT count(is_snapshot) FROM market_data_l2", db=influx_db)
    assert answer["results"][0]["series"][0]["values"][0][1] == stats["market_l2_points"]
    assert spool_status(config)["files"] == 0


def _poll(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
