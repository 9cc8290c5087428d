//! `BuildUpdateDecoder`: a dispatcher channel's reader decoding routed build updates with
//! the core's JSON field scanner.

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyType};
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
    /// The update's attribute names, in `FIELDS` order, then the UUID's `int`, `is_safe`.
    names: Vec<Py<PyString>>,
}

const FIELDS: [&str; 6] = [
    "workspace_id",
    "workspace_name",
    "build_id",
    "transition",
    "job_status",
    "build_number",
];

/// The value of a UUID in its 36-character hyphenated form (either case).
fn uuid_value(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value = 0u128;
    for (at, &byte) in bytes.iter().enumerate() {
        if matches!(at, 8 | 13 | 18 | 23) {
            if byte != b'-' {
                return None;
            }
            continue;
        }
        let digit = (byte as char).to_digit(16)?;
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

/// `(wire value, member)` pairs of a `{str: member}` dict.
fn members_by_value(members: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Py<PyAny>)>> {
    members
        .iter()
        .map(|(value, member)| Ok((value.extract::<String>()?, member.unbind())))
        .collect()
}

fn member<'py>(
    py: Python<'py>,
    members: &[(String, Py<PyAny>)],
    value: &str,
) -> Option<Bound<'py, PyAny>> {
    members
        .iter()
        .find(|(known, _)| known == value)
        .map(|(_, member)| member.bind(py).clone())
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
        Self::set(&uuid, &self.names[6], &value.into_pyobject(py)?.into_any())?;
        Self::set(&uuid, &self.names[7], self.uuid_is_safe.bind(py))?;
        Ok(uuid)
    }
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
        let names = FIELDS
            .iter()
            .chain(&["int", "is_safe"])
            .map(|name| PyString::intern(py, name).unbind())
            .collect();
        Ok(Self {
            update_class: update_class.unbind(),
            uuid_class: uuid_class.unbind(),
            uuid_is_safe: uuid_is_safe.unbind(),
            transitions: members_by_value(&transitions)?,
            statuses: members_by_value(&statuses)?,
            names,
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

    /// The update `message` holds, or `None` when it is not of the common shape.
    fn decode<'py>(&self, message: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = message.py();
        let Ok(bytes) = message.cast::<PyBytes>() else {
            return Ok(None);
        };
        let Some(fields) = core::object_fields(bytes.as_bytes(), FIELDS) else {
            return Ok(None);
        };
        let [Some(Scalar::Str(workspace_id)), Some(Scalar::Str(name)), Some(Scalar::Str(build_id)), Some(Scalar::Str(transition)), Some(Scalar::Str(status)), Some(Scalar::Int(number))] =
            fields
        else {
            return Ok(None);
        };
        let (Some(workspace_id), Some(build_id), Ok(number)) = (
            uuid_value(&workspace_id),
            uuid_value(&build_id),
            i32::try_from(number),
        ) else {
            return Ok(None);
        };
        let (Some(transition), Some(status)) = (
            member(py, &self.transitions, &transition),
            member(py, &self.statuses, &status),
        ) else {
            return Ok(None);
        };
        let update = Self::blank(self.update_class.bind(py))?;
        let values = [
            self.uuid(py, workspace_id)?,
            PyString::new(py, &name).into_any(),
            self.uuid(py, build_id)?,
            transition,
            status,
            number.into_pyobject(py)?.into_any(),
        ];
        for (name, value) in self.names.iter().zip(&values) {
            Self::set(&update, name, value)?;
        }
        Ok(Some(update))
    }

    /// `items` with each `bytes` item decoded (`None` where it is not of the common
    /// shape) and every other item as it is; and how many are `None`. A channel's batch
    /// read makes one call, not one per update.
    fn decode_many<'py>(
        &self,
        items: &Bound<'py, PyList>,
    ) -> PyResult<(Bound<'py, PyList>, usize)> {
        let py = items.py();
        let mut missing = 0;
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            if item.is_instance_of::<PyBytes>() {
                match self.decode(&item)? {
                    Some(update) => out.push(update),
                    None => {
                        missing += 1;
                        out.push(py.None().into_bound(py));
                    }
                }
            } else {
                out.push(item);
            }
        }
        Ok((PyList::new(py, out)?, missing))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BuildUpdateDecoder>()
}
