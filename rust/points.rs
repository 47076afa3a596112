//! `PointWriter`: the encoded lines waiting for a drain, their cap, the
//! tag and key bytes computed once, and the line counters.

use crate::bars::Dec;
use crate::book::Book;
use crate::fixed;
use crate::lineproto::{self, Pad24, PieceWriter};
use crate::metrics::Metrics;

/// Field keys precomputed per level so the hot path only copies bytes.
struct LevelKeys {
    bid_price: Pad24,
    bid_volume: Pad24,
    ask_price: Pad24,
    ask_volume: Pad24,
}

/// The five values of one `market_data_ohlcv` point.
pub struct Ohlcv {
    pub open: Dec,
    pub high: Dec,
    pub low: Dec,
    pub close: Dec,
    pub volume: Dec,
}

pub struct PointWriter {
    buf: Vec<u8>,
    /// Past this, new lines are dropped and counted: a stalled drain costs
    /// data, never unbounded memory.
    max_bytes: usize,
    exchange_tag: Vec<u8>,
    level_keys: Vec<LevelKeys>,
    imbalance_keys: Vec<(u32, Vec<u8>)>,
    pub lines: u64,
    pub lines_dropped: u64,
}

impl PointWriter {
    pub fn new(
        exchange: &str,
        l2_levels: usize,
        imbalance_levels: &[u32],
        max_bytes: usize,
    ) -> Result<Self, String> {
        let mut exchange_tag = Vec::new();
        lineproto::write_key(exchange, "exchange", &mut exchange_tag).map_err(|e| e.to_string())?;
        let key = |s: String| Pad24::new(s.as_bytes()).unwrap_or_default();
        let level_keys = (0..l2_levels.min(1000))
            .map(|i| LevelKeys {
                // At most 22 bytes for i < 1000.
                bid_price: key(format!(",bid_price_level_{i}=")),
                bid_volume: key(format!(",bid_volume_level_{i}=")),
                ask_price: key(format!(",ask_price_level_{i}=")),
                ask_volume: key(format!(",ask_volume_level_{i}=")),
            })
            .collect();
        let imbalance_keys = imbalance_levels
            .iter()
            .map(|n| (*n, format!(",imbalance_{n}=").into_bytes()))
            .collect();
        Ok(PointWriter {
            buf: Vec::with_capacity(1 << 16),
            max_bytes,
            exchange_tag,
            level_keys,
            imbalance_keys,
            lines: 0,
            lines_dropped: 0,
        })
    }

    pub fn exchange_tag(&self) -> &[u8] {
        &self.exchange_tag
    }

    /// Whether a new line fits; if not, it is counted dropped.
    fn room(&mut self) -> bool {
        if self.buf.len() >= self.max_bytes {
            self.lines_dropped += 1;
            return false;
        }
        self.lines += 1;
        true
    }

    /// One `market_data_l2` line; `prefix` is the symbol's measurement and
    /// tags. `levels` writes the levels too (else metrics only). `false` if
    /// dropped at the cap.
    pub fn l2(
        &mut self,
        prefix: &[u8],
        book: &Book,
        m: &Metrics,
        snapshot: bool,
        ts: i64,
        levels: bool,
    ) -> bool {
        if !self.room() {
            return false;
        }
        let out = &mut self.buf;
        out.extend_from_slice(prefix);
        let fields_at = out.len();
        if levels {
            let keys = &self.level_keys;
            let n = keys.len();
            let pieces = 4 * (book.bids.len().min(n) + book.asks.len().min(n));
            PieceWriter::write(out, pieces, |w| {
                for (i, k) in keys.iter().enumerate() {
                    if let Some(l) = book.bids.get(i) {
                        w.put(&k.bid_price);
                        w.put(l.price_piece());
                        w.put(&k.bid_volume);
                        w.put(l.qty_piece());
                    }
                    if let Some(l) = book.asks.get(i) {
                        w.put(&k.ask_price);
                        w.put(l.price_piece());
                        w.put(&k.ask_volume);
                        w.put(l.qty_piece());
                    }
                }
            });
        }
        out.extend_from_slice(if snapshot {
            b",is_snapshot=true"
        } else {
            b",is_snapshot=false"
        });
        // Every field was written with a leading comma; the first one becomes the
        // space that separates tags from fields.
        if let Some(c) = out.get_mut(fields_at) {
            *c = b' ';
        }
        fn float(out: &mut Vec<u8>, key: &[u8], v: Option<f64>) {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                out.extend_from_slice(key);
                lineproto::push_f64(v, out);
            }
        }
        // Spread and mid straight from the exact mantissas: the same bytes as the
        // shortest text of their f64s, which is still used where the two could
        // differ (`write_shortest` says when).
        let ps = book.price_scale;
        match (m.bid, m.ask) {
            (Some(b), Some(a)) => {
                let diff = i128::from(a.price) - i128::from(b.price);
                let at = out.len();
                out.extend_from_slice(b",spread=");
                if !fixed::write_shortest(diff < 0, diff.unsigned_abs(), ps, out) {
                    out.truncate(at);
                    float(out, b",spread=", m.spread);
                }
                // mid = (ask + bid) / 2 = (ask + bid) * 5 at one more decimal.
                let sum = (u128::from(a.price) + u128::from(b.price)) * 5;
                let at = out.len();
                out.extend_from_slice(b",mid_price=");
                if !fixed::write_shortest(false, sum, ps + 1, out) {
                    out.truncate(at);
                    float(out, b",mid_price=", m.mid_price);
                }
            }
            _ => {
                float(out, b",spread=", m.spread);
                float(out, b",mid_price=", m.mid_price);
            }
        }
        float(out, b",wap=", m.wap);
        for (n, v) in m.imbalances.as_slice() {
            if let Some((_, key)) = self.imbalance_keys.iter().find(|(k, _)| k == n) {
                float(out, key, Some(*v));
            }
        }
        lineproto::write_timestamp(ts, out);
        true
    }

    /// One `market_data_ohlcv` line, for a built bar and for Kraken's `ohlc` alike.
    pub fn ohlcv(&mut self, interval: &[u8], pair_tag: &[u8], v: &Ohlcv, start_ns: i64) {
        if !self.room() {
            return;
        }
        let out = &mut self.buf;
        out.extend_from_slice(b"market_data_ohlcv,exchange=");
        out.extend_from_slice(&self.exchange_tag);
        out.extend_from_slice(b",interval=");
        out.extend_from_slice(interval);
        out.extend_from_slice(b",trading_pair=");
        out.extend_from_slice(pair_tag);
        for (key, d) in [
            (&b" open="[..], v.open),
            (b",high=", v.high),
            (b",low=", v.low),
            (b",close=", v.close),
            (b",volume=", v.volume),
        ] {
            out.extend_from_slice(key);
            d.write(out);
        }
        lineproto::write_timestamp(start_ns, out);
    }

    /// Take the encoded lines (the buffer keeps its capacity).
    pub fn drain_into(&mut self, f: impl FnOnce(&[u8])) {
        f(&self.buf);
        self.buf.clear();
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}
