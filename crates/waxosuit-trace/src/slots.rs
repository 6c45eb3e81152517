//! Where the live spans are kept: slots found by key in one step, reused
//! once their span closes.
//!
//! A key is a slot's index and the slot's generation at the time. Closing
//! a span moves its slot to the next generation, so a key kept after the
//! span closed (a stale `tracing` id) finds nothing instead of the next
//! span in that slot. Each slot has its own lock, which is also what a
//! lookup takes: one uncontended lock per access, where a general-purpose
//! concurrent slab adds reference counting around it.
//!
//! Slots live in pages that double in size and are made when first
//! needed, so a slot never moves and the memory follows the most spans
//! ever open at once. Free indexes are cached per thread (a span is
//! usually made and closed on the same thread) with a shared list behind
//! the caches, so no thread can hoard them.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use thread_local::ThreadLocal;

/// Slots in the first page; page `k` holds `FIRST_PAGE << k`.
const FIRST_PAGE: usize = 32;
/// Enough pages for every index a key can hold (below `u32::MAX`).
const PAGES: usize = 28;
/// The most free indexes a thread keeps for itself.
const CACHED: usize = 64;
/// How many free indexes a thread takes from the shared list at once.
const REFILL: usize = 16;

/// A page of slots, made when first needed.
type Page<T> = OnceLock<Box<[Mutex<Entry<T>>]>>;

/// The slots.
pub(crate) struct Slots<T> {
    pages: [Page<T>; PAGES],
    free: Mutex<Free>,
    cache: ThreadLocal<RefCell<Vec<u32>>>,
}

#[derive(Default)]
struct Free {
    /// Indexes given back by threads whose cache was full.
    indexes: Vec<u32>,
    /// The first index never used.
    next: u32,
}

#[derive(Default)]
struct Entry<T> {
    generation: u32,
    live: bool,
    value: T,
}

/// A locked, live slot.
pub(crate) struct Slot<'a, T> {
    entry: MutexGuard<'a, Entry<T>>,
    index: u32,
}

impl<T> Deref for Slot<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry.value
    }
}

impl<T> DerefMut for Slot<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.entry.value
    }
}

impl<T: Default> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            pages: [const { OnceLock::new() }; PAGES],
            free: Mutex::default(),
            cache: ThreadLocal::new(),
        }
    }
}

impl<T: Default> Slots<T> {
    /// Fills a free slot with `init` and returns its key, or `None` when
    /// every index is taken.
    pub(crate) fn insert(&self, init: impl FnOnce(&mut T)) -> Option<u64> {
        let index = self.take_index()?;
        let (page, offset) = locate(index);
        let page = self.pages[page].get_or_init(|| {
            (0..FIRST_PAGE << page)
                .map(|_| Mutex::default())
                .collect::<Box<[_]>>()
        });
        let mut entry = lock(&page[offset]);
        entry.live = true;
        init(&mut entry.value);
        Some(key(index, entry.generation))
    }

    /// The live slot `key` names, locked; `None` for a key of a slot
    /// that was released since (or never made).
    pub(crate) fn get(&self, key: u64) -> Option<Slot<'_, T>> {
        let (index, generation) = split(key)?;
        let (page, offset) = locate(index);
        let entry = lock(self.pages.get(page)?.get()?.get(offset)?);
        (entry.live && entry.generation == generation).then_some(Slot { entry, index })
    }

    /// Empties `slot` with `clear` and frees it for another value; its key
    /// finds nothing from now on.
    pub(crate) fn release(&self, mut slot: Slot<'_, T>, clear: impl FnOnce(&mut T)) {
        clear(&mut slot.entry.value);
        slot.entry.live = false;
        slot.entry.generation = slot.entry.generation.wrapping_add(1);
        let index = slot.index;
        drop(slot);
        let mut cache = self.cache.get_or_default().borrow_mut();
        cache.push(index);
        if cache.len() > CACHED {
            let keep = CACHED / 2;
            lock(&self.free).indexes.extend(cache.drain(keep..));
        }
    }

    fn take_index(&self) -> Option<u32> {
        let mut cache = self.cache.get_or_default().borrow_mut();
        if let Some(index) = cache.pop() {
            return Some(index);
        }
        let mut free = lock(&self.free);
        let from = free.indexes.len().saturating_sub(REFILL);
        cache.extend(free.indexes.drain(from..));
        if let Some(index) = cache.pop() {
            return Some(index);
        }
        // The index is stored plus one in a key, which must not be zero.
        if free.next == u32::MAX - 1 {
            return None;
        }
        free.next += 1;
        Some(free.next - 1)
    }
}

/// A lock whose holder panicked still guards usable data: a span's
/// recording is only ever changed field by field.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The page of `index` and its offset there.
fn locate(index: u32) -> (usize, usize) {
    let index = index as usize;
    let n = index / FIRST_PAGE + 1;
    let page = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (page, index - FIRST_PAGE * ((1 << page) - 1))
}

fn key(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | (u64::from(index) + 1)
}

fn split(key: u64) -> Option<(u32, u32)> {
    let low = (key & u64::from(u32::MAX)) as u32;
    Some((low.checked_sub(1)?, (key >> 32) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_tile_the_indexes_without_gaps() {
        let mut expected = (0, 0);
        for index in 0..100_000u32 {
            let (page, offset) = locate(index);
            if page != expected.0 {
                assert_eq!((page, offset), (expected.0 + 1, 0), "at {index}");
                expected = (page, 0);
            } else {
                assert_eq!(offset, expected.1, "at {index}");
            }
            assert!(offset < FIRST_PAGE << page);
            expected.1 = offset + 1;
        }
        // The last index a key can hold has a page.
        assert!(locate(u32::MAX - 2).0 < PAGES);
    }

    #[test]
    fn a_released_key_finds_nothing_even_when_its_slot_is_reused() {
        let slots = Slots::<u64>::default();
        let first = slots.insert(|v| *v = 1).unwrap();
        assert_eq!(*slots.get(first).unwrap(), 1);
        let slot = slots.get(first).unwrap();
        slots.release(slot, |v| *v = 0);
        assert!(slots.get(first).is_none());
        let second = slots.insert(|v| *v = 2).unwrap();
        // The same slot, another generation.
        assert_eq!(second & 0xffff_ffff, first & 0xffff_ffff);
        assert_ne!(second, first);
        assert!(slots.get(first).is_none());
        assert_eq!(*slots.get(second).unwrap(), 2);
        assert!(slots.get(0).is_none());
        assert!(slots.get(u64::MAX).is_none());
    }

    #[test]
    fn slots_released_on_other_threads_are_reused_not_leaked() {
        let slots = std::sync::Arc::new(Slots::<u64>::default());
        // One thread makes every value and another releases them all, as
        // spans made on one worker and closed on another.
        for round in 0..50 {
            let keys: Vec<u64> = (0..200).map(|_| slots.insert(|_| {}).unwrap()).collect();
            let other = std::sync::Arc::clone(&slots);
            std::thread::spawn(move || {
                for key in keys {
                    let slot = other.get(key).unwrap();
                    other.release(slot, |_| {});
                }
            })
            .join()
            .unwrap();
            // Never more slots than 200 live ones and the caches hold.
            let used = lock(&slots.free).next as usize;
            assert!(used <= 200 + CACHED * 2 + REFILL, "round {round}: {used}");
        }
    }
}
