"""One process per journal or spool: an exclusive, non-blocking ``flock`` on a 0600 file."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def lock_exclusive(path: Path) -> int | None:
    """The locked file's descriptor (close it to unlock), or None when another process
    holds the lock. The file is created if needed and made 0600 whatever the umask."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
