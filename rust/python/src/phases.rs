//! `PhaseManager` and `PhaseState`: the core phase table behind a lock, with callbacks
//! delivered in the order the changes happened.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDateTime, PyDelta, PyList, PyString, PyTuple, PyType, PyTzInfo};
use turnout_core::{Phase, PhaseError, PhaseTable};

use crate::args::{error_classes, not_a_str, not_registered, text};

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

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

fn phase_object(py: Python<'_>, phase: Phase) -> PyResult<Py<PyAny>> {
    Ok(phase_members(py)?[phase as usize].clone_ref(py))
}

/// A phase given as a `Phase` member (found by identity, the common case) or its wire
/// value.
fn phase_arg(ob: &Bound<'_, PyAny>) -> PyResult<Phase> {
    let members = phase_members(ob.py())?;
    if let Some(at) = members.iter().position(|m| m.as_ptr() == ob.as_ptr()) {
        return Ok(Phase::ALL[at]);
    }
    let value = text(ob, "phase")?.unwrap_or("");
    Phase::parse(value).ok_or_else(|| PyValueError::new_err(format!("unknown phase {value:?}")))
}

/// The exception object for a refused operation (raised, or returned by batches).
fn phase_error(py: Python<'_>, err: &PhaseError) -> PyErr {
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

fn snapshot(py: Python<'_>, inner: turnout_core::PhaseState) -> PyResult<Bound<'_, PhaseState>> {
    Bound::new(py, PhaseState { inner })
}

/// A change waiting for its callbacks: checkpoints carry the caller's state object.
enum Pending {
    Phase(turnout_core::PhaseState),
    Checkpoint {
        workflow_id: String,
        checkpoint_id: String,
        state: Py<PyAny>,
    },
}

#[derive(Default)]
struct Callbacks {
    phase_changed: Vec<Py<PyAny>>,
    checkpoint: Vec<Py<PyAny>>,
}

/// Phase state for many workflows, the table and the states in Rust.
///
/// Callbacks get immutable snapshots in the order the changes happened, after the
/// table's lock is released: whichever thread finds no delivery under way delivers
/// everything queued, so a callback may itself change phases (its changes are delivered
/// after it returns).
#[pyclass(frozen, module = "turnout.phases", name = "PhaseManager")]
pub struct PhaseManager {
    table: Mutex<PhaseTable>,
    pending: Mutex<VecDeque<Pending>>,
    delivering: AtomicBool,
    callbacks: Mutex<Callbacks>,
    /// Whether any callback is registered: without one, no snapshot is queued.
    observed: AtomicBool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PhaseManager {
    /// Runs `op` on the table and queues the changes it recorded, under the table lock so
    /// the queue keeps the order of the changes; then delivers.
    fn apply(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&mut PhaseTable, i64) -> Result<(), PhaseError>,
    ) -> PyResult<()> {
        let outcome = {
            let mut table = locked(&self.table);
            let outcome = op(&mut table, now_nanos());
            if self.observed.load(Ordering::Acquire) {
                queue_changes(&mut table, &mut locked(&self.pending));
            }
            outcome
        };
        outcome.map_err(|e| phase_error(py, &e))?;
        self.deliver(py);
        Ok(())
    }

    /// Runs the callbacks of everything queued, unless no callback was ever registered.
    fn deliver(&self, py: Python<'_>) {
        if !self.observed.load(Ordering::Acquire) {
            return;
        }
        loop {
            if self.delivering.swap(true, Ordering::AcqRel) {
                return;
            }
            loop {
                let next = locked(&self.pending).pop_front();
                let Some(next) = next else { break };
                self.run_callbacks(py, next);
            }
            self.delivering.store(false, Ordering::Release);
            // A change queued after the last pop but before the flag dropped would be
            // stranded: look once more.
            if locked(&self.pending).is_empty() {
                return;
            }
        }
    }

    fn run_callbacks(&self, py: Python<'_>, change: Pending) {
        let (callbacks, args): (Vec<Py<PyAny>>, PyResult<Bound<'_, PyTuple>>) = match change {
            Pending::Phase(state) => (
                locked(&self.callbacks)
                    .phase_changed
                    .iter()
                    .map(|c| c.clone_ref(py))
                    .collect(),
                snapshot(py, state).and_then(|s| PyTuple::new(py, [s])),
            ),
            Pending::Checkpoint {
                workflow_id,
                checkpoint_id,
                state,
            } => (
                locked(&self.callbacks)
                    .checkpoint
                    .iter()
                    .map(|c| c.clone_ref(py))
                    .collect(),
                (workflow_id, checkpoint_id, state).into_pyobject(py),
            ),
        };
        let args = match args {
            Ok(args) => args,
            Err(err) => return err.write_unraisable(py, None),
        };
        for callback in callbacks {
            // A failing callback must not stop the others nor the change itself.
            if let Err(err) = callback.bind(py).call1(args.clone()) {
                err.write_unraisable(py, Some(callback.bind(py)));
            }
        }
    }

    /// Turns change recording on; under the table lock, so that every change from now on
    /// is both recorded and queued, and none recorded earlier waits in the journal.
    fn observe(&self) {
        let mut table = locked(&self.table);
        table.record_changes();
        self.observed.store(true, Ordering::Release);
    }
}

fn queue_changes(table: &mut PhaseTable, pending: &mut VecDeque<Pending>) {
    pending.extend(table.drain_changes().map(Pending::Phase));
}

#[pymethods]
impl PhaseManager {
    #[new]
    fn new() -> Self {
        Self {
            table: Mutex::default(),
            pending: Mutex::default(),
            delivering: AtomicBool::new(false),
            callbacks: Mutex::default(),
            observed: AtomicBool::new(false),
        }
    }

    /// Starts tracking a workflow in `pending` (registering again replaces it).
    #[pyo3(signature = (workflow_id, parent_id = "", root_id = ""))]
    fn register_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: &str,
        parent_id: &str,
        root_id: &str,
    ) -> PyResult<Bound<'py, PhaseState>> {
        let state = locked(&self.table)
            .register(workflow_id, parent_id, root_id, now_nanos())
            .clone();
        snapshot(py, state)
    }

    #[pyo3(signature = (workflow_id, phase, reason = ""))]
    fn transition_to(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        phase: &Bound<'_, PyAny>,
        reason: &str,
    ) -> PyResult<()> {
        let to = phase_arg(phase)?;
        self.apply(py, |t, now| t.transition(workflow_id, to, reason, now))
    }

    #[pyo3(signature = (workflow_id, reason = ""))]
    fn pause(&self, py: Python<'_>, workflow_id: &str, reason: &str) -> PyResult<()> {
        self.apply(py, |t, now| t.pause(workflow_id, reason, now))
    }

    #[pyo3(signature = (workflow_id, checkpoint_id = ""))]
    fn complete_pause(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        checkpoint_id: &str,
    ) -> PyResult<()> {
        self.apply(py, |t, now| {
            t.complete_pause(workflow_id, checkpoint_id, now)
        })
    }

    #[pyo3(signature = (workflow_id, from_checkpoint = ""))]
    fn resume(&self, py: Python<'_>, workflow_id: &str, from_checkpoint: &str) -> PyResult<()> {
        self.apply(py, |t, now| t.resume(workflow_id, from_checkpoint, now))
    }

    fn complete_resume(&self, py: Python<'_>, workflow_id: &str) -> PyResult<()> {
        self.apply(py, |t, now| t.complete_resume(workflow_id, now))
    }

    #[pyo3(signature = (workflow_id, reason = ""))]
    fn cancel(&self, py: Python<'_>, workflow_id: &str, reason: &str) -> PyResult<()> {
        self.apply(py, |t, now| t.cancel(workflow_id, reason, now))
    }

    fn complete_cancellation(&self, py: Python<'_>, workflow_id: &str) -> PyResult<()> {
        self.apply(py, |t, now| t.complete_cancellation(workflow_id, now))
    }

    /// `completing`, then `completed`.
    fn complete(&self, py: Python<'_>, workflow_id: &str) -> PyResult<()> {
        self.apply(py, |t, now| t.complete(workflow_id, now))
    }

    #[pyo3(signature = (workflow_id, reason = ""))]
    fn fail(&self, py: Python<'_>, workflow_id: &str, reason: &str) -> PyResult<()> {
        self.apply(py, |t, now| t.fail(workflow_id, reason, now))
    }

    /// Records a checkpoint and tells `on_checkpoint` callbacks `(id, checkpoint_id, state)`.
    #[pyo3(signature = (workflow_id, checkpoint_id, reason = "", state = None))]
    fn create_checkpoint(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        checkpoint_id: &str,
        reason: &str,
        state: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        // Go keeps the reason with the checkpoint message only; the state keeps its own.
        let _ = reason;
        {
            let mut table = locked(&self.table);
            table
                .checkpoint(workflow_id, checkpoint_id)
                .map_err(|e| phase_error(py, &e))?;
            if self.observed.load(Ordering::Acquire) {
                locked(&self.pending).push_back(Pending::Checkpoint {
                    workflow_id: workflow_id.to_owned(),
                    checkpoint_id: checkpoint_id.to_owned(),
                    state: state.unwrap_or_else(|| py.None()),
                });
            }
        }
        self.deliver(py);
        Ok(())
    }

    #[pyo3(signature = (workflow_id, progress, current_action = ""))]
    fn set_progress(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        progress: f64,
        current_action: &str,
    ) -> PyResult<()> {
        locked(&self.table)
            .set_progress(workflow_id, progress, current_action)
            .map_err(|e| phase_error(py, &e))
    }

    /// The workflow's phase, or None if it is not tracked.
    fn get_phase(&self, py: Python<'_>, workflow_id: &str) -> PyResult<Option<Py<PyAny>>> {
        let phase = locked(&self.table).get(workflow_id).map(|s| s.phase);
        phase.map(|p| phase_object(py, p)).transpose()
    }

    /// A snapshot of the workflow's state, or None if it is not tracked.
    fn get_state<'py>(
        &self,
        py: Python<'py>,
        workflow_id: &str,
    ) -> PyResult<Option<Bound<'py, PhaseState>>> {
        let state = locked(&self.table).get(workflow_id).cloned();
        state.map(|s| snapshot(py, s)).transpose()
    }

    /// Snapshots of the workflows not in a terminal phase.
    fn active_workflows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PhaseState>>> {
        let states: Vec<_> = locked(&self.table)
            .all()
            .filter(|s| !s.phase.is_terminal())
            .cloned()
            .collect();
        states.into_iter().map(|s| snapshot(py, s)).collect()
    }

    /// Snapshots of every tracked workflow.
    fn all_workflows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PhaseState>>> {
        let states: Vec<_> = locked(&self.table).all().cloned().collect();
        states.into_iter().map(|s| snapshot(py, s)).collect()
    }

    fn remove_workflow(&self, workflow_id: &str) {
        locked(&self.table).remove(workflow_id);
    }

    fn __len__(&self) -> usize {
        locked(&self.table).len()
    }

    /// Calls `callback(state)` after every phase change.
    fn on_phase_changed(&self, callback: Py<PyAny>) {
        locked(&self.callbacks).phase_changed.push(callback);
        self.observe();
    }

    /// Calls `callback(workflow_id, checkpoint_id, state)` after every checkpoint.
    fn on_checkpoint(&self, callback: Py<PyAny>) {
        locked(&self.callbacks).checkpoint.push(callback);
        self.observe();
    }

    /// Applies many `(workflow_id, phase, reason)` transitions under one lock, with the
    /// GIL released; returns, per item, None or the exception it was refused with.
    fn transition_many<'py>(
        &self,
        py: Python<'py>,
        transitions: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        // The strings are held, not copied: the table reads their UTF-8 in place while
        // the GIL is released (a `str` is immutable, and these references keep each alive
        // even if the caller's containers change meanwhile).
        let mut held: Vec<(Bound<'py, PyString>, Phase, Bound<'py, PyString>)> =
            Vec::with_capacity(transitions.len().unwrap_or(0));
        for item in transitions.try_iter()? {
            let item = item?;
            let (id, phase, reason): (Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>) =
                item.extract()?;
            let id = id
                .cast_into::<PyString>()
                .map_err(|e| not_a_str(e.into_inner().as_any(), "workflow_id"))?;
            let reason = reason
                .cast_into::<PyString>()
                .map_err(|e| not_a_str(e.into_inner().as_any(), "reason"))?;
            held.push((id, phase_arg(&phase)?, reason));
        }
        let items = held
            .iter()
            .map(|(id, to, reason)| Ok((id.to_str()?, *to, reason.to_str()?)))
            .collect::<PyResult<Vec<(&str, Phase, &str)>>>()?;
        let observed = self.observed.load(Ordering::Acquire);
        let refused: Vec<(usize, PhaseError)> = py.detach(|| {
            let mut table = locked(&self.table);
            let now = now_nanos();
            let refused = items
                .iter()
                .enumerate()
                .filter_map(|(at, (id, to, reason))| {
                    table
                        .transition(id, *to, reason, now)
                        .err()
                        .map(|e| (at, e))
                })
                .collect();
            if observed {
                queue_changes(&mut table, &mut locked(&self.pending));
            }
            refused
        });
        let none = py.None();
        let results = PyList::new(py, std::iter::repeat_n(none.bind(py), items.len()))?;
        for (at, err) in refused {
            results.set_item(at, phase_error(py, &err).into_value(py))?;
        }
        self.deliver(py);
        Ok(results)
    }
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
    m.add_class::<PhaseManager>()?;
    m.add_class::<PhaseState>()?;
    m.add_function(wrap_pyfunction!(phase_successors, m)?)?;
    m.add_function(wrap_pyfunction!(_register_phase, m)?)?;
    Ok(())
}
