//! Times between Python and the wire: `utc_now()`, the clock the bus stamps every event
//! with (a tz-aware UTC `datetime` made in one call; the Python spelling builds a naive
//! time and converts it), and `format_time()`, a `datetime` written as Go writes a
//! `time.Time`.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyTimeAccess, PyTzInfo, PyTzInfoAccess,
};
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

/// A Python `datetime` as a wire time; a naive one is taken as UTC, and the extra
/// nanoseconds of a `turnout._wire.PreciseDatetime` are kept.
pub(crate) fn wire_time(dt: &Bound<'_, PyDateTime>) -> PyResult<WireTime> {
    let offset_seconds = match dt.get_tzinfo() {
        None => 0,
        Some(tz) => {
            let offset = tz.call_method1(intern!(dt.py(), "utcoffset"), (dt,))?;
            match offset.cast::<PyDelta>() {
                Ok(delta) => delta.get_days() * 86_400 + delta.get_seconds(),
                Err(_) => 0,
            }
        }
    };
    let extra_nanos = match dt.getattr_opt(intern!(dt.py(), "nanosecond"))? {
        Some(n) => match n.extract::<u32>() {
            Ok(n @ 0..=999) => n,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "a timestamp's nanosecond must be in 0..999, not {n}"
                )))
            }
        },
        None => 0,
    };
    Ok(WireTime::from_civil(
        i64::from(dt.get_year()),
        u32::from(dt.get_month()),
        u32::from(dt.get_day()),
        u32::from(dt.get_hour()),
        u32::from(dt.get_minute()),
        u32::from(dt.get_second()),
        dt.get_microsecond() * 1_000 + extra_nanos,
        offset_seconds,
    ))
}

/// `value` in RFC 3339 as Go's `time.Time` marshals it, without the quotes: nanoseconds
/// with trailing zeros trimmed, `Z` for UTC (and for a naive `datetime`), else the offset.
#[pyfunction]
fn format_time(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let dt = value.cast::<PyDateTime>().map_err(|_| {
        PyTypeError::new_err(format!(
            "timestamp must be a datetime, not {}",
            value
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    let mut quoted = String::with_capacity(40);
    wire_time(dt)?.write_json(&mut quoted);
    Ok(quoted[1..quoted.len() - 1].to_owned())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(utc_now, m)?)?;
    m.add_function(wrap_pyfunction!(format_time, m)?)
}
