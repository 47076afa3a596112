"""The time-series writer: line protocol in from any thread, out to InfluxDB, never blocking.

Promise 3 of the design: time series degrade, never block. :meth:`SeriesWriter.write`
only appends to a deque. On the background loop a pump cuts what was handed
over into batches (``batch_max_lines`` lines, :data:`MAX_BATCH_BYTES` bytes or
``batch_interval_s`` seconds, whichever comes first, market and other data
apart), and senders post them on executor threads:

* 2xx: done. 400 about the lines (a parse error, a type conflict, a partial
  write): the batch is split in halves and each half sent again, recursively,
  until every refused line stands alone; the good lines are delivered and
  each refused one is counted and logged. The body cannot be trusted to count
  them: InfluxDB 1.x refuses a whole batch for a type conflict inside it,
  reports one parse error for lines an unbalanced quote ran together, and
  leaves parse errors out of a partial write's message when a later point is
  dropped. Resending a stored point overwrites it with itself, and the halves
  go in order, so the last write of a point still wins. Should a part meet a
  retryable failure, or the writer stop, only the parts not yet settled are
  retried or spooled; a spool file being replayed is rewritten to hold just those.
  Another final 4xx rejects the batch as it is. 413: the batch is split in halves, recursively.
  Anything else (a 3xx from a proxy or a wrong URL) is treated like a 401.
* 5xx, 408, 429, timeouts, connection errors: retried with exponential backoff
  and jitter, honouring ``Retry-After``, for at most :data:`FRESH_RETRY_BUDGET_S`
  so fresh data never queues behind a dead server; then the batch goes to the
  disk spool and the server is marked down. 401/403/404 (bad credentials, no
  such database) spool at once and are probed slowly, never in a tight loop.
* While the server is down new batches go straight to the spool. A replayer
  probes with the oldest spool file and, once the server answers, replays the
  spool oldest first beside fresh data until it is empty. A spool file is
  deleted only after its write succeeded; InfluxDB overwrites a point with the
  same series and timestamp, so a resend is harmless (at least once).

A failed request does not prove the lines were not stored: InfluxDB 1.x shutting
down answers 500 to writes it has already kept, and a timeout or a connection
lost mid-request says nothing either way. ``lines_in_doubt`` counts the lines of
such requests (once per request), so ``lines_dropped`` (lines the spool cap
discarded unconfirmed) is an upper bound on what InfluxDB is missing, and
``lines_dropped - lines_in_doubt`` a lower one.

Memory stays bounded: beyond :data:`MAX_READY_BYTES` of batches waiting for a
sender the oldest are spilled to the spool (a burst or a slow server; the spool
replays them as soon as the senders catch up), and should the loop itself stall,
``write`` drops (and counts) what arrives past ``buffer_max_bytes`` untaken.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from .config import RecorderConfig
from .errors import ConfigError, InvalidPoint, RecorderError
from .influx import Transport, TransportError, make_transport
from .influxql import InfluxQL, create_database_hint
from .runtime import BackgroundLoop
from .spool import Spool

log = logging.getLogger("galfriday_recorder.series")

T = TypeVar("T")

MAX_BATCH_BYTES = 5_000_000  # under InfluxDB 1.x's 25 MB and 3.x's 10 MiB request limits
MAX_READY_BYTES = 64 * 1024 * 1024  # batches waiting for a sender before the oldest spill
SENDERS = 2  # concurrent fresh requests; the replayer adds one more
FRESH_RETRY_BUDGET_S = 3.0
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0
BLOCKED_BACKOFF_BASE_S = 2.0  # 401/403/404 need a human (or a CREATE DATABASE): probe slowly
BLOCKED_BACKOFF_CAP_S = 30.0
WAKE_BYTES = 256 * 1024  # handed-over bytes that wake the pump before its next tick
_LATENCY_SAMPLES = 2048
_LOGGED_BODY_CHARS = 4000
# A 400 whose body says this is about some of the lines, not about the request.
_LINE_ERRORS = re.compile(r"unable to parse|partial write|type conflict|cannot parse")
# Raw text InfluxDB 1.x answers 204 to and stores nothing of: a blank line (empty, or
# only spaces and tabs), a comment (``#`` first after any spaces or tabs).
_SILENT_FIRST = re.compile(rb"[ \t]*(?:[#\n]|\Z)")
_SILENT_LATER = re.compile(rb"\n[ \t]*[#\n]|\n[ \t]+\Z")
# A line's own timestamp, last: without one the server stamps the point on arrival, and
# each resend (a split, a retry, a spool replay) would store it again.
_STAMPED = re.compile(rb" -?\d+[ \t]*(?:\n|\Z)")


class SeriesWriterClosed(RecorderError):
    """``write`` after ``close``: the data would never be sent."""


@dataclass(frozen=True)
class _Failure:
    """Why a request did not get the lines in, and when to try again."""

    reason: str
    retry_after: float | None = None
    blocked: bool = False  # 401/403/404: configuration, not load


# Told each part of a request's lines that is settled (stored, or refused and counted),
# in order: the settled parts of a split batch are always its first lines.
Settled = Callable[[bytes, int], Awaitable[None]]


@dataclass
class _Batch:
    seq: int
    data: bytes
    lines: int
    market: bool


class _Builder:
    """Lines of one kind (market or other) accumulating into the next batch."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lines = 0
        self.bytes = 0
        self.since = 0.0

    def add(self, chunk: bytes, lines: int) -> None:
        if not self.chunks:
            self.since = time.monotonic()
        self.chunks.append(chunk)
        self.lines += lines
        self.bytes += len(chunk)

    def take(self) -> tuple[bytes, int]:
        data, lines = b"".join(self.chunks), self.lines
        self.chunks, self.lines, self.bytes = [], 0, 0
        return data, lines


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of ``base * 2**attempt``, capped."""
    return min(cap, base * 2.0**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter


def _prefix(chunk: bytes, start: int, max_lines: int, max_bytes: int) -> tuple[int, int]:
    """End offset and count of the most whole lines from ``start`` within both limits."""
    end, count = start, 0
    while count < max_lines:
        newline = chunk.find(b"\n", end)
        if newline < 0 or newline + 1 - start > max_bytes:
            break
        end, count = newline + 1, count + 1
    return end, count


def _halves(data: bytes) -> tuple[bytes, bytes]:
    """Split newline-terminated lines at the line boundary nearest the middle."""
    cut = data.find(b"\n", len(data) // 2 - 1) + 1
    if cut >= len(data):
        cut = data.rfind(b"\n", 0, len(data) - 1) + 1
    return data[:cut], data[cut:]


class SeriesWriter:
    """Batches line protocol to InfluxDB (v1 or v2 API) with retries and a disk spool."""

    def __init__(self, config: RecorderConfig, loop: BackgroundLoop | None = None) -> None:
        if not config.influx_url:
            raise ConfigError("influx_url is not set: the series writer has nowhere to write")
        self._config = config
        self._own_loop = loop is None
        self._bg = BackgroundLoop("galfriday-series") if loop is None else loop
        self._spool = Spool(config.spool_dir, config.spool_max_bytes)
        self._inbox: deque[tuple[bytes, bool]] = deque()
        # Written from any thread without a lock: a lost update only shifts a wake-up.
        self._inbox_bytes = 0
        self._wake_armed = False
        self._waker: Callable[[], object] | None = None
        self._closed = False
        self._started = False
        self._builders = {True: _Builder(), False: _Builder()}
        self._ready: deque[_Batch] = deque()
        self._ready_bytes = 0
        self._live: dict[int, _Batch] = {}  # handed to senders or the spool, not yet settled
        self._seq = 0
        self._up = True
        self._next_probe = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._counts = dict.fromkeys(
            (
                "lines_written",
                "batches_written",
                "retries",
                "lines_spooled",
                "lines_rejected",
                "lines_in_doubt",
            ),
            0,
        )
        self._lines_lost = 0  # could not even be spooled (disk error)
        self._lines_shed = 0  # handed over past buffer_max_bytes
        self._shed_warned = False
        self._transport: Transport | None = None
        self._http: concurrent.futures.ThreadPoolExecutor | None = None
        self._disk_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._may_create_database = config.influx_api == "v1" and config.influx_create_database

    # -- any thread -------------------------------------------------------
    def start(self) -> None:
        """Open the spool (what a previous process left gets replayed) and start sending.

        Makes no network request, so it returns at once whether or not InfluxDB is up.
        """
        if self._started:
            return
        if self._closed:
            raise SeriesWriterClosed("this series writer was closed")
        self._spool.open()
        self._transport = make_transport(self._config, SENDERS + 1)
        self._http = concurrent.futures.ThreadPoolExecutor(
            SENDERS + 1, thread_name_prefix="galfriday-series-http"
        )
        self._disk_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="galfriday-series-disk"
        )
        if self._own_loop:
            self._bg.start()
        self._started = True
        self._bg.call_soon(self._launch)

    def write(self, lines: bytes, *, market: bool = False) -> None:
        """Hand over newline-terminated line protocol; no I/O, no lock, any thread.

        ``market`` marks market data (``market_data_l2``/``market_data_ohlcv``),
        which the spool drops first when it reaches its size cap. Raises
        ``InvalidPoint``, taking none of it, for a blank or comment line (InfluxDB
        would answer 204 and store nothing) or a line not ending with its own
        timestamp (the server would stamp each resend anew), so every line taken
        is either stored (``lines_written``) or refused (``lines_rejected``).
        """
        if lines and (
            _SILENT_FIRST.match(lines)
            or _SILENT_LATER.search(lines)
            or len(_STAMPED.findall(lines)) != lines.count(b"\n") + (lines[-1:] != b"\n")
        ):
            raise _refused_line(lines)
        self.write_encoded(lines, market=market)

    def write_encoded(self, lines: bytes, *, market: bool = False) -> None:
        """:meth:`write` without the scan, for ``encode_line``'s and the market core's
        lines, which are never blank or comments and always carry their timestamp."""
        if self._closed:
            raise SeriesWriterClosed("write() after close(): the lines would never be sent")
        if self._inbox_bytes >= self._config.buffer_max_bytes:  # only if the loop stalls
            self._shed(lines)
            return
        self._inbox.append((lines, market))
        self._inbox_bytes += len(lines)
        if self._inbox_bytes >= WAKE_BYTES and not self._wake_armed and self._waker is not None:
            self._wake_armed = True
            self._waker()

    def _shed(self, lines: bytes) -> None:
        self._lines_shed += lines.count(b"\n") or 1
        if not self._shed_warned:
            self._shed_warned = True
            log.error(
                "%d bytes handed over and not taken: the background loop is stalled; "
                "dropping new lines (counted in lines_dropped)",
                self._inbox_bytes,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until all lines handed over so far are in InfluxDB or in the spool.

        While the server answers, also wait for the spool to empty. True if
        everything reached the server (nothing pending, spool empty).
        """
        return self._wait(self._settle(timeout, drain_spool=False), timeout)

    def drain_spool(self, timeout: float | None = None) -> bool:
        """Like :meth:`flush`, but keep waiting while the spool replays, even through an outage."""
        return self._wait(self._settle(timeout, drain_spool=True), timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop; whatever could not be sent stays in the spool for the next start."""
        if self._closed:
            return True
        ok = self.flush(timeout) if self._started else not self._inbox
        self._closed = True
        if not self._started:
            return ok
        self._bg.submit(self._shutdown()).result()
        assert self._http is not None
        assert self._disk_pool is not None
        assert self._transport is not None
        self._http.shutdown(wait=False, cancel_futures=True)
        self._disk_pool.submit(self._spool.close)
        self._disk_pool.shutdown(wait=True)
        self._transport.close()
        if self._own_loop:
            self._bg.stop()
        return ok

    def stats(self) -> dict[str, int | float]:
        """Counters for the recorder's self-metrics; cheap, any thread."""
        latencies = sorted(self._latencies)
        inbox_lines = sum(chunk.count(b"\n") for chunk, _ in list(self._inbox))
        return {
            **self._counts,
            "spool_bytes": self._spool.bytes,
            "spool_files": self._spool.files,
            "lines_dropped": self._spool.lines_dropped + self._lines_lost + self._lines_shed,
            "write_latency_ms_p50": _percentile(latencies, 0.50),
            "write_latency_ms_p99": _percentile(latencies, 0.99),
            "influx_up": int(self._up),
            "pending_lines": inbox_lines
            + sum(b.lines for b in self._builders.values())
            + sum(b.lines for b in list(self._live.values())),
        }

    def _wait(self, coro: Coroutine[Any, Any, bool], timeout: float | None) -> bool:
        if not self._started or self._closed:
            coro.close()
            return False
        if self._bg.in_loop_thread():
            coro.close()
            raise RuntimeError("flush()/drain_spool() would deadlock on the writer's own loop")
        future = self._bg.submit(coro)
        try:
            return future.result(None if timeout is None else timeout + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False

    # -- loop thread ------------------------------------------------------
    def _launch(self) -> None:
        self._wake = asyncio.Event()
        self._ready_event = asyncio.Event()
        self._spool_event = asyncio.Event()
        self._progress = asyncio.Event()
        loop = self._bg.loop
        self._waker = functools.partial(loop.call_soon_threadsafe, self._wake.set)
        self._workers = [
            loop.create_task(self._pump()),
            loop.create_task(self._replay()),
            *(loop.create_task(self._send()) for _ in range(SENDERS)),
        ]

    async def _run(
        self, pool: concurrent.futures.Executor | None, fn: Callable[..., T], *args: Any
    ) -> T:
        return await self._bg.loop.run_in_executor(pool, fn, *args)

    def _notify(self) -> None:
        """Wake whoever waits for a batch to settle or the spool to change."""
        self._progress.set()
        self._progress = asyncio.Event()

    async def _pump(self) -> None:
        """Move handed-over lines into batches; cut batches that are full or old enough."""
        tick = min(0.05, self._config.batch_interval_s / 2)
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            self._wake.clear()
            self._cut_batches(force=False)

    def _cut_batches(self, *, force: bool) -> None:
        self._inbox_bytes = 0
        self._wake_armed = False
        while self._inbox:
            chunk, market = self._inbox.popleft()
            if chunk and not chunk.endswith(b"\n"):
                chunk += b"\n"
            self._add(chunk, market)
        now = time.monotonic()
        for market, builder in self._builders.items():
            if builder.lines and (force or now - builder.since >= self._config.batch_interval_s):
                self._dispatch(builder, market)

    def _add(self, chunk: bytes, market: bool) -> None:
        builder = self._builders[market]
        max_lines = self._config.batch_max_lines
        start = 0
        while start < len(chunk):
            lines_left = max_lines - builder.lines
            bytes_left = MAX_BATCH_BYTES - builder.bytes
            count = chunk.count(b"\n", start)
            if count <= lines_left and len(chunk) - start <= bytes_left:
                end = len(chunk)  # the common case: the rest fits whole
            else:
                end, count = _prefix(chunk, start, lines_left, bytes_left)
            if count == 0:
                if builder.lines:
                    self._dispatch(builder, market)
                    continue
                end, count = chunk.index(b"\n", start) + 1, 1  # one oversized line goes alone
            builder.add(chunk if (start, end) == (0, len(chunk)) else chunk[start:end], count)
            start = end
            if builder.lines >= max_lines or builder.bytes >= MAX_BATCH_BYTES:
                self._dispatch(builder, market)

    def _dispatch(self, builder: _Builder, market: bool) -> None:
        data, lines = builder.take()
        self._seq += 1
        batch = _Batch(self._seq, data, lines, market)
        self._live[batch.seq] = batch
        if not self._up:
            self._spawn(self._spool_batch(batch))
            return
        self._ready.append(batch)
        self._ready_bytes += len(batch.data)
        while self._ready_bytes > MAX_READY_BYTES:
            self._spawn(self._spool_batch(self._take_ready()))
        self._ready_event.set()

    def _take_ready(self) -> _Batch:
        batch = self._ready.popleft()
        self._ready_bytes -= len(batch.data)
        return batch

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._bg.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settled(self, batch: _Batch) -> None:
        self._live.pop(batch.seq, None)
        self._notify()

    async def _send(self) -> None:
        """One sender: fresh batches to the server while it is up, else to the spool."""
        while True:
            while not self._ready:
                self._ready_event.clear()
                await self._ready_event.wait()
            batch = self._take_ready()
            await self._send_fresh(batch)

    async def _send_fresh(self, batch: _Batch) -> None:
        deadline = time.monotonic() + FRESH_RETRY_BUDGET_S
        attempt = 0

        async def settled(part: bytes, lines: int) -> None:  # never send (or spool) it again
            batch.data, batch.lines = batch.data[len(part) :], batch.lines - lines

        while self._up:
            failure = await self._deliver(batch.data, batch.lines, settled)
            if failure is None:
                self._settled(batch)
                return
            self._counts["retries"] += 1
            delay = failure.retry_after
            if delay is None:
                delay = _backoff(attempt, BACKOFF_BASE_S, BACKOFF_CAP_S)
            if failure.blocked or time.monotonic() + delay > deadline:
                self._mark_down(failure, attempt)
                break
            await asyncio.sleep(delay)
            attempt += 1
        await self._spool_batch(batch)

    async def _spool_batch(self, batch: _Batch) -> None:
        if not batch.lines:  # all settled before close() stopped its sender
            self._settled(batch)
            return
        try:
            stored = await self._run(
                self._disk_pool, self._spool.add, batch.data, batch.lines, batch.market
            )
        except OSError as exc:
            self._lines_lost += batch.lines
            log.error("cannot spool %d lines to %s: %s", batch.lines, self._spool.directory, exc)
        else:
            if stored:
                self._counts["lines_spooled"] += batch.lines
        self._settled(batch)
        self._spool_event.set()

    async def _replay(self) -> None:
        """Send the spool oldest first while the server answers; probe it while it does not."""
        attempt = 0
        while True:
            if not self._spool.files:
                self._set_up()  # nothing left to probe with: fresh data will tell
                self._spool_event.clear()
                await self._spool_event.wait()
                continue
            delay = self._next_probe - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            item = await self._run(self._disk_pool, self._spool.take_oldest)
            if item is None:
                continue
            spooled, data = item

            async def settled(part: bytes, lines: int) -> None:
                nonlocal spooled, data
                data = data[len(part) :]
                if not data:
                    return
                try:  # a split stopped part way then resends (and recounts) none of it
                    spooled = await self._run(self._disk_pool, self._spool.rewrite, spooled, data)
                except OSError as exc:  # the file stays whole: its settled lines may go twice
                    log.error("cannot rewrite spool file %s: %s", spooled.name, exc)

            failure = await self._deliver(data, spooled.lines, settled)
            if failure is None:
                await self._run(self._disk_pool, self._spool.done, spooled)
                self._set_up()
                attempt = 0
            else:
                await self._run(self._disk_pool, self._spool.release, spooled)
                self._counts["retries"] += 1
                self._mark_down(failure, attempt)
                attempt += 1
            self._notify()

    def _set_up(self) -> None:
        if not self._up:
            self._up = True
            log.info("InfluxDB answers again; replaying %d spooled files", self._spool.files)

    def _mark_down(self, failure: _Failure, attempt: int) -> None:
        """Send new batches to the spool and probe again after a backoff (slow if blocked)."""
        if failure.blocked:
            delay = _backoff(attempt, BLOCKED_BACKOFF_BASE_S, BLOCKED_BACKOFF_CAP_S)
        else:
            delay = _backoff(attempt, BACKOFF_BASE_S, BACKOFF_CAP_S)
        if failure.retry_after is not None:
            delay = failure.retry_after
        self._next_probe = max(self._next_probe, time.monotonic() + delay)
        if self._up:
            self._up = False
            level = logging.ERROR if failure.blocked else logging.WARNING
            log.log(
                level,
                "InfluxDB write failed (%s); spooling to %s and retrying",
                failure.reason,
                self._spool.directory,
            )

    async def _deliver(self, data: bytes, lines: int, settled: Settled) -> _Failure | None:
        """One request for ``data`` (more when split): None once all its lines are settled.

        ``settled`` hears of each part as it is stored or refused, before the next is sent.
        """
        assert self._transport is not None
        started = time.perf_counter()
        # urllib3's read timeout bounds each recv, not the answer: a server that drips
        # bytes would hold the sender for ever. Resending later is idempotent.
        limit = 2 * self._config.influx_timeout_s
        try:
            response = await asyncio.wait_for(
                self._run(self._http, self._transport.send, data), limit
            )
        except asyncio.TimeoutError:
            return self._failed(lines, f"no complete answer within {limit:g} s", in_doubt=True)
        except asyncio.CancelledError:  # close() with the request out: it may still land
            self._counts["lines_in_doubt"] += lines
            raise
        except TransportError as exc:
            return self._failed(lines, str(exc), in_doubt=exc.maybe_stored)
        except Exception as exc:  # a bug must not kill the sender task: log, back off, retry
            log.exception("unexpected error writing to InfluxDB")
            return self._failed(lines, f"{type(exc).__name__}", in_doubt=True)
        status, body = response.status, response.body.strip()
        if 200 <= status < 300:
            self._latencies.append((time.perf_counter() - started) * 1000.0)
            self._counts["lines_written"] += lines
            self._counts["batches_written"] += 1
            await settled(data, lines)
            return None
        if lines > 1 and (status == 413 or (status == 400 and _LINE_ERRORS.search(body))):
            first, second = _halves(data)
            failure = await self._deliver(first, first.count(b"\n"), settled)
            if failure is not None:
                return failure
            return await self._deliver(second, second.count(b"\n"), settled)
        if status == 404 and "database not found" in body and self._may_create_database:
            self._may_create_database = False  # once per writer: a refusal stays a refusal
            if await self._create_database():
                return await self._deliver(data, lines, settled)
        reason = f"HTTP {status}: {body[:200]}"
        if status == 404 and "database not found" in body:
            reason += f"; create it: {create_database_hint(self._config)}"
        if status in (401, 403, 404) or not 400 <= status < 600:  # 3xx: a proxy or a wrong URL
            return _Failure(reason, response.retry_after, blocked=True)
        if status in (408, 429) or status >= 500:
            return self._failed(lines, reason, response.retry_after, in_doubt=status >= 500)
        self._reject(status, body, data, lines)
        await settled(data, lines)
        return None

    async def _create_database(self) -> bool:
        reader = InfluxQL(self._config)
        try:
            await self._run(self._http, reader.create_database)
        except RecorderError as exc:
            log.error(
                "InfluxDB has no database %r and the recorder could not create it (%s); "
                "points wait in the spool. Create it with: %s",
                self._config.influx_database,
                exc,
                create_database_hint(self._config),
            )
            return False
        finally:
            reader.close()
        log.warning("InfluxDB had no database %r: created it", self._config.influx_database)
        return True

    def _failed(
        self, lines: int, reason: str, retry_after: float | None = None, *, in_doubt: bool
    ) -> _Failure:
        """A retryable failure; ``in_doubt`` when the server may have stored the lines."""
        if in_doubt:
            self._counts["lines_in_doubt"] += lines
        return _Failure(reason, retry_after)

    def _reject(self, status: int, body: str, data: bytes, lines: int) -> None:
        """A final 4xx for one line, or for a batch the body does not blame a line for."""
        self._counts["lines_rejected"] += lines
        log.warning(
            "InfluxDB rejected %d lines (HTTP %d): %s; lines: %r",
            lines,
            status,
            body[:_LOGGED_BODY_CHARS],
            data[:1000],
        )

    async def _settle(self, timeout: float | None, *, drain_spool: bool) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._cut_batches(force=True)
        target = self._seq

        def busy() -> bool:
            oldest = next(iter(self._live), None)
            if oldest is not None and oldest <= target:
                return True
            return bool(self._spool.files) and (self._up or drain_spool)

        while busy():
            progress = self._progress
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                await asyncio.wait_for(progress.wait(), remaining)
            except asyncio.TimeoutError:
                break
        oldest = next(iter(self._live), None)
        return (oldest is None or oldest > target) and not self._spool.files

    async def _shutdown(self) -> None:
        """Stop the tasks, then spool every batch not known to be written."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._cut_batches(force=True)
        for batch in list(self._live.values()):
            await self._spool_batch(batch)


def _refused_line(data: bytes) -> InvalidPoint:
    """The error naming the first line ``write`` refuses, and why."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    for number, line in enumerate(lines, 1):
        rest = line.lstrip(b" \t")
        if not rest or rest.startswith(b"#"):
            why = "a comment" if rest else "a blank line"
            return InvalidPoint(
                f"line {number}: {why} ({line[:80]!r}); InfluxDB 1.x answers 204 to it and "
                "stores nothing, so it is refused here: drop it before writing"
            )
        if not _STAMPED.search(line):
            return InvalidPoint(
                f"line {number}: no timestamp at its end ({line[-80:]!r}); the server would "
                "stamp it on arrival and store it again on each resend: give every line its time"
            )
    raise AssertionError("no line to refuse")  # pragma: no cover - callers checked first


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def spool_replay(config: RecorderConfig, timeout: float) -> dict[str, Any]:
    """Replay the spool to InfluxDB by hand (``galfriday-recorder spool replay``).

    Raises :class:`~galfriday_recorder.spool.SpoolLocked` while a recorder runs
    on the same data directory: that one replays by itself.
    """
    writer = SeriesWriter(config)
    writer.start()
    try:
        drained = writer.drain_spool(timeout)
    finally:
        writer.close(timeout=5.0)
    stats = writer.stats()
    return {
        "drained": drained,
        "lines_replayed": stats["lines_written"],
        "lines_rejected": stats["lines_rejected"],
        "lines_dropped": stats["lines_dropped"],
        "files_left": stats["spool_files"],
        "bytes_left": stats["spool_bytes"],
    }


__all__ = ["SeriesWriter", "SeriesWriterClosed", "spool_replay"]
