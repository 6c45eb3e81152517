//! A coarse clock for hyper's header-read timeout.
//!
//! hyper arms its header-read timer at the start of every request head
//! (which, on a keep-alive connection, is right after the previous
//! response) and drops it once the head is parsed. With `TokioTimer` each
//! request therefore pays a boxed tokio `Sleep`, a timer-wheel insertion
//! when the read first waits, and a removal when it is dropped: about
//! 0.7 µs of CPU and 8 % of throughput on `provider_echo`
//! (`docs/http-benchmarks.md`). The timeout only has to catch clients that
//! stall for tens of seconds, so that precision is wasted.
//!
//! Here a sleep is only a deadline: polling it compares the deadline with
//! the clock and never registers a wake-up ([`DeadlineTimer`]). Something
//! else must poll it again later, and that is the connection's
//! [`Watchdog`]: one tokio interval per connection, armed once, whose ticks
//! wake the connection task so hyper re-polls its pending read and sees
//! the expired deadline. A stalled client is thus disconnected between the
//! timeout and the timeout plus one tick ([`Watchdog::period`]).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tokio::time::{Interval, MissedTickBehavior};

/// How many watchdog ticks fit in one timeout: the timeout fires at most
/// `1 / TICKS_PER_TIMEOUT` of it late.
const TICKS_PER_TIMEOUT: u32 = 4;

/// Shortest watchdog period, so a tiny configured timeout cannot turn the
/// watchdog into a busy loop.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// hyper's [`Timer`] whose sleeps never wake anything by themselves; only
/// correct together with a [`Watchdog`] on the same connection.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeadlineTimer;

impl Timer for DeadlineTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(mut deadline) => deadline.0 = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A sleep that is ready once its instant has passed, checked when polled.
struct Deadline(Instant);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.0 {
            Poll::Ready(())
        } else {
            // No waker kept on purpose: the connection's watchdog re-polls.
            Poll::Pending
        }
    }
}

impl Sleep for Deadline {}

/// Wakes one connection task periodically so its [`Deadline`]s are
/// re-checked. Idle when the timeout is off.
pub(crate) struct Watchdog {
    interval: Option<Interval>,
}

impl Watchdog {
    /// A watchdog for connections whose header-read timeout is `timeout`
    /// (`None`: no timeout, no ticks).
    pub(crate) fn new(timeout: Option<Duration>) -> Watchdog {
        let interval = timeout.map(|timeout| {
            let period = Watchdog::period(timeout);
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            // A late tick only needs to happen once; catching up would
            // wake the connection several times for nothing.
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        Watchdog { interval }
    }

    /// The tick period for `timeout`: how late, at most, a stalled client
    /// is disconnected.
    pub(crate) fn period(timeout: Duration) -> Duration {
        (timeout / TICKS_PER_TIMEOUT).max(MIN_PERIOD)
    }

    /// Resolves at the next tick; never, without a timeout.
    pub(crate) async fn tick(&mut self) {
        match &mut self.interval {
            Some(interval) => {
                interval.tick().await;
            }
            None => poll_fn(|_| Poll::<()>::Pending).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_ready_only_once_passed_and_reset_moves_it() {
        let timer = DeadlineTimer;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        timer.reset(&mut sleep, Instant::now());
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
        timer.reset(&mut sleep, Instant::now() + Duration::from_secs(3600));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn the_period_is_a_fraction_of_the_timeout_but_never_tiny() {
        assert_eq!(
            Watchdog::period(Duration::from_secs(30)),
            Duration::from_millis(7500)
        );
        assert_eq!(Watchdog::period(Duration::from_millis(1)), MIN_PERIOD);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_ticks_once_per_period_and_not_at_all_without_timeout() {
        let started = tokio::time::Instant::now();
        let mut watchdog = Watchdog::new(Some(Duration::from_millis(400)));
        watchdog.tick().await;
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        watchdog.tick().await;
        assert_eq!(started.elapsed(), Duration::from_millis(200));

        let mut idle = Watchdog::new(None);
        let waited = tokio::time::timeout(Duration::from_secs(3600), idle.tick()).await;
        assert!(
            waited.is_err(),
            "a watchdog without timeout must never tick"
        );
    }
}
