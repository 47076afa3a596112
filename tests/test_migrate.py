"""The migration runner against a real PostgreSQL server."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from galfriday_recorder.errors import MigrationError
from galfriday_recorder.migrate import SQL_DIR, discover, migrate, schema_version


def test_applies_every_file_once_in_order(empty_pg_dsn: str) -> None:
    versions = [m.version for m in discover()]
    assert versions == list(range(1, len(versions) + 1))
    assert schema_version(empty_pg_dsn) is None
    assert migrate(empty_pg_dsn) == versions
    assert schema_version(empty_pg_dsn) == versions[-1]
    with psycopg.connect(empty_pg_dsn) as conn:
        rows = conn.execute(
            "SELECT version, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert [r[0] for r in rows] == versions
    assert [r[1] for r in rows] == [m.checksum for m in discover()]


def test_second_run_is_a_noop(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        before = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert migrate(pg_dsn) == []
    with psycopg.connect(pg_dsn) as conn:
        after = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert before == after


def test_edited_migration_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    tampered = tmp_path / "sql"
    shutil.copytree(SQL_DIR, tampered)
    first = sorted(tampered.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match=r"0001_.*edited after it was applied"):
        migrate(pg_dsn, tampered)


def test_failed_migration_leaves_nothing(pg_dsn: str, tmp_path: Path) -> None:
    broken = tmp_path / "sql"
    shutil.copytree(SQL_DIR, broken)
    nxt = len(discover()) + 1
    (broken / f"{nxt:04d}_broken.sql").write_text(
        "CREATE TABLE half_done (x int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(pg_dsn, broken)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert schema_version(pg_dsn) == nxt - 1


def test_unknown_applied_version_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    newer = tmp_path / "sql"
    shutil.copytree(SQL_DIR, newer)
    nxt = len(discover()) + 1
    (newer / f"{nxt:04d}_from_the_future.sql").write_text("CREATE TABLE future (x int);")
    assert migrate(pg_dsn, newer) == [nxt]
    with pytest.raises(MigrationError, match="newer version"):
        migrate(pg_dsn)


def test_misnamed_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "create_things.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(tmp_path)


def test_gap_in_versions_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0003_c.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="0002 is missing"):
        discover(tmp_path)


def test_bad_dsn_error_hides_the_password(tmp_path: Path) -> None:
    with pytest.raises(MigrationError) as info:
        migrate("postgresql://bot:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)
