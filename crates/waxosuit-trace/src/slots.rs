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
//! usually made and closed on the same thread), at most [`CACHED`] of
//! them; past that they go to a shared list any thread takes from. A slot
//! whose generation has run out is retired rather than reused, so a key
//! never comes back.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

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
    /// Shared with the thread caches holding its indexes, which give them
    /// back when their thread exits.
    free: Arc<Mutex<Free>>,
}

thread_local! {
    /// This thread's free indexes. One cache per thread: there is one
    /// recorder in a process, and another one (in a test) uses the shared
    /// list. Reached with `try_with`, so a span closed while the thread
    /// exits still frees its slot.
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { owner: None, indexes: Vec::new() }) };
}

/// Free indexes of the slots whose shared list is `owner`.
struct Cache {
    owner: Option<Arc<Mutex<Free>>>,
    indexes: Vec<u32>,
}

impl Cache {
    /// Whether the cache holds (or may hold) `free`'s indexes.
    fn claim(&mut self, free: &Arc<Mutex<Free>>) -> bool {
        match &self.owner {
            Some(owner) if Arc::ptr_eq(owner, free) => true,
            Some(_) if !self.indexes.is_empty() => false,
            _ => {
                self.owner = Some(Arc::clone(free));
                true
            }
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // The thread exits: its indexes go back to the shared list.
        if let Some(owner) = &self.owner {
            lock(owner).indexes.append(&mut self.indexes);
        }
    }
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
            free: Arc::default(),
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
        init(&mut entry.value);
        // Live only once filled: a panic in `init` leaves the slot unused.
        entry.live = true;
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
        let retired = slot.entry.generation == u32::MAX;
        let index = slot.index;
        drop(slot);
        if retired {
            // Its keys have all been given once; one more would repeat one.
            return;
        }
        let cached = CACHE.try_with(|cache| {
            let mut cache = cache.borrow_mut();
            if !cache.claim(&self.free) {
                return false;
            }
            cache.indexes.push(index);
            if cache.indexes.len() > CACHED {
                let spill = cache.indexes.drain(CACHED / 2..);
                lock(&self.free).indexes.extend(spill);
            }
            true
        });
        if cached != Ok(true) {
            lock(&self.free).indexes.push(index);
        }
    }

    fn take_index(&self) -> Option<u32> {
        let cached = CACHE.try_with(|cache| {
            let mut cache = cache.borrow_mut();
            if !cache.claim(&self.free) {
                return None;
            }
            if cache.indexes.is_empty() {
                let mut free = lock(&self.free);
                let from = free.indexes.len().saturating_sub(REFILL);
                cache.indexes.extend(free.indexes.drain(from..));
            }
            cache.indexes.pop()
        });
        if let Ok(Some(index)) = cached {
            return Some(index);
        }
        let mut free = lock(&self.free);
        if let Some(index) = free.indexes.pop() {
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
            // The releasing thread has exited and given its cache back:
            // never more slots than 200 live ones and this thread's cache.
            let used = lock(&slots.free).next as usize;
            assert!(used <= 200 + CACHED + REFILL, "round {round}: {used}");
        }
    }

    #[test]
    fn a_slot_whose_generations_ran_out_is_retired() {
        let slots = Slots::<u64>::default();
        let first = slots.insert(|_| {}).unwrap();
        let (index, _) = split(first).unwrap();
        let (page, offset) = locate(index);
        // Fast-forward the slot to its last generation.
        lock(&slots.pages[page].get().unwrap()[offset]).generation = u32::MAX - 1;
        let last = key(index, u32::MAX - 1);
        let slot = slots.get(last).unwrap();
        slots.release(slot, |_| {});
        let next = slots.insert(|_| {}).unwrap();
        assert_ne!(split(next).unwrap().0, index, "a retired slot came back");
    }

    #[test]
    fn two_instances_on_one_thread_keep_their_indexes_apart() {
        let a = Slots::<u64>::default();
        let b = Slots::<u64>::default();
        let ka = a.insert(|v| *v = 1).unwrap();
        let kb = b.insert(|v| *v = 2).unwrap();
        a.release(a.get(ka).unwrap(), |_| {});
        // `b` must not take `a`'s cached index as its own.
        let kb2 = b.insert(|v| *v = 3).unwrap();
        assert_eq!(*b.get(kb).unwrap(), 2);
        assert_eq!(*b.get(kb2).unwrap(), 3);
        b.release(b.get(kb).unwrap(), |_| {});
        let ka2 = a.insert(|v| *v = 4).unwrap();
        assert_eq!(*a.get(ka2).unwrap(), 4);
        assert!(a.get(ka).is_none());
    }
}
