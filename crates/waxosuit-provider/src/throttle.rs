//! [`Throttle`]: at most one warning per interval for a condition a peer
//! or an actor can repeat at will.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often a [`Throttle`] made by `default()` lets a warning through.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Lets a warning through at most once per interval ([`WARN_EVERY`] by
/// default), counting the ones held back, so that a flood of refusals,
/// failed deliveries or server errors, each cheap to cause, cannot flood
/// the log.
///
/// ```
/// use std::time::{Duration, Instant};
/// use waxosuit_provider::Throttle;
///
/// let throttle = Throttle::default();
/// let t0 = Instant::now();
/// assert_eq!(throttle.should_warn(t0), Some(0));
/// assert_eq!(throttle.should_warn(t0 + Duration::from_secs(1)), None);
/// assert_eq!(throttle.should_warn(t0 + Duration::from_secs(11)), Some(1));
/// ```
pub struct Throttle {
    every: Duration,
    /// When one last went through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::every(WARN_EVERY)
    }
}

impl Throttle {
    /// A throttle letting one warning through per `every`.
    pub fn every(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether to log now, and if so how many were held back since the
    /// last one that was.
    pub fn should_warn(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock();
        let (last, held) = &mut *state;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}
