//! What a match returns: the plain entries' values and, per queue group, its members.

use std::iter::FusedIterator;
use std::slice;
use std::sync::Arc;

use smallvec::SmallVec;

use super::values::ValueList;

/// Value lists kept inline in a result before it spills to the heap; most subjects match
/// entries at few nodes.
pub const INLINE_LISTS: usize = 2;

/// The value lists of one queue group's matched members, usually at one node.
pub(crate) type GroupLists<V> = SmallVec<[ValueList<V>; 1]>;

/// The values of every entry whose pattern matched one subject.
///
/// Holds the matched nodes' value lists, one reference each, not copies of the values:
/// building a result costs the same for 1 and for 1,000 entries on a node. Immutable
/// once built, and shared (`Arc`) between the cache and every caller.
#[derive(Debug)]
pub struct Matched<V> {
    /// Lists of entries without a queue group, in trie order.
    pub(crate) plain: SmallVec<[ValueList<V>; INLINE_LISTS]>,
    /// One item per queue group that matched: its name and its members' lists.
    pub(crate) queues: Vec<(Arc<str>, GroupLists<V>)>,
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
    /// Values of entries without a queue group, in trie order (and insertion order
    /// within one pattern).
    pub fn plain(&self) -> Values<'_, V> {
        Values::new(&self.plain)
    }

    /// Each queue group that matched, and its members' values.
    pub fn queues(&self) -> impl ExactSizeIterator<Item = (&str, Values<'_, V>)> + '_ {
        self.queues
            .iter()
            .map(|(name, lists)| (&**name, Values::new(lists)))
    }

    /// Every entry matched, plain and queued.
    pub fn len(&self) -> usize {
        let queued: usize = self.queues.iter().map(|(_, l)| lists_len(l)).sum();
        lists_len(&self.plain) + queued
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// The member lists of `group`, made on first use. Groups are few per match, so a
    /// linear scan beats hashing.
    pub(crate) fn group_mut(&mut self, group: &Arc<str>) -> &mut GroupLists<V> {
        let at = match self.queues.iter().position(|(name, _)| name == group) {
            Some(at) => at,
            None => {
                self.queues.push((group.clone(), SmallVec::new()));
                self.queues.len() - 1
            }
        };
        &mut self.queues[at].1
    }
}

fn lists_len<V>(lists: &[ValueList<V>]) -> usize {
    lists.iter().map(ValueList::len).sum()
}

/// The values of a sequence of lists, in order; knows its length, so a caller can size
/// its output once.
#[derive(Debug, Clone)]
pub struct Values<'a, V> {
    lists: slice::Iter<'a, ValueList<V>>,
    positions: slice::Iter<'a, Option<V>>,
    remaining: usize,
}

impl<'a, V> Values<'a, V> {
    fn new(lists: &'a [ValueList<V>]) -> Self {
        Self {
            lists: lists.iter(),
            positions: [].iter(),
            remaining: lists_len(lists),
        }
    }
}

impl<'a, V> Iterator for Values<'a, V> {
    type Item = &'a V;

    fn next(&mut self) -> Option<&'a V> {
        loop {
            match self.positions.next() {
                Some(Some(value)) => {
                    self.remaining -= 1;
                    return Some(value);
                }
                Some(None) => {}
                None => self.positions = self.lists.next()?.positions().iter(),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }

    /// A loop per list instead of a check per value for which list it is in: sums and
    /// the like then run as fast as over one slice.
    fn fold<B, F: FnMut(B, &'a V) -> B>(self, init: B, mut f: F) -> B {
        let acc = self.positions.flatten().fold(init, &mut f);
        self.lists.fold(acc, |acc, list| {
            list.positions().iter().flatten().fold(acc, &mut f)
        })
    }
}

impl<V> ExactSizeIterator for Values<'_, V> {}

impl<V> FusedIterator for Values<'_, V> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_run_across_lists_and_holes() {
        let mut a = None;
        for id in 0..4 {
            ValueList::push(&mut a, id, id, &mut |_, _| {});
        }
        // A hole in the middle of `a`.
        ValueList::remove(&mut a, 1, &mut |_, _| {});
        let b = ValueList::single(9, 9);
        let m = Matched::<u32> {
            plain: [a.unwrap(), b].into_iter().collect(),
            queues: Vec::new(),
        };
        let mut values = m.plain();
        assert_eq!(values.len(), 4);
        assert_eq!(
            values.clone().copied().collect::<Vec<_>>(),
            vec![0, 2, 3, 9]
        );
        assert_eq!(
            values.clone().sum::<u32>(),
            14,
            "fold visits the same values"
        );
        values.next();
        assert_eq!((values.len(), values.clone().sum::<u32>()), (3, 14));
        assert_eq!(values.fold(0, |n, _| n + 1), 3);
        assert_eq!(m.len(), 4);
        assert_eq!(Matched::<u32>::default().plain().len(), 0);
    }
}
