//! The budget of `__console_log` lines an actor may write, and of the log
//! lines a Proxy-Wasm filter writes (`proxy_log`, its standard output).
//!
//! The import has no error channel and costs the guest one call, so a loop
//! calling it could fill the host's log (and disk) at memory speed. Every
//! instance of an actor shares one budget: at most [`MAX_LINES_PER_SECOND`]
//! lines per one-second window, each cut to [`MAX_LINE_BYTES`]. Lines over
//! the budget are counted, not written, and the count is reported once the
//! next window opens, so an operator sees that lines were lost and whose.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Lines one actor may write per second through `__console_log`.
pub const MAX_LINES_PER_SECOND: u32 = 100;

/// The longest console line written; the rest is cut (and said to be).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const WINDOW: Duration = Duration::from_secs(1);

/// One actor's (or filter's) console budget.
#[derive(Debug)]
pub struct ConsoleBudget {
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    written: u32,
    dropped: u64,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it.
    Write {
        /// Lines dropped in the window that just closed, to be said.
        dropped_before: u64,
    },
    /// Over budget: do not read or write it.
    Drop,
}

impl Default for ConsoleBudget {
    fn default() -> Self {
        ConsoleBudget::new()
    }
}

impl ConsoleBudget {
    /// A budget whose first window opens now.
    pub fn new() -> Self {
        ConsoleBudget {
            state: Mutex::new(Window {
                start: Instant::now(),
                written: 0,
                dropped: 0,
            }),
        }
    }

    /// Spends one line of the budget at `now`.
    pub fn take(&self, now: Instant) -> Verdict {
        let mut window = self.state.lock();
        let mut dropped_before = 0;
        if now.saturating_duration_since(window.start) >= WINDOW {
            dropped_before = std::mem::take(&mut window.dropped);
            window.start = now;
            window.written = 0;
        }
        if window.written >= MAX_LINES_PER_SECOND {
            window.dropped += 1;
            return Verdict::Drop;
        }
        window.written += 1;
        Verdict::Write { dropped_before }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_the_budget_then_drops_and_reports_the_drops() {
        let budget = ConsoleBudget::new();
        let start = Instant::now();
        for _ in 0..MAX_LINES_PER_SECOND {
            assert_eq!(budget.take(start), Verdict::Write { dropped_before: 0 });
        }
        for _ in 0..5 {
            assert_eq!(budget.take(start), Verdict::Drop);
        }
        assert_eq!(
            budget.take(start + WINDOW),
            Verdict::Write { dropped_before: 5 }
        );
        assert_eq!(
            budget.take(start + WINDOW),
            Verdict::Write { dropped_before: 0 }
        );
    }
}
