"""A recording process for the crash-point tests: one scripted session, resumable.

``crash_child.py DSN DATA_DIR PROGRESS SEED [STOP_AFTER]`` runs the session of
``SEED`` (see :func:`script`) from the step after the one PROGRESS names: each
step is recorded, acknowledged (``wait_journaled``), then written to PROGRESS.
A step re-sent after a kill (recorded, not yet marked) may be refused as known
already, as the bot's reconciliation would find it. With STOP_AFTER the process
closes cleanly after that step (a restart); the parent sets
``GALFRIDAY_LEDGER_FAULT`` to kill it at a writer step instead.
"""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from ledgerkit import Step, run_resumable

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.records import Fill, Order, Signal

NS = uuid.UUID("7d1f1e38-4b52-4c57-9a43-3b0f7c1e5a10")
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
PAIR = "XRP/USD"


@dataclass(frozen=True)
class Plan:
    """One signal's life: its side, entry and exit prices, and how it goes."""

    index: int
    side: str
    entry_price: Decimal
    exit_price: Decimal
    shape: str  # "traded", "cancel-then-traded", "rejected", "proposed-late", "closed-by-other"

    @property
    def traded(self) -> bool:
        return self.shape != "rejected"

    @property
    def pair(self) -> str:
        """A cycle closed by an order without a signal has a pair of its own, so the oldest
        open cycle that order reduces is this one."""
        return f"X{self.index}/USD" if self.shape == "closed-by-other" else PAIR


def _id(seed: int, *parts: object) -> uuid.UUID:
    return uuid.uuid5(NS, ":".join(str(p) for p in (seed, *parts)))


def plans(seed: int, count: int = 6) -> list[Plan]:
    rng = random.Random(seed)
    shapes = ["traded", "cancel-then-traded", "rejected", "proposed-late", "closed-by-other"]
    return [
        Plan(
            i,
            rng.choice(["BUY", "SELL"]),
            Decimal(rng.randint(40, 60)) / 100,
            Decimal(rng.randint(40, 60)) / 100,
            shapes[i % len(shapes)],
        )
        for i in range(count)
    ]


def _steps_of(seed: int, plan: Plan) -> list[Step]:
    i = plan.index
    other = "SELL" if plan.side == "BUY" else "BUY"
    steps: list[Step] = [("signal", i)]
    if plan.shape == "rejected":
        return [*steps, ("status", i, "REJECTED")]
    if plan.shape != "proposed-late":
        steps.append(("status", i, "APPROVED"))
    entry = 0
    if plan.shape == "cancel-then-traded":
        steps += [("order", i, 0, plan.side, "LIMIT"), ("update", i, 0, "CANCELED")]
        entry = 1
    steps += [
        ("order", i, entry, plan.side, "LIMIT"),
        ("update", i, entry, "NEW"),
        ("fill", i, entry, 0, "4", plan.entry_price),
        ("fill", i, entry, 1, "6", plan.entry_price),
    ]
    if plan.shape == "proposed-late":
        steps.append(("status", i, "APPROVED"))
    return [
        *steps,
        ("order", i, 9, other, "TAKE_PROFIT"),
        ("fill", i, 9, 0, "3", plan.exit_price),
        ("fill", i, 9, 1, "7", plan.exit_price),
    ]


def script(seed: int) -> list[Step]:
    """Every signal's steps, interleaved at random (each signal's own order kept)."""
    rng = random.Random(seed + 1)
    queues = [_steps_of(seed, plan) for plan in plans(seed)]
    out: list[Step] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        out.append(queue.pop(0))
    return out


def expected_trades(seed: int) -> set[tuple[uuid.UUID, Decimal, Decimal]]:
    """(signal, quantity, realized P&L) of each traded signal, by plain arithmetic: 10 lots,
    no fees, P&L = 10 x (exit - entry), negated for a short."""
    out = set()
    for plan in plans(seed):
        if plan.traded:
            pnl = 10 * (plan.exit_price - plan.entry_price)
            out.add((_id(seed, "s", plan.index), Decimal(10), pnl if plan.side == "BUY" else -pnl))
    return out


def _order(seed: int, i: int, j: int, side: str, order_type: str) -> Order:
    plan = plans(seed)[i]
    by_other = j == 9 and plan.shape == "closed-by-other"
    return Order(
        client_order_id=_id(seed, "o", i, j),
        signal_id=None if by_other else _id(seed, "s", i),
        trading_pair=plan.pair,
        exchange="kraken",
        side=side,
        order_type=order_type,
        quantity_ordered=Decimal(10),
        limit_price=Decimal("0.5"),
        created_at=T0 + timedelta(seconds=i),
    )


def run_step(ledger: Ledger, seed: int, n: int, step: Step) -> None:
    kind, i = step[0], step[1]
    at = T0 + timedelta(seconds=n)
    if kind == "signal":
        plan = plans(seed)[i]
        ledger.record_signal(
            Signal(
                signal_id=_id(seed, "s", i),
                trading_pair=plan.pair,
                exchange="kraken",
                strategy_id="crash",
                side=plan.side,
                entry_type="LIMIT",
                proposed_entry_price=Decimal("0.5"),
                proposed_sl_price=Decimal("0.4"),
                proposed_tp_price=Decimal("0.6"),
                created_at=at,
            )
        )
    elif kind == "status":
        reason = "risk" if step[2] == "REJECTED" else None
        ledger.update_signal_status(_id(seed, "s", i), step[2], rejection_reason=reason)
    elif kind == "order":
        ledger.record_order(_order(seed, i, step[2], step[3], step[4]))
    elif kind == "update":
        ledger.update_order(_id(seed, "o", i, step[2]), step[3], updated_at=at)
    elif kind == "fill":
        _, _, j, k, qty, price = step
        order = _order(seed, i, j, "BUY", "LIMIT")
        side = (
            plans(seed)[i].side if j != 9 else ("SELL" if plans(seed)[i].side == "BUY" else "BUY")
        )
        ledger.record_fill(
            Fill(
                fill_id=f"F-{seed}-{i}-{j}-{k}",
                client_order_id=order.client_order_id,
                trading_pair=order.trading_pair,
                exchange="kraken",
                side=side,
                quantity_filled=Decimal(qty),
                fill_price=price,
                commission=Decimal(0),
                commission_asset="USD",
                filled_at=at,
            )
        )


def main(argv: list[str]) -> int:
    dsn, data_dir, progress_file, seed = argv[0], Path(argv[1]), Path(argv[2]), int(argv[3])
    stop_after = int(argv[4]) if len(argv) > 4 else None
    ledger = Ledger(RecorderConfig(pg_dsn=dsn, data_dir=data_dir, commit_interval_ms=1.0))
    ledger.start()
    if not run_resumable(
        script(seed),
        progress_file,
        lambda n, step: run_step(ledger, seed, n, step),
        lambda: ledger.wait_journaled(timeout=60),
        lambda n: stop_after is not None and n >= stop_after,
    ):
        return 3
    # A planned restart need not wait for PostgreSQL (it may be down): the rest stays
    # journaled. The last session flushes.
    ledger.close(timeout=3 if stop_after is not None else 60)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
