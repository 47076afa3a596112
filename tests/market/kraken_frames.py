"""Synthetic Kraken WebSocket sessions with correct checksums.

`SyntheticBook` keeps a deep "exchange side" book in integer mantissas and
emits what Kraken would send to a client subscribed at ``depth``: a snapshot,
then updates carrying only the levels that changed in the client's view (levels
pushed out of range are not deleted: clients truncate), each with the CRC32 of
the resulting top 10. Numbers are written with full precision (``0.10000000``)
as JSON numbers (v2) or quoted strings (v1), exactly as Kraken does.

Used by the tests and benchmarks; number, time and checksum text come from
:mod:`galfriday_recorder.lab.synth`, which writes the demo's v2 sessions.
"""

from __future__ import annotations

import random

from galfriday_recorder.lab.synth import Level, book_checksum, fixed_text, rfc3339


class SyntheticBook:
    """One symbol's exchange-side book and the frames a depth-limited client sees."""

    def __init__(
        self,
        symbol: str = "BTC/USD",
        mid: int = 452_840,
        price_decimals: int = 1,
        qty_decimals: int = 8,
        depth: int = 10,
        seed: int = 0,
        start_ns: int = 1_700_000_000_000_000_000,
    ) -> None:
        self.symbol = symbol
        self.mid = mid
        self.ps = price_decimals
        self.qs = qty_decimals
        self.depth = depth
        self.rng = random.Random(seed)
        self.ts = start_ns
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for i in range(1, depth * 3 + 1):
            self.bids[mid - 3 * i] = self._qty()
            self.asks[mid + 3 * i] = self._qty()

    def _qty(self) -> int:
        scale: int = 10 ** max(self.qs - 3, 0)
        return self.rng.randint(1, 5_000) * scale + self.rng.randint(0, 999)

    def view(self) -> tuple[list[Level], list[Level]]:
        """The client's book: (bids best first, asks best first), cut to depth."""
        bids = sorted(self.bids.items(), key=lambda kv: -kv[0])[: self.depth]
        asks = sorted(self.asks.items())[: self.depth]
        return bids, asks

    def expected_checksum(self) -> int:
        bids, asks = self.view()
        return book_checksum(asks, bids)

    def _levels_json(self, levels: list[Level]) -> str:
        ps, qs = self.ps, self.qs
        return ",".join(
            f'{{"price":{fixed_text(p, ps)},"qty":{fixed_text(q, qs)}}}' for p, q in levels
        )

    def _entry(self, bids: list[Level], asks: list[Level], with_ts: bool) -> str:
        ts = f',"timestamp":"{rfc3339(self.ts)}"' if with_ts else ""
        return (
            f'{{"symbol":"{self.symbol}","bids":[{self._levels_json(bids)}],'
            f'"asks":[{self._levels_json(asks)}],"checksum":{self.expected_checksum()}{ts}}}'
        )

    def snapshot_entry(self) -> str:
        bids, asks = self.view()
        return self._entry(bids, asks, with_ts=False)

    def snapshot_frame(self) -> str:
        return f'{{"channel":"book","type":"snapshot","data":[{self.snapshot_entry()}]}}'

    def set_level(self, side: str, price: int, qty: int) -> str:
        """Change the exchange book; returns the v2 update entry a client receives."""
        return self.set_levels([(side, price, qty)])

    def set_levels(self, ops: list[tuple[str, int, int]]) -> str:
        """Several changes at once: the one v2 update entry carrying them all."""
        before_b, before_a = self.view()
        for side, price, qty in ops:
            book = self.bids if side == "bid" else self.asks
            if qty == 0:
                book.pop(price, None)
            else:
                book[price] = qty
        after_b, after_a = self.view()
        self.ts += self.rng.randint(1, 2_000_000)

        def diff(before: list[Level], after: list[Level], full: dict[int, int]) -> list[Level]:
            b = dict(before)
            out = [(p, q) for p, q in after if b.get(p) != q]
            out += [(p, 0) for p in b if p not in full]  # deleted, not merely pushed out
            return out

        return self._entry(
            diff(before_b, after_b, self.bids), diff(before_a, after_a, self.asks), with_ts=True
        )

    def random_op(self) -> tuple[str, int, int]:
        """A random (side, price, new qty): mostly qty changes near the top."""
        side = self.rng.choice(("bid", "ask"))
        book = self.bids if side == "bid" else self.asks
        r = self.rng.random()
        sign = -1 if side == "bid" else 1
        if r < 0.6 and book:
            top = sorted(book, key=lambda p: sign * p)[: self.depth]
            return side, self.rng.choice(top), self._qty()
        if r < 0.8 or len(book) <= self.depth + 5:
            price = self.mid + sign * self.rng.randint(1, self.depth * 3)
            return side, price, self._qty()
        top = sorted(book, key=lambda p: sign * p)[: self.depth]
        return side, self.rng.choice(top) if top else self.mid + sign, 0

    def update_frame(self, entry: str) -> str:
        return f'{{"channel":"book","type":"update","data":[{entry}]}}'

    def updates(self, n: int) -> list[str]:
        return [self.update_frame(self.set_level(*self.random_op())) for _ in range(n)]

    def cyclic_updates(self, n: int) -> list[str]:
        """2n update frames after which the book is back where it started, so
        the list can be replayed forever after one snapshot."""
        undo: list[tuple[str, int, int]] = []
        frames = []
        for _ in range(n):
            side, price, qty = self.random_op()
            book = self.bids if side == "bid" else self.asks
            undo.append((side, price, book.get(price, 0)))
            frames.append(self.update_frame(self.set_level(side, price, qty)))
        for side, price, qty in reversed(undo):
            frames.append(self.update_frame(self.set_level(side, price, qty)))
        return frames

    def cyclic_mixed_updates(self, n: int, max_ops: int = 3) -> list[str]:
        """As ``cyclic_updates``, each frame carrying 1 to ``max_ops`` changes."""
        undo: list[list[tuple[str, int, int]]] = []
        frames = []
        for _ in range(n):
            ops: list[tuple[str, int, int]] = []
            back: list[tuple[str, int, int]] = []
            for _ in range(self.rng.randint(1, max_ops)):
                side, price, qty = self.random_op()
                book = self.bids if side == "bid" else self.asks
                back.append((side, price, book.get(price, 0)))
                ops.append((side, price, qty))
            undo.append(back)
            frames.append(self.update_frame(self.set_levels(ops)))
        for back in reversed(undo):
            frames.append(self.update_frame(self.set_levels(back[::-1])))
        return frames

    # --- v1 ---------------------------------------------------------------
    def _v1_levels(self, levels: list[Level], republish: bool = False) -> str:
        ts = f"{self.ts // 1_000_000_000}.{(self.ts // 1000) % 1_000_000:06d}"
        r = ',"r"' if republish else ""
        return ",".join(
            f'["{fixed_text(p, self.ps)}","{fixed_text(q, self.qs)}","{ts}"{r}]' for p, q in levels
        )

    def v1_snapshot_frame(self, channel_id: int = 336) -> str:
        bids, asks = self.view()
        return (
            f'[{channel_id},{{"as":[{self._v1_levels(asks)}],"bs":[{self._v1_levels(bids)}]}},'
            f'"book-{self.depth}","{self.symbol}"]'
        )

    def v1_update_frame(self, side: str, price: int, qty: int, channel_id: int = 336) -> str:
        """One change as a v1 update (both sides in two maps when both changed)."""
        before_b, before_a = self.view()
        book = self.bids if side == "bid" else self.asks
        if qty == 0:
            book.pop(price, None)
        else:
            book[price] = qty
        self.ts += 1_000
        after_b, after_a = self.view()
        ch_b = [(p, q) for p, q in after_b if dict(before_b).get(p) != q]
        ch_b += [(p, 0) for p in dict(before_b) if p not in self.bids]
        ch_a = [(p, q) for p, q in after_a if dict(before_a).get(p) != q]
        ch_a += [(p, 0) for p in dict(before_a) if p not in self.asks]
        parts = []
        if ch_a:
            parts.append(f'{{"a":[{self._v1_levels(ch_a)}]}}')
        if ch_b:
            parts.append(f'{{"b":[{self._v1_levels(ch_b)}]}}')
        if not parts:
            parts.append('{"a":[]}')
        last = parts[-1]
        parts[-1] = last[:-1] + f',"c":"{self.expected_checksum()}"}}'
        return f'[{channel_id},{",".join(parts)},"book-{self.depth}","{self.symbol}"]'


def realistic_mix(updates_per_symbol: int = 1000) -> tuple[list[str], list[str]]:
    """Two pairs as Kraken prints them (XRP/USD, DOGE/USD: depth 10, 5-decimal
    prices, 8-decimal quantities, RFC 3339 timestamps, 1 to 3 levels per
    update): their snapshots, and update frames interleaved, which return the
    books to the snapshots' state so they can be replayed forever."""
    books = [
        SyntheticBook(symbol="XRP/USD", mid=62_345, price_decimals=5, qty_decimals=8, seed=1),
        SyntheticBook(symbol="DOGE/USD", mid=16_342, price_decimals=5, qty_decimals=8, seed=2),
    ]
    snapshots = [b.snapshot_frame() for b in books]
    streams = [b.cyclic_mixed_updates(updates_per_symbol) for b in books]
    return snapshots, [f for pair in zip(*streams, strict=True) for f in pair]


def multi_symbol_frame(kind: str, entries: list[str]) -> str:
    """A v2 book frame carrying several symbols' entries."""
    return f'{{"channel":"book","type":"{kind}","data":[{",".join(entries)}]}}'


def trade_frame(symbol: str, trades: list[tuple[str, str, int]]) -> str:
    """v2 trade frame from (price text, qty text, timestamp ns)."""
    items = ",".join(
        f'{{"symbol":"{symbol}","side":"buy","price":{p},"qty":{q},"ord_type":"limit",'
        f'"trade_id":{i},"timestamp":"{rfc3339(ts)}"}}'
        for i, (p, q, ts) in enumerate(trades)
    )
    return f'{{"channel":"trade","type":"update","data":[{items}]}}'


def ohlc_frame(
    symbol: str, o: str, h: str, low: str, c: str, v: str, begin_ns: int, minutes: int
) -> str:
    return (
        f'{{"channel":"ohlc","type":"update","data":[{{"symbol":"{symbol}","open":{o},'
        f'"high":{h},"low":{low},"close":{c},"trades":3,"volume":{v},"vwap":{c},'
        f'"interval_begin":"{rfc3339(begin_ns)}","interval":{minutes},"timestamp":"{rfc3339(begin_ns)}"}}]}}'
    )


def instrument_frame(pairs: list[tuple[str, int, int]]) -> str:
    items = ",".join(
        f'{{"symbol":"{s}","base":"X","quote":"USD","status":"online","qty_precision":{q},'
        f'"qty_increment":0.00000001,"price_precision":{p},"price_increment":0.1}}'
        for s, p, q in pairs
    )
    return f'{{"channel":"instrument","type":"snapshot","data":{{"assets":[],"pairs":[{items}]}}}}'


if __name__ == "__main__":  # the mix as a file, for examples/profile_mix.rs
    import sys

    snaps, frames = realistic_mix()
    with open(sys.argv[1], "w") as out:
        out.writelines(f + "\n" for f in snaps + frames)
