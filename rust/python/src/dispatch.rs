//! `KeyRouter`: the dispatcher's fast path, routing raw JSON messages by a key field.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use turnout_core::{self as core, Route};

use crate::args::not_a_str;

/// Routes batches of JSON messages to keys by one top-level string field.
#[pyclass(frozen, module = "turnout", name = "KeyRouter")]
pub struct KeyRouter {
    inner: core::KeyRouter,
    /// The key objects as given, returned as the dict keys of `route_batch`.
    keys: Vec<Py<PyString>>,
}

#[pymethods]
impl KeyRouter {
    #[new]
    #[pyo3(signature = (keys, field = "workspace_name"))]
    fn new(keys: &Bound<'_, PyAny>, field: &str) -> PyResult<Self> {
        let mut objects = Vec::new();
        for key in keys.try_iter()? {
            let key = key?;
            let Ok(s) = key.cast::<PyString>() else {
                return Err(not_a_str(&key, "key"));
            };
            objects.push(s.clone().unbind());
        }
        let py = keys.py();
        let names = objects
            .iter()
            .map(|k| k.bind(py).to_str().map(str::to_owned))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self {
            inner: core::KeyRouter::new(names.iter().map(String::as_str), field),
            keys: objects,
        })
    }

    /// The top-level field routed by.
    #[getter]
    fn field(&self) -> &str {
        self.inner.field()
    }

    /// Distinct keys.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Routes `batch` (bytes objects): returns the messages per key, in order and as the
    /// same objects, for keys that received any; then those whose key is unknown; then the
    /// malformed ones. Messages are parsed with the GIL released.
    fn route_batch<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let mut messages: Vec<(Bound<'py, PyAny>, PyBackedBytes)> = Vec::new();
        for item in batch.try_iter()? {
            let item = item?;
            let Ok(bytes) = item.cast::<PyBytes>() else {
                let kind = item.get_type().name()?;
                return Err(PyTypeError::new_err(format!(
                    "messages must be bytes, not {kind}"
                )));
            };
            let backed = PyBackedBytes::from(bytes.clone());
            messages.push((item, backed));
        }
        let routes: Vec<Route> = {
            let views: Vec<&[u8]> = messages.iter().map(|(_, b)| &**b).collect();
            py.detach(|| views.iter().map(|m| self.inner.route(m)).collect())
        };
        let grouped = PyDict::new(py);
        let unknown = PyList::empty(py);
        let malformed = PyList::empty(py);
        // Consecutive messages often share a key: reuse the last list looked up.
        let mut last: Option<(usize, Bound<'py, PyList>)> = None;
        for ((message, _), route) in messages.iter().zip(routes) {
            match route {
                Route::Key(at) => {
                    let list = match &last {
                        Some((seen, list)) if *seen == at => list.clone(),
                        _ => {
                            let key = self.keys[at].bind(py);
                            let list = match grouped.get_item(key)? {
                                Some(list) => list.cast_into::<PyList>()?,
                                None => {
                                    let list = PyList::empty(py);
                                    grouped.set_item(key, &list)?;
                                    list
                                }
                            };
                            last = Some((at, list.clone()));
                            list
                        }
                    };
                    list.append(message)?;
                }
                Route::Unknown => unknown.append(message)?,
                Route::Malformed => malformed.append(message)?,
            }
        }
        Ok((grouped, unknown, malformed))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<KeyRouter>()
}
