//! Which subjects an actor may not use: the lattice's reserved prefixes,
//! and the check every published, requested, replied-to and subscribed
//! subject goes through.
//!
//! Separate because it is the security boundary between actors and the
//! lattice's own planes, and reads best (and is tested) on its own.

use crate::{DEFAULT_RESERVED_PREFIX, MessagingError, SubjectUse, subject};

/// A prefix given to
/// [`NatsMessaging::reserve_prefix`](crate::NatsMessaging::reserve_prefix)
/// that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{prefix}` cannot be reserved: it is not a valid NATS subject without wildcards ({reason}); \
     pass the lattice prefix itself, e.g. `waxosuit` or `staging.waxosuit`"
)]
pub struct InvalidPrefix {
    /// The prefix as given.
    pub prefix: String,
    /// What is wrong with it.
    pub reason: subject::SubjectError,
}

/// The reserved prefixes of one provider, the default first.
#[derive(Debug)]
pub(crate) struct Reserved {
    pub(crate) prefixes: Vec<String>,
}

impl Reserved {
    pub(crate) fn new() -> Reserved {
        Reserved {
            prefixes: vec![DEFAULT_RESERVED_PREFIX.to_string()],
        }
    }

    /// Refuses `subject` for `action` by `actor` when it is not a valid
    /// subject for that use, or is or could match one under a reserved
    /// prefix. The reservation is checked before the wildcard ban on
    /// published subjects, so `*.control.x` is reported as the permission
    /// problem it is, not as a syntax error.
    pub(crate) fn check(
        &self,
        actor: &str,
        binding: &str,
        action: SubjectUse,
        subject: &str,
    ) -> Result<(), MessagingError> {
        let invalid = |reason| MessagingError::InvalidSubject {
            actor: actor.to_string(),
            binding: binding.to_string(),
            action,
            subject: subject::shown(subject),
            reason,
        };
        subject::validate(subject).map_err(invalid)?;
        if let Some(prefix) = self
            .prefixes
            .iter()
            .find(|p| subject::overlaps_prefix(subject, p))
        {
            return Err(MessagingError::Reserved {
                actor: actor.to_string(),
                binding: binding.to_string(),
                action,
                subject: subject.to_string(),
                prefix: prefix.clone(),
            });
        }
        if action != SubjectUse::Subscribe {
            subject::validate_literal(subject).map_err(invalid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_like_the_server_does() {
        let reserved = Reserved::new();
        for ok in ["a", "a.b", "a.*.c", "a.>", "_INBOX.x", "waxosuit"] {
            assert!(
                reserved
                    .check("MA", "default", SubjectUse::Subscribe, ok)
                    .is_ok(),
                "{ok}"
            );
        }
        for bad in ["a..b", ".a", "a.", "a b", "a.>.b", "a*", "b>", ""] {
            let err = reserved
                .check("MA", "default", SubjectUse::Subscribe, bad)
                .unwrap_err();
            assert!(
                matches!(err, MessagingError::InvalidSubject { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reservation_wins_over_the_wildcard_ban_but_not_over_syntax() {
        let reserved = Reserved::new();
        let check = |action, subject| reserved.check("MA", "b1", action, subject);
        // A wildcard publish that could reach the lattice is a permission
        // problem first.
        let err = check(SubjectUse::Publish, "*.control.x").unwrap_err();
        assert!(matches!(err, MessagingError::Reserved { .. }), "{err}");
        // One that cannot is still not a valid publish subject.
        let err = check(SubjectUse::Publish, "jobs.*").unwrap_err();
        assert!(
            matches!(
                err,
                MessagingError::InvalidSubject {
                    reason: subject::SubjectError::Wildcard,
                    ..
                }
            ),
            "{err}"
        );
        assert!(check(SubjectUse::Subscribe, "jobs.*").is_ok());
        // Broken syntax is reported as such, wherever it points.
        let err = check(SubjectUse::Request, "waxosuit..control").unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidSubject { .. }),
            "{err}"
        );
    }

    #[test]
    fn refusals_say_what_why_and_what_to_do() {
        let reserved = Reserved::new()
            .prefixes
            .into_iter()
            .chain(["staging.waxosuit".to_string()])
            .collect();
        let reserved = Reserved { prefixes: reserved };
        let literal = reserved
            .check(
                "MACTOR",
                "b1",
                SubjectUse::Publish,
                "waxosuit.control.NHOST",
            )
            .unwrap_err()
            .to_string();
        for needle in [
            "permission denied",
            "actor MACTOR (binding `b1`)",
            "may not publish to `waxosuit.control.NHOST`",
            "it is a subject under `waxosuit.`",
            "reserved for the Waxosuit lattice (prefix `waxosuit`)",
            "cannot match `waxosuit.>`",
            "docs/nats-accounts.md",
        ] {
            assert!(
                literal.contains(needle),
                "{needle:?} missing from: {literal}"
            );
        }
        let wildcard = reserved
            .check("MACTOR", "b1", SubjectUse::Subscribe, "staging.*.events")
            .unwrap_err()
            .to_string();
        assert!(
            wildcard.contains("may not subscribe to `staging.*.events`: as a wildcard it could match subjects under `staging.waxosuit.`"),
            "{wildcard}"
        );
        assert!(
            wildcard.contains("(prefix `staging.waxosuit`)"),
            "{wildcard}"
        );
    }
}
