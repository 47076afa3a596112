"""The package's one exception hierarchy.

Market-data errors are raised by the Rust core and defined there, so that the
hot path can raise them without a round trip; the rest subclass the same base.
"""

from __future__ import annotations

from ._core import BookOutOfSync, InvalidPoint, MalformedFrame, RecorderError, UnknownSymbol


class ConfigError(RecorderError, ValueError):
    """A configuration value is missing or invalid (secrets are never echoed)."""


class ServiceError(RecorderError):
    """A local server could not be started, stopped or reached."""


class MigrationError(RecorderError):
    """The schema migrations cannot be applied as they are."""


class ValidationError(RecorderError, ValueError):
    """A ledger record failed validation; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class IllegalTransition(RecorderError):
    """An order or signal status change that its state machine forbids."""


class UnknownOrder(RecorderError):
    """A fill or update names an order the ledger has never seen."""


class LedgerBackpressure(RecorderError):
    """The ledger journal is at its size cap; the event was refused, not dropped."""


__all__ = [
    "BookOutOfSync",
    "ConfigError",
    "IllegalTransition",
    "InvalidPoint",
    "LedgerBackpressure",
    "MalformedFrame",
    "MigrationError",
    "RecorderError",
    "ServiceError",
    "UnknownOrder",
    "UnknownSymbol",
    "ValidationError",
]
