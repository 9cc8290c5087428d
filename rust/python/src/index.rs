//! `SubjectIndex` and `MatchResult`: the core index holding Python objects as values.

use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};
use turnout_core::{self as core, InsertError, Matched};

use crate::args::{invalid_subject, not_a_str, subject_error, text, NOT_UTF8};

/// A stored value. Results share the trie's value lists, not the values, so matching
/// (under `py.detach` in `match_many`) never touches a Python reference count; the last
/// drop of a `Py` without the GIL is deferred by PyO3 to the next time it is held.
#[derive(Debug)]
struct Value(Py<PyAny>);

impl Clone for Value {
    /// Cloned only when an insert or remove copies a value list a result still holds,
    /// and those run attached, so `attach` just lends the held GIL.
    fn clone(&self) -> Self {
        Python::attach(|py| Self(self.0.clone_ref(py)))
    }
}

/// The entries one subject matched. Immutable and shared with the cache, so lists are
/// built on access and callers can never corrupt a cached result.
#[pyclass(frozen, freelist = 256, module = "turnout", name = "MatchResult")]
pub struct MatchResult {
    inner: Arc<Matched<Value>>,
    /// The index's traversal reports the values its lists hold, lists this result may
    /// share: the collector must never find the index garbage (and clear those values)
    /// while a result can still hand them out.
    _index: Py<SubjectIndex>,
}

#[pymethods]
impl MatchResult {
    /// Values of the matched entries that are in no queue group.
    #[getter]
    fn plain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.plain().map(|v| v.0.bind(py)))
    }

    /// Each matched queue group and the values of all its matched members.
    #[getter]
    fn queues<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, members) in self.inner.queues() {
            dict.set_item(
                PyString::new(py, name),
                PyList::new(py, members.map(|v| v.0.bind(py)))?,
            )?;
        }
        Ok(dict)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "MatchResult(plain={}, queues={})",
            self.plain(py)?.repr()?,
            self.queues(py)?.repr()?
        ))
    }
}

impl MatchResult {
    /// Wraps a core result as a Python object.
    fn wrap<'py>(
        index: &Bound<'py, SubjectIndex>,
        inner: Arc<Matched<Value>>,
    ) -> PyResult<Bound<'py, Self>> {
        let result = Bound::new(
            index.py(),
            Self {
                inner,
                _index: index.clone().unbind(),
            },
        )?;
        // PyO3 makes every class a GC type, but this one's traversal visits nothing of its
        // own, so tracking it only makes each collection walk more objects: with a batch
        // of results alive, the collector dominated `match_many`.
        // SAFETY: `result` is a live GC object we own a reference to; untracking an object
        // is always allowed, and its deallocator tolerates an untracked object.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(result.as_ptr().cast()) };
        Ok(result)
    }
}

/// Remembers the Python objects made for recent results of one batch, so a subject that
/// repeats (and every empty result, which share one core value) yields one shared
/// object instead of a new one per item.
struct RecentResults<'py> {
    slots: [Option<(*const Matched<Value>, Bound<'py, MatchResult>)>; RECENT_SLOTS],
}

const RECENT_SLOTS: usize = 64;

impl<'py> RecentResults<'py> {
    fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| None),
        }
    }

    fn get(
        &mut self,
        index: &Bound<'py, SubjectIndex>,
        inner: Arc<Matched<Value>>,
    ) -> PyResult<Bound<'py, MatchResult>> {
        let key = Arc::as_ptr(&inner);
        // Results are heap blocks at least 16-byte aligned: drop the always-zero bits.
        let slot = &mut self.slots[(key as usize >> 4) % RECENT_SLOTS];
        if let Some((seen, object)) = slot {
            if *seen == key {
                return Ok(object.clone());
            }
        }
        let object = MatchResult::wrap(index, inner)?;
        *slot = Some((key, object.clone()));
        Ok(object)
    }
}

/// A trie of subject patterns with a match cache and queue groups.
#[pyclass(frozen, module = "turnout", name = "SubjectIndex")]
pub struct SubjectIndex {
    inner: core::SubjectIndex<Value>,
}

#[pymethods]
impl SubjectIndex {
    #[new]
    #[pyo3(signature = (cache_size = 1024))]
    fn new(cache_size: i64) -> PyResult<Self> {
        match usize::try_from(cache_size) {
            Ok(size) if size <= core::MAX_CACHE_SIZE => Ok(Self {
                inner: core::SubjectIndex::new(size),
            }),
            _ => Err(PyValueError::new_err(format!(
                "cache_size must be between 0 and {}, not {cache_size}",
                core::MAX_CACHE_SIZE
            ))),
        }
    }

    /// Results the match cache holds at most (0: no cache).
    #[getter]
    fn cache_size(&self) -> usize {
        self.inner.cache_size()
    }

    /// Stores `value` under `pattern` (in queue group `queue` if given); returns a handle.
    #[pyo3(signature = (pattern, value, queue = None))]
    fn insert(
        &self,
        pattern: &Bound<'_, PyAny>,
        value: Py<PyAny>,
        queue: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let py = pattern.py();
        let Some(p) = text(pattern, "pattern")? else {
            return Err(invalid_subject(py, pattern, NOT_UTF8));
        };
        let queue = match queue {
            None => None,
            Some(q) => Some(
                text(q, "queue")?
                    .ok_or_else(|| PyValueError::new_err("queue group name is not valid UTF-8"))?,
            ),
        };
        self.inner
            .insert(p, queue, Value(value))
            .map_err(|err| match err {
                InsertError::Subject(err) => subject_error(py, pattern, err),
                InsertError::Queue(err) => PyValueError::new_err(err.to_string()),
            })
    }

    /// Removes the entry `handle` names; False if there is none.
    fn remove(&self, handle: &Bound<'_, PyAny>) -> PyResult<bool> {
        if handle.is_instance_of::<PyBool>() || !handle.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err("handle must be an int from insert()"));
        }
        // Negative or huge ints name no entry.
        let Ok(handle) = handle.extract::<u64>() else {
            return Ok(false);
        };
        // The value is dropped here, after the index's lock is released.
        Ok(self.inner.remove(handle).is_some())
    }

    /// Every entry matching `subject` (its tokens taken literally).
    #[pyo3(name = "match")]
    fn match_subject<'py>(
        slf: &Bound<'py, Self>,
        subject: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, MatchResult>> {
        let found = slf
            .get()
            .inner
            .matches(text(subject, "subject")?.unwrap_or(""));
        Bound::new(
            slf.py(),
            MatchResult {
                inner: found,
                _index: slf.clone().unbind(),
            },
        )
    }

    /// `match` for each subject; the trie is walked with the GIL released.
    fn match_many<'py>(
        slf: &Bound<'py, Self>,
        subjects: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, MatchResult>>> {
        let mut owned: Vec<Option<PyBackedStr>> = Vec::new();
        for item in subjects.try_iter()? {
            let item = item?;
            let Ok(s) = item.cast::<PyString>() else {
                return Err(not_a_str(&item, "subject"));
            };
            owned.push(PyBackedStr::try_from(s.clone()).ok());
        }
        let this = slf.get();
        let results = slf.py().detach(|| {
            this.inner
                .matches_many(owned.iter().map(|s| s.as_deref().unwrap_or("")))
        });
        let mut recent = RecentResults::new();
        results.into_iter().map(|r| recent.get(slf, r)).collect()
    }

    /// Whether any entry matches `subject`.
    fn has_interest(&self, subject: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(text(subject, "subject")?.is_some_and(|s| self.inner.has_interest(s)))
    }

    /// How many entries match `subject`.
    fn count(&self, subject: &Bound<'_, PyAny>) -> PyResult<usize> {
        Ok(text(subject, "subject")?.map_or(0, |s| self.inner.count(s)))
    }

    /// Counters: subscriptions, matches, cache hits/misses/entries, inserts, removes, and
    /// the fan-out of the cached results.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("subscriptions", s.subscriptions)?;
        d.set_item("matches", s.matches)?;
        d.set_item("cache_hits", s.cache.hits)?;
        d.set_item("cache_misses", s.cache.misses)?;
        d.set_item("cache_entries", s.cache.entries)?;
        d.set_item("cache_size", s.cache_size)?;
        d.set_item("inserts", s.inserts)?;
        d.set_item("removes", s.removes)?;
        d.set_item("max_fanout", s.cache.max_fanout)?;
        d.set_item("avg_fanout", s.cache.avg_fanout)?;
        d.set_item("nodes", s.nodes)?;
        Ok(d)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.try_visit_values(|value| visit.call(&value.0))
    }

    fn __clear__(&self) {
        drop(self.inner.clear());
    }

    fn __repr__(&self) -> String {
        format!(
            "SubjectIndex(entries={}, cache_size={})",
            self.inner.len(),
            self.inner.cache_size()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SubjectIndex>()?;
    m.add_class::<MatchResult>()?;
    Ok(())
}
