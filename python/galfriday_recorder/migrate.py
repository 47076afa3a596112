"""Numbered SQL migrations from ``sql/``, applied once each, in order, under an advisory lock.

Each file runs in its own transaction together with its row in
``schema_migrations`` (version, name, SHA-256 of the file), so a failed file
leaves nothing behind. A file that was edited after it was applied is refused:
the database would no longer match the source.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .errors import MigrationError
from .redaction import redact

SQL_DIR = Path(__file__).resolve().parent / "sql"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant both sides agree on; it keeps concurrent runners from interleaving.
_LOCK_KEY = 0x6A1F_12DA

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   CHAR(64) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The migration files in version order; gaps and duplicates are errors."""
    found: list[Migration] = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing (found {mig.version:04d})")
    return found


def migrate(dsn: str, sql_dir: Path = SQL_DIR, *, schema: str = "") -> list[int]:
    """Apply the pending migrations; return the versions applied now (empty when up to date).

    With ``schema``, ``dsn`` must set ``search_path`` to it (``RecorderConfig.pg_conninfo``
    does): the schema is created if missing, and every table lands in it.
    """
    migrations = discover(sql_dir)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to {redact(dsn)}: {redact(str(exc))}") from None
    applied_now: list[int] = []
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            if schema:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
            conn.execute(_BOOKKEEPING)
            rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
            applied = {int(v): (str(n), str(c).strip()) for v, n, c in rows}
            unknown = sorted(set(applied) - {m.version for m in migrations})
            if unknown:
                raise MigrationError(
                    f"the database has migrations this code does not know: {unknown}; "
                    "it was migrated by a newer version"
                )
            for mig in migrations:
                done = applied.get(mig.version)
                if done is not None:
                    if done[1] != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.version:04d}_{mig.name}.sql was edited after it was "
                            "applied; add a new migration instead of changing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(mig.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
                applied_now.append(mig.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def schema_version(dsn: str) -> int | None:
    """The highest applied migration, or None on a database never migrated."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return None if row is None or row[0] is None else int(row[0])
