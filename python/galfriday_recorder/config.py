"""One ``RecorderConfig``: keyword arguments over environment over an optional TOML file.

Secrets (the PostgreSQL password inside the DSN, the InfluxDB password and
token) never appear in ``repr``, logs or exceptions: a configuration registers
them, found by parsing, with :mod:`.redaction`, whose :func:`redact` masks them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigError
from .redaction import dsn_password, redact, register_secrets, url_password

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_PREFIX = "GALFRIDAY_"
_SECRET_FIELDS = frozenset({"influx_password", "influx_token"})
_DURATION = re.compile(r"INF|[1-9][0-9]{0,8}[smhdw]")
# SQLAlchemy's driver suffix (the bot's ``postgresql+asyncpg://``): psycopg needs it gone.
_DRIVER_SUFFIX = re.compile(r"^(postgres(?:ql)?)\+[a-z0-9_]+://")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class RecorderConfig:
    """Everything the recorder needs; each field has a variable ``GALFRIDAY_<NAME>``."""

    # PostgreSQL ledger
    pg_dsn: str = ""
    # All recorder tables and its schema_migrations live here ("" = the DSN's default
    # search_path): beside the bot's own tables, whose ``orders`` would clash.
    pg_schema: str = ""
    apply_migrations: bool = True
    data_dir: Path = Path(".galfriday")
    journal_max_bytes: int = 512 * 1024 * 1024
    commit_interval_ms: float = 5.0
    commit_max_events: int = 2000
    # A fill whose order has not been seen yet waits this long, then is dead-lettered.
    orphan_fill_timeout_s: float = 30.0

    # InfluxDB time series
    influx_url: str = ""
    influx_api: str = "v1"
    influx_database: str = "galfriday"
    influx_rp: str = ""
    influx_org: str = ""
    influx_bucket: str = ""
    influx_username: str = ""
    influx_password: str = field(default="", repr=False)
    influx_token: str = field(default="", repr=False)
    influx_timeout_s: float = 10.0
    influx_ca_file: str = ""  # PEM bundle that signs InfluxDB's certificate; "" = system store
    # On InfluxDB 1.x, answer "database not found" with CREATE DATABASE (needs admin rights).
    influx_create_database: bool = True
    # Raw market_data_l2 goes to this retention policy ("" = influx_rp); see retention.py.
    influx_l2_rp: str = ""
    retention_l2_raw: str = "72h"  # InfluxQL durations: 72h, 3d, 2w, INF
    retention_l2_aggregates: str = "INF"
    retention_system_logs_days: float = 30.0
    batch_max_lines: int = 5000
    batch_interval_s: float = 1.0
    spool_max_bytes: int = 1024 * 1024 * 1024
    # Lines held in memory until the background loop takes them (the market core's
    # buffer, the series writer's hand-off: each). Only a stalled loop reaches it;
    # past it new lines are dropped and counted rather than memory growing.
    buffer_max_bytes: int = 64 * 1024 * 1024

    # Market data
    exchange: str = "kraken"
    book_depth: int = 10
    l2_levels: int = 10
    imbalance_levels: tuple[int, ...] = (5, 10)
    ohlcv_intervals: tuple[str, ...] = ("1m", "5m")
    l2_sample_interval_ms: int = 0
    # A larger frame is refused unread (MalformedFrame): Kraken's biggest, a
    # depth-1000 snapshot, is about 100 KB.
    max_frame_bytes: int = 16 * 1024 * 1024
    # Pairs with state in the market core; a new one past it is refused (UnknownSymbol).
    max_symbols: int = 1024
    # A trade stamped further ahead of its receipt is refused (MalformedFrame).
    max_trade_ahead_ms: int = 60_000

    # This recorder among those sharing one database: its rows carry it and its recovery
    # reads only its own ("" = host and resolved data_dir, see default_instance_name).
    instance_name: str = ""

    # Self-metrics ("" = the instance name)
    host_id: str = ""
    metrics_interval_s: float = 10.0

    def __post_init__(self) -> None:
        # Built directly, a config takes the same values .load() does ("10" for an int,
        # a str for a Path, a list for a tuple) and fails here, naming the field.
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        if "\x00" in str(self.data_dir):
            raise ConfigError("data_dir holds a NUL byte, which no file name can")
        if not self.instance_name:
            object.__setattr__(self, "instance_name", default_instance_name(self.data_dir))
        if not self.host_id:
            object.__setattr__(self, "host_id", self.instance_name)
        # Before any check below, so that every message (and every log line after) masks them.
        register_secrets(
            dsn_password(_DRIVER_SUFFIX.sub(r"\1://", self.pg_dsn)),
            url_password(self.influx_url),
            self.influx_password,
            self.influx_token,
        )
        if self.influx_api not in ("v1", "v2"):
            raise ConfigError(f"influx_api must be 'v1' or 'v2', not {self.influx_api!r}")
        for name in (
            "journal_max_bytes",
            "commit_max_events",
            "batch_max_lines",
            "spool_max_bytes",
            "buffer_max_bytes",
            "max_frame_bytes",
            "max_symbols",
            "max_trade_ahead_ms",
            "book_depth",
            "l2_levels",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in (
            "commit_interval_ms",
            "batch_interval_s",
            "metrics_interval_s",
            "influx_timeout_s",
            "orphan_fill_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("retention_l2_raw", "retention_l2_aggregates"):
            if not _DURATION.fullmatch(getattr(self, name)):
                raise ConfigError(f"{name} must be an InfluxQL duration like 72h or INF")
        if not self.retention_system_logs_days > 0:
            raise ConfigError("retention_system_logs_days must be positive")
        if self.l2_sample_interval_ms < 0:
            raise ConfigError("l2_sample_interval_ms must be >= 0")
        if self.l2_levels > self.book_depth:
            raise ConfigError(
                f"l2_levels ({self.l2_levels}) exceeds book_depth ({self.book_depth})"
            )
        if any(n <= 0 or n > self.book_depth for n in self.imbalance_levels):
            raise ConfigError(f"imbalance_levels must lie in 1..{self.book_depth}")
        if self.influx_ca_file and not Path(self.influx_ca_file).is_file():
            raise ConfigError(f"influx_ca_file {self.influx_ca_file!r} is not a file")
        if self.influx_url and not self.influx_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"influx_url must start with http:// or https://: {redact(self.influx_url)}"
            )
        dsn = _DRIVER_SUFFIX.sub(r"\1://", self.pg_dsn)
        if dsn and not (dsn.startswith(("postgresql://", "postgres://")) or "=" in dsn):
            raise ConfigError(f"pg_dsn is neither a URI nor key=value DSN: {redact(self.pg_dsn)}")
        if dsn:
            try:
                conninfo_to_dict(dsn)
            except psycopg.ProgrammingError:  # its message quotes pieces of the DSN
                raise ConfigError(
                    "pg_dsn does not parse as a libpq DSN (the driver's message is withheld: "
                    "it may quote the password; percent-encode special characters in a URI)"
                ) from None
        name = self.instance_name
        if len(name) > INSTANCE_NAME_MAX or not name.isprintable() or not name.strip():
            raise ConfigError(
                f"instance_name must be at most {INSTANCE_NAME_MAX} printable characters, "
                f"not {self.instance_name!r}"
            )
        if self.pg_schema and not _SCHEMA_NAME.match(self.pg_schema):
            raise ConfigError(
                f"pg_schema must be a lower-case SQL identifier, not {self.pg_schema!r}"
            )

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                value = "***" if value else ""
            elif isinstance(value, str):
                value = redact(value)
            parts.append(f"{f.name}={value!r}")
        return f"RecorderConfig({', '.join(parts)})"

    __str__ = __repr__

    @property
    def pg_conninfo(self) -> str:
        """The DSN as psycopg takes it: no driver suffix, ``search_path`` set to ``pg_schema``."""
        dsn = _DRIVER_SUFFIX.sub(r"\1://", self.pg_dsn)
        if not dsn or not self.pg_schema:
            return dsn
        return psycopg.conninfo.make_conninfo(dsn, options=f"-c search_path={self.pg_schema}")

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal" / "ledger.sqlite3"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @classmethod
    def load(
        cls,
        toml_file: str | os.PathLike[str] | None = None,
        *,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> RecorderConfig:
        """Build a config: ``overrides`` beat ``GALFRIDAY_*`` variables, which beat the file.

        ``toml_file`` defaults to ``$GALFRIDAY_CONFIG`` when set.
        """
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        path = toml_file or env.get(f"{ENV_PREFIX}CONFIG")
        if path:
            try:
                with open(path, "rb") as fh:
                    doc = tomllib.load(fh)
            except OSError as exc:
                raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
            values.update(doc.get("recorder", doc))
        names = {f.name for f in fields(cls)}
        for name in names:
            key = f"{ENV_PREFIX}{name.upper()}"
            if key in env:
                values[name] = env[key]
        values.update(overrides)
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any], **overrides: Any) -> RecorderConfig:
        """A config from a section of the bot's own (YAML) configuration, as a dict.

        Keys are the field names (values as YAML gives them, or strings); a nested
        ``recorder`` mapping is read too. Unknown keys are an error, not a silent default.
        """
        if not isinstance(section, Mapping):
            raise ConfigError(f"config section must be a mapping, not {type(section).__name__}")
        inner = section.get("recorder")
        values = {**(inner if isinstance(inner, Mapping) else section), **overrides}
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(map(str, unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> RecorderConfig:
        """A copy with ``changes``; a default instance name (and a host id that follows it)
        is derived again from the new ``data_dir``, so two data dirs never share one."""
        if "data_dir" in changes and self.instance_name == default_instance_name(self.data_dir):
            changes.setdefault("instance_name", "")
            if self.host_id == self.instance_name:
                changes.setdefault("host_id", "")
        return dataclasses.replace(self, **changes)


INSTANCE_NAME_MAX = 64  # recorder_instance is VARCHAR(64)


def default_instance_name(data_dir: Path) -> str:
    """``host:/resolved/data_dir``: unique among live processes on a host (the journal in
    data_dir is locked by one) and the same across restarts of one. A longer name keeps the
    host, a hash of the whole name and the end of the path."""
    host, where = socket.gethostname(), str(data_dir.resolve())
    name = f"{host}:{where}"
    if len(name) <= INSTANCE_NAME_MAX and name.isprintable():
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    head = f"{_printable(host)[:24]}:{digest}:"
    return head + _printable(where)[len(head) - INSTANCE_NAME_MAX :]


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


_HINTS: dict[str, Any] = {}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or say which field is wrong."""
    if not _HINTS:
        _HINTS.update(get_type_hints(RecorderConfig))
    hint = _HINTS[name]
    shown = "***" if name in _SECRET_FIELDS else redact(str(value))
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
        if hint is Path:
            return Path(value)
        if hint == tuple[int, ...]:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(x) for x in items)
        if hint == tuple[str, ...]:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(x).strip() for x in items)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: invalid value {shown!r}") from None
    return value


# Key names whose values are credentials in the bot's configuration (any case, anywhere
# in the name): ``api_secret``, ``db_password``, ``private_key``, ``auth_token``, ...
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api_?key|private_?key|credential|auth", re.IGNORECASE
)


def redact_mapping(content: Any) -> Any:
    """A copy of a configuration with secret-looking keys' values masked and DSN passwords cut.

    What ``record_configuration`` stores (and hashes): the bot's whole config may
    hold its Kraken API secret and database password.
    """
    if isinstance(content, Mapping):
        return {
            k: "***"
            if isinstance(k, str) and _SECRET_KEY.search(k) and content[k] not in (None, "")
            else redact_mapping(content[k])
            for k in content
        }
    if isinstance(content, (list, tuple)):
        return [redact_mapping(v) for v in content]
    if isinstance(content, str):
        return redact(content)
    return content
