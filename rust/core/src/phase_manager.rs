//! The phase table shared between threads, and the ordered queue that tells observers of
//! its changes.
//!
//! Observers must see the changes in the order they happened, each once, and must be free
//! to change phases themselves from inside a callback. So a change is queued under the
//! table's lock (the queue's order is the table's order), and callbacks run after the lock
//! is released, by whichever caller finds no delivery under way: that caller delivers
//! everything queued, including what its own callbacks and other threads add meanwhile,
//! while the others return at once. A callback that changes a phase therefore sees its
//! change delivered after it returns, never nested inside itself, and nothing waits on a
//! lock while a callback runs.
//!
//! `S` is what a checkpoint carries for its observers (the bindings: a Python object); the
//! queue never looks inside it. The caller owns the callbacks and how they are called:
//! [`PhaseManager::deliver`] hands it each change in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::go_time::WireTime;
use crate::phase::{PhaseError, PhaseState, PhaseTable};

/// One change for the observers, in the order the changes happened.
#[derive(Debug, Clone, PartialEq)]
pub enum PhaseChange<S> {
    /// A workflow's state right after a phase change.
    Phase(PhaseState),
    /// A checkpoint was recorded; `state` is what its caller attached.
    Checkpoint {
        workflow_id: String,
        checkpoint_id: String,
        state: S,
    },
}

/// A [`PhaseTable`] behind a lock, with its changes queued for observers in order.
#[derive(Debug)]
pub struct PhaseManager<S> {
    table: Mutex<PhaseTable>,
    pending: Mutex<VecDeque<PhaseChange<S>>>,
    delivering: AtomicBool,
    /// Whether anyone observes: until then no change is copied or queued.
    observed: AtomicBool,
    /// Nanoseconds since the Unix epoch, read under the table's lock so that the times of
    /// successive changes never go back.
    clock: fn() -> i64,
}

fn system_clock() -> i64 {
    WireTime::now().unix_nanos as i64
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in one caller leaves the table consistent (every operation validates before
    // it writes), so the others go on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S> Default for PhaseManager<S> {
    fn default() -> Self {
        Self::with_clock(system_clock)
    }
}

impl<S> PhaseManager<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A manager whose changes are stamped by `clock` (Unix nanoseconds).
    pub fn with_clock(clock: fn() -> i64) -> Self {
        Self {
            table: Mutex::default(),
            pending: Mutex::default(),
            delivering: AtomicBool::new(false),
            observed: AtomicBool::new(false),
            clock,
        }
    }

    /// Runs `op` on the table with the time now, and queues the changes it made (once
    /// anyone observes). Call [`PhaseManager::deliver`] afterwards to tell the observers.
    pub fn apply<R>(&self, op: impl FnOnce(&mut PhaseTable, i64) -> R) -> R {
        let mut table = locked(&self.table);
        let outcome = op(&mut table, (self.clock)());
        if self.observed.load(Ordering::Acquire) {
            locked(&self.pending).extend(table.drain_changes().map(PhaseChange::Phase));
        }
        outcome
    }

    /// Reads the table (under its lock).
    pub fn read<R>(&self, op: impl FnOnce(&PhaseTable) -> R) -> R {
        op(&locked(&self.table))
    }

    /// Records checkpoint `checkpoint_id` of `workflow_id` and queues it with what
    /// `state` makes (called only when someone observes).
    pub fn checkpoint(
        &self,
        workflow_id: &str,
        checkpoint_id: &str,
        state: impl FnOnce() -> S,
    ) -> Result<(), PhaseError> {
        let mut table = locked(&self.table);
        table.checkpoint(workflow_id, checkpoint_id)?;
        if self.observed.load(Ordering::Acquire) {
            locked(&self.pending).push_back(PhaseChange::Checkpoint {
                workflow_id: workflow_id.to_owned(),
                checkpoint_id: checkpoint_id.to_owned(),
                state: state(),
            });
        }
        Ok(())
    }

    /// From now on every change is queued for [`PhaseManager::deliver`]. Under the table
    /// lock, so that no change is recorded without being queued.
    pub fn observe(&self) {
        let mut table = locked(&self.table);
        table.record_changes();
        self.observed.store(true, Ordering::Release);
    }

    pub fn is_observed(&self) -> bool {
        self.observed.load(Ordering::Acquire)
    }

    /// Hands `tell` every queued change, oldest first, unless another caller is already
    /// delivering (it will deliver these too). No lock is held while `tell` runs, so it
    /// may change phases; those changes are handed over after it returns.
    pub fn deliver(&self, mut tell: impl FnMut(PhaseChange<S>)) {
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
                tell(next);
            }
            self.delivering.store(false, Ordering::Release);
            // A change queued after the last pop but before the flag dropped would be
            // stranded (its caller saw the flag up and left it to us): look once more.
            if locked(&self.pending).is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::Phase;
    use std::sync::atomic::AtomicI64;
    use std::sync::Arc;

    fn ticking_clock() -> i64 {
        static NOW: AtomicI64 = AtomicI64::new(0);
        NOW.fetch_add(1, Ordering::Relaxed)
    }

    fn phases(changes: &[PhaseChange<u32>]) -> Vec<(String, Phase)> {
        changes
            .iter()
            .map(|c| match c {
                PhaseChange::Phase(s) => (s.workflow_id.to_string(), s.phase),
                PhaseChange::Checkpoint { checkpoint_id, .. } => {
                    (format!("checkpoint {checkpoint_id}"), Phase::Pending)
                }
            })
            .collect()
    }

    #[test]
    fn nothing_is_queued_until_someone_observes() {
        let m = PhaseManager::<u32>::with_clock(ticking_clock);
        m.apply(|t, now| {
            t.register("w", "", "", now);
            t.transition("w", Phase::PreFlight, "", now)
        })
        .unwrap();
        m.checkpoint("w", "c0", || unreachable!("no observer, no state"))
            .unwrap();
        m.observe();
        let mut seen = Vec::new();
        m.deliver(|c| seen.push(c));
        assert!(seen.is_empty());
        m.apply(|t, now| t.transition("w", Phase::Planning, "", now))
            .unwrap();
        m.deliver(|c| seen.push(c));
        assert_eq!(phases(&seen), [("w".into(), Phase::Planning)]);
    }

    #[test]
    fn phase_changes_and_checkpoints_keep_their_order() {
        let m = PhaseManager::<u32>::with_clock(ticking_clock);
        m.observe();
        m.apply(|t, now| {
            t.register("w", "", "", now);
            t.transition("w", Phase::PreFlight, "", now)
        })
        .unwrap();
        m.checkpoint("w", "c1", || 7).unwrap();
        m.apply(|t, now| t.complete("w", now)).unwrap_err();
        m.apply(|t, now| t.fail("w", "gone", now)).unwrap();
        let mut seen = Vec::new();
        m.deliver(|c| seen.push(c));
        assert_eq!(
            phases(&seen),
            [
                ("w".into(), Phase::PreFlight),
                ("checkpoint c1".into(), Phase::Pending),
                ("w".into(), Phase::Failed),
            ]
        );
        assert!(matches!(seen[1], PhaseChange::Checkpoint { state: 7, .. }));
    }

    #[test]
    fn a_change_made_by_an_observer_comes_after_it_returns() {
        let m = PhaseManager::<u32>::with_clock(ticking_clock);
        m.observe();
        m.apply(|t, now| {
            t.register("a", "", "", now);
            t.register("b", "", "", now);
        });
        m.apply(|t, now| t.transition("a", Phase::PreFlight, "", now))
            .unwrap();
        let mut log = Vec::new();
        m.deliver(|change| {
            let PhaseChange::Phase(state) = change else {
                unreachable!()
            };
            log.push(format!("start {} {}", state.workflow_id, state.phase));
            if state.workflow_id == "a" {
                // A nested delivery returns at once: the outer one is under way.
                m.apply(|t, now| t.transition("b", Phase::PreFlight, "", now))
                    .unwrap();
                m.deliver(|_| unreachable!("delivered by the outer call"));
            }
            log.push(format!("end {}", state.workflow_id));
        });
        assert_eq!(
            log,
            ["start a pre-flight", "end a", "start b pre-flight", "end b"]
        );
    }

    #[test]
    fn every_change_is_delivered_once_in_table_order_across_threads() {
        const THREADS: usize = 4;
        const STEPS: usize = 300;
        let m = Arc::new(PhaseManager::<u32>::with_clock(ticking_clock));
        m.observe();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (m, seen) = (Arc::clone(&m), Arc::clone(&seen));
                std::thread::spawn(move || {
                    for step in 0..STEPS {
                        let id = format!("w{thread}.{step}");
                        m.apply(|t, now| {
                            t.register(&id, "", "", now);
                            t.transition(&id, Phase::PreFlight, "", now)?;
                            t.transition(&id, Phase::Planning, "", now)
                        })
                        .unwrap();
                        m.deliver(|c| {
                            let PhaseChange::Phase(state) = c else {
                                unreachable!()
                            };
                            locked(&seen).push(state);
                            std::thread::yield_now();
                        });
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        // Every deliver has returned: nothing may be left stranded in the queue.
        let seen = locked(&seen);
        assert_eq!(seen.len(), THREADS * STEPS * 2);
        assert!(locked(&m.pending).is_empty());
        // The table's order is the delivery order: times (ticks read under the lock) only
        // grow, and each workflow's pre-flight comes right before its planning.
        assert!(seen.windows(2).all(|w| w[0].changed_at <= w[1].changed_at));
        for pair in seen.chunks(2) {
            assert_eq!(pair[0].workflow_id, pair[1].workflow_id);
            assert_eq!(
                (pair[0].phase, pair[1].phase),
                (Phase::PreFlight, Phase::Planning)
            );
        }
    }
}
