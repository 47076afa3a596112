//! The PyO3 layer: argument conversion and error mapping only.
//!
//! `MarketRecorder` is a frozen pyclass holding its `MarketCore` behind a
//! `std::sync::Mutex`, so any number of Python threads may call it. The lock is
//! held only for the Rust work of one call (no I/O, no Python code runs under
//! it); Python objects such as `Decimal`s are built after it is released. A
//! small frame keeps the GIL (about a microsecond of work, less than a
//! detach/reattach round trip); a frame above `DETACH_ABOVE_BYTES`, or any call
//! that finds the core busy, releases it, so other Python threads run meanwhile.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, TryLockError};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple, PyType,
};

use crate::book::Level;
use crate::checksum::kraken_checksum;
use crate::error::CoreError;
use crate::fixed;
use crate::lineproto::{self, FieldValue};
use crate::market::{BookCopy, BookTop, Config, L2Mode, MarketCore};
use crate::measurements::{self, Kind, Measurement};
use crate::metrics::Quote;

create_exception!(
    galfriday_recorder._core,
    RecorderError,
    PyException,
    "Base of every error the recorder raises."
);
create_exception!(
    galfriday_recorder._core,
    MalformedFrame,
    RecorderError,
    "A frame that is not valid Kraken WebSocket JSON."
);
create_exception!(
    galfriday_recorder._core,
    BookOutOfSync,
    RecorderError,
    "A symbol's book failed its checksum; resubscribe."
);
create_exception!(
    galfriday_recorder._core,
    UnknownSymbol,
    RecorderError,
    "An update for a symbol with no snapshot yet."
);

static DECIMAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static INVALID_POINT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `InvalidPoint(RecorderError, ValueError)`: a bad measurement, tag or field. Both
/// bases, so `except ValueError` and `except RecorderError` each catch it;
/// `create_exception!` takes one base, hence `type(...)` here.
fn invalid_point_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INVALID_POINT
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<RecorderError>(),
                    py.get_type::<PyValueError>(),
                ],
            )?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "galfriday_recorder._core")?;
            namespace.set_item(
                "__doc__",
                "A point InfluxDB cannot store: NaN or infinity, a newline, no fields, ...",
            )?;
            let made = py
                .get_type::<PyType>()
                .call1(("InvalidPoint", bases, namespace))?;
            Ok::<_, PyErr>(made.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

fn invalid_point(py: Python<'_>, message: String) -> PyErr {
    match invalid_point_type(py) {
        Ok(t) => PyErr::from_type(t.clone(), message),
        Err(e) => e,
    }
}

fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    DECIMAL
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("decimal")?.getattr("Decimal")?.unbind())
        })
        .map(|t| t.bind(py))
}

fn decimal(py: Python<'_>, mant: u64, scale: u32) -> PyResult<Bound<'_, PyAny>> {
    decimal_type(py)?.call1((fixed::to_string(mant, scale),))
}

fn level_tuple<'py>(py: Python<'py>, l: &Level, ps: u32, qs: u32) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [decimal(py, l.price, ps)?, decimal(py, l.qty, qs)?])
}

/// Best levels and metrics of one symbol after one book message.
#[pyclass(frozen, module = "galfriday_recorder._core", name = "BookTop")]
pub struct PyBookTop {
    top: BookTop,
}

#[pymethods]
impl PyBookTop {
    #[getter]
    fn symbol(&self) -> &str {
        &self.top.symbol
    }
    #[getter]
    fn timestamp_ns(&self) -> i64 {
        self.top.timestamp_ns
    }
    #[getter]
    fn is_snapshot(&self) -> bool {
        self.top.is_snapshot
    }
    #[getter]
    fn bid_price<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.top
            .bid
            .map(|l| decimal(py, l.price, self.top.price_scale))
            .transpose()
    }
    #[getter]
    fn bid_qty<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.top
            .bid
            .map(|l| decimal(py, l.qty, self.top.qty_scale))
            .transpose()
    }
    #[getter]
    fn ask_price<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.top
            .ask
            .map(|l| decimal(py, l.price, self.top.price_scale))
            .transpose()
    }
    #[getter]
    fn ask_qty<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.top
            .ask
            .map(|l| decimal(py, l.qty, self.top.qty_scale))
            .transpose()
    }
    #[getter]
    fn spread(&self) -> Option<f64> {
        self.top.spread
    }
    #[getter]
    fn mid_price(&self) -> Option<f64> {
        self.top.mid_price
    }
    #[getter]
    fn wap(&self) -> Option<f64> {
        self.top.wap
    }
    #[getter]
    fn spread_pct(&self) -> Option<f64> {
        self.top.spread_pct
    }
    #[getter]
    fn imbalances<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (n, v) in self.top.imbalances.as_slice() {
            d.set_item(n, v)?;
        }
        Ok(d)
    }
    #[getter]
    fn checksum_ok(&self) -> bool {
        self.top.checksum_ok
    }
    #[getter]
    fn crossed(&self) -> bool {
        self.top.crossed
    }

    fn __repr__(&self) -> String {
        let t = &self.top;
        let lvl = |l: Option<Quote>| match l {
            Some(l) => format!(
                "{} x {}",
                fixed::to_string(l.price, t.price_scale),
                fixed::to_string(l.qty, t.qty_scale)
            ),
            None => "None".into(),
        };
        let f = |v: Option<f64>| v.map_or_else(|| "None".to_owned(), |v| v.to_string());
        format!(
            "BookTop(symbol={:?}, timestamp_ns={}, is_snapshot={}, bid={}, ask={}, spread={}, mid_price={}, checksum_ok={})",
            t.symbol,
            t.timestamp_ns,
            if t.is_snapshot { "True" } else { "False" },
            lvl(t.bid),
            lvl(t.ask),
            f(t.spread),
            f(t.mid_price),
            if t.checksum_ok { "True" } else { "False" },
        )
    }
}

/// A copy of one symbol's book taken at the time of `MarketRecorder.book()`.
#[pyclass(frozen, module = "galfriday_recorder._core", name = "BookView")]
pub struct PyBookView {
    book: BookCopy,
}

#[pymethods]
impl PyBookView {
    #[getter]
    fn symbol(&self) -> &str {
        &self.book.symbol
    }
    #[getter]
    fn in_sync(&self) -> bool {
        self.book.in_sync
    }
    #[getter]
    fn price_decimals(&self) -> u32 {
        self.book.price_scale
    }
    #[getter]
    fn qty_decimals(&self) -> u32 {
        self.book.qty_scale
    }
    /// Bids, best (highest) first, as exact `(price, qty)` Decimals.
    #[getter]
    fn bids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let b = &self.book;
        let items = b
            .bids
            .iter()
            .map(|l| level_tuple(py, l, b.price_scale, b.qty_scale))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    /// Asks, best (lowest) first, as exact `(price, qty)` Decimals.
    #[getter]
    fn asks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let b = &self.book;
        let items = b
            .asks
            .iter()
            .map(|l| level_tuple(py, l, b.price_scale, b.qty_scale))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    /// Kraken's CRC32 of this book (top 10 levels per side).
    fn checksum(&self) -> u32 {
        kraken_checksum(&self.book.asks, &self.book.bids)
    }
    fn __repr__(&self) -> String {
        format!(
            "BookView(symbol={:?}, bids={}, asks={}, in_sync={})",
            self.book.symbol,
            self.book.bids.len(),
            self.book.asks.len(),
            if self.book.in_sync { "True" } else { "False" }
        )
    }
}

/// Kraken frames in; books, metrics and line protocol out. Thread-safe.
#[pyclass(frozen, module = "galfriday_recorder._core", name = "MarketRecorder")]
pub struct PyMarketRecorder {
    core: Mutex<MarketCore>,
}

/// Frames above this size are handled with the GIL released (a 64 KiB frame
/// is some 100 µs of work; a 10 MB one, tens of milliseconds).
const DETACH_ABOVE_BYTES: usize = 64 * 1024;

impl PyMarketRecorder {
    fn lock(&self) -> MutexGuard<'_, MarketCore> {
        // The core never panics; should it ever, its state is still consistent
        // per message, so keep serving rather than poisoning every later call.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The core if no other thread holds it.
    fn try_lock(&self) -> Option<MutexGuard<'_, MarketCore>> {
        match self.core.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Run `f` on the core: holding the GIL if the work is small and the core
    /// free, else with the GIL released, so neither long work nor waiting for
    /// a thread doing long work stalls the other Python threads.
    fn with_core<R: Send>(
        &self,
        py: Python<'_>,
        big: bool,
        f: impl FnOnce(&mut MarketCore) -> R + Send,
    ) -> R {
        if !big {
            if let Some(mut core) = self.try_lock() {
                return f(&mut core);
            }
        }
        py.detach(|| f(&mut self.lock()))
    }
}

fn core_error(py: Python<'_>, e: CoreError, tops: Vec<BookTop>) -> PyErr {
    let err = match &e {
        CoreError::Malformed { .. } => MalformedFrame::new_err(e.message()),
        CoreError::OutOfSync { .. } => BookOutOfSync::new_err(e.message()),
        CoreError::UnknownSymbol { .. } => UnknownSymbol::new_err(e.message()),
    };
    let value = err.value(py);
    let set = || -> PyResult<()> {
        match e {
            CoreError::Malformed { symbol, .. } => value.setattr("symbol", symbol)?,
            CoreError::OutOfSync {
                symbol,
                expected,
                computed,
                ..
            } => {
                value.setattr("symbol", symbol)?;
                value.setattr("expected", expected)?;
                value.setattr("computed", computed)?;
            }
            CoreError::UnknownSymbol { symbol, .. } => value.setattr("symbol", symbol)?,
        }
        let tops = tops
            .into_iter()
            .map(|top| Py::new(py, PyBookTop { top }))
            .collect::<PyResult<Vec<_>>>()?;
        value.setattr("tops", tops)
    };
    match set() {
        Ok(()) => err,
        Err(other) => other,
    }
}

#[pymethods]
impl PyMarketRecorder {
    #[new]
    #[pyo3(signature = (
        exchange = "kraken",
        depth = 10,
        l2_levels = 10,
        imbalance_levels = vec![5, 10],
        ohlcv_intervals = vec!["1m".to_owned(), "5m".to_owned()],
        precisions = None,
        l2_sample_interval_ms = 0,
        l2_mode = "full",
        max_buffer_bytes = 67_108_864,
        max_frame_bytes = 16_777_216,
        max_symbols = 1024,
        max_trade_ahead_ms = 60_000,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        exchange: &str,
        depth: usize,
        l2_levels: usize,
        imbalance_levels: Vec<u32>,
        ohlcv_intervals: Vec<String>,
        precisions: Option<HashMap<String, (u32, u32)>>,
        l2_sample_interval_ms: u64,
        l2_mode: &str,
        max_buffer_bytes: usize,
        max_frame_bytes: usize,
        max_symbols: usize,
        max_trade_ahead_ms: u64,
    ) -> PyResult<Self> {
        let mode = L2Mode::parse(l2_mode).ok_or_else(|| {
            PyValueError::new_err(format!(
                "l2_mode must be \"full\", \"metrics\" or \"off\", not {l2_mode:?}"
            ))
        })?;
        let cfg = Config {
            exchange: exchange.to_owned(),
            depth,
            l2_levels,
            imbalance_levels,
            ohlcv_intervals,
            precisions: precisions.unwrap_or_default(),
            l2_sample_interval_ms,
            l2_mode: mode,
            max_buffer_bytes,
            max_frame_bytes,
            max_symbols,
            max_trade_ahead_ms,
        };
        let core = MarketCore::new(cfg).map_err(PyValueError::new_err)?;
        Ok(PyMarketRecorder {
            core: Mutex::new(core),
        })
    }

    /// Handle one raw frame; returns a `BookTop` per symbol whose book it
    /// touched. If some entry fails, the others are still applied and
    /// recorded, then the first error is raised with `.tops` holding theirs.
    #[pyo3(signature = (frame, received_at_ns = None))]
    fn ingest(
        &self,
        py: Python<'_>,
        frame: &Bound<'_, PyAny>,
        received_at_ns: Option<i64>,
    ) -> PyResult<Vec<PyBookTop>> {
        let bytes = if let Ok(b) = frame.cast::<PyBytes>() {
            b.as_bytes()
        } else if let Ok(s) = frame.cast::<PyString>() {
            s.to_str()?.as_bytes()
        } else {
            return Err(PyTypeError::new_err(format!(
                "frame must be bytes or str, not {}",
                frame.get_type().name()?
            )));
        };
        // The bytes belong to an immutable object this call holds: safe to
        // read with the GIL released.
        let big = bytes.len() > DETACH_ABOVE_BYTES;
        let outcome = self.with_core(py, big, |core| core.ingest(bytes, received_at_ns));
        match outcome.error {
            None => Ok(outcome
                .tops
                .into_iter()
                .map(|top| PyBookTop { top })
                .collect()),
            Some(e) => Err(core_error(py, e, outcome.tops)),
        }
    }

    /// A copy of one symbol's book; `UnknownSymbol` if it has none.
    fn book(&self, py: Python<'_>, symbol: &str) -> PyResult<PyBookView> {
        let copy = self.with_core(py, false, |core| core.book(symbol));
        copy.map(|book| PyBookView { book }).ok_or_else(|| {
            UnknownSymbol::new_err(format!("no book for {symbol:?} (no snapshot received)"))
        })
    }

    /// Every line encoded since the last drain, as one bytes object.
    fn drain<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut out = None;
        if let Some(mut core) = self.try_lock() {
            // PyBytes::new only copies memory; no Python code runs under the lock.
            core.drain_into(|b| out = Some(PyBytes::new(py, b)));
        } else {
            // Busy: wait without the GIL, then copy once more.
            let taken = py.detach(|| {
                let mut v = Vec::new();
                self.lock().drain_into(|b| v = b.to_vec());
                v
            });
            out = Some(PyBytes::new(py, &taken));
        }
        out.unwrap_or_else(|| PyBytes::new(py, b""))
    }

    /// Emit every open OHLCV bar into the buffer now (shutdown); returns how many.
    fn flush_bars(&self, py: Python<'_>) -> usize {
        self.with_core(py, false, MarketCore::flush_bars)
    }

    fn symbols(&self, py: Python<'_>) -> Vec<String> {
        self.with_core(py, false, |core| core.symbols())
    }

    /// Counters and hot-path latency (ns, measured inside the core on every 8th frame).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (c, lat, buffered) = self.with_core(py, false, |core| {
            (core.counters(), core.latency_ns(), core.buffered().len())
        });
        let d = PyDict::new(py);
        for (k, v) in [
            ("frames", c.frames),
            ("ignored", c.ignored),
            ("book_messages", c.book_messages),
            ("snapshots", c.snapshots),
            ("lines", c.lines),
            ("lines_dropped", c.lines_dropped),
            ("l2_points", c.l2_points),
            ("l2_sampled_out", c.l2_sampled_out),
            ("buffered_bytes", buffered as u64),
            ("malformed", c.malformed),
            ("out_of_sync", c.out_of_sync),
            ("unknown_symbol", c.unknown_symbol),
            ("trades", c.trades),
            ("late_trades", c.late_trades),
            ("future_trades", c.future_trades),
            ("unverified_updates", c.unverified_updates),
            ("crossed_books", c.crossed_books),
            ("bars", c.bars),
            ("ohlc", c.ohlc),
            ("instruments", c.instruments),
            ("ingest_ns_p50", lat.0),
            ("ingest_ns_p99", lat.1),
            ("ingest_ns_max", lat.2),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Benchmark helper: mean ns of Kraken's checksum over a symbol's current
    /// book, timed in a Rust loop (no Python call overhead). Built with the
    /// `bench` feature only (`make bench`).
    #[cfg(feature = "bench")]
    fn _checksum_ns(&self, symbol: &str, iterations: u64) -> PyResult<f64> {
        let (total, _) = self
            .lock()
            .time_checksum(symbol, iterations.max(1))
            .ok_or_else(|| UnknownSymbol::new_err(format!("no book for {symbol:?}")))?;
        Ok(total as f64 / iterations.max(1) as f64)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.with_core(py, false, |core| {
            format!(
                "MarketRecorder(exchange={:?}, symbols={})",
                core.config().exchange,
                core.symbols().len()
            )
        })
    }
}

/// A Python value as a field of the kind the schema gives it (`None`: any kind,
/// as the value's own type says). `Ok(None)` for a `None` value: left out.
fn field_value(
    py: Python<'_>,
    schema: Option<&Measurement>,
    name: &str,
    v: &Bound<'_, PyAny>,
) -> PyResult<Option<FieldValue>> {
    if v.is_none() {
        return Ok(None);
    }
    let Some(m) = schema else {
        return free_field_value(py, name, v).map(Some);
    };
    let Some(kind) = m.field_kind(name) else {
        return Err(invalid_point(
            py,
            format!("field {name:?} is not a field of {}", m.name),
        ));
    };
    let wrong = || {
        let type_name = v
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        invalid_point(
            py,
            format!(
                "{} field {name:?} is {}, not {type_name}",
                m.name,
                kind.name()
            ),
        )
    };
    let is_bool = v.cast::<PyBool>().is_ok();
    let value = match kind {
        Kind::Float if is_bool || v.cast::<PyString>().is_ok() => return Err(wrong()),
        Kind::Float if v.cast::<PyInt>().is_ok() => {
            // Any int, written as the float it rounds to; past f64's range it is refused.
            let f: f64 = v.extract().map_err(|_| {
                invalid_point(
                    py,
                    format!(
                        "{} field {name:?}: the int is beyond a float's range",
                        m.name
                    ),
                )
            })?;
            FieldValue::Float(f)
        }
        Kind::Float => match free_field_value(py, name, v)? {
            f @ (FieldValue::Float(_) | FieldValue::Decimal(_)) => f,
            _ => return Err(wrong()),
        },
        Kind::Integer if is_bool => return Err(wrong()),
        Kind::Integer if v.cast::<PyInt>().is_ok() => free_field_value(py, name, v)?,
        Kind::Boolean if is_bool => free_field_value(py, name, v)?,
        Kind::String if v.cast::<PyString>().is_ok() => free_field_value(py, name, v)?,
        _ => return Err(wrong()),
    };
    Ok(Some(value))
}

/// A field of a measurement outside the schema: typed by the Python value.
fn free_field_value(py: Python<'_>, name: &str, v: &Bound<'_, PyAny>) -> PyResult<FieldValue> {
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(FieldValue::Bool(b.is_true()));
    }
    if v.cast::<PyInt>().is_ok() {
        let n: i64 = v.extract().map_err(|_| {
            invalid_point(
                py,
                format!("field {name:?}: integer does not fit in 64 bits"),
            )
        })?;
        return Ok(FieldValue::Int(n));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(FieldValue::Float(f.value()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(FieldValue::Str(utf8(py, s, "field", name)?));
    }
    if v.is_instance(decimal_type(py)?)? {
        if !v.call_method0("is_finite")?.is_truthy()? {
            return Err(invalid_point(
                py,
                format!("field {name:?} is not finite (NaN and infinity cannot be stored)"),
            ));
        }
        // format(d, "f") is the plain positional text (no exponent), exact, but it writes
        // every zero an exponent implies (1E+999999999 is a gigabyte of text): only a value
        // whose first digit is within 64 places of the point is formatted.
        let adjusted = v
            .call_method0("adjusted")?
            .extract::<i64>()
            .unwrap_or(i64::MAX);
        if adjusted.unsigned_abs() <= 64 {
            let text: String = v.call_method1("__format__", ("f",))?.extract()?;
            if text.len() <= 64 && lineproto::is_plain_decimal(&text) {
                return Ok(FieldValue::Decimal(text));
            }
        }
        // Longer expansions (1E+400) go through float, which refuses infinities.
        let f: f64 = v.extract()?;
        return Ok(FieldValue::Float(f));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(FieldValue::Float(f));
    }
    Err(PyTypeError::new_err(format!(
        "field {name:?}: unsupported type {} (float, int, bool, str or Decimal)",
        v.get_type().name()?
    )))
}

/// A str as UTF-8; a lone surrogate cannot be stored anywhere.
fn utf8(py: Python<'_>, s: &Bound<'_, PyString>, what: &str, name: &str) -> PyResult<String> {
    match s.to_str() {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => Err(invalid_point(
            py,
            format!("{what} {name:?} is not valid UTF-8 (a lone surrogate)"),
        )),
    }
}

type Pairs<'py> = Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// Key/value pairs of a dict (fast path) or any other mapping.
fn items<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Pairs<'py>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(d.iter().collect());
    }
    let mapping = obj
        .cast::<PyMapping>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a mapping")))?;
    mapping
        .items()?
        .iter()
        .map(|kv| kv.extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>())
        .collect()
}

/// One line of line protocol for any measurement (features, predictions,
/// portfolio_metrics, system_metrics, ...). `None` values are left out. The six
/// measurements of the seed have their tags and field kinds checked and
/// converted by [`measurements::SCHEMA`].
#[pyfunction]
fn encode_line<'py>(
    py: Python<'py>,
    measurement: &Bound<'py, PyString>,
    tags: &Bound<'py, PyAny>,
    fields: &Bound<'py, PyAny>,
    timestamp_ns: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let measurement = utf8(py, measurement, "measurement", "")?;
    let schema = measurements::measurement(&measurement);
    let timestamp_ns: i64 = match timestamp_ns.extract() {
        Ok(ns) => ns,
        Err(_) if timestamp_ns.cast::<PyInt>().is_ok() => {
            return Err(invalid_point(
                py,
                format!("timestamp {timestamp_ns} ns is outside InfluxDB's range"),
            ))
        }
        Err(e) => return Err(e),
    };
    let tags = items(tags, "tags")?;
    let fields = items(fields, "fields")?;
    let mut tag_list = Vec::with_capacity(tags.len());
    for (k, v) in tags {
        let key = k
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("tag keys must be str"))
            .and_then(|k| utf8(py, k, "tag key", ""))?;
        if let Some(m) = schema.filter(|m| !m.has_tag(&key)) {
            return Err(invalid_point(
                py,
                format!(
                    "tag {key:?} is not a tag of {} (tags: {:?})",
                    m.name, m.tags
                ),
            ));
        }
        if v.is_none() {
            continue;
        }
        let value = v
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err(format!("tag {key:?}: value must be str")))
            .and_then(|v| utf8(py, v, "tag", &key))?;
        tag_list.push((key, value));
    }
    let mut field_list = Vec::with_capacity(fields.len());
    for (k, v) in fields {
        let key = k
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("field keys must be str"))
            .and_then(|k| utf8(py, k, "field key", ""))?;
        if let Some(value) = field_value(py, schema, &key, &v)? {
            field_list.push((key, value));
        }
    }
    let mut out = Vec::with_capacity(128);
    lineproto::encode_point(&measurement, &tag_list, &field_list, timestamp_ns, &mut out)
        .map_err(|e| invalid_point(py, format!("{measurement:?}: {e}")))?;
    Ok(PyBytes::new(py, &out))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RecorderError", py.get_type::<RecorderError>())?;
    m.add("MalformedFrame", py.get_type::<MalformedFrame>())?;
    m.add("BookOutOfSync", py.get_type::<BookOutOfSync>())?;
    m.add("UnknownSymbol", py.get_type::<UnknownSymbol>())?;
    m.add("InvalidPoint", invalid_point_type(py)?)?;
    m.add_class::<PyMarketRecorder>()?;
    m.add_class::<PyBookTop>()?;
    m.add_class::<PyBookView>()?;
    m.add_function(wrap_pyfunction!(encode_line, m)?)?;
    m.add_function(wrap_pyfunction!(crate::json_values::json_values, m)?)?;
    Ok(())
}
