//! `RoundWaker` and `ChannelWait`: the readers of many channels woken together.
//!
//! A reader of a workspace channel that finds it empty awaits a `ChannelWait`. When the
//! dispatcher buffers a batch into a thousand channels, a thousand readers wake; with
//! asyncio futures that is a `loop.call_soon` (a `Handle` made, queued and run, all in
//! Python) per reader. A `ChannelWait` is awaited as a future is (asyncio's `Task` takes any
//! object with the future protocol), but waking one only records it: the first wake of a
//! loop turn schedules one callback, which runs every recorded reader's wake-up in order.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

/// `asyncio.get_running_loop`, `CancelledError` and `InvalidStateError`.
struct Asyncio {
    get_running_loop: Py<PyAny>,
    cancelled_error: Py<PyAny>,
    invalid_state_error: Py<PyAny>,
}

static ASYNCIO: PyOnceLock<Asyncio> = PyOnceLock::new();

fn asyncio(py: Python<'_>) -> PyResult<&Asyncio> {
    ASYNCIO.get_or_try_init(py, || {
        let module = py.import("asyncio")?;
        Ok(Asyncio {
            get_running_loop: module.getattr("get_running_loop")?.unbind(),
            cancelled_error: module.getattr("CancelledError")?.unbind(),
            invalid_state_error: module.getattr("InvalidStateError")?.unbind(),
        })
    })
}

fn error<'py>(py: Python<'py>, class: &Py<PyAny>, args: impl IntoPyObject<'py>) -> PyErr {
    match class.bind(py).call1((args,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

enum State {
    Pending,
    Woken,
    Cancelled(Option<Py<PyAny>>),
}

/// A callback added by `add_done_callback` and the context to run it in.
type Callback = (Py<PyAny>, Option<Py<PyAny>>);

/// What a channel reader awaits: a one-shot future without a result, woken through its
/// `RoundWaker`. `cancel` works as on an asyncio future.
#[pyclass(module = "turnout.workspace", name = "ChannelWait")]
pub struct ChannelWait {
    event_loop: Py<PyAny>,
    state: State,
    callbacks: Vec<Callback>,
    /// Set while a task is suspended on it (asyncio's future protocol).
    #[pyo3(get, set, name = "_asyncio_future_blocking")]
    blocking: bool,
}

#[pymethods]
impl ChannelWait {
    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    fn done(&self) -> bool {
        !matches!(self.state, State::Pending)
    }

    fn cancelled(&self) -> bool {
        matches!(self.state, State::Cancelled(_))
    }

    /// `None` once woken; `CancelledError` if cancelled; `InvalidStateError` before.
    fn result(&self, py: Python<'_>) -> PyResult<()> {
        let asyncio = asyncio(py)?;
        match &self.state {
            State::Woken => Ok(()),
            State::Cancelled(message) => Err(error(py, &asyncio.cancelled_error, message)),
            State::Pending => Err(error(py, &asyncio.invalid_state_error, "not woken yet")),
        }
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.result(py).map(|()| None)
    }

    #[pyo3(signature = (callback, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let mut this = slf.borrow_mut();
        if matches!(this.state, State::Pending) {
            this.callbacks.push((callback, context));
            return Ok(());
        }
        let event_loop = this.event_loop.clone_ref(slf.py());
        drop(this);
        call_soon(slf, &event_loop, (callback, context))
    }

    /// Removes every registration of `callback`; how many there were.
    fn remove_done_callback(&mut self, py: Python<'_>, callback: &Bound<'_, PyAny>) -> usize {
        let before = self.callbacks.len();
        self.callbacks
            .retain(|(kept, _)| !kept.bind(py).eq(callback).unwrap_or(false));
        before - self.callbacks.len()
    }

    /// Cancels a pending wait (its callbacks are scheduled, as an asyncio future's are);
    /// `False` if it was already woken or cancelled.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let mut this = slf.borrow_mut();
        if !matches!(this.state, State::Pending) {
            return Ok(false);
        }
        this.state = State::Cancelled(msg);
        let callbacks = std::mem::take(&mut this.callbacks);
        let event_loop = this.event_loop.clone_ref(slf.py());
        drop(this);
        for callback in callbacks {
            call_soon(slf, &event_loop, callback)?;
        }
        Ok(true)
    }

    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Suspends the awaiting task once (yielding this wait to it), then ends.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let mut this = slf.borrow_mut();
        match this.state {
            State::Pending => {
                this.blocking = true;
                Ok(Some(slf.clone().into_any().unbind()))
            }
            State::Woken => Ok(None),
            State::Cancelled(_) => this.result(slf.py()).map(|()| None),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        if let State::Cancelled(Some(message)) = &self.state {
            visit.call(message)?;
        }
        for (callback, context) in &self.callbacks {
            visit.call(callback)?;
            if let Some(context) = context {
                visit.call(context)?;
            }
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.callbacks.clear();
    }
}

/// `loop.call_soon(callback, wait, context=context)`.
fn call_soon(
    wait: &Bound<'_, ChannelWait>,
    event_loop: &Py<PyAny>,
    callback: Callback,
) -> PyResult<()> {
    let py = wait.py();
    let (callback, context) = callback;
    let kwargs = PyDict::new(py);
    kwargs.set_item("context", context)?;
    event_loop
        .bind(py)
        .call_method("call_soon", (callback, wait), Some(&kwargs))?;
    Ok(())
}

/// Wakes the readers of a set of channels, one scheduled callback per loop turn for all
/// of them. Bound to the event loop of its first `wait`; used from that loop only.
#[pyclass(module = "turnout.workspace", name = "RoundWaker")]
pub struct RoundWaker {
    event_loop: Option<Py<PyAny>>,
    woken: Vec<Py<ChannelWait>>,
    scheduled: bool,
}

#[pymethods]
impl RoundWaker {
    #[new]
    fn new() -> Self {
        Self {
            event_loop: None,
            woken: Vec::new(),
            scheduled: false,
        }
    }

    /// A new wait on the running loop. `RuntimeError` outside a running loop, or when
    /// readers of another loop still wait to be woken.
    fn wait(&mut self, py: Python<'_>) -> PyResult<ChannelWait> {
        let running = asyncio(py)?.get_running_loop.bind(py).call0()?;
        let event_loop = match &self.event_loop {
            Some(bound) if bound.bind(py).is(&running) => bound.clone_ref(py),
            Some(_) if self.scheduled => {
                return Err(PyRuntimeError::new_err(
                    "workspace channels woken together are read from one event loop",
                ));
            }
            _ => {
                let event_loop = running.unbind();
                self.event_loop = Some(event_loop.clone_ref(py));
                event_loop
            }
        };
        Ok(ChannelWait {
            event_loop,
            state: State::Pending,
            callbacks: Vec::new(),
            blocking: false,
        })
    }

    /// Wakes `wait` (nothing if it is done): its callbacks run in this turn's callback,
    /// which the first wake of a turn schedules.
    fn wake(slf: &Bound<'_, Self>, wait: &Bound<'_, ChannelWait>) -> PyResult<()> {
        {
            let mut waiting = wait.borrow_mut();
            if !matches!(waiting.state, State::Pending) {
                return Ok(());
            }
            waiting.state = State::Woken;
        }
        let mut this = slf.borrow_mut();
        this.woken.push(wait.clone().unbind());
        if this.scheduled {
            return Ok(());
        }
        let Some(event_loop) = this.event_loop.as_ref().map(|l| l.clone_ref(slf.py())) else {
            return Err(PyValueError::new_err("this wait is not from this waker"));
        };
        this.scheduled = true;
        drop(this);
        let run = slf.getattr("_run")?;
        event_loop
            .bind(slf.py())
            .call_method1("call_soon", (run,))?;
        Ok(())
    }

    /// `wake` for each wait of `waits`, a list: a channel wakes its readers in one call.
    fn wake_all(slf: &Bound<'_, Self>, waits: &Bound<'_, PyList>) -> PyResult<()> {
        for wait in waits.iter() {
            Self::wake(slf, wait.cast::<ChannelWait>()?)?;
        }
        Ok(())
    }

    /// Runs the callbacks of every wait woken since the last run, in the order woken
    /// (each in its context); an exception is passed to the loop's exception handler
    /// and the others still run.
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (woken, event_loop) = {
            let mut this = slf.borrow_mut();
            this.scheduled = false;
            (
                std::mem::take(&mut this.woken),
                this.event_loop.as_ref().map(|l| l.clone_ref(py)),
            )
        };
        for wait in woken {
            let wait = wait.into_bound(py);
            let callbacks = std::mem::take(&mut wait.borrow_mut().callbacks);
            for (callback, context) in callbacks {
                let outcome = match &context {
                    Some(context) => context.bind(py).call_method1("run", (&callback, &wait)),
                    None => callback.bind(py).call1((&wait,)),
                };
                if let (Err(err), Some(event_loop)) = (outcome, &event_loop) {
                    let details = PyDict::new(py);
                    details.set_item("message", "Exception in a workspace channel's wake-up")?;
                    details.set_item("exception", err.value(py))?;
                    details.set_item("callback", &callback)?;
                    event_loop
                        .bind(py)
                        .call_method1("call_exception_handler", PyTuple::new(py, [details])?)?;
                }
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(event_loop) = &self.event_loop {
            visit.call(event_loop)?;
        }
        for wait in &self.woken {
            visit.call(wait)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.woken.clear();
        self.event_loop = None;
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ChannelWait>()?;
    m.add_class::<RoundWaker>()
}
