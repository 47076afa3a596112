//! One L2 book: two sorted vectors of fixed-point levels.
//!
//! Subscribed depths are small (10..1000), so a sorted `Vec` with binary
//! search beats a tree: the top levels, which every message reads, stay in one
//! or two cache lines.

use crate::fixed;
use crate::lineproto::Pad24;

/// Bytes of a level's cached mantissa digits (two u64s: at most 20 each).
pub const DIGITS_CAP: usize = 40;

/// A price level; both values are mantissas at the book's scales.
///
/// The decimal digits of both mantissas are cached when the level is set:
/// they are exactly Kraken's checksum text for the level (dot removed,
/// leading zeros stripped), and the line encoder writes them with a dot
/// inserted, so the per-message work is copying bytes, not formatting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub price: u64,
    pub qty: u64,
    digits: [u8; DIGITS_CAP],
    plen: u8,
    qlen: u8,
    /// Price and qty as decimal text at the book's scales (`45283.5`, `0.10000000`).
    ptext: Pad24,
    qtext: Pad24,
}

/// `digits` (a mantissa, empty for 0) with a dot `scale` places from the
/// right, as a line-protocol piece (empty if it does not fit 24 bytes).
fn dotted(digits: &[u8], scale: u32) -> Pad24 {
    let digits: &[u8] = if digits.is_empty() { b"0" } else { digits };
    let (n, s) = (digits.len(), scale as usize);
    let mut b = [0u8; 24];
    let len = if s == 0 {
        if let Some(d) = b.get_mut(..n) {
            d.copy_from_slice(digits);
        }
        n
    } else if n > s {
        let (int, frac) = digits.split_at(n - s);
        let i = int.len();
        if let Some(d) = b.get_mut(..i) {
            d.copy_from_slice(int);
        }
        if let Some(d) = b.get_mut(i) {
            *d = b'.';
        }
        if let Some(d) = b.get_mut(i + 1..i + 1 + s) {
            d.copy_from_slice(frac);
        }
        n + 1
    } else {
        b[0] = b'0';
        b[1] = b'.';
        if let Some(d) = b.get_mut(2..2 + (s - n)) {
            d.fill(b'0');
        }
        if let Some(d) = b.get_mut(2 + (s - n)..2 + s) {
            d.copy_from_slice(digits);
        }
        s + 2
    };
    Pad24::from_block(b, len).unwrap_or_default()
}

fn push_digits(v: u64, buf: &mut [u8], at: usize) -> usize {
    if v == 0 {
        return 0; // "0.000" without dot and leading zeros is empty
    }
    let mut f = itoa::Buffer::new();
    let d = f.format(v).as_bytes();
    match buf.get_mut(at..at + d.len()) {
        Some(dst) => {
            dst.copy_from_slice(d);
            d.len()
        }
        None => 0,
    }
}

impl Level {
    /// A level whose mantissas are at scale 0 (tests, checksum vectors).
    pub fn new(price: u64, qty: u64) -> Self {
        Level::at_scales(price, qty, 0, 0)
    }

    /// A level of a book with these price and qty scales.
    pub fn at_scales(price: u64, qty: u64, price_scale: u32, qty_scale: u32) -> Self {
        let mut digits = [0u8; DIGITS_CAP];
        let plen = push_digits(price, &mut digits, 0);
        let qlen = push_digits(qty, &mut digits, plen);
        // At most 22 bytes each (20 digits, a dot, a leading zero), so they fit.
        let ptext = dotted(digits.get(..plen).unwrap_or(&[]), price_scale);
        let qtext = dotted(digits.get(plen..plen + qlen).unwrap_or(&[]), qty_scale);
        Level {
            price,
            qty,
            digits,
            plen: plen as u8,
            qlen: qlen as u8,
            ptext,
            qtext,
        }
    }

    /// Price as decimal text at the book's price scale.
    pub fn price_text(&self) -> &[u8] {
        self.ptext.as_slice()
    }

    /// Price text as a fixed-size piece for the line writer.
    pub fn price_piece(&self) -> &Pad24 {
        &self.ptext
    }

    /// Qty text as a fixed-size piece for the line writer.
    pub fn qty_piece(&self) -> &Pad24 {
        &self.qtext
    }

    /// Qty as decimal text at the book's qty scale.
    pub fn qty_text(&self) -> &[u8] {
        self.qtext.as_slice()
    }

    /// Price mantissa digits (empty for 0).
    pub fn price_digits(&self) -> &[u8] {
        self.digits.get(..usize::from(self.plen)).unwrap_or(&[])
    }

    /// Qty mantissa digits (empty for 0).
    pub fn qty_digits(&self) -> &[u8] {
        let p = usize::from(self.plen);
        self.digits
            .get(p..p + usize::from(self.qlen))
            .unwrap_or(&[])
    }

    /// The whole digit block and how much of it is the checksum part.
    pub fn checksum_block(&self) -> (&[u8; DIGITS_CAP], usize) {
        (
            &self.digits,
            (usize::from(self.plen) + usize::from(self.qlen)).min(DIGITS_CAP),
        )
    }

    /// Price digits then qty digits: this level's part of the checksum string.
    pub fn checksum_digits(&self) -> &[u8] {
        self.digits
            .get(..usize::from(self.plen) + usize::from(self.qlen))
            .unwrap_or(&[])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Bid,
    Ask,
}

/// Bids best (highest) first, asks best (lowest) first.
#[derive(Clone, Debug)]
pub struct Book {
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub depth: usize,
    pub price_scale: u32,
    pub qty_scale: u32,
    /// False after an empty snapshot of a pair of unknown precision: its
    /// scales are a guess until levels arrive.
    pub scales_known: bool,
}

impl Book {
    pub fn new(depth: usize, price_scale: u32, qty_scale: u32) -> Self {
        let cap = depth.saturating_add(4).min(1024);
        Book {
            bids: Vec::with_capacity(cap),
            asks: Vec::with_capacity(cap),
            depth,
            price_scale,
            qty_scale,
            scales_known: true,
        }
    }

    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// Set one level; qty 0 deletes it (a delete of an absent level is a no-op).
    pub fn apply(&mut self, side: Side, price: u64, qty: u64) {
        let levels = match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        let found = match side {
            Side::Bid => levels.binary_search_by(|l| price.cmp(&l.price)),
            Side::Ask => levels.binary_search_by(|l| l.price.cmp(&price)),
        };
        match (found, qty) {
            (Ok(i), 0) => {
                levels.remove(i);
            }
            (Ok(i), q) => {
                if let Some(l) = levels.get_mut(i) {
                    *l = Level::at_scales(price, q, self.price_scale, self.qty_scale);
                }
            }
            (Err(_), 0) => {}
            (Err(i), q) => levels.insert(
                i,
                Level::at_scales(price, q, self.price_scale, self.qty_scale),
            ),
        }
    }

    /// Apply one message's levels for one side, in any order; a later entry
    /// for the same price wins. A few levels go one by one (binary search and
    /// a short shift); more are sorted and merged with the side in one pass, so
    /// a frame costs O(N log N) in its levels whatever their order (one by
    /// one, ascending bids would shift the whole side each time: O(N^2)).
    /// The side is cut to the depth: call `truncate` after both sides.
    pub fn apply_side(&mut self, side: Side, changes: &mut Vec<(u64, u64)>) {
        const ONE_BY_ONE: usize = 16;
        if changes.len() <= ONE_BY_ONE {
            for &(p, q) in changes.iter() {
                self.apply(side, p, q);
            }
            return;
        }
        // Stable, so equal prices keep their order and the last one is kept.
        match side {
            Side::Bid => changes.sort_by_key(|c| std::cmp::Reverse(c.0)),
            Side::Ask => changes.sort_by_key(|c| c.0),
        }
        changes.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
        let (ps, qs, depth) = (self.price_scale, self.qty_scale, self.depth);
        let levels = match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        // `true` if price `a` comes before `b` on this side.
        let before = |a: u64, b: u64| match side {
            Side::Bid => a > b,
            Side::Ask => a < b,
        };
        let mut merged = Vec::with_capacity(depth.min(levels.len() + changes.len()));
        let mut old = levels.iter().peekable();
        let mut new = changes.iter().peekable();
        while merged.len() < depth {
            let take_old = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(o), Some(n)) => before(o.price, n.0),
            };
            if take_old {
                merged.extend(old.next().copied());
                continue;
            }
            let Some(&(p, q)) = new.next() else { break };
            if old.peek().is_some_and(|o| o.price == p) {
                old.next(); // replaced or deleted
            }
            if q != 0 {
                merged.push(Level::at_scales(p, q, ps, qs));
            }
        }
        *levels = merged;
    }

    /// Kraken sends no delete for levels pushed out of range: cut after each message.
    pub fn truncate(&mut self) {
        self.bids.truncate(self.depth);
        self.asks.truncate(self.depth);
    }

    /// Raise the price scale (exactness kept); `false` on overflow, book unchanged.
    pub fn raise_price_scale(&mut self, to: u32) -> bool {
        if to <= self.price_scale {
            return true;
        }
        let Some(mul) = fixed::pow10(to - self.price_scale) else {
            return false;
        };
        // Check first so a failure leaves the book untouched.
        if self
            .bids
            .iter()
            .chain(self.asks.iter())
            .any(|l| l.price.checked_mul(mul).is_none())
        {
            return false;
        }
        let qs = self.qty_scale;
        for l in self.bids.iter_mut().chain(self.asks.iter_mut()) {
            *l = Level::at_scales(l.price.wrapping_mul(mul), l.qty, to, qs);
        }
        self.price_scale = to;
        true
    }

    /// Raise the qty scale (exactness kept); `false` on overflow, book unchanged.
    pub fn raise_qty_scale(&mut self, to: u32) -> bool {
        if to <= self.qty_scale {
            return true;
        }
        let Some(mul) = fixed::pow10(to - self.qty_scale) else {
            return false;
        };
        if self
            .bids
            .iter()
            .chain(self.asks.iter())
            .any(|l| l.qty.checked_mul(mul).is_none())
        {
            return false;
        }
        let ps = self.price_scale;
        for l in self.bids.iter_mut().chain(self.asks.iter_mut()) {
            *l = Level::at_scales(l.price, l.qty.wrapping_mul(mul), ps, to);
        }
        self.qty_scale = to;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The obvious model: a map per side, truncated the slow way.
    #[derive(Default)]
    struct Naive {
        bids: BTreeMap<u64, u64>,
        asks: BTreeMap<u64, u64>,
    }

    impl Naive {
        fn apply(&mut self, side: Side, price: u64, qty: u64) {
            let m = if side == Side::Bid {
                &mut self.bids
            } else {
                &mut self.asks
            };
            if qty == 0 {
                m.remove(&price);
            } else {
                m.insert(price, qty);
            }
        }
        fn truncate(&mut self, depth: usize) {
            while self.bids.len() > depth {
                let k = *self.bids.keys().next().unwrap();
                self.bids.remove(&k);
            }
            while self.asks.len() > depth {
                let k = *self.asks.keys().next_back().unwrap();
                self.asks.remove(&k);
            }
        }
        fn bids(&self) -> Vec<Level> {
            self.bids
                .iter()
                .rev()
                .map(|(&price, &qty)| Level::new(price, qty))
                .collect()
        }
        fn asks(&self) -> Vec<Level> {
            self.asks
                .iter()
                .map(|(&price, &qty)| Level::new(price, qty))
                .collect()
        }
    }

    /// Levels in a chosen order: as drawn, ascending, descending.
    fn ordered(mut v: Vec<(u64, u64)>, order: u8) -> Vec<(u64, u64)> {
        match order {
            1 => v.sort_by_key(|l| l.0),
            2 => v.sort_by_key(|l| std::cmp::Reverse(l.0)),
            _ => {}
        }
        v
    }

    proptest! {
        /// One big message per side, any order, duplicates and deletes included:
        /// the batch path gives the book the one-by-one model gives.
        #[test]
        fn batch_matches_naive_model(
            depth in 1usize..60,
            start in prop::collection::vec((any::<bool>(), 0u64..400, 1u64..5), 0..80),
            msg in prop::collection::vec((any::<bool>(), 0u64..400, prop_oneof![Just(0u64), 1u64..5]), 0..300),
            order in 0u8..3,
        ) {
            let mut book = Book::new(depth, 0, 0);
            let mut naive = Naive::default();
            for (bid, p, q) in start {
                let side = if bid { Side::Bid } else { Side::Ask };
                book.apply(side, p, q);
                naive.apply(side, p, q);
            }
            book.truncate();
            naive.truncate(depth);
            for side in [Side::Bid, Side::Ask] {
                let mine: Vec<(u64, u64)> = msg
                    .iter()
                    .filter(|m| m.0 == (side == Side::Bid))
                    .map(|m| (m.1, m.2))
                    .collect();
                let mut changes = ordered(mine, order);
                for &(p, q) in &changes {
                    naive.apply(side, p, q);
                }
                book.apply_side(side, &mut changes);
            }
            book.truncate();
            naive.truncate(depth);
            prop_assert_eq!(&book.bids, &naive.bids());
            prop_assert_eq!(&book.asks, &naive.asks());
        }
    }

    fn op() -> impl Strategy<Value = (bool, u64, u64)> {
        (any::<bool>(), 90u64..110, prop_oneof![Just(0u64), 1u64..5])
    }

    proptest! {
        #[test]
        fn matches_naive_model(depth in 1usize..12, msgs in prop::collection::vec(prop::collection::vec(op(), 0..6), 0..60)) {
            let mut book = Book::new(depth, 0, 0);
            let mut naive = Naive::default();
            for msg in msgs {
                for (bid, price, qty) in msg {
                    let side = if bid { Side::Bid } else { Side::Ask };
                    book.apply(side, price, qty);
                    naive.apply(side, price, qty);
                }
                book.truncate();
                naive.truncate(depth);
                prop_assert_eq!(&book.bids, &naive.bids());
                prop_assert_eq!(&book.asks, &naive.asks());
            }
        }
    }

    #[test]
    fn cached_text() {
        let l = Level::at_scales(452_835, 10_000_000, 1, 8);
        assert_eq!(
            (l.price_text(), l.qty_text()),
            (&b"45283.5"[..], &b"0.10000000"[..])
        );
        assert_eq!(l.checksum_digits(), b"45283510000000");
        let l = Level::at_scales(5, 0, 3, 0);
        assert_eq!((l.price_text(), l.qty_text()), (&b"0.005"[..], &b"0"[..]));
        assert_eq!(l.checksum_digits(), b"5");
        let l = Level::at_scales(u64::MAX, u64::MAX, 18, 0);
        assert_eq!(l.price_text(), b"18.446744073709551615");
        assert_eq!(l.qty_text(), b"18446744073709551615");
    }

    #[test]
    fn raise_scale_is_exact_and_atomic() {
        let mut b = Book::new(10, 1, 2);
        b.apply(Side::Bid, 15, 100);
        b.apply(Side::Ask, u64::MAX / 5, 1);
        assert!(b.raise_qty_scale(4));
        assert_eq!(b.bids[0].qty, 10_000);
        assert!(!b.raise_price_scale(2));
        assert_eq!(b.price_scale, 1);
        assert_eq!(b.bids[0].price, 15);
    }
}
