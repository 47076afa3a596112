"""Test helpers for the series writer: a line formatter and a scriptable fake InfluxDB.

The formatter stands in for the Rust encoder so these tests do not depend on
it; the fake server plays the failures a real InfluxDB only shows by accident
(503 with Retry-After, 429, 413, a hang, a connection closed mid-response).
"""

from __future__ import annotations

import gzip
import http.server
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def lp(measurement: str, tags: dict[str, str], fields: dict[str, Any], ts: int) -> bytes:
    """One newline-terminated line of line protocol, tags sorted by key."""
    tag_part = "".join(f",{k}={_escape_tag(v)}" for k, v in sorted(tags.items()))
    field_part = ",".join(f"{k}={_field(v)}" for k, v in fields.items())
    return f"{measurement}{tag_part} {field_part} {ts}\n".encode()


def numbered(count: int, start: int = 0, measurement: str = "probe") -> bytes:
    """``count`` points of one series with distinct timestamps (``f`` = their index)."""
    base = 1_700_000_000_000_000_000
    return b"".join(
        b"%s,src=t f=%di %d\n" % (measurement.encode(), i, base + i)
        for i in range(start, start + count)
    )


@dataclass
class Reply:
    """What the fake server does with one request: answer ``status``, hang, or hang up."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False
    close_mid_response: bool = False


class FakeInflux:
    """A threaded HTTP server on 127.0.0.1 answering ``/write`` as ``script`` decides.

    ``script(n, lines)`` gets the request's index and its decompressed lines. Lines of
    requests answered 2xx are kept in ``stored``; every request's time and size in ``log``.
    """

    def __init__(
        self,
        script: Callable[[int, list[bytes]], Reply],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.script = script
        self.scheme = "https" if tls else "http"
        self.stored: list[bytes] = []
        self.log: list[tuple[float, int, int]] = []  # (monotonic time, lines, status)
        self._lock = threading.Lock()
        self._release = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                lines = raw.splitlines()
                with fake._lock:
                    n = len(fake.log)
                    reply = fake.script(n, lines)
                    fake.log.append((time.monotonic(), len(lines), reply.status))
                if reply.hang:
                    fake._release.wait(30)
                    self.close_connection = True
                    return
                if reply.close_mid_response:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                if 200 <= reply.status < 300:
                    with fake._lock:
                        fake.stored.extend(lines)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self._server = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeInflux:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def post_lines(url: str, db: str, body: bytes) -> tuple[int, str]:
    """POST line protocol to a real InfluxDB 1.x ``/write``: its status and body."""
    req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
