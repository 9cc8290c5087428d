//! `LogBatcher`: the log forwarder's bounded buffer and frame writer, in Rust.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyString, PyTzInfoAccess};
use pyo3::types::{PyDateAccess, PyTimeAccess};
use turnout_core::{
    write_batch_frame, write_log_frame, LogBuffer, LogEntry, LogLevel, LogOverflow, Offered,
    WireTime,
};

/// A Python `datetime` as a wire time; a naive one is taken as UTC, and the extra
/// nanoseconds of a `turnout._wire.PreciseDatetime` are kept.
fn wire_time(dt: &Bound<'_, PyDateTime>) -> PyResult<WireTime> {
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
        Some(n) => n.extract::<u32>()?,
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

fn str_attr(entry: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<String> {
    let value = entry.getattr(name)?;
    if value.is_none() {
        return Ok(String::new());
    }
    Ok(value.cast::<PyString>()?.to_str()?.to_owned())
}

/// Serialises `fields` with orjson, keys sorted as Go sorts map keys; values orjson
/// cannot encode are written with `str()`, so a log call never fails on them.
fn fields_json(fields: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if fields.is_none() || fields.cast::<PyDict>().is_ok_and(|d| d.is_empty()) {
        return Ok(None);
    }
    static DUMPS: PyOnceLock<[Py<PyAny>; 3]> = PyOnceLock::new();
    let py = fields.py();
    let [dumps, default, option] = DUMPS.get_or_try_init(py, || {
        let orjson = py.import("orjson")?;
        Ok::<_, PyErr>([
            orjson.getattr("dumps")?.unbind(),
            py.import("builtins")?.getattr("str")?.unbind(),
            orjson.getattr("OPT_SORT_KEYS")?.unbind(),
        ])
    })?;
    // Positionally: orjson matches keyword names by identity with its interned strings.
    let encoded = dumps.bind(py).call1((fields, default, option))?;
    let bytes = encoded.cast::<PyBytes>()?.as_bytes();
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// Reads a `turnout.logs.LogEntry` (any object with its attributes).
fn entry_from(entry: &Bound<'_, PyAny>) -> PyResult<LogEntry> {
    let py = entry.py();
    let timestamp = entry.getattr(intern!(py, "timestamp"))?;
    let timestamp = if timestamp.is_none() {
        WireTime::now()
    } else {
        wire_time(timestamp.cast::<PyDateTime>()?)?
    };
    let level = str_attr(entry, intern!(py, "level"))?;
    let level = LogLevel::parse(&level).ok_or_else(|| {
        PyValueError::new_err(format!(
            "log level must be debug, info, warn, error or fatal, not {level:?}"
        ))
    })?;
    let source_line = entry.getattr(intern!(py, "source_line"))?;
    Ok(LogEntry {
        timestamp,
        level,
        message: str_attr(entry, intern!(py, "message"))?,
        trace_id: str_attr(entry, intern!(py, "trace_id"))?,
        span_id: str_attr(entry, intern!(py, "span_id"))?,
        workflow_id: str_attr(entry, intern!(py, "workflow_id"))?,
        action_id: str_attr(entry, intern!(py, "action_id"))?,
        correlation_id: str_attr(entry, intern!(py, "correlation_id"))?,
        fields: fields_json(&entry.getattr(intern!(py, "fields"))?)?,
        source_file: str_attr(entry, intern!(py, "source_file"))?,
        source_line: if source_line.is_none() {
            0
        } else {
            source_line.extract()?
        },
    })
}

/// Buffers log entries and writes them as `log_batch` frames (SPEC 6, "Logs").
///
/// Bounded: past `capacity` entries, `overflow` (`"drop_oldest"` or `"drop_newest"`)
/// drops one and counts it in `dropped`. Thread-safe; frames are written with the GIL
/// released.
#[pyclass(frozen, module = "turnout.logs", name = "LogBatcher")]
pub struct LogBatcher {
    buffer: Mutex<LogBuffer>,
}

impl LogBatcher {
    fn buffer(&self) -> MutexGuard<'_, LogBuffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl LogBatcher {
    #[new]
    #[pyo3(signature = (batch_size = 100, capacity = 10_000, overflow = "drop_oldest"))]
    fn new(batch_size: usize, capacity: usize, overflow: &str) -> PyResult<Self> {
        let overflow = match overflow {
            "drop_oldest" => LogOverflow::DropOldest,
            "drop_newest" => LogOverflow::DropNewest,
            other => {
                return Err(PyValueError::new_err(format!(
                    "overflow must be 'drop_oldest' or 'drop_newest', not {other:?}"
                )))
            }
        };
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        Ok(Self {
            buffer: Mutex::new(LogBuffer::new(batch_size, capacity, overflow)),
        })
    }

    /// Buffers one entry; True when a full batch is waiting to be sent.
    fn offer(&self, entry: &Bound<'_, PyAny>) -> PyResult<bool> {
        let entry = entry_from(entry)?;
        let mut buffer = self.buffer();
        Ok(match buffer.offer(entry) {
            Offered::BatchReady => true,
            Offered::DisplacedOldest => buffer.batch_ready(),
            Offered::Held | Offered::Dropped => false,
        })
    }

    /// Takes up to one batch out as a `log_batch` frame with this message id; None
    /// when nothing is waiting.
    fn take_frame<'py>(
        &self,
        py: Python<'py>,
        message_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let batch = self.buffer().take_batch();
        if batch.is_empty() {
            return Ok(None);
        }
        let frame = py.detach(|| {
            let mut out = String::with_capacity(batch.len() * 256);
            write_batch_frame(&mut out, message_id, WireTime::now(), &batch);
            out
        });
        Ok(Some(PyBytes::new(py, frame.as_bytes())))
    }

    /// A single-entry `log` frame for `entry` (not buffered).
    #[staticmethod]
    fn log_frame<'py>(
        py: Python<'py>,
        entry: &Bound<'py, PyAny>,
        message_id: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let entry = entry_from(entry)?;
        let mut out = String::with_capacity(256);
        write_log_frame(&mut out, message_id, WireTime::now(), &entry);
        Ok(PyBytes::new(py, out.as_bytes()))
    }

    /// The entry's JSON as a message payload carries it (keys sorted, empty fields omitted).
    #[staticmethod]
    fn payload_json<'py>(
        py: Python<'py>,
        entry: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let entry = entry_from(entry)?;
        let mut out = String::with_capacity(256);
        entry.write_payload_json(&mut out);
        Ok(PyBytes::new(py, out.as_bytes()))
    }

    /// Entries waiting.
    #[getter]
    fn pending(&self) -> usize {
        self.buffer().len()
    }

    /// Whether a full batch is waiting.
    #[getter]
    fn batch_ready(&self) -> bool {
        self.buffer().batch_ready()
    }

    #[getter]
    fn accepted(&self) -> u64 {
        self.buffer().accepted
    }

    #[getter]
    fn dropped(&self) -> u64 {
        self.buffer().dropped
    }

    #[getter]
    fn batch_size(&self) -> usize {
        self.buffer().batch_size()
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.buffer().capacity()
    }

    fn __repr__(&self) -> String {
        let b = self.buffer();
        format!(
            "LogBatcher(batch_size={}, capacity={}, pending={}, dropped={})",
            b.batch_size(),
            b.capacity(),
            b.len(),
            b.dropped
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LogBatcher>()
}
