//! The token trie: one node per distinct pattern prefix, with literal children in a hash
//! table and the `*` and `>` children apart, as in nats-server's sublist.
//!
//! Nodes and entries live in two arenas indexed by `u32`, so a node costs no allocation of
//! its own (tokens up to 24 bytes are stored inline) and a literal child is 4 bytes in its
//! parent's table. Freed nodes and entry slots are reused, so churn does not grow memory.

use std::hash::BuildHasher;
use std::mem;
use std::sync::Arc;

use compact_str::CompactString;
use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::matched::Matched;
use crate::subject::{FULL_WILDCARD, SINGLE_WILDCARD};

/// "No node" / "no entry" in the arenas' `u32` links.
const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

/// An entry's handle: the generation of its slot in the high half, the slot in the low
/// half, so a handle kept after `remove` never names the entry that reuses its slot.
pub type Handle = u64;

/// Head and tail of an intrusive doubly linked list of entry slots, so entries are kept
/// in insertion order and any one is unlinked in O(1) without a vector per node.
#[derive(Debug, Clone, Copy)]
struct Links {
    head: u32,
    tail: u32,
}

impl Links {
    const EMPTY: Self = Self {
        head: NONE,
        tail: NONE,
    };

    fn is_empty(&self) -> bool {
        self.head == NONE
    }
}

#[derive(Debug)]
struct QueueGroup {
    name: Arc<str>,
    members: Links,
}

#[derive(Debug)]
struct Node {
    /// The token leading here from `parent` (`*` and `>` for wildcard children).
    token: CompactString,
    parent: u32,
    /// Literal children, hashed by their token; the token is read from the child itself.
    literals: HashTable<u32>,
    star: u32,
    full: u32,
    plain: Links,
    /// Queue groups with members here; boxed because most nodes have none (8 bytes a
    /// node instead of a `Vec`'s 24).
    #[allow(clippy::box_collection)]
    queues: Option<Box<Vec<QueueGroup>>>,
    /// Entries stored at this node, plain and queued.
    entries: u32,
}

impl Node {
    fn new(token: &str, parent: u32) -> Self {
        Self {
            token: CompactString::new(token),
            parent,
            literals: HashTable::new(),
            star: NONE,
            full: NONE,
            plain: Links::EMPTY,
            queues: None,
            entries: 0,
        }
    }

    /// Holds nothing and leads nowhere: safe to prune.
    fn is_vacant(&self) -> bool {
        self.entries == 0 && self.literals.is_empty() && self.star == NONE && self.full == NONE
    }
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    node: u32,
    prev: u32,
    next: u32,
    queue: Option<Arc<str>>,
}

#[derive(Debug)]
struct Slot<V> {
    generation: u32,
    entry: Option<Entry<V>>,
}

/// The trie and its entries. Not synchronised: `SubjectIndex` wraps it in a lock.
#[derive(Debug)]
pub struct Trie<V> {
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    slots: Vec<Slot<V>>,
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

    /// Stores `value` under a pattern the caller has already checked.
    pub fn insert_checked(&mut self, pattern: &str, queue: Option<&str>, value: V) -> Handle {
        let mut node = ROOT;
        for token in pattern.split('.') {
            node = self.child_or_new(node, token);
        }
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 1,
                entry: None,
            });
            (self.slots.len() - 1) as u32
        });
        let queue = queue.map(|name| self.group_or_new(node, name));
        let target = &mut self.nodes[node as usize];
        let links = match &queue {
            None => &mut target.plain,
            Some(name) => &mut group_links(target, name).expect("group just made").members,
        };
        let prev = links.tail;
        links.tail = slot;
        if prev == NONE {
            links.head = slot;
        } else if let Some(e) = self.slots[prev as usize].entry.as_mut() {
            e.next = slot;
        }
        target.entries += 1;
        let s = &mut self.slots[slot as usize];
        s.entry = Some(Entry {
            value,
            node,
            prev,
            next: NONE,
            queue,
        });
        self.entries += 1;
        self.inserts += 1;
        (u64::from(s.generation) << 32) | u64::from(slot)
    }

    /// Removes the entry `handle` names, pruning nodes left vacant; `None` if it names
    /// nothing (never issued, or already removed).
    pub fn remove(&mut self, handle: Handle) -> Option<V> {
        let (slot, generation) = split_handle(handle);
        let s = self.slots.get_mut(slot)?;
        if s.generation != generation {
            return None;
        }
        let entry = s.entry.take()?;
        // Wrapping is harmless: a stale handle would need 2^32 reuses of one slot.
        s.generation = s.generation.wrapping_add(1);
        self.free_slots.push(slot as u32);

        let node = &mut self.nodes[entry.node as usize];
        node.entries -= 1;
        let links = match &entry.queue {
            None => &mut node.plain,
            Some(name) => {
                &mut group_links(node, name)
                    .expect("entry's group exists")
                    .members
            }
        };
        if entry.prev == NONE {
            links.head = entry.next;
        } else if let Some(e) = self.slots[entry.prev as usize].entry.as_mut() {
            e.next = entry.next;
        }
        if entry.next == NONE {
            links.tail = entry.prev;
        } else if let Some(e) = self.slots[entry.next as usize].entry.as_mut() {
            e.prev = entry.prev;
        }
        if let Some(name) = &entry.queue {
            drop_group_if_empty(node, name);
        }
        self.entries -= 1;
        self.removes += 1;
        self.prune(entry.node);
        Some(entry.value)
    }

    /// The pattern an entry was inserted under, and whether it has no wildcard token.
    pub fn pattern_of(&self, handle: Handle) -> Option<(String, bool)> {
        let (slot, generation) = split_handle(handle);
        let s = self.slots.get(slot)?;
        let entry = s.entry.as_ref().filter(|_| s.generation == generation)?;
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
                // The table rehashes children by their tokens, which live in `nodes`: take
                // the table out of the parent while it grows.
                let mut table = mem::take(&mut parent.literals);
                let nodes = &self.nodes;
                let hash = self.hasher.hash_one(token);
                table.insert_unique(hash, child, |&c| {
                    self.hasher.hash_one(nodes[c as usize].token.as_str())
                });
                self.nodes[node as usize].literals = table;
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

    fn group_or_new(&mut self, node: u32, name: &str) -> Arc<str> {
        let n = &mut self.nodes[node as usize];
        let groups = n.queues.get_or_insert_with(Box::default);
        if let Some(g) = groups.iter().find(|g| &*g.name == name) {
            return g.name.clone();
        }
        let name: Arc<str> = Arc::from(name);
        groups.push(QueueGroup {
            name: name.clone(),
            members: Links::EMPTY,
        });
        name
    }

    fn literal_child(&self, node: &Node, token: &str) -> Option<u32> {
        if node.literals.is_empty() {
            return None;
        }
        let hash = self.hasher.hash_one(token);
        node.literals
            .find(hash, |&c| self.nodes[c as usize].token == token)
            .copied()
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
                let hash = self.hasher.hash_one(vacant.token.as_str());
                if let Ok(found) = parent.literals.find_entry(hash, |&c| c == node) {
                    found.remove();
                }
                self.shrink_literals(parent_id);
            }
            node = parent_id;
        }
    }

    /// Gives a child table's memory back once most of its children are gone.
    fn shrink_literals(&mut self, node: u32) {
        let table = &self.nodes[node as usize].literals;
        if table.capacity() <= 16 || table.len() * 4 >= table.capacity() {
            return;
        }
        let mut table = mem::take(&mut self.nodes[node as usize].literals);
        let nodes = &self.nodes;
        table.shrink_to(table.len() * 2, |&c| {
            self.hasher.hash_one(nodes[c as usize].token.as_str())
        });
        self.nodes[node as usize].literals = table;
    }

    /// Calls `visit` on every node whose entries match `subject` (already checked as a
    /// subject), stopping early when `visit` returns true; returns whether it stopped.
    fn walk(&self, mut node: u32, mut rest: &str, visit: &mut impl FnMut(&Node) -> bool) -> bool {
        loop {
            // Tokens are short: a plain byte scan beats the generic substring searcher.
            let (token, tail) = match rest.bytes().position(|b| b == b'.') {
                Some(dot) => (&rest[..dot], Some(&rest[dot + 1..])),
                None => (rest, None),
            };
            let n = &self.nodes[node as usize];
            // `>` takes this token and everything after it.
            if n.full != NONE && visit(&self.nodes[n.full as usize]) {
                return true;
            }
            if n.star != NONE {
                let stopped = match tail {
                    None => visit(&self.nodes[n.star as usize]),
                    Some(tail) => self.walk(n.star, tail, visit),
                };
                if stopped {
                    return true;
                }
            }
            let Some(child) = self.literal_child(n, token) else {
                return false;
            };
            match tail {
                None => return visit(&self.nodes[child as usize]),
                Some(tail) => (node, rest) = (child, tail),
            }
        }
    }

    /// Whether any entry matches the checked `subject`.
    pub fn has_interest(&self, subject: &str) -> bool {
        self.walk(ROOT, subject, &mut |n| n.entries > 0)
    }

    /// How many entries match the checked `subject`.
    pub fn count(&self, subject: &str) -> usize {
        let mut total = 0;
        self.walk(ROOT, subject, &mut |n| {
            total += n.entries as usize;
            false
        });
        total
    }

    fn list(&self, links: Links) -> impl Iterator<Item = &V> + '_ {
        let mut at = links.head;
        std::iter::from_fn(move || {
            let entry = self.slots.get(at as usize)?.entry.as_ref()?;
            at = entry.next;
            Some(&entry.value)
        })
    }
}

impl<V: Clone> Trie<V> {
    /// The values of every entry matching the checked `subject`.
    pub fn collect(&self, subject: &str) -> Matched<V> {
        let mut out = Matched::default();
        self.walk(ROOT, subject, &mut |node| {
            out.plain.extend(self.list(node.plain).cloned());
            for group in node.queues.iter().flat_map(|g| g.iter()) {
                out.group_mut(&group.name)
                    .extend(self.list(group.members).cloned());
            }
            false
        });
        out
    }
}

fn group_links<'a>(node: &'a mut Node, name: &str) -> Option<&'a mut QueueGroup> {
    node.queues.as_mut()?.iter_mut().find(|g| &*g.name == name)
}

fn drop_group_if_empty(node: &mut Node, name: &str) {
    let Some(groups) = node.queues.as_mut() else {
        return;
    };
    if let Some(at) = groups
        .iter()
        .position(|g| &*g.name == name && g.members.is_empty())
    {
        groups.swap_remove(at);
    }
    if groups.is_empty() {
        node.queues = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(v: impl AsRef<[u32]>) -> Vec<u32> {
        let mut v = v.as_ref().to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn literal_and_wildcards() {
        let mut t = Trie::default();
        t.insert_checked("a.b.c", None, 1);
        t.insert_checked("a.*.c", None, 2);
        t.insert_checked("a.>", None, 3);
        t.insert_checked(">", None, 4);
        t.insert_checked("a.b", None, 5);
        assert_eq!(sorted(t.collect("a.b.c").plain), vec![1, 2, 3, 4]);
        assert_eq!(sorted(t.collect("a.b").plain), vec![3, 4, 5]);
        assert_eq!(sorted(t.collect("a").plain), vec![4]);
        // Subject tokens are literal: `>` here is just a token.
        assert_eq!(sorted(t.collect("a.>").plain), vec![3, 4]);
        assert_eq!(t.count("a.b.c"), 4);
        assert!(t.has_interest("x"));
    }

    #[test]
    fn queue_groups_merge_across_nodes() {
        let mut t = Trie::default();
        t.insert_checked("a.b", Some("g"), 1);
        t.insert_checked("a.*", Some("g"), 2);
        t.insert_checked("a.*", Some("h"), 3);
        t.insert_checked("a.b", None, 4);
        let m = t.collect("a.b");
        assert_eq!(m.plain.as_slice(), [4]);
        let mut groups: Vec<_> = m
            .queues
            .iter()
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
            .map(|i| t.insert_checked(&format!("x.{i}.y"), None, i))
            .collect();
        let q = t.insert_checked("x.*.>", Some("q"), 999);
        assert!(t.node_count() > 200);
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(t.remove(*h), Some(i as u32));
            assert_eq!(t.remove(*h), None, "a handle works once");
        }
        assert_eq!(t.remove(q), Some(999));
        assert_eq!(t.len(), 0);
        assert_eq!(t.node_count(), 1, "only the root is left");
        let again = t.insert_checked("x.1.y", None, 7);
        assert!(!handles.contains(&again), "a reused slot gets a new handle");
        assert_eq!(t.collect("x.1.y").plain.as_slice(), [7]);
    }

    #[test]
    fn pattern_of_rebuilds_the_pattern() {
        let mut t = Trie::default();
        let h = t.insert_checked("a.*.c.>", None, 0);
        let l = t.insert_checked("a.b", None, 0);
        assert_eq!(t.pattern_of(h), Some(("a.*.c.>".to_string(), false)));
        assert_eq!(t.pattern_of(l), Some(("a.b".to_string(), true)));
        t.remove(l);
        assert_eq!(t.pattern_of(l), None);
    }

    #[test]
    fn removal_keeps_order_of_the_rest() {
        let mut t = Trie::default();
        let hs: Vec<_> = (0..5).map(|i| t.insert_checked("s", None, i)).collect();
        t.remove(hs[0]);
        t.remove(hs[2]);
        t.remove(hs[4]);
        assert_eq!(t.collect("s").plain.as_slice(), [1, 3]);
        t.insert_checked("s", None, 9);
        assert_eq!(t.collect("s").plain.as_slice(), [1, 3, 9]);
    }
}
