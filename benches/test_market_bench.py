"""Market-data hot path vs the pure-Python pipeline a user would write, same run.

Run: ``pytest benches/test_market_bench.py --benchmark-only``. Frames come from
the synthetic Kraken v2 generator (valid checksums); the pure-Python pipeline
verifies them too, so both sides do the same work: parse the raw bytes, update
the book, truncate, verify the CRC32, compute spread/mid/WAP/imbalances and
encode one ``market_data_l2`` line with 10 levels per side.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import zlib
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "market"))

from kraken_frames import SyntheticBook, realistic_mix

from galfriday_recorder._core import MarketRecorder

influxdb_client = pytest.importorskip("influxdb_client")
sortedcontainers = pytest.importorskip("sortedcontainers")
Point = influxdb_client.Point
WritePrecision = influxdb_client.WritePrecision
SortedDict = sortedcontainers.SortedDict

RESULTS: dict[str, float] = {}


class PurePythonPipeline:
    """The straightforward Python version: SortedDict books of Decimals,
    zlib.crc32 checksum, influxdb-client ``Point.to_line_protocol()``."""

    def __init__(
        self, depth: int = 10, levels: int = 10, imbalance: tuple[int, ...] = (5, 10)
    ) -> None:
        self.depth = depth
        self.levels = levels
        self.imbalance = imbalance
        self.books: dict[str, tuple[Any, Any]] = {}

    @staticmethod
    def _digits(d: Decimal) -> str:
        return format(d, "f").replace(".", "").lstrip("0")

    def ingest(self, frame: bytes) -> list[str]:
        msg = json.loads(frame, parse_float=Decimal)
        if msg.get("channel") != "book":
            return []
        out = []
        for entry in msg["data"]:
            sym = entry["symbol"]
            if msg["type"] == "snapshot":
                self.books[sym] = (SortedDict(), SortedDict())
            bids, asks = self.books[sym]  # bids keyed by -price: best first
            for lv in entry.get("bids", []):
                if lv["qty"] == 0:
                    bids.pop(-lv["price"], None)
                else:
                    bids[-lv["price"]] = lv["qty"]
            for lv in entry.get("asks", []):
                if lv["qty"] == 0:
                    asks.pop(lv["price"], None)
                else:
                    asks[lv["price"]] = lv["qty"]
            while len(bids) > self.depth:
                bids.popitem(-1)
            while len(asks) > self.depth:
                asks.popitem(-1)
            text = "".join(self._digits(p) + self._digits(q) for p, q in asks.items()[:10])
            text += "".join(self._digits(-p) + self._digits(q) for p, q in bids.items()[:10])
            if zlib.crc32(text.encode()) != entry["checksum"]:
                raise ValueError(f"checksum mismatch for {sym}")
            nb, bq = bids.peekitem(0)
            ap, aq = asks.peekitem(0)
            bp = -nb
            point = Point("market_data_l2").tag("exchange", "kraken").tag("trading_pair", sym)
            for i, (p, q) in enumerate(bids.items()[: self.levels]):
                point.field(f"bid_price_level_{i}", float(-p)).field(
                    f"bid_volume_level_{i}", float(q)
                )
            for i, (p, q) in enumerate(asks.items()[: self.levels]):
                point.field(f"ask_price_level_{i}", float(p)).field(
                    f"ask_volume_level_{i}", float(q)
                )
            point.field("is_snapshot", msg["type"] == "snapshot")
            point.field("spread", float(ap - bp))
            point.field("mid_price", float((ap + bp) / 2))
            point.field("wap", float((bp * aq + ap * bq) / (bq + aq)))
            for n in self.imbalance:
                b = sum(bids.values()[:n])
                a = sum(asks.values()[:n])
                point.field(f"imbalance_{n}", float((b - a) / (b + a)))
            ts = entry.get("timestamp")
            if ts:
                point.time(datetime.fromisoformat(ts.replace("Z", "+00:00")), WritePrecision.NS)
            out.append(point.to_line_protocol())
        return out


@pytest.fixture(scope="module")
def session() -> tuple[bytes, list[bytes]]:
    sb = SyntheticBook(symbol="BTC/USD", depth=10, seed=42)
    snapshot = sb.snapshot_frame().encode()
    frames = [f.encode() for f in sb.cyclic_updates(1000)]
    return snapshot, frames


def _report(name: str, benchmark: Any) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        RESULTS[name] = stats.stats.median


def test_update_pure_python_baseline(benchmark: Any, session: tuple[bytes, list[bytes]]) -> None:
    snapshot, frames = session
    pipe = PurePythonPipeline()
    pipe.ingest(snapshot)
    for f in frames:  # one full cycle: proves the frames and the baseline agree
        assert len(pipe.ingest(f)) == 1
    nxt = itertools.cycle(frames).__next__
    ingest = pipe.ingest
    benchmark.group = "v2 depth-10 book update -> market_data_l2 line"
    benchmark(lambda: ingest(nxt()))
    _report("python_update", benchmark)


def drained_steps(snapshots: list[bytes], frames: list[bytes]) -> tuple[MarketRecorder, Any]:
    """A recorder past one verified cycle of the frames, and the benchmark's
    step: the next frame in, the lines drained every 1,024 frames as the
    writer does."""
    rec = MarketRecorder(depth=10, l2_levels=10)
    for s in snapshots:
        rec.ingest(s)
    for f in frames:
        assert rec.ingest(f)[0].checksum_ok
    rec.drain()
    nxt = itertools.cycle(frames).__next__
    ingest = rec.ingest
    drain = rec.drain
    count = itertools.count().__next__

    def step() -> None:
        ingest(nxt())
        if not count() & 1023:
            drain()

    return rec, step


def test_update_rust_core(benchmark: Any, session: tuple[bytes, list[bytes]]) -> None:
    snapshot, frames = session
    rec, step = drained_steps([snapshot], frames)
    benchmark.group = "v2 depth-10 book update -> market_data_l2 line"
    benchmark(step)
    _speedup(benchmark, rec, "update")


def _speedup(benchmark: Any, rec: MarketRecorder, what: str) -> None:
    """Record the Rust row, and its ratio to the Python row of the same run."""
    _report(f"rust_{what}", benchmark)
    stats = rec.stats()
    benchmark.extra_info["core_ingest_ns_p50"] = stats["ingest_ns_p50"]
    benchmark.extra_info["core_ingest_ns_p99"] = stats["ingest_ns_p99"]
    rust, python = RESULTS.get(f"rust_{what}"), RESULTS.get(f"python_{what}")
    if rust and python:
        ratio = python / rust
        benchmark.extra_info["speedup_vs_python"] = round(ratio, 1)
        print(
            f"\n{what} median: rust {rust * 1e9:.0f} ns, python {python * 1e9:.0f} ns, "
            f"ratio {ratio:.0f}x; core-internal p50 {stats['ingest_ns_p50']} ns, "
            f"p99 {stats['ingest_ns_p99']} ns"
        )


MIX_GROUP = "realistic mix: 2 symbols, depth 10, 5/8 decimals, 1-3 levels per update, drained"


@pytest.fixture(scope="module")
def mix() -> tuple[list[bytes], list[bytes]]:
    snapshots, frames = realistic_mix()
    return [s.encode() for s in snapshots], [f.encode() for f in frames]


def test_mix_pure_python_baseline(benchmark: Any, mix: tuple[list[bytes], list[bytes]]) -> None:
    snapshots, frames = mix
    pipe = PurePythonPipeline()
    for s in snapshots:
        pipe.ingest(s)
    for f in frames:  # one full cycle: the frames and the baseline agree
        assert len(pipe.ingest(f)) == 1
    nxt = itertools.cycle(frames).__next__
    ingest = pipe.ingest
    benchmark.group = MIX_GROUP
    benchmark(lambda: ingest(nxt()))
    _report("python_mix", benchmark)


def test_mix_rust_core(benchmark: Any, mix: tuple[list[bytes], list[bytes]]) -> None:
    """Ingest plus drain, drained every 1,024 frames as the writer does."""
    rec, step = drained_steps(*mix)
    benchmark.group = MIX_GROUP
    benchmark(step)
    _speedup(benchmark, rec, "mix")


def test_update_harness_overhead(benchmark: Any, session: tuple[bytes, list[bytes]]) -> None:
    """The Rust step's own Python overhead (next frame, drain counter, call) with
    ``len`` standing in for ``ingest``: read the Rust row minus this one as the
    cost of the call itself."""
    _, frames = session
    nxt = itertools.cycle(frames).__next__
    count = itertools.count().__next__

    def step() -> None:
        len(nxt())
        if not count() & 1023:
            len(frames)

    benchmark.group = "reference: Python harness of the update benchmark"
    benchmark(step)


def test_checksum_python_baseline(benchmark: Any, session: tuple[bytes, list[bytes]]) -> None:
    snapshot, _ = session
    pipe = PurePythonPipeline()
    pipe.ingest(snapshot)
    bids, asks = pipe.books["BTC/USD"]
    digits = PurePythonPipeline._digits

    def checksum() -> int:
        text = "".join(digits(p) + digits(q) for p, q in asks.items()[:10])
        text += "".join(digits(-p) + digits(q) for p, q in bids.items()[:10])
        return zlib.crc32(text.encode())

    benchmark.group = "Kraken checksum, depth-10 book"
    benchmark(checksum)


def test_checksum_rust(benchmark: Any, session: tuple[bytes, list[bytes]]) -> None:
    snapshot, _ = session
    rec = MarketRecorder()
    rec.ingest(snapshot)
    view = rec.book("BTC/USD")
    benchmark.group = "Kraken checksum, depth-10 book"
    benchmark(view.checksum)  # includes the Python call
    if not hasattr(rec, "_checksum_ns"):  # built without the bench feature
        return
    in_rust = min(rec._checksum_ns("BTC/USD", 200_000) for _ in range(5))
    benchmark.extra_info["rust_loop_ns_per_checksum"] = round(in_rust, 1)
    print(f"\nchecksum timed in a Rust loop: {in_rust:.0f} ns")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_sustained_stream_4_symbols(benchmark: Any) -> None:
    total = int(os.environ.get("GALFRIDAY_BENCH_UPDATES", "1000000"))
    books = [SyntheticBook(symbol=f"S{i}/USD", depth=10, seed=100 + i) for i in range(4)]
    snapshots = [b.snapshot_frame().encode() for b in books]
    streams = [[f.encode() for f in b.cyclic_updates(2500)] for b in books]
    interleaved = [f for group in zip(*streams, strict=True) for f in group]  # 20_000 frames
    rec = MarketRecorder()
    for s in snapshots:
        rec.ingest(s)
    rss: list[int] = []
    drained = 0

    def run() -> float:
        nonlocal drained
        ingest = rec.ingest
        done = 0
        start = time.perf_counter()
        quarter = max(total // 4, 1)
        while done < total:
            for f in interleaved[: min(len(interleaved), total - done)]:
                ingest(f)
            done += min(len(interleaved), total - done)
            drained += len(rec.drain())
            if done % quarter < len(interleaved) or done == total:
                rss.append(_rss_bytes())
        return time.perf_counter() - start

    elapsed = benchmark.pedantic(run, rounds=1, iterations=1)
    if elapsed is None:  # benchmark disabled
        return
    per_s = total / elapsed
    growth = rss[-1] - rss[0]
    benchmark.extra_info.update(
        updates=total,
        updates_per_s=round(per_s),
        rss_first_mb=round(rss[0] / 2**20, 1),
        rss_last_mb=round(rss[-1] / 2**20, 1),
        line_bytes=drained,
    )
    print(
        f"\n{total} updates over 4 symbols in {elapsed:.2f} s = {per_s:,.0f} updates/s; "
        f"RSS {rss[0] / 2**20:.1f} -> {rss[-1] / 2**20:.1f} MB; {drained / 2**20:.0f} MB of lines"
    )
    assert rec.stats()["out_of_sync"] == 0
    assert growth < 16 * 2**20, rss


def _levels_frame(n: int, ascending: bool) -> bytes:
    """One v2 update carrying n bid levels (no checksum: nothing to verify at this size)."""
    prices = range(1_000, 1_000 + n) if ascending else range(1_000 + n - 1, 999, -1)
    levels = ",".join(f'{{"price":{p / 100:.2f},"qty":1.00000000}}' for p in prices)
    return (
        f'{{"channel":"book","type":"update","data":[{{"symbol":"P/USD",'
        f'"bids":[{levels}],"asks":[]}}]}}'
    ).encode()


@pytest.mark.parametrize("order", ["descending_baseline", "ascending"])
@pytest.mark.parametrize("n", [1_000, 10_000, 100_000, 300_000])
def test_frame_of_n_levels(benchmark: Any, n: int, order: str) -> None:
    """Work per frame is O(N log N) whatever the order: ns per level stays flat
    in N and ascending bids (each one the new best) cost what descending do.
    300,000 levels is a 10 MB frame."""
    frame = _levels_frame(n, order == "ascending")
    rec = MarketRecorder(max_frame_bytes=16 * 2**20)
    rec.ingest(
        '{"channel":"book","type":"snapshot","data":[{"symbol":"P/USD",'
        '"bids":[{"price":1.00,"qty":1.00000000}],"asks":[{"price":99999.00,"qty":1.00000000}]}]}'
    )
    benchmark.group = f"one update frame of {n:,} bid levels ({len(frame) / 1e6:.2g} MB)"
    benchmark.pedantic(rec.ingest, args=(frame,), rounds=10 if n >= 100_000 else 20, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["ns_per_level"] = round(stats.stats.median / n * 1e9, 1)
    assert len(rec.book("P/USD").bids) == 10
