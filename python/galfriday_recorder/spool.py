"""The on-disk spool: batches InfluxDB could not take, kept as gzip line-protocol files.

One file per batch, named ``<seq>-<m|o>-<lines>.lp.gz``: ``seq`` (a monotonic
nanosecond clock) sorts oldest first across restarts, ``m``/``o`` says market
or other data so the cap can drop market data first, and the line count lets
drops be counted and the status be shown without reading the file. Files are
written atomically (temp file, fsync, rename, fsync of the directory) with mode
0600, so a crash leaves either the whole batch or nothing. A file whose replay
was split and stopped part way is rewritten, under the same ``seq``, to hold only
the lines not yet settled; should a crash leave both versions, the one with fewer
lines is the newer and the other is deleted on open.

A :class:`Spool` is not thread-safe: the writer calls it from one disk thread.
An exclusive ``flock`` on ``.lock`` keeps two live recorders off one spool; the
kernel releases it when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RecorderError
from .filelock import lock_exclusive

if TYPE_CHECKING:
    from .config import RecorderConfig

log = logging.getLogger("galfriday_recorder.spool")

_SUFFIX = ".lp.gz"
_TMP_PREFIX = ".tmp-"


class SpoolLocked(RecorderError):
    """Another live recorder process owns this spool directory."""


@dataclass(frozen=True)
class SpoolFile:
    name: str
    size: int
    lines: int
    market: bool


def _parse_name(name: str) -> tuple[int, bool, int] | None:
    """``(seq, market, lines)`` of a spool file name, or None for anything else."""
    if not name.endswith(_SUFFIX):
        return None
    parts = name[: -len(_SUFFIX)].split("-")
    if len(parts) != 3 or parts[1] not in ("m", "o"):
        return None
    try:
        return int(parts[0]), parts[1] == "m", int(parts[2])
    except ValueError:
        return None


def scan(directory: Path) -> list[SpoolFile]:
    """The spool files in ``directory``, oldest first (of two with one seq, the rewritten one)."""
    found: dict[int, SpoolFile] = {}
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            parsed = _parse_name(entry.name)
            if parsed is None:
                continue
            seq, market, lines = parsed
            if seq in found and found[seq].lines <= lines:
                continue
            with contextlib.suppress(FileNotFoundError):
                found[seq] = SpoolFile(entry.name, entry.stat().st_size, lines, market)
    return [found[seq] for seq in sorted(found)]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A size-bounded, crash-safe FIFO of line-protocol batches under ``directory``."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._files: dict[str, SpoolFile] = {}
        self._busy: set[str] = set()
        self._last_seq = 0
        self._lock_fd: int | None = None
        self.bytes = 0
        self.lines_dropped = 0

    def open(self) -> None:
        """Lock the directory, clear temp files a crash left, and index what is spooled."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = lock_exclusive(self.directory / ".lock")
        if fd is None:
            raise SpoolLocked(f"spool {self.directory} is in use by another process")
        self._lock_fd = fd
        for path in self.directory.glob(f"{_TMP_PREFIX}*"):
            path.unlink(missing_ok=True)
        self._files = {f.name: f for f in scan(self.directory)}
        for path in self.directory.glob(f"*{_SUFFIX}"):
            if path.name not in self._files and _parse_name(path.name) is not None:
                path.unlink()  # superseded by its rewrite (a crash came between the two)
        self.bytes = sum(f.size for f in self._files.values())
        if self._files:
            self._last_seq = max(_seq(name) for name in self._files)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def files(self) -> int:
        return len(self._files)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self._files.values())

    def add(self, data: bytes, lines: int, market: bool) -> bool:
        """Spool one batch; False if the size cap dropped it (drops are counted and logged)."""
        blob = gzip.compress(data, compresslevel=1, mtime=0)
        if not self._make_room(len(blob), market):
            self._note_drop(lines, market)
            return False
        seq = max(time.time_ns(), self._last_seq + 1)
        self._last_seq = seq
        f = self._write(seq, blob, lines, market)
        self._files[f.name] = f
        self.bytes += f.size
        return True

    def _write(self, seq: int, blob: bytes, lines: int, market: bool) -> SpoolFile:
        """Write one file atomically, mode 0600: a crash leaves all of it or nothing."""
        name = f"{seq:020d}-{'m' if market else 'o'}-{lines}{_SUFFIX}"
        tmp = self.directory / f"{_TMP_PREFIX}{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / name)
        _fsync_dir(self.directory)
        return SpoolFile(name, len(blob), lines, market)

    def rewrite(self, f: SpoolFile, data: bytes) -> SpoolFile:
        """Keep only ``data`` (the lines of a taken file not yet settled) in its place.

        A replay split to isolate refused lines and stopped part way (the server
        went away, the process stopped) must not send, nor count, its settled
        lines again. The new file takes the old one's seq and stays taken.
        """
        blob = gzip.compress(data, compresslevel=1, mtime=0)
        new = self._write(_seq(f.name), blob, data.count(b"\n"), f.market)
        if new.name != f.name:
            (self.directory / f.name).unlink(missing_ok=True)
            _fsync_dir(self.directory)
        self._files = {
            (new.name if name == f.name else name): (new if name == f.name else old)
            for name, old in self._files.items()
        }
        self.bytes += new.size - f.size
        self._busy.discard(f.name)
        self._busy.add(new.name)
        return new

    def _make_room(self, size: int, market: bool) -> bool:
        """Drop old files until ``size`` more bytes fit: market data first, then other data.

        False if the new batch cannot fit: a market batch never pushes out other data.
        """
        if size > self.max_bytes:
            return False
        while self.bytes + size > self.max_bytes:
            victim = self._oldest(market=True)
            if victim is None and not market:
                victim = self._oldest(market=False)
            if victim is None:
                return False
            self._delete(victim)
            self._note_drop(victim.lines, victim.market)
        return True

    def _note_drop(self, lines: int, market: bool) -> None:
        self.lines_dropped += lines
        kind = "market" if market else "non-market"
        log.warning(
            "spool at its cap of %d bytes: dropped %d %s lines", self.max_bytes, lines, kind
        )

    def _oldest(self, *, market: bool) -> SpoolFile | None:
        for f in self._files.values():
            if f.market == market and f.name not in self._busy:
                return f
        return None

    def _delete(self, f: SpoolFile) -> None:
        (self.directory / f.name).unlink(missing_ok=True)
        if self._files.pop(f.name, None) is not None:
            self.bytes -= f.size
        self._busy.discard(f.name)

    def take_oldest(self) -> tuple[SpoolFile, bytes] | None:
        """The oldest file and its lines, kept from the cap until :meth:`done` or :meth:`release`.

        A file that cannot be read (it can only be damaged from outside) is moved
        aside to ``*.corrupt``, logged, counted as dropped, and skipped.
        """
        for f in list(self._files.values()):
            if f.name in self._busy:
                continue
            path = self.directory / f.name
            try:
                data = gzip.decompress(path.read_bytes())
            except (OSError, EOFError, zlib.error) as exc:
                log.error("spool file %s is unreadable (%s); moved aside", path, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(f.name + ".corrupt"))
                self._delete(f)
                self.lines_dropped += f.lines
                continue
            self._busy.add(f.name)
            return f, data
        return None

    def done(self, f: SpoolFile) -> None:
        """The file's lines are in InfluxDB: delete it."""
        self._delete(f)

    def release(self, f: SpoolFile) -> None:
        """The file could not be sent this time: keep it for the next attempt."""
        self._busy.discard(f.name)


def _seq(name: str) -> int:
    parsed = _parse_name(name)
    return parsed[0] if parsed else 0


def spool_status(config: RecorderConfig) -> dict[str, Any]:
    """What the spool holds (``galfriday-recorder spool status``), read from file names only."""
    directory = config.spool_dir
    files = scan(directory)
    market = [f for f in files if f.market]
    return {
        "directory": str(directory),
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "lines": sum(f.lines for f in files),
        "market_files": len(market),
        "market_lines": sum(f.lines for f in market),
        "oldest": files[0].name if files else None,
        "newest": files[-1].name if files else None,
        "in_use": _locked(directory),
    }


def _locked(directory: Path) -> bool:
    """True when a live recorder holds the spool's lock."""
    lock = directory / ".lock"
    if not lock.exists():
        return False
    fd = lock_exclusive(lock)
    if fd is None:
        return True
    os.close(fd)
    return False
