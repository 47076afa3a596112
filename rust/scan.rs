//! A scanner for the one shape Kraken's v2 book frames have: compact JSON,
//! keys in Kraken's order, numbers as plain decimals. It reads each byte once
//! and each number's digits once (serde reads a number to skip it for its
//! `RawValue`, then `fixed::parse` reads it again), which was the largest
//! share of a small frame's time. Anything else, including every error, is
//! `None`, and serde parses the frame as before; the tests check both agree.

use std::borrow::Cow;

use crate::fixed::{self, Fixed};
use crate::kraken::{parse_rfc3339, BookMsg, FrameError};

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        let end = self.i.checked_add(s.len())?;
        (self.b.get(self.i..end)? == s).then(|| self.i = end)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let rest = self.b.get(self.i..)?;
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        let s = std::str::from_utf8(rest.get(..len)?).ok()?;
        self.i += len;
        self.lit(b"\"")?;
        Some(s)
    }

    /// The text of a JSON number of the form `0|[1-9][0-9]*` with an optional
    /// `.[0-9]+` (no sign, no exponent).
    fn number_text(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let digits = |c: &mut Self| {
            let n =
                c.b.get(c.i..)
                    .map_or(0, |r| r.iter().take_while(|d| d.is_ascii_digit()).count());
            c.i += n;
            n
        };
        let first = self.peek()?;
        let n = digits(self);
        if n == 0 || (first == b'0' && n > 1) {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        self.b.get(start..self.i)
    }

    fn fixed(&mut self) -> Option<Fixed> {
        fixed::parse(self.number_text()?).ok()
    }

    fn levels(&mut self) -> Option<Vec<(Fixed, Fixed)>> {
        self.lit(b"[")?;
        let mut out = Vec::new();
        if self.lit(b"]").is_some() {
            return Some(out);
        }
        loop {
            self.lit(b"{\"price\":")?;
            let price = self.fixed()?;
            self.lit(b",\"qty\":")?;
            let qty = self.fixed()?;
            self.lit(b"}")?;
            out.push((price, qty));
            if self.lit(b",").is_none() {
                self.lit(b"]")?;
                return Some(out);
            }
        }
    }

    fn entry(&mut self, snapshot: bool) -> Option<BookMsg<'a>> {
        self.lit(b"{\"symbol\":")?;
        let symbol = self.string()?;
        self.lit(b",\"bids\":")?;
        let bids = self.levels()?;
        self.lit(b",\"asks\":")?;
        let asks = self.levels()?;
        let checksum = match self.lit(b",\"checksum\":") {
            Some(()) => Some(
                std::str::from_utf8(self.number_text()?)
                    .ok()?
                    .parse::<u32>()
                    .ok()?,
            ),
            None => None,
        };
        let timestamp_ns = match self.lit(b",\"timestamp\":") {
            Some(()) => Some(parse_rfc3339(self.string()?)?),
            None => None,
        };
        self.lit(b"}")?;
        Some(BookMsg {
            symbol: Cow::Borrowed(symbol),
            snapshot,
            bids,
            asks,
            checksum,
            timestamp_ns,
            depth: None,
        })
    }
}

/// The entries of a v2 book frame in Kraken's own shape, or `None`.
pub fn book_frame(frame: &[u8]) -> Option<Vec<Result<BookMsg<'_>, FrameError>>> {
    let mut c = Cursor { b: frame, i: 0 };
    c.lit(b"{\"channel\":\"book\",\"type\":\"")?;
    let snapshot = match c.lit(b"snapshot\"") {
        Some(()) => true,
        None => {
            c.lit(b"update\"")?;
            false
        }
    };
    c.lit(b",\"data\":[")?;
    let mut out = Vec::with_capacity(1);
    if c.lit(b"]").is_none() {
        loop {
            out.push(Ok(c.entry(snapshot)?));
            if c.lit(b",").is_none() {
                c.lit(b"]")?;
                break;
            }
        }
    }
    c.lit(b"}")?;
    (c.i == frame.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kraken::{parse_frame_with_serde, Frame};
    use proptest::prelude::*;

    const DOC: &[u8] = br#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[],"asks":[{"price":0.62360,"qty":4.49000623},{"price":0.62375,"qty":0.00000000}],"checksum":589404317,"timestamp":"2023-11-14T22:13:20.001529Z"}]}"#;

    #[test]
    fn kraken_shapes_are_scanned() {
        let Some(v) = book_frame(DOC) else {
            panic!("not scanned")
        };
        let Ok(Frame::Book(w)) = parse_frame_with_serde(DOC) else {
            panic!()
        };
        assert_eq!(v, w);
        let snap = br#"{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[{"price":1.5,"qty":2}],"asks":[]},{"symbol":"C/D","bids":[],"asks":[]}]}"#;
        assert!(book_frame(snap).is_some_and(|v| v.len() == 2));
        assert!(book_frame(br#"{"channel":"book","type":"update","data":[]}"#).is_some());
    }

    /// Pieces of frames, weighted toward what the scanner must refuse.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0u64..1_000_000, 0u32..10).prop_map(|(m, s)| crate::fixed::to_string(m, s)),
            1 => Just("0".to_owned()),
            1 => Just("00.5".to_owned()),
            1 => Just("1e-5".to_owned()),
            1 => Just("-1.5".to_owned()),
            1 => Just("\"1.5\"".to_owned()),
            1 => Just("1.".to_owned()),
            1 => Just("99999999999999999999".to_owned()),
            1 => Just("0.0000000000000000001".to_owned()),
            1 => Just("null".to_owned()),
        ]
    }

    fn symbol() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("\"BTC/USD\"".to_owned()),
            1 => Just("\"B\\\"T\"".to_owned()),
            1 => Just("\"\\u0041\"".to_owned()),
            1 => Just("\"Ω/€\"".to_owned()),
            1 => Just("\"a\tb\"".to_owned()),
            1 => Just("\"\"".to_owned()),
            1 => Just("7".to_owned()),
        ]
    }

    fn level() -> impl Strategy<Value = String> {
        (number(), number(), 0u8..8).prop_map(|(p, q, k)| match k {
            0 => format!(r#"{{"qty":{q},"price":{p}}}"#),
            1 => format!(r#"{{"price":{p},"qty":{q},"x":1}}"#),
            2 => format!(r#"{{"price":{p}}}"#),
            _ => format!(r#"{{"price":{p},"qty":{q}}}"#),
        })
    }

    fn entry() -> impl Strategy<Value = String> {
        (
            symbol(),
            prop::collection::vec(level(), 0..4),
            prop::collection::vec(level(), 0..4),
            prop::option::of(prop_oneof![
                Just("589404317".to_owned()),
                Just("4294967296".to_owned()),
                Just("-1".to_owned()),
                Just("1.0".to_owned())
            ]),
            prop::option::of(prop_oneof![
                Just("\"2023-11-14T22:13:20.001529Z\"".to_owned()),
                Just("\"2023-11-14\"".to_owned()),
                Just("5".to_owned())
            ]),
            0u8..6,
        )
            .prop_map(|(s, b, a, c, t, k)| {
                let (b, a) = (b.join(","), a.join(","));
                let c = c.map(|c| format!(r#","checksum":{c}"#)).unwrap_or_default();
                let t = t
                    .map(|t| format!(r#","timestamp":{t}"#))
                    .unwrap_or_default();
                match k {
                    0 => format!(r#"{{"bids":[{b}],"symbol":{s},"asks":[{a}]{c}{t}}}"#),
                    1 => format!(r#"{{"symbol":{s},"bids":[{b}]{c}{t}}}"#),
                    _ => format!(r#"{{"symbol":{s},"bids":[{b}],"asks":[{a}]{c}{t}}}"#),
                }
            })
    }

    fn frame() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just("snapshot"), Just("update"), Just("other")],
            prop::collection::vec(entry(), 0..3),
            0u8..8,
            any::<usize>(),
        )
            .prop_map(|(kind, entries, k, at)| {
                let data = entries.join(",");
                let mut f = match k {
                    0 => format!(r#"{{"type":"{kind}","channel":"book","data":[{data}]}}"#),
                    1 => format!(r#"{{"channel":"book","type":"{kind}","data":[{data}],"x":1}}"#),
                    2 => format!(r#"{{"channel":"book","type":"{kind}","data":[{data}]}} "#),
                    _ => format!(r#"{{"channel":"book","type":"{kind}","data":[{data}]}}"#),
                }
                .into_bytes();
                if k == 3 {
                    let at = at % (f.len() + 1);
                    f.insert(at, b' ');
                }
                f
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever the scanner accepts, serde reads the same way; and a frame
        /// in Kraken's shape with plain numbers is always accepted.
        #[test]
        fn scanner_agrees_with_serde(f in frame()) {
            if let Some(v) = book_frame(&f) {
                match parse_frame_with_serde(&f) {
                    Ok(Frame::Book(w)) => prop_assert_eq!(v, w),
                    other => prop_assert!(false, "scanner took what serde read as {:?}", other),
                }
            }
        }

        #[test]
        fn kraken_shaped_frames_are_taken_and_read_as_serde_reads_them(
            snapshot in any::<bool>(),
            entries in prop::collection::vec((
                prop::collection::vec(((0u64..u64::MAX), 0u32..19, (0u64..1 << 40), 0u32..10), 0..5),
                prop::collection::vec(((0u64..u64::MAX), 0u32..19, (0u64..1 << 40), 0u32..10), 0..5),
                prop::option::of(any::<u32>()),
                prop::option::of(0i64..4_000_000_000_000_000_000),
            ), 0..3),
        ) {
            let lv = |v: &Vec<(u64, u32, u64, u32)>| v.iter().map(|(p, ps, q, qs)| format!(
                r#"{{"price":{},"qty":{}}}"#,
                crate::fixed::to_string(*p, *ps),
                crate::fixed::to_string(*q, *qs),
            )).collect::<Vec<_>>().join(",");
            let data = entries.iter().map(|(b, a, c, t)| {
                let c = c.map(|c| format!(r#","checksum":{c}"#)).unwrap_or_default();
                let t = t.map(|t| {
                    let (s, ns) = (t / 1_000_000_000, t % 1_000_000_000);
                    // One date, every time of day and fraction.
                    format!(r#","timestamp":"2024-02-29T{:02}:{:02}:{:02}.{ns:09}Z""#, (s / 3600) % 24, (s / 60) % 60, s % 60)
                }).unwrap_or_default();
                format!(r#"{{"symbol":"ETH/EUR","bids":[{}],"asks":[{}]{c}{t}}}"#, lv(b), lv(a))
            }).collect::<Vec<_>>().join(",");
            let kind = if snapshot { "snapshot" } else { "update" };
            let f = format!(r#"{{"channel":"book","type":"{kind}","data":[{data}]}}"#).into_bytes();
            let v = book_frame(&f);
            prop_assert!(v.is_some(), "{}", String::from_utf8_lossy(&f));
            let Ok(Frame::Book(w)) = parse_frame_with_serde(&f) else {
                return Err(TestCaseError::fail("serde refused"));
            };
            prop_assert_eq!(v.unwrap_or_default(), w);
        }

        #[test]
        fn truncated_or_mutated_frames_never_panic(cut in 0usize..300, pos in 0usize..300, byte in any::<u8>()) {
            let mut f = DOC.to_vec();
            if let Some(b) = f.get_mut(pos) { *b = byte; }
            f.truncate(cut);
            if let Some(v) = book_frame(&f) {
                let Ok(Frame::Book(w)) = parse_frame_with_serde(&f) else {
                    return Err(TestCaseError::fail("serde refused what the scanner took"));
                };
                prop_assert_eq!(v, w);
            }
        }
    }
}
