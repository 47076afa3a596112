"""What the bot's risk and valuation services lose on a restart, read back from the ledger.

Peak equity, the equity the UTC day and the ISO week (from Monday 00:00 UTC)
started with, and the current run of losing trades. A period's starting equity
is the last snapshot taken at or before its start; when the recorder has none
that old, the period's first snapshot.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class RiskState:
    peak_equity: Decimal | None
    day_start_equity: Decimal | None
    week_start_equity: Decimal | None
    consecutive_losses: int  # closed trades with realized_pnl < 0 since the last one that was not
    as_of: datetime


def _start_equity(bound: str) -> str:
    return (
        "(SELECT total_equity FROM ("
        "(SELECT total_equity, 0 AS k FROM portfolio_snapshots "
        f"WHERE snapshot_timestamp <= %({bound})s ORDER BY snapshot_timestamp DESC LIMIT 1) "
        "UNION ALL (SELECT total_equity, 1 FROM portfolio_snapshots "
        f"WHERE snapshot_timestamp > %({bound})s AND snapshot_timestamp <= %(as_of)s "
        "ORDER BY snapshot_timestamp LIMIT 1)) x ORDER BY k LIMIT 1)"
    )


RISK_STATE_SQL = (
    "SELECT (SELECT max(total_equity) FROM portfolio_snapshots "
    "WHERE snapshot_timestamp <= %(as_of)s) AS peak_equity, "
    f"{_start_equity('day')} AS day_start_equity, "
    f"{_start_equity('week')} AS week_start_equity, "
    "(SELECT count(*) FROM trades WHERE exit_timestamp <= %(as_of)s AND exit_timestamp > "
    "coalesce((SELECT max(exit_timestamp) FROM trades WHERE realized_pnl >= 0 "
    "AND exit_timestamp <= %(as_of)s), '-infinity')) AS consecutive_losses"
)


def risk_state_params(as_of: datetime | None) -> dict[str, datetime]:
    """The statement's parameters: ``as_of`` (default now) and the day's and week's starts."""
    now = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"as_of": now, "day": day, "week": day - timedelta(days=day.weekday())}


def risk_state(row: dict[str, Any], as_of: datetime) -> RiskState:
    return RiskState(
        row["peak_equity"],
        row["day_start_equity"],
        row["week_start_equity"],
        int(row["consecutive_losses"]),
        as_of,
    )
