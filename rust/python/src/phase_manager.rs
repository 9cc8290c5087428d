//! `PhaseManager`: the core's phase manager, its callbacks Python callables. The order of
//! the changes and who delivers them are the core's; this file converts and calls.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use turnout_core::{self as core, Phase, PhaseChange, PhaseError};

use crate::args::not_a_str;
use crate::phase::{phase_arg, phase_error, phase_object, snapshot, PhaseState};

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
    /// A checkpoint carries the caller's state object to the callbacks.
    inner: core::PhaseManager<Py<PyAny>>,
    callbacks: Mutex<Callbacks>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PhaseManager {
    /// Runs `op` on the table, then tells the callbacks what it changed.
    fn apply(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&mut core::PhaseTable, i64) -> Result<(), PhaseError>,
    ) -> PyResult<()> {
        self.inner.apply(op).map_err(|e| phase_error(py, &e))?;
        self.deliver(py);
        Ok(())
    }

    fn deliver(&self, py: Python<'_>) {
        self.inner.deliver(|change| self.run_callbacks(py, change));
    }

    fn run_callbacks(&self, py: Python<'_>, change: PhaseChange<Py<PyAny>>) {
        let (callbacks, args): (Vec<Py<PyAny>>, PyResult<Bound<'_, PyTuple>>) = match change {
            PhaseChange::Phase(state) => (
                locked(&self.callbacks)
                    .phase_changed
                    .iter()
                    .map(|c| c.clone_ref(py))
                    .collect(),
                snapshot(py, state).and_then(|s| PyTuple::new(py, [s])),
            ),
            PhaseChange::Checkpoint {
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
}

#[pymethods]
impl PhaseManager {
    #[new]
    fn new() -> Self {
        Self {
            inner: core::PhaseManager::new(),
            callbacks: Mutex::default(),
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
        let state = self
            .inner
            .apply(|t, now| t.register(workflow_id, parent_id, root_id, now).clone());
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
        self.inner
            .checkpoint(workflow_id, checkpoint_id, || {
                state.unwrap_or_else(|| py.None())
            })
            .map_err(|e| phase_error(py, &e))?;
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
        self.inner
            .apply(|t, _| t.set_progress(workflow_id, progress, current_action))
            .map_err(|e| phase_error(py, &e))
    }

    /// The workflow's phase, or None if it is not tracked.
    fn get_phase(&self, py: Python<'_>, workflow_id: &str) -> PyResult<Option<Py<PyAny>>> {
        let phase = self.inner.read(|t| t.get(workflow_id).map(|s| s.phase));
        phase.map(|p| phase_object(py, p)).transpose()
    }

    /// A snapshot of the workflow's state, or None if it is not tracked.
    fn get_state<'py>(
        &self,
        py: Python<'py>,
        workflow_id: &str,
    ) -> PyResult<Option<Bound<'py, PhaseState>>> {
        let state = self.inner.read(|t| t.get(workflow_id).cloned());
        state.map(|s| snapshot(py, s)).transpose()
    }

    /// Snapshots of the workflows not in a terminal phase.
    fn active_workflows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PhaseState>>> {
        let states: Vec<_> = self.inner.read(|t| {
            t.all()
                .filter(|s| !s.phase.is_terminal())
                .cloned()
                .collect()
        });
        states.into_iter().map(|s| snapshot(py, s)).collect()
    }

    /// Snapshots of every tracked workflow.
    fn all_workflows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PhaseState>>> {
        let states: Vec<_> = self.inner.read(|t| t.all().cloned().collect());
        states.into_iter().map(|s| snapshot(py, s)).collect()
    }

    fn remove_workflow(&self, workflow_id: &str) {
        self.inner.apply(|t, _| t.remove(workflow_id));
    }

    fn __len__(&self) -> usize {
        self.inner.read(core::PhaseTable::len)
    }

    /// Calls `callback(state)` after every phase change.
    fn on_phase_changed(&self, callback: Py<PyAny>) {
        locked(&self.callbacks).phase_changed.push(callback);
        self.inner.observe();
    }

    /// Reports the callbacks (never waiting for their lock, like `HistoryRing`); the
    /// changes waiting for delivery are not reported, they are gone by the next call's end.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(callbacks) = self.callbacks.try_lock() {
            for callback in callbacks.phase_changed.iter().chain(&callbacks.checkpoint) {
                visit.call(callback)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let callbacks = std::mem::take(&mut *locked(&self.callbacks));
        drop(callbacks);
    }

    /// Calls `callback(workflow_id, checkpoint_id, state)` after every checkpoint.
    fn on_checkpoint(&self, callback: Py<PyAny>) {
        locked(&self.callbacks).checkpoint.push(callback);
        self.inner.observe();
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
        let refused: Vec<(usize, PhaseError)> = py.detach(|| {
            self.inner.apply(|table, now| {
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(at, (id, to, reason))| {
                        table
                            .transition(id, *to, reason, now)
                            .err()
                            .map(|e| (at, e))
                    })
                    .collect()
            })
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PhaseManager>()
}
