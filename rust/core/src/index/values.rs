//! The values of one trie node's plain entries, or of one queue group's members, in
//! insertion order: one allocation shared copy-on-write by the trie and every match result
//! that includes it.
//!
//! A match takes one reference to each matched list instead of one per matched value, so
//! a subject matching 1,000 entries costs one atomic increment, not 1,000 (and as many
//! decrements when the result is dropped). The trie changes a list in place when it is
//! the only holder and copies it when a result still holds it, so results never change.
//!
//! One allocation holds a header, the positions (`Option<V>`, `None` where an entry was
//! removed) and, per position, the id of the entry whose value it is, so that compacting
//! can tell the trie where each entry moved. Most lists hold one value (one entry per
//! pattern), so a list of one has the short header: holders and capacity only, its one
//! position telling whether it holds a value (removing its value leaves no hole, as holes
//! at the end are trimmed). With 8-byte values it takes 20 bytes, one 32-byte heap chunk;
//! with the counts of longer lists in its header it would take 28 bytes, a 48-byte chunk,
//! and 16 bytes more for every entry of an index of distinct patterns.

use std::alloc::{self, Layout};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::{self, AtomicU32, Ordering};

/// Holders beyond this abort, as `Arc` does near `isize::MAX`: a count that wrapped would
/// free a list still in use.
const MAX_HOLDERS: u32 = i32::MAX as u32;

struct Header {
    /// The trie and every match result that includes this list.
    holders: AtomicU32,
    capacity: u32,
}

/// Past the header of a list with room for more than one value.
struct Counts {
    /// Positions in use (values and the holes removals left); those past it are
    /// uninitialised.
    end: u32,
    /// Values present.
    live: u32,
}

/// An ordered list of values shared copy-on-write: see the module documentation.
pub struct ValueList<V> {
    header: NonNull<Header>,
    owns: PhantomData<V>,
}

// SAFETY: a list is shared like an `Arc<[V]>`: values are reached through `&self` from
// many threads, and the last holder, on any thread, drops them.
unsafe impl<V: Send + Sync> Send for ValueList<V> {}
// SAFETY: as for `Send`; shared access only reads, and the holder count is atomic.
unsafe impl<V: Send + Sync> Sync for ValueList<V> {}

/// Where the parts of a list of `capacity` positions lie in its allocation.
struct Parts {
    layout: Layout,
    ids: usize,
}

impl Parts {
    /// Where the positions start: right after the header (and the counts, for a list of
    /// more than one), so the match path finds them without a layout computation.
    const fn values_at<V>(capacity: u32) -> usize {
        let header = if capacity == 1 {
            size_of::<Header>()
        } else {
            size_of::<Header>() + size_of::<Counts>()
        };
        header.next_multiple_of(align_of::<Option<V>>())
    }

    fn of<V>(capacity: u32) -> Self {
        const TOO_LARGE: &str = "value list overflows memory";
        let values = Layout::array::<Option<V>>(capacity as usize).expect(TOO_LARGE);
        let ids = Layout::array::<u32>(capacity as usize).expect(TOO_LARGE);
        let mut layout = Layout::new::<Header>();
        if capacity != 1 {
            layout = layout.extend(Layout::new::<Counts>()).expect(TOO_LARGE).0;
        }
        let (layout, values_at) = layout.extend(values).expect(TOO_LARGE);
        debug_assert_eq!(values_at, Self::values_at::<V>(capacity));
        let (layout, ids_at) = layout.extend(ids).expect(TOO_LARGE);
        Self {
            layout: layout.pad_to_align(),
            ids: ids_at,
        }
    }
}

impl<V> ValueList<V> {
    /// An empty list with room for `capacity` values.
    fn with_capacity(capacity: u32) -> Self {
        assert!(capacity > 0, "a value list has room for at least one value");
        let parts = Parts::of::<V>(capacity);
        // SAFETY: the layout is never zero-sized: it holds at least the header.
        let memory = unsafe { alloc::alloc(parts.layout) };
        let Some(header) = NonNull::new(memory.cast::<Header>()) else {
            alloc::handle_alloc_error(parts.layout)
        };
        // SAFETY: freshly allocated, aligned for the header (and counts), and large enough.
        unsafe {
            header.as_ptr().write(Header {
                holders: AtomicU32::new(1),
                capacity,
            });
        }
        let list = Self {
            header,
            owns: PhantomData,
        };
        if capacity == 1 {
            // SAFETY: position 0 is in the allocation; `None` says the list is empty.
            unsafe { list.values_ptr().write(None) };
        } else {
            // SAFETY: the counts follow the header in a list of more than one.
            unsafe { list.counts_ptr().write(Counts { end: 0, live: 0 }) };
        }
        list
    }

    /// A list holding just `value`, the value of entry `id`.
    pub fn single(id: u32, value: V) -> Self {
        let mut list = Self::with_capacity(1);
        list.append(id, Some(value));
        list
    }

    fn header(&self) -> &Header {
        // SAFETY: the header lives as long as any holder.
        unsafe { self.header.as_ref() }
    }

    fn capacity(&self) -> u32 {
        self.header().capacity
    }

    /// The counts of a list of more than one (never read or written for a list of one).
    fn counts_ptr(&self) -> *mut Counts {
        debug_assert!(self.capacity() != 1);
        // SAFETY: the counts follow the header in a list of more than one; the header's
        // size is a multiple of their alignment.
        unsafe { self.header.as_ptr().add(1).cast() }
    }

    fn values_ptr(&self) -> *mut Option<V> {
        // SAFETY: the positions' offset is inside this list's allocation.
        unsafe {
            self.header
                .as_ptr()
                .cast::<u8>()
                .add(Parts::values_at::<V>(self.capacity()))
                .cast()
        }
    }

    fn ids_ptr(&self) -> *mut u32 {
        let parts = Parts::of::<V>(self.capacity());
        // SAFETY: `ids` is an offset inside this list's allocation.
        unsafe { self.header.as_ptr().cast::<u8>().add(parts.ids).cast() }
    }

    /// Positions in use and values present. A list of one uses its position exactly
    /// when it holds a value (a hole at the end is trimmed at once).
    fn counts(&self) -> (u32, u32) {
        if self.capacity() == 1 {
            // SAFETY: a list of one always has its position initialised (`None` if empty).
            let present = u32::from(unsafe { (*self.values_ptr()).is_some() });
            return (present, present);
        }
        // SAFETY: a list of more than one has its counts initialised; a shared list never
        // changes, and only the sole holder writes them.
        let counts = unsafe { &*self.counts_ptr() };
        (counts.end, counts.live)
    }

    /// Sets the counts (the caller holds the list alone); a list of one keeps none.
    fn set_counts(&mut self, end: u32, live: u32) {
        debug_assert!(self.is_unique());
        if self.capacity() != 1 {
            // SAFETY: as for `counts`, and `&mut self` with one holder makes this unique.
            unsafe { self.counts_ptr().write(Counts { end, live }) };
        }
    }

    /// Values present.
    pub fn len(&self) -> usize {
        self.counts().1 as usize
    }

    /// Every position in use, in order: `None` where a value was removed.
    pub fn positions(&self) -> &[Option<V>] {
        // SAFETY: positions below `end` are initialised, and a shared list never changes.
        unsafe { slice::from_raw_parts(self.values_ptr(), self.counts().0 as usize) }
    }

    fn ids(&self) -> &[u32] {
        // SAFETY: as for `positions`.
        unsafe { slice::from_raw_parts(self.ids_ptr(), self.counts().0 as usize) }
    }

    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = &V> + '_ {
        self.positions().iter().flatten()
    }

    /// The ids of the entries whose values the list holds, in order.
    pub fn entry_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.positions()
            .iter()
            .zip(self.ids())
            .filter_map(|(value, &id)| value.as_ref().map(|_| id))
    }

    /// Whether nothing else holds this list, so it may change in place. The acquire
    /// load pairs with the release decrement of every holder that let go, so their reads
    /// happen before our writes; no new holder can appear, as only holders clone.
    fn is_unique(&self) -> bool {
        self.header().holders.load(Ordering::Acquire) == 1
    }

    /// Writes position `end` (the caller checked there is room and holds the list alone).
    fn append(&mut self, id: u32, value: Option<V>) {
        let (values, ids) = (self.values_ptr(), self.ids_ptr());
        let (end, live) = self.counts();
        assert!(end < self.capacity(), "appending to a full value list");
        debug_assert!(
            value.is_some() || self.capacity() != 1,
            "a list of one has no holes"
        );
        let live = live + u32::from(value.is_some());
        // SAFETY: `end` is below the capacity and was uninitialised (or `None`, in a list
        // of one, which needs no drop).
        unsafe {
            values.add(end as usize).write(value);
            ids.add(end as usize).write(id);
        }
        self.set_counts(end + 1, live);
    }

    /// Takes the value at `pos` out, leaving a hole (the caller holds the list alone).
    /// Holes at the end are handed back to appends, so churn at the tail costs nothing.
    fn take(&mut self, pos: u32) -> V {
        debug_assert!(self.is_unique());
        let values = self.values_ptr();
        let (mut end, live) = self.counts();
        assert!(pos < end, "position {pos} is past the list's end");
        // SAFETY: positions below `end` are initialised; the sole holder may write them,
        // and a hole (`None`) past `end` needs no drop.
        let value = unsafe {
            let value = (*values.add(pos as usize))
                .take()
                .expect("an entry's position holds its value");
            while end > 0 && (*values.add(end as usize - 1)).is_none() {
                end -= 1;
            }
            value
        };
        self.set_counts(end, live - 1);
        value
    }
}

impl<V: Clone> ValueList<V> {
    /// Appends `value`, the value of entry `id`, to `list` (made if `None`), and returns
    /// its position. A list that must be copied or compacted first reports each moved
    /// entry's new position to `moved`; a list still held elsewhere is left to its
    /// holders and returned, to be dropped once no lock is held.
    pub fn push(
        list: &mut Option<Self>,
        id: u32,
        value: V,
        moved: &mut impl FnMut(u32, u32),
    ) -> (u32, Option<Self>) {
        let Some(current) = list.as_mut() else {
            *list = Some(Self::single(id, value));
            return (0, None);
        };
        let capacity = current.capacity();
        let (end, live) = current.counts();
        let unique = current.is_unique();
        if end < capacity && unique {
            current.append(id, Some(value));
            return (end, None);
        }
        // Room for at least half as many pushes again before the next rebuild: a list
        // that is mostly holes is compacted at its size (or half of it), a full one
        // doubles. A copy (someone holds this one) takes only the room it needs.
        let needed = live + 1;
        let capacity = if !unique {
            needed.next_power_of_two()
        } else if needed > capacity / 2 {
            capacity
                .checked_mul(2)
                .expect("value list capacity overflows u32")
        } else if needed <= capacity / 4 {
            capacity / 2
        } else {
            capacity
        };
        let old = list.take().expect("checked above");
        let (mut fresh, retired) = old.rebuild(capacity, None, moved);
        let pos = fresh.counts().0;
        fresh.append(id, Some(value));
        *list = Some(fresh);
        (pos, retired)
    }

    /// Removes and returns the value at `pos`. A list left empty becomes `None`; one that
    /// is mostly holes is compacted, reporting each moved entry's new position to
    /// `moved`. A list still held elsewhere is copied without the value (which is then
    /// cloned to be returned) and returned, to be dropped once no lock is held.
    pub fn remove(
        list: &mut Option<Self>,
        pos: u32,
        moved: &mut impl FnMut(u32, u32),
    ) -> (V, Option<Self>) {
        let current = list.as_mut().expect("a removed entry's list exists");
        if !current.is_unique() {
            let value = current.positions()[pos as usize]
                .clone()
                .expect("an entry's position holds its value");
            let old = list.take().expect("checked above");
            let live = old.counts().1 - 1;
            if live == 0 {
                return (value, Some(old));
            }
            let (fresh, retired) = old.rebuild(live.next_power_of_two(), Some(pos), moved);
            *list = Some(fresh);
            return (value, retired);
        }
        let value = current.take(pos);
        let capacity = current.capacity();
        let (end, live) = current.counts();
        if live == 0 {
            // Only holes left: dropping frees the memory and no value.
            *list = None;
        } else if end - live > live || live <= capacity / 8 {
            // Holes outnumber values, or most of the memory is unused (removals from the
            // tail leave no holes): compact into room for as many pushes as there are
            // values, never more memory than before.
            let old = list.take().expect("checked above");
            let (fresh, retired) = old.rebuild((live * 2).next_power_of_two(), None, moved);
            debug_assert!(retired.is_none(), "a unique list is moved, not copied");
            *list = Some(fresh);
        }
        (value, None)
    }

    /// The values of `self` but the one at `skip`, without holes, in a new list of
    /// `capacity` positions; `moved` learns the new position of every entry that moved.
    /// A list held only here is moved into it and freed; one held elsewhere is copied and
    /// returned.
    fn rebuild(
        self,
        capacity: u32,
        skip: Option<u32>,
        moved: &mut impl FnMut(u32, u32),
    ) -> (Self, Option<Self>) {
        let mut fresh = Self::with_capacity(capacity);
        let unique = self.is_unique();
        // Not dropped here whatever happens: a unique list's values move out below (a
        // panic midway leaks rather than dropping a moved value twice).
        let old = ManuallyDrop::new(self);
        for (pos, (value, &id)) in old.positions().iter().zip(old.ids()).enumerate() {
            if value.is_none() || skip == Some(pos as u32) {
                continue;
            }
            let value = if unique {
                // SAFETY: the sole holder moves the value out; `old` is then freed
                // without dropping any value, so it is never read again.
                unsafe { ptr::read(value) }
            } else {
                value.clone()
            };
            let to = fresh.counts().0;
            if to != pos as u32 {
                moved(id, to);
            }
            fresh.append(id, value);
        }
        if !unique {
            return (fresh, Some(ManuallyDrop::into_inner(old)));
        }
        let layout = Parts::of::<V>(old.capacity()).layout;
        // SAFETY: allocated with this layout; every value was moved out above.
        unsafe { alloc::dealloc(old.header.as_ptr().cast(), layout) };
        (fresh, None)
    }
}

impl<V> Clone for ValueList<V> {
    fn clone(&self) -> Self {
        // Relaxed, as in `Arc`: a new holder comes from an existing one, which keeps the
        // list alive, and needs no ordering with other accesses.
        if self.header().holders.fetch_add(1, Ordering::Relaxed) > MAX_HOLDERS {
            std::process::abort();
        }
        Self {
            header: self.header,
            owns: PhantomData,
        }
    }
}

impl<V> Drop for ValueList<V> {
    fn drop(&mut self) {
        if self.header().holders.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other holder's accesses happen before the values are dropped.
        atomic::fence(Ordering::Acquire);
        /// Frees the memory even if dropping a value panics.
        struct Free(*mut u8, Layout);
        impl Drop for Free {
            fn drop(&mut self) {
                // SAFETY: the list's allocation, with its layout; no holder is left.
                unsafe { alloc::dealloc(self.0, self.1) }
            }
        }
        let _free = Free(
            self.header.as_ptr().cast(),
            Parts::of::<V>(self.capacity()).layout,
        );
        let end = self.counts().0 as usize;
        // SAFETY: positions below `end` are initialised and no one else holds them.
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.values_ptr(), end)) };
    }
}

impl<V: fmt::Debug> fmt::Debug for ValueList<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    /// A list with the trie's bookkeeping: entry id -> position.
    #[derive(Default)]
    struct Tracked {
        list: Option<ValueList<u32>>,
        positions: HashMap<u32, u32>,
        retired: Vec<ValueList<u32>>,
    }

    impl Tracked {
        /// Entries `0..n`, each with the value `10 * id`.
        fn filled(n: u32) -> Self {
            let mut t = Self::default();
            for id in 0..n {
                t.push(id);
            }
            t
        }

        fn push(&mut self, id: u32) {
            let positions = &mut self.positions;
            let (pos, retired) = ValueList::push(&mut self.list, id, id * 10, &mut |id, pos| {
                positions.insert(id, pos);
            });
            positions.insert(id, pos);
            self.retired.extend(retired);
        }

        fn remove(&mut self, id: u32) -> u32 {
            let pos = self.positions.remove(&id).expect("a live id");
            let positions = &mut self.positions;
            let (value, retired) = ValueList::remove(&mut self.list, pos, &mut |id, pos| {
                positions.insert(id, pos);
            });
            self.retired.extend(retired);
            value
        }

        fn values(&self) -> Vec<u32> {
            self.list
                .as_ref()
                .map(|l| l.iter().copied().collect())
                .unwrap_or_default()
        }

        fn check(&self) {
            let list = self.list.as_ref();
            assert_eq!(list.map_or(0, ValueList::len), self.positions.len());
            for (&id, &pos) in &self.positions {
                let list = list.expect("entries live in a list");
                assert_eq!(list.positions()[pos as usize], Some(id * 10));
                assert_eq!(list.ids()[pos as usize], id);
            }
            let mut ids: Vec<u32> = list.iter().flat_map(|l| l.entry_ids()).collect();
            let mut expected: Vec<u32> = self.positions.keys().copied().collect();
            // In list order, which is insertion order here: ids were pushed increasing.
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            ids.sort_unstable();
            expected.sort_unstable();
            assert_eq!(ids, expected);
        }
    }

    #[test]
    fn order_survives_removals_and_compaction() {
        let mut t = Tracked::filled(100);
        // Remove most, scattered, so compaction moves what is left more than once.
        for id in (0..100).filter(|id| id % 7 != 3) {
            assert_eq!(t.remove(id), id * 10);
            t.check();
        }
        let expected: Vec<u32> = (0..100).filter(|id| id % 7 == 3).map(|i| i * 10).collect();
        assert_eq!(t.values(), expected);
        let list = t.list.as_ref().unwrap();
        // A compaction leaves under 4 positions a value; removals then halve the values
        // at most before the next one.
        assert!(
            list.capacity() as usize <= 8 * list.len(),
            "memory is given back"
        );
        assert!(
            list.positions().len() <= 2 * list.len(),
            "holes are compacted"
        );
        t.push(500);
        t.check();
        assert_eq!(t.values().last(), Some(&5000));
        assert!(
            t.retired.is_empty(),
            "nothing else held the list: no copies"
        );
    }

    #[test]
    fn removals_from_the_tail_give_memory_back() {
        let mut t = Tracked::filled(1_000);
        for id in (10..1_000).rev() {
            t.remove(id);
        }
        let list = t.list.as_ref().unwrap();
        assert!(list.capacity() <= 8 * 10, "{}", list.capacity());
        assert_eq!(t.values(), (0..10).map(|i| i * 10).collect::<Vec<_>>());
        t.check();
    }

    #[test]
    fn emptied_list_is_freed() {
        let mut t = Tracked::default();
        t.push(1);
        t.push(2);
        t.remove(2);
        t.remove(1);
        assert!(t.list.is_none());
        t.push(3);
        assert_eq!(t.values(), vec![30]);
    }

    #[test]
    fn a_held_list_never_changes() {
        let mut t = Tracked::filled(10);
        let held = t.list.clone().unwrap();
        t.push(10);
        t.remove(0);
        t.remove(5);
        assert_eq!(
            held.iter().copied().collect::<Vec<_>>(),
            (0..10).map(|i| i * 10).collect::<Vec<_>>()
        );
        assert_eq!(held.len(), 10);
        assert_eq!(t.values(), vec![10, 20, 30, 40, 60, 70, 80, 90, 100]);
        t.check();
        // The first change copied the held list; later ones changed the copy in place.
        assert_eq!(t.retired.len(), 1);
        drop(t.retired.drain(..));
        let last = t.list.clone().unwrap();
        assert_eq!(
            t.remove(9),
            90,
            "a value removed from a held list is returned"
        );
        assert!(last.iter().any(|&v| v == 90));
        t.check();
    }

    #[test]
    fn removing_the_last_value_of_a_held_list() {
        let mut t = Tracked::default();
        t.push(1);
        let held = t.list.clone().unwrap();
        assert_eq!(t.remove(1), 10);
        assert!(t.list.is_none());
        assert_eq!(held.iter().copied().collect::<Vec<_>>(), vec![10]);
    }

    #[test]
    fn pushes_are_amortised() {
        // Many values on one list: copies happen only when the capacity doubles.
        let mut t = Tracked::default();
        let mut moves = 0usize;
        for id in 0..10_000 {
            let (_, retired) = ValueList::push(&mut t.list, id, id, &mut |_, _| moves += 1);
            assert!(retired.is_none());
        }
        assert!(moves < 2 * 10_000, "{moves} moves for 10,000 pushes");
        // Churn at the end of a long list does not copy it each time.
        moves = 0;
        for id in 10_000..20_000 {
            let (pos, _) = ValueList::push(&mut t.list, id, id, &mut |_, _| moves += 1);
            ValueList::remove(&mut t.list, pos, &mut |_, _| moves += 1);
        }
        assert!(
            moves < 4 * 10_000,
            "{moves} moves for 10,000 push/remove pairs"
        );
    }

    #[test]
    fn values_drop_exactly_once() {
        let probe = Arc::new(());
        let mut list = None;
        let mut positions = Vec::new();
        for id in 0..40 {
            let (pos, retired) = ValueList::push(&mut list, id, probe.clone(), &mut |_, _| {});
            positions.push(pos);
            assert!(retired.is_none());
        }
        let held = list.clone();
        // Copies share nothing but the values' own reference counts.
        let (removed, retired) = ValueList::remove(&mut list, positions[3], &mut |_, _| {});
        assert!(retired.is_some());
        drop((removed, retired));
        assert_eq!(Arc::strong_count(&probe), 1 + 40 + 39);
        drop(held);
        assert_eq!(Arc::strong_count(&probe), 1 + 39);
        drop(list);
        assert_eq!(Arc::strong_count(&probe), 1);
    }

    #[test]
    fn shared_across_threads() {
        let mut t = Tracked::filled(1_000);
        let list = t.list.clone().unwrap();
        let sums: Vec<u64> = std::thread::scope(|s| {
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let list = list.clone();
                    s.spawn(move || list.iter().map(|&v| u64::from(v)).sum::<u64>())
                })
                .collect();
            for id in 0..500 {
                t.remove(id);
            }
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let expected: u64 = (0..1_000u64).map(|v| v * 10).sum();
        assert!(sums.iter().all(|&s| s == expected));
        assert_eq!(t.values().len(), 500);
    }
}
