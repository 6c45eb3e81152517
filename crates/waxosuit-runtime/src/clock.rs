//! [`EpochClock`]: the engine's epoch, readable by the runtime.
//!
//! Every call has a deadline, and it must hold whatever the call is doing:
//! running guest code, waiting for a free instance, or waiting on a host
//! call. Guest code is stopped by wasmtime's epoch interruption; the other
//! two need the same notion of time outside wasm. Reading the system clock
//! on every call would cost a measurable share of a 130 ns call, so the
//! epoch ticker counts its ticks here too: a call notes the tick its
//! deadline ends at (one relaxed load of a counter written every few
//! milliseconds), and only a host call that actually has to wait turns the
//! ticks left into a timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Ticks of the runtime's epoch ticker, in step with the engine's epoch.
#[derive(Debug)]
pub(crate) struct EpochClock {
    ticks: AtomicU64,
    /// Length of one tick ([`RuntimeConfig::epoch_tick`](crate::RuntimeConfig::epoch_tick)).
    tick: Duration,
}

impl EpochClock {
    pub(crate) fn new(tick: Duration) -> Self {
        Self {
            ticks: AtomicU64::new(0),
            tick,
        }
    }

    /// The current tick.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        // Relaxed: the value is a coarse clock, not a synchronisation point.
        self.ticks.load(Ordering::Relaxed)
    }

    /// Advances the clock by one tick. The ticker calls it right *after*
    /// advancing the engine's epoch, so this clock never runs ahead of the
    /// engine and a deadline measured here never fires early.
    pub(crate) fn advance(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// Wall time left until tick `end` (zero once it has passed), rounded
    /// to whole ticks like the deadline itself.
    pub(crate) fn until(&self, end: u64) -> Duration {
        let left = end.saturating_sub(self.now());
        self.tick
            .saturating_mul(u32::try_from(left).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_counts_whole_ticks_and_saturates() {
        let clock = EpochClock::new(Duration::from_millis(5));
        assert_eq!(clock.until(3), Duration::from_millis(15));
        for _ in 0..3 {
            clock.advance();
        }
        assert_eq!(clock.now(), 3);
        assert_eq!(clock.until(3), Duration::ZERO);
        assert_eq!(
            clock.until(1),
            Duration::ZERO,
            "a passed end is no time left"
        );
        assert_eq!(clock.until(u64::MAX), Duration::from_millis(5) * u32::MAX);
    }
}
