//! `LogBatcher`: the log forwarder's bounded buffer and frame writer, in Rust.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use compact_str::CompactString;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType,
};
use turnout_core::{
    write_batch_frame, write_go_json, write_log_frame, LogBuffer, LogEntry, LogLevel, LogOverflow,
    Offered, WireTime,
};

use crate::args::{not_a_str, not_registered};
use crate::clock::wire_time;

/// A text field: None is empty; anything but a `str` is a `TypeError`.
fn text_field(
    value: &Bound<'_, PyAny>,
    what: &str,
    repaired: &Cell<bool>,
) -> PyResult<CompactString> {
    if value.is_none() {
        return Ok(CompactString::default());
    }
    match value.cast::<PyString>() {
        Ok(s) => match s.to_str() {
            Ok(text) => Ok(CompactString::new(text)),
            Err(_) => repaired_text(s, repaired),
        },
        Err(_) => Err(not_a_str(value, what)),
    }
}

/// How deep a log entry's `fields` may nest (the `fields` map itself is level 1): a
/// container deeper than this, a cyclic one included, is written as [`CUT`].
pub const MAX_FIELD_DEPTH: usize = 32;
/// How many values a log entry's `fields` may hold in all: past it, the rest is cut too
/// (a cycle that branches would otherwise grow without end before reaching the depth).
pub const MAX_FIELD_VALUES: usize = 10_000;
/// What a cut container is written as.
const CUT: &str = "[cut]";

/// A text, with each lone surrogate (a `str` from `os.fsdecode`, say) replaced by
/// U+FFFD, which sets `repaired`: a log call never fails on text UTF-8 cannot carry.
#[cold]
fn repaired_text(s: &Bound<'_, PyString>, repaired: &Cell<bool>) -> PyResult<CompactString> {
    if let Ok(text) = s.to_str() {
        return Ok(CompactString::new(text));
    }
    repaired.set(true);
    let bytes = s.call_method1(intern!(s.py(), "encode"), ("utf-8", "surrogatepass"))?;
    let mut bytes = bytes.cast::<PyBytes>()?.as_bytes();
    let mut out = CompactString::with_capacity(bytes.len());
    // `surrogatepass` spells each lone surrogate as 3 bytes that are not UTF-8; all the
    // rest is.
    loop {
        match std::str::from_utf8(bytes) {
            Ok(rest) => {
                out.push_str(rest);
                return Ok(out);
            }
            Err(e) => {
                let (good, bad) = bytes.split_at(e.valid_up_to());
                // SAFETY: `from_utf8` checked these bytes.
                out.push_str(unsafe { std::str::from_utf8_unchecked(good) });
                out.push('\u{FFFD}');
                bytes = &bad[bad.len().min(3)..];
            }
        }
    }
}

/// A copy of `value` that orjson writes without fail: text repaired, keys made text,
/// containers past [`MAX_FIELD_DEPTH`] or [`MAX_FIELD_VALUES`] cut, anything else given
/// to `field_text` (whose own failure is written as `<unprintable TYPE>`).
fn repaired_value<'py>(
    value: &Bound<'py, PyAny>,
    field_text: &Bound<'py, PyAny>,
    depth: usize,
    budget: &mut usize,
    repaired: &Cell<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = value.py();
    let text = |s: &Bound<'py, PyString>| -> PyResult<Bound<'py, PyAny>> {
        Ok(PyString::new(py, &repaired_text(s, repaired)?).into_any())
    };
    if value.is_none() || value.cast::<PyBool>().is_ok() || value.cast::<PyFloat>().is_ok() {
        return Ok(value.clone());
    }
    if let Ok(s) = value.cast::<PyString>() {
        return text(s);
    }
    if value.cast::<PyInt>().is_ok() {
        if value.extract::<i64>().is_ok() || value.extract::<u64>().is_ok() {
            return Ok(value.clone());
        }
        repaired.set(true);
        return Ok(value.str()?.into_any());
    }
    let is_dict = value.cast::<PyDict>().is_ok();
    if is_dict || value.cast::<PyList>().is_ok() || value.cast::<PyTuple>().is_ok() {
        if depth > MAX_FIELD_DEPTH || *budget == 0 {
            repaired.set(true);
            return Ok(PyString::new(py, CUT).into_any());
        }
        if let Ok(dict) = value.cast::<PyDict>() {
            let copy = PyDict::new(py);
            for (key, item) in dict.iter() {
                *budget = budget.saturating_sub(1);
                let key = match key.cast::<PyString>() {
                    Ok(s) => text(s)?,
                    Err(_) => {
                        repaired.set(true);
                        text(&printable(&key))?
                    }
                };
                copy.set_item(
                    key,
                    repaired_value(&item, field_text, depth + 1, budget, repaired)?,
                )?;
            }
            return Ok(copy.into_any());
        }
        let copy = PyList::empty(py);
        for item in value.try_iter()? {
            *budget = budget.saturating_sub(1);
            copy.append(repaired_value(
                &item?,
                field_text,
                depth + 1,
                budget,
                repaired,
            )?)?;
        }
        return Ok(copy.into_any());
    }
    match field_text.call1((value,)) {
        Ok(written) => match written.cast::<PyString>() {
            Ok(s) => text(s),
            Err(_) => {
                repaired.set(true);
                text(&printable(value))
            }
        },
        Err(_) => {
            repaired.set(true);
            text(&printable(value))
        }
    }
}

/// `str(value)`, or `<unprintable TYPE>` when that fails.
fn printable<'py>(value: &Bound<'py, PyAny>) -> Bound<'py, PyString> {
    value.str().unwrap_or_else(|_| {
        let kind = value
            .get_type()
            .name()
            .map_or_else(|_| "?".to_string(), |n| n.to_string());
        PyString::new(value.py(), &format!("<unprintable {kind}>"))
    })
}

/// What `turnout.logs` hands over once as it is imported: the `LogEntry` class and how to
/// read its fields fast, the `LogLevel` members (in the core's order, found by identity
/// when an entry is read) and the `default` orjson calls for a field value JSON cannot
/// carry.
struct LogTypes {
    entry: EntryLayout,
    levels: Vec<Py<PyAny>>,
    field_text: Py<PyAny>,
}

/// The data descriptors of `LogEntry`'s fields (its slots), in [`LogEntry::FIELDS`] order.
///
/// Reading an attribute of an exact `LogEntry` is, by the descriptor protocol, calling
/// its class's data descriptor's `__get__`; calling that C function directly skips the
/// generic lookup, which is most of the cost of taking an entry in (about 160
/// instructions a field, 11 fields). Only the stable ABI is used (`PyType_GetSlot`), and
/// a class whose attribute lookup is not the generic one, a subclass, or any other
/// object goes through `getattr`.
struct EntryLayout {
    class: Py<PyType>,
    /// `None` when a field is not a data descriptor or the class customises lookups.
    getters: Option<Vec<(Py<PyAny>, ffi::descrgetfunc)>>,
}

impl EntryLayout {
    fn new(class: &Bound<'_, PyType>) -> PyResult<Self> {
        let py = class.py();
        let attributes = class.getattr(intern!(py, "__dict__"))?;
        // SAFETY: `PyType_GetSlot` accepts any type object from Python 3.10 on (static
        // ones included); a null result means the slot is not set.
        let slot =
            |t: &Bound<'_, PyType>, which| unsafe { ffi::PyType_GetSlot(t.as_type_ptr(), which) };
        let generic = slot(class, ffi::Py_tp_getattro)
            == ffi::PyObject_GenericGetAttr as *mut std::ffi::c_void;
        let mut getters = Vec::with_capacity(LogEntry::FIELDS.len());
        for name in LogEntry::FIELDS {
            let descriptor = attributes.get_item(name).map_err(|_| {
                PyTypeError::new_err(format!("{class} has no field {name:?} of a log entry"))
            })?;
            let kind = descriptor.get_type();
            let get = slot(&kind, ffi::Py_tp_descr_get);
            let is_data = !slot(&kind, ffi::Py_tp_descr_set).is_null();
            if get.is_null() || !is_data {
                break;
            }
            // SAFETY: the `tp_descr_get` slot holds a `descrgetfunc`.
            let get: ffi::descrgetfunc = unsafe { std::mem::transmute(get) };
            getters.push((descriptor.unbind(), get));
        }
        let complete = generic && getters.len() == LogEntry::FIELDS.len();
        Ok(Self {
            class: class.clone().unbind(),
            getters: complete.then_some(getters),
        })
    }
}

static LOG_TYPES: PyOnceLock<LogTypes> = PyOnceLock::new();

fn log_types(py: Python<'_>) -> PyResult<&LogTypes> {
    LOG_TYPES
        .get(py)
        .ok_or_else(|| not_registered("turnout.logs"))
}

/// `_register_logs(LogEntry, LogLevel, field_text)`: called once by the module defining
/// the entry; the levels are looked up by wire value (a `ValueError` if one is missing),
/// the entry must have every field of [`LogEntry::FIELDS`] (a `TypeError` if not). Later
/// calls are ignored.
#[pyfunction]
fn _register_logs(
    py: Python<'_>,
    entry_class: &Bound<'_, PyType>,
    level_class: &Bound<'_, PyType>,
    field_text: Py<PyAny>,
) -> PyResult<()> {
    if LOG_TYPES.get(py).is_some() {
        return Ok(());
    }
    let levels = LogLevel::ALL
        .iter()
        .map(|l| Ok(level_class.call1((l.as_str(),))?.unbind()))
        .collect::<PyResult<Vec<_>>>()?;
    let entry = EntryLayout::new(entry_class)?;
    let _ = LOG_TYPES.set(
        py,
        LogTypes {
            entry,
            levels,
            field_text,
        },
    );
    Ok(())
}

/// Reads the fields of one entry, through its class's descriptors when it is exactly
/// the registered class.
struct FieldReader<'a, 'py> {
    entry: &'a Bound<'py, PyAny>,
    getters: Option<&'a [(Py<PyAny>, ffi::descrgetfunc)]>,
}

impl<'a, 'py> FieldReader<'a, 'py> {
    fn new(types: &'a LogTypes, entry: &'a Bound<'py, PyAny>) -> Self {
        let py = entry.py();
        let layout = &types.entry;
        let getters = layout
            .getters
            .as_deref()
            .filter(|_| entry.get_type().is(layout.class.bind(py)));
        Self { entry, getters }
    }

    /// The field `LogEntry::FIELDS[at]` (an unset slot raises its `AttributeError`).
    fn field(&self, at: usize) -> PyResult<Bound<'py, PyAny>> {
        let py = self.entry.py();
        let Some(getters) = self.getters else {
            return self.entry.getattr(LogEntry::FIELDS[at]);
        };
        let (descriptor, get) = &getters[at];
        // SAFETY: `get` is the `tp_descr_get` of `descriptor`'s type, called as the
        // descriptor protocol calls it: (descriptor, instance, type of the instance).
        unsafe {
            let value = get(
                descriptor.as_ptr(),
                self.entry.as_ptr(),
                ffi::Py_TYPE(self.entry.as_ptr()).cast(),
            );
            Bound::from_owned_ptr_or_err(py, value)
        }
    }
}

/// A level given as a `LogLevel` member (found by identity, the common case) or its
/// value.
fn level_of(types: &LogTypes, value: &Bound<'_, PyAny>) -> PyResult<LogLevel> {
    let unused = Cell::new(false);
    if let Some(at) = types
        .levels
        .iter()
        .position(|m| m.as_ptr() == value.as_ptr())
    {
        return Ok(LogLevel::ALL[at]);
    }
    let text = text_field(value, "level", &unused)?;
    LogLevel::parse(&text).ok_or_else(|| {
        PyValueError::new_err(format!(
            "log level must be debug, info, warn, error or fatal, not {text:?}"
        ))
    })
}

/// Serialises `fields` as Go writes a `map[string]interface{}`: orjson writes the JSON
/// (keys sorted; the `field_text` handed over at import writes datetimes as Go does and
/// anything else JSON cannot carry with `str()`, so a log call never fails on them; NaN
/// and infinities become null), then [`write_go_json`] respells floats and strings as Go.
fn fields_json(
    types: &LogTypes,
    fields: &Bound<'_, PyAny>,
    repaired: &Cell<bool>,
) -> PyResult<Option<String>> {
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
            types.field_text.clone_ref(py),
            sorted.bitor(datetimes)?.unbind(),
        ])
    })?;
    // Positionally: orjson matches keyword names by identity with its interned strings.
    let dumps = dumps.bind(py);
    let encoded = match dumps.call1((fields, default, option)) {
        Ok(encoded) => encoded,
        // A cycle, too deep a tree, a lone surrogate, a key that is not text: write a
        // repaired copy rather than lose the entry.
        Err(_) => {
            repaired.set(true);
            let mut budget = MAX_FIELD_VALUES;
            let copy = repaired_value(fields, default.bind(py), 1, &mut budget, repaired)?;
            dumps.call1((copy, default, option))?
        }
    };
    let json = std::str::from_utf8(encoded.cast::<PyBytes>()?.as_bytes())
        .map_err(|e| PyValueError::new_err(format!("log fields: {e}")))?;
    let mut out = String::with_capacity(json.len() + 16);
    write_go_json(&mut out, json);
    Ok(Some(out))
}

/// Reads a log entry: any object with `LogEntry`'s attributes. `repaired` is set when
/// text or fields had to be repaired (see [`repaired_text`], [`repaired_value`]).
fn entry_from(entry: &Bound<'_, PyAny>, repaired: &Cell<bool>) -> PyResult<LogEntry> {
    let types = log_types(entry.py())?;
    let fields = FieldReader::new(types, entry);
    let text = |at: usize| text_field(&fields.field(at)?, LogEntry::FIELDS[at], repaired);
    let timestamp = fields.field(0)?;
    let source_line = fields.field(10)?;
    Ok(LogEntry {
        timestamp: if timestamp.is_none() {
            WireTime::now()
        } else {
            wire_time(timestamp.cast::<PyDateTime>()?)?
        },
        level: level_of(types, &fields.field(1)?)?,
        message: text(2)?,
        trace_id: text(3)?,
        span_id: text(4)?,
        workflow_id: text(5)?,
        action_id: text(6)?,
        correlation_id: text(7)?,
        fields: fields_json(types, &fields.field(8)?, repaired)?,
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
/// released. An entry whose text or fields had to be repaired (lone surrogates replaced
/// by U+FFFD, fields cut) is buffered all the same and counted in `repaired`.
#[pyclass(frozen, module = "turnout.logs", name = "LogBatcher")]
pub struct LogBatcher {
    buffer: Mutex<LogBuffer>,
    repaired: AtomicU64,
}

impl LogBatcher {
    fn buffer(&self) -> MutexGuard<'_, LogBuffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a full batch is waiting once `entry` is in (or dropped by the policy).
    fn buffer_entry(&self, entry: LogEntry, repaired: &Cell<bool>) -> bool {
        if repaired.get() {
            self.repaired.fetch_add(1, Ordering::Relaxed);
        }
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
            repaired: AtomicU64::new(0),
        })
    }

    /// Buffers one entry; True when a full batch is waiting to be sent.
    fn offer(&self, entry: &Bound<'_, PyAny>) -> PyResult<bool> {
        let repaired = Cell::new(false);
        Ok(self.buffer_entry(entry_from(entry, &repaired)?, &repaired))
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
        trace_id: &Bound<'_, PyAny>,
        span_id: &Bound<'_, PyAny>,
        workflow_id: &Bound<'_, PyAny>,
        action_id: &Bound<'_, PyAny>,
        correlation_id: &Bound<'_, PyAny>,
        fields: &Bound<'_, PyAny>,
        source_file: &Bound<'_, PyAny>,
        source_line: i64,
    ) -> PyResult<bool> {
        let types = log_types(level.py())?;
        let repaired = Cell::new(false);
        let entry = LogEntry {
            timestamp: WireTime::now(),
            level: level_of(types, level)?,
            message: text_field(message, "message", &repaired)?,
            trace_id: text_field(trace_id, "trace_id", &repaired)?,
            span_id: text_field(span_id, "span_id", &repaired)?,
            workflow_id: text_field(workflow_id, "workflow_id", &repaired)?,
            action_id: text_field(action_id, "action_id", &repaired)?,
            correlation_id: text_field(correlation_id, "correlation_id", &repaired)?,
            fields: fields_json(types, fields, &repaired)?,
            source_file: text_field(source_file, "source_file", &repaired)?,
            source_line,
        };
        Ok(self.buffer_entry(entry, &repaired))
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
        let entry = entry_from(entry, &Cell::new(false))?;
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
        let entry = entry_from(entry, &Cell::new(false))?;
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

    /// Entries buffered after their text or fields were repaired.
    #[getter]
    fn repaired(&self) -> u64 {
        self.repaired.load(Ordering::Relaxed)
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
    m.add_class::<LogBatcher>()?;
    m.add_function(wrap_pyfunction!(_register_logs, m)?)
}
