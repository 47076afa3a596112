"""What the ledger says about performance: P&L by strategy and pair, win rate, fees, drawdowns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from .config import RecorderConfig
from .errors import RecorderError
from .influxql import InfluxQL, l2_source
from .query import Query, StrategyPerformance

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
    strategies: list[StrategyPerformance]

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
        if self.strategies:
            lines.append("")
            lines.extend(strategy_summary(self.strategies))
        if self.exits:
            lines.append("exits: " + ", ".join(f"{k} {v}" for k, v in sorted(self.exits.items())))
        if self.equity_first is not None and self.equity_last is not None:
            lines.append(
                f"equity {self.equity_first:.2f} -> {self.equity_last:.2f}, "
                f"max drawdown {self.max_drawdown_pct:.3f}%"
            )
        return "\n".join(lines)


def strategy_summary(strategies: list[StrategyPerformance]) -> list[str]:
    """One line per strategy: what an operator reads first."""
    return [
        f"{s.strategy_id}: {s.trades} trades, {s.win_rate:.0%} won, P&L {s.realized_pnl:.2f} "
        f"after {s.fees:.2f} fees, worst run {s.max_drawdown:.2f} below its best"
        for s in strategies
    ]


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
        strategies=_performance(dsn, since),
    )


def _performance(dsn: str, since: datetime | None) -> list[StrategyPerformance]:
    with Query(RecorderConfig(pg_dsn=dsn)) as query:
        return query.performance(since=since).strategies


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


def mid_prices(
    config: RecorderConfig, start: datetime, end: datetime, points: int = 1500
) -> dict[str, list[tuple[datetime, float]]]:
    """Mean mid price per pair from ``market_data_l2``, about ``points`` per pair over the span."""
    if not config.influx_url:
        return {}
    step_s = max(1, int((end - start).total_seconds() / points))
    reader = InfluxQL(config)
    try:
        rows = reader.rows(
            f"SELECT mean(mid_price) AS mid FROM {l2_source(config)} WHERE time >= $start "
            f"AND time <= $end GROUP BY time({step_s}s), trading_pair fill(none)",
            {"start": start.isoformat(), "end": end.isoformat()},
        )
    finally:
        reader.close()
    mids: dict[str, list[tuple[datetime, float]]] = {}
    for r in rows:
        when = datetime.fromtimestamp(r["time"] / 1e9, tz=timezone.utc)
        mids.setdefault(r["trading_pair"], []).append((when, float(r["mid"])))
    return mids


def draw_png(config: RecorderConfig, path: Path, since: datetime | None = None) -> list[str]:
    """Equity and drawdown, then every pair's trades (entry joined to exit, green won,
    red lost) over its mid price from InfluxDB, on a UTC axis, and a summary per strategy.

    Returns what could not be drawn (e.g. no mid prices). Needs matplotlib (``report`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    with psycopg.connect(config.pg_conninfo) as conn:
        equity = conn.execute(
            "SELECT snapshot_timestamp, total_equity FROM portfolio_snapshots"
            " WHERE %(since)s::timestamptz IS NULL OR snapshot_timestamp >= %(since)s ORDER BY 1",
            {"since": since},
        ).fetchall()
        trades = conn.execute(
            "SELECT trading_pair, side, entry_timestamp, average_entry_price, exit_timestamp,"
            " average_exit_price, realized_pnl FROM trades"
            " WHERE %(since)s::timestamptz IS NULL OR exit_timestamp >= %(since)s"
            " ORDER BY trading_pair, entry_timestamp",
            {"since": since},
        ).fetchall()
    notes: list[str] = []
    times = [t for t, _ in equity] + [t[2] for t in trades] + [t[4] for t in trades]
    pairs = sorted({t[0] for t in trades})
    mids: dict[str, list[tuple[datetime, float]]] = {}
    if times:
        try:
            mids = mid_prices(config, min(times), max(times))
        except RecorderError as exc:
            notes.append(f"no mid prices: {exc}")
    if not mids and config.influx_url and not notes:
        notes.append("no mid prices in InfluxDB for this span")
    strategies = _performance(config.pg_conninfo, since)

    utc = timezone.utc
    heights = [3, 1.4, *([2.6] * len(pairs)), 0.35 * len(strategies) + 0.6]
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(11, sum(heights) + 0.8),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    ax_eq, ax_dd, *ax_pairs, ax_text = axes[:, 0]
    timed = (ax_eq, ax_dd, *ax_pairs)
    locator = mdates.AutoDateLocator(tz=utc)  # type: ignore[no-untyped-call]
    for ax in timed:
        ax.sharex(ax_eq)
        ax.grid(alpha=0.3)
        ax.tick_params(labelbottom=ax is timed[-1])
    ax_eq.xaxis.set_major_locator(locator)
    ax_eq.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=utc))  # type: ignore[no-untyped-call]
    when = [t for t, _ in equity]
    values = [float(v) for _, v in equity]
    peaks = [max(values[: i + 1]) for i in range(len(values))]
    ax_eq.plot(when, values, color="tab:blue", linewidth=1.2, label="equity")
    ax_eq.plot(when, peaks, color="tab:blue", linewidth=0.6, linestyle=":", label="peak")
    ax_eq.set_ylabel("equity (quote)")
    ax_eq.legend(loc="upper left", fontsize=8)
    ax_eq.set_title("Gal-Friday: equity, drawdown and trades over mid price (UTC)")
    drawdown = [(v - p) / p * 100 if p else 0.0 for v, p in zip(values, peaks, strict=True)]
    ax_dd.fill_between(when, drawdown, 0, color="tab:red", alpha=0.35, step="post")
    ax_dd.set_ylabel("drawdown %")
    for ax, pair in zip(ax_pairs, pairs, strict=True):
        line = mids.get(pair, [])
        if line:
            ax.plot([t for t, _ in line], [m for _, m in line], color="grey", linewidth=0.7,
                    label="mid")  # fmt: skip
        for _, side, t_in, p_in, t_out, p_out, pnl in (t for t in trades if t[0] == pair):
            colour = "tab:green" if pnl > 0 else "tab:red"
            ax.plot([t_in, t_out], [float(p_in), float(p_out)], color=colour, linewidth=1.4)
            ax.scatter([t_in], [float(p_in)], marker="^" if side == "BUY" else "v", s=22,
                       color="tab:blue", zorder=3)  # fmt: skip
            ax.scatter([t_out], [float(p_out)], marker="x", s=22, color=colour, zorder=3)
        ax.set_ylabel(pair)
    if ax_pairs:
        ax_pairs[0].plot([], [], color="tab:green", label="trade won (entry -> exit)")
        ax_pairs[0].plot([], [], color="tab:red", label="trade lost")
        ax_pairs[0].scatter([], [], marker="^", color="tab:blue", label="entry (buy)")
        ax_pairs[0].scatter([], [], marker="v", color="tab:blue", label="entry (sell)")
        ax_pairs[0].legend(loc="upper left", fontsize=7, ncol=5)
    timed[-1].set_xlabel("time (UTC)")
    ax_text.axis("off")
    summary = strategy_summary(strategies) or ["no closed trades"]
    ax_text.text(0, 1, "\n".join(summary + notes), va="top", family="monospace", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return notes
