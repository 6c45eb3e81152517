//! Reconnection: how a binding's connection comes back after the server
//! went away, and how calls wait for it.
//!
//! async-nats reconnects by itself, but between attempts it sleeps up to
//! 4 s, and while it reconnects it stops reading the client's command
//! channel: a `publish` is queued (and sent late, or never, once the
//! channel is full it waits forever). So after a server restart the
//! first publish could wait seconds or hang, and during an outage publishes
//! "succeeded" silently. This module drives the client's reconnect loop
//! through its server-selection callback instead:
//!
//! * between attempts it backs off briefly (doubling from
//!   [`MIN_BACKOFF`] to [`MAX_BACKOFF`]), so a restarted server is found
//!   within about a second without hammering one that stays down;
//! * a call that finds the connection down wakes the loop, which tries
//!   **at once**, and waits for that attempt: the first call after the
//!   server is back succeeds, and a call during an outage fails as soon as
//!   its attempt has (or after [`RECONNECT_WAIT`]), with that attempt's
//!   error, never an earlier one's.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ReconnectToServer, Server, ServerAddr};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Pause before the second attempt after a disconnection (the first is
/// immediate); it doubles with every failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause between two reconnection attempts while no call is
/// waiting: how long a restarted server may go unnoticed by a binding that
/// makes no call (its subscriptions resume then).
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The longest a `Publish` or `Request` waits for a lost connection to come
/// back before it fails with [`ProviderError::Unavailable`](waxosuit_provider::ProviderError::Unavailable).
/// A server that refuses connections fails the call sooner: as soon as the
/// attempt the call triggered has failed.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(1);
/// Least time between two attempts even when calls keep waking the loop,
/// so a burst of calls during an outage does not become a burst of
/// connection attempts.
const MIN_GAP: Duration = Duration::from_millis(20);

/// One binding's reconnection state, shared with its client's callbacks.
#[derive(Default)]
pub(crate) struct Reconnect {
    /// Cuts the loop's backoff short: a call is waiting.
    wake: Notify,
    /// Signalled when an attempt is known to have failed, and when the
    /// connection is back.
    changed: Notify,
    state: Mutex<Attempts>,
}

#[derive(Default)]
struct Attempts {
    /// Attempts started so far; the latest one is number `started`.
    started: u64,
    /// Number of the latest attempt known to have failed, and its error.
    last_failed: u64,
    last_error: Option<String>,
    /// The latest attempt: its number, the server it went to, and that
    /// server's failure count before it (a higher count later means it
    /// failed).
    pending: Option<(u64, ServerAddr, usize)>,
    /// When the latest attempt started.
    last_start: Option<Instant>,
}

/// The pause before attempt number `failures + 1` of a disconnection.
fn backoff(failures: usize) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => {
            let doublings = u32::try_from(n - 1).unwrap_or(u32::MAX).min(16);
            MIN_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
        }
    }
}

impl Reconnect {
    /// The client's server-selection callback: called before every
    /// connection attempt (the first one at bind time too). Records whether
    /// the previous attempt failed, backs off, and picks the server.
    /// `None` (an empty pool) leaves the choice to the client.
    pub(crate) async fn next_attempt(&self, servers: Vec<Server>) -> Option<ReconnectToServer> {
        let target = servers.iter().min_by_key(|s| s.failed_attempts)?.clone();
        let last_start = {
            let mut state = self.state.lock();
            if let Some((number, addr, before)) = state.pending.take()
                && let Some(server) = servers.iter().find(|s| s.addr == addr)
                && server.failed_attempts > before
            {
                state.last_failed = number;
                state.last_error = server.last_error.clone();
                self.changed.notify_waiters();
            }
            state.last_start
        };
        let pause = backoff(target.failed_attempts);
        if !pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.wake.notified() => {
                    if let Some(at) = last_start {
                        tokio::time::sleep_until(at + MIN_GAP).await;
                    }
                }
            }
        }
        let mut state = self.state.lock();
        state.started += 1;
        state.pending = Some((state.started, target.addr.clone(), target.failed_attempts));
        state.last_start = Some(Instant::now());
        Some(ReconnectToServer {
            addr: target.addr,
            delay: Some(Duration::ZERO),
        })
    }

    /// Called on the client's `Connected` event: the latest attempt worked.
    pub(crate) fn connected(&self) {
        self.state.lock().pending = None;
        self.changed.notify_waiters();
    }

    /// Returns once `client` is connected: at once if it is; otherwise it
    /// wakes the reconnect loop and waits for the attempt that starts
    /// then, for at most [`RECONNECT_WAIT`].
    ///
    /// # Errors
    ///
    /// Why the connection is not back: the error of an attempt made after
    /// this call began, or that none succeeded in time.
    pub(crate) async fn ready(&self, client: &Client) -> Result<(), String> {
        if client.connection_state() == State::Connected {
            return Ok(());
        }
        let deadline = Instant::now() + RECONNECT_WAIT;
        let before = self.state.lock().started;
        self.wake.notify_one();
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the checks below, so no signal is missed.
            changed.as_mut().enable();
            if client.connection_state() == State::Connected {
                return Ok(());
            }
            {
                let state = self.state.lock();
                if state.last_failed > before {
                    let error = state.last_error.as_deref().unwrap_or("the attempt failed");
                    return Err(format!("reconnecting failed: {error}"));
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(format!(
                    "the connection did not come back within {RECONNECT_WAIT:?}"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_once_then_doubles_to_the_cap() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), MIN_BACKOFF);
        assert_eq!(backoff(2), MIN_BACKOFF * 2);
        assert_eq!(backoff(3), MIN_BACKOFF * 4);
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(usize::MAX), MAX_BACKOFF);
    }
}
