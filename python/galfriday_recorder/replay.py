"""``replay FILE``: a JSON Lines capture of Kraken WebSocket frames through the recorder.

A line is either the frame exactly as received (a JSON object or array), or a
wrapper ``{"received_at_ns": 1700000000000000000, "frame": "<the frame as a
string>"}``. The wrapper keeps the frame as a string so that its number text,
and so its checksum, survives exactly.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .errors import RecorderError
from .recorder import Recorder


@dataclass
class ReplayResult:
    lines: int = 0
    frames: int = 0
    book_tops: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    wall_s: float = 0.0

    def render(self) -> str:
        kinds = Counter(reason.split(":", 1)[0] for _, reason in self.errors)
        rate = self.frames / self.wall_s if self.wall_s else 0.0
        out = [
            f"replayed {self.frames:,} frames of {self.lines:,} lines in {self.wall_s:.2f} s "
            f"({rate:,.0f} frames/s), {self.book_tops:,} book updates, "
            f"{len(self.errors)} bad lines"
        ]
        out += [f"  {kind}: {count}" for kind, count in kinds.most_common()]
        out += [f"  line {n}: {reason}" for n, reason in self.errors[:10]]
        if len(self.errors) > 10:
            out.append(f"  ... and {len(self.errors) - 10} more")
        return "\n".join(out)


def _unwrap(line: bytes) -> tuple[bytes, int | None]:
    """The frame bytes and optional receive time of one capture line."""
    if not line.startswith(b'{"received_at_ns"') and b'"frame"' not in line[:64]:
        return line, None
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line, None  # the core reports the malformed frame with its position
    if not isinstance(doc, dict) or "frame" not in doc:
        return line, None
    frame, received = doc["frame"], doc.get("received_at_ns")
    if not isinstance(frame, str):
        raise ValueError('"frame" must be the frame as a string, so its numbers stay exact')
    if received is not None and (isinstance(received, bool) or not isinstance(received, int)):
        raise ValueError('"received_at_ns" must be an integer')
    return frame.encode(), received


def replay_file(
    rec: Recorder,
    path: Path,
    *,
    strict: bool = False,
    realtime: bool = False,
    progress: bool = False,
) -> ReplayResult:
    """Feed every line of ``path``; bad lines are reported with their number and skipped
    (or, with ``strict``, end the replay)."""
    result = ReplayResult()
    t0 = time.perf_counter()
    total = path.stat().st_size or 1
    done_bytes = 0
    first_rx: int | None = None
    next_tick = time.perf_counter() + 1.0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            done_bytes += len(raw)
            line = raw.strip()
            if not line:
                continue
            result.lines += 1
            try:
                frame, received_at = _unwrap(line)
                if realtime and received_at is not None:
                    first_rx = received_at if first_rx is None else first_rx
                    lag = (received_at - first_rx) / 1e9 - (time.perf_counter() - t0)
                    if lag > 0:
                        time.sleep(lag)
                result.book_tops += len(rec.on_market_frame(frame, received_at))
                result.frames += 1
            except (RecorderError, ValueError) as exc:
                result.errors.append((number, f"{type(exc).__name__}: {exc}"))
                if strict:
                    break
            if progress and time.perf_counter() >= next_tick:
                _bar(done_bytes / total)
                next_tick += 1.0
    if progress:
        _bar(1.0)
        print(file=sys.stderr)
    result.wall_s = time.perf_counter() - t0
    return result


def _bar(fraction: float, width: int = 40) -> None:
    filled = int(fraction * width)
    print(
        f"\r  [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%}",
        end="",
        file=sys.stderr,
        flush=True,
    )
