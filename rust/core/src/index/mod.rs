//! The subject index: nats-server's sublist for Rust values.
//!
//! A [`Trie`] behind a read-write lock (matches run in parallel), a [`MatchCache`] in
//! front of it shared by all threads, a [`FrontCache`] per thread in front of that, and
//! queue groups. Values are opaque: whatever `V` the caller stores comes
//! back in match results, which share the trie's value lists. A value is cloned only when
//! an insert or remove must copy a list that a result still holds.

mod cache;
mod counter;
mod front;
mod matched;
mod shard_lock;
mod trie;
mod values;

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

pub use cache::CacheStats;
use cache::{CachedResult, Lookup, MatchCache};
use counter::StripedCounter;
use front::{Entered, FrontCache};
pub use matched::{Matched, Values};
pub use trie::Handle;
use trie::Trie;

use crate::subject::{check, SubjectError, SubjectKind, MAX_SUBJECT_LENGTH};

/// The largest match cache an index accepts, in results.
pub const MAX_CACHE_SIZE: usize = 1 << 24;

/// Why an insert was refused; the index is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    Subject(SubjectError),
    Queue(QueueNameError),
}

/// A queue group name must be a non-empty string without whitespace or NUL, within the
/// subject length bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueNameError {
    Empty,
    TooLong,
    Whitespace,
    Nul,
}

impl fmt::Display for QueueNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty queue group name"),
            Self::TooLong => write!(f, "queue group name longer than {MAX_SUBJECT_LENGTH} bytes"),
            Self::Whitespace => f.write_str("queue group name contains whitespace"),
            Self::Nul => f.write_str("queue group name contains NUL"),
        }
    }
}

/// Checks a queue group name.
pub fn check_queue_name(name: &str) -> Result<(), QueueNameError> {
    if name.is_empty() {
        return Err(QueueNameError::Empty);
    }
    if name.len() > MAX_SUBJECT_LENGTH {
        return Err(QueueNameError::TooLong);
    }
    match check(name, SubjectKind::Subject) {
        Err(SubjectError::Whitespace) => Err(QueueNameError::Whitespace),
        Err(SubjectError::Nul) => Err(QueueNameError::Nul),
        _ => Ok(()),
    }
}

/// Counters and gauges of an index, as `stats()` reports them.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexStats {
    pub subscriptions: usize,
    pub nodes: usize,
    pub matches: u64,
    pub inserts: u64,
    pub removes: u64,
    pub cache_size: usize,
    pub cache: CacheStats,
}

/// Where [`SubjectIndex::find`] found a match's result.
enum Found<'a, V> {
    /// In this thread's front: lent in place, the front busy until the borrow ends.
    InFront(&'a Arc<Matched<V>>),
    /// In the shared cache or the trie, this thread's front no longer entered.
    BehindFront(Arc<Matched<V>>),
    /// From the trie with the cache off or thrashing, not yet shared (`None`: malformed).
    /// Lent, not moved: a lender then reads it where it lies instead of copying it.
    Uncached(&'a mut Option<Matched<V>>),
}

/// A thread-safe map from subject patterns to values, matched by subject.
pub struct SubjectIndex<V: Send + Sync> {
    trie: RwLock<Trie<V>>,
    cache: Option<MatchCache<V>>,
    /// Used only with `cache`: each thread's hot results, checked against the generation
    /// every change bumps.
    front: FrontCache<V>,
    /// Matches that did not consult the cache (it is off, or thrashing); the cache counts
    /// the others as hits and misses.
    uncached_matches: StripedCounter,
    empty: Arc<Matched<V>>,
}

/// What [`SubjectIndex::clear`] took out, for the caller to drop once it holds no lock.
#[must_use]
pub struct Cleared<V> {
    _trie: Trie<V>,
    _cached: Vec<CachedResult<V>>,
}

impl<V: Send + Sync> SubjectIndex<V> {
    /// Calls `visit` on every stored value, each once (what a garbage collector walks:
    /// a cached result only ever shares the lists the trie holds). Never waits: while a
    /// writer holds the index it visits nothing.
    pub fn try_visit_values<E>(&self, visit: impl FnMut(&V) -> Result<(), E>) -> Result<(), E> {
        let trie = match self.trie.try_read() {
            Ok(trie) => trie,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        let visited = trie.values().try_for_each(visit);
        visited
    }
}

impl<V: Clone + Send + Sync> fmt::Debug for SubjectIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectIndex")
            .field("len", &self.len())
            .field("cache_size", &self.cache_size())
            .finish()
    }
}

impl<V: Clone + Send + Sync> SubjectIndex<V> {
    /// An empty index whose cache holds up to `cache_size` results (0: no cache; at most
    /// [`MAX_CACHE_SIZE`], larger sizes are clamped).
    pub fn new(cache_size: usize) -> Self {
        let cache_size = cache_size.min(MAX_CACHE_SIZE);
        Self {
            trie: RwLock::default(),
            cache: MatchCache::new(cache_size),
            front: FrontCache::new(),
            uncached_matches: StripedCounter::default(),
            empty: Arc::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Trie<V>> {
        self.trie.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Trie<V>> {
        self.trie.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache's capacity in results (0 when off).
    pub fn cache_size(&self) -> usize {
        self.cache.as_ref().map_or(0, MatchCache::capacity)
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `value` under `pattern`, in queue group `queue` if given. A refused insert
    /// leaves the index as it was.
    pub fn insert(
        &self,
        pattern: &str,
        queue: Option<&str>,
        value: V,
    ) -> Result<Handle, InsertError> {
        check(pattern, SubjectKind::Pattern).map_err(InsertError::Subject)?;
        if let Some(name) = queue {
            check_queue_name(name).map_err(InsertError::Queue)?;
        }
        let literal = check(pattern, SubjectKind::Literal).is_ok();
        self.clear_own_front();
        let mut trie = self.write();
        self.invalidate(pattern, literal);
        let (handle, replaced) = trie.insert_checked(pattern, queue, value);
        self.bump_generation();
        drop(trie);
        drop(replaced);
        Ok(handle)
    }

    /// Removes every entry (the counters stay, each entry counted as removed).
    pub fn clear(&self) -> Cleared<V> {
        self.clear_own_front();
        let mut trie = self.write();
        let cached = self
            .cache
            .as_ref()
            .map(MatchCache::clear)
            .unwrap_or_default();
        let taken = trie.take_all();
        self.bump_generation();
        drop(trie);
        Cleared {
            _trie: taken,
            _cached: cached,
        }
    }

    /// Removes the entry `handle` names and returns its value; `None` if there is none.
    ///
    /// The value is handed back rather than dropped here, so its destructor runs after
    /// the lock is released.
    pub fn remove(&self, handle: Handle) -> Option<V> {
        self.clear_own_front();
        let mut trie = self.write();
        if self.cache.is_some() {
            let (pattern, literal) = trie.pattern_of(handle)?;
            self.invalidate(&pattern, literal);
        }
        let (value, replaced) = trie.remove(handle)?;
        self.bump_generation();
        drop(trie);
        drop(replaced);
        Some(value)
    }

    /// Drops every cached result a change to `pattern` will make stale. A literal pattern
    /// matches one subject only; a wildcard may match any, so it clears the cache. Done
    /// just before the change, so that value lists only the cache held change in place
    /// instead of being copied.
    ///
    /// Called with the write lock held, yet it drops no value: the cache never holds a
    /// stale result, so every list a cached result holds is also held by the trie.
    fn invalidate(&self, pattern: &str, literal: bool) {
        let Some(cache) = &self.cache else {
            return;
        };
        if literal {
            drop(cache.forget(pattern));
        } else {
            drop(cache.clear());
        }
    }

    /// Marks every thread's front stale; called under the write lock, after a change.
    fn bump_generation(&self) {
        if self.cache.is_some() {
            self.front.bump();
        }
    }

    /// Empties this thread's front before a change, which makes its results stale: the
    /// values only they hold go now, not when this thread next matches, and the lists
    /// the change touches are not copied for their sake. Done before the write lock is
    /// taken, as a stale result may hold the last reference to a value.
    fn clear_own_front(&self) {
        if self.cache.is_none() {
            return;
        }
        if let Some(mut front) = self.front.enter_existing() {
            let retired = front.clear();
            drop(front);
            drop(retired);
        }
    }

    /// The values of every entry matching `subject`, its tokens taken literally. A
    /// subject that is not well-formed matches nothing.
    ///
    /// The result is shared: handing it out costs an atomic increment, and the caller's
    /// drop a decrement; [`match_with`](Self::match_with) lends it instead.
    pub fn matches(&self, subject: &str) -> Arc<Matched<V>> {
        self.find(subject, |found| match found {
            Found::InFront(result) => result.clone(),
            Found::BehindFront(result) => result,
            Found::Uncached(matched) => self.shared(matched.take()),
        })
    }

    /// Calls `read` with the values of every entry matching `subject` (as
    /// [`matches`](Self::matches) finds them) and returns what it returns.
    ///
    /// A result this thread matched recently is lent in place: no lock, no reference
    /// count. `read` may match on this index again, or change it; the result it was
    /// given stays as it was.
    pub fn match_with<R>(&self, subject: &str, read: impl FnOnce(&Matched<V>) -> R) -> R {
        self.find(subject, |found| match found {
            Found::InFront(result) => read(result),
            Found::BehindFront(result) => read(&result),
            Found::Uncached(matched) => read(matched.as_ref().unwrap_or(&self.empty)),
        })
    }

    /// The lookup `matches` and `match_with` share: this thread's front, else the shared
    /// cache or the trie. `take` gets the result where it was found, each caller choosing
    /// whether to share it or lend it. Inlined into both, so that `take`'s `match` folds
    /// away at each of its three calls and a front hit costs what a hand-written one did.
    #[inline(always)]
    fn find<R>(&self, subject: &str, take: impl FnOnce(Found<'_, V>) -> R) -> R {
        let Some(cache) = self.cache.as_ref().filter(|c| c.worth_a_lookup()) else {
            self.uncached_matches.add(1);
            // Bound first, so the read lock is released before `take` runs.
            let mut found = self.read().collect(subject);
            return take(Found::Uncached(&mut found));
        };
        let hash = cache.hash(subject);
        let generation = self.front.generation();
        let front = self.front.enter();
        if let Some(front) = &front {
            if let Some(found) = front.find(generation, hash, subject) {
                front.count_hit();
                return take(Found::InFront(found));
            }
        }
        take(Found::BehindFront(
            self.match_behind_front(cache, hash, generation, subject, front),
        ))
    }

    /// A match this thread's front did not serve: the shared cache, else the trie. The
    /// result is kept in the front (when `front` is this thread's table) if the shared
    /// cache holds it. While the cache is thrashing neither is consulted.
    fn match_behind_front(
        &self,
        cache: &MatchCache<V>,
        hash: u64,
        generation: u64,
        subject: &str,
        front: Option<Entered<'_, V>>,
    ) -> Arc<Matched<V>> {
        let (result, retired) = match cache.lookup(hash, subject) {
            Lookup::Hit(result) => (result, None),
            Lookup::Miss { admit } => {
                let trie = self.read();
                // A malformed subject is never cached: it matches nothing, and costs a walk.
                let Some(found) = trie.collect(subject) else {
                    return self.empty.clone();
                };
                let result = self.shared(Some(found));
                if !admit {
                    return result;
                }
                // Stored under the read lock: no change can slip in between computing
                // and storing.
                let retired = cache.store(hash, subject, result.clone());
                drop(trie);
                (result, retired)
            }
        };
        let displaced = front.map(|mut front| front.fill(generation, hash, subject, &result));
        drop(retired);
        drop(displaced);
        result
    }

    /// `matches` for many subjects, taking the read lock at most once.
    pub fn matches_many<'a>(
        &self,
        subjects: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Arc<Matched<V>>> {
        let subjects = subjects.into_iter();
        let mut out = Vec::with_capacity(subjects.size_hint().0);
        let mut trie = None;
        let mut retired = Vec::new();
        for subject in subjects {
            let (hash, admit) = match self.cache.as_ref().filter(|c| c.worth_a_lookup()) {
                None => {
                    self.uncached_matches.add(1);
                    (0, false)
                }
                Some(cache) => {
                    let hash = cache.hash(subject);
                    match cache.lookup(hash, subject) {
                        Lookup::Hit(result) => {
                            out.push(result);
                            continue;
                        }
                        Lookup::Miss { admit } => (hash, admit),
                    }
                }
            };
            let guard = trie.get_or_insert_with(|| self.read());
            let Some(found) = guard.collect(subject) else {
                out.push(self.empty.clone());
                continue;
            };
            let result = self.shared(Some(found));
            if let (true, Some(cache)) = (admit, &self.cache) {
                retired.extend(cache.store(hash, subject, result.clone()));
            }
            out.push(result);
        }
        drop(trie);
        drop(retired);
        out
    }

    /// A result to hand out: nothing found (or a malformed subject) shares one empty
    /// result.
    fn shared(&self, matched: Option<Matched<V>>) -> Arc<Matched<V>> {
        match matched {
            Some(matched) if !matched.is_empty() => Arc::new(matched),
            _ => self.empty.clone(),
        }
    }

    /// Whether any entry matches `subject`.
    pub fn has_interest(&self, subject: &str) -> bool {
        if let Some(found) = self.peek(subject, |m| !m.is_empty()) {
            return found;
        }
        self.read().has_interest(subject)
    }

    /// How many entries match `subject`, counting every overlapping pattern.
    pub fn count(&self, subject: &str) -> usize {
        if let Some(found) = self.peek(subject, Matched::len) {
            return found;
        }
        self.read().count(subject)
    }

    /// Reads a cached result in place (no `Arc` clone: the answer does not escape),
    /// from this thread's front if it has it, else from the shared cache. Not counted as
    /// a match, and caches nothing.
    fn peek<R>(&self, subject: &str, read: impl FnOnce(&Matched<V>) -> R) -> Option<R> {
        let cache = self.cache.as_ref()?;
        let hash = cache.hash(subject);
        let generation = self.front.generation();
        if let Some(front) = self.front.enter_existing() {
            if let Some(found) = front.find(generation, hash, subject) {
                return Some(read(found));
            }
        }
        cache.peek(hash, subject, read)
    }

    pub fn stats(&self) -> IndexStats {
        let (subscriptions, nodes, inserts, removes) = {
            let trie = self.read();
            (trie.len(), trie.node_count(), trie.inserts, trie.removes)
        };
        let mut cache = self
            .cache
            .as_ref()
            .map(MatchCache::stats)
            .unwrap_or_default();
        cache.hits += self.front.hits();
        IndexStats {
            subscriptions,
            nodes,
            matches: cache.hits + cache.misses + self.uncached_matches.get(),
            inserts,
            removes,
            cache_size: self.cache_size(),
            cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(m: &Matched<u32>) -> Vec<u32> {
        let mut v: Vec<u32> = m.plain().copied().collect();
        for (_, members) in m.queues() {
            v.extend(members);
        }
        v.sort_unstable();
        v
    }

    #[test]
    fn visits_every_value_once_and_clears() {
        let idx = SubjectIndex::new(16);
        idx.insert("a.b", None, 1).unwrap();
        idx.insert("a.*", None, 2).unwrap();
        idx.insert("a.>", Some("q"), 3).unwrap();
        idx.insert("a.>", Some("q"), 4).unwrap();
        let gone = idx.insert("x", None, 5).unwrap();
        idx.remove(gone);
        // Cached results share the trie's lists: still one visit a value.
        assert_eq!(values(&idx.matches("a.b")), vec![1, 2, 3, 4]);
        let mut seen = Vec::new();
        idx.try_visit_values(|v| {
            seen.push(*v);
            Ok::<(), ()>(())
        })
        .unwrap();
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2, 3, 4]);

        drop(idx.clear());
        assert!(idx.is_empty());
        assert!(idx.matches("a.b").is_empty());
        let stats = idx.stats();
        assert_eq!((stats.inserts, stats.removes), (5, 5));
        idx.try_visit_values(|_| Err(())).unwrap();
    }

    #[test]
    fn refused_insert_changes_nothing() {
        let idx = SubjectIndex::new(16);
        idx.insert("a.b", None, 1).unwrap();
        assert_eq!(
            idx.insert("a.>.b", None, 2),
            Err(InsertError::Subject(SubjectError::FullWildcardNotLast))
        );
        assert_eq!(
            idx.insert("a.c", Some(" "), 2),
            Err(InsertError::Queue(QueueNameError::Whitespace))
        );
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.stats().nodes, 3);
    }

    #[test]
    fn cache_follows_every_change() {
        for cache_size in [0, 1, 64, 1024] {
            let idx = SubjectIndex::new(cache_size);
            let seen = |s: &str| {
                // Twice, so the doorkeeper admits it and the second read may be a hit.
                let first = values(&idx.matches(s));
                assert_eq!(first, values(&idx.matches(s)));
                first
            };
            assert_eq!(seen("a.b"), Vec::<u32>::new());
            let lit = idx.insert("a.b", None, 1).unwrap();
            assert_eq!(seen("a.b"), vec![1]);
            let wild = idx.insert("a.*", None, 2).unwrap();
            assert_eq!(seen("a.b"), vec![1, 2]);
            let q = idx.insert("a.>", Some("g"), 3).unwrap();
            assert_eq!(seen("a.b"), vec![1, 2, 3]);
            assert_eq!(idx.count("a.b"), 3);
            idx.remove(wild);
            assert_eq!(seen("a.b"), vec![1, 3]);
            idx.remove(lit);
            assert_eq!(seen("a.b"), vec![3]);
            idx.remove(q);
            assert_eq!(seen("a.b"), Vec::<u32>::new());
            assert!(!idx.has_interest("a.b"));
        }
    }

    #[test]
    fn malformed_subjects_match_nothing_however_far_the_walk_gets() {
        let long = "a".repeat(MAX_SUBJECT_LENGTH + 1);
        let deep = vec!["a"; crate::subject::MAX_TOKENS + 1].join(".");
        let samples = [
            "a", "a.b", "a.b.c", "a..b", "a.b.", ".a", "a b.c", "a.b c", "a.b.c\0", "a.>.b", "x.y",
            "x..y", "x.y z", "", &long, &deep,
        ];
        for cache_size in [0, 64] {
            let idx = SubjectIndex::new(cache_size);
            for pattern in [">", "a.>", "a.*.>", "*.b", "a.b.c", "x"] {
                idx.insert(pattern, None, 0u32).unwrap();
            }
            for subject in samples {
                let well_formed = check(subject, SubjectKind::Subject).is_ok();
                for _ in 0..3 {
                    // `>` matches every well-formed subject.
                    assert_eq!(!idx.matches(subject).is_empty(), well_formed, "{subject:?}");
                    assert_eq!(idx.has_interest(subject), well_formed, "{subject:?}");
                    assert_eq!(idx.count(subject) > 0, well_formed, "{subject:?}");
                }
                assert_eq!(
                    idx.matches_many([subject])[0].is_empty(),
                    !well_formed,
                    "{subject:?}"
                );
            }
        }
    }

    #[test]
    fn many_equals_one_by_one() {
        let idx = SubjectIndex::new(64);
        idx.insert("x.*", None, 1).unwrap();
        idx.insert("x.y", Some("q"), 2).unwrap();
        let subjects = ["x.y", "x.z", "x..y", "x.y", "nothing", "x.y"];
        let many: Vec<_> = idx
            .matches_many(subjects)
            .iter()
            .map(|m| values(m))
            .collect();
        let one: Vec<_> = subjects.iter().map(|s| values(&idx.matches(s))).collect();
        assert_eq!(many, one);
        assert_eq!(idx.stats().matches, 12);
    }

    #[test]
    fn parallel_readers_and_writers() {
        let idx = Arc::new(SubjectIndex::new(128));
        let stable = idx.insert("stable.>", None, u32::MAX).unwrap();
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let idx = idx.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000u32 {
                        let subject = format!("stable.{t}.{}", i % 7);
                        let h = idx.insert(&subject, None, t * 10_000 + i).unwrap();
                        let got = values(&idx.matches(&subject));
                        assert!(got.contains(&(t * 10_000 + i)) && got.contains(&u32::MAX));
                        assert_eq!(idx.remove(h), Some(t * 10_000 + i));
                        assert!(!values(&idx.matches(&subject)).contains(&(t * 10_000 + i)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(idx.len(), 1);
        idx.remove(stable);
        assert_eq!(idx.stats().nodes, 1);
    }

    /// A value that counts its clones: a clone means a value list was copied.
    #[derive(Debug)]
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Self(self.0.clone())
        }
    }

    #[test]
    fn lists_are_copied_only_for_results_still_held() {
        let clones = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let copies = || clones.load(std::sync::atomic::Ordering::Relaxed);
        let idx = SubjectIndex::new(64);
        for _ in 0..100 {
            idx.insert("a.b", None, Counted(clones.clone())).unwrap();
        }
        // Cached (second miss admits it) and dropped by the caller: only the cache holds
        // the result, and the insert that makes it stale changes the list in place.
        drop((idx.matches("a.b"), idx.matches("a.b")));
        assert_eq!(idx.stats().cache.entries, 1);
        let h = idx.insert("a.b", None, Counted(clones.clone())).unwrap();
        assert_eq!(copies(), 0);
        assert_eq!(idx.matches("a.b").len(), 101);
        // A result the caller holds is copied once, then changes are in place again.
        let held = idx.matches("a.b");
        idx.remove(h);
        assert_eq!(
            copies(),
            100 + 1,
            "the list less one value, and the value returned"
        );
        idx.insert("a.*", None, Counted(clones.clone())).unwrap();
        idx.insert("a.b", None, Counted(clones.clone())).unwrap();
        assert_eq!(copies(), 101);
        assert_eq!(held.len(), 101);
        assert_eq!(idx.matches("a.b").len(), 102);
    }

    #[test]
    fn no_reader_is_served_a_result_older_than_a_write_that_returned() {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        // The writer publishes each insert and remove only after it returned; a reader
        // that saw a publication and then matches must see its effect, though it matches
        // the same subject over and over (served by its own thread's front cache).
        let idx = Arc::new(SubjectIndex::new(64));
        let inserted = Arc::new(AtomicU32::new(0));
        let removed_below = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let first = idx.insert("t.x", None, 0u32).unwrap();
        let readers: Vec<_> = (0..3)
            .map(|reader| {
                let (idx, inserted, removed_below, done) = (
                    idx.clone(),
                    inserted.clone(),
                    removed_below.clone(),
                    done.clone(),
                );
                std::thread::spawn(move || {
                    let mut hits = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let gone = removed_below.load(Ordering::Acquire);
                        let newest = inserted.load(Ordering::Acquire);
                        let check = |found: &[u32]| {
                            assert!(found.iter().all(|&v| v >= gone), "{found:?} < {gone}");
                            assert!(found.iter().any(|&v| v >= newest), "{found:?} {newest}");
                        };
                        match reader {
                            0 => idx.match_with("t.x", |m| check(&values(m))),
                            1 => check(&values(&idx.matches("t.x"))),
                            _ => {
                                let n = idx.count("t.x");
                                assert!((1..=2).contains(&n), "{n}");
                                check(&values(&idx.matches_many(["t.x"])[0]));
                            }
                        }
                        hits += 1;
                    }
                    hits
                })
            })
            .collect();
        let mut previous = first;
        for value in 1..20_000u32 {
            let handle = idx.insert("t.x", None, value).unwrap();
            inserted.store(value, Ordering::Release);
            assert_eq!(idx.remove(previous), Some(value - 1));
            removed_below.store(value, Ordering::Release);
            previous = handle;
            if value % 64 == 0 {
                // Let the readers refill their fronts between changes.
                std::thread::yield_now();
            }
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
        let stats = idx.stats();
        assert!(stats.cache.hits > 0, "the readers were served by a cache");
    }

    #[test]
    fn a_removed_value_is_released_though_this_thread_cached_it() {
        let value = Arc::new(());
        let idx = SubjectIndex::new(64);
        let h = idx.insert("a.b", None, value.clone()).unwrap();
        for _ in 0..3 {
            assert_eq!(idx.matches("a.b").len(), 1);
            assert_eq!(idx.match_with("a.b", Matched::len), 1);
        }
        assert!(
            idx.stats().cache.hits >= 4,
            "served from this thread's front"
        );
        drop(idx.remove(h));
        assert_eq!(Arc::strong_count(&value), 1);
    }

    #[test]
    fn a_lent_result_stays_as_it_was_while_its_reader_changes_the_index() {
        let idx = SubjectIndex::new(64);
        idx.insert("a.b", None, 1u32).unwrap();
        for _ in 0..3 {
            idx.matches("a.b");
        }
        let (lent, seen_inside) = idx.match_with("a.b", |m| {
            let h = idx.insert("a.*", None, 2).unwrap();
            let inside = values(&idx.matches("a.b"));
            idx.match_with("a.b", |again| assert_eq!(values(again), inside));
            assert_eq!(idx.count("a.b"), 2);
            idx.remove(h);
            (values(m), inside)
        });
        assert_eq!((lent, seen_inside), (vec![1], vec![1, 2]));
        assert_eq!(values(&idx.matches("a.b")), vec![1]);
        assert_eq!(idx.match_with("a.b", values), vec![1]);
    }

    #[test]
    fn readers_see_whole_snapshots_while_a_writer_changes_the_lists() {
        // No GIL here: readers clone and drop the lists' holders while the writer
        // changes them in place or copies them, on every interleaving the threads find.
        for cache_size in [0, 64] {
            let idx = Arc::new(SubjectIndex::new(cache_size));
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let started = Arc::new(std::sync::Barrier::new(4));
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    let (idx, done, started) = (idx.clone(), done.clone(), started.clone());
                    std::thread::spawn(move || {
                        started.wait();
                        while !done.load(std::sync::atomic::Ordering::Relaxed) {
                            for m in idx.matches_many(["f.o", "f.o"]) {
                                let plain: Vec<u32> = m.plain().copied().collect();
                                let queued: Vec<u32> =
                                    m.queues().flat_map(|(_, v)| v.copied()).collect();
                                assert!(plain.windows(2).all(|w| w[0] < w[1]), "{plain:?}");
                                assert!(queued.windows(2).all(|w| w[0] < w[1]));
                                assert_eq!(m.len(), plain.len() + queued.len());
                            }
                        }
                    })
                })
                .collect();
            let mut live = std::collections::VecDeque::new();
            started.wait();
            for value in 0..20_000u32 {
                let queue = (value % 3 == 0).then_some("g");
                live.push_back(idx.insert("f.o", queue, value).unwrap());
                if live.len() > 200 {
                    // Oldest first, and now and then one from the middle.
                    let at = if value % 7 == 0 { live.len() / 2 } else { 0 };
                    let handle = live.remove(at).unwrap();
                    assert!(idx.remove(handle).is_some());
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            for reader in readers {
                reader.join().unwrap();
            }
            assert_eq!(idx.matches("f.o").len(), 200);
        }
    }
}
