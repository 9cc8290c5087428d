//! The history ring: recent records, oldest first, bounded by count and by age.
//!
//! Retention follows JetStream's limits: `max_msgs` drops the oldest record when a new one
//! would exceed it, `max_age` expires records by the time the ring stored them (not the
//! event's own time); `0` means unlimited. A push does all its bookkeeping in O(1)
//! amortised: at most one record evicted by count, and those past their age popped from
//! the front (the front is always the oldest, so the check stops at the first young one).
//!
//! Records leave the ring by value: the caller decides where they are dropped. The Python
//! bindings drop them after letting go of their lock, because dropping a Python object can
//! run arbitrary code, and that code may push again.

use std::collections::VecDeque;

use smallvec::SmallVec;

/// One retained record: when the ring stored it, what it holds, and where it came from (a
/// journal offset, or the record's sequence number when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<T> {
    pub stored_ns: i64,
    pub position: i64,
    pub value: T,
}

/// Cumulative counters: `evicted` by `max_msgs`, `expired` by `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingCounters {
    pub retained: u64,
    pub appended: u64,
    pub expired: u64,
    pub evicted: u64,
}

/// What a query makes of one record (see [`Ring::select`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Take,
    Skip,
    /// Not decided by the query: its caller decides later, without the ring.
    Undecided,
}

/// Records that left the ring in one operation, to be dropped by the caller: inline when
/// one (a full ring evicts one record per push), so a push allocates nothing.
pub type Departed<T> = SmallVec<[Record<T>; 1]>;

/// A bounded, time-limited ring of records (see the module docs).
#[derive(Debug, Clone)]
pub struct Ring<T> {
    records: VecDeque<Record<T>>,
    max_msgs: usize,
    max_age_ns: i64,
    appended: u64,
    expired: u64,
    evicted: u64,
}

impl<T> Ring<T> {
    /// A ring keeping at most `max_msgs` records (0: any number) for at most `max_age_ns`
    /// nanoseconds (0: forever).
    pub fn new(max_msgs: usize, max_age_ns: i64) -> Self {
        Self {
            records: VecDeque::new(),
            max_msgs,
            max_age_ns: max_age_ns.max(0),
            appended: 0,
            expired: 0,
            evicted: 0,
        }
    }

    /// Appends a record stored at `stored_ns`; `position` defaults to its sequence number.
    /// Returns what left the ring to make room or by age.
    pub fn push(&mut self, stored_ns: i64, value: T, position: Option<i64>) -> Departed<T> {
        let position = position.unwrap_or(self.appended as i64);
        let mut departed = self.expire(stored_ns);
        if self.max_msgs != 0 && self.records.len() >= self.max_msgs {
            if let Some(oldest) = self.records.pop_front() {
                self.evicted += 1;
                departed.push(oldest);
            }
        }
        self.records.push_back(Record {
            stored_ns,
            position,
            value,
        });
        self.appended += 1;
        departed
    }

    /// Pops the records older than the age limit at `now_ns`.
    pub fn expire(&mut self, now_ns: i64) -> Departed<T> {
        let mut departed = Departed::new();
        if self.max_age_ns == 0 {
            return departed;
        }
        let cutoff = now_ns.saturating_sub(self.max_age_ns);
        while self.records.front().is_some_and(|r| r.stored_ns < cutoff) {
            departed.extend(self.records.pop_front());
            self.expired += 1;
        }
        departed
    }

    /// Takes every record out without counting it as expired or evicted (the store is
    /// being torn down).
    pub fn take_all(&mut self) -> VecDeque<Record<T>> {
        std::mem::take(&mut self.records)
    }

    /// The retained records, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Record<T>> + ExactSizeIterator {
        self.records.iter()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The values a query may answer with, oldest first, each with its verdict (`Take`
    /// or `Undecided`): met walking from the oldest record (with `newest`, from the
    /// newest), until `limit` are taken. Once the caller has decided the undecided ones,
    /// the first `limit` it keeps (with `newest`, the last) are the query's answer:
    /// every record past the walk's end lies beyond `limit` taken ones.
    pub fn select<E>(
        &self,
        limit: usize,
        newest: bool,
        verdict: impl FnMut(&T) -> Result<Verdict, E>,
    ) -> Result<Vec<(&T, Verdict)>, E> {
        if newest {
            let mut chosen = walk(self.records.iter().rev(), limit, verdict)?;
            chosen.reverse();
            Ok(chosen)
        } else {
            walk(self.records.iter(), limit, verdict)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The oldest retained record.
    pub fn first(&self) -> Option<&Record<T>> {
        self.records.front()
    }

    pub fn counters(&self) -> RingCounters {
        RingCounters {
            retained: self.records.len() as u64,
            appended: self.appended,
            expired: self.expired,
            evicted: self.evicted,
        }
    }
}

/// `Ring::select`'s walk over `records`, in the order given.
fn walk<'a, T, E>(
    records: impl Iterator<Item = &'a Record<T>>,
    limit: usize,
    mut verdict: impl FnMut(&T) -> Result<Verdict, E>,
) -> Result<Vec<(&'a T, Verdict)>, E> {
    let mut chosen = Vec::new();
    let mut taken = 0;
    for record in records {
        if taken >= limit {
            break;
        }
        let found = verdict(&record.value)?;
        match found {
            Verdict::Skip => continue,
            Verdict::Take => taken += 1,
            Verdict::Undecided => {}
        }
        chosen.push((&record.value, found));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ring: &Ring<u32>) -> Vec<u32> {
        ring.iter().map(|r| r.value).collect()
    }

    #[test]
    fn select_stops_after_limit_taken_keeping_the_undecided_on_the_way() {
        let mut ring = Ring::new(0, 0);
        for n in 0..10u32 {
            drop(ring.push(i64::from(n), n, None));
        }
        // Even: taken; multiples of 3 (odd): undecided; the rest skipped.
        let verdict = |v: &u32| {
            Ok::<_, ()>(if v % 2 == 0 {
                Verdict::Take
            } else if v % 3 == 0 {
                Verdict::Undecided
            } else {
                Verdict::Skip
            })
        };
        let values =
            |chosen: Vec<(&u32, Verdict)>| chosen.iter().map(|(v, _)| **v).collect::<Vec<_>>();
        assert_eq!(values(ring.select(2, false, verdict).unwrap()), [0, 2]);
        assert_eq!(
            values(ring.select(3, false, verdict).unwrap()),
            [0, 2, 3, 4]
        );
        assert_eq!(values(ring.select(2, true, verdict).unwrap()), [6, 8, 9]);
        assert_eq!(values(ring.select(3, true, verdict).unwrap()), [4, 6, 8, 9]);
        assert_eq!(
            ring.select(3, true, verdict).unwrap()[3],
            (&9, Verdict::Undecided)
        );
        assert!(ring.select(0, false, verdict).unwrap().is_empty());
        assert_eq!(
            ring.select(1, false, |_| Err::<Verdict, _>("no")),
            Err("no")
        );
    }

    #[test]
    fn count_limit_evicts_the_oldest() {
        let mut ring = Ring::new(3, 0);
        for n in 0..5 {
            let departed = ring.push(n, n as u32, None);
            assert_eq!(departed.len(), usize::from(n >= 3));
        }
        assert_eq!(values(&ring), [2, 3, 4]);
        let counters = ring.counters();
        assert_eq!(
            (counters.appended, counters.evicted, counters.retained),
            (5, 2, 3)
        );
        assert_eq!(ring.first().map(|r| r.position), Some(2));
    }

    #[test]
    fn age_limit_expires_by_store_time() {
        let mut ring = Ring::new(0, 10);
        ring.push(0, 0, Some(100));
        ring.push(5, 1, Some(200));
        assert!(ring.expire(10).is_empty()); // exactly max_age old: kept
        let departed = ring.push(12, 2, Some(300));
        assert_eq!(departed.iter().map(|r| r.value).collect::<Vec<_>>(), [0]);
        assert_eq!(values(&ring), [1, 2]);
        assert_eq!(ring.expire(100).len(), 2);
        assert!(ring.is_empty());
        assert_eq!(ring.counters().expired, 3);
        assert_eq!(ring.counters().evicted, 0);
    }

    #[test]
    fn unlimited_keeps_everything() {
        let mut ring = Ring::new(0, 0);
        for n in 0..1000 {
            assert!(ring.push(n, n as u32, None).is_empty());
        }
        assert_eq!(ring.len(), 1000);
        assert!(ring.expire(i64::MAX).is_empty());
    }
}
