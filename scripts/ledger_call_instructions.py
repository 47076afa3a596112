"""Instructions one ``Ledger.record_fill`` costs its caller, a count that load cannot blur.

Run twice under valgrind and subtract (no PostgreSQL, no writer thread: the queue
only grows, so a collection walks more than it would with the writer draining it):

    for n in 0 5000; do valgrind --tool=cachegrind --cache-sim=no \\
      --cachegrind-out-file=/dev/null .venv/bin/python scripts/ledger_call_instructions.py $n \\
      2>&1 | grep "I *refs"; done

(difference / 5000 = instructions per call). ``--commission`` gives each fill one.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.ledger import Ledger
from galfriday_recorder.records import Fill, Order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", type=int, help="record_fill calls to make (at most 5000)")
    parser.add_argument("--commission", action="store_true", help="fills pay a commission")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp()) / "data"
    ledger = Ledger(RecorderConfig(pg_dsn="postgresql://nobody@127.0.0.1:1/none", data_dir=data))
    # Running as far as a call can see, with nothing behind it: no I/O is ever timed here.
    ledger._started = True
    ledger._state.loaded = True
    ledger._writer.parked = False
    order = Order(
        trading_pair="XRP/USD",
        exchange="kraken",
        side="BUY",
        order_type="LIMIT",
        quantity_ordered=Decimal(10**6),
        limit_price=Decimal("0.5"),
    )
    ledger.record_order(order)
    fills = [
        Fill(
            client_order_id=order.client_order_id,
            trading_pair="XRP/USD",
            exchange="kraken",
            side="BUY",
            quantity_filled=Decimal(1),
            fill_price=Decimal("0.5"),
            commission=Decimal("0.0012") if args.commission else Decimal(0),
            commission_asset="USD",
            fill_id=f"F{uuid.uuid4().hex}",
        )
        for _ in range(5000)
    ]
    for fill in fills[: args.calls]:
        ledger.record_fill(fill)


if __name__ == "__main__":
    main()
