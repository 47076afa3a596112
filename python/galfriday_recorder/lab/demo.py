"""The main job: a synthetic Kraken session and a simple strategy through the whole recorder.

Every seed table and measurement receives data: books, trades and bars from
the synthetic market; features and predictions from the book; signals (some
rejected by a risk check), entry orders with partial fills, take-profit and
stop-loss exits (or a time exit), cancels, logs, portfolio snapshots and a
configuration from the strategy; self-metrics from the recorder.

The strategy speaks as Gal-Friday does: its signals, orders and fills are the
bot's events (:mod:`.botevents`, string client order ids, Kraken's order types
and statuses, per-trade fills plus a cumulative report of each finished order)
handed to a :class:`~.bridge.BotBridge`, as the bot's bus would.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

from .._core import BookTop
from ..bridge import BotBridge
from ..recorder import Recorder
from ..records import Order, PortfolioSnapshot, Signal
from .botevents import (
    ExecutionReportEvent,
    FillEvent,
    TradeSignalApprovedEvent,
    TradeSignalProposedEvent,
    TradeSignalRejectedEvent,
)
from .synth import DEFAULT_PAIRS, SyntheticKraken

log = logging.getLogger("galfriday.strategy")

MAKER_FEE = Decimal("0.0016")
TAKER_FEE = Decimal("0.0026")
STRATEGY_ID = "imbalance_reversion_v1"
SNAPSHOT_EVERY_NS = 10_000_000_000
BOT_METRICS_EVERY_NS = 5_000_000_000


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


@dataclass
class _Position:
    """One open trade cycle: the entry's fills are in, the exits are working."""

    signal_id: uuid.UUID
    side: str
    qty: Decimal
    entry_price: Decimal
    opened_ns: int
    take_profit: Order
    stop_loss: Order
    tp_price: Decimal
    sl_price: Decimal


@dataclass
class _PairState:
    mids: deque[Decimal] = field(default_factory=lambda: deque(maxlen=64))
    tops_seen: int = 0
    position: _Position | None = None


@dataclass
class StrategyCounts:
    signals: int = 0
    rejected: int = 0
    orders: int = 0
    fills: int = 0
    exits: dict[str, int] = field(default_factory=dict)
    ledger_events: int = 0


class DemoStrategy:
    """Trades book imbalance: lean with the book, exit at +/- a few basis points or on time."""

    def __init__(
        self, rec: Recorder, pairs: list[str], *, seed: int = 11, equity: Decimal = Decimal("10000")
    ) -> None:
        self.rec = rec
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        self.state = {p: _PairState() for p in pairs}
        self.cash = equity
        self.start_equity = equity
        self.peak_equity = equity
        self.realized = Decimal(0)
        self.counts = StrategyCounts()
        self._next_snapshot_ns = 0
        self._next_bot_metrics_ns = 0
        self._exchange_ids = 0
        self._fills = 0
        # Exchange order and trade ids are unique on the exchange: one run's own prefix.
        self._run = f"{self.rng.getrandbits(24):06X}"
        self.bridge = BotBridge(rec)
        # Per exchange order id: quantity, value and fees filled so far (the bot's report).
        self._filled: dict[str, tuple[Decimal, Decimal, Decimal]] = {}

    # -- events -------------------------------------------------------------
    def on_top(self, top: BookTop, now_ns: int) -> None:
        bid, ask = top.bid_price, top.ask_price
        if bid is None or ask is None:
            return
        st = self.state[top.symbol]
        st.mids.append((bid + ask) / 2)
        st.tops_seen += 1
        if st.position is not None:
            self._manage(top.symbol, st.position, bid, ask, st, now_ns)
        elif st.tops_seen % 25 == 0 and len(st.mids) > 15:
            self._consider(top, bid, ask, st, now_ns)
        if now_ns >= self._next_snapshot_ns:
            self._snapshot(now_ns)
            self._next_snapshot_ns = now_ns + SNAPSHOT_EVERY_NS
        if now_ns >= self._next_bot_metrics_ns:
            self.rec.record_system_metrics(
                {
                    "api_call_latency_ms": self.rng.uniform(20, 90),
                    "prediction_latency_ms": self.rng.uniform(0.5, 3.0),
                    "end_to_end_latency_ms": self.rng.uniform(2, 12),
                    "websocket_connected": True,
                },
                module_id="bot",
                timestamp=now_ns,
            )
            self._next_bot_metrics_ns = now_ns + BOT_METRICS_EVERY_NS

    def _features(self, top: BookTop, st: _PairState, now_ns: int) -> float:
        mids = [float(m) for m in st.mids]
        steps = [b - a for a, b in zip(mids[-15:-1], mids[-14:], strict=True)]
        gains = [max(d, 0.0) for d in steps]
        losses = [max(-d, 0.0) for d in steps]
        rsi = 100.0 if not sum(losses) else 100 - 100 / (1 + sum(gains) / sum(losses))
        imbalance = top.imbalances.get(5, 0.0)
        self.rec.record_features(
            top.symbol,
            "default_v1",
            {
                "rsi_14": rsi,
                "spread_pct": top.spread_pct or 0.0,
                "book_imbalance_5": imbalance,
                "momentum_5": mids[-1] / mids[-6] - 1.0,
            },
            timestamp=now_ns,
        )
        probability = min(max(0.5 + 0.45 * imbalance, 0.0), 1.0)
        self.rec.record_prediction(
            top.symbol,
            "xgb_v3",
            "price_up_5m",
            probability,
            confidence=abs(probability - 0.5) * 2,
            timestamp=now_ns,
        )
        return probability

    def _consider(
        self, top: BookTop, bid: Decimal, ask: Decimal, st: _PairState, now_ns: int
    ) -> None:
        probability = self._features(top, st, now_ns)
        if 0.35 < probability < 0.65:
            return
        side = "BUY" if probability >= 0.65 else "SELL"
        entry = ask if side == "BUY" else bid
        win, loss = entry * Decimal("0.005"), entry * Decimal("0.0035")
        tp = entry + win if side == "BUY" else entry - win
        sl = entry - loss if side == "BUY" else entry + loss
        places = Decimal(1).scaleb(-DEFAULT_PAIRS[top.symbol].price_precision)
        signal = Signal(
            trading_pair=top.symbol,
            exchange="kraken",
            strategy_id=STRATEGY_ID,
            side=side,
            entry_type="LIMIT",
            proposed_entry_price=entry,
            proposed_sl_price=sl.quantize(places),
            proposed_tp_price=tp.quantize(places),
            prediction_value=probability,
            created_at=_dt(now_ns),
        )
        self.bridge.handle(
            TradeSignalProposedEvent(
                signal_id=signal.signal_id,
                trading_pair=signal.trading_pair,
                exchange=signal.exchange,
                side=signal.side,
                entry_type=signal.entry_type,
                proposed_entry_price=signal.proposed_entry_price,
                proposed_sl_price=signal.proposed_sl_price,
                proposed_tp_price=signal.proposed_tp_price,
                strategy_id=signal.strategy_id,
                triggering_prediction={"prediction_value": probability},
                timestamp=signal.created_at,
            )
        )
        self.counts.signals += 1
        spread_ok = (top.spread_pct or 0.0) < 0.08
        if not spread_ok or self.rng.random() < 0.25:
            reason = "spread too wide" if not spread_ok else "max exposure reached"
            self.bridge.handle(
                TradeSignalRejectedEvent(
                    signal_id=signal.signal_id,
                    trading_pair=signal.trading_pair,
                    exchange=signal.exchange,
                    side=signal.side,
                    reason=reason,
                )
            )
            log.warning(
                "signal rejected: %s",
                reason,
                extra={"trading_pair": top.symbol, "signal_id": signal.signal_id},
            )
            self.counts.rejected += 1
            self.counts.ledger_events += 3
            return
        self.bridge.handle(
            TradeSignalApprovedEvent(
                signal_id=signal.signal_id,
                trading_pair=signal.trading_pair,
                exchange=signal.exchange,
                side=signal.side,
                order_type=signal.entry_type,
                quantity=Decimal(1),
                sl_price=signal.proposed_sl_price,
                tp_price=signal.proposed_tp_price,
                risk_parameters={"spread_pct": top.spread_pct, "checks": ["spread", "exposure"]},
                limit_price=signal.proposed_entry_price,
            )
        )
        log.info(
            "signal approved",
            extra={
                "trading_pair": top.symbol,
                "signal_id": signal.signal_id,
                "probability": round(probability, 4),
            },
        )
        self.counts.ledger_events += 3
        self._enter(top, st, signal, entry, now_ns)

    def _new_order(
        self,
        pair: str,
        signal_id: uuid.UUID,
        side: str,
        order_type: str,
        qty: Decimal,
        now_ns: int,
        *,
        limit: Decimal | None = None,
        stop: Decimal | None = None,
    ) -> Order:
        self._exchange_ids += 1
        prefix = {"TAKE_PROFIT": "gf-tp", "STOP_LOSS": "gf-sl"}.get(order_type, "gf")
        order = Order(
            client_order_ref=f"{prefix}-{str(signal_id)[:8]}-{now_ns // 1000}{self._exchange_ids}",
            exchange_order_id=f"O{self._run}-{self._exchange_ids:06d}",
            trading_pair=pair,
            exchange="kraken",
            side=side,
            order_type=order_type,
            quantity_ordered=qty,
            limit_price=limit,
            stop_price=stop,
            signal_id=signal_id,
            created_at=_dt(now_ns),
        )
        self._report(order, "open", now_ns)
        self.counts.orders += 1
        self.counts.ledger_events += 1
        return order

    def _report(self, order: Order, status: str, now_ns: int) -> None:
        """The bot's execution report: Kraken's words, cumulative figures."""
        assert order.exchange_order_id is not None
        qty, value, fees = self._filled.get(order.exchange_order_id, (Decimal(0),) * 3)
        self.bridge.handle(
            ExecutionReportEvent(
                exchange_order_id=order.exchange_order_id,
                client_order_id=order.client_order_ref,
                signal_id=order.signal_id,
                trading_pair=order.trading_pair,
                exchange=order.exchange,
                order_status=status,
                order_type=order.order_type.lower().replace("_", "-"),
                side=order.side,
                quantity_ordered=order.quantity_ordered,
                quantity_filled=qty,
                average_fill_price=value / qty if qty else None,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
                commission=fees,
                commission_asset="Z" + order.trading_pair.split("/")[1],
                timestamp_exchange=_dt(now_ns),
            )
        )

    def _fill(self, order: Order, qty: Decimal, price: Decimal, now_ns: int) -> None:
        """One per-trade fill (the bot's ``FillEvent``: fee in the quote currency)."""
        assert order.exchange_order_id is not None
        rate = MAKER_FEE if order.order_type == "LIMIT" else TAKER_FEE
        fee = (qty * price * rate).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
        self._fills += 1
        fill = FillEvent(
            order_id=order.exchange_order_id,
            fill_id=f"T{self._run}-{self._fills:07d}",
            trading_pair=order.trading_pair,
            side=order.side,
            price=price,
            quantity=qty,
            fee=fee,
            timestamp=_dt(now_ns),
        )
        done, value, fees = self._filled.get(order.exchange_order_id, (Decimal(0),) * 3)
        self._filled[order.exchange_order_id] = (done + qty, value + qty * price, fees + fee)
        if done + qty < order.quantity_ordered:
            self.bridge.handle(fill)
        elif self.rng.random() < 0.5:  # the feed first, then the poll's report: nothing twice
            self.bridge.handle(fill)
            self._report(order, "closed", now_ns)
        else:  # the poll wins the race: the report writes the fill, the feed's is covered
            self._report(order, "closed", now_ns)
            self.bridge.handle(fill)
        direction = 1 if order.side == "BUY" else -1
        self.cash -= direction * qty * price + fee
        self.counts.fills += 1
        self.counts.ledger_events += 1

    def _enter(
        self, top: BookTop, st: _PairState, signal: Signal, entry: Decimal, now_ns: int
    ) -> None:
        spec = DEFAULT_PAIRS[top.symbol]
        qty = (Decimal(400) / entry).quantize(
            Decimal(1).scaleb(-spec.qty_precision + 4), rounding=ROUND_DOWN
        )
        pair, sid = signal.trading_pair, signal.signal_id
        order = self._new_order(pair, sid, signal.side, "LIMIT", qty, now_ns, limit=entry)
        first = (qty * Decimal(self.rng.choice(("0.25", "0.5", "1")))).quantize(qty)
        for part in (first, qty - first):
            if part > 0:
                self._fill(order, part, entry, now_ns)
        exit_side = "SELL" if signal.side == "BUY" else "BUY"
        tp = self._new_order(
            pair, sid, exit_side, "TAKE_PROFIT", qty, now_ns, stop=signal.proposed_tp_price
        )
        sl = self._new_order(
            pair, sid, exit_side, "STOP_LOSS", qty, now_ns, stop=signal.proposed_sl_price
        )
        st.position = _Position(
            signal.signal_id,
            signal.side,
            qty,
            entry,
            now_ns,
            tp,
            sl,
            signal.proposed_tp_price,
            signal.proposed_sl_price,
        )

    def _manage(
        self, pair: str, pos: _Position, bid: Decimal, ask: Decimal, st: _PairState, now_ns: int
    ) -> None:
        up = pos.side == "BUY"
        exit_price = bid if up else ask
        tp_price, sl_price = pos.tp_price, pos.sl_price
        if (exit_price >= tp_price) if up else (exit_price <= tp_price):
            self._close(st, pos, pos.take_profit, pos.stop_loss, exit_price, now_ns, "TP_HIT")
        elif (exit_price <= sl_price) if up else (exit_price >= sl_price):
            self._close(st, pos, pos.stop_loss, pos.take_profit, exit_price, now_ns, "SL_HIT")
        elif now_ns - pos.opened_ns > 90_000_000_000:
            self._cancel(pos.take_profit, now_ns)
            self._cancel(pos.stop_loss, now_ns)
            market = self._new_order(
                pair, pos.signal_id, "SELL" if up else "BUY", "MARKET", pos.qty, now_ns
            )
            self._fill(market, pos.qty, exit_price, now_ns)
            # The bot's reports say nothing of why: a market exit is a manual close.
            self._finish(st, pos, exit_price, now_ns, "MANUAL_CLOSE")

    def _cancel(self, order: Order, now_ns: int) -> None:
        self._report(order, "cancelled", now_ns)
        self.counts.ledger_events += 1

    def _close(
        self,
        st: _PairState,
        pos: _Position,
        hit: Order,
        other: Order,
        price: Decimal,
        now_ns: int,
        reason: str,
    ) -> None:
        self._cancel(other, now_ns)
        self._fill(hit, hit.quantity_ordered, price, now_ns)
        self._finish(st, pos, price, now_ns, reason)

    def _finish(
        self, st: _PairState, pos: _Position, price: Decimal, now_ns: int, reason: str
    ) -> None:
        direction = 1 if pos.side == "BUY" else -1
        pnl = (price - pos.entry_price) * pos.qty * direction
        self.realized += pnl
        self.counts.exits[reason] = self.counts.exits.get(reason, 0) + 1
        level = logging.INFO if pnl >= 0 else logging.WARNING
        log.log(
            level,
            "trade closed: %s",
            reason,
            extra={
                "trading_pair": pos.take_profit.trading_pair,
                "signal_id": pos.signal_id,
                "gross_pnl": str(pnl),
            },
        )
        st.position = None
        if self.rng.random() < 0.1:
            try:
                raise TimeoutError("Kraken REST AddOrder timed out after 5000 ms")
            except TimeoutError:
                log.exception(
                    "order amend failed; will retry",
                    extra={"trading_pair": pos.take_profit.trading_pair},
                )

    def _snapshot(self, now_ns: int) -> None:
        positions: dict[str, Any] = {}
        exposure = Decimal(0)
        unrealized = Decimal(0)
        for pair, st in self.state.items():
            pos = st.position
            if pos is None or not st.mids:
                continue
            value = pos.qty * st.mids[-1]
            direction = 1 if pos.side == "BUY" else -1
            upnl = (st.mids[-1] - pos.entry_price) * pos.qty * direction
            exposure += value
            unrealized += upnl
            positions[pair] = {
                "qty": str(pos.qty * direction),
                "entry_price": str(pos.entry_price),
                "market_value": str(value),
                "unrealized_pnl": str(upnl),
            }
        equity = self.cash + sum(
            (
                st.position.qty * st.mids[-1] * (1 if st.position.side == "BUY" else -1)
                for st in self.state.values()
                if st.position is not None and st.mids
            ),
            Decimal(0),
        )
        self.peak_equity = max(self.peak_equity, equity)
        drawdown = float((self.peak_equity - equity) / self.peak_equity * 100)
        exposure_pct = float(exposure / equity * 100) if equity else 0.0
        self.rec.record_portfolio_snapshot(
            PortfolioSnapshot(
                total_equity=equity.quantize(Decimal("0.00000001")),
                available_balance=self.cash.quantize(Decimal("0.00000001")),
                total_exposure_pct=exposure_pct,
                daily_drawdown_pct=drawdown,
                weekly_drawdown_pct=drawdown,
                total_drawdown_pct=drawdown,
                positions=positions,
                snapshot_timestamp=_dt(now_ns),
            )
        )
        self.counts.ledger_events += 1
        by_pair = {
            pair: (Decimal(p["qty"]), Decimal(p["market_value"])) for pair, p in positions.items()
        }
        self.rec.record_portfolio_metrics(
            total_equity=equity,
            available_balance=self.cash,
            unrealized_pnl=unrealized,
            realized_pnl_session=self.realized,
            total_exposure_pct=exposure_pct,
            daily_drawdown_pct=drawdown,
            weekly_drawdown_pct=drawdown,
            total_drawdown_pct=drawdown,
            positions=by_pair,
            timestamp=now_ns,
        )


@dataclass
class DemoResult:
    frames: int
    book_tops: int
    wall_s: float
    call_ns: list[int]
    counts: StrategyCounts
    market_stats: Mapping[str, float | int]


def run_session(
    rec: Recorder,
    pairs: list[str],
    minutes: float,
    *,
    realtime: bool = False,
    seed: int = 7,
    progress: bool = True,
) -> DemoResult:
    """Feed ``minutes`` of synthetic market through ``rec`` with the demo strategy on top."""
    market = SyntheticKraken(pairs, seed=seed)
    strategy = DemoStrategy(rec, pairs, seed=seed + 4)
    rec.record_configuration(
        {
            "strategy_id": STRATEGY_ID,
            "pairs": pairs,
            "maker_fee": "0.0016",
            "taker_fee": "0.0026",
            "take_profit_bps": 50,
            "stop_loss_bps": 35,
            "max_hold_s": 90,
            "risk": {"max_exposure_pct": 30},
        }
    )
    logging.getLogger("galfriday").addHandler(rec.log_handler(logging.INFO))
    logging.getLogger("galfriday").setLevel(logging.INFO)
    updates = int(minutes * 60_000_000_000 / market.step_ns)
    call_ns: list[int] = []
    frames = tops_seen = 0
    started = time.perf_counter()
    sim_start = market.now_ns
    next_report = started + 2.0
    for received_at_ns, frame in market.session(updates):
        if realtime:
            lag = (received_at_ns - sim_start) / 1e9 - (time.perf_counter() - started)
            if lag > 0:
                time.sleep(lag)
        t0 = time.perf_counter_ns()
        tops = rec.on_market_frame(frame, received_at_ns)
        call_ns.append(time.perf_counter_ns() - t0)
        frames += 1
        for top in tops:
            tops_seen += 1
            strategy.on_top(top, received_at_ns)
        if progress and time.perf_counter() >= next_report:
            done = (received_at_ns - sim_start) / (minutes * 60e9)
            print(
                f"\r  {done:6.1%}  {frames:>9,} frames  {strategy.counts.signals:>5} signals  "
                f"{sum(strategy.counts.exits.values()):>4} trades closed",
                end="",
                flush=True,
            )
            next_report += 2.0
    if progress:
        print()
    return DemoResult(
        frames,
        tops_seen,
        time.perf_counter() - started,
        call_ns,
        strategy.counts,
        rec.market.stats(),
    )
