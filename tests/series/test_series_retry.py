"""Retry, split and spool policy against small local HTTP servers that misbehave on purpose.

Throughout, ``write()`` must stay fast: the bot's loop never waits on the network.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lpkit import FakeInflux, Reply, numbered, wait_for

from galfriday_recorder import series
from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.lab.services import free_port
from galfriday_recorder.runtime import BackgroundLoop
from galfriday_recorder.series import SENDERS, SeriesWriter
from galfriday_recorder.spool import spool_status

MAX_WRITE_CALL_S = 0.05  # generous: a GIL switch interval is 5 ms; the typical call is ~1 µs


def _writer(url: str, tmp_path: Path, **overrides: Any) -> SeriesWriter:
    settings: dict[str, Any] = {
        "batch_max_lines": 100,
        "batch_interval_s": 0.05,
        "influx_timeout_s": 0.5,
        **overrides,
    }
    config = RecorderConfig.load(env={}, influx_url=url, data_dir=tmp_path, **settings)
    writer = SeriesWriter(config)
    writer.start()
    return writer


def _produce(writer: SeriesWriter, total: int, per_call: int = 10, pause: float = 0.0) -> float:
    """Write ``total`` numbered lines; return the slowest ``write()`` call in seconds."""
    worst = 0.0
    for start in range(0, total, per_call):
        data = numbered(per_call, start)
        began = time.perf_counter()
        writer.write(data)
        worst = max(worst, time.perf_counter() - began)
        if pause:
            time.sleep(pause)
    return worst


def test_503_with_retry_after_is_honoured(tmp_path: Path) -> None:
    def script(n: int, lines: list[bytes]) -> Reply:
        return Reply(503, {"Retry-After": "1"}) if n < 2 else Reply(204)

    with FakeInflux(script) as fake:
        writer = _writer(fake.url(), tmp_path, batch_max_lines=1000)
        assert _produce(writer, 50) < MAX_WRITE_CALL_S
        assert writer.close(timeout=15)
    assert sorted(fake.stored) == sorted(numbered(50).splitlines())
    times = [t for t, _, _ in fake.log]
    assert times[1] - times[0] >= 0.9
    assert times[2] - times[1] >= 0.9
    stats = writer.stats()
    assert (stats["retries"], stats["lines_spooled"], stats["lines_written"]) == (2, 0, 50)
    # A 5xx does not prove the lines were not stored (InfluxDB 1.x shutting down answers
    # 500 to writes it kept): both failed requests are in doubt.
    assert stats["lines_in_doubt"] == 100


def test_429_and_a_connection_closed_mid_response_are_retried(tmp_path: Path) -> None:
    def script(n: int, lines: list[bytes]) -> Reply:
        if n < 2:
            return Reply(429)
        return Reply(close_mid_response=True) if n < 4 else Reply(204)

    with FakeInflux(script) as fake:
        writer = _writer(fake.url(), tmp_path, batch_max_lines=1000)
        assert _produce(writer, 20) < MAX_WRITE_CALL_S
        assert writer.close(timeout=15)
    assert sorted(fake.stored) == sorted(numbered(20).splitlines())
    assert [status for _, _, status in fake.log][:2] == [429, 429]
    stats = writer.stats()
    assert stats["retries"] == 4
    assert stats["lines_spooled"] == 0
    assert stats["lines_in_doubt"] == 40  # the two cut answers; a 429 stored nothing


def test_413_splits_the_batch_until_it_fits(tmp_path: Path) -> None:
    def script(n: int, lines: list[bytes]) -> Reply:
        return Reply(413) if len(lines) > 10 else Reply(204)

    with FakeInflux(script) as fake:
        writer = _writer(fake.url(), tmp_path, batch_max_lines=100, batch_interval_s=1.0)
        writer.write(numbered(100))
        assert writer.close(timeout=15)
    assert sorted(fake.stored) == sorted(numbered(100).splitlines())
    assert all(count <= 10 for _, count, status in fake.log if status == 204)
    stats = writer.stats()
    assert stats["lines_written"] == 100
    assert stats["retries"] == stats["lines_rejected"] == 0


def test_a_server_that_never_answers_sends_data_to_the_spool_then_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(series, "MAX_READY_BYTES", 4 * len(numbered(100)))
    mode = {"hang": True}

    def script(n: int, lines: list[bytes]) -> Reply:
        return Reply(hang=True) if mode["hang"] else Reply(204)

    with FakeInflux(script) as fake:
        writer = _writer(fake.url(), tmp_path)
        worst = _produce(writer, 3000, pause=0.001)
        # Memory stays bounded while the senders hang: the overflow spilled to disk.
        bound = (4 + SENDERS + 2) * 100
        assert wait_for(lambda: writer.stats()["pending_lines"] <= bound, 5)
        assert not writer.flush(timeout=10)
        stats = writer.stats()
        assert stats["influx_up"] == 0
        assert stats["lines_spooled"] > 0
        assert stats["lines_in_doubt"] > 0  # a request that timed out may have been stored
        assert stats["spool_files"] > 0
        mode["hang"] = False
        worst = max(worst, _produce(writer, 500, per_call=10))
        assert writer.drain_spool(timeout=30)
        assert writer.close(timeout=10)
    assert worst < MAX_WRITE_CALL_S
    assert set(fake.stored) == set(numbered(3000).splitlines())
    stats = writer.stats()
    assert stats["influx_up"] == 1
    assert stats["spool_files"] == stats["lines_dropped"] == 0
    assert spool_status(writer._config)["files"] == 0


def test_a_stalled_loop_caps_the_hand_off_and_counts_what_it_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = RecorderConfig.load(
        env={}, influx_url="", data_dir=tmp_path, buffer_max_bytes=10_000, batch_interval_s=0.05
    )
    loop = BackgroundLoop("stalled")
    loop.start()
    gate = threading.Event()
    with FakeInflux(lambda n, lines: Reply(204)) as fake:
        writer = SeriesWriter(dataclasses.replace(config, influx_url=fake.url()), loop)
        writer.start()
        loop.call_soon(gate.wait)  # a bug or a long GIL hold: the loop takes nothing
        with caplog.at_level(logging.ERROR, logger="galfriday_recorder.series"):
            worst = _produce(writer, 2000)
        dropped = writer.stats()["lines_dropped"]
        assert isinstance(dropped, int)
        gate.set()
        assert writer.close(timeout=10)
    loop.stop()
    assert worst < MAX_WRITE_CALL_S
    kept = 2000 - dropped
    # Hand-offs stop once 10,000 bytes wait untaken; the last one to fit may cross it.
    assert 10_000 <= len(numbered(kept)) < 10_000 + len(numbered(10, kept))
    assert sorted(fake.stored) == sorted(numbered(kept).splitlines())  # the first ones, all
    assert caplog.text.count("background loop is stalled") == 1


def test_close_with_a_request_out_spools_its_lines_in_doubt(tmp_path: Path) -> None:
    with FakeInflux(lambda n, lines: Reply(hang=True)) as fake:
        writer = _writer(fake.url(), tmp_path, influx_timeout_s=30.0)
        writer.write(numbered(50))
        assert wait_for(lambda: len(fake.log) == 1, 5)  # the request is at the server
        assert not writer.close(timeout=0.5)
    stats = writer.stats()
    assert stats["lines_in_doubt"] == 50  # the server may still store them
    assert spool_status(writer._config)["lines"] == 50  # and they will be sent again


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_refused_connection_spools_without_doubt(tmp_path: Path, api: str) -> None:
    writer = _writer(f"http://127.0.0.1:{free_port()}", tmp_path, influx_api=api)
    assert _produce(writer, 30) < MAX_WRITE_CALL_S
    assert not writer.close(timeout=10)
    stats = writer.stats()
    assert stats["retries"] >= 1
    assert stats["lines_spooled"] == 30
    assert stats["lines_in_doubt"] == 0  # nothing reached a server


def test_401_spools_at_once_and_probes_slowly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeInflux(lambda n, lines: Reply(401, body=b'{"error":"authorization failed"}')) as fake:
        with caplog.at_level(logging.ERROR, logger="galfriday_recorder.series"):
            writer = _writer(
                fake.url(), tmp_path, influx_username="bot", influx_password="s3cret-pw"
            )
            assert _produce(writer, 30) < MAX_WRITE_CALL_S
            assert not writer.flush(timeout=5)
        time.sleep(2.5)
        requests = len(fake.log)
        assert writer.close(timeout=5) is False
    assert 1 <= requests <= 3  # the fresh batch, then probes 1-2 s and 2-4 s apart
    stats = writer.stats()
    assert stats["influx_up"] == 0
    assert stats["lines_spooled"] == 30
    assert stats["lines_written"] == stats["lines_in_doubt"] == 0
    assert spool_status(writer._config)["lines"] == 30
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "HTTP 401" in record.getMessage()
    assert "s3cret-pw" not in caplog.text


def test_a_400_without_details_rejects_the_batch_without_retrying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeInflux(lambda n, lines: Reply(400, body=b'{"error":"bad request"}')) as fake:
        writer = _writer(fake.url(), tmp_path)
        with caplog.at_level(logging.WARNING, logger="galfriday_recorder.series"):
            writer.write(numbered(5))
            assert writer.close(timeout=10)
    assert len(fake.log) == 1
    stats = writer.stats()
    assert (stats["lines_rejected"], stats["retries"], stats["lines_spooled"]) == (5, 0, 0)
    assert "bad request" in caplog.text
    assert "probe,src=t f=0i" in caplog.text


def test_a_redirect_spools_and_rejects_nothing(tmp_path: Path) -> None:
    moved = Reply(301, {"Location": "https://elsewhere/write"})
    with FakeInflux(lambda n, lines: moved if n == 0 else Reply(204)) as fake:
        writer = _writer(fake.url(), tmp_path)
        writer.write(numbered(5))
        assert not writer.flush(timeout=1)  # a redirect needs a human: spooled, probed slowly
        stats = writer.stats()
        assert (stats["lines_rejected"], stats["lines_spooled"], stats["influx_up"]) == (0, 5, 0)
        assert writer.drain_spool(timeout=15)  # the next probe is answered: nothing was lost
        assert writer.close(timeout=5)
    assert sorted(fake.stored) == sorted(numbered(5).splitlines())


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_an_https_url_is_served_over_verified_tls(tmp_path: Path, api: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with FakeInflux(lambda n, lines: Reply(204), tls=tls) as fake:
        assert fake.url().startswith("https://")
        # Not signed by anything the system trusts: refused before a byte of data is sent.
        untrusted = _writer(fake.url(), tmp_path / "untrusted", influx_api=api)
        untrusted.write(numbered(10))
        assert not untrusted.close(timeout=5)
        assert fake.log == []
        stats = untrusted.stats()
        assert (stats["lines_spooled"], stats["lines_in_doubt"]) == (10, 0)
        # With its CA named, the same server is verified and written to.
        writer = _writer(fake.url(), tmp_path / "data", influx_api=api, influx_ca_file=str(cert))
        writer.write(numbered(10))
        assert writer.close(timeout=10)
    assert sorted(fake.stored) == sorted(numbered(10).splitlines())
    assert writer.stats()["retries"] == 0


def test_a_split_batch_interrupted_by_a_5xx_resends_only_what_is_left(tmp_path: Path) -> None:
    """A 400 splits the batch; the first half is stored, the second meets a 503. The retry
    sends the second half alone: nothing stored is sent or counted twice."""
    partial = Reply(400, body=b'{"error":"partial write: field type conflict dropped=1"}')
    replies = [partial, Reply(204), Reply(503), Reply(204)]
    with FakeInflux(lambda n, lines: replies[n] if n < len(replies) else Reply(204)) as fake:
        writer = _writer(fake.url(), tmp_path)
        writer.write(numbered(10))
        assert writer.close(timeout=10)
    assert [lines for _, lines, _ in fake.log] == [10, 5, 5, 5]
    assert sorted(fake.stored) == sorted(numbered(10).splitlines())
    stats = writer.stats()
    assert (stats["lines_written"], stats["retries"], stats["lines_rejected"]) == (10, 1, 0)
    assert stats["lines_in_doubt"] == 5
