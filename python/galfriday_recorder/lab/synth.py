"""A synthetic Kraken WebSocket v2 session: the demo's market and the tests' fixture data.

Books follow a random walk in integer ticks, so every price and quantity is
exact at the pair's precision and every frame carries the checksum Kraken
would send. Trades print at the touch; a 1-minute ``ohlc`` update closes each
simulated minute. Everything is reproducible from the seed.

:class:`RoundTrip` is the ledger's counterpart: one complete trade as records,
for soak runs, benchmarks and fault tests that need many of them.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from ..records import Fill, Order, Signal

if TYPE_CHECKING:
    from ..recorder import Recorder

CHECKSUM_DEPTH = 10
Level = tuple[int, int]  # (price mantissa, quantity mantissa)
MINUTE_NS = 60_000_000_000


@dataclass(frozen=True)
class PairSpec:
    """A Kraken spot pair: precisions as its ``instrument`` frame gives them."""

    symbol: str
    price_precision: int
    qty_precision: int
    start_price_ticks: int

    def price_text(self, ticks: int) -> str:
        return fixed_text(ticks, self.price_precision)

    def qty_text(self, units: int) -> str:
        return fixed_text(units, self.qty_precision)


DEFAULT_PAIRS: dict[str, PairSpec] = {
    "XRP/USD": PairSpec("XRP/USD", 5, 8, 62_345),
    "DOGE/USD": PairSpec("DOGE/USD", 7, 8, 1_634_210),
    "BTC/USD": PairSpec("BTC/USD", 1, 8, 452_835),
    "ETH/USD": PairSpec("ETH/USD", 2, 8, 312_455),
}


def fixed_text(value: int, decimals: int) -> str:
    """An integer mantissa as Kraken writes it, every decimal shown (``5, 3 -> 0.005``)."""
    if decimals == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def rfc3339(ns: int) -> str:
    """Kraken v2's timestamp form: microseconds, 'Z'."""
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns // 1000) % 1_000_000:06d}Z"


def book_checksum(asks: Sequence[Level], bids: Sequence[Level]) -> int:
    """Kraken's CRC32 over the top 10 asks (low to high), then bids (high to low).

    Kraken strips the point and leading zeros from each price and quantity, which
    leaves exactly the decimal digits of the integer mantissas.
    """
    levels = [*asks[:CHECKSUM_DEPTH], *bids[:CHECKSUM_DEPTH]]
    return zlib.crc32("".join(f"{price}{qty}" for price, qty in levels).encode())


def _checksum(bids: dict[int, int], asks: dict[int, int]) -> int:
    def top(side: dict[int, int], reverse: bool) -> list[Level]:
        return [(p, side[p]) for p in sorted(side, reverse=reverse)[:CHECKSUM_DEPTH]]

    return book_checksum(top(asks, False), top(bids, True))


@dataclass
class _Book:
    spec: PairSpec
    mid_ticks: int
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)


@dataclass
class _Bar:
    start_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trades: int


class SyntheticKraken:
    """Frames a Kraken v2 public connection would deliver for ``pairs``, ``step_ns`` apart."""

    def __init__(
        self,
        pairs: list[str] | None = None,
        *,
        seed: int = 7,
        depth: int = 10,
        start_ns: int = 1_767_225_600_000_000_000,
        step_ns: int = 5_000_000,
    ) -> None:
        names = pairs or ["XRP/USD", "DOGE/USD"]
        unknown = [p for p in names if p not in DEFAULT_PAIRS]
        if unknown:
            raise ValueError(
                f"no synthetic spec for pairs {unknown}; known: {sorted(DEFAULT_PAIRS)}"
            )
        self.specs = [DEFAULT_PAIRS[p] for p in names]
        self.depth = depth
        self.now_ns = start_ns
        self.step_ns = step_ns
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        self._books = {s.symbol: _Book(s, s.start_price_ticks) for s in self.specs}
        self._bars: dict[str, _Bar] = {}
        self._trade_id = 1_000_000

    def instrument_frame(self) -> bytes:
        pairs = [
            {
                "symbol": s.symbol,
                "base": s.symbol.split("/")[0],
                "quote": s.symbol.split("/")[1],
                "status": "online",
                "price_precision": s.price_precision,
                "qty_precision": s.qty_precision,
                "price_increment": _raw(s.price_text(1)),
                "qty_increment": _raw(s.qty_text(1)),
                "marginable": False,
                "has_index": True,
            }
            for s in self.specs
        ]
        return _render(
            {"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": pairs}}
        )

    def _levels(
        self, spec: PairSpec, levels: dict[int, int], reverse: bool, prices: list[int] | None = None
    ) -> list[dict[str, object]]:
        chosen = prices if prices is not None else sorted(levels, reverse=reverse)
        return [
            {"price": _raw(spec.price_text(p)), "qty": _raw(spec.qty_text(levels.get(p, 0)))}
            for p in chosen
        ]

    def _target_side(self, book: _Book, bid: bool, old: dict[int, int]) -> dict[int, int]:
        spec = book.spec
        half = 1 + book.mid_ticks // 4000
        best = book.mid_ticks - half if bid else book.mid_ticks + half
        sign = -1 if bid else 1
        side: dict[int, int] = {}
        for i in range(self.depth):
            price = best + sign * i * (1 + i // 3)
            keep = old.get(price)
            if keep is not None and self._rng.random() < 0.8:
                side[price] = keep
            else:
                side[price] = self._rng.randint(1, 5_000) * 10 ** max(spec.qty_precision - 2, 0)
        return side

    def snapshot_frames(self) -> list[bytes]:
        out = []
        for book in self._books.values():
            book.bids = self._target_side(book, True, {})
            book.asks = self._target_side(book, False, {})
            out.append(
                _render(
                    {
                        "channel": "book",
                        "type": "snapshot",
                        "data": [
                            {
                                "symbol": book.spec.symbol,
                                "bids": self._levels(book.spec, book.bids, True),
                                "asks": self._levels(book.spec, book.asks, False),
                                "checksum": _checksum(book.bids, book.asks),
                            }
                        ],
                    }
                )
            )
        return out

    def _update(self, book: _Book) -> bytes:
        move = self._rng.choices((-1, 0, 1), weights=(1, 3, 1))[0]
        book.mid_ticks = max(book.mid_ticks + move * max(1, book.mid_ticks // 4_000), 100)
        changes: dict[str, list[dict[str, object]]] = {}
        for name, bid in (("bids", True), ("asks", False)):
            old = book.bids if bid else book.asks
            new = self._target_side(book, bid, old)
            touched = sorted(set(old) | set(new), reverse=bid)
            diff = [p for p in touched if old.get(p) != new.get(p)]
            changes[name] = self._levels(book.spec, new, bid, diff)
            if bid:
                book.bids = new
            else:
                book.asks = new
        return _render(
            {
                "channel": "book",
                "type": "update",
                "data": [
                    {
                        "symbol": book.spec.symbol,
                        **changes,
                        "checksum": _checksum(book.bids, book.asks),
                        "timestamp": rfc3339(self.now_ns),
                    }
                ],
            }
        )

    def _trade(self, book: _Book) -> list[bytes]:
        spec = book.spec
        buy = self._rng.random() < 0.5
        price = min(book.asks) if buy else max(book.bids)
        qty = self._rng.randint(1, 2_000) * 10 ** max(spec.qty_precision - 2, 0)
        self._trade_id += 1
        frames = self._close_bar_if_due(spec.symbol)
        bar = self._bars.get(spec.symbol)
        if bar is None:
            start = self.now_ns - self.now_ns % MINUTE_NS
            self._bars[spec.symbol] = _Bar(start, price, price, price, price, qty, 1)
        else:
            bar.high, bar.low, bar.close = max(bar.high, price), min(bar.low, price), price
            bar.volume += qty
            bar.trades += 1
        frames.append(
            _render(
                {
                    "channel": "trade",
                    "type": "update",
                    "data": [
                        {
                            "symbol": spec.symbol,
                            "side": "buy" if buy else "sell",
                            "price": _raw(spec.price_text(price)),
                            "qty": _raw(spec.qty_text(qty)),
                            "ord_type": "market",
                            "trade_id": self._trade_id,
                            "timestamp": rfc3339(self.now_ns),
                        }
                    ],
                }
            )
        )
        return frames

    def _close_bar_if_due(self, symbol: str) -> list[bytes]:
        bar = self._bars.get(symbol)
        if bar is None or self.now_ns < bar.start_ns + MINUTE_NS:
            return []
        spec = self._books[symbol].spec
        del self._bars[symbol]
        return [
            _render(
                {
                    "channel": "ohlc",
                    "type": "update",
                    "data": [
                        {
                            "symbol": symbol,
                            "open": _raw(spec.price_text(bar.open)),
                            "high": _raw(spec.price_text(bar.high)),
                            "low": _raw(spec.price_text(bar.low)),
                            "close": _raw(spec.price_text(bar.close)),
                            "trades": bar.trades,
                            "volume": _raw(spec.qty_text(bar.volume)),
                            "vwap": _raw(spec.price_text(bar.close)),
                            "interval_begin": rfc3339(bar.start_ns),
                            "interval": 1,
                            "timestamp": rfc3339(bar.start_ns + MINUTE_NS - 1000),
                        }
                    ],
                }
            )
        ]

    def session(self, updates: int) -> Iterator[tuple[int, bytes]]:
        """``(received_at_ns, frame)``: status, instrument, snapshots, then ``updates`` book updates
        interleaved with heartbeats, trades and closing ``ohlc`` bars."""
        yield (
            self.now_ns,
            b'{"channel":"status","type":"update","data":[{"system":"online","api_version":"v2","version":"2.0.9"}]}',
        )
        yield self.now_ns, self.instrument_frame()
        for frame in self.snapshot_frames():
            yield self.now_ns, frame
        books = list(self._books.values())
        for i in range(updates):
            self.now_ns += self.step_ns
            book = books[i % len(books)]
            yield self.now_ns, self._update(book)
            if self._rng.random() < 0.15:
                for frame in self._trade(book):
                    yield self.now_ns, frame
            if i % 1000 == 999:
                yield self.now_ns, b'{"channel":"heartbeat"}'


@dataclass(frozen=True)
class RoundTrip:
    """One take-profit trade as the bot records it: signal, entry, fills, exit.

    The entry fills in two parts, one paying its fee in the base asset, so the
    trade's P&L exercises the fee conversion. All values are exact decimals.
    """

    signal: Signal
    entry: Order
    entry_fills: tuple[Fill, ...]
    exit: Order
    exit_fill: Fill

    @classmethod
    def at(cls, when: datetime, strategy_id: str = "synthetic") -> RoundTrip:
        pair, qty = "XRP/USD", Decimal(10)
        signal = Signal(
            trading_pair=pair,
            exchange="kraken",
            strategy_id=strategy_id,
            side="BUY",
            entry_type="LIMIT",
            proposed_entry_price=Decimal("0.5"),
            proposed_sl_price=Decimal("0.45"),
            proposed_tp_price=Decimal("0.55"),
            created_at=when,
        )

        def order(side: str, order_type: str, limit: str | None, stop: str | None) -> Order:
            return Order(
                trading_pair=pair,
                exchange="kraken",
                side=side,
                order_type=order_type,
                quantity_ordered=qty,
                limit_price=None if limit is None else Decimal(limit),
                stop_price=None if stop is None else Decimal(stop),
                signal_id=signal.signal_id,
                created_at=when,
            )

        def fill(order: Order, *values: str, at: datetime = when) -> Fill:
            quantity, price, fee, asset = values
            return Fill(
                trading_pair=pair,
                exchange="kraken",
                side=order.side,
                quantity_filled=Decimal(quantity),
                fill_price=Decimal(price),
                commission=Decimal(fee),
                commission_asset=asset,
                client_order_id=order.client_order_id,
                filled_at=at,
            )

        entry = order("BUY", "LIMIT", limit="0.5", stop=None)
        exit_ = order("SELL", "TAKE_PROFIT", limit=None, stop="0.55")
        return cls(
            signal=signal,
            entry=entry,
            entry_fills=(
                fill(entry, "4", "0.5", "0.0008", "USD"),
                fill(entry, "6", "0.5012", "0.012", "XRP"),
            ),
            exit=exit_,
            exit_fill=fill(
                exit_, "10", "0.5501", "0.0143026", "USD", at=when + timedelta(milliseconds=500)
            ),
        )

    def record(self, rec: Recorder, exchange_ids: tuple[str, str], **approval: Any) -> None:
        """Make the ledger calls in the order the bot makes them (``approval``: risk checks)."""
        rec.record_signal(self.signal)
        rec.update_signal_status(self.signal.signal_id, "APPROVED", None, approval or None)
        rec.record_order(self.entry)
        rec.update_order(self.entry.client_order_id, "NEW", exchange_order_id=exchange_ids[0])
        for fill in self.entry_fills:
            rec.record_fill(fill)
        rec.record_order(self.exit)
        rec.update_order(self.exit.client_order_id, "NEW", exchange_order_id=exchange_ids[1])
        rec.record_fill(self.exit_fill)


class _Raw(str):
    """Number text to emit unquoted, so trailing zeros survive as Kraken sends them."""


def _raw(text: str) -> _Raw:
    return _Raw(text)


_MARK = "\x00num\x00"


def _render(obj: dict[str, object]) -> bytes:
    """JSON with :class:`_Raw` values written as bare numbers (orjson would quote them)."""

    def mark(value: object) -> object:
        if isinstance(value, _Raw):
            return _MARK + str(value) + _MARK
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = orjson.dumps(mark(obj))
    quoted = ('"' + _MARK.replace("\x00", "\\u0000")).encode()
    closing = (_MARK.replace("\x00", "\\u0000") + '"').encode()
    return text.replace(quoted, b"").replace(closing, b"")
