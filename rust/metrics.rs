//! Top-of-book metrics, from exact fixed-point levels to f64 once.
//!
//! * `spread` = best ask - best bid (exact subtraction, then one rounding)
//! * `mid_price` = (best ask + best bid) / 2
//! * `wap` = (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty), top of book
//! * `spread_pct` = spread / mid_price * 100
//! * `imbalance_N` = (sum bid qty - sum ask qty) / (sum of both) over the top
//!   N levels of each side (fewer if the book is shallower); absent if both sums are 0.

use crate::book::{Book, Level};
use crate::fixed;

/// Most imbalance depths a recorder can be configured with.
pub const MAX_IMBALANCE_LEVELS: usize = 8;

/// `(N, imbalance_N)` pairs stored inline: no allocation per message.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Imbalances {
    items: [(u32, f64); MAX_IMBALANCE_LEVELS],
    len: usize,
}

impl Imbalances {
    pub fn push(&mut self, n: u32, v: f64) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (n, v);
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[(u32, f64)] {
        self.items.get(..self.len).unwrap_or(&[])
    }
}

/// A best level without the book's text caches (small, cheap to move).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    pub price: u64,
    pub qty: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub bid: Option<Quote>,
    pub ask: Option<Quote>,
    pub spread: Option<f64>,
    pub mid_price: Option<f64>,
    pub wap: Option<f64>,
    pub spread_pct: Option<f64>,
    /// `(N, imbalance_N)` in configured order.
    pub imbalances: Imbalances,
}

pub fn compute(book: &Book, imbalance_levels: &[u32]) -> Metrics {
    let ps = book.price_scale;
    let qs = book.qty_scale;
    let quote = |l: &Level| Quote {
        price: l.price,
        qty: l.qty,
    };
    let bid = book.bids.first().map(quote);
    let ask = book.asks.first().map(quote);
    let mut m = Metrics {
        bid,
        ask,
        ..Metrics::default()
    };
    if let (Some(b), Some(a)) = (bid, ask) {
        let diff = i128::from(a.price) - i128::from(b.price);
        let mag = fixed::to_f64_u128(diff.unsigned_abs(), ps);
        let spread = if diff < 0 { -mag } else { mag };
        let sum = u128::from(a.price) + u128::from(b.price);
        let mid = fixed::to_f64_u128(sum, ps) / 2.0;
        let (bp, ap) = (fixed::to_f64(b.price, ps), fixed::to_f64(a.price, ps));
        let (bq, aq) = (fixed::to_f64(b.qty, qs), fixed::to_f64(a.qty, qs));
        let den = bq + aq;
        m.spread = Some(spread);
        m.mid_price = Some(mid);
        if den > 0.0 {
            m.wap = Some((bp * aq + ap * bq) / den);
        }
        if mid > 0.0 {
            m.spread_pct = Some(spread / mid * 100.0);
        }
    }
    for &n in imbalance_levels {
        let n = n as usize;
        let b: u128 = book.bids.iter().take(n).map(|l| u128::from(l.qty)).sum();
        let a: u128 = book.asks.iter().take(n).map(|l| u128::from(l.qty)).sum();
        let total = b + a;
        if total > 0 {
            let f = |x: u128| fixed::to_f64_u128(x, 0);
            let imb = (f(b) - f(a)) / f(total);
            m.imbalances.push(n as u32, imb);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::Side;

    #[test]
    fn metrics_of_a_small_book() {
        let mut b = Book::new(10, 1, 2);
        b.apply(Side::Bid, 1000, 300); // 100.0 x 3.00
        b.apply(Side::Bid, 990, 100); // 99.0 x 1.00
        b.apply(Side::Ask, 1010, 100); // 101.0 x 1.00
        let m = compute(&b, &[1, 5]);
        assert_eq!(m.spread, Some(1.0));
        assert_eq!(m.mid_price, Some(100.5));
        // (100 * 1 + 101 * 3) / 4 = 100.75
        assert_eq!(m.wap, Some(100.75));
        assert_eq!(m.imbalances.as_slice(), &[(1, 0.5), (5, 0.6)]);
        let pct = m.spread_pct.unwrap();
        assert!((pct - 1.0 / 100.5 * 100.0).abs() < 1e-12);
    }

    #[test]
    fn one_sided_and_empty() {
        let mut b = Book::new(10, 0, 0);
        assert_eq!(compute(&b, &[5]), Metrics::default());
        b.apply(Side::Bid, 10, 2);
        let m = compute(&b, &[5]);
        assert_eq!(m.spread, None);
        assert_eq!(m.imbalances.as_slice(), &[(5, 1.0)]);
    }
}
