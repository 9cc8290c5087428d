//! `BuildUpdateDecoder`: a dispatcher channel's reader decoding routed build updates with
//! the core's JSON field scanner.

use std::borrow::Cow;

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use turnout_core::{self as core, Scalar};

/// Decodes raw build updates in Rust: the fields are read by the core's scanner and the
/// objects built here, from the classes Python hands over once. Only the common shape is
/// decoded (every field present with its JSON type, UUIDs in the 36-character form,
/// known enum values, a 32-bit build number); for anything else `decode` returns `None`
/// and Python's decoder, which knows every form and error, takes the message.
#[pyclass(frozen, module = "turnout", name = "BuildUpdateDecoder")]
pub struct BuildUpdateDecoder {
    update_class: Py<PyType>,
    uuid_class: Py<PyType>,
    uuid_is_safe: Py<PyAny>,
    /// The enum members by wire value: few, so a scan of borrowed text finds one without
    /// making a Python string to look it up by.
    transitions: Vec<(String, Py<PyAny>)>,
    statuses: Vec<(String, Py<PyAny>)>,
    /// The UUID's attribute names.
    uuid_int: Py<PyString>,
    uuid_is_safe_name: Py<PyString>,
}

/// `FIELDS`, checked once for the scanner.
static FIELD_NAMES: std::sync::LazyLock<core::FieldNames<'static, 6>> =
    std::sync::LazyLock::new(|| core::FieldNames::new(FIELDS));

const FIELDS: [&str; 6] = [
    "workspace_id",
    "workspace_name",
    "build_id",
    "transition",
    "job_status",
    "build_number",
];

/// `(wire value, member)` pairs of a `{str: member}` dict.
fn members_by_value(members: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Py<PyAny>)>> {
    members
        .iter()
        .map(|(value, member)| Ok((value.extract::<String>()?, member.unbind())))
        .collect()
}

/// The position of `value` among the members' wire values.
fn member_at(members: &[(String, Py<PyAny>)], value: &str) -> Option<u8> {
    let at = members.iter().position(|(known, _)| known == value)?;
    u8::try_from(at).ok()
}

impl BuildUpdateDecoder {
    /// Sets an attribute past a frozen class's `__setattr__`, as its own `__init__` does.
    fn set(
        object: &Bound<'_, PyAny>,
        name: &Py<PyString>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        // SAFETY: three live objects; generic attribute setting stores into the slot.
        let status = unsafe {
            pyo3::ffi::PyObject_GenericSetAttr(object.as_ptr(), name.as_ptr(), value.as_ptr())
        };
        if status == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(object.py()))
        }
    }

    /// A new instance of `class` with no attribute set, as `object.__new__(class)` makes
    /// it, without the call: both classes are plain Python classes with slots, whose
    /// allocator is the generic one.
    fn blank<'py>(class: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: `class` is a live type object; the generic allocator returns a new
        // reference (zeroed slots, tracked by the GC if the type is) or NULL with an error.
        unsafe {
            Bound::from_owned_ptr_or_err(
                class.py(),
                pyo3::ffi::PyType_GenericAlloc(class.as_type_ptr(), 0),
            )
        }
    }

    fn uuid<'py>(&self, py: Python<'py>, value: u128) -> PyResult<Bound<'py, PyAny>> {
        let uuid = Self::blank(self.uuid_class.bind(py))?;
        Self::set(&uuid, &self.uuid_int, &value.into_pyobject(py)?.into_any())?;
        Self::set(&uuid, &self.uuid_is_safe_name, self.uuid_is_safe.bind(py))?;
        Ok(uuid)
    }

    /// The update `message` holds, as a `LazyBuildUpdate`; `None` when it is not of the
    /// common shape. `name` is the routed name and its text (see `decode`).
    fn lazy<'py>(
        &self,
        slf: &Bound<'py, Self>,
        message: &[u8],
        name: Option<(&Bound<'py, PyString>, Option<&str>)>,
    ) -> Option<PyResult<Bound<'py, LazyBuildUpdate>>> {
        let py = slf.py();
        let (workspace_name, fields) = self.scan(message);
        let fields = fields?;
        let workspace_name = match (name, workspace_name) {
            (Some((object, Some(text))), Some(read)) if text == read => object.clone(),
            (_, Some(read)) => PyString::new(py, &read),
            (_, None) => return None,
        };
        Some(Self::update(slf, fields, workspace_name))
    }

    /// The `workspace_name` of `message` if that is a string and the message a valid JSON
    /// object (what `key_of` reads), by the scanner of `scan`, without checking the other
    /// fields: the routing key. Needs no Python object.
    pub(crate) fn key_of<'m>(&self, message: &'m [u8]) -> Option<Cow<'m, str>> {
        match FIELD_NAMES.read_one(message, 1)? {
            Some(Scalar::Str(name)) => Some(name),
            _ => None,
        }
    }

    /// One scan of `message`: its `workspace_name` if that is a string (the routing key,
    /// read as `key_of` reads it), and the other fields if the whole update is of the
    /// common shape. Needs no Python object, so it runs with the GIL released.
    fn scan<'m>(&self, message: &'m [u8]) -> (Option<Cow<'m, str>>, Option<Fields>) {
        let Some(fields) = FIELD_NAMES.read(message) else {
            return (None, None);
        };
        let [workspace_id, workspace_name, build_id, transition, status, number] = fields;
        let Some(Scalar::Str(workspace_name)) = workspace_name else {
            return (None, None);
        };
        let checked = || {
            let (
                Some(Scalar::Str(workspace_id)),
                Some(Scalar::Str(build_id)),
                Some(Scalar::Str(transition)),
                Some(Scalar::Str(status)),
                Some(Scalar::Int(number)),
            ) = (workspace_id, build_id, transition, status, number)
            else {
                return None;
            };
            Some(Fields {
                workspace_id: core::parse_uuid_text(workspace_id.as_bytes())?,
                build_id: core::parse_uuid_text(build_id.as_bytes())?,
                transition: member_at(&self.transitions, &transition)?,
                job_status: member_at(&self.statuses, &status)?,
                build_number: i32::try_from(number).ok()?,
            })
        };
        let fields = checked();
        (Some(workspace_name), fields)
    }

    /// The `LazyBuildUpdate` of checked fields, named by `workspace_name`: that object
    /// when it is a `str`, else (a subclass, whose instances may refer to anything) a
    /// `str` of the same text, so that the update refers to nothing that could lead back
    /// to it (see the struct's comment).
    fn update<'py>(
        slf: &Bound<'py, Self>,
        fields: Fields,
        workspace_name: Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, LazyBuildUpdate>> {
        let workspace_name = if workspace_name.is_exact_instance_of::<PyString>() {
            workspace_name
        } else {
            PyString::new(slf.py(), workspace_name.to_str()?)
        };
        let update = LazyBuildUpdate {
            decoder: slf.clone().unbind(),
            workspace_name: workspace_name.unbind(),
            workspace_id: fields.workspace_id,
            build_id: fields.build_id,
            transition: fields.transition,
            job_status: fields.job_status,
            build_number: fields.build_number,
        };
        let object = Bound::new(slf.py(), update)?;
        // SAFETY: untracking a live object is always allowed, and the deallocator
        // tolerates an untracked one. See the struct's comment for why it is safe here.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(object.as_ptr().cast()) };
        Ok(object)
    }
}

/// The fields of an update of the common shape, checked, other than its name.
struct Fields {
    workspace_id: u128,
    build_id: u128,
    transition: u8,
    job_status: u8,
    build_number: i32,
}

#[pymethods]
impl BuildUpdateDecoder {
    #[new]
    fn new(
        update_class: Bound<'_, PyType>,
        uuid_class: Bound<'_, PyType>,
        uuid_is_safe: Bound<'_, PyAny>,
        transitions: Bound<'_, PyDict>,
        statuses: Bound<'_, PyDict>,
    ) -> PyResult<Self> {
        let py = update_class.py();
        Ok(Self {
            update_class: update_class.unbind(),
            uuid_class: uuid_class.unbind(),
            uuid_is_safe: uuid_is_safe.unbind(),
            transitions: members_by_value(&transitions)?,
            statuses: members_by_value(&statuses)?,
            uuid_int: PyString::intern(py, "int").unbind(),
            uuid_is_safe_name: PyString::intern(py, "is_safe").unbind(),
        })
    }

    /// The names are strings, which refer to nothing.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.update_class)?;
        visit.call(&self.uuid_class)?;
        visit.call(&self.uuid_is_safe)?;
        for (_, member) in self.transitions.iter().chain(&self.statuses) {
            visit.call(member)?;
        }
        Ok(())
    }

    /// The update `message` holds, or `None` when it is not of the common shape. `name`,
    /// when given, is the workspace name the message was routed by: an update whose name
    /// equals it holds that string object instead of a new one.
    #[pyo3(signature = (message, name = None))]
    fn decode<'py>(
        slf: &Bound<'py, Self>,
        message: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyString>>,
    ) -> PyResult<Option<Bound<'py, LazyBuildUpdate>>> {
        let Ok(bytes) = message.cast::<PyBytes>() else {
            return Ok(None);
        };
        let hint = name.map(|n| (n, n.to_str())).map(|(n, s)| (n, s.ok()));
        slf.get().lazy(slf, bytes.as_bytes(), hint).transpose()
    }

    /// The items of `items` (any iterable) in a new list, each `bytes` item of the common
    /// shape decoded, every other item as it is; and how many `bytes` items are left (for
    /// Python's decoder, which knows every other form). A channel's batch read makes one
    /// call, not one per update; `name` is as for `decode`.
    #[pyo3(signature = (items, name = None))]
    fn decode_many<'py>(
        slf: &Bound<'py, Self>,
        items: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyString>>,
    ) -> PyResult<(Bound<'py, PyList>, usize)> {
        let py = items.py();
        let this = slf.get();
        let hint = name.map(|n| (n, n.to_str().ok()));
        let mut left = 0;
        let out = PyList::empty(py);
        for item in items.try_iter()? {
            let item = item?;
            let decoded = match item.cast::<PyBytes>() {
                Ok(bytes) => this.lazy(slf, bytes.as_bytes(), hint).transpose()?,
                Err(_) => None,
            };
            match decoded {
                Some(update) => out.append(update)?,
                None => {
                    left += usize::from(item.is_instance_of::<PyBytes>());
                    out.append(item)?;
                }
            }
        }
        Ok((out, left))
    }
}

/// One build update decoded from its JSON by `BuildUpdateDecoder`: every field is checked
/// and held as a Rust value; the Python objects (the UUIDs, the number) are made when an
/// attribute is read, so a consumer pays only for the fields it reads. It is a
/// `WorkspaceBuildUpdate` to `isinstance` (registered there), equal to and hashing as one
/// with the same fields, and pickles as one.
///
/// Left untracked by the garbage collector, with no `__traverse__`: it holds an exact
/// `str` (never a subclass instance, whose attributes could lead back to the update; see
/// `BuildUpdateDecoder::update`), which refers to nothing, and the decoder, which refers
/// only to classes and enum members fixed at import, so it is part of no cycle (were one
/// made through those classes, it would be kept, never freed early), and a batch of
/// thousands of updates adds nothing for the collector to walk.
#[pyclass(frozen, module = "turnout.workspace", name = "LazyBuildUpdate")]
pub struct LazyBuildUpdate {
    decoder: Py<BuildUpdateDecoder>,
    workspace_name: Py<PyString>,
    workspace_id: u128,
    build_id: u128,
    transition: u8,
    job_status: u8,
    build_number: i32,
}

impl LazyBuildUpdate {
    /// The six field values as Python objects, in field order.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let decoder = self.decoder.get();
        PyTuple::new(
            py,
            [
                decoder.uuid(py, self.workspace_id)?,
                self.workspace_name.bind(py).clone().into_any(),
                decoder.uuid(py, self.build_id)?,
                decoder.transitions[usize::from(self.transition)]
                    .1
                    .bind(py)
                    .clone(),
                decoder.statuses[usize::from(self.job_status)]
                    .1
                    .bind(py)
                    .clone(),
                self.build_number.into_pyobject(py)?.into_any(),
            ],
        )
    }

    /// The same update as the plain class.
    fn plain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let class = self.decoder.get().update_class.bind(py);
        class.call1(self.values(py)?)
    }
}

#[pymethods]
impl LazyBuildUpdate {
    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        (
            FIELDS[0], FIELDS[1], FIELDS[2], FIELDS[3], FIELDS[4], FIELDS[5],
        )
    }

    #[getter]
    fn workspace_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.decoder.get().uuid(py, self.workspace_id)
    }

    #[getter]
    fn workspace_name<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.workspace_name.bind(py).clone()
    }

    #[getter]
    fn build_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.decoder.get().uuid(py, self.build_id)
    }

    #[getter]
    fn transition<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.decoder.get().transitions[usize::from(self.transition)]
            .1
            .bind(py)
            .clone()
    }

    #[getter]
    fn job_status<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.decoder.get().statuses[usize::from(self.job_status)]
            .1
            .bind(py)
            .clone()
    }

    #[getter]
    fn build_number(&self) -> i32 {
        self.build_number
    }

    /// Always valid: only an update that passes every check is decoded to this class.
    fn validate(&self) {}

    /// The JSON object as Go writes it (as `WorkspaceBuildUpdate.to_json`).
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.plain(py)?.call_method0("to_json")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.plain(py)?.repr()?.to_str()?.to_owned())
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.values(py)?.hash()
    }

    fn __eq__<'py>(&self, other: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = other.py();
        if let Ok(other) = other.cast::<LazyBuildUpdate>() {
            let other = other.get();
            let same = self.workspace_id == other.workspace_id
                && self.build_id == other.build_id
                && self.transition == other.transition
                && self.job_status == other.job_status
                && self.build_number == other.build_number
                && self
                    .workspace_name
                    .bind(py)
                    .as_any()
                    .eq(other.workspace_name.bind(py))?;
            return Ok(PyBool::new(py, same).to_owned().into_any());
        }
        if !other.is_instance(self.decoder.get().update_class.bind(py))? {
            return Ok(py.NotImplemented().into_bound(py));
        }
        let theirs = FIELDS
            .iter()
            .map(|name| other.getattr(*name))
            .collect::<PyResult<Vec<_>>>()?;
        let same = self.values(py)?.eq(PyTuple::new(py, theirs)?)?;
        Ok(PyBool::new(py, same).to_owned().into_any())
    }

    /// Pickles (and copies) as the plain class.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        Ok((
            self.decoder.get().update_class.bind(py).clone(),
            self.values(py)?,
        ))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BuildUpdateDecoder>()?;
    m.add_class::<LazyBuildUpdate>()
}
