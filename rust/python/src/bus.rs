//! The bus's emit path: `BusCore` (the base of `turnout.Bus`), `Route` and `DispatchLock`.
//!
//! `bus.emit(event)` is one call into Rust for the common case: the subject is found in
//! the type-to-subject cache, the event stamped (one clock reading, also the history's
//! store time), recorded in the history ring, routed through the route cache and handed
//! to each sync handler, with the counters kept here. Everything else the bus does
//! (validating a new type, a route cache miss, raw subscribers, queue groups, a history
//! or transport written in Python, a handler's error, another thread dispatching) is a
//! call back into the Python `Bus`, which owns those rules: this file only takes the way
//! through that needs none of them.
//!
//! The caches and the hand-off queue are Python containers shared with the `Bus`: it
//! fills and clears them under its registry lock, Rust reads them holding the GIL. No
//! Rust lock is ever held while Python code runs (a handler may emit again).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use turnout_core::WireTime;

use crate::event::Event;
use crate::ring::{system_now_ns, wire_ns, HistoryRing};

// --- the dispatch lock ----------------------------------------------------------------

/// The bus's dispatch lock: re-entrant like `threading.RLock`, plus the flag telling a
/// thread that holds it whether it is inside a dispatch (a publish from a handler is then
/// queued, not nested). A thread that blocks on it lets go of the GIL while it waits.
#[pyclass(frozen, module = "turnout.bus", name = "DispatchLock")]
pub struct DispatchLock {
    state: Mutex<LockState>,
    freed: Condvar,
}

#[derive(Default)]
struct LockState {
    /// The holding thread's mark, 0 when free.
    owner: usize,
    depth: u32,
    waiters: u32,
    dispatching: bool,
}

/// A number unique to the calling thread among live threads: the address of a
/// thread-local.
fn thread_mark() -> usize {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|mark| std::ptr::from_ref(mark) as usize)
}

impl DispatchLock {
    fn state(&self) -> MutexGuard<'_, LockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the lock and starts dispatching, if the lock is free.
    fn begin_dispatch(&self) -> bool {
        let mut state = self.state();
        if state.owner != 0 {
            return false;
        }
        state.owner = thread_mark();
        state.depth = 1;
        state.dispatching = true;
        true
    }

    /// Ends a dispatch begun by `begin_dispatch` and lets go of the lock.
    fn end_dispatch(&self) {
        let mut state = self.state();
        state.dispatching = false;
        Self::leave(&mut state, &self.freed);
    }

    fn try_acquire(&self) -> bool {
        let me = thread_mark();
        let mut state = self.state();
        if state.owner == 0 {
            state.owner = me;
            state.depth = 1;
            true
        } else if state.owner == me {
            state.depth += 1;
            true
        } else {
            false
        }
    }

    fn leave(state: &mut LockState, freed: &Condvar) {
        state.depth -= 1;
        if state.depth == 0 {
            state.owner = 0;
            if state.waiters != 0 {
                freed.notify_one();
            }
        }
    }
}

#[pymethods]
impl DispatchLock {
    #[new]
    fn new() -> Self {
        Self {
            state: Mutex::new(LockState::default()),
            freed: Condvar::new(),
        }
    }

    /// Takes the lock (again, if this thread holds it); with `blocking=False` only if
    /// that needs no waiting. Returns whether it was taken.
    #[pyo3(signature = (blocking = true))]
    fn acquire(&self, py: Python<'_>, blocking: bool) -> bool {
        if self.try_acquire() {
            return true;
        }
        if !blocking {
            return false;
        }
        let me = thread_mark();
        py.detach(|| {
            let mut state = self.state();
            state.waiters += 1;
            while state.owner != 0 {
                state = self
                    .freed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.waiters -= 1;
            state.owner = me;
            state.depth = 1;
        });
        true
    }

    /// Lets go once; the lock is free when every acquire has been matched.
    fn release(&self) -> PyResult<()> {
        let mut state = self.state();
        if state.owner != thread_mark() {
            return Err(PyRuntimeError::new_err(
                "cannot release a dispatch lock this thread does not hold",
            ));
        }
        Self::leave(&mut state, &self.freed);
        Ok(())
    }

    /// Whether the holder is inside a dispatch.
    #[getter]
    fn get_dispatching(&self) -> bool {
        self.state().dispatching
    }

    #[setter]
    fn set_dispatching(&self, value: bool) {
        self.state().dispatching = value;
    }
}

// --- routes ---------------------------------------------------------------------------

/// What a subject routes to: `plain`, its subscriptions in no queue group, and `groups`,
/// each matched queue group with all its matched members (None when none matched). Holds
/// what the emit path calls for each plain subscription.
#[pyclass(frozen, module = "turnout.bus", name = "Route")]
pub struct Route {
    plain: Py<PyTuple>,
    groups: Option<Py<PyDict>>,
    calls: Vec<Py<PyAny>>,
    /// Whether a plain subscription takes raw messages (then Python delivers).
    raw: bool,
}

#[pymethods]
impl Route {
    #[new]
    fn new(plain: Bound<'_, PyTuple>, groups: Option<Bound<'_, PyDict>>) -> PyResult<Self> {
        let py = plain.py();
        let mut calls = Vec::with_capacity(plain.len());
        let mut raw = false;
        for sub in plain.iter() {
            calls.push(sub.getattr(intern!(py, "_call"))?.unbind());
            raw |= sub.getattr(intern!(py, "raw"))?.is_truthy()?;
        }
        Ok(Self {
            plain: plain.unbind(),
            groups: groups.map(Bound::unbind),
            calls,
            raw,
        })
    }

    #[getter]
    fn plain(&self, py: Python<'_>) -> Py<PyTuple> {
        self.plain.clone_ref(py)
    }

    #[getter]
    fn groups(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.groups.as_ref().map(|groups| groups.clone_ref(py))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.plain)?;
        visit.call(&self.groups)?;
        for call in &self.calls {
            visit.call(call)?;
        }
        Ok(())
    }
}

// --- the bus --------------------------------------------------------------------------

/// What `Bus.__init__` hands over once.
struct Wiring {
    node: Py<PyAny>,
    /// Event type -> its subject, validated.
    subjects: Py<PyDict>,
    /// Subject -> `Route`, cleared on every change of the subscriptions.
    routes: Py<PyDict>,
    /// Messages handed off to whichever thread holds the dispatch lock.
    pending: Py<PyAny>,
    lock: Py<DispatchLock>,
    /// The history when it is a `MemoryHistory` (its ring, pushed to directly) ...
    ring: Option<Py<HistoryRing>>,
    /// ... else its `append`.
    append: Py<PyAny>,
    /// Every emitted event needs its JSON at once (a history file, a remote transport).
    needs_bytes: bool,
    remote: bool,
    /// Queue groups are shared in this process (not by the transport's server).
    local_queues: bool,
}

/// The Rust half of `turnout.Bus`: the emit path and the counters it keeps.
#[pyclass(frozen, subclass, module = "turnout.bus", name = "BusCore")]
pub struct BusCore {
    wiring: OnceLock<Wiring>,
    closed: AtomicBool,
    published: AtomicU64,
    delivered: AtomicU64,
}

impl BusCore {
    fn wiring(&self) -> PyResult<&Wiring> {
        self.wiring
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("the bus was not initialised"))
    }

    /// Delivers one emitted event, holding the dispatch lock: records it, sends it on,
    /// calls the handlers. `stamp` is the time it was stamped with, if just now.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_event<'py>(
        &self,
        slf: &Bound<'py, Self>,
        wiring: &Wiring,
        subject: &Bound<'py, PyString>,
        event: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
        route: Option<Bound<'py, Route>>,
        stamp: Option<&WireTime>,
    ) -> PyResult<()> {
        let py = slf.py();
        self.published.fetch_add(1, Ordering::Relaxed);
        let recorded = match &wiring.ring {
            Some(ring) => {
                let ring = ring.get();
                let stored_ns = if ring.on_system_clock() {
                    Ok(stamp.map_or_else(system_now_ns, wire_ns))
                } else {
                    ring.now_ns(py)
                };
                stored_ns.map(|ns| ring.push(ns, subject.clone().unbind(), event.clone().unbind()))
            }
            None => wiring
                .append
                .bind(py)
                .call1((subject, event, data))
                .map(drop),
        };
        if let Err(err) = recorded {
            if !err.is_instance_of::<PyException>(py) {
                return Err(err);
            }
            slf.call_method1(
                intern!(py, "_history_failed"),
                (subject, err.into_value(py)),
            )?;
        }
        if wiring.remote {
            slf.call_method1(intern!(py, "_send"), (subject, event, data))?;
        }
        let route = match route {
            Some(route) => route,
            None => match wiring.routes.bind(py).get_item(subject)? {
                Some(route) => route.cast_into::<Route>()?,
                None => slf
                    .call_method1(intern!(py, "_route"), (subject,))?
                    .cast_into::<Route>()?,
            },
        };
        let found = route.get();
        if !found.calls.is_empty() {
            if found.raw {
                slf.call_method1(
                    intern!(py, "_deliver_mixed"),
                    (found.plain.bind(py), subject, event, data),
                )?;
            } else {
                for (at, call) in found.calls.iter().enumerate() {
                    if let Err(err) = call.bind(py).call1((event,)) {
                        let sub = found.plain.bind(py).get_item(at)?;
                        handler_failed(slf, &sub, err)?;
                    }
                }
                self.delivered
                    .fetch_add(found.calls.len() as u64, Ordering::Relaxed);
            }
        }
        if let Some(groups) = &found.groups {
            if wiring.local_queues {
                slf.call_method1(
                    intern!(py, "_deliver_emitted_to_groups"),
                    (groups.bind(py), subject, event, data),
                )?;
            }
        }
        Ok(())
    }
}

/// A sync handler raised: an `Exception` is counted on its subscription and logged by
/// the Python side; anything else propagates.
fn handler_failed(slf: &Bound<'_, BusCore>, sub: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
    let py = slf.py();
    if !err.is_instance_of::<PyException>(py) {
        return Err(err);
    }
    slf.call_method1(intern!(py, "_handler_failed"), (sub, err.into_value(py)))?;
    Ok(())
}

#[pymethods]
impl BusCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            wiring: OnceLock::new(),
            closed: AtomicBool::new(false),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    /// Hands the emit path what it works with (once, from `Bus.__init__`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, node, subjects, routes, pending, lock, history_ring, history_append, needs_bytes, remote, local_queues))]
    fn _wire(
        &self,
        node: Py<PyAny>,
        subjects: Py<PyDict>,
        routes: Py<PyDict>,
        pending: Py<PyAny>,
        lock: Py<DispatchLock>,
        history_ring: Option<Py<HistoryRing>>,
        history_append: Py<PyAny>,
        needs_bytes: bool,
        remote: bool,
        local_queues: bool,
    ) -> PyResult<()> {
        let wiring = Wiring {
            node,
            subjects,
            routes,
            pending,
            lock,
            ring: history_ring,
            append: history_append,
            needs_bytes,
            remote,
            local_queues,
        };
        self.wiring
            .set(wiring)
            .map_err(|_| PyRuntimeError::new_err("the bus is already initialised"))
    }

    /// The node name stamped on events that have none.
    #[getter]
    fn node(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.wiring()?.node.clone_ref(py))
    }

    /// Publishes `event` on `"events." + event.type` and returns that subject.
    ///
    /// The bus publishes a copy with the timestamp set to now (UTC, to the nanosecond)
    /// and an empty node filled with the bus's; every handler and the history get that
    /// same immutable copy. A type that does not make a valid literal subject raises
    /// `turnout.InvalidSubjectError`; anything but an `Event` raises `TypeError`.
    fn emit<'py>(slf: &Bound<'py, Self>, event: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let wiring = this.wiring()?;
        let Ok(event) = event.cast::<Event>() else {
            return Err(PyTypeError::new_err(format!(
                "emit takes an Event, not {}",
                event.get_type().name()?
            )));
        };
        let event = event.get();
        let kind = event.kind_object().bind(py);
        let subject = match wiring.subjects.bind(py).get_item(kind)? {
            Some(subject) => subject,
            None => slf.call_method1(intern!(py, "_event_subject"), (kind,))?,
        };
        let now = WireTime::now();
        let stamped = event
            .stamped_at(py, wiring.node.bind(py), now)?
            .into_object(py)?;
        let lock = wiring.lock.get();
        if wiring.needs_bytes
            || this.closed.load(Ordering::Relaxed)
            || wiring.pending.bind(py).len()? != 0
            || !lock.begin_dispatch()
        {
            let data = if wiring.needs_bytes {
                stamped.call_method0(intern!(py, "to_json"))?
            } else {
                py.None().into_bound(py)
            };
            slf.call_method1(intern!(py, "_publish"), (&subject, stamped, data))?;
            return Ok(subject);
        }
        let delivered = match subject.cast::<PyString>() {
            Ok(text) => this.dispatch_event(
                slf,
                wiring,
                text,
                stamped.as_any(),
                &py.None().into_bound(py),
                None,
                Some(&now),
            ),
            Err(err) => Err(err.into()),
        };
        lock.end_dispatch();
        delivered?;
        if wiring.pending.bind(py).len()? != 0 && lock.try_acquire() {
            slf.call_method0(intern!(py, "_drain_locked"))?;
        }
        Ok(subject)
    }

    /// Delivers one emitted event; the caller holds the dispatch lock.
    #[pyo3(signature = (subject, event, data = None, route = None))]
    fn _dispatch_event<'py>(
        slf: &Bound<'py, Self>,
        subject: &Bound<'py, PyString>,
        event: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        route: Option<Bound<'py, Route>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let none = py.None().into_bound(py);
        this.dispatch_event(
            slf,
            this.wiring()?,
            subject,
            event,
            data.unwrap_or(&none),
            route,
            None,
        )
    }

    #[getter(_closed)]
    fn closed_value(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    #[setter(_closed)]
    fn set_closed_value(&self, value: bool) {
        self.closed.store(value, Ordering::Relaxed);
    }

    #[getter(_published)]
    fn published_value(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    #[setter(_published)]
    fn set_published_value(&self, value: u64) {
        self.published.store(value, Ordering::Relaxed);
    }

    #[getter(_delivered)]
    fn delivered_value(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    #[setter(_delivered)]
    fn set_delivered_value(&self, value: u64) {
        self.delivered.store(value, Ordering::Relaxed);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(wiring) = self.wiring.get() {
            visit.call(&wiring.node)?;
            visit.call(&wiring.subjects)?;
            visit.call(&wiring.routes)?;
            visit.call(&wiring.pending)?;
            visit.call(&wiring.lock)?;
            visit.call(&wiring.ring)?;
            visit.call(&wiring.append)?;
        }
        Ok(())
    }

    /// Breaks reference cycles through the caches (routes hold subscriptions, which hold
    /// the bus); the rest is immutable.
    fn __clear__(&self) {
        if let Some(wiring) = self.wiring.get() {
            Python::attach(|py| {
                wiring.routes.bind(py).clear();
                wiring.subjects.bind(py).clear();
            });
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DispatchLock>()?;
    m.add_class::<Route>()?;
    m.add_class::<BusCore>()
}
