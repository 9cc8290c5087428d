//! Workflow phases: the transition table and the per-workflow state store of when-v3's
//! coordinator, with its error texts and the reasons its helpers set.
//!
//! The store is not synchronised; [`crate::phase_manager::PhaseManager`] holds it behind a
//! lock and delivers the changes it records (see [`PhaseTable::record_changes`]) to
//! observers, in order, after releasing it.

use std::fmt;
use std::hash::BuildHasher;

use compact_str::CompactString;
use foldhash::fast::RandomState;
use hashbrown::HashTable;

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
    pub const fn successors(self) -> &'static [Phase] {
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
        SUCCESSOR_MASKS[self as usize] & (1 << to as u16) != 0
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

/// [`Phase::successors`] as bit sets, so a transition is checked with one load.
const SUCCESSOR_MASKS: [u16; 12] = {
    let mut masks = [0u16; 12];
    let mut from = 0;
    while from < Phase::ALL.len() {
        let successors = Phase::ALL[from].successors();
        let mut at = 0;
        while at < successors.len() {
            masks[from] |= 1 << successors[at] as u16;
            at += 1;
        }
        from += 1;
    }
    masks
};

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a phase operation was refused, displayed with Go's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseError {
    NotFound(CompactString),
    InvalidTransition {
        id: CompactString,
        from: Phase,
        to: Phase,
    },
    NotPausable(CompactString, Phase),
    NotPausing(CompactString, Phase),
    NotResumable(CompactString, Phase),
    AlreadyTerminal(CompactString, Phase),
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

/// One workflow's state.
///
/// Strings up to 24 bytes are stored inline, so a transition touches no memory outside
/// the table's slot and a snapshot of a typical state is a plain copy. The fields a
/// transition reads and writes come first (`repr(C)` keeps the order), so they share the
/// slot's first cache line.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct PhaseState {
    pub workflow_id: CompactString,
    pub reason: CompactString,
    /// Nanoseconds since the Unix epoch, as the caller's clock gave them.
    pub changed_at: i64,
    pub phase: Phase,
    /// `None` until the first change (Go's empty phase).
    pub previous_phase: Option<Phase>,
    pub progress: f64,
    pub checkpoint_id: CompactString,
    pub current_action: CompactString,
    pub parent_workflow_id: CompactString,
    pub root_workflow_id: CompactString,
}

/// Every workflow's phase state.
///
/// The states sit in a vector in registration order, found through a small hash index of
/// positions (Python's compact dict does the same): the index stays in cache, and
/// workflows handled in the order they were registered walk the states sequentially.
///
/// With [`PhaseTable::record_changes`] on, every phase change is also copied, in the
/// order the changes happen, to a journal the caller drains
/// ([`PhaseTable::drain_changes`]) to tell its observers; off, a change copies nothing.
#[derive(Debug, Default)]
pub struct PhaseTable {
    /// Positions in `states`, by the hash of the workflow id.
    index: HashTable<usize>,
    states: Vec<PhaseState>,
    hasher: RandomState,
    journal: Option<Vec<PhaseState>>,
}

impl PhaseTable {
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// From now on, keep a copy of every phase change for [`PhaseTable::drain_changes`].
    pub fn record_changes(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The phase changes recorded since the last call, oldest first.
    pub fn drain_changes(&mut self) -> std::vec::Drain<'_, PhaseState> {
        self.journal.get_or_insert_with(Vec::new).drain(..)
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn position(&self, id: &str) -> Option<usize> {
        let states = &self.states;
        self.index
            .find(self.hash(id), |&at| states[at].workflow_id == id)
            .copied()
    }

    /// Starts tracking `id` in `pending`; registering again replaces the old state.
    pub fn register(&mut self, id: &str, parent: &str, root: &str, now: i64) -> &PhaseState {
        let state = PhaseState {
            workflow_id: CompactString::new(id),
            reason: CompactString::default(),
            changed_at: now,
            phase: Phase::Pending,
            previous_phase: None,
            progress: 0.0,
            checkpoint_id: CompactString::default(),
            current_action: CompactString::default(),
            parent_workflow_id: CompactString::new(parent),
            root_workflow_id: CompactString::new(root),
        };
        let at = match self.position(id) {
            Some(at) => {
                self.states[at] = state;
                at
            }
            None => {
                let at = self.states.len();
                let hash = self.hash(id);
                self.states.push(state);
                let (states, hasher) = (&self.states, &self.hasher);
                self.index.insert_unique(hash, at, |&other| {
                    hasher.hash_one(states[other].workflow_id.as_str())
                });
                at
            }
        };
        &self.states[at]
    }

    pub fn remove(&mut self, id: &str) -> Option<PhaseState> {
        let states = &self.states;
        let (at, _) = self
            .index
            .find_entry(self.hasher.hash_one(id), |&at| states[at].workflow_id == id)
            .ok()?
            .remove();
        let removed = self.states.swap_remove(at);
        // The last state moved into the gap: point its index entry there.
        if let Some(moved) = self.states.get(at) {
            let old = self.states.len();
            let hash = self.hasher.hash_one(moved.workflow_id.as_str());
            if let Some(entry) = self.index.find_mut(hash, |&p| p == old) {
                *entry = at;
            }
        }
        Some(removed)
    }

    pub fn get(&self, id: &str) -> Option<&PhaseState> {
        self.position(id).map(|at| &self.states[at])
    }

    /// Every state, in registration order (a removal moves the last one into its place).
    pub fn all(&self) -> impl Iterator<Item = &PhaseState> {
        self.states.iter()
    }

    /// The state of `id` and the journal, borrowed apart so a change can be recorded
    /// while the state is held.
    fn slot(
        &mut self,
        id: &str,
    ) -> Result<(&mut PhaseState, Option<&mut Vec<PhaseState>>), PhaseError> {
        match self.position(id) {
            Some(at) => Ok((&mut self.states[at], self.journal.as_mut())),
            None => Err(PhaseError::NotFound(CompactString::new(id))),
        }
    }

    fn state_mut(&mut self, id: &str) -> Result<&mut PhaseState, PhaseError> {
        self.slot(id).map(|(state, _)| state)
    }

    /// Moves `id` to `to` if the table allows it, recording `reason`.
    pub fn transition(
        &mut self,
        id: &str,
        to: Phase,
        reason: &str,
        now: i64,
    ) -> Result<(), PhaseError> {
        let (state, journal) = self.slot(id)?;
        change_phase(state, journal, to, reason, now)
    }

    fn phase_of(&self, id: &str) -> Result<Phase, PhaseError> {
        self.get(id)
            .map(|s| s.phase)
            .ok_or_else(|| PhaseError::NotFound(CompactString::new(id)))
    }

    pub fn pause(&mut self, id: &str, reason: &str, now: i64) -> Result<(), PhaseError> {
        let phase = self.phase_of(id)?;
        if !phase.is_pausable() {
            return Err(PhaseError::NotPausable(CompactString::new(id), phase));
        }
        self.transition(id, Phase::Pausing, reason, now)
    }

    pub fn complete_pause(
        &mut self,
        id: &str,
        checkpoint_id: &str,
        now: i64,
    ) -> Result<(), PhaseError> {
        let phase = self.phase_of(id)?;
        if phase != Phase::Pausing {
            return Err(PhaseError::NotPausing(CompactString::new(id), phase));
        }
        self.state_mut(id)?.checkpoint_id = CompactString::new(checkpoint_id);
        self.transition(id, Phase::Paused, "paused", now)
    }

    pub fn resume(&mut self, id: &str, from_checkpoint: &str, now: i64) -> Result<(), PhaseError> {
        let phase = self.phase_of(id)?;
        if !phase.is_resumable() {
            return Err(PhaseError::NotResumable(CompactString::new(id), phase));
        }
        if !from_checkpoint.is_empty() {
            self.state_mut(id)?.checkpoint_id = CompactString::new(from_checkpoint);
        }
        self.transition(id, Phase::Resuming, "resume requested", now)
    }

    pub fn complete_resume(&mut self, id: &str, now: i64) -> Result<(), PhaseError> {
        self.transition(id, Phase::Execution, "resumed", now)
    }

    pub fn cancel(&mut self, id: &str, reason: &str, now: i64) -> Result<(), PhaseError> {
        let phase = self.phase_of(id)?;
        if phase.is_terminal() {
            return Err(PhaseError::AlreadyTerminal(CompactString::new(id), phase));
        }
        self.transition(id, Phase::Cancelling, reason, now)
    }

    pub fn complete_cancellation(&mut self, id: &str, now: i64) -> Result<(), PhaseError> {
        self.transition(id, Phase::Cancelled, "cancelled", now)
    }

    /// `completing` then `completed`: two changes, or none if the first is refused.
    pub fn complete(&mut self, id: &str, now: i64) -> Result<(), PhaseError> {
        self.transition(id, Phase::Completing, "completing", now)?;
        self.transition(id, Phase::Completed, "completed successfully", now)
    }

    /// Fails `id` from any phase that is not terminal.
    pub fn fail(&mut self, id: &str, reason: &str, now: i64) -> Result<(), PhaseError> {
        let phase = self.phase_of(id)?;
        if phase.is_terminal() {
            return Err(PhaseError::AlreadyTerminal(CompactString::new(id), phase));
        }
        self.transition(id, Phase::Failed, reason, now)
    }

    /// Records `checkpoint_id` as the workflow's checkpoint (not a phase change).
    pub fn checkpoint(&mut self, id: &str, checkpoint_id: &str) -> Result<(), PhaseError> {
        self.state_mut(id)?.checkpoint_id = CompactString::new(checkpoint_id);
        Ok(())
    }

    pub fn set_progress(
        &mut self,
        id: &str,
        progress: f64,
        current_action: &str,
    ) -> Result<(), PhaseError> {
        let state = self.state_mut(id)?;
        state.progress = progress;
        if state.current_action != current_action {
            state.current_action = CompactString::new(current_action);
        }
        Ok(())
    }
}

fn change_phase(
    state: &mut PhaseState,
    journal: Option<&mut Vec<PhaseState>>,
    to: Phase,
    reason: &str,
    now: i64,
) -> Result<(), PhaseError> {
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
    if state.reason != reason {
        state.reason = CompactString::new(reason);
    }
    if let Some(journal) = journal {
        journal.push(state.clone());
    }
    Ok(())
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

    fn changes(t: &mut PhaseTable) -> Vec<(Phase, String)> {
        t.drain_changes()
            .map(|s| (s.phase, s.reason.to_string()))
            .collect()
    }

    #[test]
    fn helpers_walk_the_lifecycle() {
        let mut t = PhaseTable::default();
        t.register("w", "p", "r", 1);
        t.record_changes();
        for to in [Phase::PreFlight, Phase::Planning, Phase::Execution] {
            t.transition("w", to, "", 2).unwrap();
        }
        t.pause("w", "user", 3).unwrap();
        assert_eq!(
            changes(&mut t).last(),
            Some(&(Phase::Pausing, "user".into()))
        );
        assert_eq!(
            t.pause("w", "again", 3).unwrap_err().to_string(),
            "workflow w cannot be paused from phase pausing"
        );
        t.complete_pause("w", "cp-1", 4).unwrap();
        assert_eq!(t.get("w").unwrap().checkpoint_id, "cp-1");
        t.resume("w", "", 5).unwrap();
        t.complete_resume("w", 6).unwrap();
        t.complete("w", 7).unwrap();
        assert_eq!(
            changes(&mut t),
            [
                (Phase::Paused, "paused".into()),
                (Phase::Resuming, "resume requested".into()),
                (Phase::Execution, "resumed".into()),
                (Phase::Completing, "completing".into()),
                (Phase::Completed, "completed successfully".into()),
            ]
        );
        let state = t.get("w").unwrap();
        assert_eq!(state.reason, "completed successfully");
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
        t.record_changes();
        assert!(t.complete("w", 0).is_err());
        assert_eq!(
            t.get("w").unwrap().phase,
            Phase::Pending,
            "a refused complete changes nothing"
        );
        assert!(changes(&mut t).is_empty(), "nor records anything");
    }

    #[test]
    fn registering_again_replaces_and_removing_forgets() {
        let mut t = PhaseTable::default();
        t.register("w", "", "", 0);
        t.transition("w", Phase::PreFlight, "go", 1).unwrap();
        let again = t.register("w", "parent", "root", 2);
        assert_eq!((again.phase, again.changed_at), (Phase::Pending, 2));
        assert_eq!(t.len(), 1);
        // Ids longer than the inline size live on the heap: same behaviour.
        let long = "w".repeat(100);
        t.register(&long, "", "", 3);
        t.transition(&long, Phase::Failed, &"r".repeat(50), 4)
            .unwrap();
        assert_eq!(t.get(&long).unwrap().reason, "r".repeat(50));
        assert_eq!(
            t.remove("w").map(|s| s.parent_workflow_id),
            Some("parent".into())
        );
        assert!(t.remove("w").is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn removals_in_any_order_keep_every_other_workflow_findable() {
        let mut t = PhaseTable::default();
        let ids: Vec<String> = (0..200).map(|n| format!("wf-{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            t.register(id, "", "", n as i64);
        }
        // Every third goes, in a scrambled order (first, last, and the middle included).
        let mut gone: Vec<&String> = ids.iter().step_by(3).collect();
        gone.sort_by_key(|id| id.bytes().rev().collect::<Vec<u8>>());
        for id in &gone {
            assert!(t.remove(id).is_some(), "{id}");
        }
        for (n, id) in ids.iter().enumerate() {
            let found = t.get(id);
            assert_eq!(found.is_none(), gone.contains(&id), "{id}");
            if let Some(state) = found {
                assert_eq!(
                    (state.workflow_id.as_str(), state.changed_at),
                    (id.as_str(), n as i64)
                );
            }
        }
        assert_eq!(t.len(), ids.len() - gone.len());
        assert_eq!(t.all().count(), t.len());
        for id in &gone {
            t.register(id, "", "", -1);
        }
        assert_eq!(t.len(), ids.len());
        assert!(ids
            .iter()
            .all(|id| t.get(id).is_some_and(|s| s.workflow_id == id.as_str())));
    }
}
