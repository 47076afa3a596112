//! Fixed-point decimals: number text in, integer mantissa + scale out.
//!
//! Prices and quantities never pass through `f64` on their way into a book:
//! Kraken's checksum is computed over the exact decimal digits (trailing zeros
//! included), and the schema promises exact values. A value is a non-negative
//! `u64` mantissa with a scale (count of fractional digits).

/// Largest scale handled; `10^19` would not fit a `u64`.
pub const MAX_SCALE: u32 = 18;

const POW10: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

/// `10^n` as u64, `None` past 19.
pub fn pow10(n: u32) -> Option<u64> {
    POW10.get(n as usize).copied()
}

/// A parsed decimal exactly as written: `mant / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    pub mant: u64,
    pub scale: u32,
}

/// Why number text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    Empty,
    Negative,
    Syntax,
    Overflow,
}

impl NumError {
    pub fn describe(self) -> &'static str {
        match self {
            NumError::Empty => "empty number",
            NumError::Negative => "negative number",
            NumError::Syntax => "not a decimal number",
            NumError::Overflow => "number out of range",
        }
    }
}

/// Parse JSON number text or the inside of a quoted decimal string
/// (`45283.5`, `0.10000000`, `1e-5`, `"0.05005"`). Trailing zeros are kept in
/// the scale (`0.10000000` has scale 8) because the checksum needs them.
pub fn parse(text: &[u8]) -> Result<Fixed, NumError> {
    match parse_plain(text) {
        Some(f) => Ok(f),
        None => parse_general(text),
    }
}

/// The usual case: unsigned digits with at most one dot, at most 19 digits
/// (so no overflow is possible), scale within range. `None` hands anything
/// else to the general parser, which gives the same result where both apply.
#[inline]
fn parse_plain(text: &[u8]) -> Option<Fixed> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let mut mant = 0u64;
    let mut dot = None;
    for (i, &c) in text.iter().enumerate() {
        match c {
            // Wraps only for 20 digits, which are refused below.
            b'0'..=b'9' => mant = mant.wrapping_mul(10).wrapping_add(u64::from(c - b'0')),
            b'.' if dot.is_none() => dot = Some(i),
            _ => return None,
        }
    }
    let (digits, scale) = match dot {
        Some(i) => (text.len() - 1, text.len() - 1 - i),
        None => (text.len(), 0),
    };
    if digits == 0 || digits > 19 {
        return None;
    }
    let scale = u32::try_from(scale).ok().filter(|&s| s <= MAX_SCALE)?;
    Some(Fixed { mant, scale })
}

fn parse_general(text: &[u8]) -> Result<Fixed, NumError> {
    let text = match text {
        [b'"', inner @ .., b'"'] => inner,
        _ => text,
    };
    let (first, _) = text.split_first().ok_or(NumError::Empty)?;
    if *first == b'-' {
        // "-0" and "-0.0" are harmless zeros; anything else is refused.
        let rest = text.get(1..).unwrap_or(&[]);
        let f = parse(rest)?;
        return if f.mant == 0 {
            Ok(f)
        } else {
            Err(NumError::Negative)
        };
    }
    let mut mant: u64 = 0;
    let mut scale: i64 = 0;
    let mut digits = 0usize;
    let mut seen_dot = false;
    let mut i = 0usize;
    while let Some(&c) = text.get(i) {
        match c {
            b'0'..=b'9' => {
                mant = mant
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(u64::from(c - b'0')))
                    .ok_or(NumError::Overflow)?;
                digits += 1;
                if seen_dot {
                    scale += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            b'e' | b'E' => break,
            _ => return Err(NumError::Syntax),
        }
        i += 1;
    }
    if digits == 0 {
        return Err(NumError::Syntax);
    }
    if i < text.len() {
        // Exponent part.
        let exp_text = text.get(i + 1..).unwrap_or(&[]);
        let (neg, exp_digits) = match exp_text.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, exp_text),
        };
        if exp_digits.is_empty() || exp_digits.len() > 4 {
            return Err(if exp_digits.is_empty() {
                NumError::Syntax
            } else {
                NumError::Overflow
            });
        }
        let mut exp: i64 = 0;
        for &c in exp_digits {
            if !c.is_ascii_digit() {
                return Err(NumError::Syntax);
            }
            exp = exp * 10 + i64::from(c - b'0');
        }
        scale -= if neg { -exp } else { exp };
    }
    if scale < 0 {
        let up = u32::try_from(-scale).map_err(|_| NumError::Overflow)?;
        mant = if mant == 0 {
            0
        } else {
            pow10(up)
                .and_then(|p| mant.checked_mul(p))
                .ok_or(NumError::Overflow)?
        };
        scale = 0;
    }
    let mut scale = u32::try_from(scale).map_err(|_| NumError::Overflow)?;
    // Drop trailing zeros only when needed to fit; they carry no value.
    while scale > MAX_SCALE {
        if mant % 10 != 0 {
            return Err(NumError::Overflow);
        }
        mant /= 10;
        scale -= 1;
    }
    Ok(Fixed { mant, scale })
}

/// `mant` at scale `from`, expressed at scale `to`; `None` if that would lose
/// non-zero digits or overflow.
pub fn rescale(mant: u64, from: u32, to: u32) -> Option<u64> {
    if to >= from {
        mant.checked_mul(pow10(to - from)?)
    } else {
        let p = pow10(from - to)?;
        if mant % p == 0 {
            Some(mant / p)
        } else {
            None
        }
    }
}

/// Number of fractional digits actually needed (trailing zeros ignored).
pub fn significant_scale(f: Fixed) -> u32 {
    let mut m = f.mant;
    let mut s = f.scale;
    while s > 0 && m % 10 == 0 {
        m /= 10;
        s -= 1;
    }
    s
}

/// Write `mant / 10^scale` with exactly `scale` fractional digits (`0.10000000`).
pub fn write(mant: u64, scale: u32, out: &mut Vec<u8>) {
    write_u128(u128::from(mant), scale, out);
}

/// As [`write`], for the wider sums built in bars.
pub fn write_u128(mant: u128, scale: u32, out: &mut Vec<u8>) {
    write_digits(itoa::Buffer::new().format(mant).as_bytes(), scale, out);
}

/// As [`write`], from cached mantissa digits (empty means 0).
pub fn write_digits(digits: &[u8], scale: u32, out: &mut Vec<u8>) {
    let digits = if digits.is_empty() {
        b"0".as_slice()
    } else {
        digits
    };
    let scale = scale as usize;
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (scale - digits.len()), b'0');
        out.extend_from_slice(digits);
    }
}

/// Write `±mant / 10^scale` exactly as ryu writes the nearest f64 (shortest
/// round trip: `1.7`, `20.0`, `0.00012`), without going through f64.
/// Returns `false`, writing nothing, where the texts could differ: more than
/// 15 significant digits, a value ryu would write in exponent form, or a
/// value whose f64 (`mant as f64 / 10^scale`) is not correctly rounded
/// (`mant >= 2^53` or `scale > 22`). With at most 15 significant digits the
/// decimal is the unique shortest text of its nearest double, so the bytes
/// are exactly ryu's.
pub fn write_shortest(neg: bool, mant: u128, scale: u32, out: &mut Vec<u8>) -> bool {
    if mant >= 1u128 << 53 || scale > 22 {
        return false;
    }
    let (mut m, mut s) = (mant as u64, scale);
    if m == 0 {
        out.extend_from_slice(if neg { b"-0.0" } else { b"0.0" });
        return true;
    }
    while s > 0 && m % 10 == 0 {
        m /= 10;
        s -= 1;
    }
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(m).as_bytes();
    let n = digits.len();
    if n > 15 || n + 4 < s as usize {
        // Too many digits, or below 1e-5: ryu switches to exponent form.
        return false;
    }
    if neg {
        out.push(b'-');
    }
    if s == 0 {
        out.extend_from_slice(digits);
        out.extend_from_slice(b".0");
    } else {
        write_digits(digits, s, out);
    }
    true
}

/// Text form, for `Decimal(...)` on the Python side.
pub fn to_string(mant: u64, scale: u32) -> String {
    let mut v = Vec::with_capacity(24);
    write(mant, scale, &mut v);
    String::from_utf8(v).unwrap_or_default()
}

/// Powers of ten exactly representable as f64.
const F64_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Nearest f64. Exact-rounded when `mant < 2^53` (both operands are exact
/// doubles and IEEE division rounds once).
pub fn to_f64(mant: u64, scale: u32) -> f64 {
    match F64_POW10.get(scale as usize) {
        Some(div) => mant as f64 / div,
        None => wide_to_f64(u128::from(mant), scale),
    }
}

pub fn to_f64_u128(mant: u128, scale: u32) -> f64 {
    // u64 -> f64 is a few instructions; u128 -> f64 is a library call (kept
    // out of line so it is not evaluated speculatively). Both round
    // correctly, so the result is the same.
    match u64::try_from(mant) {
        Ok(m) => to_f64(m, scale),
        Err(_) => wide_to_f64(mant, scale),
    }
}

#[cold]
#[inline(never)]
fn wide_to_f64(mant: u128, scale: u32) -> f64 {
    let div = F64_POW10
        .get(scale as usize)
        .copied()
        .unwrap_or_else(|| 10f64.powi(scale as i32));
    mant as f64 / div
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Fixed, NumError> {
        parse(s.as_bytes())
    }

    #[test]
    fn parses_plain_and_keeps_trailing_zeros() {
        assert_eq!(
            p("45283.5"),
            Ok(Fixed {
                mant: 452835,
                scale: 1
            })
        );
        assert_eq!(
            p("0.10000000"),
            Ok(Fixed {
                mant: 10_000_000,
                scale: 8
            })
        );
        assert_eq!(
            p("\"0.05005\""),
            Ok(Fixed {
                mant: 5005,
                scale: 5
            })
        );
        assert_eq!(p("12"), Ok(Fixed { mant: 12, scale: 0 }));
        assert_eq!(p("0"), Ok(Fixed { mant: 0, scale: 0 }));
        assert_eq!(p("-0.0"), Ok(Fixed { mant: 0, scale: 1 }));
    }

    #[test]
    fn parses_exponents() {
        assert_eq!(p("1e-5"), Ok(Fixed { mant: 1, scale: 5 }));
        assert_eq!(
            p("1.5E+2"),
            Ok(Fixed {
                mant: 150,
                scale: 0
            })
        );
        assert_eq!(
            p("2.50e1"),
            Ok(Fixed {
                mant: 250,
                scale: 1
            })
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "abc",
            "1.2.3",
            "-1",
            "1e",
            "1e99999",
            ".",
            "1,0",
            "nan",
            "\"\"",
            "99999999999999999999",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shortest_matches_ryu() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for i in 0..200_000u64 {
            let bits = next();
            let mant = match i % 4 {
                0 => u128::from(bits % 1000),
                1 => u128::from(bits % 10_000_000),
                2 => u128::from(bits >> (bits % 64)),
                _ => u128::from(bits % 100) * u128::from(pow10((bits % 12) as u32).unwrap()),
            };
            let scale = ((bits >> 50) % 24) as u32;
            let neg = bits & 1 == 1 && mant != 0;
            let mut got = Vec::new();
            if write_shortest(neg, mant, scale, &mut got) {
                let v = to_f64_u128(mant, scale);
                let v = if neg { -v } else { v };
                let want = ryu::Buffer::new().format_finite(v).as_bytes().to_vec();
                assert_eq!(got, want, "{mant} e-{scale}");
                checked += 1;
            } else {
                assert!(got.is_empty());
            }
        }
        assert!(checked > 50_000, "{checked}");
        let mut out = Vec::new();
        assert!(write_shortest(false, 17, 1, &mut out));
        assert!(write_shortest(true, 2000, 2, &mut out));
        assert!(write_shortest(false, 4_528_435 * 5, 2, &mut out));
        assert!(write_shortest(false, 12, 6, &mut out));
        assert!(!write_shortest(false, 1, 6, &mut out));
        assert_eq!(out, b"1.7-20.0226421.750.000012");
    }

    #[test]
    fn plain_fast_path_agrees_with_general() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let alphabet = b"0123456789...e-\"";
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let mut t = Vec::with_capacity(len);
            let mut x = seed;
            for _ in 0..len {
                let k = if x % 7 == 0 {
                    (x >> 3) % 16
                } else {
                    (x >> 3) % 11
                };
                t.push(alphabet[k as usize]);
                x = x.rotate_left(11) ^ 0x9e37_79b9;
            }
            if let Some(f) = parse_plain(&t) {
                assert_eq!(Ok(f), parse_general(&t), "{}", String::from_utf8_lossy(&t));
            }
        }
        for t in [
            "0",
            "1.",
            ".5",
            "0.10000000",
            "9999999999999999999",
            "45283.5",
        ] {
            assert_eq!(
                parse_plain(t.as_bytes()).map(Ok),
                Some(parse_general(t.as_bytes()))
            );
        }
        for t in [
            "",
            ".",
            "1.2.3",
            "-1",
            "1e5",
            "\"1\"",
            "18446744073709551616",
        ] {
            assert_eq!(parse_plain(t.as_bytes()), None, "{t}");
        }
    }

    #[test]
    fn rescale_and_write() {
        assert_eq!(rescale(5, 1, 3), Some(500));
        assert_eq!(rescale(500, 3, 1), Some(5));
        assert_eq!(rescale(501, 3, 1), None);
        let mut v = Vec::new();
        write(5, 3, &mut v);
        v.push(b' ');
        write(123_456, 2, &mut v);
        v.push(b' ');
        write(7, 0, &mut v);
        assert_eq!(v, b"0.005 1234.56 7");
        assert_eq!(to_f64(452835, 1), 45283.5);
        assert_eq!(
            significant_scale(Fixed {
                mant: 10_000_000,
                scale: 8
            }),
            1
        );
    }
}
