//! Per-symbol state (book, bars, escaped tags) and applying one book message to it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bars::BarBuilder;
use crate::book::{Book, Side};
use crate::checksum::kraken_checksum;
use crate::error::{CoreError, Malformed, Unknown};
use crate::fixed::{self, Fixed};
use crate::kraken::BookMsg;
use crate::lineproto;

/// symbol -> (price decimals, qty decimals).
pub type Precisions = HashMap<String, (u32, u32)>;

/// foldhash: seeded per process, and much cheaper than SipHash for short keys.
type SymbolHasher = foldhash::fast::RandomState;

pub struct SymbolState {
    /// Shared with every `BookTop`, so a top costs no string allocation.
    pub name: Arc<str>,
    pub book: Option<Book>,
    pub in_sync: bool,
    pub last_ts: i64,
    pub last_recorded: Option<i64>,
    pub bars: Vec<BarBuilder>,
    /// `market_data_l2,exchange=..,trading_pair=..` (escaped once).
    pub l2_prefix: Vec<u8>,
    /// Escaped pair, for `market_data_ohlcv` lines.
    pub pair_tag: Vec<u8>,
}

/// Every symbol with state, at most `max` of them.
pub struct Symbols {
    map: HashMap<String, SymbolState, SymbolHasher>,
    max: usize,
    /// `market_data_l2,exchange=<tag>,trading_pair=`.
    l2_head: Vec<u8>,
    interval_ns: Vec<i64>,
}

impl Symbols {
    pub fn new(max: usize, exchange_tag: &[u8], interval_ns: Vec<i64>) -> Self {
        let mut l2_head = b"market_data_l2,exchange=".to_vec();
        l2_head.extend_from_slice(exchange_tag);
        l2_head.extend_from_slice(b",trading_pair=");
        Symbols {
            map: HashMap::default(),
            max,
            l2_head,
            interval_ns,
        }
    }

    pub fn get(&self, symbol: &str) -> Option<&SymbolState> {
        self.map.get(symbol)
    }

    pub fn get_mut(&mut self, symbol: &str) -> Option<&mut SymbolState> {
        self.map.get_mut(symbol)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut SymbolState)> {
        self.map.iter_mut()
    }

    /// Sorted names.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.keys().cloned().collect();
        v.sort();
        v
    }

    /// The symbol's state, created on first sight (symbol validated as a tag
    /// value) while fewer than `max` exist.
    pub fn ensure(&mut self, symbol: &str) -> Result<&mut SymbolState, CoreError> {
        if !self.map.contains_key(symbol) {
            if self.map.len() >= self.max {
                return Err(CoreError::unknown(
                    symbol,
                    Unknown::TableFull { max: self.max },
                ));
            }
            let mut pair_tag = Vec::new();
            lineproto::write_key(symbol, "symbol", &mut pair_tag).map_err(|e| {
                CoreError::malformed(Some(symbol), Malformed::BadSymbol(e.to_string()))
            })?;
            let mut l2_prefix = self.l2_head.clone();
            l2_prefix.extend_from_slice(&pair_tag);
            let st = SymbolState {
                name: Arc::from(symbol),
                book: None,
                in_sync: false,
                last_ts: i64::MIN,
                last_recorded: None,
                bars: self
                    .interval_ns
                    .iter()
                    .map(|ns| BarBuilder::new(*ns))
                    .collect(),
                l2_prefix,
                pair_tag,
            };
            self.map.insert(symbol.to_owned(), st);
        }
        self.map
            .get_mut(symbol)
            .ok_or_else(|| CoreError::malformed(Some(symbol), Malformed::Internal("state missing")))
    }
}

/// Reused conversion buffers: one message's levels as mantissas.
#[derive(Default)]
pub struct Scratch {
    bids: Vec<(u64, u64)>,
    asks: Vec<(u64, u64)>,
}

impl SymbolState {
    /// Apply a snapshot or update to the book; `Ok(checksum_ok)`.
    pub fn apply_book(
        &mut self,
        msg: &BookMsg<'_>,
        (configured, announced): (&Precisions, &Precisions),
        depth: usize,
        scratch: &mut Scratch,
    ) -> Result<bool, CoreError> {
        let symbol: &str = &msg.symbol;
        let levels = || msg.bids.iter().chain(msg.asks.iter());
        let max_sig = |pick: fn(&(Fixed, Fixed)) -> Fixed| {
            levels()
                .map(|l| fixed::significant_scale(pick(l)))
                .max()
                .unwrap_or(0)
        };
        let known = || configured.get(symbol).or_else(|| announced.get(symbol));
        // Scale: the known precision (configured, else from `instrument`),
        // widened if the data needs more; else as written (trailing zeros
        // count: Kraken's checksum uses them).
        let scales = || {
            let raw_max = |pick: fn(&(Fixed, Fixed)) -> Fixed| {
                levels().map(|l| pick(l).scale).max().unwrap_or(0)
            };
            match known() {
                Some(&(p, q)) => (p.max(max_sig(|l| l.0)), q.max(max_sig(|l| l.1))),
                None => (raw_max(|l| l.0), raw_max(|l| l.1)),
            }
        };
        let Scratch { bids, asks } = scratch;
        if msg.snapshot {
            let (ps, qs) = scales();
            convert(symbol, &msg.bids, ps, qs, bids)?;
            convert(symbol, &msg.asks, ps, qs, asks)?;
            let mut book = self.book.take().unwrap_or_else(|| Book::new(depth, ps, qs));
            book.clear();
            book.depth = depth;
            book.price_scale = ps;
            book.qty_scale = qs;
            // An empty snapshot of an unknown pair shows no decimals: the
            // first levels that arrive set them.
            book.scales_known = levels().next().is_some() || known().is_some();
            apply_all(&mut book, bids, asks);
            self.book = Some(book);
            self.in_sync = true;
            return self.verify(msg);
        }
        let in_sync = self.in_sync;
        let Some(book) = self.book.as_mut() else {
            return Err(CoreError::unknown(symbol, Unknown::NoSnapshot));
        };
        if !in_sync {
            return Err(CoreError::still_out_of_sync(symbol, msg.checksum));
        }
        // Widen the book's scale if the update carries more (non-zero)
        // decimals; text with no more decimals than the book cannot.
        let (ps, qs) = if book.scales_known {
            let (bps, bqs) = (book.price_scale, book.qty_scale);
            if levels().all(|(p, q)| p.scale <= bps && q.scale <= bqs) {
                (bps, bqs)
            } else {
                (bps.max(max_sig(|l| l.0)), bqs.max(max_sig(|l| l.1)))
            }
        } else {
            scales()
        };
        convert(symbol, &msg.bids, ps, qs, bids)?;
        convert(symbol, &msg.asks, ps, qs, asks)?;
        if ps > book.price_scale || qs > book.qty_scale {
            // Rare: widen a copy so a failure leaves the book as it was.
            let mut widened = book.clone();
            if !(widened.raise_price_scale(ps) && widened.raise_qty_scale(qs)) {
                return Err(CoreError::malformed(
                    Some(symbol),
                    Malformed::OutOfRange {
                        price_scale: ps,
                        qty_scale: qs,
                    },
                ));
            }
            *book = widened;
        }
        book.scales_known |= levels().next().is_some();
        book.depth = depth.max(1);
        apply_all(book, bids, asks);
        self.verify(msg)
    }

    /// Compare with the message's checksum; a mismatch puts the book out of sync.
    fn verify(&mut self, msg: &BookMsg<'_>) -> Result<bool, CoreError> {
        let Some(expected) = msg.checksum else {
            return Ok(false);
        };
        let Some(book) = self.book.as_ref() else {
            return Err(CoreError::malformed(
                Some(&msg.symbol),
                Malformed::Internal("book missing after apply"),
            ));
        };
        let computed = kraken_checksum(&book.asks, &book.bids);
        if expected == computed {
            return Ok(true);
        }
        self.in_sync = false;
        Err(CoreError::mismatch(&msg.symbol, expected, computed))
    }
}

/// Numbers to mantissas at the book's scales, all or nothing.
fn convert(
    symbol: &str,
    levels: &[(Fixed, Fixed)],
    ps: u32,
    qs: u32,
    out: &mut Vec<(u64, u64)>,
) -> Result<(), CoreError> {
    out.clear();
    for (p, q) in levels {
        let price = fixed::rescale(p.mant, p.scale, ps);
        let qty = fixed::rescale(q.mant, q.scale, qs);
        match (price, qty) {
            (Some(price), Some(qty)) => out.push((price, qty)),
            _ => {
                return Err(CoreError::malformed(
                    Some(symbol),
                    Malformed::OutOfRange {
                        price_scale: ps,
                        qty_scale: qs,
                    },
                ))
            }
        }
    }
    Ok(())
}

fn apply_all(book: &mut Book, bids: &mut Vec<(u64, u64)>, asks: &mut Vec<(u64, u64)>) {
    book.apply_side(Side::Bid, bids);
    book.apply_side(Side::Ask, asks);
    book.truncate();
}
