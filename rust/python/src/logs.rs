//! `LogBatcher`: the log forwarder's bounded buffer and frame writer, in Rust.

use std::sync::{Mutex, MutexGuard, PoisonError};

use compact_str::CompactString;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDateTime, PyDict, PyString, PyType};
use turnout_core::{
    write_batch_frame, write_go_json, write_log_frame, LogBuffer, LogEntry, LogLevel, LogOverflow,
    Offered, WireTime,
};

use crate::args::not_a_str;
use crate::clock::wire_time;

/// A text field: None is empty; anything but a `str` is a `TypeError`.
fn text_field(value: &Bound<'_, PyAny>, what: &str) -> PyResult<CompactString> {
    if value.is_none() {
        return Ok(CompactString::default());
    }
    match value.cast::<PyString>() {
        Ok(s) => Ok(CompactString::new(s.to_str()?)),
        Err(_) => Err(not_a_str(value, what)),
    }
}

/// The fields of a log entry, in the order [`entry_from`] reads them.
const ENTRY_FIELDS: [&str; 11] = [
    "timestamp",
    "level",
    "message",
    "trace_id",
    "span_id",
    "workflow_id",
    "action_id",
    "correlation_id",
    "fields",
    "source_file",
    "source_line",
];

/// Where an exact `turnout.logs.LogEntry` keeps each field. It is a slotted dataclass:
/// every field is a member descriptor reading an object pointer at a fixed offset, so the
/// slots can be read directly, which saves an attribute lookup per field (most of the
/// cost of taking an entry in). Any other type, a subclass included, goes through
/// `getattr`.
struct SlotLayout {
    class: Py<PyType>,
    offsets: [isize; ENTRY_FIELDS.len()],
}

fn slot_layout(py: Python<'_>) -> Option<&SlotLayout> {
    static LAYOUT: PyOnceLock<Option<SlotLayout>> = PyOnceLock::new();
    LAYOUT
        .get_or_init(py, || {
            let class = py
                .import("turnout.logs")
                .and_then(|m| m.getattr("LogEntry"))
                .ok()?
                .cast_into::<PyType>()
                .ok()?;
            let attributes = class.getattr("__dict__").ok()?;
            let mut offsets = [0isize; ENTRY_FIELDS.len()];
            for (offset, name) in offsets.iter_mut().zip(ENTRY_FIELDS) {
                let descriptor = attributes.get_item(name).ok()?;
                // SAFETY: the object is checked to be a member descriptor, whose C layout
                // is `PyMemberDescrObject`; its `PyMemberDef` lives as long as the class,
                // which the layout keeps alive.
                unsafe {
                    let member_type = &raw mut ffi::PyMemberDescr_Type;
                    if ffi::Py_TYPE(descriptor.as_ptr()) != member_type {
                        return None;
                    }
                    let member =
                        &*(*descriptor.as_ptr().cast::<ffi::PyMemberDescrObject>()).d_member;
                    if member.type_code != ffi::Py_T_OBJECT_EX {
                        return None;
                    }
                    *offset = member.offset;
                }
            }
            Some(SlotLayout {
                class: class.unbind(),
                offsets,
            })
        })
        .as_ref()
}

/// Reads the fields of one entry, through its slots when it has the known layout.
struct FieldReader<'a, 'py> {
    entry: &'a Bound<'py, PyAny>,
    offsets: Option<&'a [isize; ENTRY_FIELDS.len()]>,
}

impl<'a, 'py> FieldReader<'a, 'py> {
    fn new(entry: &'a Bound<'py, PyAny>) -> Self {
        let py = entry.py();
        let offsets = slot_layout(py)
            .filter(|l| entry.get_type().is(l.class.bind(py)))
            .map(|l| &l.offsets);
        Self { entry, offsets }
    }

    /// The field `ENTRY_FIELDS[at]`.
    fn field(&self, at: usize) -> PyResult<Bound<'py, PyAny>> {
        if let Some(offsets) = self.offsets {
            // SAFETY: `entry` is exactly the class the offsets were read from, and the
            // slot holds an owned object pointer, or NULL while the field is unset.
            let slot: *mut ffi::PyObject =
                unsafe { *self.entry.as_ptr().cast::<u8>().offset(offsets[at]).cast() };
            if !slot.is_null() {
                // SAFETY: a live object, borrowed from the entry the caller holds.
                return Ok(unsafe { Bound::from_borrowed_ptr(self.entry.py(), slot) });
            }
        }
        // Also raises the AttributeError of an unset slot.
        self.entry.getattr(ENTRY_FIELDS[at])
    }
}

/// A level given as a `LogLevel` member (found by identity, the common case) or its
/// value.
fn level_of(value: &Bound<'_, PyAny>) -> PyResult<LogLevel> {
    static MEMBERS: PyOnceLock<Vec<(Py<PyAny>, LogLevel)>> = PyOnceLock::new();
    let py = value.py();
    let members = MEMBERS.get_or_try_init(py, || {
        let class = py.import("turnout.logs")?.getattr("LogLevel")?;
        LogLevel::ALL
            .iter()
            .map(|l| Ok((class.call1((l.as_str(),))?.unbind(), *l)))
            .collect::<PyResult<Vec<_>>>()
    })?;
    if let Some((_, level)) = members.iter().find(|(m, _)| m.as_ptr() == value.as_ptr()) {
        return Ok(*level);
    }
    let text = text_field(value, "level")?;
    LogLevel::parse(&text).ok_or_else(|| {
        PyValueError::new_err(format!(
            "log level must be debug, info, warn, error or fatal, not {text:?}"
        ))
    })
}

/// Serialises `fields` as Go writes a `map[string]interface{}`: orjson writes the JSON
/// (keys sorted; `turnout._go_json.log_field_text` writes datetimes as Go does and
/// anything else JSON cannot carry with `str()`, so a log call never fails on them; NaN
/// and infinities become null), then [`write_go_json`] respells floats and strings as Go.
fn fields_json(fields: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if fields.is_none() || fields.cast::<PyDict>().is_ok_and(|d| d.is_empty()) {
        return Ok(None);
    }
    static DUMPS: PyOnceLock<[Py<PyAny>; 3]> = PyOnceLock::new();
    let py = fields.py();
    let [dumps, default, option] = DUMPS.get_or_try_init(py, || {
        let orjson = py.import("orjson")?;
        let sorted = orjson.getattr("OPT_SORT_KEYS")?;
        let datetimes = orjson.getattr("OPT_PASSTHROUGH_DATETIME")?;
        Ok::<_, PyErr>([
            orjson.getattr("dumps")?.unbind(),
            py.import("turnout._go_json")?
                .getattr("log_field_text")?
                .unbind(),
            sorted.bitor(datetimes)?.unbind(),
        ])
    })?;
    // Positionally: orjson matches keyword names by identity with its interned strings.
    let encoded = dumps.bind(py).call1((fields, default, option))?;
    let json = std::str::from_utf8(encoded.cast::<PyBytes>()?.as_bytes())
        .map_err(|e| PyValueError::new_err(format!("log fields: {e}")))?;
    let mut out = String::with_capacity(json.len() + 16);
    write_go_json(&mut out, json);
    Ok(Some(out))
}

/// Reads a `turnout.logs.LogEntry` (any object with its attributes).
fn entry_from(entry: &Bound<'_, PyAny>) -> PyResult<LogEntry> {
    let fields = FieldReader::new(entry);
    let text = |at: usize| text_field(&fields.field(at)?, ENTRY_FIELDS[at]);
    let timestamp = fields.field(0)?;
    let source_line = fields.field(10)?;
    Ok(LogEntry {
        timestamp: if timestamp.is_none() {
            WireTime::now()
        } else {
            wire_time(timestamp.cast::<PyDateTime>()?)?
        },
        level: level_of(&fields.field(1)?)?,
        message: text(2)?,
        trace_id: text(3)?,
        span_id: text(4)?,
        workflow_id: text(5)?,
        action_id: text(6)?,
        correlation_id: text(7)?,
        fields: fields_json(&fields.field(8)?)?,
        source_file: text(9)?,
        source_line: if source_line.is_none() {
            0
        } else {
            source_line.extract()?
        },
    })
}

/// Buffers log entries and writes them as `log_batch` frames.
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

    /// Whether a full batch is waiting once `entry` is in (or dropped by the policy).
    fn buffer_entry(&self, entry: LogEntry) -> bool {
        let mut buffer = self.buffer();
        match buffer.offer(entry) {
            Offered::BatchReady => true,
            Offered::DisplacedOldest => buffer.batch_ready(),
            Offered::Held | Offered::Dropped => false,
        }
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
        Ok(self.buffer_entry(entry_from(entry)?))
    }

    /// Buffers one entry given field by field, stamped now (what a logging handler has,
    /// without building a `LogEntry` first); True when a full batch is waiting.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        level, message, trace_id, span_id, workflow_id, action_id, correlation_id, fields,
        source_file, source_line
    ))]
    fn offer_fields(
        &self,
        level: &Bound<'_, PyAny>,
        message: &Bound<'_, PyAny>,
        trace_id: &str,
        span_id: &str,
        workflow_id: &str,
        action_id: &str,
        correlation_id: &str,
        fields: &Bound<'_, PyAny>,
        source_file: &Bound<'_, PyAny>,
        source_line: i64,
    ) -> PyResult<bool> {
        let entry = LogEntry {
            timestamp: WireTime::now(),
            level: level_of(level)?,
            message: text_field(message, "message")?,
            trace_id: CompactString::new(trace_id),
            span_id: CompactString::new(span_id),
            workflow_id: CompactString::new(workflow_id),
            action_id: CompactString::new(action_id),
            correlation_id: CompactString::new(correlation_id),
            fields: fields_json(fields)?,
            source_file: text_field(source_file, "source_file")?,
            source_line,
        };
        Ok(self.buffer_entry(entry))
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
        // The entries are freed here too, off the GIL.
        let frame = py.detach(move || {
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
