//! The lock of one match-cache shard: a test-and-set lock for critical sections of a few
//! tens of nanoseconds.
//!
//! A cache hit holds its shard for one hash-table probe and one `Arc` clone; nothing that
//! may block or run foreign code (dropping a value) ever runs under it. For sections that
//! short a futex `Mutex` costs more than it saves: releasing it is an atomic exchange (to
//! learn whether a sleeper needs waking), where here it is a plain release store, and a
//! hit pays one atomic read-modify-write less. A waiter spins a little, then yields its
//! time slice, so a holder preempted mid-section (more threads than cores) is not spun
//! against for a whole slice. There is no poisoning: a panic under the lock (only an
//! allocation failure could cause one) releases it, and the shard stays consistent.

use std::cell::UnsafeCell;
use std::fmt;
use std::hint::spin_loop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Spins before a waiter starts yielding: about a microsecond, many times a section.
const SPINS: u32 = 128;

pub struct ShardLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists at a time.
unsafe impl<T: Send> Send for ShardLock<T> {}
// SAFETY: as for `Send`: the lock hands `&mut T` to one thread at a time.
unsafe impl<T: Send> Sync for ShardLock<T> {}

impl<T> ShardLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub fn lock(&self) -> ShardGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        ShardGuard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0;
        loop {
            // Wait reading, not writing, so the holder keeps the line until it lets go.
            while self.locked.load(Ordering::Relaxed) {
                if spins < SPINS {
                    spins += 1;
                    spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T> fmt::Debug for ShardLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardLock")
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Access to a locked shard; dropping it releases the lock.
pub struct ShardGuard<'a, T> {
    lock: &'a ShardLock<T>,
}

impl<T> Deref for ShardGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for ShardGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for ShardGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release: every access under the lock happens before the next holder's.
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_across_threads() {
        // A non-atomic read-modify-write under the lock: lost updates would show.
        let lock = ShardLock::new((0u64, 0u64));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let mut g = lock.lock();
                        let (a, b) = *g;
                        *g = (a + 1, b + 2);
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), (80_000, 160_000));
    }

    #[test]
    fn a_panic_under_the_lock_releases_it() {
        let lock = ShardLock::new(1);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = lock.lock();
            panic!("while holding");
        }));
        assert!(caught.is_err());
        assert_eq!(*lock.lock(), 1);
    }
}
