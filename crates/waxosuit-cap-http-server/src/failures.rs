//! [`FailureLog`]: how many log lines a listener's failed requests get.
//!
//! An actor with a bug fails every request, and a line for each would let
//! any client fill the host's logs at its request rate. One line per
//! interval (the refusals' [`Throttle`](waxosuit_provider::Throttle)) would
//! hide the second of two different failures close together (an error,
//! then a trap), which is what someone reading the log after an incident
//! needs to see. So each interval has a small budget of lines; past it the
//! failures are counted, and the next line says how many were not logged.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The interval of a [`FailureLog`] made by `default()`.
pub(crate) const FAILURE_WINDOW: Duration = waxosuit_provider::WARN_EVERY;
/// Lines per [`FAILURE_WINDOW`].
pub(crate) const FAILURE_LINES: u32 = 10;

/// A budget of [`FAILURE_LINES`] log lines per [`FAILURE_WINDOW`].
pub(crate) struct FailureLog {
    /// When the current window began, lines used in it, and failures not
    /// logged since the last line.
    state: Mutex<(Option<Instant>, u32, u64)>,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            state: Mutex::new((None, 0, 0)),
        }
    }
}

impl FailureLog {
    /// Whether to log a failure now, and if so how many were not logged
    /// since the last line.
    pub(crate) fn should_log(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock();
        let (start, used, held) = &mut *state;
        if start.is_none_or(|at| now.saturating_duration_since(at) >= FAILURE_WINDOW) {
            *start = Some(now);
            *used = 0;
        }
        if *used >= FAILURE_LINES {
            *held += 1;
            return None;
        }
        *used += 1;
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_has_its_lines_and_the_next_line_counts_the_rest() {
        let log = FailureLog::default();
        let t0 = Instant::now();
        for _ in 0..FAILURE_LINES {
            assert_eq!(log.should_log(t0), Some(0));
        }
        for i in 0..500 {
            assert_eq!(log.should_log(t0 + Duration::from_millis(i)), None);
        }
        let later = t0 + FAILURE_WINDOW;
        assert_eq!(log.should_log(later), Some(500));
        assert_eq!(log.should_log(later), Some(0));
    }
}
