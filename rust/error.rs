//! What `ingest` reports beside the tops.
//!
//! Errors are built on cold paths only and hold the facts, not text: the
//! message is formatted by [`CoreError::message`] when Python raises it, so a
//! frame of 50,000 refused entries formats one message, not 50,000.

use crate::kraken::{shown, FrameError};

/// Why an entry was refused as malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The parser's description (written on its own error path).
    Frame(String),
    FrameTooBig {
        len: usize,
        max: usize,
    },
    /// Prices or quantities that do not fit a `u64` mantissa at the book's decimals.
    OutOfRange {
        price_scale: u32,
        qty_scale: u32,
    },
    BarOverflow,
    FutureTrade {
        ahead_ms: i64,
        max_ms: u64,
    },
    /// A symbol that cannot be a line-protocol tag value.
    BadSymbol(String),
    Internal(&'static str),
}

/// Why a symbol was refused as unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    NoSnapshot,
    TableFull { max: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    Malformed {
        symbol: Option<String>,
        why: Malformed,
    },
    /// `computed` is `None` while the book waits for a snapshot after a mismatch.
    OutOfSync {
        symbol: String,
        expected: Option<u32>,
        computed: Option<u32>,
    },
    UnknownSymbol {
        symbol: String,
        why: Unknown,
    },
}

impl CoreError {
    #[cold]
    pub fn frame(e: FrameError) -> Self {
        CoreError::Malformed {
            symbol: e.symbol,
            why: Malformed::Frame(e.message),
        }
    }

    #[cold]
    pub fn malformed(symbol: Option<&str>, why: Malformed) -> Self {
        CoreError::Malformed {
            symbol: symbol.map(str::to_owned),
            why,
        }
    }

    #[cold]
    pub fn mismatch(symbol: &str, expected: u32, computed: u32) -> Self {
        CoreError::OutOfSync {
            symbol: symbol.to_owned(),
            expected: Some(expected),
            computed: Some(computed),
        }
    }

    #[cold]
    pub fn still_out_of_sync(symbol: &str, expected: Option<u32>) -> Self {
        CoreError::OutOfSync {
            symbol: symbol.to_owned(),
            expected,
            computed: None,
        }
    }

    #[cold]
    pub fn unknown(symbol: &str, why: Unknown) -> Self {
        CoreError::UnknownSymbol {
            symbol: symbol.to_owned(),
            why,
        }
    }

    /// The text Python shows.
    #[cold]
    pub fn message(&self) -> String {
        match self {
            CoreError::Malformed { symbol, why } => {
                let sym = || shown(symbol.as_deref().unwrap_or_default()).into_owned();
                match why {
                    Malformed::Frame(m) => m.clone(),
                    Malformed::FrameTooBig { len, max } => {
                        format!("frame of {len} bytes is above max_frame_bytes ({max})")
                    }
                    Malformed::OutOfRange {
                        price_scale,
                        qty_scale,
                    } => format!(
                        "book for {:?}: price or qty out of range at {price_scale}/{qty_scale} decimals",
                        sym()
                    ),
                    Malformed::BarOverflow => format!(
                        "trade for {:?}: values out of range for an OHLCV bar",
                        sym()
                    ),
                    Malformed::FutureTrade { ahead_ms, max_ms } => format!(
                        "trade for {:?} stamped {ahead_ms} ms after its receipt (at most max_trade_ahead_ms = {max_ms}): not counted in any bar",
                        sym()
                    ),
                    Malformed::BadSymbol(m) => m.clone(),
                    Malformed::Internal(m) => format!("{:?}: {m}", sym()),
                }
            }
            CoreError::OutOfSync {
                symbol,
                expected: Some(expected),
                computed: Some(computed),
            } => format!(
                "checksum mismatch for {:?}: expected {expected}, computed {computed}; resubscribe for a new snapshot",
                shown(symbol)
            ),
            CoreError::OutOfSync { symbol, .. } => format!(
                "book for {:?} is out of sync since a checksum mismatch; waiting for a new snapshot",
                shown(symbol)
            ),
            CoreError::UnknownSymbol {
                symbol,
                why: Unknown::NoSnapshot,
            } => format!("book update for {:?} before any snapshot", shown(symbol)),
            CoreError::UnknownSymbol {
                symbol,
                why: Unknown::TableFull { max },
            } => format!(
                "{:?} would be symbol number {} (max_symbols); not recorded",
                shown(symbol),
                max.saturating_add(1)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_symbol_and_the_facts() {
        let e = CoreError::mismatch("BTC/USD", 1, 2);
        assert_eq!(
            e.message(),
            "checksum mismatch for \"BTC/USD\": expected 1, computed 2; resubscribe for a new snapshot"
        );
        let long = "X".repeat(1000);
        let e = CoreError::unknown(&long, Unknown::TableFull { max: 3 });
        assert!(e.message().len() < 130, "{}", e.message());
        assert!(e
            .message()
            .ends_with("would be symbol number 4 (max_symbols); not recorded"));
        let e = CoreError::malformed(
            Some("A/B"),
            Malformed::FutureTrade {
                ahead_ms: 5,
                max_ms: 1,
            },
        );
        assert!(e.message().contains("\"A/B\" stamped 5 ms"));
    }
}
