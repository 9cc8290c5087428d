//! `KeyRouter`: the dispatcher's fast path, routing raw JSON messages by a key field.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use turnout_core as core;

use crate::args::not_a_str;
use crate::json_scan::BuildUpdateDecoder;

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
    /// malformed ones. Messages are parsed and grouped with the GIL released.
    fn route_batch<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let messages = bytes_of(batch)?;
        // The bytes objects are immutable and held by `messages`: their buffers stay put
        // while the GIL is released.
        let views: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
        let routed = py.detach(|| self.inner.route_batch(views.iter().copied()));
        self.grouped(py, &messages, &routed)
    }

    /// `route_batch` for build updates, routed by `workspace_name`: the same groups of the
    /// same bytes objects, the key read by `decoder`'s scanner, which reads a message in
    /// the compact form Go writes in one pass checked by its shape (any other in full, as
    /// `route_batch` does). Nothing is decoded or allocated per message: a channel's read
    /// decodes its batch (`BuildUpdateDecoder.decode_many`). `ValueError` if this router
    /// reads another field.
    fn route_updates<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        decoder: &Bound<'py, BuildUpdateDecoder>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        if self.inner.field() != "workspace_name" {
            return Err(PyValueError::new_err(format!(
                "route_updates routes by workspace_name, this router by {:?}",
                self.inner.field()
            )));
        }
        let messages = bytes_of(batch)?;
        let views: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
        let reader = decoder.get();
        let routed = py.detach(|| {
            self.inner.route_batch_by(views.iter().copied(), |message| {
                self.inner.route_key(reader.key_of(message).as_deref())
            })
        });
        self.grouped(py, &messages, &routed)
    }
}

impl KeyRouter {
    /// The messages of a routed batch as `route_batch` returns them.
    fn grouped<'py>(
        &self,
        py: Python<'py>,
        messages: &[Bound<'py, PyBytes>],
        routed: &core::RoutedBatch,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let pick = |at: &[usize]| PyList::new(py, at.iter().map(|&i| &messages[i]));
        let grouped = PyDict::new(py);
        for (key, at) in routed.groups() {
            grouped.set_item(self.keys[key].bind(py), pick(at)?)?;
        }
        Ok((grouped, pick(&routed.unknown)?, pick(&routed.malformed)?))
    }
}

/// The items of `batch`, each checked to be `bytes` before any is routed.
fn bytes_of<'py>(batch: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let mut messages = Vec::new();
    for item in batch.try_iter()? {
        match item?.cast_into::<PyBytes>() {
            Ok(bytes) => messages.push(bytes),
            Err(err) => {
                let kind = err.into_inner().get_type().name()?;
                return Err(PyTypeError::new_err(format!(
                    "messages must be bytes, not {kind}"
                )));
            }
        }
    }
    Ok(messages)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<KeyRouter>()
}
