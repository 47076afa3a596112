//! Kraken WebSocket frames (v2 objects, v1 arrays) to validated messages.
//!
//! serde_json with borrowed `RawValue`s: numbers are kept as their text and
//! parsed straight to fixed point (never through f64), strings are borrowed
//! from the frame. Every per-symbol entry is parsed and validated completely
//! before anything touches a book, so a bad entry cannot half-apply, and the
//! other entries of the frame are still usable.

use std::borrow::Cow;

/// A symbol as error messages quote it: hostile frames can carry megabytes of symbol,
/// and an exception's text should stay readable (the full symbol stays in `.symbol`).
pub(crate) fn shown(symbol: &str) -> std::borrow::Cow<'_, str> {
    const MAX_CHARS: usize = 64;
    match symbol.char_indices().nth(MAX_CHARS) {
        None => symbol.into(),
        Some((cut, _)) => format!("{}...", symbol.get(..cut).unwrap_or_default()).into(),
    }
}

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fixed::{self, Fixed};

/// A frame or entry that could not be understood: what, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub symbol: Option<String>,
    pub message: String,
}

impl FrameError {
    fn new(message: String) -> Self {
        FrameError {
            symbol: None,
            message,
        }
    }
}

/// One symbol's book message, numbers already parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct BookMsg<'a> {
    pub symbol: Cow<'a, str>,
    pub snapshot: bool,
    pub bids: Vec<(Fixed, Fixed)>,
    pub asks: Vec<(Fixed, Fixed)>,
    pub checksum: Option<u32>,
    pub timestamp_ns: Option<i64>,
    /// Subscribed depth when the frame says it (v1 `book-N`).
    pub depth: Option<usize>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TradeMsg<'a> {
    pub symbol: Cow<'a, str>,
    pub price: Fixed,
    pub qty: Fixed,
    pub timestamp_ns: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct OhlcMsg<'a> {
    pub symbol: Cow<'a, str>,
    pub open: Fixed,
    pub high: Fixed,
    pub low: Fixed,
    pub close: Fixed,
    pub volume: Fixed,
    pub interval_begin_ns: i64,
    pub interval_minutes: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PairPrecision<'a> {
    pub symbol: Cow<'a, str>,
    pub price_decimals: u32,
    pub qty_decimals: u32,
}

/// Everything a frame can be.
#[derive(Debug)]
pub enum Frame<'a> {
    /// Heartbeat, status, acks, unknown channels.
    Ignored,
    Book(Vec<Result<BookMsg<'a>, FrameError>>),
    Trades(Vec<Result<TradeMsg<'a>, FrameError>>),
    Ohlc(Vec<Result<OhlcMsg<'a>, FrameError>>),
    Instrument(Vec<Result<PairPrecision<'a>, FrameError>>),
}

/// Locates errors as byte offsets in the original frame.
struct Ctx<'f> {
    frame: &'f [u8],
}

impl Ctx<'_> {
    fn offset_of(&self, part: &str) -> usize {
        (part.as_ptr() as usize).saturating_sub(self.frame.as_ptr() as usize)
    }

    fn json(&self, what: &str, part: Option<&str>, e: &serde_json::Error) -> FrameError {
        let text = e.to_string();
        let msg = text.split(" at line ").next().unwrap_or(&text);
        let base = part.map_or(0, |p| self.offset_of(p));
        if e.line() == 1 {
            FrameError::new(format!(
                "{what}: {msg} at byte {}",
                base + e.column().saturating_sub(1)
            ))
        } else {
            FrameError::new(format!(
                "{what}: {msg} at line {} column {} of the part at byte {base}",
                e.line(),
                e.column()
            ))
        }
    }

    /// Parse a number; the context string is only built on failure.
    fn number(&self, what: impl FnOnce() -> String, raw: &RawValue) -> Result<Fixed, FrameError> {
        fixed::parse(raw.get().as_bytes()).map_err(|e| {
            let shown: String = raw.get().chars().take(40).collect();
            FrameError::new(format!(
                "{}: {} ({shown}) at byte {}",
                what(),
                e.describe(),
                self.offset_of(raw.get())
            ))
        })
    }
}

#[derive(Deserialize)]
struct V2Envelope<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct V2Level<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

#[derive(Deserialize)]
struct V2Book<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow, default)]
    bids: Vec<V2Level<'a>>,
    #[serde(borrow, default)]
    asks: Vec<V2Level<'a>>,
    #[serde(default)]
    checksum: Option<u32>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct V2Trade<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

#[derive(Deserialize)]
struct V2Ohlc<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow)]
    open: &'a RawValue,
    #[serde(borrow)]
    high: &'a RawValue,
    #[serde(borrow)]
    low: &'a RawValue,
    #[serde(borrow)]
    close: &'a RawValue,
    #[serde(borrow)]
    volume: &'a RawValue,
    #[serde(borrow)]
    interval_begin: Cow<'a, str>,
    interval: u32,
}

#[derive(Deserialize)]
struct V2Instrument<'a> {
    #[serde(borrow, default)]
    pairs: Vec<V2Pair<'a>>,
}

#[derive(Deserialize)]
struct V2Pair<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(default)]
    price_precision: Option<u32>,
    #[serde(default)]
    qty_precision: Option<u32>,
}

#[derive(Deserialize)]
struct V1BookPart<'a> {
    #[serde(borrow, default, rename = "as")]
    snap_asks: Option<Vec<Vec<&'a RawValue>>>,
    #[serde(borrow, default, rename = "bs")]
    snap_bids: Option<Vec<Vec<&'a RawValue>>>,
    #[serde(borrow, default, rename = "a")]
    asks: Option<Vec<Vec<&'a RawValue>>>,
    #[serde(borrow, default, rename = "b")]
    bids: Option<Vec<Vec<&'a RawValue>>>,
    #[serde(borrow, default, rename = "c")]
    checksum: Option<Cow<'a, str>>,
}

/// Parse one frame exactly as received.
pub fn parse_frame(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    let ctx = Ctx { frame };
    let first = frame.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => parse_v2(&ctx, frame),
        Some(b'[') => parse_v1(&ctx, frame),
        Some(_) => Err(FrameError::new(
            "frame is neither a JSON object (v2) nor an array (v1)".into(),
        )),
        None => Err(FrameError::new("empty frame".into())),
    }
}

fn entries<'a>(
    ctx: &Ctx<'_>,
    channel: &str,
    data: Option<&'a RawValue>,
) -> Result<Vec<&'a RawValue>, FrameError> {
    let data = data.ok_or_else(|| FrameError::new(format!("{channel} frame has no \"data\"")))?;
    serde_json::from_str::<Vec<&RawValue>>(data.get())
        .map_err(|e| ctx.json(&format!("{channel} \"data\""), Some(data.get()), &e))
}

/// Single-pass envelope for the hot case: Kraken writes `channel` and `type`
/// before `data`, so book data can be deserialized typed, numbers and
/// timestamps included, in the same pass. Anything unexpected (bad number,
/// escaped symbol, odd order) makes it fail, and the general path takes over
/// to report the detailed error.
struct FastBook<'a> {
    books: Vec<Result<BookMsg<'a>, FrameError>>,
}

struct FastBookVisitor;

impl<'de> serde::de::Visitor<'de> for FastBookVisitor {
    type Value = FastBook<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Kraken v2 book frame")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut is_book = false;
        let mut snapshot = None;
        let mut books = None;
        let mut seen = [false; 3];
        while let Some(key) = map.next_key::<&'de str>()? {
            // A repeated key is refused (by the general path, which says so):
            // which of two `data` to take is not ours to guess.
            if let Some(i) = ["channel", "type", "data"].iter().position(|k| *k == key) {
                if std::mem::replace(&mut seen[i], true) {
                    return Err(A::Error::custom("duplicate key"));
                }
            }
            match key {
                "channel" => is_book = map.next_value::<&'de str>()? == "book",
                "type" => {
                    snapshot = match map.next_value::<&'de str>()? {
                        "snapshot" => Some(true),
                        "update" => Some(false),
                        _ => return Err(A::Error::custom("type")),
                    }
                }
                "data" if is_book => match snapshot {
                    Some(snapshot) => books = Some(map.next_value_seed(FastEntries { snapshot })?),
                    None => return Err(A::Error::custom("order")),
                },
                "data" => return Err(A::Error::custom("order")),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        // `data` is only taken while the channel is `book` and the type known.
        match (snapshot, books) {
            (Some(snapshot), Some(mut books)) => {
                for b in books.iter_mut().flatten() {
                    b.snapshot = snapshot;
                }
                Ok(FastBook { books })
            }
            _ => Err(A::Error::custom("not a book frame")),
        }
    }
}

impl<'de> Deserialize<'de> for FastBook<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FastBookVisitor)
    }
}

/// The `data` array of a book frame, straight to messages.
struct FastEntries {
    snapshot: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for FastEntries {
    type Value = Vec<Result<BookMsg<'de>, FrameError>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FastEntries {
    type Value = Vec<Result<BookMsg<'de>, FrameError>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("book entries")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(1);
        while let Some(b) = seq.next_element::<FastV2Book<'de>>()? {
            out.push(Ok(BookMsg {
                symbol: Cow::Borrowed(b.symbol),
                snapshot: self.snapshot,
                bids: b.bids.0,
                asks: b.asks.0,
                checksum: b.checksum,
                timestamp_ns: b.timestamp.map(|t| t.0),
                depth: None,
            }));
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct FastV2Book<'a> {
    symbol: &'a str,
    #[serde(default)]
    bids: FastLevels,
    #[serde(default)]
    asks: FastLevels,
    #[serde(default)]
    checksum: Option<u32>,
    #[serde(default)]
    timestamp: Option<FastTimestamp>,
}

/// RFC 3339 text parsed while deserializing (fails the fast path if invalid).
struct FastTimestamp(i64);

impl<'de> Deserialize<'de> for FastTimestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let t = <&'de str>::deserialize(d)?;
        parse_rfc3339(t)
            .map(FastTimestamp)
            .ok_or_else(|| D::Error::custom("timestamp"))
    }
}

/// Levels parsed to fixed point while deserializing.
#[derive(Default)]
struct FastLevels(Vec<(Fixed, Fixed)>);

impl<'de> Deserialize<'de> for FastLevels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(FastLevelsVisitor)
    }
}

struct FastLevelsVisitor;

impl<'de> serde::de::Visitor<'de> for FastLevelsVisitor {
    type Value = FastLevels;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("book levels")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        // No allocation for the empty side of an update.
        let mut out = Vec::new();
        while let Some(l) = seq.next_element::<V2Level<'de>>()? {
            match (
                fixed::parse(l.price.get().as_bytes()),
                fixed::parse(l.qty.get().as_bytes()),
            ) {
                (Ok(p), Ok(q)) => out.push((p, q)),
                _ => return Err(A::Error::custom("number")),
            }
        }
        Ok(FastLevels(out))
    }
}

fn parse_v2<'a>(ctx: &Ctx<'_>, frame: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    match crate::scan::book_frame(frame) {
        Some(books) => Ok(Frame::Book(books)),
        None => parse_v2_serde(ctx, frame),
    }
}

/// A v2 frame through serde alone (the scanner's reference in its tests).
#[cfg(test)]
pub(crate) fn parse_frame_with_serde(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    parse_v2_serde(&Ctx { frame }, frame)
}

fn parse_v2_serde<'a>(ctx: &Ctx<'_>, frame: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    // Validate UTF-8 once, so the parser need not re-check every string.
    if let Ok(text) = std::str::from_utf8(frame) {
        if let Ok(fast) = serde_json::from_str::<FastBook<'a>>(text) {
            return Ok(Frame::Book(fast.books));
        }
    }
    let env: V2Envelope<'a> =
        serde_json::from_slice(frame).map_err(|e| ctx.json("invalid JSON", None, &e))?;
    let Some(channel) = env.channel.as_deref() else {
        return Ok(Frame::Ignored); // method acks, v1 events
    };
    match channel {
        "book" => {
            let snapshot = match env.kind.as_deref() {
                Some("snapshot") => true,
                Some("update") => false,
                other => {
                    return Err(FrameError::new(format!(
                        "book frame \"type\" must be snapshot or update, got {other:?}"
                    )))
                }
            };
            // Fast path: one typed pass. Only if it fails are the entries
            // parsed one by one, to keep the good ones and locate the bad one.
            if let Some(data) = env.data {
                if let Ok(books) = serde_json::from_str::<Vec<V2Book<'a>>>(data.get()) {
                    return Ok(Frame::Book(
                        books
                            .into_iter()
                            .enumerate()
                            .map(|(i, b)| v2_book_msg(ctx, i, b, snapshot))
                            .collect(),
                    ));
                }
            }
            let list = entries(ctx, "book", env.data)?;
            Ok(Frame::Book(
                list.into_iter()
                    .enumerate()
                    .map(|(i, raw)| v2_book(ctx, i, raw, snapshot))
                    .collect(),
            ))
        }
        "trade" => {
            let list = entries(ctx, "trade", env.data)?;
            Ok(Frame::Trades(
                list.into_iter()
                    .enumerate()
                    .map(|(i, raw)| v2_trade(ctx, i, raw))
                    .collect(),
            ))
        }
        "ohlc" => {
            let list = entries(ctx, "ohlc", env.data)?;
            Ok(Frame::Ohlc(
                list.into_iter()
                    .enumerate()
                    .map(|(i, raw)| v2_ohlc(ctx, i, raw))
                    .collect(),
            ))
        }
        "instrument" => {
            let data = env
                .data
                .ok_or_else(|| FrameError::new("instrument frame has no \"data\"".into()))?;
            let inst: V2Instrument<'a> = serde_json::from_str(data.get())
                .map_err(|e| ctx.json("instrument \"data\"", Some(data.get()), &e))?;
            Ok(Frame::Instrument(
                inst.pairs
                    .into_iter()
                    .filter_map(|p| match (p.price_precision, p.qty_precision) {
                        (Some(pp), Some(qp))
                            if pp <= fixed::MAX_SCALE && qp <= fixed::MAX_SCALE =>
                        {
                            Some(Ok(PairPrecision {
                                symbol: p.symbol,
                                price_decimals: pp,
                                qty_decimals: qp,
                            }))
                        }
                        (Some(_), Some(_)) => Some(Err(FrameError {
                            symbol: Some(p.symbol.to_string()),
                            message: format!(
                                "instrument {}: precision above {}",
                                p.symbol,
                                fixed::MAX_SCALE
                            ),
                        })),
                        _ => None,
                    })
                    .collect(),
            ))
        }
        _ => Ok(Frame::Ignored),
    }
}

fn with_symbol(symbol: &str, mut e: FrameError) -> FrameError {
    e.symbol = Some(symbol.to_owned());
    e
}

fn levels_v2(
    ctx: &Ctx<'_>,
    what: &dyn Fn() -> String,
    levels: &[V2Level<'_>],
) -> Result<Vec<(Fixed, Fixed)>, FrameError> {
    let mut out = Vec::with_capacity(levels.len());
    for (j, l) in levels.iter().enumerate() {
        let p = ctx.number(|| format!("{}[{j}].price", what()), l.price)?;
        let q = ctx.number(|| format!("{}[{j}].qty", what()), l.qty)?;
        out.push((p, q));
    }
    Ok(out)
}

fn v2_book<'a>(
    ctx: &Ctx<'_>,
    i: usize,
    raw: &'a RawValue,
    snapshot: bool,
) -> Result<BookMsg<'a>, FrameError> {
    let b: V2Book<'a> = serde_json::from_str(raw.get())
        .map_err(|e| ctx.json(&format!("book data[{i}]"), Some(raw.get()), &e))?;
    v2_book_msg(ctx, i, b, snapshot)
}

fn v2_book_msg<'a>(
    ctx: &Ctx<'_>,
    i: usize,
    b: V2Book<'a>,
    snapshot: bool,
) -> Result<BookMsg<'a>, FrameError> {
    let sym = b.symbol;
    let bids = levels_v2(
        ctx,
        &|| format!("book data[{i}] ({}) bids", shown(&sym)),
        &b.bids,
    )
    .map_err(|e| with_symbol(&sym, e))?;
    let asks = levels_v2(
        ctx,
        &|| format!("book data[{i}] ({}) asks", shown(&sym)),
        &b.asks,
    )
    .map_err(|e| with_symbol(&sym, e))?;
    let timestamp_ns = match b.timestamp.as_deref() {
        Some(t) => Some(parse_rfc3339(t).ok_or_else(|| {
            with_symbol(
                &sym,
                FrameError::new(format!(
                    "book data[{i}] ({sym}) timestamp {t:?} is not RFC 3339"
                )),
            )
        })?),
        None => None,
    };
    Ok(BookMsg {
        symbol: sym,
        snapshot,
        bids,
        asks,
        checksum: b.checksum,
        timestamp_ns,
        depth: None,
    })
}

fn v2_trade<'a>(ctx: &Ctx<'_>, i: usize, raw: &'a RawValue) -> Result<TradeMsg<'a>, FrameError> {
    let t: V2Trade<'a> = serde_json::from_str(raw.get())
        .map_err(|e| ctx.json(&format!("trade data[{i}]"), Some(raw.get()), &e))?;
    let sym = t.symbol;
    let what = format!("trade data[{i}] ({})", shown(&sym));
    let price = ctx
        .number(|| format!("{what}.price"), t.price)
        .map_err(|e| with_symbol(&sym, e))?;
    let qty = ctx
        .number(|| format!("{what}.qty"), t.qty)
        .map_err(|e| with_symbol(&sym, e))?;
    let timestamp_ns = parse_rfc3339(&t.timestamp).ok_or_else(|| {
        with_symbol(
            &sym,
            FrameError::new(format!(
                "{what}.timestamp {:?} is not RFC 3339",
                t.timestamp
            )),
        )
    })?;
    Ok(TradeMsg {
        symbol: sym,
        price,
        qty,
        timestamp_ns,
    })
}

fn v2_ohlc<'a>(ctx: &Ctx<'_>, i: usize, raw: &'a RawValue) -> Result<OhlcMsg<'a>, FrameError> {
    let o: V2Ohlc<'a> = serde_json::from_str(raw.get())
        .map_err(|e| ctx.json(&format!("ohlc data[{i}]"), Some(raw.get()), &e))?;
    let sym = o.symbol;
    let what = format!("ohlc data[{i}] ({})", shown(&sym));
    let num = |name: &str, r: &RawValue| {
        ctx.number(|| format!("{what}.{name}"), r)
            .map_err(|e| with_symbol(&sym, e))
    };
    let msg = OhlcMsg {
        open: num("open", o.open)?,
        high: num("high", o.high)?,
        low: num("low", o.low)?,
        close: num("close", o.close)?,
        volume: num("volume", o.volume)?,
        interval_begin_ns: parse_rfc3339(&o.interval_begin).ok_or_else(|| {
            with_symbol(
                &sym,
                FrameError::new(format!(
                    "{what}.interval_begin {:?} is not RFC 3339",
                    o.interval_begin
                )),
            )
        })?,
        interval_minutes: o.interval,
        symbol: Cow::Borrowed(""),
    };
    Ok(OhlcMsg { symbol: sym, ..msg })
}

fn parse_v1<'a>(ctx: &Ctx<'_>, frame: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let parts: Vec<&'a RawValue> =
        serde_json::from_slice(frame).map_err(|e| ctx.json("invalid JSON", None, &e))?;
    let n = parts.len();
    let name_of = |raw: Option<&&'a RawValue>| {
        raw.and_then(|r| serde_json::from_str::<Cow<'a, str>>(r.get()).ok())
    };
    let (Some(channel), Some(pair)) = (
        name_of(parts.get(n.wrapping_sub(2))),
        name_of(parts.get(n.wrapping_sub(1))),
    ) else {
        // Private v1 feeds put a sequence object last; only book arrays matter here.
        return match parts.get(n.wrapping_sub(2)).map(|r| r.get()) {
            Some(s) if s.starts_with('"') => Ok(Frame::Ignored),
            _ => Err(FrameError::new(
                "v1 frame must end with a channel name and a pair".into(),
            )),
        };
    };
    if channel == "trade" {
        return v1_trades(ctx, parts.get(1).copied(), pair).map(Frame::Trades);
    }
    if let Some(minutes) = channel.strip_prefix("ohlc-") {
        return Ok(Frame::Ohlc(vec![v1_ohlc(
            ctx,
            parts.get(1).copied(),
            &pair,
            minutes,
        )
        .map_err(|e| with_symbol(&pair, e))]));
    }
    let Some(depth_text) = channel.strip_prefix("book") else {
        return Ok(Frame::Ignored);
    };
    if n < 4 {
        return Err(FrameError::new(format!(
            "v1 book frame for {pair} has no book data"
        )));
    }
    // Kraken's v1 depths; any other would let a frame set the book's size.
    let depth = match depth_text.strip_prefix('-').map(str::parse::<usize>) {
        Some(Ok(d @ (10 | 25 | 100 | 500 | 1000))) => Some(d),
        None => None,
        Some(_) => {
            return Ok(Frame::Book(vec![Err(with_symbol(
                &pair,
                FrameError::new(format!(
                    "v1 channel {:?} is not a Kraken book depth (10, 25, 100, 500, 1000)",
                    shown(&channel)
                )),
            ))]))
        }
    };
    let result = v1_book(ctx, parts.get(1..n - 2).unwrap_or(&[]), pair.clone(), depth)
        .map_err(|e| with_symbol(&pair, e));
    Ok(Frame::Book(vec![result]))
}

fn v1_book<'a>(
    ctx: &Ctx<'_>,
    parts: &[&'a RawValue],
    pair: Cow<'a, str>,
    depth: Option<usize>,
) -> Result<BookMsg<'a>, FrameError> {
    let mut msg = BookMsg {
        symbol: pair,
        snapshot: false,
        bids: Vec::new(),
        asks: Vec::new(),
        checksum: None,
        timestamp_ns: None,
        depth,
    };
    let mut saw_snapshot = false;
    let mut saw_update = false;
    for (k, raw) in parts.iter().enumerate() {
        let what = format!("v1 book ({}) part {}", shown(&msg.symbol), k + 1);
        let part: V1BookPart<'a> =
            serde_json::from_str(raw.get()).map_err(|e| ctx.json(&what, Some(raw.get()), &e))?;
        for (levels, key, is_snap, is_bid) in [
            (part.snap_asks, "as", true, false),
            (part.snap_bids, "bs", true, true),
            (part.asks, "a", false, false),
            (part.bids, "b", false, true),
        ] {
            let Some(levels) = levels else { continue };
            if is_snap {
                saw_snapshot = true;
            } else {
                saw_update = true;
            }
            for (j, level) in levels.iter().enumerate() {
                // Built only for an error: no formatting per level.
                let at = || format!("{what} \"{key}\"[{j}]");
                let (Some(p), Some(q)) = (level.first(), level.get(1)) else {
                    return Err(FrameError::new(format!(
                        "{}: a level needs a price and a volume",
                        at()
                    )));
                };
                let p = ctx.number(|| format!("{} price", at()), p)?;
                let q = ctx.number(|| format!("{} volume", at()), q)?;
                if let Some(ts) = level.get(2) {
                    let t = ctx.number(|| format!("{} timestamp", at()), ts)?;
                    let ns = seconds_to_ns(t).ok_or_else(|| {
                        FrameError::new(format!("{}: timestamp out of range", at()))
                    })?;
                    msg.timestamp_ns = Some(msg.timestamp_ns.map_or(ns, |prev: i64| prev.max(ns)));
                }
                if is_bid {
                    msg.bids.push((p, q));
                } else {
                    msg.asks.push((p, q));
                }
            }
        }
        if let Some(c) = part.checksum {
            let v = c.parse::<u32>().map_err(|_| {
                FrameError::new(format!(
                    "{what}: checksum {c:?} is not a 32-bit unsigned integer"
                ))
            })?;
            msg.checksum = Some(v);
        }
    }
    if saw_snapshot && saw_update {
        return Err(FrameError::new(format!(
            "v1 book ({}) mixes snapshot and update keys",
            msg.symbol
        )));
    }
    if !saw_snapshot && !saw_update {
        return Err(FrameError::new(format!(
            "v1 book ({}) has no levels",
            msg.symbol
        )));
    }
    msg.snapshot = saw_snapshot;
    Ok(msg)
}

/// v1 `trade`: `[id, [[price, volume, time, side, type, misc], ...], "trade", pair]`.
fn v1_trades<'a>(
    ctx: &Ctx<'_>,
    list: Option<&'a RawValue>,
    pair: Cow<'a, str>,
) -> Result<Vec<Result<TradeMsg<'a>, FrameError>>, FrameError> {
    let what = || format!("v1 trade ({})", shown(&pair));
    let list = list
        .ok_or_else(|| with_symbol(&pair, FrameError::new(format!("{} has no trades", what()))))?;
    let trades: Vec<Vec<&'a RawValue>> = serde_json::from_str(list.get())
        .map_err(|e| with_symbol(&pair, ctx.json(&what(), Some(list.get()), &e)))?;
    Ok(trades
        .iter()
        .enumerate()
        .map(|(j, t)| {
            let at = || format!("{}[{j}]", what());
            let (Some(p), Some(q), Some(ts)) = (t.first(), t.get(1), t.get(2)) else {
                return Err(FrameError::new(format!(
                    "{}: a trade needs a price, a volume and a time",
                    at()
                )));
            };
            Ok(TradeMsg {
                symbol: pair.clone(),
                price: ctx.number(|| format!("{} price", at()), p)?,
                qty: ctx.number(|| format!("{} volume", at()), q)?,
                timestamp_ns: v1_time(ctx, &at, ts)?,
            })
        })
        .map(|r| r.map_err(|e| with_symbol(&pair, e)))
        .collect())
}

/// v1 `ohlc-N`: `[id, [time, etime, open, high, low, close, vwap, volume, count], "ohlc-N", pair]`.
/// `etime` is the end of the running interval; the bar starts one interval
/// before the interval boundary at or after it.
fn v1_ohlc<'a>(
    ctx: &Ctx<'_>,
    candle: Option<&'a RawValue>,
    pair: &Cow<'a, str>,
    minutes: &str,
) -> Result<OhlcMsg<'a>, FrameError> {
    let what = || format!("v1 ohlc-{minutes} ({})", shown(pair));
    let interval_minutes = minutes
        .parse::<u32>()
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| {
            FrameError::new(format!("{}: interval is not a number of minutes", what()))
        })?;
    let candle = candle.ok_or_else(|| FrameError::new(format!("{} has no candle", what())))?;
    let c: Vec<&'a RawValue> = serde_json::from_str(candle.get())
        .map_err(|e| ctx.json(&what(), Some(candle.get()), &e))?;
    let field = |i: usize, name: &str| {
        let raw = c
            .get(i)
            .ok_or_else(|| FrameError::new(format!("{}: no {name}", what())))?;
        ctx.number(|| format!("{} {name}", what()), raw)
    };
    let end = c
        .get(1)
        .ok_or_else(|| FrameError::new(format!("{}: no etime", what())))?;
    let end_ns = v1_time(ctx, &what, end)?;
    let step = i64::from(interval_minutes) * 60_000_000_000;
    let boundary = end_ns.checked_add(step - 1).map(|e| e - e.rem_euclid(step));
    let interval_begin_ns = boundary
        .and_then(|b| b.checked_sub(step))
        .ok_or_else(|| FrameError::new(format!("{}: etime out of range", what())))?;
    Ok(OhlcMsg {
        symbol: pair.clone(),
        open: field(2, "open")?,
        high: field(3, "high")?,
        low: field(4, "low")?,
        close: field(5, "close")?,
        volume: field(7, "volume")?,
        interval_begin_ns,
        interval_minutes,
    })
}

/// A v1 time: seconds since the epoch as decimal text.
fn v1_time(ctx: &Ctx<'_>, at: &dyn Fn() -> String, raw: &RawValue) -> Result<i64, FrameError> {
    let t = ctx.number(|| format!("{} time", at()), raw)?;
    seconds_to_ns(t).ok_or_else(|| FrameError::new(format!("{}: time out of range", at())))
}

/// `"1534614248.123678"` seconds to ns.
fn seconds_to_ns(t: Fixed) -> Option<i64> {
    let ns = if t.scale <= 9 {
        u128::from(t.mant).checked_mul(u128::from(fixed::pow10(9 - t.scale)?))?
    } else {
        u128::from(t.mant) / u128::from(fixed::pow10(t.scale - 9)?)
    };
    i64::try_from(ns).ok()
}

/// RFC 3339 UTC text (`2023-10-06T17:35:55.440295Z`, offsets allowed) to Unix ns.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        let mut v = 0i64;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(c - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Howard Hinnant's days-from-civil (proleptic Gregorian), day 0 = 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2023-10-06T17:35:55.440295Z"),
            Some(1_696_613_755_440_295_000)
        );
        assert_eq!(
            parse_rfc3339("2023-10-04T16:25:00.000000000Z"),
            Some(1_696_436_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-10-06T19:35:55+02:00"),
            Some(1_696_613_755_000_000_000)
        );
        for bad in [
            "",
            "2023-10-06",
            "2023-13-06T00:00:00Z",
            "2023-10-06T17:35:55.Z",
            "2023-10-06T17:35:55",
            "2023-10-06T17:35:55Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn v2_book_keeps_number_text() {
        let f = br#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":"45285.2","qty":0.00100000}],"checksum":3310070434}]}"#;
        let Ok(Frame::Book(v)) = parse_frame(f) else {
            panic!()
        };
        let m = v[0].as_ref().unwrap();
        assert!(m.snapshot);
        assert_eq!(
            m.bids,
            vec![(
                Fixed {
                    mant: 452835,
                    scale: 1
                },
                Fixed {
                    mant: 10_000_000,
                    scale: 8
                }
            )]
        );
        assert_eq!(
            m.asks[0].1,
            Fixed {
                mant: 100_000,
                scale: 8
            }
        );
        assert_eq!(m.checksum, Some(3_310_070_434));
    }

    #[test]
    fn errors_say_where() {
        let f = br#"{"channel":"book","type":"update","data":[{"symbol":"A","bids":[{"price":1.5,"qty":"x"}]},{"symbol":"B"}]}"#;
        let Ok(Frame::Book(v)) = parse_frame(f) else {
            panic!()
        };
        let e = v[0].as_ref().unwrap_err();
        assert_eq!(e.symbol.as_deref(), Some("A"));
        assert!(
            e.message.contains("bids[0].qty") && e.message.contains("at byte 83"),
            "{}",
            e.message
        );
        assert!(v[1].is_ok());
        let e = parse_frame(br#"{"channel":"book","type":"update","data":[{"symbol":"A","bids":[{"price":1.5,"qty":1}]"#).unwrap_err();
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
        assert!(parse_frame(b"").is_err());
        assert!(parse_frame(b"42").is_err());
    }

    #[test]
    fn ignored_frames() {
        for f in [
            &br#"{"channel":"heartbeat"}"#[..],
            br#"{"channel":"status","type":"update","data":[{"system":"online"}]}"#,
            br#"{"method":"subscribe","result":{"channel":"book"},"success":true}"#,
            br#"{"event":"heartbeat"}"#,
            br#"{"channel":"ticker","type":"update","data":[]}"#,
            br#"[42,["5541.2","0.1"],"spread","XBT/USD"]"#,
        ] {
            assert!(
                matches!(parse_frame(f), Ok(Frame::Ignored)),
                "{}",
                String::from_utf8_lossy(f)
            );
        }
    }

    #[test]
    fn v1_update_with_both_sides() {
        let f = br#"[0,{"a":[["0.05120","0.00000500","1582905486.493008"]]},{"b":[["0.04765","0.00000500","1582905486.493034","r"]],"c":"974947235"},"book-1000","BTC/USD"]"#;
        let Ok(Frame::Book(v)) = parse_frame(f) else {
            panic!()
        };
        let m = v[0].as_ref().unwrap();
        assert!(!m.snapshot);
        assert_eq!(m.depth, Some(1000));
        assert_eq!(m.asks.len(), 1);
        assert_eq!(m.bids.len(), 1);
        assert_eq!(m.checksum, Some(974_947_235));
        assert_eq!(m.timestamp_ns, Some(1_582_905_486_493_034_000));
    }
}
