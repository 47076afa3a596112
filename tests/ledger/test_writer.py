"""No acknowledged event is lost: journal modes, the size cap, PostgreSQL outages, kill -9."""

from __future__ import annotations

import os
import shutil
import signal as signals
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from ledgerkit import UNREACHABLE, make_fill, make_order, make_signal, quick_config, rows, started

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.errors import LedgerBackpressure
from galfriday_recorder.lab.services import PostgresService
from galfriday_recorder.ledger import Ledger, writer
from galfriday_recorder.records import LogEntry


def _journal_rows(path: Path) -> list[tuple[int, str, bytes]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT seq, kind, payload FROM events ORDER BY seq").fetchall()


def test_journal_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    config = RecorderConfig(pg_dsn=UNREACHABLE, data_dir=tmp_path / "data")
    old = os.umask(0)
    try:
        ledger = started(config)
        ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="x"))
        deadline = time.monotonic() + 10
        while ledger.stats()["journal_depth"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        files = [
            config.journal_path,
            Path(f"{config.journal_path}-wal"),
            Path(f"{config.journal_path}-shm"),
        ]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files if p.exists()}
        assert modes[config.journal_path.name] == 0o600
        assert f"{config.journal_path.name}-wal" in modes
        assert set(modes.values()) == {0o600}
        assert stat.S_IMODE(config.journal_path.parent.stat().st_mode) == 0o700
        assert not ledger.close(timeout=0.2)  # PostgreSQL unreachable: not committed
    finally:
        os.umask(old)


def test_backpressure_at_the_cap_then_everything_commits(tmp_path: Path, pg_dsn: str) -> None:
    config = RecorderConfig(
        pg_dsn=UNREACHABLE, data_dir=tmp_path / "data", journal_max_bytes=64 * 1024
    )
    ledger = started(config)
    accepted = 0
    refusal: LedgerBackpressure | None = None
    for i in range(100_000):
        try:
            ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=f"m{i}"))
        except LedgerBackpressure as exc:
            refusal = exc
            break
        accepted += 1
        if i % 50 == 0:
            time.sleep(0.002)  # let the journal catch up, as a real bot would
    assert refusal is not None
    assert "cap" in str(refusal)
    assert 0 < accepted < 100_000
    with pytest.raises(LedgerBackpressure):  # still refused: nothing drains without PostgreSQL
        ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="refused"))
    assert ledger.stats()["rejected"] == 2
    assert not ledger.close(timeout=0.2)
    assert len(_journal_rows(config.journal_path)) == accepted  # every accepted one journaled

    ledger = Ledger(config.replace(pg_dsn=pg_dsn))
    ledger.start()
    assert ledger.flush(timeout=30)
    assert ledger.close(timeout=5)
    messages = {r[0] for r in rows(pg_dsn, "SELECT message FROM system_logs")}
    assert messages == {f"m{i}" for i in range(accepted)}


def _stream(ledger: Ledger, n_cycles: int, start: int = 0) -> int:
    """Record mixed events (signal, status, orders, updates, fills, logs); return how many."""
    count = 0
    for i in range(start, start + n_cycles):
        signal = make_signal()
        ledger.record_signal(signal)
        ledger.update_signal_status(signal.signal_id, "APPROVED")
        entry = make_order(signal, quantity_ordered=Decimal(10))
        ledger.record_order(entry)
        ledger.update_order(entry.client_order_id, "NEW", exchange_order_id=f"E-{i}")
        ledger.record_fill(make_fill(entry, "4", "0.5", commission=Decimal("0.001")))
        ledger.record_fill(
            make_fill(entry, "6", "0.51", commission=Decimal("0.002"), commission_asset="XRP")
        )
        exit_ = make_order(
            signal, side="SELL", order_type="TAKE_PROFIT", quantity_ordered=Decimal(10)
        )
        ledger.record_order(exit_)
        ledger.record_fill(make_fill(exit_, "10", "0.55"))  # closes the cycle: + 1 trade
        ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=f"cycle {i}"))
        count += 10
    return count


def _check_stream(pg_dsn: str, n_cycles: int) -> None:
    counts = rows(
        pg_dsn,
        "SELECT (SELECT count(*) FROM signals WHERE status = 'APPROVED'), "
        "(SELECT count(*) FROM orders WHERE status = 'FILLED'), "
        "(SELECT count(*) FROM orders), (SELECT count(*) FROM fills), "
        "(SELECT count(*) FROM trades), (SELECT count(DISTINCT message) "
        "FROM system_logs WHERE source_module = 't'), "
        "(SELECT count(*) FROM system_logs WHERE source_module = 't'), "
        "(SELECT sum(quantity_filled) FROM orders), "
        "(SELECT sum(realized_pnl) FROM trades)",
    )[0]
    n = n_cycles
    pnl_each = Decimal("5.5") - Decimal("5.06") - Decimal("0.001") - Decimal("0.00102")
    assert counts == (n, 2 * n, 2 * n, 3 * n, n, n, n, Decimal(20 * n), pnl_each * n)


@pytest.mark.faults
@pytest.mark.parametrize(
    ("hard", "tail_rows"),
    [(False, None), (True, None), (True, 64)],
    ids=["fast-shutdown", "sigkill", "sigkill-small-tail"],
)
def test_postgres_outage_mid_stream(
    pg_service: PostgresService | None,
    pg_dsn: str,
    ledger: Ledger,
    hard: bool,
    tail_rows: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 mixed events, PostgreSQL stopped in the middle: each is in the database once.

    With a small in-memory tail the committer drops it during the outage and reads the
    journal back, then takes up the tail again where it follows on."""
    if pg_service is None:
        pytest.skip("needs the embedded server to stop it")
    if tail_rows is not None:
        monkeypatch.setattr(writer, "_TAIL_ROWS", tail_rows)
    sent = _stream(ledger, 300)
    time.sleep(0.05)
    pg_service.stop(hard=hard)
    try:
        sent += _stream(ledger, 400, start=300)
        deadline = time.monotonic() + 10
        while ledger.stats()["pg_connected"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.stats()["pg_connected"] == 0
        assert not ledger.flush(timeout=0.5)
        sent += _stream(ledger, 300, start=700)
    finally:
        pg_service.start()
    assert sent == 10_000
    assert ledger.flush(timeout=60)
    stats = ledger.stats()
    assert stats["accepted"] == 10_000  # including the trade each cycle derives
    assert stats["committed"] == stats["accepted"]
    assert stats["dead_letters"] == 0
    assert stats["pg_errors"] > 0
    _check_stream(pg_dsn, 1000)


def test_replay_after_commit_writes_nothing_twice(pg_dsn: str, tmp_path: Path) -> None:
    """A crash between the PostgreSQL commit and the journal delete replays committed events."""
    config = RecorderConfig(pg_dsn=UNREACHABLE, data_dir=tmp_path / "data")
    ledger = started(config)
    _stream(ledger, 50)
    deadline = time.monotonic() + 10
    while ledger.stats()["journal_depth"] < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    ledger.close(timeout=0)
    saved = tmp_path / "saved.sqlite3"
    shutil.copy(config.journal_path, saved)
    for _ in range(2):  # commit, then "crash" before the delete: the same journal again
        ledger = Ledger(config.replace(pg_dsn=pg_dsn))
        ledger.start()
        assert ledger.flush(timeout=30)
        assert ledger.stats()["committed"] == 500
        ledger.close(timeout=5)
        _check_stream(pg_dsn, 50)
        shutil.copy(saved, config.journal_path)
        for suffix in ("-wal", "-shm"):
            Path(f"{config.journal_path}{suffix}").unlink(missing_ok=True)


def test_a_backlog_is_committed_in_groups_of_bounded_bytes(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes no message of 1 GiB: a group stops near ``_GROUP_BYTES`` (here two
    events of about 1.3 kB; the backlog would otherwise go in one group), one event at
    least."""
    config = RecorderConfig(pg_dsn=UNREACHABLE, data_dir=tmp_path / "data")
    ledger = started(config)
    for i in range(20):
        ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=f"{i:04d}" * 250))
    assert ledger.wait_journaled(10)
    ledger.close(timeout=0)
    monkeypatch.setattr(writer, "_GROUP_BYTES", 3_000)
    ledger = Ledger(config.replace(pg_dsn=pg_dsn))
    ledger.start()
    try:
        assert ledger.flush(timeout=30)
        assert ledger.stats()["commit_batches"] == 10
    finally:
        ledger.close(timeout=5)
    stored = rows(pg_dsn, "SELECT left(message, 4) FROM system_logs WHERE source_module = 't'")
    assert sorted(m for (m,) in stored) == [f"{i:04d}" for i in range(20)]


def test_a_flush_does_not_wait_for_the_group_to_grow(pg_dsn: str, tmp_path: Path) -> None:
    """The committer lets a small group grow for ``commit_interval_ms``; a caller waiting in
    ``flush()`` would gain nothing from that wait, so its group goes at once (here the
    interval is a minute and the flush is given ten seconds). Without a flush, the
    group still waits."""
    config = RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data", commit_interval_ms=60_000)
    ledger = started(config)
    try:
        for round_ in range(3):  # each flush hurries its own group, not only the first
            ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=f"{round_}"))
            assert ledger.flush(timeout=10)
        ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="later"))
        assert ledger.wait_journaled(10)
        time.sleep(0.5)
        assert ledger.stats()["committed"] == 3
    finally:
        closed = ledger.close(timeout=10)
    assert closed  # close flushes: that group goes now too
    stored = rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = 't'")
    assert sorted(m for (m,) in stored) == ["0", "1", "2", "later"]


def test_a_journal_batch_worth_of_events_goes_without_waiting_to_grow(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A group waits ``commit_interval_ms`` to grow only while it is smaller than one
    journal batch: a batch's worth means a burst, and its first group goes while the
    callers still record (here the interval is a minute, and no one flushes)."""
    config = RecorderConfig(pg_dsn=pg_dsn, data_dir=tmp_path / "data", commit_interval_ms=60_000)
    ledger = started(config)
    try:
        for i in range(writer._JOURNAL_BATCH * 3 // 2):
            ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=f"{i}"))
        deadline = time.monotonic() + 20
        while ledger.stats()["committed"] < writer._JOURNAL_BATCH and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.stats()["committed"] >= writer._JOURNAL_BATCH
    finally:
        closed = ledger.close(timeout=10)
    assert closed
    assert rows(pg_dsn, "SELECT count(*) FROM system_logs WHERE source_module = 't'") == [
        (writer._JOURNAL_BATCH * 3 // 2,)
    ]


def test_close_right_after_a_flush_stops_the_writer(tmp_path: Path) -> None:
    """A flush wakes the committer as ``close()`` cancels it: on Python 3.11,
    ``asyncio.wait_for`` lost that cancellation when the two met, and the writer ran on
    (``close()`` raised ``TimeoutError`` after 10 s). Several times: the two must meet."""
    for attempt in range(5):
        config = RecorderConfig(pg_dsn=UNREACHABLE, data_dir=tmp_path / f"data{attempt}")
        ledger = started(config)
        ledger.record_log(LogEntry(source_module="t", log_level="INFO", message="m"))
        assert ledger.wait_journaled(10)
        assert not ledger.close(timeout=0)  # PostgreSQL unreachable: not committed


_CHILD = textwrap.dedent("""
    import sys, uuid
    from pathlib import Path
    from galfriday_recorder.config import RecorderConfig
    from galfriday_recorder.ledger import Ledger, writer
    from galfriday_recorder.records import LogEntry, Signal

    ns = uuid.UUID(sys.argv[3])
    ledger = Ledger(RecorderConfig(pg_dsn=sys.argv[1], data_dir=Path(sys.argv[2]),
                                   commit_interval_ms=20))
    ledger.start()
    i = 0
    while True:
        ledger.record_signal(Signal(signal_id=uuid.uuid5(ns, str(i)), trading_pair="XRP/USD",
                                    exchange="kraken", strategy_id="s", side="BUY",
                                    entry_type="MARKET", proposed_sl_price="0.4",
                                    proposed_tp_price="0.6"))
        ledger.record_log(LogEntry(source_module="child", log_level="INFO", message=str(i),
                                   log_id=uuid.uuid5(ns, f"log{i}")))
        i += 1
        if i % 200 == 0 and ledger.flush(timeout=10):
            print(f"FLUSHED {i}", flush=True)
""")


@pytest.mark.faults
def test_kill_9_then_restart_on_the_same_journal(pg_dsn: str, tmp_path: Path) -> None:
    ns = uuid.uuid4()
    data = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, pg_dsn, str(data), str(ns)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    flushed = 0
    try:
        for line in child.stdout:
            flushed = int(line.split()[1])
            if flushed >= 1000:
                break
        time.sleep(0.3)  # keep recording past the last flush: journaled, maybe not committed
    finally:
        child.send_signal(signals.SIGKILL)
        child.wait(10)
    assert flushed >= 1000
    config = RecorderConfig(pg_dsn=pg_dsn, data_dir=data)
    journaled = {
        orjson.loads(p).get("signal_id")
        for _s, kind, p in _journal_rows(config.journal_path)
        if kind == "signal"
    }
    in_pg = {str(r[0]) for r in rows(pg_dsn, "SELECT signal_id FROM signals")}
    ledger = started(config)
    assert ledger.flush(timeout=30)
    ledger.close(timeout=5)
    after = {str(r[0]) for r in rows(pg_dsn, "SELECT signal_id FROM signals")}
    assert after == in_pg | journaled
    expected = {str(uuid.uuid5(ns, str(i))) for i in range(flushed)}
    assert expected <= after  # everything flush acknowledged
    # Nothing in between lost: the signals form an unbroken prefix 0..n-1.
    assert after == {str(uuid.uuid5(ns, str(i))) for i in range(len(after))}
    logs = Counter(
        r[0] for r in rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = 'child'")
    )
    assert set(logs.values()) == {1}
    assert len(logs) >= flushed


@pytest.mark.faults
def test_committer_reads_the_journal_where_its_memory_does_not_follow_on(
    pg_service: PostgresService | None,
    ledger_config: RecorderConfig,
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The committer's in-memory tail of journaled rows is dropped past its cap (PostgreSQL
    away); what it kept after that does not follow on from the last commit, so the rows
    before it come from the journal: all of them are committed, in order, once."""
    if pg_service is None:
        pytest.skip("needs the embedded server to stop it")
    monkeypatch.setattr(writer, "_TAIL_ROWS", 5)
    pg_service.stop()
    try:
        ledger = started(ledger_config)
        for i in range(10):  # one journal transaction each: 5 kept, dropped at the 6th, 4 kept
            ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=f"m{i:02}"))
            assert ledger.wait_journaled(timeout=10)
    finally:
        pg_service.start()
    assert ledger.flush(timeout=30)
    assert ledger.close(timeout=5)
    stored = rows(pg_dsn, "SELECT message FROM system_logs WHERE source_module = 't'")
    assert sorted(m for (m,) in stored) == [f"m{i:02}" for i in range(10)]


class _FullOnce:
    """A journal write that meets a full disk once (SQLite's own error), then lands.

    A real full disk cannot be made on demand here, so the journal's method is wrapped.
    """

    def __init__(self, write: Callable[..., None]) -> None:
        self.write, self.failed = write, False

    def __call__(self, *args: Any) -> None:
        if not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        self.write(*args)


def test_a_held_fill_is_stored_once_when_the_journal_refuses_its_rewrite(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolving a held fill changes the state machines before the journal says so; a
    retry that resolved it again would find it applied and store nothing."""
    config = quick_config(pg_dsn, tmp_path / "data")
    first = started(config)
    signal = make_signal()
    first.record_signal(signal)
    first.update_signal_status(signal.signal_id, "APPROVED")
    assert first.close(timeout=30)

    second = Ledger(config)  # an approved signal without orders is not read back at a start
    second.start()
    journal = second._writer.journal
    full = _FullOnce(journal.rewrite)
    monkeypatch.setattr(journal, "rewrite", full)
    entry = make_order(signal, quantity_ordered=Decimal(10))
    second.record_order(entry)
    second.record_fill(make_fill(entry, "10", "0.5"))  # held: its signal is PostgreSQL's
    assert second.flush(timeout=30)
    assert full.failed
    assert rows(pg_dsn, "SELECT count(*) FROM fills") == [(1,)]
    assert rows(pg_dsn, "SELECT status, quantity_filled FROM orders") == [("FILLED", Decimal(10))]
    assert second.stats()["journal_errors"] >= 1
    assert second.close(timeout=30)


def test_the_committer_goes_on_when_the_journal_refuses_to_forget_once(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = quick_config(pg_dsn, tmp_path / "data")
    ledger = started(config)
    journal = ledger._writer.journal
    full = _FullOnce(journal.done)
    monkeypatch.setattr(journal, "done", full)
    for i in range(3):
        ledger.record_log(LogEntry(source_module="t", log_level="INFO", message=f"m{i}"))
        assert ledger.flush(timeout=30)  # each group committed and forgotten, the first late
    assert full.failed
    assert ledger.close(timeout=30)
    assert rows(pg_dsn, "SELECT message FROM system_logs ORDER BY message") == [
        ("m0",),
        ("m1",),
        ("m2",),
    ]
    assert _journal_rows(config.journal_path) == []
