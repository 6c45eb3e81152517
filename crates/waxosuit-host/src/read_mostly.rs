//! [`ReadMostly`]: state every call reads and few operations change.
//!
//! The actor table, each actor's bindings and claims, and the metric series
//! are looked up on every invocation and changed only when actors, bindings
//! or series come and go. Behind an `RwLock`, each lookup writes the lock
//! word, a cache line that then moves between cores on every call. Here a
//! reader takes a snapshot through `arc-swap`, whose fast path writes only
//! memory of the reading thread; a writer copies the value, changes the
//! copy and publishes it.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;

/// A value read far more often than it changes.
pub(crate) struct ReadMostly<T> {
    value: ArcSwap<T>,
    /// Serialises writers, so that each change applies to the latest value
    /// and runs once.
    writer: Mutex<()>,
}

impl<T: Default> Default for ReadMostly<T> {
    fn default() -> Self {
        ReadMostly::new(T::default())
    }
}

impl<T> ReadMostly<T> {
    pub(crate) fn new(value: T) -> Self {
        ReadMostly {
            value: ArcSwap::from_pointee(value),
            writer: Mutex::new(()),
        }
    }

    /// The current value. Cheap, but keeps this version alive while held:
    /// hold it for a lookup or a call, not indefinitely.
    pub(crate) fn load(&self) -> Guard<Arc<T>> {
        self.value.load()
    }

    /// The current value, as an `Arc` of its own.
    pub(crate) fn load_full(&self) -> Arc<T> {
        self.value.load_full()
    }

    /// Replaces the value outright.
    pub(crate) fn store(&self, value: T) {
        let _writer = self.writer.lock();
        self.value.store(Arc::new(value));
    }
}

impl<T: Clone> ReadMostly<T> {
    /// Applies `change` to a copy of the current value and publishes the
    /// copy; readers see the old value or the new one, never a mix.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        let _writer = self.writer.lock();
        let mut copy = T::clone(&self.value.load());
        let result = change(&mut copy);
        self.value.store(Arc::new(copy));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_their_snapshot_while_writers_publish_new_ones() {
        let cell = ReadMostly::new(vec![1]);
        let before = cell.load();
        let len = cell.update(|v| {
            v.push(2);
            v.len()
        });
        assert_eq!(len, 2);
        assert_eq!(**before, vec![1], "a held snapshot does not change");
        assert_eq!(**cell.load(), vec![1, 2]);
        cell.store(vec![3]);
        assert_eq!(*cell.load_full(), vec![3]);
    }

    #[test]
    fn concurrent_updates_are_all_applied() {
        let cell = Arc::new(ReadMostly::new(0u32));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cell = Arc::clone(&cell);
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        cell.update(|n| *n += 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(**cell.load(), 1000);
    }
}
