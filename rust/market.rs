//! `MarketCore`: frames in, books + metrics + line protocol out.
//!
//! Pure Rust and single-threaded; the binding wraps it in a mutex. Errors for
//! one symbol never stop the other symbols of the same frame: every entry is
//! applied (or refused) on its own, and the first error is reported after all
//! of them were handled, together with the tops that did succeed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::bars::{self, Bar, BarBuilder, BarEvent};
use crate::book::{Book, Level, Side};
use crate::checksum::kraken_checksum;
use crate::fixed::{self, Fixed};
use crate::kraken::{self, shown, BookMsg, Frame, FrameError, OhlcMsg, TradeMsg};
use crate::lineproto::{self, LineError, Pad24, PieceWriter};
use crate::metrics;

/// How much of each book message becomes a `market_data_l2` point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Mode {
    /// Levels and derived metrics.
    Full,
    /// Derived metrics only (`is_snapshot`, `spread`, `mid_price`, `wap`, `imbalance_N`).
    Metrics,
    /// No `market_data_l2` points at all.
    Off,
}

impl L2Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(L2Mode::Full),
            "metrics" => Some(L2Mode::Metrics),
            "off" => Some(L2Mode::Off),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub exchange: String,
    /// Subscribed depth: books are truncated to it after every message.
    pub depth: usize,
    /// Levels per side written as fields in `Full` mode.
    pub l2_levels: usize,
    pub imbalance_levels: Vec<u32>,
    pub ohlcv_intervals: Vec<String>,
    /// symbol -> (price decimals, qty decimals); wins over `instrument` frames.
    pub precisions: HashMap<String, (u32, u32)>,
    /// 0 records every book message; otherwise at most one point per symbol per interval.
    pub l2_sample_interval_ms: u64,
    pub l2_mode: L2Mode,
    /// Encoded bytes held until a drain; past this, new lines are dropped and counted,
    /// so a stalled drain costs data, never unbounded memory.
    pub max_buffer_bytes: usize,
    /// Larger frames are refused unread (`Malformed`): parsing is linear, but
    /// a hostile or broken feed should not hold the core for seconds.
    pub max_frame_bytes: usize,
    /// Symbols with state (book, bars); a new one past this is refused
    /// (`UnknownSymbol`), so a flood of made-up pairs costs no memory.
    pub max_symbols: usize,
    /// A trade stamped further ahead of the receive time (else the clock) is
    /// refused: it would open a bar every later trade falls behind.
    pub max_trade_ahead_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exchange: "kraken".into(),
            depth: 10,
            l2_levels: 10,
            imbalance_levels: vec![5, 10],
            ohlcv_intervals: vec!["1m".into(), "5m".into()],
            precisions: HashMap::new(),
            l2_sample_interval_ms: 0,
            l2_mode: L2Mode::Full,
            max_buffer_bytes: 64 << 20,
            max_frame_bytes: 16 << 20,
            max_symbols: 1024,
            max_trade_ahead_ms: 60_000,
        }
    }
}

/// What `ingest` reports beside the tops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    Malformed {
        symbol: Option<String>,
        message: String,
    },
    OutOfSync {
        symbol: String,
        expected: Option<u32>,
        computed: Option<u32>,
        message: String,
    },
    UnknownSymbol {
        symbol: String,
        message: String,
    },
}

impl CoreError {
    pub fn message(&self) -> &str {
        match self {
            CoreError::Malformed { message, .. }
            | CoreError::OutOfSync { message, .. }
            | CoreError::UnknownSymbol { message, .. } => message,
        }
    }

    fn malformed(e: FrameError) -> Self {
        CoreError::Malformed {
            symbol: e.symbol,
            message: e.message,
        }
    }
}

/// Best levels and metrics of one symbol after one book message.
#[derive(Clone, Debug, PartialEq)]
pub struct BookTop {
    pub symbol: Arc<str>,
    pub timestamp_ns: i64,
    pub is_snapshot: bool,
    pub bid: Option<metrics::Quote>,
    pub ask: Option<metrics::Quote>,
    pub price_scale: u32,
    pub qty_scale: u32,
    pub spread: Option<f64>,
    pub mid_price: Option<f64>,
    pub wap: Option<f64>,
    pub spread_pct: Option<f64>,
    pub imbalances: metrics::Imbalances,
    /// The message carried a checksum and it matched (mismatches are errors).
    pub checksum_ok: bool,
    /// Best bid at or above best ask: recorded as received (a verified
    /// checksum says it is the exchange's book), flagged here and counted.
    pub crossed: bool,
}

/// A copy of one book, for inspection from Python.
#[derive(Clone, Debug)]
pub struct BookCopy {
    pub symbol: String,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub price_scale: u32,
    pub qty_scale: u32,
    pub in_sync: bool,
}

/// `ingest`'s result: tops of the symbols that succeeded, and the first error.
#[derive(Debug, Default)]
pub struct Outcome {
    pub tops: Vec<BookTop>,
    pub error: Option<CoreError>,
}

#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub frames: u64,
    pub ignored: u64,
    pub book_messages: u64,
    pub snapshots: u64,
    pub lines: u64,
    pub lines_dropped: u64,
    pub l2_points: u64,
    pub l2_sampled_out: u64,
    pub malformed: u64,
    pub out_of_sync: u64,
    pub unknown_symbol: u64,
    pub trades: u64,
    pub late_trades: u64,
    /// Refused: stamped more than `max_trade_ahead_ms` ahead.
    pub future_trades: u64,
    /// Updates without a checksum: applied, not verified.
    pub unverified_updates: u64,
    /// Book messages after which the best bid is at or above the best ask.
    pub crossed_books: u64,
    pub bars: u64,
    pub ohlc: u64,
    pub instruments: u64,
}

type SymbolHasher = foldhash::fast::RandomState;

/// Reused conversion buffers (price, qty mantissas).
type Scratch = Vec<(u64, u64)>;

/// symbol -> (price decimals, qty decimals).
type Precisions = HashMap<String, (u32, u32)>;

struct SymbolState {
    /// Shared with every `BookTop`, so a top costs no string allocation.
    name: Arc<str>,
    book: Option<Book>,
    in_sync: bool,
    last_ts: i64,
    last_recorded: Option<i64>,
    bars: Vec<BarBuilder>,
    /// `market_data_l2,exchange=..,trading_pair=..` (escaped once).
    l2_prefix: Vec<u8>,
    /// Escaped pair, for `market_data_ohlcv` lines.
    pair_tag: Vec<u8>,
}

/// Field keys precomputed per level so the hot path only copies bytes.
struct LevelKeys {
    bid_price: Pad24,
    bid_volume: Pad24,
    ask_price: Pad24,
    ask_volume: Pad24,
}

pub struct MarketCore {
    cfg: Config,
    interval_ns: Vec<(String, i64)>,
    sample_ns: i64,
    exchange_tag: Vec<u8>,
    level_keys: Vec<LevelKeys>,
    imbalance_keys: Vec<(u32, Vec<u8>)>,
    instrument_precisions: HashMap<String, (u32, u32)>,
    /// foldhash: seeded per process, and much cheaper than SipHash for short keys.
    symbols: HashMap<String, SymbolState, SymbolHasher>,
    buf: Vec<u8>,
    counters: Counters,
    latency: Option<Histogram<u64>>,
    scratch_bids: Vec<(u64, u64)>,
    scratch_asks: Vec<(u64, u64)>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

fn line_err(e: LineError) -> String {
    e.to_string()
}

impl MarketCore {
    /// Validate the configuration (errors name the bad setting).
    pub fn new(cfg: Config) -> Result<Self, String> {
        if cfg.depth == 0 {
            return Err("depth must be at least 1".into());
        }
        let mut exchange_tag = Vec::new();
        lineproto::write_key(&cfg.exchange, "exchange", &mut exchange_tag).map_err(line_err)?;
        let mut interval_ns = Vec::new();
        for name in &cfg.ohlcv_intervals {
            let ns = bars::parse_interval(name)
                .ok_or_else(|| format!("ohlcv interval {name:?} is not like \"30s\", \"1m\", \"5m\", \"1h\", \"1d\" or \"1w\""))?;
            interval_ns.push((name.clone(), ns));
        }
        if cfg.imbalance_levels.len() > metrics::MAX_IMBALANCE_LEVELS {
            return Err(format!(
                "at most {} imbalance levels",
                metrics::MAX_IMBALANCE_LEVELS
            ));
        }
        for n in &cfg.imbalance_levels {
            if *n == 0 {
                return Err("imbalance levels must be at least 1".into());
            }
        }
        for (sym, (p, q)) in &cfg.precisions {
            if *p > fixed::MAX_SCALE || *q > fixed::MAX_SCALE {
                return Err(format!(
                    "precisions[{sym:?}]: at most {} decimals",
                    fixed::MAX_SCALE
                ));
            }
        }
        let sample_ms = i64::try_from(cfg.l2_sample_interval_ms)
            .map_err(|_| "l2_sample_interval_ms too large".to_string())?;
        let sample_ns = sample_ms
            .checked_mul(1_000_000)
            .ok_or("l2_sample_interval_ms too large")?;
        let level_keys = (0..cfg.l2_levels.min(1000))
            .map(|i| LevelKeys {
                // At most 22 bytes for i < 1000.
                bid_price: Pad24::new(format!(",bid_price_level_{i}=").as_bytes())
                    .unwrap_or_default(),
                bid_volume: Pad24::new(format!(",bid_volume_level_{i}=").as_bytes())
                    .unwrap_or_default(),
                ask_price: Pad24::new(format!(",ask_price_level_{i}=").as_bytes())
                    .unwrap_or_default(),
                ask_volume: Pad24::new(format!(",ask_volume_level_{i}=").as_bytes())
                    .unwrap_or_default(),
            })
            .collect();
        let mut cfg = cfg;
        let mut seen = Vec::new();
        cfg.imbalance_levels.retain(|n| {
            if seen.contains(n) {
                false
            } else {
                seen.push(*n);
                true
            }
        });
        let imbalance_keys = cfg
            .imbalance_levels
            .iter()
            .map(|n| (*n, format!(",imbalance_{n}=").into_bytes()))
            .collect();
        Ok(MarketCore {
            interval_ns,
            sample_ns,
            exchange_tag,
            level_keys,
            imbalance_keys,
            instrument_precisions: HashMap::new(),
            symbols: HashMap::default(),
            buf: Vec::with_capacity(1 << 16),
            counters: Counters::default(),
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 2).ok(),
            scratch_bids: Vec::new(),
            scratch_asks: Vec::new(),
            cfg,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Handle one raw frame. `received_at_ns` stamps points whose frame has no
    /// exchange timestamp (else the wall clock is used).
    pub fn ingest(&mut self, frame: &[u8], received_at_ns: Option<i64>) -> Outcome {
        let started = Instant::now();
        self.counters.frames += 1;
        let mut out = Outcome::default();
        let parsed = if frame.len() > self.cfg.max_frame_bytes {
            Err(FrameError::new(format!(
                "frame of {} bytes is above max_frame_bytes ({})",
                frame.len(),
                self.cfg.max_frame_bytes
            )))
        } else {
            kraken::parse_frame(frame)
        };
        match parsed {
            Err(e) => {
                self.counters.malformed += 1;
                out.error = Some(CoreError::malformed(e));
            }
            Ok(Frame::Ignored) => self.counters.ignored += 1,
            Ok(Frame::Book(entries)) => {
                // The clock is read only if some entry carries no timestamp.
                let mut fallback = received_at_ns;
                out.tops.reserve_exact(entries.len());
                for entry in entries {
                    let result = match entry {
                        Ok(msg) => self.on_book(msg, &mut fallback),
                        Err(e) => Err(CoreError::malformed(e)),
                    };
                    match result {
                        Ok(top) => out.tops.push(top),
                        Err(e) => self.note_error(&mut out, e),
                    }
                }
            }
            Ok(Frame::Trades(entries)) => {
                let mut now = received_at_ns;
                for entry in entries {
                    if let Err(e) = entry
                        .map_err(CoreError::malformed)
                        .and_then(|t| self.on_trade(t, &mut now))
                    {
                        self.note_error(&mut out, e);
                    }
                }
            }
            Ok(Frame::Ohlc(entries)) => {
                for entry in entries {
                    if let Err(e) = entry
                        .map_err(CoreError::malformed)
                        .and_then(|o| self.on_ohlc(o))
                    {
                        self.note_error(&mut out, e);
                    }
                }
            }
            Ok(Frame::Instrument(pairs)) => {
                for pair in pairs {
                    match pair {
                        Ok(p) => {
                            self.counters.instruments += 1;
                            self.instrument_precisions
                                .insert(p.symbol.into_owned(), (p.price_decimals, p.qty_decimals));
                        }
                        Err(e) => self.note_error(&mut out, CoreError::malformed(e)),
                    }
                }
            }
        }
        if let Some(h) = self.latency.as_mut() {
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            h.saturating_record(ns.max(1));
        }
        out
    }

    fn note_error(&mut self, out: &mut Outcome, e: CoreError) {
        match &e {
            CoreError::Malformed { .. } => self.counters.malformed += 1,
            CoreError::OutOfSync { .. } => self.counters.out_of_sync += 1,
            CoreError::UnknownSymbol { .. } => self.counters.unknown_symbol += 1,
        }
        if out.error.is_none() {
            out.error = Some(e);
        }
    }

    fn on_book(
        &mut self,
        msg: BookMsg<'_>,
        fallback_ts: &mut Option<i64>,
    ) -> Result<BookTop, CoreError> {
        self.counters.book_messages += 1;
        let symbol: &str = &msg.symbol;
        let malformed = |m: String| CoreError::Malformed {
            symbol: Some(symbol.to_owned()),
            message: m,
        };
        let depth = msg.depth.unwrap_or(self.cfg.depth).max(1);
        // Updates never create state: a flood of unknown symbols stays free.
        let st = if msg.snapshot {
            ensure_state(
                &mut self.symbols,
                self.cfg.max_symbols,
                &self.exchange_tag,
                &self.interval_ns,
                symbol,
            )?
        } else {
            match self.symbols.get_mut(symbol) {
                Some(st) => st,
                None => return Err(unknown_symbol(symbol)),
            }
        };
        let checksum_ok = Self::apply_book(
            st,
            &mut self.counters.snapshots,
            &msg,
            (&self.cfg.precisions, &self.instrument_precisions),
            depth,
            (&mut self.scratch_bids, &mut self.scratch_asks),
            &malformed,
        )?;
        if !msg.snapshot && msg.checksum.is_none() {
            // Kraken always sends one; applied anyway, since refusing it would
            // lose the change, and the next checksum verifies the whole book.
            self.counters.unverified_updates += 1;
        }

        // Timestamp: exchange's, else received, else now; strictly increasing per
        // symbol because InfluxDB merges points with equal series and time.
        let mut ts = msg
            .timestamp_ns
            .unwrap_or_else(|| *fallback_ts.get_or_insert_with(now_ns));
        if ts <= st.last_ts {
            ts = st.last_ts.saturating_add(1);
        }
        st.last_ts = ts;
        let Some(book) = st.book.as_ref() else {
            return Err(malformed("book missing after apply".into()));
        };
        let m = metrics::compute(book, &self.cfg.imbalance_levels);
        let crossed = matches!((m.bid, m.ask), (Some(b), Some(a)) if b.price >= a.price);
        self.counters.crossed_books += u64::from(crossed);
        let record = match (self.cfg.l2_mode, st.last_recorded) {
            (L2Mode::Off, _) => false,
            (_, None) => true,
            (_, Some(last)) => self.sample_ns == 0 || ts.saturating_sub(last) >= self.sample_ns,
        };
        if record && self.buf.len() >= self.cfg.max_buffer_bytes {
            st.last_recorded = Some(ts);
            self.counters.lines_dropped += 1;
        } else if record {
            st.last_recorded = Some(ts);
            let full = self.cfg.l2_mode == L2Mode::Full;
            write_l2(
                &mut self.buf,
                st,
                book,
                &m,
                msg.snapshot,
                ts,
                full.then_some(&self.level_keys[..]),
                &self.imbalance_keys,
            );
            self.counters.lines += 1;
            self.counters.l2_points += 1;
        } else if self.cfg.l2_mode != L2Mode::Off {
            self.counters.l2_sampled_out += 1;
        }
        Ok(BookTop {
            symbol: Arc::clone(&st.name),
            timestamp_ns: ts,
            is_snapshot: msg.snapshot,
            bid: m.bid,
            ask: m.ask,
            price_scale: book.price_scale,
            qty_scale: book.qty_scale,
            spread: m.spread,
            mid_price: m.mid_price,
            wap: m.wap,
            spread_pct: m.spread_pct,
            imbalances: m.imbalances,
            checksum_ok,
            crossed,
        })
    }

    /// Apply a snapshot or update to the symbol's book; `Ok(checksum_ok)`.
    fn apply_book(
        st: &mut SymbolState,
        snapshots: &mut u64,
        msg: &BookMsg<'_>,
        precisions: (&Precisions, &Precisions),
        depth: usize,
        (bids, asks): (&mut Scratch, &mut Scratch),
        malformed: &dyn Fn(String) -> CoreError,
    ) -> Result<bool, CoreError> {
        let symbol: &str = &msg.symbol;
        let levels = || msg.bids.iter().chain(msg.asks.iter());
        let max_sig = |pick: fn(&(Fixed, Fixed)) -> Fixed| {
            levels()
                .map(|l| fixed::significant_scale(pick(l)))
                .max()
                .unwrap_or(0)
        };
        // Scale: the known precision (configured, else from `instrument`),
        // widened if the data needs more; else as written (trailing zeros
        // count: Kraken's checksum uses them).
        let scales = || {
            let raw_max = |pick: fn(&(Fixed, Fixed)) -> Fixed| {
                levels().map(|l| pick(l).scale).max().unwrap_or(0)
            };
            let (configured, announced) = precisions;
            match configured.get(symbol).or_else(|| announced.get(symbol)) {
                Some(&(p, q)) => (p.max(max_sig(|l| l.0)), q.max(max_sig(|l| l.1))),
                None => (raw_max(|l| l.0), raw_max(|l| l.1)),
            }
        };
        if msg.snapshot {
            let (ps, qs) = scales();
            convert(&msg.bids, ps, qs, bids).map_err(malformed)?;
            convert(&msg.asks, ps, qs, asks).map_err(malformed)?;
            let mut book = st.book.take().unwrap_or_else(|| Book::new(depth, ps, qs));
            book.clear();
            book.depth = depth;
            book.price_scale = ps;
            book.qty_scale = qs;
            // An empty snapshot of an unknown pair shows no decimals: the
            // first levels that arrive set them.
            book.scales_known = levels().next().is_some()
                || precisions.0.contains_key(symbol)
                || precisions.1.contains_key(symbol);
            apply_all(&mut book, bids, asks);
            let computed = kraken_checksum(&book.asks, &book.bids);
            st.book = Some(book);
            st.in_sync = true;
            *snapshots += 1;
            return match msg.checksum {
                Some(expected) if expected != computed => {
                    st.in_sync = false;
                    Err(out_of_sync(symbol, expected, computed))
                }
                Some(_) => Ok(true),
                None => Ok(false),
            };
        }
        let in_sync = st.in_sync;
        let Some(book) = st.book.as_mut() else {
            return Err(unknown_symbol(symbol));
        };
        if !in_sync {
            return Err(CoreError::OutOfSync {
                symbol: symbol.to_owned(),
                expected: msg.checksum,
                computed: None,
                message: format!("book for {:?} is out of sync since a checksum mismatch; waiting for a new snapshot", shown(symbol)),
            });
        }
        // Widen the book's scale if the update carries more (non-zero) decimals.
        let (ps, qs) = if book.scales_known {
            (
                book.price_scale.max(max_sig(|l| l.0)),
                book.qty_scale.max(max_sig(|l| l.1)),
            )
        } else {
            book.scales_known = levels().next().is_some();
            scales()
        };
        convert(&msg.bids, ps, qs, bids).map_err(malformed)?;
        convert(&msg.asks, ps, qs, asks).map_err(malformed)?;
        if ps > book.price_scale || qs > book.qty_scale {
            // Rare: widen a copy so a failure leaves the book as it was.
            let mut widened = book.clone();
            if !(widened.raise_price_scale(ps) && widened.raise_qty_scale(qs)) {
                return Err(malformed(format!(
                    "book for {:?}: values out of range at {ps}/{qs} decimals",
                    shown(symbol)
                )));
            }
            *book = widened;
        }
        book.depth = depth.max(1);
        apply_all(book, bids, asks);
        let computed = kraken_checksum(&book.asks, &book.bids);
        match msg.checksum {
            Some(expected) if expected != computed => {
                st.in_sync = false;
                Err(out_of_sync(symbol, expected, computed))
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    fn on_trade(&mut self, t: TradeMsg<'_>, now: &mut Option<i64>) -> Result<(), CoreError> {
        self.counters.trades += 1;
        let now = *now.get_or_insert_with(now_ns);
        let ahead_ns = i64::try_from(self.cfg.max_trade_ahead_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        if t.timestamp_ns.saturating_sub(now) > ahead_ns {
            self.counters.future_trades += 1;
            return Err(CoreError::Malformed {
                symbol: Some(t.symbol.into_owned()),
                message: format!(
                    "trade stamped {} ms after its receipt (at most max_trade_ahead_ms = {}): not counted in any bar",
                    t.timestamp_ns.saturating_sub(now) / 1_000_000,
                    self.cfg.max_trade_ahead_ms
                ),
            });
        }
        let st = ensure_state(
            &mut self.symbols,
            self.cfg.max_symbols,
            &self.exchange_tag,
            &self.interval_ns,
            &t.symbol,
        )?;
        let mut closed: Vec<(usize, Bar)> = Vec::new();
        let mut late = 0u64;
        let mut overflow = false;
        for (i, b) in st.bars.iter_mut().enumerate() {
            match b.add(t.price, t.qty, t.timestamp_ns) {
                BarEvent::Updated => {}
                BarEvent::Closed(bar) => closed.push((i, bar)),
                BarEvent::Late => late += 1,
                BarEvent::Overflow => overflow = true,
            }
        }
        self.counters.late_trades += late.min(1);
        for (i, bar) in closed {
            self.write_bar(&t.symbol, i, &bar);
        }
        if overflow {
            return Err(CoreError::Malformed {
                symbol: Some(t.symbol.into_owned()),
                message: "trade values out of range for an OHLCV bar".into(),
            });
        }
        Ok(())
    }

    /// Start a `market_data_ohlcv` line, or count it dropped when the buffer is full.
    fn ohlcv_line(&mut self, interval: &[u8], pair_tag: &[u8]) -> Option<&mut Vec<u8>> {
        if self.buf.len() >= self.cfg.max_buffer_bytes {
            self.counters.lines_dropped += 1;
            return None;
        }
        self.counters.lines += 1;
        let out = &mut self.buf;
        out.extend_from_slice(b"market_data_ohlcv,exchange=");
        out.extend_from_slice(&self.exchange_tag);
        out.extend_from_slice(b",interval=");
        out.extend_from_slice(interval);
        out.extend_from_slice(b",trading_pair=");
        out.extend_from_slice(pair_tag);
        Some(out)
    }

    fn write_bar(&mut self, symbol: &str, interval_idx: usize, bar: &Bar) {
        let (Some(st), Some((name, _))) =
            (self.symbols.get(symbol), self.interval_ns.get(interval_idx))
        else {
            return;
        };
        let (interval, pair_tag) = (name.clone().into_bytes(), st.pair_tag.clone());
        self.counters.bars += 1;
        let Some(out) = self.ohlcv_line(&interval, &pair_tag) else {
            return;
        };
        for (key, v) in [
            (&b" open="[..], bar.open),
            (b",high=", bar.high),
            (b",low=", bar.low),
            (b",close=", bar.close),
            (b",volume=", bar.volume),
        ] {
            out.extend_from_slice(key);
            v.write(out);
        }
        lineproto::write_timestamp(bar.start_ns, out);
    }

    fn on_ohlc(&mut self, o: OhlcMsg<'_>) -> Result<(), CoreError> {
        self.counters.ohlc += 1;
        let st = ensure_state(
            &mut self.symbols,
            self.cfg.max_symbols,
            &self.exchange_tag,
            &self.interval_ns,
            &o.symbol,
        )?;
        let pair_tag = st.pair_tag.clone();
        let interval = bars::minutes_tag(o.interval_minutes);
        let Some(out) = self.ohlcv_line(interval.as_bytes(), &pair_tag) else {
            return Ok(());
        };
        for (key, v) in [
            (&b" open="[..], o.open),
            (b",high=", o.high),
            (b",low=", o.low),
            (b",close=", o.close),
            (b",volume=", o.volume),
        ] {
            out.extend_from_slice(key);
            fixed::write(v.mant, v.scale, out);
        }
        lineproto::write_timestamp(o.interval_begin_ns, out);
        Ok(())
    }

    /// Emit every open OHLCV bar now (shutdown); returns how many.
    pub fn flush_bars(&mut self) -> usize {
        let mut pending: Vec<(String, usize, Bar)> = Vec::new();
        for (sym, st) in self.symbols.iter_mut() {
            for (i, b) in st.bars.iter_mut().enumerate() {
                if let Some(bar) = b.take() {
                    pending.push((sym.clone(), i, bar));
                }
            }
        }
        pending.sort_by(|a, b| (&a.0, a.1, a.2.start_ns).cmp(&(&b.0, b.1, b.2.start_ns)));
        let n = pending.len();
        for (sym, i, bar) in pending {
            self.write_bar(&sym, i, &bar);
        }
        n
    }

    /// Take the encoded lines (the buffer keeps its capacity).
    pub fn drain_into(&mut self, f: impl FnOnce(&[u8])) {
        f(&self.buf);
        self.buf.clear();
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    pub fn book(&self, symbol: &str) -> Option<BookCopy> {
        let st = self.symbols.get(symbol)?;
        let book = st.book.as_ref()?;
        Some(BookCopy {
            symbol: symbol.to_owned(),
            bids: book.bids.clone(),
            asks: book.asks.clone(),
            price_scale: book.price_scale,
            qty_scale: book.qty_scale,
            in_sync: st.in_sync,
        })
    }

    /// Time `iterations` checksums of a symbol's current book; total ns.
    pub fn time_checksum(&self, symbol: &str, iterations: u64) -> Option<(u64, u32)> {
        let book = self.symbols.get(symbol)?.book.as_ref()?;
        let start = Instant::now();
        let mut acc = 0u32;
        for _ in 0..iterations {
            acc ^= kraken_checksum(
                std::hint::black_box(&book.asks),
                std::hint::black_box(&book.bids),
            );
        }
        Some((
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
            acc,
        ))
    }

    pub fn symbols(&self) -> Vec<String> {
        let mut v: Vec<String> = self.symbols.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// (p50, p99, max) of ingest latency in ns over the whole run (constant-size histogram).
    pub fn latency_ns(&self) -> (u64, u64, u64) {
        match &self.latency {
            Some(h) if !h.is_empty() => {
                (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
            }
            _ => (0, 0, 0),
        }
    }
}

/// The symbol's state, created on first sight (symbol validated as a tag value).
fn ensure_state<'m>(
    symbols: &'m mut HashMap<String, SymbolState, SymbolHasher>,
    max_symbols: usize,
    exchange_tag: &[u8],
    interval_ns: &[(String, i64)],
    symbol: &str,
) -> Result<&'m mut SymbolState, CoreError> {
    if !symbols.contains_key(symbol) {
        if symbols.len() >= max_symbols {
            return Err(CoreError::UnknownSymbol {
                symbol: symbol.to_owned(),
                message: format!(
                    "{:?} would be symbol number {} (max_symbols); not recorded",
                    shown(symbol),
                    max_symbols + 1
                ),
            });
        }
        let mut pair_tag = Vec::new();
        lineproto::write_key(symbol, "symbol", &mut pair_tag).map_err(|e| {
            CoreError::Malformed {
                symbol: Some(symbol.to_owned()),
                message: e.to_string(),
            }
        })?;
        let mut l2_prefix = b"market_data_l2,exchange=".to_vec();
        l2_prefix.extend_from_slice(exchange_tag);
        l2_prefix.extend_from_slice(b",trading_pair=");
        l2_prefix.extend_from_slice(&pair_tag);
        let st = SymbolState {
            name: Arc::from(symbol),
            book: None,
            in_sync: false,
            last_ts: i64::MIN,
            last_recorded: None,
            bars: interval_ns
                .iter()
                .map(|(_, ns)| BarBuilder::new(*ns))
                .collect(),
            l2_prefix,
            pair_tag,
        };
        symbols.insert(symbol.to_owned(), st);
    }
    symbols.get_mut(symbol).ok_or_else(|| CoreError::Malformed {
        symbol: Some(symbol.to_owned()),
        message: "symbol state missing".into(),
    })
}

fn unknown_symbol(symbol: &str) -> CoreError {
    CoreError::UnknownSymbol {
        symbol: symbol.to_owned(),
        message: format!("book update for {:?} before any snapshot", shown(symbol)),
    }
}

fn out_of_sync(symbol: &str, expected: u32, computed: u32) -> CoreError {
    CoreError::OutOfSync {
        symbol: symbol.to_owned(),
        expected: Some(expected),
        computed: Some(computed),
        message: format!(
            "checksum mismatch for {:?}: expected {expected}, computed {computed}; resubscribe for a new snapshot",
            shown(symbol)
        ),
    }
}

/// Numbers to mantissas at the book's scales, all or nothing.
fn convert(
    levels: &[(Fixed, Fixed)],
    ps: u32,
    qs: u32,
    out: &mut Vec<(u64, u64)>,
) -> Result<(), String> {
    out.clear();
    for (p, q) in levels {
        let price = fixed::rescale(p.mant, p.scale, ps);
        let qty = fixed::rescale(q.mant, q.scale, qs);
        match (price, qty) {
            (Some(price), Some(qty)) => out.push((price, qty)),
            _ => return Err(format!("price or qty out of range at {ps}/{qs} decimals")),
        }
    }
    Ok(())
}

fn apply_all(book: &mut Book, bids: &mut Scratch, asks: &mut Scratch) {
    book.apply_side(Side::Bid, bids);
    book.apply_side(Side::Ask, asks);
    book.truncate();
}

#[allow(clippy::too_many_arguments)]
fn write_l2(
    out: &mut Vec<u8>,
    st: &SymbolState,
    book: &Book,
    m: &metrics::Metrics,
    snapshot: bool,
    ts: i64,
    level_keys: Option<&[LevelKeys]>,
    imbalance_keys: &[(u32, Vec<u8>)],
) {
    out.extend_from_slice(&st.l2_prefix);
    let fields_at = out.len();
    if let Some(keys) = level_keys {
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
        if let Some((_, key)) = imbalance_keys.iter().find(|(k, _)| k == n) {
            float(out, key, Some(*v));
        }
    }
    lineproto::write_timestamp(ts, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOC: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000},{"price":45283.4,"qty":1.54582015},{"price":45282.1,"qty":0.10000000},{"price":45281.0,"qty":0.10000000},{"price":45280.3,"qty":1.54592586},{"price":45279.0,"qty":0.07990000},{"price":45277.6,"qty":0.03310103},{"price":45277.5,"qty":0.30000000},{"price":45277.3,"qty":1.54602737},{"price":45276.6,"qty":0.15445238}],"asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.4,"qty":1.54571953},{"price":45286.6,"qty":1.54571109},{"price":45289.6,"qty":1.54560911},{"price":45290.2,"qty":0.15890660},{"price":45291.8,"qty":1.54553491},{"price":45294.7,"qty":0.04454749},{"price":45296.1,"qty":0.35380000},{"price":45297.5,"qty":0.09945542},{"price":45299.5,"qty":0.18772827}],"checksum":3310070434}]}"#;

    fn drain(core: &mut MarketCore) -> String {
        let mut s = String::new();
        core.drain_into(|b| s = String::from_utf8_lossy(b).into_owned());
        s
    }

    fn checksum_of(core: &MarketCore, sym: &str) -> u32 {
        let b = core.book(sym).unwrap();
        kraken_checksum(&b.asks, &b.bids)
    }

    #[test]
    fn documented_example_through_the_core() {
        let mut core = MarketCore::new(Config::default()).unwrap();
        let out = core.ingest(DOC.as_bytes(), Some(7));
        assert!(out.error.is_none(), "{:?}", out.error);
        let top = &out.tops[0];
        assert!(top.checksum_ok && top.is_snapshot);
        assert_eq!(top.bid.map(|l| l.price), Some(452_835));
        assert_eq!(top.timestamp_ns, 7);
        let line = drain(&mut core);
        assert!(line.starts_with("market_data_l2,exchange=kraken,trading_pair=BTC/USD bid_price_level_0=45283.5,bid_volume_level_0=0.10000000,ask_price_level_0=45285.2,ask_volume_level_0=0.00100000,"), "{line}");
        assert!(line.contains(",is_snapshot=true,spread=1.7"), "{line}");
        assert!(line.ends_with(" 7\n"));
    }

    #[test]
    fn mismatch_marks_out_of_sync_until_snapshot() {
        let mut core = MarketCore::new(Config::default()).unwrap();
        core.ingest(DOC.as_bytes(), Some(1));
        drain(&mut core);
        let upd = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0}],"asks":[],"checksum":1,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
        let out = core.ingest(upd.as_bytes(), None);
        let Some(CoreError::OutOfSync {
            expected, computed, ..
        }) = out.error
        else {
            panic!("{:?}", out.error)
        };
        assert_eq!(expected, Some(1));
        assert_eq!(computed, Some(checksum_of(&core, "BTC/USD")));
        let out = core.ingest(upd.as_bytes(), None);
        assert!(matches!(
            out.error,
            Some(CoreError::OutOfSync { computed: None, .. })
        ));
        assert_eq!(drain(&mut core), "");
        let out = core.ingest(DOC.as_bytes(), None);
        assert!(out.error.is_none());
        assert!(core.book("BTC/USD").unwrap().in_sync);
    }

    #[test]
    fn unknown_symbol_and_partial_frames() {
        let mut core = MarketCore::new(Config::default()).unwrap();
        let upd = r#"{"channel":"book","type":"update","data":[{"symbol":"NEW/USD","bids":[],"asks":[]}]}"#;
        assert!(matches!(
            core.ingest(upd.as_bytes(), None).error,
            Some(CoreError::UnknownSymbol { .. })
        ));
        assert!(core.symbols().is_empty());
        core.ingest(DOC.as_bytes(), Some(1));
        let mixed = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"bad","qty":1}]},{"symbol":"ETH/USD","bids":[]}]}"#;
        let out = core.ingest(mixed.as_bytes(), Some(2));
        assert!(matches!(out.error, Some(CoreError::Malformed { .. })));
        assert!(out.tops.is_empty());
        assert_eq!(checksum_of(&core, "BTC/USD"), 3_310_070_434);
        assert_eq!(core.counters().unknown_symbol, 2);
    }

    /// Kraken's documented v1 checksum example (974947235) as frames: a
    /// snapshot one bid short, then the update (a republish) that completes it.
    #[test]
    fn v1_snapshot_and_update() {
        let mut core = MarketCore::new(Config::default()).unwrap();
        let level = |p: u64| format!(r#"["0.0{p}","0.00000500","1582905487.684110"]"#);
        let asks: Vec<String> = (0..10).map(|i| level(5005 + 5 * i)).collect();
        let bids: Vec<String> = [5000, 4995, 4990, 4980, 4975, 4970, 4965, 4960, 4955]
            .into_iter()
            .map(level)
            .collect();
        let snap = format!(
            r#"[0,{{"as":[{}],"bs":[{}]}},"book-10","BTC/USD"]"#,
            asks.join(","),
            bids.join(",")
        );
        let out = core.ingest(snap.as_bytes(), None);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.tops[0].timestamp_ns, 1_582_905_487_684_110_000);
        let upd = r#"[0,{"b":[["0.04950","0.00000500","1582905489.000001","r"]],"c":"974947235"},"book-10","BTC/USD"]"#;
        let out = core.ingest(upd.as_bytes(), None);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert!(out.tops[0].checksum_ok);
        assert_eq!(checksum_of(&core, "BTC/USD"), 974_947_235);
    }

    #[test]
    fn trades_make_bars_and_flush() {
        let mut core = MarketCore::new(Config {
            ohlcv_intervals: vec!["1m".into()],
            ..Config::default()
        })
        .unwrap();
        let t = |p: &str, q: &str, ts: &str| {
            format!(
                r#"{{"channel":"trade","type":"update","data":[{{"symbol":"XRP/USD","side":"buy","price":{p},"qty":{q},"ord_type":"limit","trade_id":1,"timestamp":"{ts}"}}]}}"#
            )
        };
        core.ingest(t("0.5", "10", "2024-01-01T00:00:10Z").as_bytes(), None);
        core.ingest(t("0.52", "5.5", "2024-01-01T00:00:50Z").as_bytes(), None);
        assert_eq!(drain(&mut core), "");
        core.ingest(t("0.51", "1", "2024-01-01T00:01:00Z").as_bytes(), None);
        assert_eq!(
            drain(&mut core),
            "market_data_ohlcv,exchange=kraken,interval=1m,trading_pair=XRP/USD open=0.5,high=0.52,low=0.5,close=0.52,volume=15.5 1704067200000000000\n"
        );
        assert_eq!(core.flush_bars(), 1);
        assert!(drain(&mut core).contains("volume=1 1704067260000000000"));
    }

    #[test]
    fn a_full_buffer_drops_and_counts_new_lines_until_drained() {
        let mut core = MarketCore::new(Config {
            ohlcv_intervals: vec!["1m".into()],
            max_buffer_bytes: 1,
            ..Config::default()
        })
        .unwrap();
        core.ingest(DOC.as_bytes(), Some(1)); // the first line fits: the buffer was empty
        let ohlc = r#"{"channel":"ohlc","type":"update","data":[{"symbol":"BTC/USD","open":1,"high":2,"low":1,"close":2,"trades":3,"volume":4,"vwap":1.5,"interval_begin":"2024-01-01T00:00:00Z","interval":1,"timestamp":"2024-01-01T00:01:00Z"}]}"#;
        let out = core.ingest(ohlc.as_bytes(), None);
        assert!(out.error.is_none(), "{:?}", out.error);
        let out = core.ingest(DOC.as_bytes(), Some(2));
        assert!(out.error.is_none() && out.tops.len() == 1); // the book still moves on
        assert_eq!(
            (core.counters().lines, core.counters().lines_dropped),
            (1, 2)
        );
        assert_eq!(drain(&mut core).lines().count(), 1);
        core.ingest(DOC.as_bytes(), Some(3));
        assert_eq!(drain(&mut core).lines().count(), 1);
        assert_eq!(core.counters().lines_dropped, 2);
    }

    proptest! {
        /// Whatever bytes arrive, the core answers (never panics) and the
        /// documented book is untouched by anything but a valid BTC/USD message.
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut core = MarketCore::new(Config::default()).unwrap();
            core.ingest(DOC.as_bytes(), Some(1));
            let _ = core.ingest(&data, None);
            let _ = core.flush_bars();
        }

        #[test]
        fn mutated_frames_never_panic(pos in 0usize..1200, byte in any::<u8>(), cut in 0usize..1200) {
            let mut core = MarketCore::new(Config::default()).unwrap();
            let mut f = DOC.as_bytes().to_vec();
            if let Some(b) = f.get_mut(pos) { *b = byte; }
            f.truncate(cut.max(1));
            let _ = core.ingest(&f, None);
            let mut g = DOC.as_bytes().to_vec();
            if let Some(b) = g.get_mut(pos) { *b = byte; }
            let out = core.ingest(&g, None);
            if out.error.is_none() {
                for b in core.symbols() {
                    if let Some(book) = core.book(&b) {
                        prop_assert!(book.bids.windows(2).all(|w| w[0].price > w[1].price));
                        prop_assert!(book.asks.windows(2).all(|w| w[0].price < w[1].price));
                    }
                }
            }
        }
    }
}
