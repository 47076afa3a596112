"""Secrets out of every text the recorder shows, whatever characters they hold.

A pattern cannot find a password that holds ``@``, ``:``, ``/``, a space or a
quote, and a driver may quote it percent-encoded or escaped. So the secrets are
taken by *parsing* each configuration's DSN and URL (psycopg's own conninfo
parser, ``urllib``), registered when the configuration is built, and every form
they can take in text (raw, percent-encoded, key=value-escaped, repr-escaped) is
masked wherever :func:`redact` runs: reprs, log lines, exception messages. The
patterns still mask the passwords of DSNs that belong to no configuration.
"""

from __future__ import annotations

import re
import threading
import urllib.parse

import psycopg
from psycopg.conninfo import conninfo_to_dict

MASK = "***"
_DSN_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

_lock = threading.Lock()
_forms: tuple[str, ...] = ()  # every registered secret in every form, longest first


def dsn_password(dsn: str) -> str | None:
    """The password of a PostgreSQL DSN (URI or key=value), as libpq will read it."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return None
    return None if password is None else str(password)


def url_password(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


def _text_forms(secret: str) -> set[str]:
    """How a secret may appear in text: as is, percent-encoded, escaped for conninfo or repr."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        secret.replace("\\", "\\\\").replace("'", "\\'"),
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
    }


def register_secrets(*secrets: str | None) -> None:
    """Mask these (empty and ``None`` ignored) in everything :func:`redact` sees from now on."""
    global _forms
    new = {form for s in secrets if s for form in _text_forms(s) if form}
    with _lock:
        if new <= set(_forms):
            return
        _forms = tuple(sorted(new | set(_forms), key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret and any DSN or URL password masked."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return _KV_PASSWORD.sub(rf"\1{MASK}", _DSN_PASSWORD.sub(rf"\1{MASK}\3", text))


__all__ = ["MASK", "dsn_password", "redact", "register_secrets", "url_password"]
