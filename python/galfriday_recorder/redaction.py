"""Secrets out of every text the recorder shows, whatever characters they hold.

A pattern cannot find a password that holds ``@``, ``:``, ``/``, a space or a
quote, and a driver may quote it percent-encoded or escaped. So the secrets are
taken by *parsing* each configuration's DSN and URL (psycopg's own conninfo
parser, ``urllib``), registered when the configuration is built, and every form
they can take in text (raw, percent-encoded, key=value-escaped, repr-escaped) is
masked wherever :func:`redact` runs: reprs, log lines, exception messages. The
patterns still mask the passwords of DSNs that belong to no configuration.

A form of :data:`ANYWHERE` characters or more is masked wherever it occurs. A
shorter one would mangle unrelated text (a password ``a`` would mask every
``a``), so it is masked only where a secret stands: a form of 4 to 7 characters
as a whole token (no letter, digit or ``_`` touching it), a form of 1 to 3 only
as a value: quoted (a repr, ``key='value'``), between ``:`` and ``@`` (a URL's
userinfo), or after ``=`` up to whitespace, ``&``, ``;``, ``,`` or the end.
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

ANYWHERE = 8  # characters from which a secret's form is masked wherever it occurs
_TOKEN = 4  # characters from which a shorter form is masked as a whole token

_lock = threading.Lock()
_registered: frozenset[str] = frozenset()  # every registered secret in every form
_forms: tuple[str, ...] = ()  # the forms masked anywhere, longest first
_short: re.Pattern[str] | None = None  # the shorter forms, where a secret stands


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
    global _registered, _forms, _short
    new = {form for s in secrets if s for form in _text_forms(s) if form}
    with _lock:
        if new <= _registered:
            return
        _registered |= new
        by_length = sorted(_registered, key=len, reverse=True)
        _forms = tuple(f for f in by_length if len(f) >= ANYWHERE)
        _short = _short_pattern(
            [f for f in by_length if _TOKEN <= len(f) < ANYWHERE],
            [f for f in by_length if len(f) < _TOKEN],
        )


def _short_pattern(token: list[str], tiny: list[str]) -> re.Pattern[str] | None:
    """Where a form too short to mask anywhere is still a secret (see the module doc)."""
    parts = []
    if token:
        parts.append(rf"(?<!\w)(?:{'|'.join(map(re.escape, token))})(?!\w)")
    if tiny:
        alt = f"(?:{'|'.join(map(re.escape, tiny))})"
        parts += [
            rf"(?<=')(?:{alt})(?=')",  # quoted: a repr, a key='value'
            rf'(?<=")(?:{alt})(?=")',
            rf"(?<=:)(?:{alt})(?=@)",  # a URL's userinfo
            rf"(?<==)(?:{alt})(?=[\s&;,]|\Z)",  # key=value, a query string
        ]
    return re.compile("|".join(parts)) if parts else None


def redact(text: str) -> str:
    """``text`` with every registered secret and any DSN or URL password masked."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    if _short is not None:
        text = _short.sub(MASK, text)
    return _KV_PASSWORD.sub(rf"\1{MASK}", _DSN_PASSWORD.sub(rf"\1{MASK}\3", text))


__all__ = ["ANYWHERE", "MASK", "dsn_password", "redact", "register_secrets", "url_password"]
