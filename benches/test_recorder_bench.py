"""What a trading loop pays per call with the whole recorder running (issue: p99 < 20 us
for a book frame): a ``Recorder`` on the real PostgreSQL and InfluxDB, its background
writers busy, and the bot's thread timing each call. ``extra_info`` carries the p99,
which pytest-benchmark's own table does not show. A log line is measured beside
its floor, the same line through ``logging`` into a handler that does nothing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from galfriday_recorder import Fill, Order, Recorder, RecorderConfig
from galfriday_recorder.lab.synth import SyntheticKraken

ROUNDS = 20_000


@pytest.fixture
def rec(recorder_config: Callable[..., RecorderConfig]) -> Iterator[Recorder]:
    with Recorder(recorder_config(metrics_interval_s=1.0)) as recorder:
        yield recorder
        assert recorder.flush(120)


def _percentile_us(benchmark: Any, q: float) -> float:
    data: list[float] = sorted(benchmark.stats.stats.data)
    return round(data[min(int(q * len(data)), len(data) - 1)] * 1e6, 2)


def _measure(benchmark: Any, call: Callable[[], object]) -> None:
    benchmark.pedantic(call, rounds=ROUNDS, iterations=1, warmup_rounds=200)
    if benchmark.disabled:  # --benchmark-disable: one call, nothing timed
        return
    benchmark.extra_info["p50_us"] = _percentile_us(benchmark, 0.50)
    benchmark.extra_info["p99_us"] = _percentile_us(benchmark, 0.99)


@pytest.mark.benchmark(group="recorder: one call on the bot's thread, everything running")
def test_call_on_market_frame(benchmark: Any, rec: Recorder) -> None:
    frames = [f for _, f in SyntheticKraken(["XRP/USD", "DOGE/USD"], seed=4).session(ROUNDS + 500)]
    for frame in frames[:4]:  # status, instrument and both snapshots
        rec.on_market_frame(frame)
    updates = itertools.cycle(f for f in frames[4:] if b'"book"' in f)
    _measure(benchmark, lambda: rec.on_market_frame(next(updates)))
    assert rec.stats()["market_malformed"] == 0


@pytest.mark.benchmark(group="recorder: one call on the bot's thread, everything running")
def test_call_record_fill(benchmark: Any, rec: Recorder) -> None:
    order = Order(
        trading_pair="XRP/USD",
        exchange="kraken",
        side="BUY",
        order_type="LIMIT",
        quantity_ordered=Decimal(ROUNDS + 300),
        limit_price=Decimal("0.6"),
    )
    rec.record_order(order)
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    fills = iter(
        [
            Fill(
                trading_pair="XRP/USD",
                exchange="kraken",
                side="BUY",
                quantity_filled=Decimal(1),
                fill_price=Decimal("0.6"),
                commission=Decimal("0.001"),
                commission_asset="USD",
                client_order_id=order.client_order_id,
                filled_at=at,
            )
            for _ in range(ROUNDS + 250)
        ]
    )
    _measure(benchmark, lambda: rec.record_fill(next(fills)))


class _Discard(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


@pytest.mark.benchmark(group="recorder: one log line through logging, everything running")
@pytest.mark.parametrize("handler", ["ledger", "do_nothing_baseline"])
def test_call_log_line(benchmark: Any, rec: Recorder, handler: str) -> None:
    """A log line into system_logs, beside its floor: ``logging`` with a do-nothing handler."""
    bot = logging.getLogger(f"galfriday.bench.{handler}")
    bot.propagate = False
    bot.setLevel(logging.INFO)
    bot.addHandler(rec.log_handler() if handler == "ledger" else _Discard())
    _measure(benchmark, lambda: bot.info("order acknowledged", extra={"trading_pair": "XRP/USD"}))


FEATURES = {"rsi_14": 55.5, "spread_pct": 0.0123, "book_imbalance_5": -0.2, "momentum_5": 1}


@pytest.mark.benchmark(group="recorder: one series point on the bot's thread, everything running")
def test_call_record_features(benchmark: Any, rec: Recorder) -> None:
    """Schema check, conversion (an int for a Float field), escaping, hand-over to the writer."""
    ns = itertools.count(1_700_000_000_000_000_000)
    _measure(
        benchmark,
        lambda: rec.record_features("XRP/USD", "default_v1", FEATURES, next(ns)),
    )


@pytest.mark.benchmark(group="recorder: one series point on the bot's thread, everything running")
def test_call_record_features_influxdb_client_point_baseline(benchmark: Any, rec: Recorder) -> None:
    """The same point built with influxdb-client's ``Point`` and handed to the same writer."""
    from influxdb_client.client.write.point import Point

    ns = itertools.count(1_700_000_000_000_000_000)

    def call() -> None:
        # influxdb-client ships py.typed but leaves Point's methods unannotated
        point = (
            Point("features")  # type: ignore[no-untyped-call]
            .tag("exchange", "kraken")
            .tag("trading_pair", "XRP/USD")
            .tag("feature_set_id", "default_v1")
            .time(next(ns))
        )
        for key, value in FEATURES.items():
            point.field(key, float(value))
        rec.series.write(point.to_line_protocol().encode() + b"\n")

    _measure(benchmark, call)
