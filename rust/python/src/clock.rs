//! Times between Python and the wire: `utc_now()` (a tz-aware UTC `datetime` made in one
//! call), `format_time()` and `parse_time()`, a `datetime` written and read as Go writes
//! and reads a `time.Time` (the rules are the core's `go_time`).
//!
//! A `datetime` stops at microseconds; a time with nanoseconds below them becomes the
//! `datetime` subclass Python hands over once at import (`_set_precise_datetime`).

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyTimeAccess, PyType, PyTzInfo,
    PyTzInfoAccess,
};
use turnout_core::WireTime;

/// `turnout._wire.PreciseDatetime`, handed over at import.
static PRECISE_DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Python hands over the `datetime` subclass that carries nanoseconds (once, at import).
#[pyfunction]
fn _set_precise_datetime(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let _ = PRECISE_DATETIME.set(cls.py(), cls.clone().unbind());
    Ok(())
}

/// The wire time as an aware `datetime` in its own zone: a plain one when it has no
/// nanoseconds below the microsecond, else a `PreciseDatetime`. A zone Python cannot
/// hold (Go accepts offsets up to 24 hours, Python below 24) is given in UTC; a year
/// outside 1..9999 is a `ValueError`.
pub(crate) fn datetime_of<'py>(py: Python<'py>, time: &WireTime) -> PyResult<Bound<'py, PyAny>> {
    let shown = if time.offset_seconds.unsigned_abs() < 86_400 {
        *time
    } else {
        WireTime {
            offset_seconds: 0,
            ..*time
        }
    };
    let c = shown.civil();
    if !(1..=9999).contains(&c.year) {
        let mut text = String::new();
        time.write_json(&mut text);
        return Err(PyValueError::new_err(format!(
            "the time {text} is outside the years 1 to 9999 a datetime holds"
        )));
    }
    let tz = if shown.offset_seconds == 0 {
        PyTzInfo::utc(py)?.to_owned()
    } else {
        PyTzInfo::fixed_offset(py, PyDelta::new(py, 0, shown.offset_seconds, 0, true)?)?
    };
    let (micro, nano) = (c.nanosecond / 1_000, c.nanosecond % 1_000);
    // The year is in 1..=9999 and the other fields in their ranges: the casts hold.
    let fields = (
        c.year as i32,
        c.month as u8,
        c.day as u8,
        c.hour as u8,
        c.minute as u8,
        c.second as u8,
        micro,
    );
    if nano == 0 {
        let (y, mo, d, h, mi, s, us) = fields;
        return Ok(PyDateTime::new(py, y, mo, d, h, mi, s, us, Some(&tz))?.into_any());
    }
    let cls = PRECISE_DATETIME
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("turnout._wire was not imported"))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "nanosecond"), nano)?;
    let (y, mo, d, h, mi, s, us) = fields;
    cls.bind(py)
        .call((y, mo, d, h, mi, s, us, tz), Some(&kwargs))
}

/// Reads an RFC 3339 timestamp as Go's `time.Time` does (see `datetime_of` for what
/// comes back); `ValueError` on anything Go refuses.
#[pyfunction]
fn parse_time<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let time = WireTime::parse_rfc3339(text.as_bytes()).map_err(|e| {
        let shown: String = text.chars().take(64).collect();
        PyValueError::new_err(format!("{e}: {shown:?}"))
    })?;
    datetime_of(py, &time)
}

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
/// nanoseconds of a `PreciseDatetime` are kept.
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
    m.add_function(wrap_pyfunction!(format_time, m)?)?;
    m.add_function(wrap_pyfunction!(parse_time, m)?)?;
    m.add_function(wrap_pyfunction!(_set_precise_datetime, m)?)
}
