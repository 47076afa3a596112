//! OHLCV bars built from trades, exact in fixed point.
//!
//! A bar covers `[start, start + interval)`; it is emitted when a trade for a
//! later interval arrives, or on flush. A trade older than the open bar cannot
//! reopen an emitted bar and is counted as late instead.

use std::cmp::Ordering;

use crate::fixed::{self, Fixed};

/// Exact decimal with a wide mantissa (volume sums grow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec {
    pub mant: u128,
    pub scale: u32,
}

impl Dec {
    pub fn from_fixed(f: Fixed) -> Self {
        Dec {
            mant: u128::from(f.mant),
            scale: f.scale,
        }
    }

    fn at(self, scale: u32) -> Option<u128> {
        let up = scale.checked_sub(self.scale)?;
        self.mant.checked_mul(10u128.checked_pow(up)?)
    }

    fn common(a: Dec, b: Dec) -> Option<(u128, u128, u32)> {
        let s = a.scale.max(b.scale);
        Some((a.at(s)?, b.at(s)?, s))
    }

    pub fn cmp_exact(self, other: Dec) -> Option<Ordering> {
        let (a, b, _) = Dec::common(self, other)?;
        Some(a.cmp(&b))
    }

    pub fn checked_add(self, other: Dec) -> Option<Dec> {
        let (a, b, scale) = Dec::common(self, other)?;
        Some(Dec {
            mant: a.checked_add(b)?,
            scale,
        })
    }

    pub fn write(self, out: &mut Vec<u8>) {
        fixed::write_u128(self.mant, self.scale, out);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub start_ns: i64,
    pub open: Dec,
    pub high: Dec,
    pub low: Dec,
    pub close: Dec,
    pub volume: Dec,
    pub trades: u64,
}

/// What adding a trade did.
#[derive(Debug, PartialEq, Eq)]
pub enum BarEvent {
    /// Folded into the open bar (or opened the first one).
    Updated,
    /// The open bar closed and is returned; the trade opened the next.
    Closed(Bar),
    /// Older than the open bar: not counted.
    Late,
    /// Sums out of range: not counted.
    Overflow,
}

/// The open bar of one symbol at one interval.
#[derive(Clone, Debug)]
pub struct BarBuilder {
    pub interval_ns: i64,
    pub open: Option<Bar>,
}

impl BarBuilder {
    pub fn new(interval_ns: i64) -> Self {
        BarBuilder {
            interval_ns,
            open: None,
        }
    }

    fn start_of(&self, ts: i64) -> i64 {
        ts.checked_sub(ts.rem_euclid(self.interval_ns.max(1)))
            .unwrap_or(i64::MIN)
    }

    pub fn add(&mut self, price: Fixed, qty: Fixed, ts: i64) -> BarEvent {
        let start = self.start_of(ts);
        let p = Dec::from_fixed(price);
        let q = Dec::from_fixed(qty);
        let fresh = Bar {
            start_ns: start,
            open: p,
            high: p,
            low: p,
            close: p,
            volume: q,
            trades: 1,
        };
        match &mut self.open {
            None => {
                self.open = Some(fresh);
                BarEvent::Updated
            }
            Some(bar) if start == bar.start_ns => {
                let (Some(hi), Some(lo), Some(vol)) = (
                    p.cmp_exact(bar.high),
                    p.cmp_exact(bar.low),
                    bar.volume.checked_add(q),
                ) else {
                    return BarEvent::Overflow;
                };
                if hi == Ordering::Greater {
                    bar.high = p;
                }
                if lo == Ordering::Less {
                    bar.low = p;
                }
                bar.close = p;
                bar.volume = vol;
                bar.trades = bar.trades.saturating_add(1);
                BarEvent::Updated
            }
            Some(bar) if start > bar.start_ns => {
                let done = *bar;
                *bar = fresh;
                BarEvent::Closed(done)
            }
            Some(_) => BarEvent::Late,
        }
    }

    pub fn take(&mut self) -> Option<Bar> {
        self.open.take()
    }
}

/// `"1m"`, `"5m"`, `"1h"`, `"1d"`, `"1w"`, `"30s"` to ns.
pub fn parse_interval(s: &str) -> Option<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let unit_ns: i64 = match unit {
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return None,
    };
    n.checked_mul(unit_ns)
}

/// Kraken's `interval` (minutes) as a tag: under an hour `Nm`, whole hours
/// `Nh`, whole days `Nd`, whole weeks `Nw` (1440 -> `1d`, 10080 -> `1w`,
/// 21600 -> `15d`, 60 -> `1h`).
pub fn minutes_tag(minutes: u32) -> String {
    match minutes {
        m if m >= 10_080 && m % 10_080 == 0 => format!("{}w", m / 10_080),
        m if m >= 1_440 && m % 1_440 == 0 => format!("{}d", m / 1_440),
        m if m >= 60 && m % 60 == 0 => format!("{}h", m / 60),
        m => format!("{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Fixed {
        fixed::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn builds_exact_bars() {
        let mut b = BarBuilder::new(60_000_000_000);
        let t0 = 1_700_000_080_000_000_000; // 40 s into a minute
        assert_eq!(b.add(f("0.1"), f("1.5"), t0), BarEvent::Updated);
        assert_eq!(b.add(f("0.30"), f("0.25"), t0 + 1), BarEvent::Updated);
        assert_eq!(b.add(f("0.05"), f("0.00000001"), t0 + 2), BarEvent::Updated);
        assert_eq!(b.add(f("0.2"), f("1"), t0 - 50_000_000_000), BarEvent::Late);
        let BarEvent::Closed(bar) = b.add(f("0.2"), f("1"), t0 + 30_000_000_000) else {
            panic!()
        };
        assert_eq!(bar.start_ns, 1_700_000_080_000_000_000 - 40_000_000_000);
        let s = |d: Dec| {
            let mut v = Vec::new();
            d.write(&mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(
            (s(bar.open), s(bar.high), s(bar.low), s(bar.close)),
            ("0.1".into(), "0.30".into(), "0.05".into(), "0.05".into())
        );
        assert_eq!(s(bar.volume), "1.75000001");
        assert_eq!(bar.trades, 3);
        assert!(b.take().is_some());
    }

    #[test]
    fn intervals_and_tags() {
        assert_eq!(parse_interval("5m"), Some(300_000_000_000));
        assert_eq!(parse_interval("1h"), Some(3_600_000_000_000));
        assert_eq!(parse_interval("m"), None);
        assert_eq!(parse_interval("0m"), None);
        assert_eq!(parse_interval("5x"), None);
        assert_eq!(minutes_tag(1), "1m");
        assert_eq!(minutes_tag(60), "1h");
        assert_eq!(minutes_tag(240), "4h");
        assert_eq!(minutes_tag(1440), "1d");
        assert_eq!(minutes_tag(10080), "1w");
        assert_eq!(minutes_tag(21600), "15d");
    }
}
