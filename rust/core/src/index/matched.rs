//! What a match returns: the plain entries' values and, per queue group, its members.

use std::sync::Arc;

use smallvec::SmallVec;

/// Plain values kept inline in a result before it spills to the heap; most subjects
/// match few entries.
pub const INLINE_VALUES: usize = 2;

/// The values of every entry whose pattern matched one subject.
///
/// Immutable once built, and shared (`Arc`) between the cache and every caller.
#[derive(Debug, Clone)]
pub struct Matched<V> {
    /// Values of entries without a queue group, in trie order.
    pub plain: SmallVec<[V; INLINE_VALUES]>,
    /// One item per queue group that matched: its name and every member's value.
    pub queues: Vec<(Arc<str>, Vec<V>)>,
}

impl<V> Default for Matched<V> {
    fn default() -> Self {
        Self {
            plain: SmallVec::new(),
            queues: Vec::new(),
        }
    }
}

impl<V> Matched<V> {
    /// Every entry matched, plain and queued.
    pub fn len(&self) -> usize {
        self.plain.len() + self.queues.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// The member list of `group`, made on first use. Groups are few per match, so a
    /// linear scan beats hashing.
    pub(crate) fn group_mut(&mut self, group: &Arc<str>) -> &mut Vec<V> {
        let at = match self.queues.iter().position(|(name, _)| name == group) {
            Some(at) => at,
            None => {
                self.queues.push((group.clone(), Vec::new()));
                self.queues.len() - 1
            }
        };
        &mut self.queues[at].1
    }
}
