"""Passwords with any characters never show in reprs, logs or errors, against real
PostgreSQL and InfluxDB, each checking the password.

The session's PostgreSQL trusts every local role; these tests add a
``scram-sha-256`` line for their own role at the top of ``pg_hba.conf`` (first
match wins, so no other test is touched). InfluxDB runs a server of its own
with ``auth-enabled``.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from galfriday_recorder import Recorder, RecorderConfig, redaction
from galfriday_recorder.errors import ConfigError, RecorderError
from galfriday_recorder.lab.services import InfluxService
from galfriday_recorder.migrate import migrate
from galfriday_recorder.redaction import ANYWHERE, redact, register_secrets
from galfriday_recorder.series import SeriesWriter

PASSWORDS = [
    "p%ss w@rd:/x",
    "%41%zz",
    "a'b\"c\\d",
    "üñí☃ c0de",
    "user:pw@host/db?password=x",
]
# Masked only where they stand (a password "a" must not mask every "a").
SHORT_PASSWORDS = ["a", "ab", "%", ":", "'", "a b", "pass", "p@s:", "123456", "ü☃"]


def _forms(password: str) -> list[str]:
    return [password, urllib.parse.quote(password, safe=""), repr(password)[1:-1]]


def _leaks(text: str, password: str) -> list[str]:
    """Where the password shows in ``text``: anywhere for one of ``ANYWHERE`` characters or
    more; a shorter one only where it would stand in a DSN, a URL, key=value or a repr (a
    mask right after ``password=`` is the mask, not a quote of the password ``'``)."""
    if len(password) >= ANYWHERE:
        return [form for form in _forms(password) if form in text]
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    contexts = [
        ctx
        for form in {*_forms(password), escaped}
        for ctx in (f":{form}@", f"password={form}", f"password='{form}'", f"'{form}'")
    ]
    return [ctx for ctx in contexts if re.search(re.escape(ctx) + r"(?!\*\*\*)", text)]


@pytest.fixture(autouse=True)
def isolated_secrets() -> Iterator[None]:
    """Secrets registered by one test are masked for the life of the process: short ones
    would mask quoted text that later tests expect to see."""
    saved = (redaction._registered, redaction._forms, redaction._short)
    yield
    redaction._registered, redaction._forms, redaction._short = saved


def _untouched(password: str) -> bool:
    """Text that merely holds a short password's characters is left as it is."""
    text = f"a password authentication failed; x{password}x, y{password}y:{password}z 100%"
    return len(password) >= ANYWHERE or redact(text) == text


@pytest.fixture
def role(pg_admin_dsn: str, pg_dsn: str) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Makes a role with a password PostgreSQL checks; its conninfo for the test's database."""
    made: list[str] = []
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        [hba_file] = conn.execute("SHOW hba_file").fetchone() or [""]
    hba = Path(hba_file)
    original = hba.read_text()
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)

    def make(password: str) -> dict[str, Any]:
        name = f"r_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
            made.append(name)
            rules = "".join(
                f"host all {r} all scram-sha-256\nlocal all {r} scram-sha-256\n" for r in made
            )
            hba.write_text(rules + original)
            conn.execute("SELECT pg_reload_conf()")
        return {**info, "user": name}

    yield make
    hba.write_text(original)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        for name in made:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _uri(info: dict[str, Any], password: str) -> str:
    user, pw = info["user"], urllib.parse.quote(password, safe="")
    host = info.get("host", "127.0.0.1")
    return f"postgresql://{user}:{pw}@{host}:{info['port']}/{info['dbname']}"


def _kv(info: dict[str, Any], password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    host = info.get("host", "127.0.0.1")
    return (
        f"host={host} port={info['port']} dbname={info['dbname']} "
        f"user={info['user']} password='{escaped}'"
    )


@pytest.mark.parametrize("password", PASSWORDS + SHORT_PASSWORDS)
@pytest.mark.parametrize("form", [_uri, _kv])
def test_password_never_shows_while_the_recorder_runs(
    role: Callable[[str], dict[str, Any]],
    recorder_config: Callable[..., RecorderConfig],
    caplog: pytest.LogCaptureFixture,
    password: str,
    form: Callable[[dict[str, Any], str], str],
) -> None:
    dsn = form(role(password), password)
    with psycopg.connect(dsn) as conn:  # the password is right, and PostgreSQL checks it
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(form(role(password), password + "x")).close()
    config = recorder_config().replace(pg_dsn=dsn, influx_password=password, influx_token=password)
    with caplog.at_level(logging.DEBUG):
        rec = Recorder(config).start()
        shown = repr(config) + str(config) + repr(rec)
        rec.close(30)
        # A wrong password: the recorder logs and journals on; errors name the DSN masked.
        bad = config.replace(pg_dsn=form(role(password + "!"), password), apply_migrations=True)
        Recorder(bad).start().close(5)
        with pytest.raises(RecorderError) as info:
            migrate(bad.pg_dsn)
    assert "password authentication failed for user" in caplog.text
    shown += str(info.value) + repr(info.value) + caplog.text
    shown += redact(f"connection to {form(role(password), password)} failed")
    assert not _leaks(shown, password), shown
    assert _untouched(password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_dsn_that_does_not_parse_is_refused_without_quoting_it(password: str) -> None:
    raw = f"postgresql://bot:{password}@db:5432/galfriday"  # not percent-encoded
    try:
        shown = repr(RecorderConfig(pg_dsn=raw))  # when it parses after all
    except ConfigError as exc:
        shown = str(exc)
    assert not _leaks(shown, password), shown
    register_secrets(password)  # as a configuration holding it in a DSN that parses does
    assert not _leaks(redact(f"could not connect to {raw}"), password)


class _AuthInflux(InfluxService):
    """InfluxDB 1.6 with authentication on: the same server, ``auth-enabled`` in its config."""

    def _popen(self, argv: list[str], **as_user: Any) -> int:
        conf = Path(argv[argv.index("-config") + 1])
        conf.write_text(conf.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n"))
        return super()._popen(argv, **as_user)


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_AuthInflux]:
    service = _AuthInflux(tmp_path_factory.mktemp("auth-influx"))
    service.start()
    # The first user needs no credentials; everything after it does.
    assert (
        _influx_as(service, "", "", "CREATE USER admin WITH PASSWORD 'x' WITH ALL PRIVILEGES")
        == 200
    )
    assert _influx_as(service, "", "", "CREATE DATABASE d") == 401
    assert _influx_as(service, "admin", "x", "CREATE DATABASE d") == 200
    yield service
    service.stop()


def _granted(service: InfluxService, user: str, password: str) -> None:
    """Grant ``user`` everything on ``d``, and see that it took: InfluxDB 1.6 now and then
    answers 200 to a GRANT yet keeps answering 403 to the user; granting again helps."""
    for _attempt in range(5):
        assert _influx_as(service, "admin", "x", f"GRANT ALL ON d TO {user}") == 200
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if _influx_as(service, user, password, "SHOW MEASUREMENTS ON d") == 200:
                return
            time.sleep(0.05)
    raise AssertionError(f"{user} never got its grant on d")


def _influx_as(service: InfluxService, user: str, password: str, q: str) -> int:
    query = urllib.parse.urlencode({"q": q, "u": user, "p": password})
    req = urllib.request.Request(f"{service.url()}/query?{query}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("password", PASSWORDS + SHORT_PASSWORDS)
def test_influx_password_never_shows_and_works_with_auth_on(
    auth_influx: _AuthInflux,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    password: str,
) -> None:
    """A real InfluxDB checks the password (sent as UTF-8 basic auth); a wrong one is
    refused with 401, and neither shows in reprs or logs."""
    user = f"u{uuid.uuid4().hex[:8]}"
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    assert (
        _influx_as(auth_influx, "admin", "x", f"CREATE USER {user} WITH PASSWORD '{escaped}'")
        == 200
    )
    _granted(auth_influx, user, password)
    url = auth_influx.url()
    good = RecorderConfig(influx_url=url, influx_database="d", influx_username=user,
                          influx_password=password, data_dir=tmp_path / "good")  # fmt: skip
    bad = good.replace(influx_password=password + "!", data_dir=tmp_path / "bad")
    with caplog.at_level(logging.DEBUG):
        for config, expected in ((good, True), (bad, False)):
            writer = SeriesWriter(config)
            writer.start()
            writer.write(b"m f=1 1\n")
            assert writer.flush(timeout=10) is expected
            writer.close(timeout=1)
    assert "HTTP 401" in caplog.text
    userinfo = f"://{user}:{urllib.parse.quote(password, safe='')}@"
    shown = repr(good) + repr(bad) + caplog.text + redact(url.replace("://", userinfo))
    assert not _leaks(shown, password), shown
    assert _untouched(password)
