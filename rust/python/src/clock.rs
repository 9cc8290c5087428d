//! `utc_now()`: the clock the bus stamps every event with, a tz-aware UTC `datetime`
//! made in one call (the Python spelling builds a naive time and converts it).

use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyTzInfo};
use turnout_core::WireTime;

/// The current time as a `datetime` in UTC, to the microsecond (`datetime.now(timezone.utc)`).
#[pyfunction]
fn utc_now(py: Python<'_>) -> PyResult<Bound<'_, PyDateTime>> {
    let t = WireTime::now().civil();
    let utc = PyTzInfo::utc(py)?;
    // The system clock gives years 1970 to a few hundred years ahead: the casts hold.
    PyDateTime::new(
        py,
        t.year as i32,
        t.month as u8,
        t.day as u8,
        t.hour as u8,
        t.minute as u8,
        t.second as u8,
        t.nanosecond / 1_000,
        Some(&*utc),
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(utc_now, m)?)
}
