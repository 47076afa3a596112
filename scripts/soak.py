#!/usr/bin/env python
"""The soak: hours of bot life compressed into one, watching memory, queues and descriptors.

``python scripts/soak.py [--minutes 60]`` starts local PostgreSQL and InfluxDB in a
temporary directory (or uses ``--pg-dsn``/``--influx-url``), then drives one Recorder
at a fixed rate: ``--symbols`` (4) synthetic Kraken books at ``--rate`` (2,000) book
updates per second each, with their trades, plus ledger traffic (trade cycles of
signal, status, orders, fills, logs; portfolio snapshots) and features/predictions.
Every ``--sample-s`` seconds (60; 10 when the run is shorter than 5 minutes) it prints
RSS, open file descriptors, the ledger's queue and journal depth, the series writer's
pending lines and spool, and the rate achieved. At the end it prints the RSS slope
(least squares over the samples after the first, MB per minute), and exits 1 if RSS
grew (slope above ``--max-slope-mb-min``), descriptors leaked, queues kept growing, a
database did not receive everything, or the rate was not held.

Memory that is not a leak: the ledger keeps up to 1,000 signals, 1,000 finished
orders and 1,000 recent trades for its state machines (``ledger/state.py``
``KEEP_SIGNALS``, ``KEEP_TERMINAL_ORDERS``, ``KEEP_RECENT_TRADES``; a forgotten signal
is read back from PostgreSQL when a fill needs it), measured at about 3 KB of Python
heap per trade cycle (signal + two orders) before the caps. At the default of 2
cycles/s (7,200 per hour, far busier than the bot) the orders' cap is reached after
about 4 minutes and the signals' and trades' after about 8.

Book frames are generated once (synthetic generation is slower than the target rate)
and replayed in a loop, each loop starting with a fresh snapshot so checksums hold.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import psycopg

from galfriday_recorder import PortfolioSnapshot, Recorder, RecorderConfig
from galfriday_recorder.lab.services import InfluxService, PostgresService
from galfriday_recorder.lab.synth import DEFAULT_PAIRS, RoundTrip, SyntheticKraken

LOOP_SECONDS = 6.0  # seconds of book updates generated once and replayed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--symbols", type=int, default=4, choices=range(1, len(DEFAULT_PAIRS) + 1))
    p.add_argument("--rate", type=int, default=2000, help="book updates per second per symbol")
    p.add_argument("--cycles-per-s", type=float, default=2.0, help="ledger trade cycles/s")
    p.add_argument("--sample-s", type=float, default=None)
    p.add_argument("--l2-levels", type=int, default=10)
    p.add_argument("--pg-dsn", default=os.environ.get("GALFRIDAY_SOAK_PG_DSN", ""))
    p.add_argument("--influx-url", default=os.environ.get("GALFRIDAY_SOAK_INFLUX_URL", ""))
    p.add_argument("--max-slope-mb-min", type=float, default=1.0)
    return p.parse_args(argv)


def frames_for(pairs: list[str], rate: int) -> tuple[list[bytes], list[bytes]]:
    """(snapshot frames, one loop of update/trade frames) for ``rate`` updates/s per pair."""
    step_ns = 1_000_000_000 // (rate * len(pairs))
    market = SyntheticKraken(pairs, seed=1, step_ns=step_ns)
    updates = int(rate * len(pairs) * LOOP_SECONDS)
    head: list[bytes] = []
    body: list[bytes] = []
    for _, frame in market.session(updates):
        if not body and (b'"snapshot"' in frame or b'"status"' in frame):
            head.append(frame)
        else:
            body.append(frame)
    snapshots = [f for f in head if b'"channel":"book"' in f]
    return head, body + snapshots  # each loop ends by resetting the books


class Ledgerer:
    """Trade cycles by hand: a signal, its approval, an entry with fills, an exit."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.n = 0
        self.log = logging.getLogger("galfriday.soak")

    def cycle(self, now: datetime) -> None:
        self.n += 1
        RoundTrip.at(now, "soak").record(self.rec, (f"S{self.n}-E", f"S{self.n}-X"), i=self.n)
        self.log.info("soak cycle %d closed", self.n, extra={"trading_pair": "XRP/USD"})

    def snapshot(self, now: datetime) -> None:
        self.rec.record_portfolio_snapshot(
            PortfolioSnapshot(
                total_equity=Decimal("10000"),
                available_balance=Decimal("9000"),
                total_exposure_pct=10.0,
                daily_drawdown_pct=0.0,
                weekly_drawdown_pct=0.0,
                total_drawdown_pct=0.0,
                positions={"XRP/USD": {"qty": "10"}},
                snapshot_timestamp=now,
            )
        )


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if not var else 60 * sum((t - mx) * (v - my) for t, v in points) / var


def run(args: argparse.Namespace, pg_dsn: str, influx_url: str, data_dir: Path) -> int:
    pairs = list(DEFAULT_PAIRS)[: args.symbols]
    head, loop = frames_for(pairs, args.rate)
    updates_per_loop = sum(1 for f in loop if b'"channel":"book","type":"update"' in f)
    frames_per_s = len(loop) / LOOP_SECONDS
    config = RecorderConfig.load(
        env={},
        pg_dsn=pg_dsn,
        influx_url=influx_url,
        influx_database="soak",
        data_dir=data_dir,
        l2_levels=args.l2_levels,
        metrics_interval_s=10.0,
    )
    proc = psutil.Process()
    rec = Recorder(config).start()
    logging.getLogger("galfriday").addHandler(rec.log_handler())
    logging.getLogger("galfriday").setLevel(logging.INFO)
    ledger = Ledgerer(rec)
    for frame in head:
        rec.on_market_frame(frame)
    sample_s = args.sample_s or (60.0 if args.minutes >= 5 else 10.0)
    duration = args.minutes * 60
    print(
        f"soak: {len(pairs)} symbols x {args.rate} updates/s ({frames_per_s:,.0f} frames/s "
        f"with trades), {args.cycles_per_s:g} trade cycles/s, {args.minutes:g} min, "
        f"sample every {sample_s:g} s; data in {data_dir}",
        flush=True,
    )
    print(
        f"{'t_s':>6} {'rss_mb':>8} {'fds':>5} {'upd/s':>8} {'behind':>7} {'lq':>5} "
        f"{'journal':>8} {'pending':>8} {'spool_kb':>9} {'dropped':>8} {'ingest_p99_us':>13}",
        flush=True,
    )
    samples: list[dict[str, float]] = []
    start = time.monotonic()
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    fed = cycles = snaps = 0
    next_sample = start
    last_fed, last_t = 0, start
    worst_behind = 0.0
    idx = 0
    while True:
        now = time.monotonic()
        elapsed = now - start
        if now >= next_sample:
            st = rec.stats()
            rate = (fed - last_fed) / max(now - last_t, 1e-9) * updates_per_loop / len(loop)
            last_fed, last_t = fed, now
            row = {
                "t": elapsed,
                "rss": proc.memory_info().rss / 1_048_576,
                "fds": proc.num_fds(),
                "rate": rate,
                "lq": st["ledger_queue_depth"],
                "journal": st["ledger_journal_depth"],
                "pending": st["series_pending_lines"],
                "spool": st["series_spool_bytes"] / 1024,
                "dropped": st["series_lines_dropped"],
                "p99": st["market_ingest_ns_p99"] / 1000,
            }
            samples.append(row)
            print(
                f"{elapsed:6.0f} {row['rss']:8.1f} {row['fds']:5.0f} {rate:8.0f} "
                f"{worst_behind:6.2f}s {row['lq']:5.0f} {row['journal']:8.0f} "
                f"{row['pending']:8.0f} {row['spool']:9.0f} {row['dropped']:8.0f} "
                f"{row['p99']:13.1f}",
                flush=True,
            )
            worst_behind = 0.0
            next_sample += sample_s
        if elapsed >= duration:
            break
        target = int(elapsed * frames_per_s)
        behind = (target - fed) / frames_per_s
        worst_behind = max(worst_behind, behind)
        budget = min(target - fed, 2000)  # then look at the clock again
        for _ in range(budget):
            rec.on_market_frame(loop[idx], time.time_ns())
            idx = (idx + 1) % len(loop)
            fed += 1
        wall = base + timedelta(seconds=elapsed)
        while cycles < elapsed * args.cycles_per_s:
            ledger.cycle(wall + timedelta(microseconds=cycles))
            cycles += 1
        while snaps < elapsed:  # one portfolio snapshot and metrics batch per second
            ledger.snapshot(base + timedelta(seconds=snaps))
            for pair in pairs:
                rec.record_features(pair, "soak_v1", {"rsi_14": 50.0 + snaps % 10})
                rec.record_prediction(pair, "soak_model", "up_5m", 0.5, confidence=0.1)
            snaps += 1
        if budget < 2000:
            time.sleep(0.002)
    flush_started = time.monotonic()
    flushed = rec.flush(timeout=300)
    flush_s = time.monotonic() - flush_started
    final = rec.stats()
    closed = rec.close(timeout=60)

    # -- verdict -------------------------------------------------------------------
    steady = samples[1:] if len(samples) > 2 else samples
    slope = slope_per_minute([(s["t"], s["rss"]) for s in steady])
    fds = [s["fds"] for s in steady]
    half = len(steady) // 2
    late_queue = max((s["lq"] + s["journal"] for s in steady[half:]), default=0)
    late_pending = max((s["pending"] for s in steady[half:]), default=0)
    rates = [s["rate"] for s in samples[1:]]
    with psycopg.connect(pg_dsn) as conn:
        trades = conn.execute("SELECT count(*) FROM trades WHERE strategy_id = 'soak'").fetchone()
    problems = []
    if args.minutes < 10:
        print(
            f"(a {args.minutes:g}-minute run is too short to judge the RSS slope: warm-up "
            "dominates; the verdict below leaves it out)"
        )
    elif slope > args.max_slope_mb_min:
        problems.append(f"RSS grows {slope:.2f} MB/min")
    if fds and max(fds) > fds[0] + 8:
        problems.append(f"file descriptors grew {fds[0]:.0f} -> {max(fds):.0f}")
    if late_queue > 50_000 or late_pending > 200_000:
        problems.append(f"queues grew: ledger {late_queue:.0f}, series {late_pending:.0f}")
    if not flushed or not closed:
        problems.append(f"final flush {flushed}, close {closed}")
    if final["series_lines_dropped"] or final["series_lines_rejected"]:
        problems.append(
            f"series dropped {final['series_lines_dropped']}, "
            f"rejected {final['series_lines_rejected']}"
        )
    if trades is None or trades[0] != cycles:
        problems.append(f"{trades} trades in PostgreSQL, {cycles} cycles recorded")
    target_rate = args.rate * len(pairs)
    if rates and min(rates) < 0.95 * target_rate:
        problems.append(f"rate fell to {min(rates):.0f} updates/s (target {target_rate})")
    print(
        f"\nRSS slope {slope:+.3f} MB/min over {len(steady)} samples "
        f"({steady[0]['rss']:.1f} -> {steady[-1]['rss']:.1f} MB); fds "
        f"{fds[0]:.0f} -> {fds[-1]:.0f}; ledger queue+journal max in 2nd half "
        f"{late_queue:.0f}; series pending max in 2nd half {late_pending:.0f}"
    )
    print(
        f"fed {fed:,} frames ({final['market_book_messages']:,} book messages), "
        f"{cycles:,} trade cycles ({trades[0] if trades else 0:,} trades in PostgreSQL), "
        f"{final['ledger_committed']:,} ledger events committed, "
        f"{final['series_lines_written']:,} lines written to InfluxDB; final flush "
        f"{flush_s:.1f} s; ingest p99 {final['market_ingest_ns_p99'] / 1000:.1f} us, "
        f"max {final['market_ingest_ns_max'] / 1000:.0f} us"
    )
    print("PASS" if not problems else "FAIL: " + "; ".join(problems), flush=True)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="galfriday-soak-") as tmp:
        root = Path(tmp)
        started: list[Any] = []
        try:
            pg_dsn, influx_url = args.pg_dsn, args.influx_url
            if not pg_dsn:
                pg = PostgresService(root / "postgres")
                pg.start()
                started.append(pg)
                pg_dsn = pg.dsn()
            if not influx_url:
                influx = InfluxService(root / "influxdb")
                influx.start()
                started.append(influx)
                influx.create_database("soak")
                influx_url = influx.url()
            else:  # an existing InfluxDB 1.x: the database must exist before /write
                if not influx_url.startswith(("http://", "https://")):
                    raise SystemExit(f"--influx-url must be http(s): {influx_url}")
                query = urllib.parse.urlencode({"q": 'CREATE DATABASE "soak"'}).encode()
                urllib.request.urlopen(f"{influx_url.rstrip('/')}/query", query, timeout=10).close()  # noqa: S310
            return run(args, pg_dsn, influx_url, root / "data")
        finally:
            for service in reversed(started):
                service.stop()


if __name__ == "__main__":
    sys.exit(main())
