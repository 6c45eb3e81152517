//! Subscriptions whose undelivered messages are bounded in bytes, not only
//! in number.
//!
//! `async-nats` bounds what a subscription holds by a count of messages
//! (`ConnectOptions::subscription_capacity`), and each message may be as
//! large as the server's `max_payload`: 1,024 messages of 1 MiB are a GiB
//! for one subscription whose consumer is slower than its publishers. A
//! [`PendingSubscriber`] moves every message out of the client's buffer as
//! it arrives, on a task of its own, into a queue bounded by a
//! [`PendingBudget`] of messages and bytes; a message past either bound is
//! dropped at once and handed to the caller's `on_drop` (to log or count),
//! which is what a NATS server does to a slow consumer too. The caller may
//! share one budget between several subscriptions, so that one binding's
//! subscriptions together hold at most that much.
//!
//! A message stops counting once the consumer takes it from the
//! [`PendingSubscriber`] (a [`Stream`]); the one being handled is the
//! consumer's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::{Message, Subscriber};
use futures_util::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// What undelivered messages may hold, in number and in bytes (as the
/// client counts a message: subject, reply subject, headers and payload),
/// shared by the subscriptions made with clones of it.
#[derive(Clone, Debug)]
pub struct PendingBudget {
    messages: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_messages: usize,
    max_bytes: usize,
}

impl PendingBudget {
    /// A budget of `max_messages` messages and `max_bytes` bytes (each at
    /// least one, at most [`Semaphore::MAX_PERMITS`]).
    pub fn new(max_messages: usize, max_bytes: usize) -> PendingBudget {
        let max_messages = max_messages.clamp(1, Semaphore::MAX_PERMITS);
        let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        PendingBudget {
            messages: Arc::new(Semaphore::new(max_messages)),
            bytes: Arc::new(Semaphore::new(max_bytes)),
            max_messages,
            max_bytes,
        }
    }

    /// The messages this budget was made with.
    pub fn max_messages(&self) -> usize {
        self.max_messages
    }

    /// The bytes this budget was made with.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Messages held now, not yet taken by their consumer.
    pub fn held_messages(&self) -> usize {
        self.max_messages - self.messages.available_permits()
    }

    /// Their bytes.
    pub fn held_bytes(&self) -> usize {
        self.max_bytes - self.bytes.available_permits()
    }

    /// Room for one more message of `size` bytes, or why there is none.
    fn take(&self, size: usize) -> Result<Room, Dropped> {
        let message = Arc::clone(&self.messages)
            .try_acquire_owned()
            .map_err(|_| Dropped::TooManyMessages)?;
        let size = u32::try_from(size).map_err(|_| Dropped::TooManyBytes)?;
        let bytes = Arc::clone(&self.bytes)
            .try_acquire_many_owned(size)
            .map_err(|_| Dropped::TooManyBytes)?;
        Ok(Room {
            _message: message,
            _bytes: bytes,
        })
    }
}

/// Why a message was dropped before its consumer saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The budget's messages were all held.
    TooManyMessages,
    /// Its bytes did not fit in what is left of the budget.
    TooManyBytes,
}

/// A message's share of the budget, given back when dropped.
struct Room {
    _message: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// A message held for its consumer, with its share of the budget.
struct Held {
    message: Message,
    _room: Room,
}

/// A subscription read by a task of its own into a bounded queue; see the
/// [module docs](self). Dropping it ends the task, which drops (and so
/// unsubscribes) the subscriber.
pub struct PendingSubscriber {
    queue: mpsc::UnboundedReceiver<Held>,
    reader: JoinHandle<()>,
}

impl PendingSubscriber {
    /// Starts reading `subscriber` on the current tokio runtime. `on_drop`
    /// is called, on the reading task, for each message dropped; it should
    /// return quickly (a rate-limited log line, a counter).
    pub fn new(
        mut subscriber: Subscriber,
        budget: PendingBudget,
        mut on_drop: impl FnMut(&Message, Dropped) + Send + 'static,
    ) -> PendingSubscriber {
        // Unbounded as a channel, bounded by the budget's permits.
        let (sender, queue) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                // `length` is what the client counted (subject, reply,
                // headers and payload); never less than the payload kept.
                let size = message.length.max(message.payload.len());
                let room = match budget.take(size) {
                    Ok(room) => room,
                    Err(why) => {
                        on_drop(&message, why);
                        continue;
                    }
                };
                let held = Held {
                    message,
                    _room: room,
                };
                if sender.send(held).is_err() {
                    // The consumer is gone.
                    break;
                }
            }
        });
        PendingSubscriber { queue, reader }
    }
}

/// The messages in the order the server sent them, ending once the
/// subscription has ended and every held message was taken.
impl Stream for PendingSubscriber {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.queue
            .poll_recv(cx)
            .map(|held| held.map(|held| held.message))
    }
}

impl Drop for PendingSubscriber {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// How often an `on_drop` that logs should let a line through, at most
/// ([`DropReport`]).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Rate-limits the log lines of an `on_drop`: a flood of drops makes one
/// line per [`REPORT_EVERY`], which says how many were not logged.
#[derive(Debug, Default)]
pub struct DropReport {
    last: Option<Instant>,
    unlogged: u64,
}

impl DropReport {
    /// `Some(drops not logged since the last line)` when a line is due
    /// now; `None` (and one more unlogged) otherwise.
    pub fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.saturating_duration_since(at) < REPORT_EVERY)
        {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_due_once_per_interval_and_counts_the_rest() {
        let mut report = DropReport::default();
        assert_eq!(report.due(), Some(0));
        assert_eq!(report.due(), None);
        assert_eq!(report.due(), None);
        report.last = Some(Instant::now() - REPORT_EVERY);
        assert_eq!(report.due(), Some(2));
        assert_eq!(report.due(), None);
    }
}
