//! The token trie: one node per distinct pattern prefix, with literal children in a hash
//! table and the `*` and `>` children apart, as in nats-server's sublist.
//!
//! Nodes and entries live in two arenas indexed by `u32`, so a node costs no allocation of
//! its own (tokens up to 24 bytes are stored inline) and a literal child is 8 bytes in its
//! parent's table: its node and half of its token's hash. With the hash there, a growing
//! table rehashes without reading its children, which lie anywhere in the arena (children
//! of one parent inserted far apart made a build of 1M entries 2.5x slower), and a probe
//! reads only the child whose hash matches. Most nodes are leaves, so the table is boxed:
//! 8 bytes in a leaf instead of 32, and a node is 64 bytes, one cache line. Freed nodes and
//! entry slots are reused, so churn does not grow memory.
//! A node's plain values, and each queue group's, are a [`ValueList`] that match results
//! share: a match costs one reference per matched list, however many values it holds.

use std::hash::BuildHasher;
use std::mem;
use std::sync::Arc;

use compact_str::CompactString;
use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::matched::Matched;
use super::values::ValueList;
use crate::subject::{
    check, next_token, rest_is_well_formed, SubjectKind, FULL_WILDCARD, MAX_SUBJECT_LENGTH,
    MAX_TOKENS, SINGLE_WILDCARD,
};

/// "No node" in the `u32` references between nodes and entries.
const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

/// An entry's handle: the generation of its slot in the high half, the slot in the low
/// half, so a handle kept after `remove` never names the entry that reuses its slot.
pub type Handle = u64;

#[derive(Debug)]
struct QueueGroup<V> {
    name: Arc<str>,
    /// Never `None` while the group exists: an emptied group is dropped.
    members: Option<ValueList<V>>,
}

/// A literal child in its parent's table.
#[derive(Debug, Clone, Copy)]
struct Child {
    node: u32,
    /// The high half of the child's token hash.
    hash: u32,
}

impl Child {
    /// The hash the table files a child under: its 32 bits spread over 64, as the table
    /// takes bucket bits from the low end and a tag from the top 7.
    fn table_hash(hash: u32) -> u64 {
        u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// Literal children; `None` while there are none (most nodes are leaves).
type Literals = Option<Box<HashTable<Child>>>;

#[derive(Debug)]
struct Node<V> {
    /// The token leading here from `parent` (`*` and `>` for wildcard children).
    token: CompactString,
    parent: u32,
    /// Literal children, hashed by their token; the token is read from the child itself.
    literals: Literals,
    star: u32,
    full: u32,
    plain: Option<ValueList<V>>,
    /// Queue groups with members here; boxed because most nodes have none (8 bytes a
    /// node instead of a `Vec`'s 24).
    #[allow(clippy::box_collection)]
    queues: Option<Box<Vec<QueueGroup<V>>>>,
    /// Entries stored at this node, plain and queued.
    entries: u32,
}

impl<V> Node<V> {
    fn new(token: &str, parent: u32) -> Self {
        Self {
            token: CompactString::new(token),
            parent,
            literals: None,
            star: NONE,
            full: NONE,
            plain: None,
            queues: None,
            entries: 0,
        }
    }

    /// Holds nothing and leads nowhere: safe to prune.
    fn is_vacant(&self) -> bool {
        self.entries == 0 && self.literals.is_none() && self.star == NONE && self.full == NONE
    }

    /// The list of the entries in this node's queue group number `group` (`NONE`: the
    /// plain entries).
    fn list_mut(&mut self, group: u32) -> &mut Option<ValueList<V>> {
        if group == NONE {
            return &mut self.plain;
        }
        &mut self
            .queues
            .as_mut()
            .and_then(|groups| groups.get_mut(group as usize))
            .expect("an entry's queue group exists")
            .members
    }
}

/// Where an entry lives: its node, its queue group there, and its position in the
/// node's (or the group's) value list, which holds the value. 16 bytes an entry.
#[derive(Debug)]
struct Slot {
    generation: u32,
    /// `NONE` while the slot is free.
    node: u32,
    /// The index of its queue group in the node's groups; `NONE` for a plain entry.
    group: u32,
    pos: u32,
}

/// The trie and its entries. Not synchronised: `SubjectIndex` wraps it in a lock.
#[derive(Debug)]
pub struct Trie<V> {
    nodes: Vec<Node<V>>,
    free_nodes: Vec<u32>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    hasher: RandomState,
    entries: usize,
    pub(crate) inserts: u64,
    pub(crate) removes: u64,
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self {
            nodes: vec![Node::new("", NONE)],
            free_nodes: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            hasher: RandomState::default(),
            entries: 0,
            inserts: 0,
            removes: 0,
        }
    }
}

fn split_handle(handle: Handle) -> (usize, u32) {
    (
        (handle & u64::from(u32::MAX)) as usize,
        (handle >> 32) as u32,
    )
}

impl<V> Trie<V> {
    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Live trie nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Every stored value, each once, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.nodes.iter().flat_map(|node| {
            let groups = node
                .queues
                .iter()
                .flat_map(|groups| groups.iter())
                .filter_map(|group| group.members.as_ref());
            node.plain.iter().chain(groups).flat_map(ValueList::iter)
        })
    }

    /// Takes every entry out, keeping the counters (a removal each); the caller drops
    /// what it returns once it holds no lock.
    pub fn take_all(&mut self) -> Self {
        let empty = Self {
            inserts: self.inserts,
            removes: self.removes + self.entries as u64,
            ..Self::default()
        };
        mem::replace(self, empty)
    }

    /// The live entry `handle` names, if any.
    fn slot(&self, handle: Handle) -> Option<(usize, &Slot)> {
        let (slot, generation) = split_handle(handle);
        let s = self.slots.get(slot)?;
        (s.generation == generation && s.node != NONE).then_some((slot, s))
    }
}

impl<V: Clone> Trie<V> {
    /// Stores `value` under a pattern the caller has already checked. Also returns the
    /// value list it replaced, if a result still held that one, for the caller to drop
    /// once it holds no lock.
    pub fn insert_checked(
        &mut self,
        pattern: &str,
        queue: Option<&str>,
        value: V,
    ) -> (Handle, Option<ValueList<V>>) {
        let mut node = ROOT;
        for token in pattern.split('.') {
            node = self.child_or_new(node, token);
        }
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 1,
                node: NONE,
                group: NONE,
                pos: 0,
            });
            (self.slots.len() - 1) as u32
        });
        let group = queue.map_or(NONE, |name| self.group_or_new(node, name));
        let slots = &mut self.slots;
        let target = &mut self.nodes[node as usize];
        let (pos, retired) =
            ValueList::push(target.list_mut(group), slot, value, &mut |id, pos| {
                slots[id as usize].pos = pos
            });
        target.entries += 1;
        let s = &mut slots[slot as usize];
        (s.node, s.group, s.pos) = (node, group, pos);
        self.entries += 1;
        self.inserts += 1;
        ((u64::from(s.generation) << 32) | u64::from(slot), retired)
    }

    /// Removes the entry `handle` names, pruning nodes left vacant; `None` if it names
    /// nothing (never issued, or already removed). Also returns the value list it
    /// replaced, if a result still held that one, for the caller to drop once it holds
    /// no lock.
    pub fn remove(&mut self, handle: Handle) -> Option<(V, Option<ValueList<V>>)> {
        let (slot, _) = self.slot(handle)?;
        let s = &mut self.slots[slot];
        let (node_id, group, pos) = (s.node, s.group, s.pos);
        s.node = NONE;
        // Wrapping is harmless: a stale handle would need 2^32 reuses of one slot.
        s.generation = s.generation.wrapping_add(1);
        self.free_slots.push(slot as u32);

        let slots = &mut self.slots;
        let node = &mut self.nodes[node_id as usize];
        node.entries -= 1;
        let list = node.list_mut(group);
        let (value, retired) =
            ValueList::remove(list, pos, &mut |id, pos| slots[id as usize].pos = pos);
        if group != NONE && list.is_none() {
            drop_group(node, group, slots);
        }
        self.entries -= 1;
        self.removes += 1;
        self.prune(node_id);
        Some((value, retired))
    }

    /// The values of every entry matching `subject`; `None` if it is malformed.
    pub fn collect(&self, subject: &str) -> Option<Matched<V>> {
        let mut out = Matched::default();
        self.walk_subject(subject, &mut |node| {
            out.plain.extend(node.plain.iter().cloned());
            if let Some(groups) = &node.queues {
                out.queues.reserve(groups.len());
                for group in groups.iter() {
                    out.group_mut(&group.name)
                        .extend(group.members.iter().cloned());
                }
            }
            false
        })?;
        Some(out)
    }
}

impl<V> Trie<V> {
    /// The pattern an entry was inserted under, and whether it has no wildcard token.
    pub fn pattern_of(&self, handle: Handle) -> Option<(String, bool)> {
        let (_, entry) = self.slot(handle)?;
        let mut path = Vec::new();
        let mut node = entry.node;
        while node != ROOT {
            let n = &self.nodes[node as usize];
            path.push(n.token.as_str());
            node = n.parent;
        }
        path.reverse();
        let literal = !path
            .iter()
            .any(|t| *t == SINGLE_WILDCARD || *t == FULL_WILDCARD);
        Some((path.join("."), literal))
    }

    fn child_or_new(&mut self, node: u32, token: &str) -> u32 {
        let existing = match token {
            SINGLE_WILDCARD => self.nodes[node as usize].star,
            FULL_WILDCARD => self.nodes[node as usize].full,
            _ => self
                .literal_child(&self.nodes[node as usize], token)
                .unwrap_or(NONE),
        };
        if existing != NONE {
            return existing;
        }
        let child = self.new_node(token, node);
        let parent = &mut self.nodes[node as usize];
        match token {
            SINGLE_WILDCARD => parent.star = child,
            FULL_WILDCARD => parent.full = child,
            _ => {
                let hash = (self.hasher.hash_one(token) >> 32) as u32;
                parent
                    .literals
                    .get_or_insert_with(Box::default)
                    .insert_unique(Child::table_hash(hash), Child { node: child, hash }, |c| {
                        Child::table_hash(c.hash)
                    });
            }
        }
        child
    }

    fn new_node(&mut self, token: &str, parent: u32) -> u32 {
        let node = Node::new(token, parent);
        match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// The index of `node`'s queue group `name`, made if new.
    fn group_or_new(&mut self, node: u32, name: &str) -> u32 {
        let n = &mut self.nodes[node as usize];
        let groups = n.queues.get_or_insert_with(Box::default);
        if let Some(at) = groups.iter().position(|g| &*g.name == name) {
            return at as u32;
        }
        groups.push(QueueGroup {
            name: Arc::from(name),
            members: None,
        });
        (groups.len() - 1) as u32
    }

    /// The half of a token's hash kept beside the child (`child_or_new` inlines it).
    fn token_hash(&self, token: &str) -> u32 {
        (self.hasher.hash_one(token) >> 32) as u32
    }

    fn literal_child(&self, node: &Node<V>, token: &str) -> Option<u32> {
        let table = node.literals.as_deref()?;
        let hash = self.token_hash(token);
        table
            .find(Child::table_hash(hash), |c| {
                c.hash == hash && self.nodes[c.node as usize].token == token
            })
            .map(|c| c.node)
    }

    /// Frees `node` and then each ancestor left vacant, up to (not including) the root.
    fn prune(&mut self, mut node: u32) {
        while node != ROOT && self.nodes[node as usize].is_vacant() {
            let vacant = mem::replace(&mut self.nodes[node as usize], Node::new("", NONE));
            self.free_nodes.push(node);
            let parent_id = vacant.parent;
            let parent = &mut self.nodes[parent_id as usize];
            if parent.star == node {
                parent.star = NONE;
            } else if parent.full == node {
                parent.full = NONE;
            } else {
                let hash = Child::table_hash(self.token_hash(vacant.token.as_str()));
                let parent = &mut self.nodes[parent_id as usize];
                let table = parent.literals.as_mut().expect("a literal child's table");
                if let Ok(found) = table.find_entry(hash, |c| c.node == node) {
                    found.remove();
                }
                shrink_literals(&mut parent.literals);
            }
            node = parent_id;
        }
    }

    /// Calls `visit` on every node whose entries match `subject`, stopping early when
    /// `visit` returns true; `None` if the subject is malformed.
    ///
    /// The subject is checked as it is walked, each token as it is split off, and what
    /// the walk did not reach is checked after: one pass over its bytes where a check
    /// first and a walk after made two. Nodes may have been visited by the time a
    /// malformed token is found, so callers discard what `visit` gathered on `None`.
    fn walk_subject(
        &self,
        subject: &str,
        visit: &mut impl FnMut(&Node<V>) -> bool,
    ) -> Option<Walked> {
        if subject.len() > MAX_SUBJECT_LENGTH {
            return None;
        }
        self.walk(ROOT, subject, 0, visit)
    }

    /// [`Self::walk_subject`] from `node`, with `rest` what follows the first `taken`
    /// tokens of the subject.
    fn walk(
        &self,
        mut node: u32,
        mut rest: &str,
        mut taken: usize,
        visit: &mut impl FnMut(&Node<V>) -> bool,
    ) -> Option<Walked> {
        loop {
            let (token, tail) = next_token(rest)?;
            taken += 1;
            if taken > MAX_TOKENS {
                return None;
            }
            let n = &self.nodes[node as usize];
            // `>` takes this token and everything after it.
            if n.full != NONE && visit(&self.nodes[n.full as usize]) {
                return Some(Walked::Stopped);
            }
            if n.star != NONE {
                let walked = match tail {
                    None if visit(&self.nodes[n.star as usize]) => Walked::Stopped,
                    None => Walked::Whole,
                    Some(tail) => self.walk(n.star, tail, taken, visit)?,
                };
                if walked == Walked::Stopped {
                    return Some(Walked::Stopped);
                }
            }
            let Some(child) = self.literal_child(n, token) else {
                let well_formed = match tail {
                    None => true,
                    Some(tail) => rest_is_well_formed(tail, taken),
                };
                return well_formed.then_some(Walked::Whole);
            };
            match tail {
                None if visit(&self.nodes[child as usize]) => return Some(Walked::Stopped),
                None => return Some(Walked::Whole),
                Some(tail) => (node, rest) = (child, tail),
            }
        }
    }

    /// Whether any entry matches `subject` (none does if it is malformed).
    pub fn has_interest(&self, subject: &str) -> bool {
        match self.walk_subject(subject, &mut |n| n.entries > 0) {
            // Stopped at the first entry found: the rest of the subject is unread.
            Some(Walked::Stopped) => check(subject, SubjectKind::Subject).is_ok(),
            Some(Walked::Whole) | None => false,
        }
    }

    /// How many entries match `subject` (0 if it is malformed).
    pub fn count(&self, subject: &str) -> usize {
        let mut total = 0;
        let walked = self.walk_subject(subject, &mut |n| {
            total += n.entries as usize;
            false
        });
        walked.map_or(0, |_| total)
    }
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walked {
    /// `visit` asked to stop.
    Stopped,
    /// Every matching node was visited, and the whole subject checked.
    Whole,
}

/// Gives a child table's memory back once most of its children are gone, and the table
/// itself once all are.
fn shrink_literals(literals: &mut Literals) {
    let Some(table) = literals else {
        return;
    };
    if table.is_empty() {
        *literals = None;
    } else if table.capacity() > 16 && table.len() * 4 < table.capacity() {
        table.shrink_to(table.len() * 2, |c| Child::table_hash(c.hash));
    }
}

/// Drops `node`'s emptied queue group number `at`. The last group takes its place, and
/// its members' slots learn their group's new index.
fn drop_group<V>(node: &mut Node<V>, at: u32, slots: &mut [Slot]) {
    let groups = node.queues.as_mut().expect("an entry's queue group exists");
    groups.swap_remove(at as usize);
    if let Some(moved) = groups.get(at as usize) {
        let members = moved.members.as_ref().expect("a group has members");
        for id in members.entry_ids() {
            slots[id as usize].group = at;
        }
    }
    if groups.is_empty() {
        node.queues = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<'a>(v: impl IntoIterator<Item = &'a u32>) -> Vec<u32> {
        let mut v: Vec<u32> = v.into_iter().copied().collect();
        v.sort_unstable();
        v
    }

    fn plain(t: &Trie<u32>, subject: &str) -> Vec<u32> {
        t.collect(subject).unwrap().plain().copied().collect()
    }

    fn insert(t: &mut Trie<u32>, pattern: &str, queue: Option<&str>, value: u32) -> Handle {
        t.insert_checked(pattern, queue, value).0
    }

    fn take(t: &mut Trie<u32>, handle: Handle) -> Option<u32> {
        t.remove(handle).map(|(value, _)| value)
    }

    #[test]
    fn a_node_is_one_cache_line() {
        assert_eq!(size_of::<Node<usize>>(), 64);
    }

    #[test]
    fn literal_and_wildcards() {
        let mut t = Trie::default();
        insert(&mut t, "a.b.c", None, 1);
        insert(&mut t, "a.*.c", None, 2);
        insert(&mut t, "a.>", None, 3);
        insert(&mut t, ">", None, 4);
        insert(&mut t, "a.b", None, 5);
        assert_eq!(sorted(&plain(&t, "a.b.c")), vec![1, 2, 3, 4]);
        assert_eq!(sorted(&plain(&t, "a.b")), vec![3, 4, 5]);
        assert_eq!(sorted(&plain(&t, "a")), vec![4]);
        // Subject tokens are literal: `>` here is just a token.
        assert_eq!(sorted(&plain(&t, "a.>")), vec![3, 4]);
        assert_eq!(t.count("a.b.c"), 4);
        assert!(t.has_interest("x"));
    }

    #[test]
    fn queue_groups_merge_across_nodes() {
        let mut t = Trie::default();
        insert(&mut t, "a.b", Some("g"), 1);
        insert(&mut t, "a.*", Some("g"), 2);
        insert(&mut t, "a.*", Some("h"), 3);
        insert(&mut t, "a.b", None, 4);
        let m = t.collect("a.b").unwrap();
        assert_eq!(m.plain().copied().collect::<Vec<_>>(), [4]);
        let mut groups: Vec<_> = m
            .queues()
            .map(|(n, v)| (n.to_string(), sorted(v)))
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![("g".to_string(), vec![1, 2]), ("h".to_string(), vec![3])]
        );
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn remove_prunes_and_reuses() {
        let mut t = Trie::default();
        let handles: Vec<_> = (0..100)
            .map(|i| insert(&mut t, &format!("x.{i}.y"), None, i))
            .collect();
        let q = insert(&mut t, "x.*.>", Some("q"), 999);
        assert!(t.node_count() > 200);
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(take(&mut t, *h), Some(i as u32));
            assert_eq!(take(&mut t, *h), None, "a handle works once");
        }
        assert_eq!(take(&mut t, q), Some(999));
        assert_eq!(t.len(), 0);
        assert_eq!(t.node_count(), 1, "only the root is left");
        let again = insert(&mut t, "x.1.y", None, 7);
        assert!(!handles.contains(&again), "a reused slot gets a new handle");
        assert_eq!(plain(&t, "x.1.y"), [7]);
    }

    #[test]
    fn pattern_of_rebuilds_the_pattern() {
        let mut t = Trie::default();
        let h = insert(&mut t, "a.*.c.>", None, 0);
        let l = insert(&mut t, "a.b", None, 0);
        assert_eq!(t.pattern_of(h), Some(("a.*.c.>".to_string(), false)));
        assert_eq!(t.pattern_of(l), Some(("a.b".to_string(), true)));
        take(&mut t, l);
        assert_eq!(t.pattern_of(l), None);
    }

    #[test]
    fn removal_keeps_order_of_the_rest() {
        let mut t = Trie::default();
        let hs: Vec<_> = (0..5).map(|i| insert(&mut t, "s", None, i)).collect();
        take(&mut t, hs[0]);
        take(&mut t, hs[2]);
        take(&mut t, hs[4]);
        assert_eq!(plain(&t, "s"), [1, 3]);
        insert(&mut t, "s", None, 9);
        assert_eq!(plain(&t, "s"), [1, 3, 9]);
    }

    #[test]
    fn handles_follow_values_through_compaction() {
        // Enough entries on one node, removed in a scattered order, that the node's list
        // is compacted several times and every entry's position moves.
        let mut t = Trie::default();
        let hs: Vec<_> = (0..1_000).map(|i| insert(&mut t, "a.b", None, i)).collect();
        let gone = |i: u32| i % 3 != 0 || i % 5 == 0;
        for i in (0..1_000u32).rev().filter(|&i| gone(i) && i % 2 == 0) {
            assert_eq!(take(&mut t, hs[i as usize]), Some(i));
        }
        for i in (0..1_000u32).filter(|&i| gone(i) && i % 2 == 1) {
            assert_eq!(take(&mut t, hs[i as usize]), Some(i));
        }
        let kept: Vec<u32> = (0..1_000).filter(|&i| !gone(i)).collect();
        assert_eq!(plain(&t, "a.b"), kept);
        assert_eq!(t.count("a.b"), kept.len());
        // Each remaining handle still removes its own value, in any order.
        for &i in kept.iter().rev() {
            assert_eq!(take(&mut t, hs[i as usize]), Some(i));
        }
        assert_eq!(t.node_count(), 1);
    }

    #[test]
    fn an_outstanding_result_keeps_what_it_saw() {
        let mut t = Trie::default();
        let hs: Vec<_> = (0..4).map(|i| insert(&mut t, "s", None, i)).collect();
        insert(&mut t, "s", Some("g"), 10);
        let before = t.collect("s").unwrap();
        // Changing a list a result holds copies it and hands the old one back.
        let (h, replaced) = t.insert_checked("s", None, 4);
        assert!(replaced.is_some());
        drop(replaced);
        let (value, replaced) = t.remove(hs[1]).unwrap();
        assert_eq!(
            (value, replaced.is_none()),
            (1, true),
            "the copy is not shared"
        );
        let (_, replaced) = t.insert_checked("s", Some("g"), 11);
        assert!(replaced.is_some());
        assert_eq!(before.plain().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
        let groups: Vec<_> = before
            .queues()
            .map(|(n, v)| (n.to_string(), v.copied().collect::<Vec<_>>()))
            .collect();
        assert_eq!(groups, vec![("g".to_string(), vec![10])]);
        assert_eq!(before.len(), 5);
        assert_eq!(plain(&t, "s"), [0, 2, 3, 4]);
        assert_eq!(t.collect("s").unwrap().len(), 6);
        // The handle made while a result was held names the right entry.
        assert_eq!(take(&mut t, h), Some(4));
        drop(before);
        assert_eq!(plain(&t, "s"), [0, 2, 3]);
    }

    #[test]
    fn handles_follow_a_queue_group_that_takes_an_emptied_ones_place() {
        let mut t = Trie::default();
        let a = insert(&mut t, "q", Some("a"), 1);
        let b: Vec<_> = (2..5).map(|v| insert(&mut t, "q", Some("b"), v)).collect();
        let c: Vec<_> = (5..7).map(|v| insert(&mut t, "q", Some("c"), v)).collect();
        // Emptying "a" moves "c", the last group, into its place.
        assert_eq!(take(&mut t, a), Some(1));
        assert_eq!(take(&mut t, c[1]), Some(6));
        assert_eq!(take(&mut t, b[0]), Some(2));
        let mut groups: Vec<(String, Vec<u32>)> = t
            .collect("q")
            .unwrap()
            .queues()
            .map(|(n, v)| (n.to_string(), v.copied().collect()))
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![("b".to_string(), vec![3, 4]), ("c".to_string(), vec![5])]
        );
        assert_eq!(take(&mut t, c[0]), Some(5));
        assert_eq!((take(&mut t, b[2]), take(&mut t, b[1])), (Some(4), Some(3)));
        assert_eq!(t.node_count(), 1);
    }

    #[test]
    fn queue_members_keep_insertion_order_and_empty_groups_go() {
        let mut t = Trie::default();
        let g: Vec<_> = (0..6).map(|i| insert(&mut t, "q", Some("g"), i)).collect();
        let h = insert(&mut t, "q", Some("h"), 100);
        take(&mut t, g[0]);
        take(&mut t, g[3]);
        let members = |t: &Trie<u32>| -> Vec<(String, Vec<u32>)> {
            let mut groups: Vec<_> = t
                .collect("q")
                .unwrap()
                .queues()
                .map(|(n, v)| (n.to_string(), v.copied().collect()))
                .collect();
            groups.sort();
            groups
        };
        assert_eq!(
            members(&t),
            vec![
                ("g".to_string(), vec![1, 2, 4, 5]),
                ("h".to_string(), vec![100])
            ]
        );
        take(&mut t, h);
        assert_eq!(members(&t), vec![("g".to_string(), vec![1, 2, 4, 5])]);
        for i in [1, 2, 4, 5] {
            take(&mut t, g[i]);
        }
        assert!(members(&t).is_empty());
        assert_eq!(t.node_count(), 1);
    }
}
