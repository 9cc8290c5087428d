//! `PhaseState` (an immutable snapshot of one workflow), `phase_successors`, and the
//! members of Python's `Phase` enum that phases are handed out as.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDateTime, PyDelta, PyType, PyTzInfo};
use turnout_core::{Phase, PhaseError};

use crate::args::{error_classes, not_registered, text};

/// The members of Python's `Phase` enum, in the core's order, handed over once by
/// `turnout.phases` as it is imported.
static PHASE_MEMBERS: PyOnceLock<Vec<Py<PyAny>>> = PyOnceLock::new();

fn phase_members(py: Python<'_>) -> PyResult<&[Py<PyAny>]> {
    PHASE_MEMBERS
        .get(py)
        .map(Vec::as_slice)
        .ok_or_else(|| not_registered("turnout.phases"))
}

/// `_register_phase(Phase)`: called once by `turnout.phases` with its enum, whose members
/// are looked up by wire value; a `ValueError` if one is missing. Later calls are ignored.
#[pyfunction]
fn _register_phase(py: Python<'_>, phase_class: &Bound<'_, PyType>) -> PyResult<()> {
    if PHASE_MEMBERS.get(py).is_some() {
        return Ok(());
    }
    let members = Phase::ALL
        .iter()
        .map(|p| Ok(phase_class.call1((p.as_str(),))?.unbind()))
        .collect::<PyResult<Vec<_>>>()?;
    let _ = PHASE_MEMBERS.set(py, members);
    Ok(())
}

pub fn phase_object(py: Python<'_>, phase: Phase) -> PyResult<Py<PyAny>> {
    Ok(phase_members(py)?[phase as usize].clone_ref(py))
}

/// A phase given as a `Phase` member (found by identity, the common case) or its wire
/// value.
pub fn phase_arg(ob: &Bound<'_, PyAny>) -> PyResult<Phase> {
    let members = phase_members(ob.py())?;
    if let Some(at) = members.iter().position(|m| m.as_ptr() == ob.as_ptr()) {
        return Ok(Phase::ALL[at]);
    }
    let value = text(ob, "phase")?.unwrap_or("");
    Phase::parse(value).ok_or_else(|| PyValueError::new_err(format!("unknown phase {value:?}")))
}

/// The exception object for a refused operation (raised, or returned by batches).
pub fn phase_error(py: Python<'_>, err: &PhaseError) -> PyErr {
    let classes = match error_classes(py) {
        Ok(classes) => classes,
        Err(e) => return e,
    };
    let class = match err {
        PhaseError::NotFound(_) => &classes.workflow_not_found,
        PhaseError::InvalidTransition { .. } => &classes.invalid_transition,
        _ => &classes.phase,
    };
    PyErr::from_type(class.bind(py).clone(), err.to_string())
}

/// An immutable snapshot of one workflow's phase state.
#[pyclass(frozen, module = "turnout.phases", name = "PhaseState")]
pub struct PhaseState {
    inner: turnout_core::PhaseState,
}

#[pymethods]
impl PhaseState {
    #[getter]
    fn workflow_id(&self) -> &str {
        &self.inner.workflow_id
    }

    #[getter]
    fn phase(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        phase_object(py, self.inner.phase)
    }

    /// The phase before the last change; None until the first change.
    #[getter]
    fn previous_phase(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.inner
            .previous_phase
            .map(|p| phase_object(py, p))
            .transpose()
    }

    /// When the phase last changed (or the workflow was registered), UTC.
    #[getter]
    fn changed_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        static EPOCH: PyOnceLock<Py<PyDateTime>> = PyOnceLock::new();
        let epoch = EPOCH.get_or_try_init(py, || {
            let utc = PyTzInfo::utc(py)?;
            Ok::<_, PyErr>(PyDateTime::new(py, 1970, 1, 1, 0, 0, 0, 0, Some(&utc))?.unbind())
        })?;
        let micros = self.inner.changed_at.div_euclid(1_000);
        let days = micros.div_euclid(86_400_000_000);
        let rest = micros.rem_euclid(86_400_000_000);
        let delta = PyDelta::new(
            py,
            days as i32,
            (rest / 1_000_000) as i32,
            (rest % 1_000_000) as i32,
            false,
        )?;
        Ok(epoch
            .bind(py)
            .call_method1("__add__", (delta,))?
            .cast_into()?)
    }

    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    #[getter]
    fn checkpoint_id(&self) -> &str {
        &self.inner.checkpoint_id
    }

    #[getter]
    fn progress(&self) -> f64 {
        self.inner.progress
    }

    #[getter]
    fn current_action(&self) -> &str {
        &self.inner.current_action
    }

    #[getter]
    fn parent_workflow_id(&self) -> &str {
        &self.inner.parent_workflow_id
    }

    #[getter]
    fn root_workflow_id(&self) -> &str {
        &self.inner.root_workflow_id
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PhaseState>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        format!(
            "PhaseState(workflow_id={:?}, phase={:?}, previous_phase={:?}, reason={:?}, \
             checkpoint_id={:?}, progress={})",
            &*s.workflow_id,
            s.phase.as_str(),
            s.previous_phase.map_or("", Phase::as_str),
            &*s.reason,
            &*s.checkpoint_id,
            s.progress
        )
    }
}

pub fn snapshot(
    py: Python<'_>,
    inner: turnout_core::PhaseState,
) -> PyResult<Bound<'_, PhaseState>> {
    Bound::new(py, PhaseState { inner })
}

/// The phases `phase` may move to, as wire values (the core's table).
#[pyfunction]
fn phase_successors(phase: &Bound<'_, PyAny>) -> PyResult<Vec<&'static str>> {
    Ok(phase_arg(phase)?
        .successors()
        .iter()
        .map(|p| p.as_str())
        .collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PhaseState>()?;
    m.add_function(wrap_pyfunction!(phase_successors, m)?)?;
    m.add_function(wrap_pyfunction!(_register_phase, m)?)?;
    Ok(())
}
