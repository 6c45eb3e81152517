//! A binding's values, read the same way by every broker.

use std::time::Duration;

use waxosuit_provider::{BindRequest, ProviderError};

use crate::CAPABILITY_ID;
use crate::subject::Pattern;

/// Binding value: comma-separated subjects to receive; `*` stands for one
/// token, a final `>` for one or more.
pub const SUBSCRIPTION: &str = "SUBSCRIPTION";
/// Binding value: subscriptions with the same subject and group name share
/// the messages, each going to one member only.
pub const QUEUEGROUP_NAME: &str = "QUEUEGROUP_NAME";
/// Binding value: the most subjects [`SUBSCRIPTION`] may list (each is a
/// subscription and a delivery task); default [`DEFAULT_MAX_SUBSCRIPTIONS`].
pub const MAX_SUBSCRIPTIONS: &str = "MAX_SUBSCRIPTIONS";
/// [`MAX_SUBSCRIPTIONS`] when the binding does not set it.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 64;
/// Binding value: the most messages waiting in the host for the binding's
/// actor, over all its subscriptions; default
/// [`DEFAULT_MAX_QUEUED_MESSAGES`]. Past it, messages are dropped for that
/// actor.
pub const MAX_QUEUED_MESSAGES: &str = "MAX_QUEUED_MESSAGES";
/// [`MAX_QUEUED_MESSAGES`] when the binding does not set it.
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1024;
/// Binding value: the most bytes of messages waiting likewise (as each
/// broker counts a message: the embedded one its encoded `DeliverMessage`,
/// NATS its subjects, headers and payload); default [`DEFAULT_MAX_QUEUED_BYTES`].
pub const MAX_QUEUED_BYTES: &str = "MAX_QUEUED_BYTES";
/// [`MAX_QUEUED_BYTES`] when the binding does not set it (16 MiB).
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 16 * 1024 * 1024;
/// How long a `Request` whose `timeout` is `0` or less waits.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a binding subscribes to: [`SUBSCRIPTION`] and [`QUEUEGROUP_NAME`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscriptions {
    /// The subjects, in the order given; valid NATS subjects or patterns.
    pub patterns: Vec<Pattern>,
    /// The queue group, if any (no whitespace).
    pub queue: Option<String>,
}

impl Subscriptions {
    /// Reads the binding's [`SUBSCRIPTION`] (at most [`MAX_SUBSCRIPTIONS`]
    /// subjects, each checked before anything subscribes) and
    /// [`QUEUEGROUP_NAME`]. Empty items and surrounding spaces are ignored.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Config`] naming the value and what is wrong with it.
    pub fn from_binding(request: &BindRequest) -> Result<Subscriptions, ProviderError> {
        let config_error = |key: &str, reason: String| ProviderError::Config {
            capid: CAPABILITY_ID.to_string(),
            actor: request.actor.clone(),
            key: key.to_string(),
            reason,
        };
        let max = request
            .positive(CAPABILITY_ID, MAX_SUBSCRIPTIONS)?
            .unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS);
        let mut patterns = Vec::new();
        if let Some(list) = request.values.get(SUBSCRIPTION) {
            let subjects: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            // Each subscription is a task and a queue: the list is bounded
            // before anything is spawned.
            if subjects.len() > max {
                return Err(config_error(
                    SUBSCRIPTION,
                    format!(
                        "lists {} subjects for binding `{}`, more than its MAX_SUBSCRIPTIONS \
                         quota ({max}); subscribe with wildcards (`orders.*`, `orders.>`), or \
                         raise MAX_SUBSCRIPTIONS in this binding's values",
                        subjects.len(),
                        request.binding
                    ),
                ));
            }
            for subject in subjects {
                let pattern = Pattern::parse(subject).map_err(|reason| {
                    config_error(
                        SUBSCRIPTION,
                        format!("has an invalid subject `{subject}`: {reason}"),
                    )
                })?;
                patterns.push(pattern);
            }
        }
        let queue = match request.values.get(QUEUEGROUP_NAME).map(|q| q.trim()) {
            None | Some("") => None,
            Some(q) if q.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(config_error(
                    QUEUEGROUP_NAME,
                    format!("`{q}` contains whitespace or a control character"),
                ));
            }
            Some(q) => Some(q.to_string()),
        };
        Ok(Subscriptions { patterns, queue })
    }
}

/// The longest a request waits, whatever `timeout_ms` it asks: the actor's
/// `timeout_ms` is its own choice, and a request waiting for days would
/// hold its inbox, its task and (called over the lattice) a place among the
/// provider's concurrent calls for as long.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a request with `timeout_ms` waits: that many milliseconds, at
/// most [`MAX_REQUEST_TIMEOUT`], or [`DEFAULT_REQUEST_TIMEOUT`] for `0` or
/// less.
pub fn request_timeout(timeout_ms: i64) -> Duration {
    match u64::try_from(timeout_ms) {
        Ok(ms) if ms > 0 => Duration::from_millis(ms).min(MAX_REQUEST_TIMEOUT),
        _ => DEFAULT_REQUEST_TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn request(values: &[(&str, &str)]) -> BindRequest {
        BindRequest {
            actor: "MA".into(),
            binding: "default".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn subscriptions_are_trimmed_checked_and_bounded() {
        let subs = Subscriptions::from_binding(&request(&[
            (SUBSCRIPTION, " a.b , c.* ,, d.> "),
            (QUEUEGROUP_NAME, " workers "),
        ]))
        .unwrap();
        let subjects: Vec<&str> = subs.patterns.iter().map(Pattern::as_str).collect();
        assert_eq!(subjects, ["a.b", "c.*", "d.>"]);
        assert_eq!(subs.queue.as_deref(), Some("workers"));
        assert_eq!(
            Subscriptions::from_binding(&request(&[])).unwrap(),
            Subscriptions::default()
        );
        for (values, key, says) in [
            (
                vec![(SUBSCRIPTION, "a..b")],
                SUBSCRIPTION,
                "invalid subject `a..b`",
            ),
            (
                vec![(SUBSCRIPTION, "a.\u{0}")],
                SUBSCRIPTION,
                "control character",
            ),
            (
                vec![(QUEUEGROUP_NAME, "a b")],
                QUEUEGROUP_NAME,
                "whitespace",
            ),
            (
                vec![(SUBSCRIPTION, "a,b,c"), (MAX_SUBSCRIPTIONS, "2")],
                SUBSCRIPTION,
                "MAX_SUBSCRIPTIONS quota (2)",
            ),
            (vec![(MAX_SUBSCRIPTIONS, "0")], MAX_SUBSCRIPTIONS, ""),
        ] {
            let err = Subscriptions::from_binding(&request(&values)).unwrap_err();
            assert!(
                matches!(&err, ProviderError::Config { key: k, .. } if k == key),
                "{err}"
            );
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn request_timeouts_default_when_not_positive_and_stop_at_the_maximum() {
        assert_eq!(request_timeout(250), Duration::from_millis(250));
        assert_eq!(request_timeout(0), DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(request_timeout(-5), DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(request_timeout(i64::MAX), MAX_REQUEST_TIMEOUT);
    }
}
