"""A verdict on a signal memory no longer holds (decided before a restart, or forgotten
past the memory cap) is held, the signal read from PostgreSQL, and the verdict applied as
the state machine says; one on a signal nobody recorded ends as a dead letter and a
``system_logs`` row, since its caller has returned."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import orjson
from ledgerkit import make_fill, make_order, make_signal, quick_config, rows

from galfriday_recorder.ledger import Ledger
from galfriday_recorder.ledger.state import KEEP_SIGNALS, SIGNAL_TRANSITIONS
from galfriday_recorder.records import Signal

STATUSES = ("PROPOSED", "APPROVED", "REJECTED")
VERDICTS = ("APPROVED", "REJECTED")


def _started(pg_dsn: str, data_dir: Path) -> Ledger:
    ledger = Ledger(quick_config(pg_dsn, data_dir))
    ledger.start()
    return ledger


def _decide(ledger: Ledger, signal: Signal, status: str) -> None:
    reason = "risk" if status == "REJECTED" else None
    ledger.update_signal_status(signal.signal_id, status, rejection_reason=reason)


def _refused(ledger: Ledger) -> dict[uuid.UUID, str]:
    """Dead letters of held verdicts: signal id -> reason."""
    return {
        uuid.UUID(orjson.loads(payload)["signal_id"]): reason
        for _seq, kind, payload, reason in ledger.dead_letters()
        if kind == "held"
    }


def _trade_on(ledger: Ledger, signal: Signal) -> None:
    entry = make_order(signal, quantity_ordered=Decimal(10))
    ledger.record_order(entry)
    ledger.record_fill(make_fill(entry, "10", "1"))
    exit_ = make_order(signal, side="SELL", quantity_ordered=Decimal(10))
    ledger.record_order(exit_)
    ledger.record_fill(make_fill(exit_, "10", "1.5"))


def test_a_verdict_after_a_restart_on_a_signal_in_each_status(pg_dsn: str, tmp_path: Path) -> None:
    first = _started(pg_dsn, tmp_path / "data")
    cases = {(before, after): make_signal() for before in STATUSES for after in VERDICTS}
    for (before, _after), signal in cases.items():
        first.record_signal(signal)
        if before != "PROPOSED":
            _decide(first, signal, before)
    assert first.close(timeout=30)

    second = _started(pg_dsn, tmp_path / "data")
    ghost = uuid.uuid4()  # never recorded by anyone
    for (_before, after), signal in cases.items():
        _decide(second, signal, after)  # never raises: held if memory lacks the signal
    second.update_signal_status(ghost, "APPROVED")
    # Calls behind a held verdict wait for it; the signal then trades as any other.
    traded = cases[("APPROVED", "APPROVED")]
    _trade_on(second, traded)
    assert second.flush(timeout=60)
    stats, refused = second.stats(), _refused(second)
    assert second.close(timeout=30)

    expected = {}
    illegal = set()
    for (before, after), signal in cases.items():
        legal = after in SIGNAL_TRANSITIONS[before]
        expected[signal.signal_id] = after if legal else before
        if not legal:
            illegal.add(signal.signal_id)
    assert illegal  # APPROVED -> REJECTED and REJECTED -> APPROVED
    assert dict(rows(pg_dsn, "SELECT signal_id, status FROM signals")) == expected
    assert set(refused) == illegal | {ghost}
    assert "unknown signal" in refused[ghost]
    for signal_id in illegal:
        assert refused[signal_id].startswith("IllegalTransition"), refused[signal_id]
    assert (stats["dead_letters"], stats["held"]) == (len(illegal) + 1, 0)
    logged = rows(
        pg_dsn,
        "SELECT message FROM system_logs WHERE log_level = 'ERROR' AND message LIKE %s",
        "held signal_status%",
    )
    assert len(logged) == len(illegal) + 1
    assert rows(pg_dsn, "SELECT signal_id, realized_pnl FROM trades") == [
        (traded.signal_id, Decimal(5))
    ]


def test_a_verdict_on_a_signal_forgotten_past_the_memory_cap(pg_dsn: str, tmp_path: Path) -> None:
    ledger = _started(pg_dsn, tmp_path / "data")
    approved, rejected = make_signal(), make_signal()
    for signal, status in ((approved, "APPROVED"), (rejected, "REJECTED")):
        ledger.record_signal(signal)
        _decide(ledger, signal, status)
    for _ in range(KEEP_SIGNALS):  # decided ones after them: these two are forgotten
        later = make_signal()
        ledger.record_signal(later)
        _decide(ledger, later, "REJECTED")
    assert ledger.signal_view(approved.signal_id) is None
    assert ledger.signal_view(rejected.signal_id) is None

    _decide(ledger, approved, "APPROVED")  # the same verdict again: nothing to do
    _trade_on(ledger, approved)
    _decide(ledger, rejected, "APPROVED")  # against PostgreSQL's REJECTED: refused
    assert ledger.flush(timeout=60)
    assert ledger.signal_view(approved.signal_id) is not None  # read back
    refused = _refused(ledger)
    assert ledger.close(timeout=30)
    assert list(refused) == [rejected.signal_id]
    assert "REJECTED -> APPROVED" in refused[rejected.signal_id]
    assert rows(
        pg_dsn,
        "SELECT status FROM signals WHERE signal_id = ANY(%s) ORDER BY status",
        [approved.signal_id, rejected.signal_id],
    ) == [("APPROVED",), ("REJECTED",)]
    assert rows(pg_dsn, "SELECT signal_id, realized_pnl FROM trades") == [
        (approved.signal_id, Decimal(5))
    ]
