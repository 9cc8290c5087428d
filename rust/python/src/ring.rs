//! `HistoryRing`: the core's history ring holding `(subject, event)` records, the memory of
//! `MemoryHistory` and `FileHistory`; the bus's emit path pushes into it without leaving
//! Rust.
//!
//! The ring sits behind a mutex that is never held while Python code could run: records
//! that leave the ring are dropped after it is released (dropping an event can run a
//! finaliser, which could emit again), and query results are turned into a list after.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use turnout_core::{subject_matches, Ring, Verdict, WireTime};

use crate::event::Event;

struct Entry {
    subject: Py<PyString>,
    event: Py<PyAny>,
}

/// Retained `(subject, event)` records, oldest first, bounded by `max_msgs` (0: any
/// number) and `max_age_ns` (0: forever) counted from when each was stored. `clock`
/// (ns since the epoch) tells the store time; None is the system clock.
#[pyclass(frozen, module = "turnout.history", name = "HistoryRing")]
pub struct HistoryRing {
    ring: Mutex<Ring<Entry>>,
    clock: Option<Py<PyAny>>,
}

impl HistoryRing {
    fn records(&self) -> MutexGuard<'_, Ring<Entry>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether store times come from the system clock (then the bus lends its stamp).
    pub(crate) fn on_system_clock(&self) -> bool {
        self.clock.is_none()
    }

    pub(crate) fn now_ns(&self, py: Python<'_>) -> PyResult<i64> {
        match &self.clock {
            None => Ok(system_now_ns()),
            Some(clock) => clock.call0(py)?.extract(py),
        }
    }

    /// Appends a record; what leaves the ring is dropped once the lock is released.
    pub(crate) fn push(&self, stored_ns: i64, subject: Py<PyString>, event: Py<PyAny>) {
        let departed = self
            .records()
            .push(stored_ns, Entry { subject, event }, None);
        drop(departed);
    }

    /// The events of the records whose subject matches `filter` and, given `since`,
    /// whose event's time is at or after `since.0`, in the order asked, at most `limit`;
    /// matched once per distinct subject. An event's time is read here when the bus
    /// stamped it or it was decoded; else `since.1(event)` tells it, once the ring is
    /// let go of.
    fn chosen(
        &self,
        py: Python<'_>,
        filter: &str,
        limit: usize,
        newest: bool,
        since: Option<(i128, &Bound<'_, PyAny>)>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let now = self.now_ns(py)?;
        let (departed, found) = {
            let mut ring = self.records();
            let departed = ring.expire(now);
            let mut verdicts: HashMap<*const pyo3::ffi::PyObject, bool> = HashMap::new();
            let found = ring
                .select(limit, newest, |entry: &Entry| -> PyResult<Verdict> {
                    let subject = entry.subject.bind(py);
                    let matched = match verdicts.get(&subject.as_ptr().cast_const()) {
                        Some(&matched) => matched,
                        None => {
                            let matched = subject_matches(subject.to_str()?, filter);
                            verdicts.insert(subject.as_ptr().cast_const(), matched);
                            matched
                        }
                    };
                    Ok(match (matched, since) {
                        (false, _) => Verdict::Skip,
                        (true, None) => Verdict::Take,
                        (true, Some((since_ns, _))) => {
                            let event = entry.event.bind(py).cast::<Event>();
                            match event.ok().and_then(|event| event.get().wire_time()) {
                                Some(time) if time.unix_nanos >= since_ns => Verdict::Take,
                                Some(_) => Verdict::Skip,
                                None => Verdict::Undecided,
                            }
                        }
                    })
                })
                .map(|found| {
                    found
                        .into_iter()
                        .map(|(entry, verdict)| (entry.event.clone_ref(py), verdict))
                        .collect::<Vec<_>>()
                });
            (departed, found)
        };
        drop(departed);
        let mut chosen = Vec::new();
        for (event, verdict) in found? {
            let keep = match (verdict, since) {
                (Verdict::Undecided, Some((since_ns, event_ns))) => {
                    event_ns.call1((&event,))?.extract::<i128>()? >= since_ns
                }
                (verdict, _) => verdict == Verdict::Take,
            };
            if keep {
                chosen.push(event);
            }
        }
        let extra = chosen.len().saturating_sub(limit);
        if newest {
            chosen.drain(..extra);
        } else {
            chosen.truncate(limit);
        }
        Ok(chosen)
    }
}

/// The system clock in nanoseconds since the epoch (what `time.time_ns()` reads).
pub(crate) fn system_now_ns() -> i64 {
    wire_ns(&WireTime::now())
}

pub(crate) fn wire_ns(time: &WireTime) -> i64 {
    i64::try_from(time.unix_nanos).unwrap_or(i64::MAX)
}

#[pymethods]
impl HistoryRing {
    #[new]
    #[pyo3(signature = (max_msgs = 0, max_age_ns = 0, clock = None))]
    fn new(max_msgs: usize, max_age_ns: i64, clock: Option<Py<PyAny>>) -> Self {
        Self {
            ring: Mutex::new(Ring::new(max_msgs, max_age_ns)),
            clock,
        }
    }

    /// Retains `event` published on `subject`, stored at `stored_ns` (default: the
    /// clock now); `position` defaults to the record's sequence number.
    #[pyo3(signature = (subject, event, stored_ns = None, position = None))]
    fn append(
        &self,
        py: Python<'_>,
        subject: Py<PyString>,
        event: Py<PyAny>,
        stored_ns: Option<i64>,
        position: Option<i64>,
    ) -> PyResult<()> {
        let stored_ns = match stored_ns {
            Some(ns) => ns,
            None => self.now_ns(py)?,
        };
        let departed = self
            .records()
            .push(stored_ns, Entry { subject, event }, position);
        drop(departed);
        Ok(())
    }

    /// Drops the records past the age limit at `now_ns` (default: the clock now).
    #[pyo3(signature = (now_ns = None))]
    fn expire(&self, py: Python<'_>, now_ns: Option<i64>) -> PyResult<()> {
        let now = match now_ns {
            Some(ns) => ns,
            None => self.now_ns(py)?,
        };
        let departed = self.records().expire(now);
        drop(departed);
        Ok(())
    }

    /// Retained events on subjects matching the (valid) pattern `filter`, oldest first:
    /// the first `limit` from the oldest, or with `newest` the last `limit`.
    #[pyo3(signature = (filter, limit, newest = false))]
    fn select<'py>(
        &self,
        py: Python<'py>,
        filter: &str,
        limit: i64,
        newest: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let limit = usize::try_from(limit).unwrap_or(0);
        if limit == 0 {
            return Ok(PyList::empty(py));
        }
        PyList::new(py, self.chosen(py, filter, limit, newest, None)?)
    }

    /// `select` keeping only the events whose own time is at or after `since_ns` (ns
    /// since the epoch): read in Rust for an event the bus stamped or decoded, else
    /// `event_ns(event)` (called without the ring's lock held).
    #[pyo3(signature = (filter, since_ns, limit, newest, event_ns))]
    fn select_since<'py>(
        &self,
        py: Python<'py>,
        filter: &str,
        since_ns: i128,
        limit: i64,
        newest: bool,
        event_ns: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let limit = usize::try_from(limit).unwrap_or(0);
        if limit == 0 {
            return Ok(PyList::empty(py));
        }
        let since = Some((since_ns, event_ns));
        PyList::new(py, self.chosen(py, filter, limit, newest, since)?)
    }

    /// The position of the oldest retained record, None when empty.
    fn first_position(&self) -> Option<i64> {
        self.records().first().map(|record| record.position)
    }

    /// Never waits for the ring: no holder of its lock runs Python code, so it is free
    /// whenever the collector runs; were it not, nothing held would be reported (which
    /// only keeps the records alive until a later collection).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.clock)?;
        if let Ok(ring) = self.ring.try_lock() {
            for record in ring.iter() {
                visit.call(&record.value.event)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let records = self.records().take_all();
        drop(records);
    }

    /// `retained`, `appended`, `expired` and `evicted`, after expiring what is too old.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let now = self.now_ns(py)?;
        let (departed, counters) = {
            let mut ring = self.records();
            let departed = ring.expire(now);
            (departed, ring.counters())
        };
        drop(departed);
        let dict = PyDict::new(py);
        dict.set_item("retained", counters.retained)?;
        dict.set_item("appended", counters.appended)?;
        dict.set_item("expired", counters.expired)?;
        dict.set_item("evicted", counters.evicted)?;
        Ok(dict)
    }

    fn __len__(&self) -> usize {
        self.records().len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HistoryRing>()
}
