//! InfluxDB line protocol encoder.
//!
//! Escaping follows the InfluxDB 1.x line-protocol reference:
//! measurement: comma and space; tag keys, tag values and field keys: comma,
//! equals sign and space; string field values: double quote and backslash.
//! Integers get the `i` suffix (1.x rejects `u`); floats use ryu's shortest
//! round-trip text, which always carries a `.` or an exponent, so an integral
//! float (`1.0`) is still typed float by InfluxDB.
//!
//! Every line written reads back exactly; what cannot is refused, found by
//! experiment against influxd 1.6 and VictoriaMetrics (`tests/series/
//! test_roundtrip_property.py` keeps proving it):
//! - a newline (or carriage return) anywhere, NaN and infinities;
//! - a backslash in a name or tag value that is last or followed by a
//!   backslash, comma, equals sign, space or double quote: 1.x's line
//!   splitter skips `\\` as a pair while its tag scanner only looks one byte
//!   back, 1.6 unescapes `\=` and `\"` even in a measurement or field key,
//!   and VictoriaMetrics unescapes `\\` where 1.x keeps it;
//! - a measurement starting with `#` (a comment: 204 and nothing stored), or a
//!   measurement or key starting with whitespace or NUL (stripped), NUL in a
//!   measurement or key;
//! - a tag or field key `time` (1.x refuses the point), a double quote in a
//!   field key (VictoriaMetrics reads a quoted string from it on, and takes
//!   the point's timestamp for part of it);
//! - a series key past 65,535 bytes, a timestamp outside
//!   -9223372036854775806..=9223372036854775806 ns (1.x refuses both).

use std::fmt;

/// What could not be encoded, naming the offending part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// A newline in a measurement, key, tag value or string field.
    Newline { what: &'static str, name: String },
    /// A key or measurement that is empty.
    Empty { what: &'static str },
    /// NaN or +/-inf.
    NonFinite { field: String },
    /// A point needs at least one field.
    NoFields,
    /// Text InfluxDB would parse into something else, or not store.
    Unstorable {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    /// Measurement, tags and a field key longer than 1.x's series-key limit.
    KeyTooLong { field: String, len: usize },
    /// A timestamp outside InfluxDB's range.
    TimeOutOfRange { ns: i64 },
}

/// InfluxDB 1.x's time range in ns (`models.MinNanoTime`, `models.MaxNanoTime`).
pub const MIN_NANO_TIME: i64 = i64::MIN + 2;
pub const MAX_NANO_TIME: i64 = i64::MAX - 1;
/// 1.x's limit on measurement + tags + `#!~#` + field key.
pub const MAX_KEY_LENGTH: usize = 65535;

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Newline { what, name } => {
                write!(
                    f,
                    "{what} {name:?} contains a newline, which line protocol cannot carry"
                )
            }
            LineError::Empty { what } => write!(f, "{what} must not be empty"),
            LineError::NonFinite { field } => {
                write!(
                    f,
                    "field {field:?} is not finite (NaN and infinity cannot be stored)"
                )
            }
            LineError::NoFields => write!(f, "a point needs at least one field"),
            LineError::Unstorable { what, name, why } => {
                write!(f, "{what} {name:?} {why}, which InfluxDB cannot store")
            }
            LineError::KeyTooLong { field, len } => write!(
                f,
                "field {field:?}: the series key is {len} bytes, InfluxDB stores at most {MAX_KEY_LENGTH}"
            ),
            LineError::TimeOutOfRange { ns } => write!(
                f,
                "timestamp {ns} ns is outside InfluxDB's range ({MIN_NANO_TIME}..={MAX_NANO_TIME})"
            ),
        }
    }
}

impl std::error::Error for LineError {}

/// What a backslash in a name must not precede: InfluxDB 1.6 unescapes `\=` and
/// `\"` even where they need no escape (a measurement, a field key), and
/// VictoriaMetrics unescapes `\\`.
const NOT_AFTER_BACKSLASH: &[u8] = b"\\,= \"";

/// Refuses what InfluxDB would not read back as `s`.
fn check_name(s: &str, what: &'static str, allow_empty: bool) -> Result<(), LineError> {
    if s.is_empty() && !allow_empty {
        return Err(LineError::Empty { what });
    }
    if s.contains(['\n', '\r']) {
        return Err(LineError::Newline {
            what,
            name: s.to_owned(),
        });
    }
    let bytes = s.as_bytes();
    let escapes_next = |i: usize| match bytes.get(i + 1) {
        None => true,
        Some(next) => NOT_AFTER_BACKSLASH.contains(next),
    };
    if bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\\' && escapes_next(i))
    {
        let why = if s.ends_with('\\') {
            "ends with a backslash"
        } else {
            "has a backslash before a backslash or an escaped character"
        };
        return Err(unstorable(what, s, why));
    }
    Ok(())
}

fn unstorable(what: &'static str, name: &str, why: &'static str) -> LineError {
    LineError::Unstorable {
        what,
        name: name.to_owned(),
        why,
    }
}

/// A measurement or key: no NUL, no leading whitespace (both get stripped).
fn check_key(s: &str, what: &'static str) -> Result<(), LineError> {
    check_name(s, what, false)?;
    if s.contains('\0') {
        return Err(unstorable(what, s, "contains NUL"));
    }
    if s.starts_with([' ', '\t']) {
        return Err(unstorable(what, s, "starts with whitespace"));
    }
    Ok(())
}

fn escape_into(s: &str, specials: &[u8], out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|b| specials.contains(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if specials.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Measurement name: comma and space escaped.
pub fn write_measurement(s: &str, out: &mut Vec<u8>) -> Result<(), LineError> {
    check_key(s, "measurement")?;
    if s.starts_with('#') {
        return Err(unstorable("measurement", s, "starts with '#' (a comment)"));
    }
    escape_into(s, b", ", out);
    Ok(())
}

/// Tag key or field key: comma, equals and space escaped.
pub fn write_key(s: &str, what: &'static str, out: &mut Vec<u8>) -> Result<(), LineError> {
    check_key(s, what)?;
    if s == "time" {
        return Err(unstorable(what, s, "is named time"));
    }
    escape_into(s, b",= ", out);
    Ok(())
}

fn write_field_key(s: &str, out: &mut Vec<u8>) -> Result<(), LineError> {
    if s.contains('"') {
        return Err(unstorable("field key", s, "contains a double quote"));
    }
    write_key(s, "field key", out)
}

/// String field value, quoted; double quote and backslash escaped.
pub fn write_string_value(field: &str, s: &str, out: &mut Vec<u8>) -> Result<(), LineError> {
    if s.contains(['\n', '\r']) {
        return Err(LineError::Newline {
            what: "string field",
            name: field.to_owned(),
        });
    }
    out.push(b'"');
    escape_into(s, b"\"\\", out);
    out.push(b'"');
    Ok(())
}

/// Float field value in shortest round-trip form.
pub fn write_float(field: &str, v: f64, out: &mut Vec<u8>) -> Result<(), LineError> {
    if !v.is_finite() {
        return Err(LineError::NonFinite {
            field: field.to_owned(),
        });
    }
    let mut b = ryu::Buffer::new();
    out.extend_from_slice(b.format_finite(v).as_bytes());
    Ok(())
}

pub fn write_int(v: i64, out: &mut Vec<u8>) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
    out.push(b'i');
}

pub fn write_bool(v: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

pub fn check_timestamp(ns: i64) -> Result<(), LineError> {
    if (MIN_NANO_TIME..=MAX_NANO_TIME).contains(&ns) {
        Ok(())
    } else {
        Err(LineError::TimeOutOfRange { ns })
    }
}

pub fn write_timestamp(ts: i64, out: &mut Vec<u8>) {
    let mut b = itoa::Buffer::new();
    out.push(b' ');
    out.extend_from_slice(b.format(ts).as_bytes());
    out.push(b'\n');
}

/// A short piece of text (at most 24 bytes) stored padded, so it can be
/// copied as a fixed-size block: the L2 line is ~80 such pieces, and a libc
/// `memcpy` call per piece costs more than the bytes themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pad24 {
    bytes: [u8; 24],
    len: u8,
}

impl Pad24 {
    /// `None` if `s` is longer than 24 bytes.
    pub fn new(s: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; 24];
        bytes.get_mut(..s.len())?.copy_from_slice(s);
        Some(Pad24 {
            bytes,
            len: s.len() as u8,
        })
    }

    /// A piece from a filled block whose first `len` bytes are the text.
    pub fn from_block(bytes: [u8; 24], len: usize) -> Option<Self> {
        let len = u8::try_from(len).ok().filter(|&l| l <= 24)?;
        Some(Pad24 { bytes, len })
    }

    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// A finite f64 in shortest round-trip form, byte for byte as ryu writes it
/// (`1.7`, `20.0`, `1e-7`, `1e16`). zmij computes the same digits faster; it
/// writes positive exponents as `e+N`, so the `+` is dropped.
pub fn push_f64(v: f64, out: &mut Vec<u8>) {
    let mut buf = zmij::Buffer::new();
    let s = buf.format_finite(v).as_bytes();
    if v.abs() < 1e15 {
        // Plain or negative-exponent form: no `+` to drop.
        out.extend_from_slice(s);
        return;
    }
    match s.iter().position(|&c| c == b'+') {
        None => out.extend_from_slice(s),
        Some(i) => {
            let (head, tail) = s.split_at(i);
            out.extend_from_slice(head);
            out.extend_from_slice(tail.get(1..).unwrap_or(&[]));
        }
    }
}

/// Writes [`Pad24`] pieces into a zeroed block reserved at the end of the
/// output: each piece is copied as a fixed 24-byte block and the position
/// advanced by its length. The block is a local slice, so the copies need no
/// capacity checks and no reload of the vector's length.
pub struct PieceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl PieceWriter<'_> {
    /// Room is made for `max_pieces`; pieces beyond it are dropped, so the
    /// caller counts them first. The output ends right after the last piece.
    pub fn write(out: &mut Vec<u8>, max_pieces: usize, f: impl FnOnce(&mut PieceWriter<'_>)) {
        let start = out.len();
        out.resize(start + max_pieces.saturating_mul(24), 0);
        let used = match out.get_mut(start..) {
            Some(buf) => {
                let mut w = PieceWriter { buf, len: 0 };
                f(&mut w);
                w.len
            }
            None => 0,
        };
        out.truncate(start + used);
    }

    #[inline]
    pub fn put(&mut self, p: &Pad24) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + 24) {
            dst.copy_from_slice(&p.bytes);
            self.len += usize::from(p.len);
        }
    }
}

/// A field value of the general encoder.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(String),
    /// Decimal text already validated as `[-]digits[.digits]`; written as is (a float).
    Decimal(String),
}

/// Is this plain decimal text (`-12.50`) that InfluxDB parses as a float?
pub fn is_plain_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let mut parts = body.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    !int.is_empty() && digits(int) && frac.is_none_or(|f| !f.is_empty() && digits(f))
}

/// Encode one point of any measurement: tags sorted by key with empty values
/// left out (InfluxDB refuses them), fields in the order given.
pub fn encode_point(
    measurement: &str,
    tags: &[(String, String)],
    fields: &[(String, FieldValue)],
    timestamp_ns: i64,
    out: &mut Vec<u8>,
) -> Result<(), LineError> {
    if fields.is_empty() {
        return Err(LineError::NoFields);
    }
    check_timestamp(timestamp_ns)?;
    let start = out.len();
    let result = encode_inner(measurement, tags, fields, timestamp_ns, out);
    if result.is_err() {
        out.truncate(start); // never leave half a line behind
    }
    result
}

fn encode_inner(
    measurement: &str,
    tags: &[(String, String)],
    fields: &[(String, FieldValue)],
    timestamp_ns: i64,
    out: &mut Vec<u8>,
) -> Result<(), LineError> {
    let key_start = out.len();
    write_measurement(measurement, out)?;
    let mut sorted: Vec<&(String, String)> = tags.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (k, v) in sorted {
        check_name(v, "tag value", true)?;
        if v.is_empty() {
            continue;
        }
        out.push(b',');
        write_key(k, "tag key", out)?;
        out.push(b'=');
        escape_into(v, b",= ", out);
    }
    let key_len = out.len() - key_start;
    for (i, (k, v)) in fields.iter().enumerate() {
        out.push(if i == 0 { b' ' } else { b',' });
        let field_start = out.len();
        write_field_key(k, out)?;
        let len = key_len + 4 + out.len() - field_start;
        if len > MAX_KEY_LENGTH {
            return Err(LineError::KeyTooLong {
                field: k.clone(),
                len,
            });
        }
        out.push(b'=');
        match v {
            FieldValue::Float(f) => write_float(k, *f, out)?,
            FieldValue::Int(n) => write_int(*n, out),
            FieldValue::Bool(b) => write_bool(*b, out),
            FieldValue::Str(s) => write_string_value(k, s, out)?,
            FieldValue::Decimal(s) => {
                if !is_plain_decimal(s) {
                    return Err(LineError::NonFinite { field: k.clone() });
                }
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    write_timestamp(timestamp_ns, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        m: &str,
        tags: &[(&str, &str)],
        fields: Vec<(&str, FieldValue)>,
        ts: i64,
    ) -> Result<String, LineError> {
        let tags: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let fields: Vec<(String, FieldValue)> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut out = Vec::new();
        encode_point(m, &tags, &fields, ts, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// Cases from the InfluxDB 1.x line-protocol reference ("Special characters").
    #[test]
    fn escaping_per_reference() {
        assert_eq!(
            line(
                "wea,ther",
                &[("location", "us midwest")],
                vec![("temperature", FieldValue::Int(82))],
                1465839830100400200
            )
            .unwrap(),
            "wea\\,ther,location=us\\ midwest temperature=82i 1465839830100400200\n"
        );
        assert_eq!(
            line(
                "wea ther",
                &[("loc=ation", "us,midwest")],
                vec![("temp=rature", FieldValue::Float(82.0))],
                1
            )
            .unwrap(),
            "wea\\ ther,loc\\=ation=us\\,midwest temp\\=rature=82.0 1\n"
        );
        assert_eq!(
            line(
                "weather",
                &[],
                vec![("temperature", FieldValue::Str("too \"hot\" \\ here".into()))],
                1
            )
            .unwrap(),
            "weather temperature=\"too \\\"hot\\\" \\\\ here\" 1\n"
        );
        // Equals signs in a measurement need no escape; commas in string fields neither.
        assert_eq!(
            line(
                "we=ather",
                &[],
                vec![("s", FieldValue::Str("a,b c=d".into()))],
                1
            )
            .unwrap(),
            "we=ather s=\"a,b c=d\" 1\n"
        );
    }

    #[test]
    fn tags_sorted_and_empty_values_dropped() {
        assert_eq!(
            line(
                "m",
                &[("b", "2"), ("a", "1"), ("c", "")],
                vec![
                    ("f", FieldValue::Bool(true)),
                    ("g", FieldValue::Bool(false))
                ],
                -5
            )
            .unwrap(),
            "m,a=1,b=2 f=true,g=false -5\n"
        );
    }

    #[test]
    fn refusals_name_the_culprit() {
        let e = line("m", &[], vec![("x", FieldValue::Float(f64::NAN))], 1).unwrap_err();
        assert_eq!(e, LineError::NonFinite { field: "x".into() });
        assert!(e.to_string().contains("\"x\""));
        assert!(matches!(
            line("m", &[], vec![("y", FieldValue::Float(f64::INFINITY))], 1),
            Err(LineError::NonFinite { .. })
        ));
        assert!(matches!(
            line("m", &[("t", "a\nb")], vec![("y", FieldValue::Int(1))], 1),
            Err(LineError::Newline { .. })
        ));
        assert!(matches!(
            line("m", &[], vec![("s", FieldValue::Str("a\nb".into()))], 1),
            Err(LineError::Newline {
                what: "string field",
                ..
            })
        ));
        assert_eq!(line("m", &[], vec![], 1), Err(LineError::NoFields));
        assert!(matches!(
            line("", &[], vec![("y", FieldValue::Int(1))], 1),
            Err(LineError::Empty { .. })
        ));
    }

    fn refused(m: &str, tags: &[(&str, &str)], field: &str, ts: i64) -> String {
        match line(m, tags, vec![(field, FieldValue::Int(1))], ts) {
            Ok(l) => panic!("accepted {l:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Each case InfluxDB 1.6 answered 204 to and stored something else (or
    /// nothing), or refused; VictoriaMetrics unescapes `\\\\`.
    #[test]
    fn unstorable_text_is_refused() {
        for (m, tag, field, ts, needle) in [
            ("m", "x\\", "y", 1, "ends with a backslash"),
            ("m", "bs\\ space", "y", 1, "backslash before"),
            ("m", "a\\,b", "y", 1, "backslash before"),
            ("m", "a\\=b", "y", 1, "backslash before"),
            ("m", "a\\\\b", "y", 1, "backslash before"),
            ("m\\ x", "v", "y", 1, "backslash before"),
            ("m\\=", "v", "y", 1, "backslash before"),
            ("m\\\"", "v", "y", 1, "backslash before"),
            ("m", "v", "a\\=", 1, "backslash before"),
            ("m", "v", "\"", 1, "double quote"),
            ("#m", "v", "y", 1, "comment"),
            ("\tm", "v", "y", 1, "whitespace"),
            (" m", "v", "y", 1, "whitespace"),
            ("\0m", "v", "y", 1, "NUL"),
            ("m", "v", "time", 1, "named time"),
            ("m", "v", "\0f", 1, "NUL"),
            ("m", "v", "\tf", 1, "whitespace"),
            ("m", "v", "y", i64::MAX, "outside"),
            ("m", "v", "y", i64::MIN + 1, "outside"),
        ] {
            let e = refused(m, &[("t", tag)], field, ts);
            assert!(e.contains(needle), "{m:?} {tag:?} {field:?}: {e}");
        }
        assert!(refused("m", &[("time", "v")], "y", 1).contains("tag key \"time\""));
        let long = "k".repeat(MAX_KEY_LENGTH);
        assert!(refused("m", &[], &long, 1).contains("series key"));
        // What stays legal: a backslash before an ordinary character, `=` in a
        // measurement, `#` after the start, the extremes of the time range.
        for (m, tag, ts) in [
            ("m=#", "a\\b", MIN_NANO_TIME),
            ("m\\x", "\"q\"\0\t", MAX_NANO_TIME),
        ] {
            assert!(line(m, &[("t", tag)], vec![("f", FieldValue::Int(1))], ts).is_ok());
        }
    }

    #[test]
    fn floats_round_trip_and_stay_floats() {
        for v in [
            0.0,
            1.0,
            -2.5,
            0.1,
            1e-7,
            123456789.123,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            let mut out = Vec::new();
            write_float("f", v, &mut out).unwrap();
            let s = String::from_utf8(out).unwrap();
            assert!(s.contains('.') || s.contains('e'), "{s}");
            assert_eq!(s.parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn decimals_written_exactly() {
        assert_eq!(
            line(
                "m",
                &[],
                vec![
                    ("d", FieldValue::Decimal("-12.50".into())),
                    ("i", FieldValue::Int(-3))
                ],
                0
            )
            .unwrap(),
            "m d=-12.50,i=-3i 0\n"
        );
        assert!(line("m", &[], vec![("d", FieldValue::Decimal("NaN".into()))], 0).is_err());
        assert!(
            is_plain_decimal("0")
                && is_plain_decimal("1.5")
                && !is_plain_decimal("1.")
                && !is_plain_decimal("1E+3")
        );
    }

    #[test]
    fn push_f64_matches_ryu() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..300_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let v = match i % 4 {
                0 => f64::from_bits(seed),
                1 => (seed % 2_000_001) as f64 / 1e6 - 1.0,
                2 => (seed % 10_000_000) as f64 / 7.0,
                _ => (seed % 1000) as f64 * 10f64.powi((seed >> 40) as i32 % 60 - 30),
            };
            if !v.is_finite() {
                continue;
            }
            let mut got = Vec::new();
            push_f64(v, &mut got);
            assert_eq!(got, ryu::Buffer::new().format_finite(v).as_bytes(), "{v:e}");
        }
        for v in [
            0.0,
            -0.0,
            1e16,
            1e-7,
            1.5e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            let mut got = Vec::new();
            push_f64(v, &mut got);
            assert_eq!(got, ryu::Buffer::new().format_finite(v).as_bytes(), "{v:e}");
        }
    }

    #[test]
    fn piece_writer_concatenates() {
        let mut out = b"x".to_vec();
        let a = Pad24::new(b",a=").unwrap();
        let b = Pad24::new(b"123456789012345678901234").unwrap();
        assert!(Pad24::new(&[b'x'; 25]).is_none());
        PieceWriter::write(&mut out, 200, |w| {
            for _ in 0..100 {
                w.put(&a);
                w.put(&b);
            }
        });
        assert_eq!(out.len(), 1 + 100 * 27);
        assert!(out.ends_with(b",a=123456789012345678901234"));
        // Pieces beyond the room asked for are dropped, never half-written.
        PieceWriter::write(&mut out, 1, |w| {
            w.put(&a);
            w.put(&b);
        });
        assert!(out.ends_with(b"234,a="));
    }

    #[test]
    fn failed_encode_leaves_buffer_untouched() {
        let mut out = b"prev\n".to_vec();
        let fields = vec![
            ("a".to_string(), FieldValue::Int(1)),
            ("b".to_string(), FieldValue::Float(f64::NAN)),
        ];
        assert!(encode_point("m", &[], &fields, 1, &mut out).is_err());
        assert_eq!(out, b"prev\n");
    }
}
