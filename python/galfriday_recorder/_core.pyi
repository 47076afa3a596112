"""Type stub of the Rust extension ``galfriday_recorder._core``."""

__all__ = ["BookOutOfSync", "MalformedFrame", "RecorderError", "UnknownSymbol"]

class RecorderError(Exception):
    """Base of every error the recorder raises."""

class MalformedFrame(RecorderError):
    """A frame that is not valid Kraken WebSocket JSON."""

class BookOutOfSync(RecorderError):
    """A symbol's book failed its checksum; resubscribe."""

class UnknownSymbol(RecorderError):
    """An update for a symbol with no snapshot yet."""
