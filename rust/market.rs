//! `MarketCore`: frames in, books + metrics + line protocol out. This file
//! holds dispatch, sampling, counters and latency; the per-symbol work is in
//! `symbols`, the lines in `points`, the errors in `error`.
//!
//! Pure Rust and single-threaded; the binding wraps it in a mutex. Errors for
//! one symbol never stop the other symbols of the same frame: every entry is
//! applied (or refused) on its own, and the first error is reported after all
//! of them were handled, together with the tops that did succeed.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::bars::{self, Bar, BarEvent, Dec};
use crate::book::Level;
#[cfg(any(test, feature = "bench"))]
use crate::checksum::kraken_checksum;
use crate::error::{CoreError, Malformed, Unknown};
use crate::fixed;
use crate::kraken::{self, BookMsg, Frame, OhlcMsg, TradeMsg};
use crate::metrics;
use crate::points::{Ohlcv, PointWriter};
use crate::symbols::{Precisions, Scratch, Symbols};

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
    pub precisions: Precisions,
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
            precisions: Precisions::new(),
            l2_sample_interval_ms: 0,
            l2_mode: L2Mode::Full,
            max_buffer_bytes: 64 << 20,
            max_frame_bytes: 16 << 20,
            max_symbols: 1024,
            max_trade_ahead_ms: 60_000,
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

pub struct MarketCore {
    cfg: Config,
    interval_names: Vec<String>,
    sample_ns: i64,
    instrument_precisions: Precisions,
    symbols: Symbols,
    points: PointWriter,
    counters: Counters,
    /// Ingest time of every `LATENCY_SAMPLE`-th frame (two clock reads cost
    /// a few percent of a small frame; a sample of them gives the same quantiles).
    latency: Option<Histogram<u64>>,
    scratch: Scratch,
}

const LATENCY_SAMPLE: u64 = 8;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

impl MarketCore {
    /// Validate the configuration (errors name the bad setting).
    pub fn new(cfg: Config) -> Result<Self, String> {
        if cfg.depth == 0 {
            return Err("depth must be at least 1".into());
        }
        let mut interval_ns = Vec::new();
        for name in &cfg.ohlcv_intervals {
            let ns = bars::parse_interval(name)
                .ok_or_else(|| format!("ohlcv interval {name:?} is not like \"30s\", \"1m\", \"5m\", \"1h\", \"1d\" or \"1w\""))?;
            interval_ns.push(ns);
        }
        if cfg.imbalance_levels.len() > metrics::MAX_IMBALANCE_LEVELS {
            return Err(format!(
                "at most {} imbalance levels",
                metrics::MAX_IMBALANCE_LEVELS
            ));
        }
        if cfg.imbalance_levels.contains(&0) {
            return Err("imbalance levels must be at least 1".into());
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
        let points = PointWriter::new(
            &cfg.exchange,
            cfg.l2_levels,
            &cfg.imbalance_levels,
            cfg.max_buffer_bytes,
        )?;
        Ok(MarketCore {
            interval_names: cfg.ohlcv_intervals.clone(),
            sample_ns,
            instrument_precisions: Precisions::new(),
            symbols: Symbols::new(cfg.max_symbols, points.exchange_tag(), interval_ns),
            points,
            counters: Counters::default(),
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 2).ok(),
            scratch: Scratch::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Handle one raw frame. `received_at_ns` stamps points whose frame has no
    /// exchange timestamp (else the wall clock is used).
    pub fn ingest(&mut self, frame: &[u8], received_at_ns: Option<i64>) -> Outcome {
        let started = (self.counters.frames % LATENCY_SAMPLE == 0).then(Instant::now);
        self.counters.frames += 1;
        let mut out = Outcome::default();
        let parsed = if frame.len() > self.cfg.max_frame_bytes {
            Err(CoreError::malformed(
                None,
                Malformed::FrameTooBig {
                    len: frame.len(),
                    max: self.cfg.max_frame_bytes,
                },
            ))
        } else {
            kraken::parse_frame(frame).map_err(CoreError::frame)
        };
        match parsed {
            Err(e) => self.note_error(&mut out, e),
            Ok(Frame::Ignored) => self.counters.ignored += 1,
            Ok(Frame::Book(entries)) => {
                // The clock is read only if some entry carries no timestamp.
                let mut fallback = received_at_ns;
                out.tops.reserve_exact(entries.len());
                for entry in entries {
                    let result = match entry {
                        Ok(msg) => self.on_book(msg, &mut fallback),
                        Err(e) => Err(CoreError::frame(e)),
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
                        .map_err(CoreError::frame)
                        .and_then(|t| self.on_trade(t, &mut now))
                    {
                        self.note_error(&mut out, e);
                    }
                }
            }
            Ok(Frame::Ohlc(entries)) => {
                for entry in entries {
                    if let Err(e) = entry
                        .map_err(CoreError::frame)
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
                        Err(e) => self.note_error(&mut out, CoreError::frame(e)),
                    }
                }
            }
        }
        if let (Some(h), Some(started)) = (self.latency.as_mut(), started) {
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
        let depth = msg.depth.unwrap_or(self.cfg.depth).max(1);
        // Updates never create state: a flood of unknown symbols stays free.
        let st = if msg.snapshot {
            self.symbols.ensure(symbol)?
        } else {
            self.symbols
                .get_mut(symbol)
                .ok_or_else(|| CoreError::unknown(symbol, Unknown::NoSnapshot))?
        };
        let applied = st.apply_book(
            &msg,
            (&self.cfg.precisions, &self.instrument_precisions),
            depth,
            &mut self.scratch,
        );
        if msg.snapshot && !matches!(applied, Err(CoreError::Malformed { .. })) {
            self.counters.snapshots += 1;
        }
        let checksum_ok = applied?;
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
            return Err(CoreError::malformed(
                Some(symbol),
                Malformed::Internal("book missing after apply"),
            ));
        };
        let m = metrics::compute(book, &self.cfg.imbalance_levels);
        let crossed = matches!((m.bid, m.ask), (Some(b), Some(a)) if b.price >= a.price);
        self.counters.crossed_books += u64::from(crossed);
        let record = match (self.cfg.l2_mode, st.last_recorded) {
            (L2Mode::Off, _) => false,
            (_, None) => true,
            (_, Some(last)) => self.sample_ns == 0 || ts.saturating_sub(last) >= self.sample_ns,
        };
        if record {
            st.last_recorded = Some(ts);
            let full = self.cfg.l2_mode == L2Mode::Full;
            if self
                .points
                .l2(&st.l2_prefix, book, &m, msg.snapshot, ts, full)
            {
                self.counters.l2_points += 1;
            }
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

    fn on_trade(&mut self, t: TradeMsg<'_>, now: &mut Option<i64>) -> Result<(), CoreError> {
        self.counters.trades += 1;
        let now = *now.get_or_insert_with(now_ns);
        let ahead_ns = i64::try_from(self.cfg.max_trade_ahead_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let ahead = t.timestamp_ns.saturating_sub(now);
        if ahead > ahead_ns {
            self.counters.future_trades += 1;
            return Err(CoreError::malformed(
                Some(&t.symbol),
                Malformed::FutureTrade {
                    ahead_ms: ahead / 1_000_000,
                    max_ms: self.cfg.max_trade_ahead_ms,
                },
            ));
        }
        let st = self.symbols.ensure(&t.symbol)?;
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
            return Err(CoreError::malformed(
                Some(&t.symbol),
                Malformed::BarOverflow,
            ));
        }
        Ok(())
    }

    fn on_ohlc(&mut self, o: OhlcMsg<'_>) -> Result<(), CoreError> {
        self.counters.ohlc += 1;
        let st = self.symbols.ensure(&o.symbol)?;
        let d = Dec::from_fixed;
        self.points.ohlcv(
            bars::minutes_tag(o.interval_minutes).as_bytes(),
            &st.pair_tag,
            &Ohlcv {
                open: d(o.open),
                high: d(o.high),
                low: d(o.low),
                close: d(o.close),
                volume: d(o.volume),
            },
            o.interval_begin_ns,
        );
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

    /// One built bar as a `market_data_ohlcv` line.
    fn write_bar(&mut self, symbol: &str, interval_idx: usize, bar: &Bar) {
        let (Some(st), Some(name)) = (
            self.symbols.get(symbol),
            self.interval_names.get(interval_idx),
        ) else {
            return;
        };
        self.counters.bars += 1;
        self.points.ohlcv(
            name.as_bytes(),
            &st.pair_tag,
            &Ohlcv {
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: bar.close,
                volume: bar.volume,
            },
            bar.start_ns,
        );
    }

    /// Take the encoded lines (the buffer keeps its capacity).
    pub fn drain_into(&mut self, f: impl FnOnce(&[u8])) {
        self.points.drain_into(f);
    }

    pub fn buffered(&self) -> &[u8] {
        self.points.buffered()
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

    /// Benchmark helper: time `iterations` checksums of a symbol's current
    /// book; total ns.
    #[cfg(feature = "bench")]
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
        self.symbols.names()
    }

    /// Every counter, the line writer's included.
    pub fn counters(&self) -> Counters {
        Counters {
            lines: self.points.lines,
            lines_dropped: self.points.lines_dropped,
            ..self.counters.clone()
        }
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
