"""The five promises together, as the bot would live them: one session, every fault at once.

A recorder runs the demo strategy in a child process (``session_child.py``) at full
speed, logging every ledger call that returned and every point at which ``flush()``
acknowledged. Meanwhile: PostgreSQL is stopped and restarted twice, InfluxDB once;
while InfluxDB is down the spool (capped at 256 KiB) fills past its cap; the child
is SIGKILLed with PostgreSQL and InfluxDB both down, and a second child starts on the
same data directory, replays journal and spool, and runs a session of its own to a
clean close. Then both databases are read back:

* every ledger event acknowledged (covered by a successful flush, or journaled when
  the first child was killed) is in PostgreSQL exactly once, and nothing is there that
  the children did not send;
* every market point not counted as dropped is in InfluxDB, once; a dropped point may
  be there too only if a request holding it failed in doubt (InfluxDB stopping answers
  500 to writes it kept, or the connection went before the answer);
* every trade's P&L equals a recomputation from its fills, exactly (Decimal).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from galfriday_recorder.lab.services import InfluxService, PostgresService

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

CHILD = Path(__file__).with_name("session_child.py")
SPOOL_CAP = 256 * 1024
DAY_NS = 86_400 * 10**9
A_START_NS = 1_767_225_600_000_000_000


def _until(what: str, cond: Callable[[], Any], timeout: float) -> Any:
    """Poll ``cond`` until it is truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Child:
    """One bot process and its JSON Lines log."""

    def __init__(self, tmp: Path, name: str, **spec: Any) -> None:
        self.log = tmp / f"{name}.jsonl"
        self.stderr = tmp / f"{name}.stderr"
        spec.update(log=str(self.log), tag=name)
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), json.dumps(spec)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(CHILD.parent)},
            )

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for raw in self.log.read_text().splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:  # a line cut by SIGKILL
                break
        return out

    def events(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if "k" in line]

    def acked(self) -> int:
        return max((line["ack"] for line in self.lines() if "ack" in line), default=0)

    def last(self, key: str) -> Any:
        found = [line[key] for line in self.lines() if key in line]
        return found[-1] if found else None

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"child exited with {self.proc.returncode}: {self.stderr.read_text()[-3000:]}"
            )
        return True


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def _journal(path: Path) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(path) as db:
        return [
            (kind, orjson.loads(payload))
            for kind, payload in db.execute("SELECT kind, payload FROM events ORDER BY seq")
        ]


def _utc(value: str | datetime) -> str:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.astimezone(timezone.utc).isoformat()


def _event_key(kind: str, p: dict[str, Any]) -> tuple[str, str] | None:
    """The natural key a child log line and a journal payload share."""
    if kind in ("signal", "order", "config"):
        field = {"signal": "signal_id", "order": "client_order_id", "config": "config_hash"}
        return kind, str(p[field[kind]])
    if kind == "fill":
        return kind, p["fill_id"]
    if kind == "snapshot":
        return kind, _utc(p["snapshot_timestamp"])
    if kind == "log":
        return kind, p["message"]
    return None


def _logged_key(e: dict[str, Any]) -> tuple[str, str] | None:
    k = e["k"]
    if k in ("signal", "order", "config", "fill"):
        return k, e["id"]
    if k == "snapshot":
        return k, _utc(e["ts"])
    if k == "log":
        return k, e["msg"]
    return None


def _pg_keys(dsn: str) -> Counter[tuple[str, str]]:
    keys: Counter[tuple[str, str]] = Counter()
    for kind, sql in (
        ("signal", "SELECT signal_id::text FROM signals"),
        ("order", "SELECT client_order_id::text FROM orders"),
        ("fill", "SELECT fill_id FROM fills"),
        ("config", "SELECT config_hash FROM configurations"),
        ("snapshot", "SELECT snapshot_timestamp FROM portfolio_snapshots"),
        (
            "log",
            "SELECT message FROM system_logs WHERE message LIKE '% cycle %' "
            "OR message LIKE '% tick %'",
        ),
    ):
        for (value,) in _rows(dsn, sql):
            text = _utc(value) if isinstance(value, datetime) else str(value)
            keys[(kind, text)] += 1
    return keys


def _influx_count(influx: InfluxService, db: str, measurement: str, field: str) -> int:
    answer = influx.query(f"SELECT count({field}) FROM {measurement}", db=db)
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def _check_pnl(dsn: str) -> int:
    """Recompute every trade from its fills (cycles.py's rules) and compare exactly."""
    trades = _rows(
        dsn,
        "SELECT signal_id, side, quantity, average_entry_price, average_exit_price, "
        "total_commission, realized_pnl, trading_pair FROM trades",
    )
    fills = _rows(
        dsn,
        "SELECT o.signal_id, f.side, f.quantity_filled, f.fill_price, f.commission, "
        "f.commission_asset FROM fills f JOIN orders o USING (order_pk)",
    )
    by_signal: dict[Any, list[tuple[Any, ...]]] = {}
    for row in fills:
        by_signal.setdefault(row[0], []).append(row[1:])
    scale = Decimal("1e-18")
    with localcontext() as ctx:
        ctx.prec = 80
        for sid, side, qty, avg_in, avg_out, fees, pnl, pair in trades:
            base = pair.split("/")[0]
            mine = by_signal[sid]
            entries = [f for f in mine if f[0] == side]
            exits = [f for f in mine if f[0] != side]
            in_qty = sum((f[1] for f in entries), Decimal(0))
            out_qty = sum((f[1] for f in exits), Decimal(0))
            assert in_qty == out_qty == qty, (sid, in_qty, out_qty, qty)
            in_value = sum((f[1] * f[2] for f in entries), Decimal(0))
            out_value = sum((f[1] * f[2] for f in exits), Decimal(0))
            commission = sum((f[3] * f[2] if f[4] == base else f[3] for f in mine), Decimal(0))
            direction = 1 if side == "BUY" else -1
            expected = ((out_value - in_value) * direction - commission).quantize(
                scale, rounding=ROUND_HALF_EVEN
            )
            assert pnl == expected, (sid, pnl, expected)
            assert fees == commission.quantize(scale, rounding=ROUND_HALF_EVEN)
            assert avg_in == (in_value / in_qty).quantize(scale, rounding=ROUND_HALF_EVEN)
            assert avg_out == (out_value / out_qty).quantize(scale, rounding=ROUND_HALF_EVEN)
    return len(trades)


def test_one_session_through_every_fault_loses_nothing_acknowledged(
    pg_service: PostgresService | None,
    pg_dsn: str,
    influx_service: InfluxService,
    influx_db: str,
    tmp_path: Path,
) -> None:
    if pg_service is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    started = time.monotonic()
    data_dir = tmp_path / "data"
    quiesce = tmp_path / "quiesce"
    common = {
        "pg_dsn": pg_dsn,
        "influx_url": influx_service.url(),
        "influx_db": influx_db,
        "data_dir": str(data_dir),
        "spool_max_bytes": SPOOL_CAP,
    }
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f}s {what}")

    a = Child(
        tmp_path, "A", mode="killed", seed=21, start_ns=A_START_NS, quiesce=str(quiesce), **common
    )
    pg_up = influx_up = True
    try:
        _until("a first acknowledged flush", lambda: a.alive() and a.acked() > 0, 60)
        mark(f"A acked {a.acked()} events")

        # PostgreSQL outage 1, with the market running.
        pg_service.stop()
        pg_up = False
        mark("PostgreSQL stopped (1)")
        during = len(a.events())
        _until(
            "events recorded while PostgreSQL is down",
            lambda: a.alive() and len(a.events()) > during + 50,
            30,
        )
        pg_service.start()
        pg_up = True
        mark("PostgreSQL started (1)")
        after = len(a.events())
        _until(
            "a flush acknowledging the outage's events", lambda: a.alive() and a.acked() > after, 60
        )
        mark(f"A acked {a.acked()} events")

        # InfluxDB outage, long enough for the spool to pass its cap.
        influx_service.stop()
        influx_up = False
        mark("InfluxDB stopped")
        _until(
            "the spool to drop at its cap",
            lambda: a.alive() and (a.last("stats") or {}).get("series_lines_dropped"),
            60,
        )
        quiesce.touch()
        quiesced = _until("the market to stop", lambda: a.alive() and a.last("quiesced"), 60)
        mark(f"A quiesced: {quiesced}")
        assert quiesced["series_pending_lines"] == 0
        assert quiesced["series_lines_dropped"] > 0
        assert quiesced["series_spool_files"] > 0

        # PostgreSQL outage 2: ledger-only traffic, then SIGKILL with both databases down.
        pg_service.stop(hard=True)
        pg_up = False
        mark("PostgreSQL stopped (2, immediate)")
        _until(
            "uncommitted events piling up in the journal",
            lambda: a.alive() and (a.last("stats") or {}).get("ledger_journal_depth", 0) > 500,
            30,
        )
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        mark(f"A SIGKILLed ({len(a.events())} events logged, {a.acked()} acknowledged)")
        a_acked = a.acked()
        journaled = {
            key
            for kind, p in _journal(data_dir / "journal" / "ledger.sqlite3")
            if (key := _event_key(kind, p)) is not None
        }
        assert journaled, "the kill left nothing journaled: the outage was too short"

        # A second bot on the same data directory; the servers come back under it.
        b = Child(
            tmp_path,
            "B",
            mode="clean",
            seed=33,
            start_ns=A_START_NS + DAY_NS,
            updates=15_000,
            **common,
        )
        _until("B to start", lambda: b.alive() and b.last("started"), 60)
        mark("B started (both databases down)")
        pg_service.start()
        pg_up = True
        influx_service.start()
        influx_up = True
        mark("PostgreSQL and InfluxDB started")
        assert b.proc.wait(120) == 0, b.stderr.read_text()[-3000:]
        mark("B closed")
    finally:
        if a.proc.poll() is None:
            a.proc.kill()
        if not pg_up:
            pg_service.start()
        if not influx_up:
            influx_service.start()
    done = b.last("done")
    assert done is not None, b.stderr.read_text()[-3000:]
    assert b.last("flushed"), b.lines()[-3:]
    assert b.last("closed"), b.lines()[-3:]

    # -- ledger: acknowledged means present exactly once -----------------------------
    a_events, b_events = a.events(), b.events()
    acked = {k for e in a_events[:a_acked] if (k := _logged_key(e)) is not None}
    acked |= {k for e in b_events if (k := _logged_key(e)) is not None}
    assert b.acked() == len(b_events)
    # The child logs a call after it returns, so a SIGKILL between the two leaves an
    # event the recorder journaled but the child never logged: the journal read right
    # after the kill holds exactly those, and they were sent all the same.
    sent = acked | journaled | {k for e in a_events if (k := _logged_key(e)) is not None}
    in_pg = _pg_keys(pg_dsn)
    duplicates = {k: n for k, n in in_pg.items() if n > 1}
    assert not duplicates
    missing_acked = (acked | journaled) - set(in_pg)
    assert not missing_acked, sorted(missing_acked)[:10]
    phantoms = set(in_pg) - sent
    assert not phantoms, sorted(phantoms)[:10]
    unacked_lost = {k for e in a_events[a_acked:] if (k := _logged_key(e))} - set(in_pg)
    kinds = Counter(kind for kind, _ in in_pg)
    assert min(kinds[k] for k in ("signal", "order", "fill", "snapshot", "config", "log")) > 0

    # Signals: the last acknowledged status stands (APPROVED or REJECTED).
    statuses = dict(_rows(pg_dsn, "SELECT signal_id::text, status FROM signals"))
    for e in a_events[:a_acked] + b_events:
        if e["k"] == "signal_status":
            assert statuses[e["id"]] == e["status"], e

    # Orders: the filled quantity is the sum of the order's fills, across the crash, and an
    # acknowledged cancel stands.
    mismatched = _rows(
        pg_dsn,
        "SELECT o.client_order_id, o.quantity_filled, coalesce(sum(f.quantity_filled), 0) "
        "FROM orders o LEFT JOIN fills f USING (order_pk) GROUP BY o.order_pk "
        "HAVING o.quantity_filled <> coalesce(sum(f.quantity_filled), 0)",
    )
    assert not mismatched
    order_status = dict(_rows(pg_dsn, "SELECT client_order_id::text, status FROM orders"))
    canceled = [e for e in a_events[:a_acked] + b_events if e.get("status") == "CANCELED"]
    assert canceled
    assert all(order_status[e["id"]] == "CANCELED" for e in canceled)

    # Trades: one per closed cycle (each signal enters once), P&L exact from the fills.
    per_signal = Counter(sid for (sid,) in _rows(pg_dsn, "SELECT signal_id FROM trades"))
    assert per_signal
    assert max(per_signal.values()) == 1
    trades = _check_pnl(pg_dsn)

    # -- series: every market point not counted as dropped is there once ---------------
    # (Every point has its own series and timestamp, so a count is a count of distinct
    # points: a resend overwrites, it cannot add one.)
    market_lines = quiesced["market_lines"] + done["market_lines"]
    dropped = quiesced["series_lines_dropped"] + done["series_lines_dropped"]
    in_doubt = quiesced["series_lines_in_doubt"] + done["series_lines_in_doubt"]
    l2 = _influx_count(influx_service, influx_db, "market_data_l2", "is_snapshot")
    bars = _influx_count(influx_service, influx_db, "market_data_ohlcv", "close")
    assert quiesced["series_lines_rejected"] == done["series_lines_rejected"] == 0
    stored = l2 + bars
    counts = (l2, bars, market_lines, dropped, in_doubt)
    assert stored >= market_lines - dropped, counts
    # Dropped points InfluxDB holds all the same came from requests that failed in doubt.
    assert stored - (market_lines - dropped) <= min(dropped, in_doubt), counts
    assert done["series_spool_files"] == 0
    assert not list((data_dir / "spool").glob("*.lp.gz"))

    # The trading loop was never held up: frames and ledger calls, through every fault.
    worst_ms = max(a.last("worst_frame_ms"), b.last("worst_frame_ms"))
    worst_ms = max(worst_ms, a.last("worst_ledger_ms"), b.last("worst_ledger_ms"))
    assert worst_ms < 250, f"a call from the trading loop took {worst_ms:.1f} ms"

    elapsed = time.monotonic() - started
    print(
        "\n  "
        + "\n  ".join(timeline)
        + f"\n  ledger: {len(in_pg)} keyed events in PostgreSQL ({dict(kinds)}), "
        f"{len(acked | journaled)} acknowledged or journaled, {len(unacked_lost)} unacknowledged "
        f"events lost at SIGKILL; {trades} trades, P&L exact"
        f"\n  market: {market_lines} lines, {dropped} dropped at the spool cap, {l2} l2 + "
        f"{bars} ohlcv points in InfluxDB ({in_doubt} lines sent in doubt)"
        f"\n  worst call from the trading loop: frame A "
        f"{a.last('worst_frame_ms'):.2f} ms, B {b.last('worst_frame_ms'):.2f} ms; ledger A "
        f"{a.last('worst_ledger_ms'):.2f} ms, B {b.last('worst_ledger_ms'):.2f} ms"
        f"\n  total {elapsed:.1f} s"
    )
