"""Type stub of the Rust extension ``galfriday_recorder._core``."""

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import final

__all__ = [
    "BookOutOfSync",
    "BookTop",
    "BookView",
    "InvalidPoint",
    "MalformedFrame",
    "MarketRecorder",
    "RecorderError",
    "UnknownSymbol",
    "encode_line",
    "json_values",
]

class RecorderError(Exception):
    """Base of every error the recorder raises."""

class MalformedFrame(RecorderError):
    """A frame that is not valid Kraken WebSocket JSON.

    Set by ``MarketRecorder.ingest``: ``symbol`` (or None) and ``tops``, the
    ``BookTop``s of the frame's other symbols, which were applied.
    """

    symbol: str | None
    tops: list[BookTop]

class BookOutOfSync(RecorderError):
    """A symbol's book failed its checksum; resubscribe.

    ``expected`` is the frame's checksum, ``computed`` ours (None when the book
    was already out of sync and the update was not applied).
    """

    symbol: str
    expected: int | None
    computed: int | None
    tops: list[BookTop]

class UnknownSymbol(RecorderError):
    """An update for a symbol with no snapshot yet.

    Set by ``MarketRecorder.ingest``: ``symbol`` and ``tops``, the ``BookTop``s of
    the frame's other symbols, which were applied.
    """

    symbol: str
    tops: list[BookTop]

class InvalidPoint(RecorderError, ValueError):
    """A point InfluxDB cannot store: NaN or infinity, a newline, no fields, ..."""

@final
class BookTop:
    """Best levels and metrics of one symbol after one book message."""

    @property
    def symbol(self) -> str: ...
    @property
    def timestamp_ns(self) -> int: ...
    @property
    def is_snapshot(self) -> bool: ...
    @property
    def bid_price(self) -> Decimal | None: ...
    @property
    def bid_qty(self) -> Decimal | None: ...
    @property
    def ask_price(self) -> Decimal | None: ...
    @property
    def ask_qty(self) -> Decimal | None: ...
    @property
    def spread(self) -> float | None: ...
    @property
    def mid_price(self) -> float | None: ...
    @property
    def wap(self) -> float | None: ...
    @property
    def spread_pct(self) -> float | None: ...
    @property
    def imbalances(self) -> dict[int, float]: ...
    @property
    def checksum_ok(self) -> bool:
        """The message carried a checksum and it matched (mismatches raise)."""
    @property
    def crossed(self) -> bool:
        """Best bid at or above best ask: recorded as received, flagged, counted."""

@final
class BookView:
    """A copy of one symbol's book taken by ``MarketRecorder.book``."""

    @property
    def symbol(self) -> str: ...
    @property
    def in_sync(self) -> bool: ...
    @property
    def price_decimals(self) -> int: ...
    @property
    def qty_decimals(self) -> int: ...
    @property
    def bids(self) -> list[tuple[Decimal, Decimal]]:
        """Bids, best (highest) first, as exact ``(price, qty)`` Decimals."""
    @property
    def asks(self) -> list[tuple[Decimal, Decimal]]:
        """Asks, best (lowest) first, as exact ``(price, qty)`` Decimals."""
    def checksum(self) -> int:
        """Kraken's CRC32 of this book (top 10 levels per side)."""

@final
class MarketRecorder:
    """Kraken frames in; books, metrics and line protocol out. Thread-safe."""

    def __new__(
        cls,
        exchange: str = "kraken",
        depth: int = 10,
        l2_levels: int = 10,
        imbalance_levels: Sequence[int] = ...,
        ohlcv_intervals: Sequence[str] = ...,
        precisions: Mapping[str, tuple[int, int]] | None = None,
        l2_sample_interval_ms: int = 0,
        l2_mode: str = "full",
        max_buffer_bytes: int = 67108864,
        max_frame_bytes: int = 16777216,
        max_symbols: int = 1024,
        max_trade_ahead_ms: int = 60000,
    ) -> MarketRecorder: ...
    def ingest(self, frame: bytes | str, received_at_ns: int | None = None) -> list[BookTop]:
        """Handle one raw frame; one ``BookTop`` per symbol whose book it touched.

        If some entry fails, the others are still applied and recorded, then the
        first error is raised with ``.tops`` holding theirs. A frame above
        ``max_frame_bytes`` is refused unread (``MalformedFrame``); one above 64 KiB
        is handled with the GIL released.
        """
    def book(self, symbol: str) -> BookView:
        """A copy of one symbol's book; ``UnknownSymbol`` if it has none."""
    def drain(self) -> bytes:
        """Every line encoded since the last drain, as one bytes object.

        At ``max_buffer_bytes`` undrained, new lines are dropped and counted in
        ``stats()["lines_dropped"]``: a stalled drain costs data, not memory.
        """
    def flush_bars(self) -> int:
        """Emit every open OHLCV bar into the buffer now (shutdown); returns how many."""
    def symbols(self) -> list[str]: ...
    def stats(self) -> dict[str, int]:
        """Counters and hot-path latency (ns, measured inside the core on every 8th frame)."""
    def _checksum_ns(self, symbol: str, iterations: int) -> float:
        """Benchmark helper: mean ns of Kraken's checksum timed in a Rust loop."""

def encode_line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, float | int | bool | str | Decimal | None],
    timestamp_ns: int,
) -> bytes:
    """One line of line protocol for any measurement; ``None`` values are left out.

    The six measurements of the seed have fixed tag keys and field kinds (see the
    README's value contract): an ``int`` or ``Decimal`` for a Float field is
    written as a float, a value of another kind raises ``InvalidPoint`` naming
    the measurement and field. Anything InfluxDB would not read back exactly
    raises ``InvalidPoint`` too.
    """

def json_values(value: object, limit: int) -> int:
    """How many values ``value`` holds once written out: each container and scalar once
    per place it appears, as orjson writes it (dicts, lists, tuples, dataclasses, enums)
    or a repr prints it (other mappings, sets), counted no further than just past
    ``limit``; a container holding itself is past it. The walk costs what ``value``
    holds in memory, at any depth, whatever that expands to."""
