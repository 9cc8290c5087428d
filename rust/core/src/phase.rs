//! Workflow phases: the transition table and the per-workflow state store of when-v3's
//! coordinator, with its error texts and the reasons its helpers set.
//!
//! The store is not synchronised; the bindings hold it behind a lock and deliver the
//! [`Change`]s each call returns to callbacks, in order, after releasing it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use foldhash::fast::RandomState;

/// A workflow's phase; the wire value is [`Phase::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Pending,
    PreFlight,
    Planning,
    Execution,
    Pausing,
    Paused,
    Resuming,
    Cancelling,
    Cancelled,
    Completing,
    Completed,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 12] = [
        Phase::Pending,
        Phase::PreFlight,
        Phase::Planning,
        Phase::Execution,
        Phase::Pausing,
        Phase::Paused,
        Phase::Resuming,
        Phase::Cancelling,
        Phase::Cancelled,
        Phase::Completing,
        Phase::Completed,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::PreFlight => "pre-flight",
            Phase::Planning => "planning",
            Phase::Execution => "execution",
            Phase::Pausing => "pausing",
            Phase::Paused => "paused",
            Phase::Resuming => "resuming",
            Phase::Cancelling => "cancelling",
            Phase::Cancelled => "cancelled",
            Phase::Completing => "completing",
            Phase::Completed => "completed",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// The phases this one may move to (Go's `ValidTransitions`); terminal phases have none.
    pub fn successors(self) -> &'static [Phase] {
        use Phase::*;
        match self {
            Pending => &[PreFlight, Failed],
            PreFlight => &[Planning, Failed],
            Planning => &[Execution, Failed],
            Execution => &[Pausing, Cancelling, Completing, Failed],
            Pausing => &[Paused, Cancelling, Failed],
            Paused => &[Resuming, Cancelling, Failed],
            Resuming => &[Execution, Cancelling, Failed],
            Cancelling => &[Cancelled, Failed],
            Completing => &[Completed, Failed],
            Cancelled | Completed | Failed => &[],
        }
    }

    pub fn can_transition_to(self, to: Phase) -> bool {
        self.successors().contains(&to)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Cancelled | Phase::Failed)
    }

    pub fn is_active(self) -> bool {
        !self.is_terminal() && !matches!(self, Phase::Pending | Phase::Paused)
    }

    pub fn is_pausable(self) -> bool {
        self == Phase::Execution
    }

    pub fn is_resumable(self) -> bool {
        self == Phase::Paused
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a phase operation was refused, displayed with Go's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseError {
    NotFound(Arc<str>),
    InvalidTransition {
        id: Arc<str>,
        from: Phase,
        to: Phase,
    },
    NotPausable(Arc<str>, Phase),
    NotPausing(Arc<str>, Phase),
    NotResumable(Arc<str>, Phase),
    AlreadyTerminal(Arc<str>, Phase),
}

impl fmt::Display for PhaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(id) => write!(f, "workflow not found: {id}"),
            Self::InvalidTransition { id, from, to } => {
                write!(
                    f,
                    "invalid transition from {from} to {to} for workflow {id}"
                )
            }
            Self::NotPausable(id, p) => write!(f, "workflow {id} cannot be paused from phase {p}"),
            Self::NotPausing(id, p) => write!(f, "workflow {id} is not pausing (current: {p})"),
            Self::NotResumable(id, p) => {
                write!(f, "workflow {id} cannot be resumed from phase {p}")
            }
            Self::AlreadyTerminal(id, p) => {
                write!(f, "workflow {id} is already in terminal state {p}")
            }
        }
    }
}

impl std::error::Error for PhaseError {}

/// One workflow's state. Strings are shared, so a snapshot is a cheap clone.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseState {
    pub workflow_id: Arc<str>,
    pub phase: Phase,
    /// `None` until the first change (Go's empty phase).
    pub previous_phase: Option<Phase>,
    /// Nanoseconds since the Unix epoch, as the caller's clock gave them.
    pub changed_at: i64,
    pub reason: Arc<str>,
    pub checkpoint_id: Arc<str>,
    pub progress: f64,
    pub current_action: Arc<str>,
    pub parent_workflow_id: Arc<str>,
    pub root_workflow_id: Arc<str>,
}

/// What a call changed, in order: each is delivered to the matching callbacks.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Phase(PhaseState),
    Checkpoint {
        workflow_id: Arc<str>,
        checkpoint_id: Arc<str>,
    },
}

fn shared(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// Every workflow's phase state.
#[derive(Debug, Default)]
pub struct PhaseTable {
    states: HashMap<Arc<str>, PhaseState, RandomState>,
}

impl PhaseTable {
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Starts tracking `id` in `pending`; registering again replaces the old state.
    pub fn register(&mut self, id: &str, parent: &str, root: &str, now: i64) -> PhaseState {
        let id = shared(id);
        let state = PhaseState {
            workflow_id: id.clone(),
            phase: Phase::Pending,
            previous_phase: None,
            changed_at: now,
            reason: shared(""),
            checkpoint_id: shared(""),
            progress: 0.0,
            current_action: shared(""),
            parent_workflow_id: shared(parent),
            root_workflow_id: shared(root),
        };
        self.states.insert(id, state.clone());
        state
    }

    pub fn remove(&mut self, id: &str) -> Option<PhaseState> {
        self.states.remove(id)
    }

    pub fn get(&self, id: &str) -> Option<&PhaseState> {
        self.states.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &PhaseState> {
        self.states.values()
    }

    fn state_mut(&mut self, id: &str) -> Result<&mut PhaseState, PhaseError> {
        self.states
            .get_mut(id)
            .ok_or_else(|| PhaseError::NotFound(shared(id)))
    }

    /// Moves `id` to `to` if the table allows it, recording `reason`.
    pub fn transition(
        &mut self,
        id: &str,
        to: Phase,
        reason: &str,
        now: i64,
    ) -> Result<Change, PhaseError> {
        let state = self.state_mut(id)?;
        if !state.phase.can_transition_to(to) {
            return Err(PhaseError::InvalidTransition {
                id: state.workflow_id.clone(),
                from: state.phase,
                to,
            });
        }
        state.previous_phase = Some(state.phase);
        state.phase = to;
        state.changed_at = now;
        if &*state.reason != reason {
            state.reason = shared(reason);
        }
        Ok(Change::Phase(state.clone()))
    }

    fn phase_of(&self, id: &str) -> Result<Phase, PhaseError> {
        self.get(id)
            .map(|s| s.phase)
            .ok_or_else(|| PhaseError::NotFound(shared(id)))
    }

    pub fn pause(&mut self, id: &str, reason: &str, now: i64) -> Result<Change, PhaseError> {
        let phase = self.phase_of(id)?;
        if !phase.is_pausable() {
            return Err(PhaseError::NotPausable(shared(id), phase));
        }
        self.transition(id, Phase::Pausing, reason, now)
    }

    pub fn complete_pause(
        &mut self,
        id: &str,
        checkpoint_id: &str,
        now: i64,
    ) -> Result<Change, PhaseError> {
        let phase = self.phase_of(id)?;
        if phase != Phase::Pausing {
            return Err(PhaseError::NotPausing(shared(id), phase));
        }
        self.state_mut(id)?.checkpoint_id = shared(checkpoint_id);
        self.transition(id, Phase::Paused, "paused", now)
    }

    pub fn resume(
        &mut self,
        id: &str,
        from_checkpoint: &str,
        now: i64,
    ) -> Result<Change, PhaseError> {
        let phase = self.phase_of(id)?;
        if !phase.is_resumable() {
            return Err(PhaseError::NotResumable(shared(id), phase));
        }
        if !from_checkpoint.is_empty() {
            self.state_mut(id)?.checkpoint_id = shared(from_checkpoint);
        }
        self.transition(id, Phase::Resuming, "resume requested", now)
    }

    pub fn complete_resume(&mut self, id: &str, now: i64) -> Result<Change, PhaseError> {
        self.transition(id, Phase::Execution, "resumed", now)
    }

    pub fn cancel(&mut self, id: &str, reason: &str, now: i64) -> Result<Change, PhaseError> {
        let phase = self.phase_of(id)?;
        if phase.is_terminal() {
            return Err(PhaseError::AlreadyTerminal(shared(id), phase));
        }
        self.transition(id, Phase::Cancelling, reason, now)
    }

    pub fn complete_cancellation(&mut self, id: &str, now: i64) -> Result<Change, PhaseError> {
        self.transition(id, Phase::Cancelled, "cancelled", now)
    }

    /// `completing` then `completed`: two changes, or none if the first is refused.
    pub fn complete(&mut self, id: &str, now: i64) -> Result<[Change; 2], PhaseError> {
        let completing = self.transition(id, Phase::Completing, "completing", now)?;
        let completed = self.transition(id, Phase::Completed, "completed successfully", now)?;
        Ok([completing, completed])
    }

    /// Fails `id` from any phase that is not terminal.
    pub fn fail(&mut self, id: &str, reason: &str, now: i64) -> Result<Change, PhaseError> {
        let phase = self.phase_of(id)?;
        if phase.is_terminal() {
            return Err(PhaseError::AlreadyTerminal(shared(id), phase));
        }
        self.transition(id, Phase::Failed, reason, now)
    }

    pub fn checkpoint(&mut self, id: &str, checkpoint_id: &str) -> Result<Change, PhaseError> {
        let state = self.state_mut(id)?;
        state.checkpoint_id = shared(checkpoint_id);
        Ok(Change::Checkpoint {
            workflow_id: state.workflow_id.clone(),
            checkpoint_id: state.checkpoint_id.clone(),
        })
    }

    pub fn set_progress(
        &mut self,
        id: &str,
        progress: f64,
        current_action: &str,
    ) -> Result<(), PhaseError> {
        let state = self.state_mut(id)?;
        state.progress = progress;
        if &*state.current_action != current_action {
            state.current_action = shared(current_action);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_go() {
        use Phase::*;
        let allowed: Vec<(Phase, Phase)> = Phase::ALL
            .into_iter()
            .flat_map(|f| Phase::ALL.into_iter().map(move |t| (f, t)))
            .filter(|(f, t)| f.can_transition_to(*t))
            .collect();
        assert_eq!(allowed.len(), 23);
        assert!(Execution.can_transition_to(Completing));
        assert!(!Pending.can_transition_to(Execution));
        assert!(Phase::ALL
            .iter()
            .all(|p| p.is_terminal() == p.successors().is_empty()));
        assert_eq!(Phase::parse("pre-flight"), Some(PreFlight));
        assert_eq!(Phase::parse("PreFlight"), None);
    }

    fn phase_of(change: &Change) -> Phase {
        match change {
            Change::Phase(s) => s.phase,
            Change::Checkpoint { .. } => panic!("not a phase change"),
        }
    }

    #[test]
    fn helpers_walk_the_lifecycle() {
        let mut t = PhaseTable::default();
        t.register("w", "p", "r", 1);
        for to in [Phase::PreFlight, Phase::Planning, Phase::Execution] {
            t.transition("w", to, "", 2).unwrap();
        }
        assert_eq!(phase_of(&t.pause("w", "user", 3).unwrap()), Phase::Pausing);
        assert_eq!(
            t.pause("w", "again", 3).unwrap_err().to_string(),
            "workflow w cannot be paused from phase pausing"
        );
        t.complete_pause("w", "cp-1", 4).unwrap();
        assert_eq!(&*t.get("w").unwrap().checkpoint_id, "cp-1");
        let resumed = t.resume("w", "", 5).unwrap();
        assert!(matches!(&resumed, Change::Phase(s) if &*s.reason == "resume requested"));
        t.complete_resume("w", 6).unwrap();
        let [a, b] = t.complete("w", 7).unwrap();
        assert_eq!(
            (phase_of(&a), phase_of(&b)),
            (Phase::Completing, Phase::Completed)
        );
        let state = t.get("w").unwrap();
        assert_eq!(&*state.reason, "completed successfully");
        assert_eq!(state.previous_phase, Some(Phase::Completing));
        assert_eq!(
            t.fail("w", "x", 8).unwrap_err().to_string(),
            "workflow w is already in terminal state completed"
        );
        assert_eq!(
            t.cancel("w", "x", 8).unwrap_err().to_string(),
            "workflow w is already in terminal state completed"
        );
    }

    #[test]
    fn errors_have_go_texts() {
        let mut t = PhaseTable::default();
        assert_eq!(
            t.pause("nope", "", 0).unwrap_err().to_string(),
            "workflow not found: nope"
        );
        t.register("w", "", "", 0);
        assert_eq!(
            t.transition("w", Phase::Execution, "", 0)
                .unwrap_err()
                .to_string(),
            "invalid transition from pending to execution for workflow w"
        );
        assert_eq!(
            t.complete_pause("w", "c", 0).unwrap_err().to_string(),
            "workflow w is not pausing (current: pending)"
        );
        assert_eq!(
            t.resume("w", "", 0).unwrap_err().to_string(),
            "workflow w cannot be resumed from phase pending"
        );
        assert!(t.complete("w", 0).is_err());
        assert_eq!(
            t.get("w").unwrap().phase,
            Phase::Pending,
            "a refused complete changes nothing"
        );
    }
}
