//! The match cache: subject -> shared match result, bounded, sharded, and guarded by a
//! doorkeeper so that floods of unique subjects cost almost nothing.
//!
//! nats-server fills its cache on every miss and sweeps it when full; with millions of
//! unique subjects the sweep dominates (nats-server issues 4341, 8070). Here a subject is
//! admitted only on its second miss within a window (a two-bit Bloom filter per shard,
//! reset when an eighth full), eviction is FIFO in O(1), and nothing ever scans the cache
//! on the match path. When every lookup misses for a long stretch the cache is thrashing,
//! and only a sample of matches consults it until one hits again: a flood of unique
//! subjects then costs about what it costs with no cache at all.
//!
//! Correctness: results are computed and stored while the trie's read lock is held, and
//! every trie change invalidates under the write lock, so a stored result is never older
//! than the last change.
//!
//! A hit is what this cache is for, so its path is kept short: the subject is hashed once
//! (shard, doorkeeper and probe share the hash), the shard's lock is a [`ShardLock`] (one
//! atomic exchange to take, a plain store to give back, where a `Mutex` pays two atomic
//! read-modify-writes), and `count`/`has_interest` read the result in place rather than
//! cloning its `Arc`.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::matched::Matched;
use super::shard_lock::{ShardGuard, ShardLock};

/// Shards split lock traffic between threads; each keeps at least this many entries.
const MIN_SHARD_CAPACITY: usize = 64;
const MAX_SHARDS: usize = 16;
const PREALLOCATED_PER_SHARD: usize = 1024;
/// Misses in a row, per cached entry, after which the cache counts as thrashing.
const THRASH_MISSES_PER_ENTRY: usize = 4;
/// While thrashing, one match in this many still consults the cache.
const THRASH_SAMPLE: usize = 32;

/// A cached result, or one evicted from the cache, to be dropped by the caller once it
/// holds no lock (dropping a value may run arbitrary code, e.g. a Python finaliser).
#[derive(Debug)]
pub struct CachedResult<V> {
    hash: u64,
    key: Box<str>,
    result: Arc<Matched<V>>,
}

/// What a lookup found.
pub enum Lookup<V> {
    Hit(Arc<Matched<V>>),
    /// `admit` says whether the result, once computed, should be stored.
    Miss {
        admit: bool,
    },
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub max_fanout: usize,
    pub avg_fanout: f64,
}

/// Admits a key on its second sighting within a window: two bits per key in a bitmap of
/// eight bits per cached entry, cleared once an eighth of its bits have been marked (so a
/// fresh key is wrongly admitted at most about 5% of the time).
#[derive(Debug)]
struct Doorkeeper {
    bits: Box<[u64]>,
    marked: usize,
}

impl Doorkeeper {
    fn new(capacity: usize) -> Self {
        let words = (capacity * 8).div_ceil(64).next_power_of_two();
        Self {
            bits: vec![0; words].into_boxed_slice(),
            marked: 0,
        }
    }

    fn admit(&mut self, hash: u64) -> bool {
        let mask = self.bits.len() * 64 - 1;
        // Low bits and bits 20.. of the hash: the shard uses bits 48.., hashbrown 57...
        let (a, b) = (hash as usize & mask, (hash >> 20) as usize & mask);
        let bit = |i: usize| self.bits[i / 64] & (1 << (i % 64)) != 0;
        if bit(a) && bit(b) {
            return true;
        }
        self.bits[a / 64] |= 1 << (a % 64);
        self.bits[b / 64] |= 1 << (b % 64);
        self.marked += 1;
        if self.marked * 8 > self.bits.len() * 64 {
            self.bits.fill(0);
            self.marked = 0;
        }
        false
    }
}

#[derive(Debug)]
struct Shard<V> {
    /// Positions in `slots`, hashed by the stored hash of the key.
    index: HashTable<u32>,
    slots: Vec<CachedResult<V>>,
    /// Next slot to evict once full: FIFO order.
    hand: usize,
    capacity: usize,
    door: Doorkeeper,
    hits: u64,
    misses: u64,
}

impl<V> Shard<V> {
    fn find(&self, hash: u64, key: &str) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                let s = &slots[i as usize];
                s.hash == hash && &*s.key == key
            })
            .map(|&i| i as usize)
    }

    fn unindex(&mut self, hash: u64, at: usize) {
        if let Ok(found) = self.index.find_entry(hash, |&i| i as usize == at) {
            found.remove();
        }
    }

    fn reindex(&mut self, hash: u64, from: usize, to: usize) {
        if let Some(i) = self.index.find_mut(hash, |&i| i as usize == from) {
            *i = to as u32;
        }
    }

    fn push_index(&mut self, hash: u64, at: usize) {
        let slots = &self.slots;
        self.index
            .insert_unique(hash, at as u32, |&i| slots[i as usize].hash);
    }
}

/// The bounded, sharded match cache.
#[derive(Debug)]
pub struct MatchCache<V> {
    shards: Box<[ShardLock<Shard<V>>]>,
    shard_mask: usize,
    capacity: usize,
    hasher: RandomState,
    /// Entries over all shards: lets a change skip invalidation when the cache is empty.
    entries: AtomicUsize,
    /// Lookups that missed in a row, over all threads, saturating at `thrash_after`.
    /// Written only while it changes, so a steady stream of hits never bounces its line.
    miss_streak: AtomicUsize,
    thrash_after: usize,
}

/// A per-thread tick for sampling, so sampling shares no cache line between threads.
fn thread_tick() -> usize {
    thread_local! {
        static TICK: Cell<usize> = const { Cell::new(0) };
    }
    TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n
    })
}

impl<V> MatchCache<V> {
    /// A cache of at most `capacity` results; `None` for a capacity of 0.
    pub fn new(capacity: usize) -> Option<Self> {
        if capacity == 0 {
            return None;
        }
        let shards = (capacity / MIN_SHARD_CAPACITY).clamp(1, MAX_SHARDS);
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        let per_shard = capacity / shards;
        let shard_count = shards;
        let shards: Box<[_]> = (0..shard_count)
            .map(|_| {
                ShardLock::new(Shard {
                    // Large caches grow as they fill rather than reserving it all up front.
                    index: HashTable::with_capacity(per_shard.min(PREALLOCATED_PER_SHARD)),
                    slots: Vec::with_capacity(per_shard.min(PREALLOCATED_PER_SHARD)),
                    hand: 0,
                    capacity: per_shard,
                    door: Doorkeeper::new(per_shard),
                    hits: 0,
                    misses: 0,
                })
            })
            .collect();
        Some(Self {
            shard_mask: shards.len() - 1,
            shards,
            capacity: per_shard * shard_count,
            hasher: RandomState::default(),
            entries: AtomicUsize::new(0),
            miss_streak: AtomicUsize::new(0),
            thrash_after: (per_shard * shard_count * THRASH_MISSES_PER_ENTRY).max(1024),
        })
    }

    /// Whether this match should consult the cache: always, unless it is thrashing.
    pub fn worth_a_lookup(&self) -> bool {
        self.miss_streak.load(Ordering::Relaxed) < self.thrash_after
            || thread_tick() % THRASH_SAMPLE == 0
    }

    /// Results it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The key's bytes alone: one key per hash, so the end marker `str`'s `Hash` adds
    /// (which keeps a sequence of strings apart) would only cost a round of mixing.
    pub fn hash(&self, key: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key.as_bytes());
        hasher.finish()
    }

    fn shard(&self, hash: u64) -> ShardGuard<'_, Shard<V>> {
        self.shards[(hash >> 48) as usize & self.shard_mask].lock()
    }

    /// Looks `key` up, counting a hit or a miss; a miss asks the doorkeeper.
    pub fn lookup(&self, hash: u64, key: &str) -> Lookup<V> {
        let mut shard = self.shard(hash);
        if let Some(at) = shard.find(hash, key) {
            shard.hits += 1;
            if self.miss_streak.load(Ordering::Relaxed) != 0 {
                self.miss_streak.store(0, Ordering::Relaxed);
            }
            return Lookup::Hit(shard.slots[at].result.clone());
        }
        shard.misses += 1;
        let streak = self.miss_streak.load(Ordering::Relaxed);
        if streak < self.thrash_after {
            // A racy increment is fine: this is a heuristic, never a correctness matter.
            self.miss_streak.store(streak + 1, Ordering::Relaxed);
        }
        Lookup::Miss {
            admit: shard.door.admit(hash),
        }
    }

    /// Reads the cached result for `key` in place, without counting or admitting
    /// anything: `read` runs under the shard's lock, so it must be short and drop nothing.
    pub fn peek<R>(&self, hash: u64, key: &str, read: impl FnOnce(&Matched<V>) -> R) -> Option<R> {
        let shard = self.shard(hash);
        shard
            .find(hash, key)
            .map(|at| read(&shard.slots[at].result))
    }

    /// Stores a result computed under the trie's read lock; returns what it displaced.
    pub fn store(&self, hash: u64, key: &str, result: Arc<Matched<V>>) -> Option<CachedResult<V>> {
        let mut shard = self.shard(hash);
        if let Some(at) = shard.find(hash, key) {
            // Another thread stored it meanwhile; both results come from the same trie state.
            let old = mem::replace(&mut shard.slots[at].result, result);
            return Some(CachedResult {
                hash,
                key: key.into(),
                result: old,
            });
        }
        let new = CachedResult {
            hash,
            key: key.into(),
            result,
        };
        if shard.slots.len() < shard.capacity {
            let at = shard.slots.len();
            shard.slots.push(new);
            shard.push_index(hash, at);
            self.entries.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let at = shard.hand;
        shard.hand = (at + 1) % shard.capacity;
        let old_hash = shard.slots[at].hash;
        shard.unindex(old_hash, at);
        let old = mem::replace(&mut shard.slots[at], new);
        shard.push_index(hash, at);
        Some(old)
    }

    /// Drops the result for one subject (a literal pattern changed).
    pub fn forget(&self, key: &str) -> Option<CachedResult<V>> {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let hash = self.hash(key);
        let mut shard = self.shard(hash);
        let at = shard.find(hash, key)?;
        shard.unindex(hash, at);
        let old = shard.slots.swap_remove(at);
        if at < shard.slots.len() {
            let moved = shard.slots[at].hash;
            let from = shard.slots.len();
            shard.reindex(moved, from, at);
        }
        if shard.hand >= shard.slots.len() {
            shard.hand = 0;
        }
        self.entries.fetch_sub(1, Ordering::Relaxed);
        Some(old)
    }

    /// Drops every result (a wildcard pattern changed); returns them for the caller to drop.
    pub fn clear(&self) -> Vec<CachedResult<V>> {
        let mut retired = Vec::new();
        if self.entries.load(Ordering::Relaxed) == 0 {
            return retired;
        }
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.index.clear();
            shard.hand = 0;
            self.entries.fetch_sub(shard.slots.len(), Ordering::Relaxed);
            retired.append(&mut shard.slots);
        }
        retired
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        let mut fanout = 0usize;
        for shard in self.shards.iter() {
            let shard = shard.lock();
            stats.hits += shard.hits;
            stats.misses += shard.misses;
            stats.entries += shard.slots.len();
            for s in &shard.slots {
                let n = s.result.len();
                fanout += n;
                stats.max_fanout = stats.max_fanout.max(n);
            }
        }
        if stats.entries > 0 {
            stats.avg_fanout = fanout as f64 / stats.entries as f64;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::super::values::ValueList;
    use super::*;

    fn result(v: u32) -> Arc<Matched<u32>> {
        Arc::new(Matched {
            plain: smallvec::smallvec![ValueList::single(0, v)],
            queues: Vec::new(),
        })
    }

    fn hit(c: &MatchCache<u32>, key: &str) -> Option<u32> {
        c.peek(c.hash(key), key, |r| r.plain().next().copied())
            .flatten()
    }

    #[test]
    fn zero_capacity_means_no_cache() {
        assert!(MatchCache::<u32>::new(0).is_none());
    }

    #[test]
    fn admits_on_second_miss() {
        let c = MatchCache::new(128).unwrap();
        let h = c.hash("a.b");
        assert!(matches!(c.lookup(h, "a.b"), Lookup::Miss { admit: false }));
        assert!(matches!(c.lookup(h, "a.b"), Lookup::Miss { admit: true }));
        c.store(h, "a.b", result(1));
        assert!(matches!(c.lookup(h, "a.b"), Lookup::Hit(_)));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 2, 1));
    }

    #[test]
    fn stays_bounded_and_evicts_oldest_first() {
        let c = MatchCache::new(64).unwrap();
        assert_eq!(c.capacity(), 64);
        for i in 0..1000u32 {
            let key = format!("k.{i}");
            c.store(c.hash(&key), &key, result(i));
        }
        assert_eq!(c.stats().entries, 64);
        assert_eq!(hit(&c, "k.999"), Some(999));
        assert_eq!(hit(&c, "k.0"), None);
    }

    #[test]
    fn forget_and_clear() {
        // Few keys for the capacity, so no shard overflows and evicts.
        let c = MatchCache::new(1024).unwrap();
        for i in 0..100u32 {
            let key = format!("k.{i}");
            c.store(c.hash(&key), &key, result(i));
        }
        assert!(c.forget("k.7").is_some());
        assert!(c.forget("k.7").is_none());
        assert_eq!(hit(&c, "k.7"), None);
        for i in (0..100u32).filter(|&i| i != 7) {
            assert_eq!(
                hit(&c, &format!("k.{i}")),
                Some(i),
                "k.{i} survives a forget"
            );
        }
        assert_eq!(c.clear().len(), 99);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(hit(&c, "k.8"), None);
    }

    #[test]
    fn unique_flood_is_mostly_refused() {
        let c = MatchCache::<u32>::new(1024).unwrap();
        let admitted = (0..100_000)
            .filter(|i| {
                let key = format!("u.{i}");
                matches!(c.lookup(c.hash(&key), &key), Lookup::Miss { admit: true })
            })
            .count();
        assert!(
            admitted < 5_000,
            "admitted {admitted} of 100000 unique subjects"
        );
    }

    #[test]
    fn thrashing_samples_lookups_until_a_hit() {
        let c = MatchCache::<u32>::new(64).unwrap();
        c.store(c.hash("hot"), "hot", result(1));
        for i in 0..2_000 {
            let key = format!("u.{i}");
            c.lookup(c.hash(&key), &key);
        }
        let consulted = (0..3_200).filter(|_| c.worth_a_lookup()).count();
        assert_eq!(consulted, 100, "one in {THRASH_SAMPLE} while thrashing");
        assert!(matches!(c.lookup(c.hash("hot"), "hot"), Lookup::Hit(_)));
        assert!(
            (0..10).all(|_| c.worth_a_lookup()),
            "a hit ends the thrashing"
        );
    }
}
