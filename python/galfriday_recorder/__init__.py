"""galfriday-recorder: the in-process recorder of the Gal-Friday Kraken trading bot.

``Recorder`` is the one object a bot needs; ``MarketRecorder``, ``Ledger`` and
``SeriesWriter`` are its parts, usable on their own.
"""

from ._core import BookTop, BookView, MarketRecorder, encode_line
from .bridge import BotBridge
from .config import RecorderConfig
from .errors import (
    BookOutOfSync,
    ConfigError,
    IllegalTransition,
    InvalidPoint,
    LedgerBackpressure,
    MalformedFrame,
    MigrationError,
    RecorderError,
    ServiceError,
    UnknownOrder,
    UnknownSymbol,
    ValidationError,
)
from .ledger import Ledger
from .loghandler import LedgerLogHandler
from .query import AsyncQuery, Query
from .recorder import FlushReport, Recorder
from .records import Fill, LogEntry, Order, PortfolioSnapshot, Signal, Trade
from .series import SeriesWriter, SeriesWriterClosed
from .spool import SpoolLocked

__all__ = [
    "AsyncQuery",
    "BookOutOfSync",
    "BookTop",
    "BookView",
    "BotBridge",
    "ConfigError",
    "Fill",
    "FlushReport",
    "IllegalTransition",
    "InvalidPoint",
    "Ledger",
    "LedgerBackpressure",
    "LedgerLogHandler",
    "LogEntry",
    "MalformedFrame",
    "MarketRecorder",
    "MigrationError",
    "Order",
    "PortfolioSnapshot",
    "Query",
    "Recorder",
    "RecorderConfig",
    "RecorderError",
    "SeriesWriter",
    "SeriesWriterClosed",
    "ServiceError",
    "Signal",
    "SpoolLocked",
    "Trade",
    "UnknownOrder",
    "UnknownSymbol",
    "ValidationError",
    "encode_line",
]
