"""RecorderConfig: precedence, coercion, clear errors, and secrets kept out of sight."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galfriday_recorder.config import (
    INSTANCE_NAME_MAX,
    RecorderConfig,
    default_instance_name,
    redact_mapping,
)
from galfriday_recorder.errors import ConfigError
from galfriday_recorder.redaction import redact


def test_precedence_kwargs_over_env_over_file(tmp_path: Path) -> None:
    toml = tmp_path / "rec.toml"
    toml.write_text(
        '[recorder]\ninflux_database = "from_file"\nbatch_max_lines = 10\n'
        "imbalance_levels = [3, 7]\n"
    )
    env = {"GALFRIDAY_INFLUX_DATABASE": "from_env", "GALFRIDAY_BATCH_INTERVAL_S": "0.25"}
    cfg = RecorderConfig.load(toml, env=env, batch_max_lines=99)
    assert cfg.influx_database == "from_env"
    assert cfg.batch_max_lines == 99
    assert cfg.batch_interval_s == 0.25
    assert cfg.imbalance_levels == (3, 7)


def test_env_types_are_coerced() -> None:
    env = {
        "GALFRIDAY_APPLY_MIGRATIONS": "off",
        "GALFRIDAY_OHLCV_INTERVALS": "1m, 15m",
        "GALFRIDAY_DATA_DIR": "/var/lib/gf",
    }
    cfg = RecorderConfig.load(env=env)
    assert cfg.apply_migrations is False
    assert cfg.ohlcv_intervals == ("1m", "15m")
    assert cfg.data_dir == Path("/var/lib/gf")
    assert cfg.journal_path == Path("/var/lib/gf/journal/ledger.sqlite3")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"influx_api": "v3"}, "influx_api must be 'v1' or 'v2'"),
        ({"batch_max_lines": 0}, "batch_max_lines must be positive"),
        ({"batch_max_lines": "many"}, "batch_max_lines: invalid value 'many'"),
        ({"apply_migrations": "maybe"}, "apply_migrations: invalid value"),
        ({"l2_levels": 20}, "exceeds book_depth"),
        ({"imbalance_levels": (0,)}, "imbalance_levels must lie in"),
        ({"influx_url": "ftp://x"}, "influx_url must start with"),
        ({"no_such_key": 1}, "unknown configuration keys: no_such_key"),
        ({"data_dir": "a\x00b"}, "data_dir holds a NUL byte"),
    ],
)
def test_bad_values_get_clear_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RecorderConfig.load(env={}, **overrides)


def test_direct_construction_coerces_and_validates_like_load() -> None:
    direct = RecorderConfig(
        data_dir="x",  # type: ignore[arg-type]
        batch_max_lines="10",  # type: ignore[arg-type]
        ohlcv_intervals=["1m", "5m"],  # type: ignore[arg-type]
        apply_migrations="off",  # type: ignore[arg-type]
    )
    assert direct == RecorderConfig.load(
        env={}, data_dir="x", batch_max_lines="10", ohlcv_intervals="1m,5m", apply_migrations="off"
    )
    assert direct.journal_path == Path("x/journal/ledger.sqlite3")
    assert direct.replace(commit_max_events="7").commit_max_events == 7
    with pytest.raises(ConfigError, match="batch_max_lines: invalid value 'many'"):
        RecorderConfig(batch_max_lines="many")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="influx_database: invalid value"):
        RecorderConfig(influx_database=5)  # type: ignore[arg-type]


def test_bad_toml_is_reported(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        RecorderConfig.load(toml, env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        RecorderConfig.load(tmp_path / "missing.toml", env={})


def test_secrets_never_shown() -> None:
    cfg = RecorderConfig.load(
        env={},
        pg_dsn="postgresql://bot:s3cret-pg@db:5432/gf",
        influx_url="https://admin:s3cret-url@influx:8086",
        influx_password="s3cret-pw",
        influx_token="s3cret-token",
    )
    shown = repr(cfg) + str(cfg)
    for secret in ("s3cret-pg", "s3cret-url", "s3cret-pw", "s3cret-token"):
        assert secret not in shown
    assert "postgresql://bot:***@db:5432/gf" in shown
    with pytest.raises(ConfigError) as info:
        RecorderConfig.load(env={}, pg_dsn="mysql://u:s3cret-pg@h/db")
    assert "s3cret-pg" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        RecorderConfig.load(env={"GALFRIDAY_INFLUX_TOKEN": "s3cret"}, influx_token=5)
    assert "s3cret" not in str(info.value)


def test_redact_forms() -> None:
    assert redact("host=db password=abc user=x") == "host=db password=*** user=x"
    assert redact("postgresql://u:p@h/d") == "postgresql://u:***@h/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"


# -- beside the bot: its DSNs, its YAML section, its secrets ----------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql+asyncpg://bot:pw@db:5432/galfriday",
        "postgres+asyncpg://bot:pw@db/galfriday",
        "postgresql+psycopg://bot:pw@db/galfriday",
    ],
)
def test_sqlalchemy_driver_dsns_are_accepted(dsn: str) -> None:
    cfg = RecorderConfig(pg_dsn=dsn)
    assert "+" not in cfg.pg_conninfo.partition("://")[0]
    assert cfg.pg_conninfo.endswith("://bot:pw@db" + dsn.partition("@db")[2])
    assert "pw" not in repr(cfg)


def test_pg_schema_goes_into_the_search_path() -> None:
    cfg = RecorderConfig(pg_dsn="postgresql+asyncpg://bot:pw@db/gf", pg_schema="recorder")
    assert "search_path=recorder" in cfg.pg_conninfo
    assert RecorderConfig(pg_dsn="", pg_schema="recorder").pg_conninfo == ""


@pytest.mark.parametrize("schema", ["Recorder", "rec; DROP", "1abc", "a" * 64, "rec-x", "pg'"])
def test_a_schema_that_is_not_a_plain_identifier_is_refused(schema: str) -> None:
    with pytest.raises(ConfigError, match="pg_schema"):
        RecorderConfig(pg_schema=schema)


def test_from_mapping_reads_a_yaml_section() -> None:
    section = {
        "pg_dsn": "postgresql+asyncpg://bot:pw@db/gf",
        "pg_schema": "recorder",
        "commit_interval_ms": 10,
        "imbalance_levels": [3, 7],
        "apply_migrations": "no",
        "orphan_fill_timeout_s": 5,
    }
    cfg = RecorderConfig.from_mapping(section, influx_database="over")
    assert cfg.pg_schema == "recorder"
    assert cfg.commit_interval_ms == 10.0
    assert cfg.imbalance_levels == (3, 7)
    assert cfg.apply_migrations is False
    assert cfg.orphan_fill_timeout_s == 5.0
    assert cfg.influx_database == "over"
    assert RecorderConfig.from_mapping({"recorder": {"pg_schema": "r2"}}).pg_schema == "r2"


def test_from_mapping_refuses_unknown_keys_and_non_mappings() -> None:
    with pytest.raises(ConfigError, match="unknown configuration keys: connection_string"):
        RecorderConfig.from_mapping({"connection_string": "postgresql://x"})
    with pytest.raises(ConfigError, match="mapping"):
        RecorderConfig.from_mapping(["pg_dsn"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="orphan_fill_timeout_s"):
        RecorderConfig.from_mapping({"orphan_fill_timeout_s": 0})


def test_secret_looking_keys_are_masked_anywhere() -> None:
    content: dict[str, Any] = {
        "exchange": {"api_key": "K", "API_SECRET": "S", "name": "kraken"},
        "database": {"connection_string": "postgresql://u:hunter2@db/gf", "password": "pw"},
        "services": [{"auth_token": "t"}, {"private_key": "p"}, "postgresql://a:b@h/d"],
        "risk": {"max_drawdown": "0.3", "empty_secret": ""},
        "passphrase": None,
    }
    masked = redact_mapping(content)
    assert masked == {
        "exchange": {"api_key": "***", "API_SECRET": "***", "name": "kraken"},
        "database": {"connection_string": "postgresql://u:***@db/gf", "password": "***"},
        "services": [{"auth_token": "***"}, {"private_key": "***"}, "postgresql://a:***@h/d"],
        "risk": {"max_drawdown": "0.3", "empty_secret": ""},
        "passphrase": None,
    }
    assert content["exchange"]["api_key"] == "K"  # the caller's dict is not changed


def test_the_default_instance_name_is_the_host_and_the_resolved_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert RecorderConfig(data_dir=Path("/srv/gf/bot-a")).instance_name == (
        f"{socket.gethostname()}:/srv/gf/bot-a"
    )
    monkeypatch.chdir(tmp_path)
    cfg = RecorderConfig(data_dir=Path("bot-a"))
    assert cfg.instance_name == default_instance_name(tmp_path / "bot-a")
    # A restart of the same process (same data_dir, however it is spelt) gets the same name.
    spelt = RecorderConfig.load(env={}, data_dir=str(tmp_path / "x" / ".." / "bot-a"))
    assert spelt.instance_name == cfg.instance_name
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "bot-a", target_is_directory=True)
    assert RecorderConfig(data_dir=link).instance_name == cfg.instance_name
    assert RecorderConfig(data_dir=Path("bot-b")).instance_name != cfg.instance_name
    # host_id (the self-metrics tag) follows it unless given.
    assert cfg.host_id == cfg.instance_name
    assert RecorderConfig(data_dir=Path("bot-a"), host_id="vm-1").host_id == "vm-1"


@given(st.text(min_size=1, max_size=400).filter(lambda t: "\x00" not in t and "/" not in t))
@settings(max_examples=200, deadline=None)
def test_a_default_instance_name_always_fits_and_tells_data_dirs_apart(part: str) -> None:
    first = default_instance_name(Path("/srv/galfriday") / part)
    second = default_instance_name(Path("/srv/galfriday") / (part + "2"))
    for name in (first, second):
        assert 0 < len(name) <= INSTANCE_NAME_MAX
        assert name.isprintable()
        RecorderConfig(instance_name=name)  # valid as given
    assert first != second


def test_a_long_data_dir_keeps_the_host_a_hash_and_the_end_of_the_path() -> None:
    deep = Path("/srv") / ("d" * 100) / "strategy-7"
    name = default_instance_name(deep)
    assert len(name) == INSTANCE_NAME_MAX
    assert name.startswith(socket.gethostname()[:24] + ":")
    assert name.endswith("/strategy-7")
    assert default_instance_name(Path("/srv") / ("e" * 100) / "strategy-7") != name


@pytest.mark.parametrize(
    "name", [" ", "\t", "a\x00b", "bot\nb", "x" * (INSTANCE_NAME_MAX + 1), "bell\x07"]
)
def test_an_instance_name_that_is_blank_too_long_or_unprintable_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="instance_name must be at most 64 printable"):
        RecorderConfig(instance_name=name)
    with pytest.raises(ConfigError, match="instance_name"):
        RecorderConfig.load(env={"GALFRIDAY_INSTANCE_NAME": name})


def test_an_instance_name_given_is_kept_and_a_default_one_follows_the_data_dir(
    tmp_path: Path,
) -> None:
    given_name = RecorderConfig(data_dir=tmp_path / "a", instance_name="strategy-7 é")
    moved = given_name.replace(data_dir=tmp_path / "b")
    assert (moved.instance_name, moved.host_id) == ("strategy-7 é", "strategy-7 é")
    default = RecorderConfig(data_dir=tmp_path / "a")
    moved = default.replace(data_dir=tmp_path / "b")
    assert moved.instance_name == default_instance_name(tmp_path / "b")
    assert moved.host_id == moved.instance_name
    assert default.replace(data_dir=tmp_path / "b", host_id="h").host_id == "h"
    assert default.replace(batch_max_lines=7).instance_name == default.instance_name
