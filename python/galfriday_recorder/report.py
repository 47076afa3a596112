"""What the ledger says about performance: P&L by strategy and pair, win rate, fees, drawdowns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

SEED_TABLES = (
    "signals",
    "orders",
    "fills",
    "trades",
    "system_logs",
    "portfolio_snapshots",
    "configurations",
)
SEED_MEASUREMENTS = (
    "market_data_l2",
    "market_data_ohlcv",
    "features",
    "predictions",
    "portfolio_metrics",
    "system_metrics",
)


@dataclass(frozen=True)
class PnlRow:
    strategy_id: str
    trading_pair: str
    trades: int
    wins: int
    realized_pnl: Decimal
    fees: Decimal

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0


@dataclass(frozen=True)
class Report:
    rows: list[PnlRow]
    exits: dict[str, int]
    max_drawdown_pct: float
    equity_first: Decimal | None
    equity_last: Decimal | None

    def render(self) -> str:
        lines = [f"{'strategy':<24} {'pair':<10} {'trades':>6} {'win':>6} {'P&L':>16} {'fees':>14}"]
        for r in self.rows:
            lines.append(
                f"{r.strategy_id:<24} {r.trading_pair:<10} {r.trades:>6} {r.win_rate:>6.0%} "
                f"{r.realized_pnl:>16.6f} {r.fees:>14.6f}"
            )
        total = sum((r.realized_pnl for r in self.rows), Decimal(0))
        fees = sum((r.fees for r in self.rows), Decimal(0))
        count = sum(r.trades for r in self.rows)
        wins = sum(r.wins for r in self.rows)
        lines.append(
            f"{'total':<35} {count:>6} {(wins / count if count else 0):>6.0%} "
            f"{total:>16.6f} {fees:>14.6f}"
        )
        if self.exits:
            lines.append("exits: " + ", ".join(f"{k} {v}" for k, v in sorted(self.exits.items())))
        if self.equity_first is not None and self.equity_last is not None:
            lines.append(
                f"equity {self.equity_first:.2f} -> {self.equity_last:.2f}, "
                f"max drawdown {self.max_drawdown_pct:.3f}%"
            )
        return "\n".join(lines)


def build_report(dsn: str, since: datetime | None = None) -> Report:
    """Aggregate ``trades`` and ``portfolio_snapshots`` (from ``since`` on, when given)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT strategy_id, trading_pair, count(*), count(*) FILTER (WHERE realized_pnl > 0),"
            " sum(realized_pnl), sum(total_commission) FROM trades"
            " WHERE %(since)s::timestamptz IS NULL OR exit_timestamp >= %(since)s"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            {"since": since},
        ).fetchall()
        exits = conn.execute(
            "SELECT exit_reason, count(*) FROM trades"
            " WHERE %(since)s::timestamptz IS NULL OR exit_timestamp >= %(since)s GROUP BY 1",
            {"since": since},
        ).fetchall()
        equity = conn.execute(
            "SELECT total_equity, max(total_equity) OVER (ORDER BY snapshot_timestamp)"
            " FROM portfolio_snapshots"
            " WHERE %(since)s::timestamptz IS NULL OR snapshot_timestamp >= %(since)s"
            " ORDER BY snapshot_timestamp",
            {"since": since},
        ).fetchall()
    drawdown = max((float((peak - eq) / peak * 100) for eq, peak in equity if peak), default=0.0)
    return Report(
        rows=[
            PnlRow(s, p, int(n), int(w), Decimal(pnl), Decimal(fee))
            for s, p, n, w, pnl, fee in rows
        ],
        exits={str(k): int(v) for k, v in exits},
        max_drawdown_pct=drawdown,
        equity_first=equity[0][0] if equity else None,
        equity_last=equity[-1][0] if equity else None,
    )


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in SEED_TABLES
        }


def measurement_counts(query: Any, db: str) -> dict[str, int]:
    """Points per measurement; ``query`` is ``InfluxService.query``-like (InfluxQL -> JSON)."""
    counts: dict[str, int] = {}
    for m in SEED_MEASUREMENTS:
        # count(*) counts per field; the largest is the number of points (every field is set).
        answer = query(f'SELECT count(*) FROM "{m}"', db=db)
        series = answer.get("results", [{}])[0].get("series", [])
        counts[m] = (
            max((int(v) for v in series[0]["values"][0][1:] if v), default=0) if series else 0
        )
    return counts


def draw_png(
    dsn: str, path: Path, mids: list[tuple[datetime, float]] | None = None, pair: str | None = None
) -> None:
    """Equity curve, and ``pair``'s trades (entry and exit prices) over its mid price
    (``mids``, read from InfluxDB by the caller). Needs the ``report`` extra (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with psycopg.connect(dsn) as conn:
        equity = conn.execute(
            "SELECT snapshot_timestamp, total_equity FROM portfolio_snapshots ORDER BY 1"
        ).fetchall()
        trades = conn.execute(
            "SELECT entry_timestamp, average_entry_price, exit_timestamp, average_exit_price,"
            " realized_pnl FROM trades WHERE trading_pair = %s ORDER BY 1",
            (pair,),
        ).fetchall()
    fig, (ax_eq, ax_px) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    ax_eq.plot([t for t, _ in equity], [float(v) for _, v in equity], color="tab:blue")
    ax_eq.set_ylabel("equity (quote)")
    ax_eq.set_title("Gal-Friday: equity, and trades over mid price")
    if mids:
        ax_px.plot(
            [t for t, _ in mids],
            [m for _, m in mids],
            color="grey",
            linewidth=0.6,
            label=f"{pair} mid",
        )
    wins = [t for t in trades if t[4] > 0]
    losses = [t for t in trades if t[4] <= 0]
    ax_px.scatter(
        [t[0] for t in trades],
        [float(t[1]) for t in trades],
        marker="^",
        s=18,
        color="tab:blue",
        label="entry",
    )
    for group, colour, label in (
        (wins, "tab:green", "exit (win)"),
        (losses, "tab:red", "exit (loss)"),
    ):
        ax_px.scatter(
            [t[2] for t in group],
            [float(t[3]) for t in group],
            marker="v",
            s=18,
            color=colour,
            label=label,
        )
    ax_px.set_ylabel(f"{pair} price")
    ax_px.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
