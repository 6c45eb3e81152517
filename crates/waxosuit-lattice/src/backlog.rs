//! What a lattice subscription holds for a consumer that is busy.
//!
//! `async-nats` lets a subscription hold 65,536 messages by default, each
//! as large as the server's `max_payload`: anyone who may publish on a
//! lattice subject could make a host (or a `lattice watch`) buffer tens of
//! gigabytes while it verifies, reconciles or prints. The subscriptions
//! whose consumers wait on other work (commands, events, inventory,
//! auctions, binding values, and a client's event stream) go through a
//! [`PendingSubscriber`] whose task moves each message out of the client's
//! buffer as it arrives, into a queue of at most [`MESSAGES`] messages and
//! [`BYTES`] bytes each (or two of the server's largest messages, if that
//! is more: a command may carry a module of up to `max_payload` inline),
//! and drops the rest, logging at most every [`waxosuit_nats::pending::REPORT_EVERY`]. A dropped
//! authentic message is one a sender sees time out, as when the host is
//! down; nothing half-handled is left. The client's own buffer (65,536
//! messages) is then only used while that task waits to be scheduled.
//!
//! Requests for a payload's chunks ([`requests`]) are read the same way
//! into a smaller queue: a real one is under a kilobyte, so anything large
//! is dropped unread rather than held.
//!
//! The invocation and reply subscriptions are not among them: their
//! consumers hand each message to a task or check it in place, and one more
//! hand-off per call would cost every call (`docs/lattice.md`).

use async_nats::{Message, Subscriber};
use waxosuit_nats::{DropReport, Dropped, PendingBudget, PendingSubscriber};

use crate::auth::shorten;

/// Messages one subscription holds for its consumer, at most.
pub(crate) const MESSAGES: usize = 1024;
/// Their bytes (subjects, headers and payloads), at most: 16 MiB, unless
/// two messages of the server's `max_payload` need more.
pub(crate) const BYTES: usize = 16 * 1024 * 1024;

/// The largest message a subscription of small requests holds: a chunk
/// request is a subject, an inbox, a signed header and a number.
pub(crate) const MAX_REQUEST_BYTES: usize = 4096;

/// Small requests held at most, and their bytes.
const REQUESTS: usize = 64;
const REQUEST_BYTES: usize = REQUESTS * MAX_REQUEST_BYTES;

/// `subscriber`, read into a queue of at most [`MESSAGES`] and [`BYTES`]
/// (at least two messages of `max_payload`, the server's).
pub(crate) fn bounded(subscriber: Subscriber, max_payload: usize) -> PendingSubscriber {
    let bytes = BYTES.max(max_payload.saturating_mul(2));
    read_into(subscriber, PendingBudget::new(MESSAGES, bytes))
}

/// `subscriber`, read into a queue of at most 64 messages and 256 KiB:
/// for requests no larger than [`MAX_REQUEST_BYTES`].
pub(crate) fn requests(subscriber: Subscriber) -> PendingSubscriber {
    read_into(subscriber, PendingBudget::new(REQUESTS, REQUEST_BYTES))
}

fn read_into(subscriber: Subscriber, budget: PendingBudget) -> PendingSubscriber {
    let mut report = DropReport::default();
    let on_drop = move |message: &Message, why: Dropped| {
        let Some(unlogged) = report.due() else {
            return;
        };
        tracing::warn!(
            // Anyone may name the subject's last tokens: escaped and cut.
            subject = %shorten(&message.subject),
            bytes = message.length,
            bound = ?why,
            dropped_since_last_warning = unlogged,
            "lattice messages arrive faster than they are handled here: one was dropped \
             unread (a flood on the bus, or a consumer that stopped reading)"
        );
    };
    PendingSubscriber::new(subscriber, budget, on_drop)
}
