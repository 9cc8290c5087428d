//! The per-thread front of the match cache: a cache hit without an atomic
//! read-modify-write.
//!
//! Every thread that matches on an index gets a small direct-mapped table of its own (a
//! `ThreadLocal` owned by the index, so it goes when the index goes). A slot holds a
//! subject, its hash and a shared result; the table records the index's generation its
//! slots were filled at. Every insert and remove bumps the generation, so a hit is the
//! subject's hash, a probe of this thread's table, a key compare and one acquire load of
//! the generation: no lock, no reference count, and nothing written to a line another
//! thread reads. The caller borrows the result in place.
//!
//! Correctness: a slot is filled with a result that was current at the generation read
//! before it was looked up (a newer result tagged with an older generation is only
//! dropped early). A writer bumps the generation under the trie's write lock, before its
//! insert or remove returns, so a reader ordered after that return loads the new
//! generation and finds its table stale. A stale table is emptied the next time its
//! thread touches it, and a writer empties its own thread's table at once; until then a
//! stale slot keeps its result (and so the values it held) alive.
//!
//! Re-entrancy: the borrowed result lives in the table, so while a caller reads it the
//! table is marked busy, and a match made meanwhile on the same thread (from the reading
//! closure, or a value's destructor) neither reads nor changes it.

use std::cell::{Cell, UnsafeCell};
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use thread_local::ThreadLocal;

use super::matched::Matched;

/// Slots per thread and index: a service matches a handful of hot subjects; more would
/// only cost memory per thread.
const SLOTS: usize = 64;

struct Slot<V> {
    hash: u64,
    key: Key,
    result: Arc<Matched<V>>,
}

/// Subjects up to this long are kept in the slot itself: a probe then reads one cache
/// line, and the slot is 64 bytes.
const INLINE_KEY: usize = 39;

/// A slot's subject.
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<str>),
}

impl Key {
    fn new(key: &str) -> Self {
        if key.len() > INLINE_KEY {
            return Self::Heap(key.into());
        }
        let mut bytes = [0; INLINE_KEY];
        bytes[..key.len()].copy_from_slice(key.as_bytes());
        Self::Inline {
            len: key.len() as u8,
            bytes,
        }
    }

    fn is(&self, key: &str) -> bool {
        let stored = match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(stored) => stored.as_bytes(),
        };
        stored.len() == key.len() && same_bytes(stored, key.as_bytes())
    }
}

/// Whether two byte strings of the same length are equal, compared a word at a time
/// (the last word overlapping the one before): for subject-sized strings this is a few
/// instructions inline, where a call to `memcmp` costs more than the compare.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    if n < 8 {
        let short = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
        return if n < 4 {
            a == b
        } else {
            short(a, 0) == short(b, 0) && short(a, n - 4) == short(b, n - 4)
        };
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

struct Table<V> {
    /// The generation every slot was filled at.
    generation: u64,
    slots: [Option<Slot<V>>; SLOTS],
}

/// One thread's table and its hit count.
struct ThreadFront<V> {
    /// Written only by the owning thread, read by `stats` from any thread.
    hits: AtomicU64,
    busy: Cell<bool>,
    table: UnsafeCell<Table<V>>,
}

// SAFETY: `busy` and `table` are touched only by the thread that owns this front (it is
// reached through `ThreadLocal::get`, which hands each thread its own); other threads
// reach it only through `ThreadLocal::iter`, and then read `hits` alone, an atomic.
unsafe impl<V: Send + Sync> Sync for ThreadFront<V> {}

impl<V> Default for ThreadFront<V> {
    fn default() -> Self {
        Self {
            hits: AtomicU64::new(0),
            busy: Cell::new(false),
            table: UnsafeCell::new(Table {
                generation: 0,
                slots: std::array::from_fn(|_| None),
            }),
        }
    }
}

/// Results taken out of a table, to be dropped once no lock and no borrow is held
/// (dropping a value may run arbitrary code, even a match on this index).
pub type Retired<V> = Vec<Arc<Matched<V>>>;

/// Exclusive use of this thread's table for as long as it lives.
pub struct Entered<'a, V> {
    front: &'a ThreadFront<V>,
}

impl<V> Drop for Entered<'_, V> {
    fn drop(&mut self) {
        self.front.busy.set(false);
    }
}

fn slot_of(hash: u64) -> usize {
    // Bits the shard (48..) and hashbrown (57..) do not use for the shared cache.
    (hash >> 32) as usize % SLOTS
}

impl<'a, V> Entered<'a, V> {
    fn table(&self) -> &'a Table<V> {
        // SAFETY: the front is this thread's and not busy elsewhere on the stack (we set
        // `busy`), so nothing else reaches the table until this guard drops; shared
        // borrows handed out live no longer than the guard (see `find`).
        unsafe { &*self.front.table.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn table_mut(&mut self) -> &mut Table<V> {
        // SAFETY: as for `table`; `&mut self` keeps the guard's own borrows apart.
        unsafe { &mut *self.front.table.get() }
    }

    /// The result cached for `key`, if it is current at `generation`.
    pub fn find(&self, generation: u64, hash: u64, key: &str) -> Option<&Arc<Matched<V>>> {
        let table = self.table();
        if table.generation != generation {
            return None;
        }
        let slot = table.slots[slot_of(hash)].as_ref()?;
        if slot.hash != hash || !slot.key.is(key) {
            return None;
        }
        Some(&slot.result)
    }

    /// Counts a match this front served.
    pub fn count_hit(&self) {
        // Only this thread writes its count: a load and a store, not a read-modify-write.
        let hits = &self.front.hits;
        hits.store(hits.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Stores `result`, current at `generation`, under `key`; returns what it displaced.
    pub fn fill(
        &mut self,
        generation: u64,
        hash: u64,
        key: &str,
        result: &Arc<Matched<V>>,
    ) -> Retired<V> {
        let table = self.table_mut();
        let mut retired = Vec::new();
        if generation < table.generation {
            // The table moved on while this result was computed: it may be stale.
            return retired;
        }
        if generation > table.generation {
            retired.extend(
                table
                    .slots
                    .iter_mut()
                    .filter_map(|s| s.take().map(|s| s.result)),
            );
            table.generation = generation;
        }
        let slot = &mut table.slots[slot_of(hash)];
        match slot {
            Some(s) if s.hash == hash && s.key.is(key) => {
                retired.push(mem::replace(&mut s.result, result.clone()));
            }
            _ => {
                let new = Slot {
                    hash,
                    key: Key::new(key),
                    result: result.clone(),
                };
                retired.extend(slot.replace(new).map(|s| s.result));
            }
        }
        retired
    }

    /// Empties the table (this thread wrote to the index: every slot is stale).
    pub fn clear(&mut self) -> Retired<V> {
        let table = self.table_mut();
        table
            .slots
            .iter_mut()
            .filter_map(|s| s.take().map(|s| s.result))
            .collect()
    }
}

/// Every thread's front for one index, and the index's generation.
pub struct FrontCache<V: Send + Sync> {
    fronts: ThreadLocal<ThreadFront<V>>,
    /// Bumped by every insert and remove; alone on its cache line, as every hit reads it.
    generation: Generation,
}

#[repr(align(128))]
struct Generation(AtomicU64);

impl<V: Send + Sync> FrontCache<V> {
    pub fn new() -> Self {
        Self {
            fronts: ThreadLocal::new(),
            generation: Generation(AtomicU64::new(0)),
        }
    }

    /// The generation now; a result looked up after this load is current at it.
    pub fn generation(&self) -> u64 {
        self.generation.0.load(Ordering::Acquire)
    }

    /// Marks every front stale. Called under the trie's write lock, after the change:
    /// writers are serialised by that lock, so a load and a store bump it (no
    /// read-modify-write), and the release store publishes the change with it.
    pub fn bump(&self) {
        let generation = &self.generation.0;
        generation.store(generation.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// This thread's table, unless it is in use further up this thread's stack.
    pub fn enter(&self) -> Option<Entered<'_, V>> {
        let front = self.fronts.get_or_default();
        if front.busy.replace(true) {
            return None;
        }
        Some(Entered { front })
    }

    /// This thread's table if it has one and it is free; never makes one.
    pub fn enter_existing(&self) -> Option<Entered<'_, V>> {
        let front = self.fronts.get()?;
        if front.busy.replace(true) {
            return None;
        }
        Some(Entered { front })
    }

    /// Hits served by every thread's front.
    pub fn hits(&self) -> u64 {
        self.fronts
            .iter()
            .map(|f| f.hits.load(Ordering::Relaxed))
            .sum()
    }
}

impl<V: Send + Sync> std::fmt::Debug for FrontCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontCache").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_every_byte_at_every_length() {
        for len in 0..=80 {
            let key: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let stored = Key::new(&key);
            assert!(stored.is(&key), "{len}");
            assert!(!stored.is(&format!("{key}x")), "{len}: longer");
            for at in 0..len {
                let mut other = key.clone().into_bytes();
                other[at] = b'.';
                let other = String::from_utf8(other).unwrap();
                assert!(!stored.is(&other), "{len}: byte {at}");
            }
        }
    }
}
