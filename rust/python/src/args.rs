//! Turning Python arguments into Rust strings, and subject errors into exceptions.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
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

/// The exception classes `turnout._errors` defines (so that the pure-Python reference
/// raises the very same ones), handed over once by that module as it is imported.
pub struct ErrorClasses {
    pub invalid_subject: Py<PyType>,
    pub phase: Py<PyType>,
    pub workflow_not_found: Py<PyType>,
    pub invalid_transition: Py<PyType>,
}

static ERROR_CLASSES: PyOnceLock<ErrorClasses> = PyOnceLock::new();

/// The classes `turnout._errors` handed over; a `RuntimeError` before it has (it is
/// imported by `turnout` itself, so only a broken install gets there).
pub fn error_classes(py: Python<'_>) -> PyResult<&ErrorClasses> {
    ERROR_CLASSES
        .get(py)
        .ok_or_else(|| not_registered("turnout._errors"))
}

/// The error for a class or callable not yet handed over by the module defining it.
pub fn not_registered(module: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "turnout._core was used before {module} was imported (a broken install?)"
    ))
}

/// `_register_errors(InvalidSubjectError, PhaseError, WorkflowNotFoundError,
/// InvalidTransitionError)`: called once by `turnout._errors`; later calls are ignored.
#[pyfunction]
fn _register_errors(
    py: Python<'_>,
    invalid_subject: Py<PyType>,
    phase: Py<PyType>,
    workflow_not_found: Py<PyType>,
    invalid_transition: Py<PyType>,
) {
    let _ = ERROR_CLASSES.set(
        py,
        ErrorClasses {
            invalid_subject,
            phase,
            workflow_not_found,
            invalid_transition,
        },
    );
}

/// Python's `turnout.InvalidSubjectError(subject, reason)`.
pub fn invalid_subject(py: Python<'_>, subject: &Bound<'_, PyAny>, reason: &str) -> PyErr {
    match error_classes(py) {
        Ok(classes) => PyErr::from_type(
            classes.invalid_subject.bind(py).clone(),
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_register_errors, m)?)
}
