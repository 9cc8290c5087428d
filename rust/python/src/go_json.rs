//! Go's `encoding/json` writer for Python values: `dumps_go` writes a JSON-ready tree as Go
//! writes a `map[string]interface{}` (keys sorted, floats and times in Go's form, Go's
//! escaping), `go_html_escape` applies Go's HTML-safe escapes to JSON text from another
//! encoder, `go_float_text` spells a float as Go does. The rules are the core's `go_json`
//! and `go_time`; this file walks the Python objects.

use std::fmt::Write as _;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use turnout_core::{html_safe, write_decimal, write_go_float, write_json_str};

use crate::clock::wire_time;

/// How deep a value may nest when written (lists and maps); deeper is refused, as is a
/// cycle.
const MAX_DEPTH: u32 = 255;

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

pub(crate) enum Unencodable {
    /// A value Go's encoder refuses too (NaN, an infinity), with Go's reason.
    Value(String),
    /// A type JSON cannot carry, or a map key that is not a string.
    Type(String),
    /// Python failed while being read.
    Python(PyErr),
}

impl From<PyErr> for Unencodable {
    fn from(err: PyErr) -> Self {
        Self::Python(err)
    }
}

pub(crate) fn write_dict(
    out: &mut String,
    map: &Bound<'_, PyDict>,
    depth: u32,
) -> Result<(), Unencodable> {
    if depth >= MAX_DEPTH {
        return Err(Unencodable::Value(format!(
            "nested deeper than {MAX_DEPTH} levels (or a cycle)"
        )));
    }
    let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = map.iter().collect();
    let mut entries = Vec::with_capacity(items.len());
    for (key, value) in &items {
        let Ok(key) = key.cast::<PyString>() else {
            return Err(Unencodable::Type(format!(
                "json: unsupported map key type: {}",
                type_name(key)
            )));
        };
        let key = key
            .to_str()
            .map_err(|e| Unencodable::Value(e.to_string()))?;
        entries.push((key, value));
    }
    // Go sorts a map's keys by their bytes.
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push('{');
    for (n, (key, value)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_json_str(out, key);
        out.push(':');
        write_value(out, value, depth + 1)?;
    }
    out.push('}');
    Ok(())
}

fn write_value(out: &mut String, value: &Bound<'_, PyAny>, depth: u32) -> Result<(), Unencodable> {
    if let Ok(text) = value.cast::<PyString>() {
        let text = text
            .to_str()
            .map_err(|e| Unencodable::Value(e.to_string()))?;
        write_json_str(out, text);
    } else if value.is_none() {
        out.push_str("null");
    } else if let Ok(flag) = value.cast::<PyBool>() {
        out.push_str(if flag.is_true() { "true" } else { "false" });
    } else if value.is_instance_of::<PyInt>() {
        if let Ok(n) = value.extract::<i64>() {
            write_decimal(out, n);
        } else if let Ok(n) = value.extract::<u64>() {
            let _ = write!(out, "{n}");
        } else {
            return Err(Unencodable::Type(format!(
                "json: integer {} does not fit 64 bits",
                value.repr()?
            )));
        }
    } else if let Ok(number) = value.cast::<PyFloat>() {
        let number = number.value();
        if !number.is_finite() {
            return Err(Unencodable::Value(format!(
                "json: unsupported value: {number}"
            )));
        }
        write_go_float(out, number);
    } else if let Ok(map) = value.cast::<PyDict>() {
        write_dict(out, map, depth)?;
    } else if let Ok(list) = value.cast::<PyList>() {
        write_items(out, list.iter(), depth)?;
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        write_items(out, tuple.iter(), depth)?;
    } else if let Ok(dt) = value.cast::<PyDateTime>() {
        wire_time(dt)?.write_json(out);
    } else {
        return Err(Unencodable::Type(format!(
            "json: unsupported type: {}",
            type_name(value)
        )));
    }
    Ok(())
}

fn write_items<'py>(
    out: &mut String,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: u32,
) -> Result<(), Unencodable> {
    if depth >= MAX_DEPTH {
        return Err(Unencodable::Value(format!(
            "nested deeper than {MAX_DEPTH} levels (or a cycle)"
        )));
    }
    out.push('[');
    for (n, item) in items.enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_value(out, &item, depth + 1)?;
    }
    out.push(']');
    Ok(())
}

/// `value` (dicts, lists, tuples, str, int, float, bool, None, datetime) as Go's
/// `json.Marshal` writes it, HTML-safe escapes included. `ValueError` on NaN or an
/// infinity, `TypeError` on what JSON cannot carry.
#[pyfunction]
fn dumps_go<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = String::with_capacity(64);
    write_value(&mut out, value, 0).map_err(|e| match e {
        Unencodable::Value(why) => PyValueError::new_err(why),
        Unencodable::Type(why) => PyTypeError::new_err(why),
        Unencodable::Python(err) => err,
    })?;
    Ok(PyBytes::new(py, out.as_bytes()))
}

/// JSON text with Go's HTML-safe escapes applied inside its strings.
#[pyfunction]
fn go_html_escape<'py>(py: Python<'py>, data: &Bound<'py, PyBytes>) -> Bound<'py, PyBytes> {
    match html_safe(data.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => data.clone(),
        std::borrow::Cow::Owned(escaped) => PyBytes::new(py, &escaped),
    }
}

/// `value` spelled as Go's `encoding/json` spells a `float64`; `ValueError` on NaN or an
/// infinity.
#[pyfunction]
fn go_float_text(value: f64) -> PyResult<String> {
    if !value.is_finite() {
        return Err(PyValueError::new_err(format!(
            "json: unsupported value: {value}"
        )));
    }
    let mut out = String::new();
    write_go_float(&mut out, value);
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dumps_go, m)?)?;
    m.add_function(wrap_pyfunction!(go_html_escape, m)?)?;
    m.add_function(wrap_pyfunction!(go_float_text, m)?)
}
