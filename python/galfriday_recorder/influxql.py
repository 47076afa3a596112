"""Reading InfluxDB back with InfluxQL over ``/query``.

InfluxQL is the one query language every InfluxDB answers: 1.x natively, 2.x
and 3.x through their v1-compatible ``/query`` endpoint. Values go in as bound
parameters (``$name``), never spliced into the text. Numbers come back as
``Decimal`` parsed from the JSON text, so a field written as ``0.52341`` reads
back as exactly that.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import urllib3

from .config import RecorderConfig
from .errors import RecorderError
from .redaction import redact


class InfluxQueryError(RecorderError):
    """InfluxDB could not be asked, or answered with an error."""


def auth_headers(config: RecorderConfig) -> dict[str, str]:
    """The credentials ``config`` holds, as the HTTP headers InfluxDB expects."""
    if config.influx_username or config.influx_password:
        return dict(
            urllib3.util.make_headers(  # InfluxDB reads the credentials as UTF-8
                basic_auth=f"{config.influx_username}:{config.influx_password}",
                basic_auth_encoding="utf-8",
            )
        )
    if config.influx_token:
        return {"Authorization": f"Token {config.influx_token}"}
    return {}


class InfluxQL:
    """One keep-alive connection pool to ``config.influx_url``; thread-safe (urllib3)."""

    def __init__(self, config: RecorderConfig) -> None:
        if not config.influx_url:
            raise InfluxQueryError("no InfluxDB configured (influx_url is empty)")
        self.config = config
        self._url = f"{config.influx_url.rstrip('/')}/query"
        self._headers = auth_headers(config)
        self._http = urllib3.PoolManager(
            num_pools=1,
            maxsize=4,
            timeout=urllib3.Timeout(
                connect=min(config.influx_timeout_s, 5.0), read=config.influx_timeout_s
            ),
            retries=False,
            ca_certs=config.influx_ca_file or None,
        )

    def raw(
        self, q: str, params: dict[str, Any] | None = None, *, db: str | None = None
    ) -> dict[str, Any]:
        """The decoded answer of one statement; an error answer raises."""
        query = {"q": q, "epoch": "ns"}
        database = self.config.influx_database if db is None else db
        if database:
            query["db"] = database
        if self.config.influx_rp:
            query["rp"] = self.config.influx_rp
        if params:
            query["params"] = json.dumps(params)
        try:
            resp = self._http.request(
                "POST",
                self._url,
                body=urlencode(query).encode(),
                headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"},
            )
        except urllib3.exceptions.HTTPError as exc:
            raise InfluxQueryError(redact(f"{self.config.influx_url}: {exc}")) from None
        try:
            answer = json.loads(resp.data, parse_float=Decimal)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise InfluxQueryError(f"InfluxDB answered {resp.status} without JSON")
        error = answer.get("error") or next(
            (r["error"] for r in answer.get("results", []) if "error" in r), None
        )
        if resp.status >= 400 or error:
            raise InfluxQueryError(f"InfluxDB answered {resp.status}: {error}")
        return answer

    def rows(
        self, q: str, params: dict[str, Any] | None = None, *, db: str | None = None
    ) -> list[dict[str, Any]]:
        """The first statement's points as dicts (column -> value), series after series."""
        answer = self.raw(q, params, db=db)
        results = answer.get("results") or [{}]
        out: list[dict[str, Any]] = []
        for series in results[0].get("series", []):
            tags = series.get("tags", {})
            columns = series["columns"]
            for values in series["values"]:
                out.append({**tags, **dict(zip(columns, values, strict=True))})
        return out

    def create_database(self) -> None:
        """``CREATE DATABASE`` for the configured database (1.x; a no-op when it exists)."""
        self.raw(f"CREATE DATABASE {quote_ident(self.config.influx_database)}", db="")

    def close(self) -> None:
        self._http.clear()


def quote_ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted with its quotes and backslashes escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def l2_source(config: RecorderConfig) -> str:
    """Where raw ``market_data_l2`` is read from: its own retention policy when it has one."""
    if config.influx_l2_rp:
        return f'{quote_ident(config.influx_l2_rp)}."market_data_l2"'
    return '"market_data_l2"'


def create_database_hint(config: RecorderConfig) -> str:
    """What an InfluxDB admin runs when the recorder may not create the database itself."""
    statement = f"CREATE DATABASE {quote_ident(config.influx_database)}"
    url = redact(config.influx_url.rstrip("/"))
    return f"curl -XPOST '{url}/query' --data-urlencode 'q={statement}' (as an InfluxDB admin)"
