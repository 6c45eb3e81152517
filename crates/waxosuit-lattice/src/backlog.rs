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

/// `subscriber`, read into a queue of at most [`MESSAGES`] and [`BYTES`]
/// (at least two messages of `max_payload`, the server's).
pub(crate) fn bounded(subscriber: Subscriber, max_payload: usize) -> PendingSubscriber {
    let bytes = BYTES.max(max_payload.saturating_mul(2));
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
    PendingSubscriber::new(subscriber, PendingBudget::new(MESSAGES, bytes), on_drop)
}
