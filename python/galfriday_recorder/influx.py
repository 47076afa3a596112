"""The two ways a batch of line protocol reaches InfluxDB: the v1 ``/write`` endpoint and v2.

A transport makes exactly one blocking HTTP request per :meth:`Transport.send`
and reports what the server said; the retry, split and spool policy lives in
:mod:`galfriday_recorder.series`, so both APIs are treated alike. ``send`` runs
on executor threads, never on the event loop. Credentials never appear in the
errors raised here.
"""

from __future__ import annotations

import email.utils
import gzip
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3

from .config import RecorderConfig
from .errors import RecorderError
from .influxql import auth_headers
from .redaction import redact

MAX_RETRY_AFTER_S = 300.0


class TransportError(RecorderError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure.

    ``maybe_stored`` is False only when the request never reached the server (no
    connection, or a TLS handshake that failed); a connection lost after sending may
    have left the lines stored.
    """

    def __init__(self, message: str, *, maybe_stored: bool) -> None:
        super().__init__(message)
        self.maybe_stored = maybe_stored


def _transport_error(exc: Exception) -> TransportError:
    return TransportError(
        redact(f"{type(exc).__name__}: {exc}"),
        maybe_stored=not isinstance(
            exc, (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.SSLError)
        ),
    )


@dataclass(frozen=True)
class Response:
    """What the server answered; ``retry_after`` is in seconds when it sent one."""

    status: int
    body: str
    retry_after: float | None = None


class Transport(Protocol):
    """One blocking request per call; safe to call from several threads at once."""

    def send(self, data: bytes) -> Response: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date, capped, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _timeout(config: RecorderConfig) -> urllib3.Timeout:
    return urllib3.Timeout(connect=min(config.influx_timeout_s, 5.0), read=config.influx_timeout_s)


class V1Transport:
    """``POST /write?db=&rp=&precision=ns``, gzip body: InfluxDB 1.x, v1 compat of 2.x/3.x."""

    def __init__(self, config: RecorderConfig, pool_size: int) -> None:
        params = {"db": config.influx_database, "precision": "ns"}
        if config.influx_rp:
            params["rp"] = config.influx_rp
        self._url = f"{config.influx_url.rstrip('/')}/write?{urlencode(params)}"
        self._headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Encoding": "gzip",
        }
        self._headers.update(auth_headers(config))
        self._http = urllib3.PoolManager(
            num_pools=1,
            maxsize=pool_size,
            timeout=_timeout(config),
            retries=False,
            ca_certs=config.influx_ca_file or None,
        )

    def send(self, data: bytes) -> Response:
        # Level 1: the body shrinks ~10x already and the CPU per point stays low.
        body = gzip.compress(data, compresslevel=1, mtime=0)
        try:
            resp = self._http.request("POST", self._url, body=body, headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise _transport_error(exc) from None
        return Response(
            resp.status,
            resp.data.decode("utf-8", "replace"),
            parse_retry_after(resp.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._http.clear()


class V2Transport:
    """influxdb-client's synchronous write API, handed raw line-protocol bytes (we batch)."""

    def __init__(self, config: RecorderConfig, pool_size: int) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        token = config.influx_token
        if not token and (config.influx_username or config.influx_password):
            token = f"{config.influx_username}:{config.influx_password}"  # 1.8+ compat
        bucket = config.influx_bucket or config.influx_database
        if not config.influx_bucket and config.influx_rp:
            bucket = f"{config.influx_database}/{config.influx_rp}"
        self._bucket = bucket
        self._org = config.influx_org or "-"
        self._client = InfluxDBClient(
            url=config.influx_url,
            token=token,
            org=self._org,
            timeout=int(config.influx_timeout_s * 1000),
            enable_gzip=True,
            retries=False,
            connection_pool_maxsize=pool_size,
            ssl_ca_cert=config.influx_ca_file or None,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def send(self, data: bytes) -> Response:
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(self._bucket, self._org, record=data)  # default precision: ns
        except ApiException as exc:
            if not exc.status:  # the client's wrapping of a TLS failure: no request was sent
                raise TransportError(
                    redact(f"no HTTP answer: {exc.reason}"), maybe_stored=False
                ) from None
            return Response(
                int(exc.status), _text(exc.body), parse_retry_after(_header(exc.headers))
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(exc) from None
        return Response(204, "")

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return "" if body is None else str(body)


def _header(headers: Any) -> str | None:
    if not headers:
        return None
    value = headers.get("Retry-After")
    return None if value is None else str(value)


def make_transport(config: RecorderConfig, pool_size: int) -> Transport:
    """The transport ``config.influx_api`` names, with ``pool_size`` keep-alive connections."""
    if config.influx_api == "v2":
        return V2Transport(config, pool_size)
    return V1Transport(config, pool_size)
