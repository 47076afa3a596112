"""A test-only fault hook: kill this process at one step of the writer.

``GALFRIDAY_LEDGER_FAULT=step:n`` (read once, at import) sends SIGKILL to the
process the n-th time the writer reaches ``step``, so crash tests can stop a
recording child exactly there. Steps: ``journal-inside`` (events written,
journal transaction not committed), ``journaled`` (after the journal commit),
``commit`` (before the PostgreSQL transaction), ``committed`` (after it,
before the journal forgets the events), ``settled`` (a part of a refused group
written under its savepoint, the group's transaction still open). Unset,
:data:`ARMED` is false and the call sites cost one global read.
"""

from __future__ import annotations

import os
import signal

_STEP, _, _NTH = os.environ.get("GALFRIDAY_LEDGER_FAULT", "").partition(":")
ARMED = bool(_STEP)
_seen = 0


def reached(step: str) -> None:
    global _seen
    if step != _STEP:
        return
    _seen += 1
    if _seen >= int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
