//! `NatsFrames`: the core's NATS frame reader for the NATS transport's parser. Converts
//! only: routed messages become `(sid, subject, payload)` tuples, grouped in runs (one
//! list per run of consecutive routed messages) so Python hands a run to the bus at once;
//! every other frame stays `bytes` for nats-py's own parser.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use turnout_core::{Frame, FrameReader};

/// Subjects whose `str` is kept for reuse; most messages repeat a few subjects. The cache
/// is cleared when full.
const SUBJECT_CACHE_LIMIT: usize = 1024;

#[pyclass(module = "turnout._core", name = "NatsFrames")]
pub struct NatsFrames {
    reader: FrameReader,
    subjects: HashMap<Vec<u8>, Py<PyString>>,
}

#[pymethods]
impl NatsFrames {
    #[new]
    #[pyo3(signature = (max_payload = 64 * 1024 * 1024))]
    fn new(max_payload: usize) -> Self {
        NatsFrames {
            reader: FrameReader::new(max_payload),
            subjects: HashMap::new(),
        }
    }

    /// `MSG` frames on subscription `sid` come out as tuples from now on.
    fn route(&mut self, sid: u64) {
        self.reader.route(sid);
    }

    /// `MSG` frames on `sid` stay bytes for the general parser again.
    fn unroute(&mut self, sid: u64) {
        self.reader.unroute(sid);
    }

    /// Forgets a partial frame (on a new connection).
    fn reset(&mut self) {
        self.reader.reset();
    }

    /// Bytes held of a frame not yet complete.
    #[getter]
    fn pending(&self) -> usize {
        self.reader.pending()
    }

    /// The complete frames of the stream so far, `data` included, in order: a `list` of
    /// `(sid, subject, payload)` for each run of routed messages, `bytes` for any other
    /// frame. Raises `ValueError` for a stream that cannot be read further.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        let mut run: Option<Bound<'py, PyList>> = None;
        let mut failure: Option<PyErr> = None;
        let subjects = &mut self.subjects;
        let result = self.reader.feed(data, |frame| {
            if failure.is_some() {
                return;
            }
            let step = (|| -> PyResult<()> {
                match frame {
                    Frame::Msg {
                        sid,
                        subject,
                        payload,
                        ..
                    } => {
                        let subject = subject_str(py, subjects, subject);
                        let item = PyTuple::new(
                            py,
                            [
                                sid.into_pyobject(py)?.into_any(),
                                subject.into_any(),
                                PyBytes::new(py, payload).into_any(),
                            ],
                        )?;
                        match &run {
                            Some(list) => list.append(item)?,
                            None => {
                                let list = PyList::new(py, [item])?;
                                out.append(&list)?;
                                run = Some(list);
                            }
                        }
                    }
                    Frame::Other(bytes) => {
                        run = None;
                        out.append(PyBytes::new(py, bytes))?;
                    }
                }
                Ok(())
            })();
            if let Err(err) = step {
                failure = Some(err);
            }
        });
        if let Some(err) = failure {
            return Err(err);
        }
        result.map_err(|err| PyValueError::new_err(err.to_string()))?;
        Ok(out)
    }
}

/// The `str` of a subject, from the cache when seen before. Subjects are ASCII in
/// practice; invalid UTF-8 is replaced (U+FFFD) rather than the message dropped.
fn subject_str<'py>(
    py: Python<'py>,
    cache: &mut HashMap<Vec<u8>, Py<PyString>>,
    subject: &[u8],
) -> Bound<'py, PyString> {
    if let Some(cached) = cache.get(subject) {
        return cached.bind(py).clone();
    }
    let text = PyString::new(py, &String::from_utf8_lossy(subject));
    if cache.len() >= SUBJECT_CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(subject.to_vec(), text.clone().unbind());
    text
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NatsFrames>()
}
