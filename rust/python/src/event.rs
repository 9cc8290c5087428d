//! `Event`, the mesh event envelope, as an immutable Python type.
//!
//! The envelope's rules (field names and folding, Go's bytes, Go's times) are the core's
//! `event`, `go_json` and `go_time`; this file converts. A timestamp read from the wire
//! or stamped by the bus stays a core `WireTime` until Python asks for it, when the
//! `datetime` is made once; one given by Python is kept as given. `data` is read by
//! serde_json's parser straight into Python objects, numbers as Go reads them into an
//! `interface{}` except that integers that fit 64 bits stay `int` (`-0` is the float
//! -0.0, as Go keeps it).

use std::cell::RefCell;
use std::fmt;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyMemoryView,
    PyString, PyTuple,
};
use pyo3::{ffi, intern, IntoPyObjectExt};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use turnout_core::event::{write_head, Field, SUBJECT_PREFIX};
use turnout_core::WireTime;

use crate::clock::{datetime_of, wire_time};
use crate::go_json::{write_dict, Unencodable};

pyo3::create_exception!(
    turnout.events,
    EventDecodeError,
    PyValueError,
    "Bytes that are not an event: malformed JSON, a field of the wrong type, or no type."
);
pyo3::create_exception!(
    turnout.events,
    EventEncodeError,
    PyValueError,
    "An event that Go could not marshal either (NaN, infinities, non-string map keys...)."
);

enum Stamp {
    /// Given by Python: None (unset) or what the caller passed.
    Given(Py<PyAny>),
    /// Read from the wire or stamped: never the zero time; the `datetime` made on demand.
    Wire(WireTime, PyOnceLock<Py<PyAny>>),
}

impl Stamp {
    fn wire(time: WireTime) -> Self {
        Self::Wire(time, PyOnceLock::new())
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Self::Given(value) => Ok(value.bind(py).clone()),
            Self::Wire(time, made) => made
                .get_or_try_init(py, || datetime_of(py, time).map(Bound::unbind))
                .map(|value| value.bind(py).clone()),
        }
    }
}

/// The envelope of every mesh event: `type`, `node`, `timestamp` (None is Go's zero time,
/// unset) and `data` (None is Go's nil map). Immutable: `replace()` makes changed copies.
#[pyclass(frozen, module = "turnout.events", name = "Event")]
pub struct Event {
    kind: Py<PyAny>,
    node: Py<PyAny>,
    stamp: Stamp,
    data: Py<PyAny>,
}

impl Event {
    /// A copy stamped by a bus: the time now, and `node` when the event has none.
    pub(crate) fn stamped(&self, py: Python<'_>, node: &Bound<'_, PyAny>) -> PyResult<Self> {
        self.stamped_at(py, node, WireTime::now())
    }

    /// A copy stamped by a bus at `time` (the bus reuses its clock reading).
    pub(crate) fn stamped_at(
        &self,
        py: Python<'_>,
        node: &Bound<'_, PyAny>,
        time: WireTime,
    ) -> PyResult<Self> {
        let own = self.node.bind(py);
        Ok(Self {
            kind: self.kind.clone_ref(py),
            node: if own.is_truthy()? {
                own.clone().unbind()
            } else {
                node.clone().unbind()
            },
            stamp: Stamp::wire(time),
            data: self.data.clone_ref(py),
        })
    }

    /// The Python object of this event, left untracked by the garbage collector when
    /// nothing it holds is tracked: it can then be on no reference cycle, and the
    /// collector need not walk every event a handler keeps. (A dict held untracked may
    /// become tracked when it is changed later; what it then refers to is only kept
    /// alive, never freed early.)
    pub(crate) fn into_object(self, py: Python<'_>) -> PyResult<Bound<'_, Self>> {
        // SAFETY: each pointer is a live object this event holds a reference to.
        let tracked =
            |value: &Py<PyAny>| unsafe { ffi::PyObject_GC_IsTracked(value.as_ptr()) } != 0;
        let untracked = !tracked(&self.kind)
            && !tracked(&self.node)
            && !tracked(&self.data)
            && match &self.stamp {
                Stamp::Given(value) => !tracked(value),
                Stamp::Wire(..) => true,
            };
        let object = Bound::new(py, self)?;
        if untracked {
            // SAFETY: as in `MatchResult::wrap`: untracking is always allowed, and the
            // deallocator tolerates an untracked object.
            unsafe { ffi::PyObject_GC_UnTrack(object.as_ptr().cast()) };
        }
        Ok(object)
    }

    /// The event's time when a bus stamped it or it was decoded (None: as given).
    pub(crate) fn wire_time(&self) -> Option<WireTime> {
        match &self.stamp {
            Stamp::Wire(time, _) => Some(*time),
            Stamp::Given(_) => None,
        }
    }

    /// The event's type as given (the bus's key for its subject).
    pub(crate) fn kind_object(&self) -> &Py<PyAny> {
        &self.kind
    }
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (r#type, node = None, timestamp = None, data = None))]
    fn new(
        py: Python<'_>,
        r#type: Py<PyAny>,
        node: Option<Py<PyAny>>,
        timestamp: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> Self {
        Self {
            kind: r#type,
            node: node.unwrap_or_else(|| intern!(py, "").clone().into_any().unbind()),
            stamp: Stamp::Given(timestamp.unwrap_or_else(|| py.None())),
            data: data.unwrap_or_else(|| py.None()),
        }
    }

    #[getter(r#type)]
    fn kind(&self, py: Python<'_>) -> Py<PyAny> {
        self.kind.clone_ref(py)
    }

    #[getter]
    fn node(&self, py: Python<'_>) -> Py<PyAny> {
        self.node.clone_ref(py)
    }

    #[getter]
    fn timestamp<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stamp.get(py)
    }

    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyAny> {
        self.data.clone_ref(py)
    }

    /// The subject this event is published on: `"events." + type`.
    #[getter]
    fn subject(&self, py: Python<'_>) -> PyResult<String> {
        let kind: PyBackedStr = self.kind.bind(py).extract()?;
        Ok(format!("{SUBJECT_PREFIX}{}", &*kind))
    }

    /// A copy with the given fields changed.
    #[pyo3(signature = (**changes))]
    fn replace(&self, py: Python<'_>, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut copy = Self {
            kind: self.kind.clone_ref(py),
            node: self.node.clone_ref(py),
            stamp: match &self.stamp {
                Stamp::Given(value) => Stamp::Given(value.clone_ref(py)),
                Stamp::Wire(time, _) => Stamp::wire(*time),
            },
            data: self.data.clone_ref(py),
        };
        for (key, value) in changes.into_iter().flatten() {
            match key.extract::<PyBackedStr>()?.as_ref() {
                "type" => copy.kind = value.unbind(),
                "node" => copy.node = value.unbind(),
                "timestamp" => copy.stamp = Stamp::Given(value.unbind()),
                "data" => copy.data = value.unbind(),
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "Event has no field {other:?} (type, node, timestamp, data)"
                    )))
                }
            }
        }
        Ok(copy)
    }

    /// A copy stamped as a bus stamps what it publishes (private to the bus).
    fn _stamped(&self, py: Python<'_>, node: &Bound<'_, PyAny>) -> PyResult<Self> {
        self.stamped(py, node)
    }

    /// The event as Go's `json.Marshal` writes jb-mesh's struct.
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let kind = self.kind.bind(py).cast::<PyString>();
        let node = self.node.bind(py).cast::<PyString>();
        let (Ok(kind), Ok(node)) = (kind, node) else {
            return Err(EventEncodeError::new_err("event type and node must be str"));
        };
        let encoding = |e: PyErr| EventEncodeError::new_err(format!("cannot encode event: {e}"));
        let (kind, node) = (
            kind.to_str().map_err(encoding)?,
            node.to_str().map_err(encoding)?,
        );
        let time = match &self.stamp {
            Stamp::Wire(time, _) => Some(*time),
            Stamp::Given(value) => {
                let value = value.bind(py);
                if value.is_none() {
                    None
                } else if let Ok(dt) = value.cast::<PyDateTime>() {
                    Some(wire_time(dt)?)
                } else {
                    return Err(EventEncodeError::new_err(format!(
                        "event timestamp must be a datetime, not {}",
                        type_name(value)
                    )));
                }
            }
        };
        let mut out = String::with_capacity(128);
        write_head(&mut out, kind, node, time.as_ref());
        let data = self.data.bind(py);
        if data.is_none() {
            out.push_str("null");
        } else if let Ok(map) = data.cast::<PyDict>() {
            write_dict(&mut out, map, 0).map_err(|e| match e {
                Unencodable::Value(why) | Unencodable::Type(why) => {
                    EventEncodeError::new_err(format!("cannot encode event data: {why}"))
                }
                Unencodable::Python(err) => err,
            })?;
        } else {
            return Err(EventEncodeError::new_err(format!(
                "event data must be a dict, not {}",
                type_name(data)
            )));
        }
        out.push('}');
        Ok(PyBytes::new(py, out.as_bytes()))
    }

    /// Decodes an event as Go's `json.Unmarshal` would; `EventDecodeError` on malformed
    /// JSON, wrong field types or a missing type.
    #[staticmethod]
    fn from_json(py: Python<'_>, raw: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = raw.cast::<PyBytes>() {
            return decode(py, bytes.as_bytes());
        }
        if let Ok(text) = raw.cast::<PyString>() {
            let text = text
                .to_str()
                .map_err(|e| EventDecodeError::new_err(format!("malformed event JSON: {e}")))?;
            return decode(py, text.as_bytes());
        }
        if raw.is_instance_of::<PyByteArray>() || raw.is_instance_of::<PyMemoryView>() {
            let copied = py.get_type::<PyBytes>().call1((raw,))?;
            return decode(py, copied.cast::<PyBytes>()?.as_bytes());
        }
        Err(PyTypeError::new_err(format!(
            "event JSON must be bytes or str, not {}",
            raw.get_type().name()?
        )))
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: pyo3::basic::CompareOp,
    ) -> PyResult<Py<PyAny>> {
        use pyo3::basic::CompareOp;
        let Ok(other) = other.cast::<Self>() else {
            return Ok(py.NotImplemented());
        };
        match op {
            CompareOp::Eq => self.equals(py, other.get())?.into_py_any(py),
            CompareOp::Ne => (!self.equals(py, other.get())?).into_py_any(py),
            _ => Ok(py.NotImplemented()),
        }
    }

    /// The `datetime` made from a wire time is not reported: reading the cell needs the
    /// GIL token, and a `datetime` refers to no other object of the program.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.kind)?;
        visit.call(&self.node)?;
        visit.call(&self.data)?;
        if let Stamp::Given(value) = &self.stamp {
            visit.call(value)?;
        }
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let timestamp = match self.stamp.get(py) {
            Ok(value) => value.repr()?.to_string(),
            // A time no datetime can hold (year 0): shown as Go writes it.
            Err(_) => match &self.stamp {
                Stamp::Wire(time, _) => {
                    let mut text = String::new();
                    time.write_json(&mut text);
                    text
                }
                Stamp::Given(_) => "?".into(),
            },
        };
        Ok(format!(
            "Event(type={}, node={}, timestamp={timestamp}, data={})",
            self.kind.bind(py).repr()?,
            self.node.bind(py).repr()?,
            self.data.bind(py).repr()?
        ))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let cls = py.get_type::<Self>();
        let args = (
            self.kind.clone_ref(py),
            self.node.clone_ref(py),
            self.stamp.get(py)?,
            self.data.clone_ref(py),
        );
        (cls, args).into_pyobject(py)
    }
}

impl Event {
    fn equals(&self, py: Python<'_>, other: &Self) -> PyResult<bool> {
        if !self.kind.bind(py).eq(other.kind.bind(py))?
            || !self.node.bind(py).eq(other.node.bind(py))?
        {
            return Ok(false);
        }
        let same_time = match (&self.stamp, &other.stamp) {
            (Stamp::Wire(a, _), Stamp::Wire(b, _)) => a.unix_nanos == b.unix_nanos,
            _ => self.stamp.get(py)?.eq(other.stamp.get(py)?)?,
        };
        Ok(same_time && self.data.bind(py).eq(other.data.bind(py))?)
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

// --- reading ----------------------------------------------------------------------------

/// Short strings seen before (object keys, event types, node names) are handed out again
/// instead of made anew: a direct-mapped table per thread, a slot per hash, the newest
/// string winning a slot. Bounded: `KEY_SLOTS` strings of at most `KEY_MAX_LEN` bytes.
const KEY_SLOTS: usize = 1024;
const KEY_MAX_LEN: usize = 32;

/// A slot of the table: the text and its Python string.
type KeySlot = Option<(Box<str>, Py<PyString>)>;

thread_local! {
    static KEYS: RefCell<Vec<KeySlot>> =
        RefCell::new((0..KEY_SLOTS).map(|_| None).collect());
}

fn cached_str<'py>(py: Python<'py>, text: &str) -> Bound<'py, PyString> {
    if text.len() > KEY_MAX_LEN {
        return PyString::new(py, text);
    }
    // FNV-1a: short keys, and a collision only costs a fresh string.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let slot = hash as usize % KEY_SLOTS;
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        match &keys[slot] {
            Some((known, string)) if **known == *text => string.bind(py).clone(),
            _ => {
                let string = PyString::new(py, text);
                keys[slot] = Some((text.into(), string.clone().unbind()));
                string
            }
        }
    })
}

/// What went wrong beyond the JSON grammar: a field of the wrong type, a bad time, or a
/// Python error while building values. serde_json only carries text, so the error itself
/// waits here.
struct Problem(RefCell<Option<PyErr>>);

impl Problem {
    fn raise<E: de::Error>(&self, err: PyErr) -> E {
        *self.0.borrow_mut() = Some(err);
        E::custom("see the recorded problem")
    }

    fn wrong<E: de::Error>(&self, what: &str, expected: &str, found: &str) -> E {
        self.raise(EventDecodeError::new_err(format!(
            "{what}: expected {expected}, not {found}"
        )))
    }
}

fn decode(py: Python<'_>, bytes: &[u8]) -> PyResult<Event> {
    let problem = Problem(RefCell::new(None));
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let parsed = Envelope {
        py,
        problem: &problem,
    }
    .deserialize(&mut reader)
    .and_then(|event| reader.end().map(|()| event));
    match parsed {
        Ok(event) => event.ok_or_else(|| EventDecodeError::new_err("event has no type")),
        Err(err) => Err(problem
            .0
            .into_inner()
            .unwrap_or_else(|| EventDecodeError::new_err(format!("malformed event JSON: {err}")))),
    }
}

/// The JSON type names Go's decoder uses in its messages.
struct Found;

impl Found {
    const OBJECT: &'static str = "object";
    const ARRAY: &'static str = "array";
    const STRING: &'static str = "string";
    const NUMBER: &'static str = "number";
    const BOOLEAN: &'static str = "boolean";
    const NULL: &'static str = "null";
}

struct Envelope<'a, 'py> {
    py: Python<'py>,
    problem: &'a Problem,
}

impl<'de> DeserializeSeed<'de> for Envelope<'_, '_> {
    type Value = Option<Event>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Envelope<'_, '_> {
    type Value = Option<Event>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (py, problem) = (self.py, self.problem);
        let mut kind: Option<Bound<'_, PyString>> = None;
        let mut node: Option<Bound<'_, PyString>> = None;
        let mut time: Option<WireTime> = None;
        let mut data: Option<Bound<'_, PyDict>> = None;
        while let Some(field) = map.next_key_seed(FieldName)? {
            // Go leaves a field as it was on `null`, except a map, which becomes nil.
            match field {
                Some(Field::Type) => {
                    if let Some(text) = map.next_value_seed(Text {
                        py,
                        problem,
                        what: "event type",
                    })? {
                        kind = Some(text);
                    }
                }
                Some(Field::Node) => {
                    if let Some(text) = map.next_value_seed(Text {
                        py,
                        problem,
                        what: "event node",
                    })? {
                        node = Some(text);
                    }
                }
                Some(Field::Timestamp) => {
                    if let Some(t) = map.next_value_seed(Time { problem })? {
                        time = Some(t);
                    }
                }
                Some(Field::Data) => {
                    data = map.next_value_seed(Data {
                        value: Value { py, problem },
                        into: data.take(),
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(kind) = kind.filter(|k| k.len().is_ok_and(|n| n > 0)) else {
            return Ok(None);
        };
        Ok(Some(Event {
            kind: kind.into_any().unbind(),
            node: node.map_or_else(
                || intern!(py, "").clone().into_any().unbind(),
                |n| n.into_any().unbind(),
            ),
            stamp: match time {
                Some(t) if !t.is_zero() => Stamp::wire(t),
                _ => Stamp::Given(py.None()),
            },
            data: data.map_or_else(|| py.None(), |d| d.into_any().unbind()),
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.problem.wrong("event JSON", "an object", Found::ARRAY))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.problem.wrong("event JSON", "an object", Found::STRING))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.problem.wrong("event JSON", "an object", Found::NUMBER))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.problem.wrong("event JSON", "an object", Found::NUMBER))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.problem.wrong("event JSON", "an object", Found::NUMBER))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self
            .problem
            .wrong("event JSON", "an object", Found::BOOLEAN))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.problem.wrong("event JSON", "an object", Found::NULL))
    }
}

/// A top-level key: the field it names, if any.
struct FieldName;

impl<'de> DeserializeSeed<'de> for FieldName {
    type Value = Option<Field>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldName {
    type Value = Option<Field>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Field::of(key))
    }
}

/// Generates the visitor methods that refuse a JSON type with `self.wrong(found)`.
macro_rules! refuse {
    ($($method:ident($($arg:ty)?) => $found:expr;)*) => {$(
        fn $method<E: de::Error>(self $(, _: $arg)?) -> Result<Self::Value, E> {
            Err(self.wrong($found))
        }
    )*};
}

/// A string field (`type`, `node`): None for `null`.
struct Text<'a, 'py> {
    py: Python<'py>,
    problem: &'a Problem,
    what: &'static str,
}

impl<E: de::Error> WrongType<E> for Text<'_, '_> {
    fn wrong(&self, found: &str) -> E {
        self.problem.wrong(self.what, "a string", found)
    }
}

/// What a field seed says when the JSON has the wrong type.
trait WrongType<E> {
    fn wrong(&self, found: &str) -> E;
}

impl<'de, 'py> DeserializeSeed<'de> for Text<'_, 'py> {
    type Value = Option<Bound<'py, PyString>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for Text<'_, 'py> {
    type Value = Option<Bound<'py, PyString>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(cached_str(self.py, text)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong(Found::ARRAY))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong(Found::OBJECT))
    }
    refuse! {
        visit_f64(f64) => Found::NUMBER;
        visit_i64(i64) => Found::NUMBER;
        visit_u64(u64) => Found::NUMBER;
        visit_bool(bool) => Found::BOOLEAN;
    }
}

/// The timestamp: None for `null`.
struct Time<'a> {
    problem: &'a Problem,
}

impl<E: de::Error> WrongType<E> for Time<'_> {
    fn wrong(&self, found: &str) -> E {
        self.problem.wrong("event timestamp", "a string", found)
    }
}

impl<'de> DeserializeSeed<'de> for Time<'_> {
    type Value = Option<WireTime>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Time<'_> {
    type Value = Option<WireTime>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match WireTime::parse_rfc3339(text.as_bytes()) {
            Ok(time) => Ok(Some(time)),
            Err(err) => {
                let shown: String = text.chars().take(64).collect();
                Err(self.problem.raise(EventDecodeError::new_err(format!(
                    "bad event timestamp: {err}: {shown:?}"
                ))))
            }
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong(Found::ARRAY))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong(Found::OBJECT))
    }
    refuse! {
        visit_f64(f64) => Found::NUMBER;
        visit_i64(i64) => Found::NUMBER;
        visit_u64(u64) => Found::NUMBER;
        visit_bool(bool) => Found::BOOLEAN;
    }
}

/// The `data` object: None for `null`; a second `data` object adds its keys to the
/// first, as Go's decoder fills the map it already has.
struct Data<'a, 'py> {
    value: Value<'a, 'py>,
    into: Option<Bound<'py, PyDict>>,
}

impl<E: de::Error> WrongType<E> for Data<'_, '_> {
    fn wrong(&self, found: &str) -> E {
        self.value.problem.wrong("event data", "an object", found)
    }
}

impl<'de, 'py> DeserializeSeed<'de> for Data<'_, 'py> {
    type Value = Option<Bound<'py, PyDict>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for Data<'_, 'py> {
    type Value = Option<Bound<'py, PyDict>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let into = self.into.unwrap_or_else(|| PyDict::new(self.value.py));
        self.value.fill(into, map).map(Some)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong(Found::ARRAY))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.wrong(Found::STRING))
    }
    refuse! {
        visit_f64(f64) => Found::NUMBER;
        visit_i64(i64) => Found::NUMBER;
        visit_u64(u64) => Found::NUMBER;
        visit_bool(bool) => Found::BOOLEAN;
    }
}

/// Any JSON value as a Python object.
#[derive(Clone, Copy)]
struct Value<'a, 'py> {
    py: Python<'py>,
    problem: &'a Problem,
}

impl<'py> Value<'_, 'py> {
    fn fill<'de, A: MapAccess<'de>>(
        self,
        into: Bound<'py, PyDict>,
        mut map: A,
    ) -> Result<Bound<'py, PyDict>, A::Error> {
        while let Some(key) = map.next_key_seed(Key { py: self.py })? {
            let value = map.next_value_seed(self)?;
            into.set_item(key, value)
                .map_err(|e| self.problem.raise::<A::Error>(e))?;
        }
        Ok(into)
    }
}

impl<'de, 'py> DeserializeSeed<'de> for Value<'_, 'py> {
    type Value = Bound<'py, PyAny>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for Value<'_, 'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.py, v).to_owned().into_any())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(PyInt::new(self.py, v).into_any())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(PyInt::new(self.py, v).into_any())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.py, v).into_any())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.py, v).into_any())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.py);
        while let Some(item) = seq.next_element_seed(self)? {
            list.append(item)
                .map_err(|e| self.problem.raise::<A::Error>(e))?;
        }
        Ok(list.into_any())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.fill(PyDict::new(self.py), map).map(Bound::into_any)
    }
}

/// An object key as a Python string.
struct Key<'py> {
    py: Python<'py>,
}

impl<'de, 'py> DeserializeSeed<'de> for Key<'py> {
    type Value = Bound<'py, PyString>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'py> Visitor<'de> for Key<'py> {
    type Value = Bound<'py, PyString>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(cached_str(self.py, key))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Event>()?;
    m.add("EventDecodeError", py.get_type::<EventDecodeError>())?;
    m.add("EventEncodeError", py.get_type::<EventEncodeError>())
}
