//! `turnout._core`: thin PyO3 bindings over `turnout-core`.
//!
//! Arguments become owned or borrowed Rust values, batch work runs with the GIL released,
//! Rust errors become Python exceptions. Behaviour is decided in the core, not here.

mod args;
mod bus;
mod channel_wake;
mod clock;
mod event;
mod go_json;
mod index;
mod json_scan;
mod key_router;
mod logs;
mod nats_frames;
mod phase;
mod phase_manager;
mod ring;
mod subjects;

use pyo3::prelude::*;

// A free-threaded Python (3.13t) keeps the GIL on while this module is loaded: the Python
// layer above it has never run without the GIL (message ids, for one, rely on it), so
// nothing claims it is safe until a free-threaded build is tested.
#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_SUBJECT_LENGTH", turnout_core::MAX_SUBJECT_LENGTH)?;
    m.add("MAX_TOKENS", turnout_core::MAX_TOKENS)?;
    args::register(m)?;
    subjects::register(m)?;
    index::register(m)?;
    key_router::register(m)?;
    json_scan::register(m)?;
    channel_wake::register(m)?;
    clock::register(m)?;
    event::register(m)?;
    go_json::register(m)?;
    phase::register(m)?;
    phase_manager::register(m)?;
    logs::register(m)?;
    nats_frames::register(m)?;
    ring::register(m)?;
    bus::register(m)?;
    Ok(())
}
