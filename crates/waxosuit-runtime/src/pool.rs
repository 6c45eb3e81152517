//! The instance pool of one actor: idle instances kept per thread, and the
//! bound on how many instances exist.
//!
//! An instance is a few dozen cache lines of store, instance context and
//! guest memory that every call touches. With one shared idle list, an
//! instance last used on one core is often taken next by another, and those
//! lines move between caches on every call; the list's lock and counters do
//! too. Profiling the HTTP host showed that cross-core traffic as the
//! largest cost of a call after the guest itself. So idle instances live in
//! *shards*, one per thread slot: a call takes an instance from its own
//! thread's shard and returns it there, touching only memory that core
//! already holds; only when its shard is empty does it look in the others.
//!
//! The bound: at most `max` instances are *live* (idle, serving a call, or
//! about to be created). A call that finds no idle instance reserves a live
//! slot and creates one; when none is left it waits until an instance is
//! returned or dropped. The live count changes only when instances are
//! created or dropped, so the common path — idle instance out, back in —
//! writes no memory shared between cores.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Most shards a pool has: more threads than this share shards.
const MAX_SHARDS: usize = 64;

/// What the pool needs to know of an instance: which module generation it
/// belongs to (instances of replaced modules are never handed out).
pub(crate) trait Pooled {
    fn generation(&self) -> u64;
}

/// The result of [`Pool::checkout`].
pub(crate) enum Checkout<T> {
    /// An idle instance of the current generation.
    Ready(T),
    /// A live slot reserved for an instance the caller creates; give it
    /// back with [`Pool::release`] if no instance comes of it.
    Create,
}

/// No live slot became free within the queue timeout.
#[derive(Debug)]
pub(crate) struct Busy;

/// A call counted in [`Pool::waiters`]; uncounted when dropped.
struct Waiting<'a, T> {
    pool: &'a Pool<T>,
}

impl<'a, T> Waiting<'a, T> {
    fn announce(pool: &'a Pool<T>) -> Self {
        pool.waiters.fetch_add(1, Ordering::SeqCst);
        Waiting { pool }
    }
}

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        self.pool.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One thread slot's idle instances, on its own cache lines so shards of
/// different threads never share one.
#[repr(align(128))]
struct Shard<T> {
    /// Oldest first: the end is the most recently used instance.
    idle: Mutex<Vec<T>>,
}

pub(crate) struct Pool<T> {
    /// A power of two long, so a thread's shard is a mask away.
    shards: Box<[Shard<T>]>,
    max: usize,
    /// Instances that exist or are reserved; at most `max`, except briefly
    /// while a hot swap's fresh instances coexist with busy old ones.
    live: AtomicUsize,
    /// Calls waiting for a live slot or an idle instance.
    waiters: AtomicUsize,
    /// Signalled when an instance is returned or a live slot freed while
    /// calls wait.
    released: Notify,
}

/// A small index for the calling thread, assigned round-robin on first use
/// and kept for the thread's life.
///
/// The instance pool picks a thread's shard with it (masked to the shard
/// count). Embedders that keep per-thread state of their own, such as the
/// host's metric cells, use the same index rather than a second counter
/// and thread-local of their own.
#[inline]
pub fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            slot.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        slot.get()
    })
}

impl<T: Pooled> Pool<T> {
    /// An empty pool of at most `max` live instances.
    pub(crate) fn new(max: usize) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // No point in more shards than instances, or than cores.
        let count = threads.min(max).clamp(1, MAX_SHARDS).next_power_of_two();
        Pool {
            shards: (0..count)
                .map(|_| Shard {
                    idle: Mutex::new(Vec::new()),
                })
                .collect(),
            max,
            live: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            released: Notify::new(),
        }
    }

    /// This thread's shard: where its calls look first and return to.
    #[inline]
    pub(crate) fn home(&self) -> usize {
        // A mask, not `%`: a division on every call was measurable.
        thread_slot() & (self.shards.len() - 1)
    }

    /// An idle instance of generation `current` (this thread's shard first,
    /// most recent first), else a reserved live slot, else waits up to
    /// `queue_timeout` for either. Idle instances of older generations met
    /// on the way are removed and handed to `discard`. (The actor runs the
    /// two steps itself: [`Pool::take_newest`], then [`Pool::checkout_slow`].)
    #[cfg(test)]
    pub(crate) async fn checkout(
        &self,
        home: usize,
        current: impl Fn() -> u64,
        queue_timeout: Duration,
        mut discard: impl FnMut(T),
    ) -> Result<Checkout<T>, Busy> {
        if let Some(instance) = self.take_newest(home, current()) {
            return Ok(Checkout::Ready(instance));
        }
        self.checkout_slow(home, current, queue_timeout, &mut discard)
            .await
    }

    /// The fast path of [`Pool::checkout`]: the newest instance of shard
    /// `home` if it is of generation `current`; no shared write, no wake-up
    /// registration. Callers that try it first avoid building the waiting
    /// future at all, which is measurable at this scale.
    #[inline]
    pub(crate) fn take_newest(&self, home: usize, current: u64) -> Option<T> {
        let mut idle = self.shards[home].idle.lock();
        if idle.last().is_some_and(|i| i.generation() == current) {
            idle.pop()
        } else {
            None
        }
    }

    /// [`Pool::checkout`] once the fast path failed: every shard, then a
    /// reservation, then waiting.
    pub(crate) async fn checkout_slow(
        &self,
        home: usize,
        current: impl Fn() -> u64,
        queue_timeout: Duration,
        discard: &mut impl FnMut(T),
    ) -> Result<Checkout<T>, Busy> {
        let mut deadline = None;
        // Counted in `waiters` from the announcement on, and uncounted when
        // dropped, also when the caller gives up on the call meanwhile.
        let mut waiting: Option<Waiting<'_, T>> = None;
        loop {
            let notified = self.released.notified();
            let mut notified = std::pin::pin!(notified);
            if waiting.is_some() {
                notified.as_mut().enable();
            }
            if let Some(found) = self.take_or_reserve(home, current(), discard) {
                return Ok(found);
            }
            if waiting.is_none() {
                // Announce the wait, then look once more: a release that
                // came between the look above and the announcement saw no
                // waiter and signalled nobody.
                waiting = Some(Waiting::announce(self));
                notified.as_mut().enable();
                if let Some(found) = self.take_or_reserve(home, current(), discard) {
                    return Ok(found);
                }
            }
            let deadline =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + queue_timeout);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Busy);
            }
        }
    }

    /// One look through every shard, then one attempt to reserve.
    fn take_or_reserve(
        &self,
        home: usize,
        current: u64,
        discard: &mut impl FnMut(T),
    ) -> Option<Checkout<T>> {
        let count = self.shards.len();
        for offset in 0..count {
            let shard = &self.shards[(home + offset) % count];
            let mut stale = Vec::new();
            let found = {
                let mut idle = shard.idle.lock();
                let mut found = None;
                while let Some(instance) = idle.pop() {
                    if instance.generation() == current {
                        found = Some(instance);
                        break;
                    }
                    stale.push(instance);
                }
                found
            };
            // Dropping a store unmaps or resets memory: outside the lock.
            for instance in stale {
                self.release();
                discard(instance);
            }
            if let Some(instance) = found {
                return Some(Checkout::Ready(instance));
            }
        }
        self.reserve().then_some(Checkout::Create)
    }

    /// Takes a live slot if fewer than `max` are taken.
    fn reserve(&self) -> bool {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |live| {
                (live < self.max).then_some(live + 1)
            })
            .is_ok()
    }

    /// Frees a live slot: its instance was dropped, or never created.
    pub(crate) fn release(&self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.wake();
    }

    /// Returns an instance after a call, to shard `home` (the one it was
    /// checked out for).
    #[inline]
    pub(crate) fn put(&self, home: usize, instance: T) {
        self.shards[home].idle.lock().push(instance);
        self.wake();
    }

    #[inline]
    fn wake(&self) {
        self.wake_up_to(1);
    }

    /// Wakes up to `n` waiting calls (one per instance added or slot freed).
    fn wake_up_to(&self, n: usize) {
        // Read-only in the common case (no waiters): no cache line changes
        // hands.
        let waiters = self.waiters.load(Ordering::SeqCst);
        for _ in 0..n.min(waiters) {
            self.released.notify_one();
        }
    }

    /// Whether more instances are live than the bound allows (possible for
    /// a while after a hot swap or a pre-warm); returning instances then
    /// drop them instead of keeping them idle.
    #[inline]
    pub(crate) fn over_capacity(&self) -> bool {
        self.live.load(Ordering::Relaxed) > self.max
    }

    /// Adds fresh instances (load, pre-warm, hot swap) to this thread's
    /// shard, each taking a live slot whether or not one is free (see
    /// [`Pool::evict_excess`]).
    pub(crate) fn add(&self, fresh: impl IntoIterator<Item = T>) {
        let mut added = 0;
        {
            let mut idle = self.shards[self.home()].idle.lock();
            for instance in fresh {
                self.live.fetch_add(1, Ordering::SeqCst);
                idle.push(instance);
                added += 1;
            }
        }
        self.wake_up_to(added);
    }

    /// While more than `max` instances are live, removes the oldest idle
    /// ones and frees their slots; the caller drops them.
    pub(crate) fn evict_excess(&self) -> Vec<T> {
        let mut evicted = Vec::new();
        while self.live.load(Ordering::SeqCst) > self.max {
            let Some(oldest) = self.pop_oldest() else {
                break;
            };
            self.live.fetch_sub(1, Ordering::SeqCst);
            evicted.push(oldest);
        }
        evicted
    }

    /// The oldest idle instance of the fullest shard.
    fn pop_oldest(&self) -> Option<T> {
        let fullest = self.shards.iter().max_by_key(|s| s.idle.lock().len())?;
        let mut idle = fullest.idle.lock();
        // Rare (eviction, trimming): shifting the few idle instances is fine.
        (!idle.is_empty()).then(|| idle.remove(0))
    }

    /// Removes every idle instance (e.g. after a hot swap) and frees their
    /// slots; the caller drops them.
    pub(crate) fn drain(&self) -> Vec<T> {
        let mut drained = Vec::new();
        for shard in self.shards.iter() {
            drained.extend(shard.idle.lock().drain(..));
        }
        self.live.fetch_sub(drained.len(), Ordering::SeqCst);
        self.wake_up_to(drained.len());
        drained
    }

    /// Removes idle instances, oldest first, until at most `keep` remain,
    /// and frees their slots; the caller drops them.
    pub(crate) fn trim(&self, keep: usize) -> Vec<T> {
        let mut removed = Vec::new();
        while self.idle_len() > keep {
            let Some(oldest) = self.pop_oldest() else {
                break;
            };
            removed.push(oldest);
        }
        self.live.fetch_sub(removed.len(), Ordering::SeqCst);
        self.wake_up_to(removed.len());
        removed
    }

    /// Idle instances across all shards.
    pub(crate) fn idle_len(&self) -> usize {
        self.shards.iter().map(|s| s.idle.lock().len()).sum()
    }

    /// Live instances (idle, busy or being created).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item {
        id: u32,
        generation: u64,
    }

    impl Pooled for Item {
        fn generation(&self) -> u64 {
            self.generation
        }
    }

    fn item(id: u32, generation: u64) -> Item {
        Item { id, generation }
    }

    const WAIT: Duration = Duration::from_secs(5);

    async fn checkout(pool: &Pool<Item>, generation: u64) -> Result<Checkout<Item>, Busy> {
        pool.checkout(pool.home(), || generation, WAIT, drop).await
    }

    #[tokio::test]
    async fn reserves_up_to_max_then_hands_out_returned_instances_newest_first() {
        let pool = Pool::new(2);
        assert!(matches!(checkout(&pool, 1).await, Ok(Checkout::Create)));
        assert!(matches!(checkout(&pool, 1).await, Ok(Checkout::Create)));
        assert_eq!(pool.live(), 2);
        pool.put(pool.home(), item(1, 1));
        pool.put(pool.home(), item(2, 1));
        let Ok(Checkout::Ready(first)) = checkout(&pool, 1).await else {
            panic!("expected an idle instance");
        };
        assert_eq!(first.id, 2, "the most recently returned instance is reused");
        assert_eq!(pool.live(), 2, "reusing an instance takes no new slot");
    }

    #[tokio::test]
    async fn a_full_pool_makes_calls_wait_until_an_instance_returns_or_times_out() {
        let pool = Arc::new(Pool::new(1));
        assert!(matches!(checkout(&pool, 1).await, Ok(Checkout::Create)));
        let short = pool
            .checkout(pool.home(), || 1, Duration::from_millis(50), drop)
            .await;
        assert!(matches!(short, Err(Busy)));
        assert_eq!(pool.waiters.load(Ordering::SeqCst), 0);

        let waiter = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                checkout(&pool, 1)
                    .await
                    .map(|c| matches!(c, Checkout::Ready(i) if i.id == 7))
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.put(pool.home(), item(7, 1));
        assert!(matches!(waiter.await.unwrap(), Ok(true)));

        // A freed slot (instance dropped) also wakes a waiter, who may
        // then create one.
        let waiter = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                checkout(&pool, 1)
                    .await
                    .map(|c| matches!(c, Checkout::Create))
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.release();
        assert!(matches!(waiter.await.unwrap(), Ok(true)));
        assert_eq!(pool.live(), 1);
    }

    #[tokio::test]
    async fn instances_of_old_generations_are_discarded_and_free_their_slots() {
        let pool = Pool::new(2);
        pool.add([item(1, 1), item(2, 1)]);
        let mut discarded = Vec::new();
        let got = pool
            .checkout(pool.home(), || 2, WAIT, |i| discarded.push(i))
            .await
            .unwrap();
        assert!(matches!(got, Checkout::Create));
        assert_eq!(discarded.len(), 2);
        assert_eq!(pool.live(), 1, "two stale slots freed, one reserved");
    }

    #[tokio::test]
    async fn a_cancelled_wait_is_uncounted_and_several_instances_wake_several_waiters() {
        let pool = Arc::new(Pool::new(2));
        for _ in 0..2 {
            assert!(matches!(checkout(&pool, 1).await, Ok(Checkout::Create)));
        }
        // A waiting call dropped mid-wait (its caller gave up).
        let dropped = tokio::time::timeout(Duration::from_millis(20), checkout(&pool, 1)).await;
        assert!(dropped.is_err());
        assert_eq!(pool.waiters.load(Ordering::SeqCst), 0);

        // Two waiters, then two instances returned at once (as a hot swap
        // adds its fresh instances): both waiters are served.
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { checkout(&pool, 2).await.is_ok() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool.waiters.load(Ordering::SeqCst), 2);
        pool.add([item(8, 2), item(9, 2)]);
        for waiter in waiters {
            assert!(waiter.await.unwrap());
        }
        assert!(
            pool.over_capacity(),
            "4 live for a bound of 2 after the add"
        );
    }

    #[test]
    fn adding_past_max_evicts_the_oldest_and_trim_and_drain_free_slots() {
        let pool = Pool::new(2);
        pool.add([item(1, 1), item(2, 1), item(3, 1)]);
        assert_eq!(pool.live(), 3, "adding never refuses");
        assert_eq!(pool.evict_excess(), vec![item(1, 1)]);
        assert_eq!((pool.live(), pool.idle_len()), (2, 2));
        assert_eq!(pool.trim(1), vec![item(2, 1)]);
        assert_eq!((pool.live(), pool.idle_len()), (1, 1));
        assert_eq!(pool.drain(), vec![item(3, 1)]);
        assert_eq!((pool.live(), pool.idle_len()), (0, 0));
    }

    #[test]
    fn each_thread_returns_to_and_takes_from_its_own_shard_first() {
        let pool = Arc::new(Pool::<Item>::new(64));
        if pool.shards.len() < 2 {
            return; // one core: a single shard, nothing to tell apart
        }
        let other = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                pool.add([item(1, 1)]);
                pool.home()
            })
            .join()
            .unwrap()
        };
        pool.add([item(2, 1)]);
        let mine = pool.home();
        if mine == other {
            return; // both threads landed on the same slot modulo the count
        }
        assert_eq!(pool.shards[mine].idle.lock().last(), Some(&item(2, 1)));
        assert_eq!(pool.shards[other].idle.lock().last(), Some(&item(1, 1)));
    }
}
