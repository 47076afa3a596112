"""``doctor``: is everything the recorder needs there, and if not, what to do about it."""

from __future__ import annotations

import sqlite3
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from . import _core
from .config import RecorderConfig
from .influxql import InfluxQL, InfluxQueryError, create_database_hint
from .migrate import discover
from .redaction import redact
from .retention import writer_configs
from .spool import spool_status


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def diagnose(cfg: RecorderConfig) -> Iterator[Check]:
    yield Check("rust core", True, f"{_core.__name__} loaded from {_core.__file__}")
    yield from _postgres(cfg)
    yield from _influx(cfg)
    yield from _journal(cfg)
    for writer in writer_configs(cfg):
        yield _spool(writer)


def _postgres(cfg: RecorderConfig) -> Iterator[Check]:
    if not cfg.pg_dsn:
        yield Check(
            "postgresql",
            False,
            "none configured, and no local server running",
            "--pg-dsn or GALFRIDAY_PG_DSN, or `galfriday-recorder services up`",
        )
        return
    try:
        with psycopg.connect(cfg.pg_conninfo, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            applied: dict[int, str] = {}
            if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() != (None,):
                rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
                applied = {int(v): str(c) for v, c in rows}
    except psycopg.Error as exc:
        yield Check(
            "postgresql",
            False,
            redact(str(exc)).strip(),
            "start it (`galfriday-recorder services up`) or set GALFRIDAY_PG_DSN",
        )
        return
    yield Check(
        "postgresql", True, f"{redact(cfg.pg_dsn)} (server {version[0] if version else '?'})"
    )
    known = discover()
    pending = [m for m in known if m.version not in applied]
    edited = [m for m in known if m.version in applied and applied[m.version].strip() != m.checksum]
    if edited:
        yield Check(
            "schema",
            False,
            f"applied migrations edited since: {[m.version for m in edited]}",
            "restore the original files; add a new migration for changes",
        )
    elif pending:
        yield Check(
            "schema",
            False,
            f"version {max(applied, default=0)}, {len(pending)} migration(s) pending",
            "galfriday-recorder migrate",
        )
    else:
        yield Check("schema", True, f"version {known[-1].version}, up to date")


def _influx(cfg: RecorderConfig) -> Iterator[Check]:
    if not cfg.influx_url:
        yield Check(
            "influxdb",
            False,
            "none configured, and no local server running",
            "--influx-url or GALFRIDAY_INFLUX_URL, or `galfriday-recorder services up`",
        )
        return
    url = cfg.influx_url.rstrip("/")
    probe = f"{url}/ping" if cfg.influx_api == "v1" else f"{url}/health"
    try:
        with urllib.request.urlopen(probe, timeout=5) as resp:  # noqa: S310 - configured URL
            version = resp.headers.get("X-Influxdb-Version", "unknown version")
    except (OSError, urllib.error.URLError) as exc:
        yield Check(
            "influxdb",
            False,
            f"{redact(url)} unreachable: {exc}",
            "start it (`galfriday-recorder services up`); points wait in the spool",
        )
        return
    yield Check("influxdb", True, f"{redact(url)} ({cfg.influx_api} API, {version})")
    if cfg.influx_api == "v1":
        yield _influx_database(cfg)


def _influx_database(cfg: RecorderConfig) -> Check:
    reader = InfluxQL(cfg)
    try:
        answer = reader.rows("SHOW DATABASES", db="")
    except InfluxQueryError as exc:
        return Check("influx database", False, str(exc), "check the InfluxDB credentials")
    finally:
        reader.close()
    names = {r.get("name") for r in answer}
    if cfg.influx_database in names:
        return Check("influx database", True, f"{cfg.influx_database!r} exists")
    allowed = "the recorder creates it at its first write" if cfg.influx_create_database else ""
    return Check(
        "influx database",
        False,
        f"{cfg.influx_database!r} does not exist" + (f" ({allowed} if allowed)" if allowed else ""),
        create_database_hint(cfg),
    )


def _journal(cfg: RecorderConfig) -> Iterator[Check]:
    path = cfg.journal_path
    if not path.exists():
        yield Check("journal", True, f"{path} not created yet")
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield Check("journal mode", False, f"{path} is {mode:o}", f"chmod 600 {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            pending = db.execute("SELECT count(*) FROM events").fetchone()[0]
            dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        yield Check("journal", False, f"{path}: {exc}", "inspect or move the file aside")
        return
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    yield Check(
        "journal",
        dead == 0,
        f"{pending} event(s) waiting for PostgreSQL, {dead} dead letter(s), "
        f"{size / 1e6:.1f} MB of {cfg.journal_max_bytes / 1e6:.0f} MB",
        "dead letters are events PostgreSQL refused: see their errors in system_logs",
    )


def _spool(cfg: RecorderConfig) -> Check:
    status = spool_status(cfg)
    full = status["bytes"] >= cfg.spool_max_bytes
    return Check(
        "spool",
        not full,
        f"{status['directory']}: {status['files']} file(s), {status['lines']} line(s), "
        f"{status['bytes'] / 1e6:.1f} MB of {cfg.spool_max_bytes / 1e6:.0f} MB",
        "InfluxDB must come back; `galfriday-recorder spool replay` drains it",
    )
