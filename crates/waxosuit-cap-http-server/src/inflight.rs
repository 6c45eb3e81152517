//! The in-flight request limit of one listener (`MAX_IN_FLIGHT`).
//!
//! One counter shared by every connection would be written from every core
//! on every request (twice), and such a shared line costs about 0.1 µs per
//! request on this host's hot path (`docs/http-benchmarks.md`). So the limit
//! is split into one share per connection thread, each counted on its own
//! cache line, which only that thread writes as long as its share lasts. A
//! thread whose share is used up borrows a free place from another thread's
//! share; that is the only time it touches another thread's line. Every
//! place belongs to exactly one share, so however requests are spread over
//! the threads, no more than the limit are ever in flight, and a request is
//! refused only when all places are taken.

use std::sync::atomic::Ordering;
use std::time::Instant;

pub(crate) use waxosuit_provider::Throttle;

use crate::threads::Padded;

/// Places for requests in flight, split into per-thread shares.
pub(crate) struct InFlight {
    /// Places taken, per share.
    taken: Box<[Padded]>,
    /// Places per share; they add up to the limit.
    shares: Box<[usize]>,
    limit: usize,
    /// Logs saturation.
    warned: Throttle,
}

/// A taken place, given back when dropped.
pub(crate) struct Place<'a> {
    limit: &'a InFlight,
    share: usize,
}

impl Place<'_> {
    /// Keeps the place past this guard: [`InFlight::give_back`] with the
    /// returned share must follow, exactly once.
    pub(crate) fn keep(self) -> usize {
        let share = self.share;
        std::mem::forget(self);
        share
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.limit.give_back(self.share);
    }
}

impl InFlight {
    /// `limit` places (at least one) split evenly into `threads` shares
    /// (at least one).
    pub(crate) fn new(limit: usize, threads: usize) -> InFlight {
        let limit = limit.max(1);
        let threads = threads.max(1);
        let shares = (0..threads)
            .map(|i| limit / threads + usize::from(i < limit % threads))
            .collect();
        InFlight {
            taken: (0..threads).map(|_| Padded::default()).collect(),
            shares,
            limit,
            warned: Throttle::default(),
        }
    }

    /// How many shares the limit is split into.
    pub(crate) fn shares(&self) -> usize {
        self.shares.len()
    }

    /// The limit this was made with.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A place for a request served on connection thread `thread`: from
    /// that thread's share if it has one free, else from another's; `None`
    /// when every place is taken.
    pub(crate) fn try_take(&self, thread: usize) -> Option<Place<'_>> {
        let own = thread % self.taken.len();
        // Common case: one uncontended increment of this thread's line.
        if let Some(place) = self.take_from(own) {
            return Some(place);
        }
        (1..self.taken.len())
            .map(|step| (own + step) % self.taken.len())
            .find_map(|other| self.take_from(other))
    }

    /// A place from share `index` if one is free. An increment that finds
    /// the share full is undone at once; meanwhile it can only make another
    /// thread find the share full too, never let one in too many.
    fn take_from(&self, index: usize) -> Option<Place<'_>> {
        let (taken, share) = (self.taken.get(index)?, *self.shares.get(index)?);
        if taken.0.fetch_add(1, Ordering::Acquire) < share {
            return Some(Place {
                limit: self,
                share: index,
            });
        }
        taken.0.fetch_sub(1, Ordering::Release);
        None
    }

    /// Gives back a place of share `share` that [`Place::keep`] kept.
    pub(crate) fn give_back(&self, share: usize) {
        if let Some(taken) = self.taken.get(share) {
            taken.0.fetch_sub(1, Ordering::Release);
        }
    }

    /// Whether a refusal should be logged now (at most every
    /// [`WARN_EVERY`](waxosuit_provider::WARN_EVERY)), and how many were not logged since the last time.
    pub(crate) fn should_warn(&self, now: Instant) -> Option<u64> {
        self.warned.should_warn(now)
    }

    /// Places taken now, over all shares.
    #[cfg(test)]
    pub(crate) fn taken(&self) -> usize {
        self.taken.iter().map(|t| t.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use waxosuit_provider::WARN_EVERY;

    #[test]
    fn shares_add_up_to_the_limit() {
        for (limit, threads) in [(256, 2), (5, 2), (1, 4), (7, 3), (3, 1)] {
            let in_flight = InFlight::new(limit, threads);
            assert_eq!(in_flight.shares.iter().sum::<usize>(), limit);
            assert_eq!(in_flight.limit(), limit);
        }
    }

    #[test]
    fn one_thread_may_use_every_place_but_never_more() {
        let in_flight = InFlight::new(5, 2);
        let places: Vec<_> = (0..5).map(|_| in_flight.try_take(0).unwrap()).collect();
        assert_eq!(in_flight.taken(), 5);
        assert!(in_flight.try_take(0).is_none());
        assert!(in_flight.try_take(1).is_none());
        assert_eq!(in_flight.taken(), 5, "a refusal must not keep a place");
        drop(places);
        assert_eq!(in_flight.taken(), 0);
    }

    #[test]
    fn a_freed_place_is_usable_from_any_thread() {
        let in_flight = InFlight::new(2, 2);
        let a = in_flight.try_take(0).unwrap();
        let b = in_flight.try_take(0).unwrap();
        assert!(in_flight.try_take(1).is_none());
        // `b` came from thread 1's share; freeing `a` frees thread 0's.
        drop(a);
        let c = in_flight.try_take(1).unwrap();
        assert!(in_flight.try_take(0).is_none());
        drop((b, c));
        assert_eq!(in_flight.taken(), 0);
    }

    #[test]
    fn the_limit_holds_under_concurrent_takers() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        let in_flight = Arc::new(InFlight::new(8, 4));
        // Places held, counted after taking and before giving back, so it
        // never exceeds what is really held.
        let holding = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                let (in_flight, holding, peak) = (
                    Arc::clone(&in_flight),
                    Arc::clone(&holding),
                    Arc::clone(&peak),
                );
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let held: Vec<_> =
                            (0..3).filter_map(|_| in_flight.try_take(thread)).collect();
                        let now = holding.fetch_add(held.len(), Ordering::SeqCst) + held.len();
                        peak.fetch_max(now, Ordering::SeqCst);
                        holding.fetch_sub(held.len(), Ordering::SeqCst);
                        drop(held);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 8, "{peak} places held at once");
        assert!(peak >= 3, "the test never contended: {peak}");
        assert_eq!(in_flight.taken(), 0);
    }

    #[test]
    fn saturation_is_logged_at_most_every_ten_seconds() {
        let in_flight = InFlight::new(1, 1);
        let t0 = Instant::now();
        assert_eq!(in_flight.should_warn(t0), Some(0));
        assert_eq!(in_flight.should_warn(t0 + Duration::from_secs(1)), None);
        assert_eq!(in_flight.should_warn(t0 + Duration::from_secs(2)), None);
        assert_eq!(in_flight.should_warn(t0 + WARN_EVERY), Some(2));
    }
}
