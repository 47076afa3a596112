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
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(mant).as_bytes();
    let scale = scale as usize;
    if scale == 0 {
        out.extend_from_slice(digits);
        return;
    }
    if digits.len() > scale {
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

/// Text form, for `Decimal(...)` on the Python side.
pub fn to_string(mant: u64, scale: u32) -> String {
    let mut v = Vec::with_capacity(24);
    write(mant, scale, &mut v);
    String::from_utf8(v).unwrap_or_default()
}

/// Nearest f64. Exact-rounded when `mant < 2^53` (both operands are exact
/// doubles and IEEE division rounds once).
pub fn to_f64(mant: u64, scale: u32) -> f64 {
    to_f64_u128(u128::from(mant), scale)
}

pub fn to_f64_u128(mant: u128, scale: u32) -> f64 {
    const P: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let div = P
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
