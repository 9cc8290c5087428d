//! Turning Python arguments into Rust strings, and subject errors into exceptions.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use turnout_core::SubjectError;

/// A `str` argument as UTF-8, or `None` if it is a `str` that has no UTF-8 form (lone
/// surrogates). Anything but a `str` is a `TypeError`.
pub fn text<'a>(ob: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Option<&'a str>> {
    let Ok(s) = ob.cast::<PyString>() else {
        return Err(not_a_str(ob, what));
    };
    Ok(s.to_str().ok())
}

pub fn not_a_str(ob: &Bound<'_, PyAny>, what: &str) -> PyErr {
    let kind = ob
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string());
    PyTypeError::new_err(format!("{what} must be str, not {kind}"))
}

/// Python's `turnout.InvalidSubjectError(subject, reason)`, defined in `turnout._errors`
/// so that the pure-Python reference raises the very same class.
pub fn invalid_subject(py: Python<'_>, subject: &Bound<'_, PyAny>, reason: &str) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match CLASS.import(py, "turnout._errors", "InvalidSubjectError") {
        Ok(class) => PyErr::from_type(
            class.clone(),
            (subject.clone().unbind(), reason.to_string()),
        ),
        Err(err) => err,
    }
}

/// The reason a `str` without UTF-8 form gives.
pub const NOT_UTF8: &str = "not valid UTF-8";

pub fn subject_error(py: Python<'_>, subject: &Bound<'_, PyAny>, err: SubjectError) -> PyErr {
    invalid_subject(py, subject, &err.reason())
}
