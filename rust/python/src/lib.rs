//! `turnout._core`: thin PyO3 bindings over `turnout-core`.
//!
//! Arguments become owned or borrowed Rust values, batch work runs with the GIL released,
//! Rust errors become Python exceptions. Behaviour is decided in the core, not here.

mod args;
mod clock;
mod dispatch;
mod event;
mod index;
mod logs;
mod phases;
mod subjects;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_SUBJECT_LENGTH", turnout_core::MAX_SUBJECT_LENGTH)?;
    m.add("MAX_TOKENS", turnout_core::MAX_TOKENS)?;
    subjects::register(m)?;
    index::register(m)?;
    dispatch::register(m)?;
    clock::register(m)?;
    event::register(m)?;
    phases::register(m)?;
    logs::register(m)?;
    Ok(())
}
