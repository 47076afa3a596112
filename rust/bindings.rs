//! The PyO3 layer: argument conversion and error mapping only.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(galfriday_recorder._core, RecorderError, PyException, "Base of every error the recorder raises.");
create_exception!(galfriday_recorder._core, MalformedFrame, RecorderError, "A frame that is not valid Kraken WebSocket JSON.");
create_exception!(galfriday_recorder._core, BookOutOfSync, RecorderError, "A symbol's book failed its checksum; resubscribe.");
create_exception!(galfriday_recorder._core, UnknownSymbol, RecorderError, "An update for a symbol with no snapshot yet.");

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RecorderError", py.get_type::<RecorderError>())?;
    m.add("MalformedFrame", py.get_type::<MalformedFrame>())?;
    m.add("BookOutOfSync", py.get_type::<BookOutOfSync>())?;
    m.add("UnknownSymbol", py.get_type::<UnknownSymbol>())?;
    Ok(())
}
