//! The NATS subjects of one lattice, all under one prefix, and the
//! inventory kinds that name some of them.
//!
//! Separate from the message types because every subject is built here
//! and nowhere else: free text (keys, capability ids, binding names) is
//! made into safe tokens in one place, and the prefix that NATS permissions
//! and the messaging provider fence off is checked once.

use crate::LatticeError;

/// Subjects of one lattice, all under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// A subject token from free text: NATS separators and wildcards become `_`.
fn token(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

impl Subjects {
    /// Subjects under `prefix` (`waxosuit` by default), which must be one or
    /// more dot-separated tokens of letters, digits, `-` and `_`.
    pub fn new(prefix: &str) -> Result<Subjects, LatticeError> {
        let ok = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            return Err(LatticeError::Config {
                reason: format!(
                    "`{prefix}` is not a usable lattice prefix: use dot-separated tokens of \
                     letters, digits, `-` and `_` (e.g. `waxosuit` or `staging.waxosuit`)"
                ),
            });
        }
        Ok(Subjects {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// An actor's discovery subject: every host running it answers here (in
    /// a queue group) which host it is; calls then go to that host's own
    /// subject ([`Subjects::at`]).
    pub fn actor(&self, key: &str) -> String {
        format!("{}.actor.{}", self.prefix, token(key))
    }

    /// Calls to a provider (capability id and binding): its discovery
    /// subject, like [`Subjects::actor`].
    pub fn provider(&self, capid: &str, binding: &str) -> String {
        format!(
            "{}.provider.{}.{}",
            self.prefix,
            token(capid).replace(':', "."),
            token(binding)
        )
    }

    /// Where `host` takes calls for the target whose discovery subject is
    /// `shared` ([`Subjects::actor`] or [`Subjects::provider`]): every
    /// signature and tag of a call covers its subject, so a call meant for
    /// one host is refused by any other.
    pub fn at(&self, shared: &str, host: &str) -> String {
        format!("{shared}.{}", token(host))
    }

    /// A fresh subject on which `owner` (a host or admin key) serves the
    /// chunks of one payload.
    pub fn chunks(&self, owner: &str) -> String {
        format!("{}{}", self.chunks_of(owner), nuid::next())
    }

    /// The prefix (with the trailing dot) of every chunk subject `owner`
    /// may offer: a receiver fetches only from the sender's own.
    pub fn chunks_of(&self, owner: &str) -> String {
        format!("{}.chunks.{}.", self.prefix, token(owner))
    }

    /// Where a host answers requests for the binding values it holds.
    pub fn values(&self, host: &str) -> String {
        format!("{}.values.{}", self.prefix, token(host))
    }

    /// The prefix of this lattice's reply inboxes, so that the whole lattice
    /// (inboxes included) sits under one prefix that NATS permissions and
    /// the messaging provider can fence off.
    pub fn inbox_prefix(&self) -> String {
        format!("{}._INBOX", self.prefix)
    }

    /// Whether `subject` is one of this lattice's reply inboxes: every
    /// host's and client's connection makes its inboxes there, so an
    /// answer addressed anywhere else was not asked for by one of them.
    pub fn is_inbox(&self, subject: &str) -> bool {
        // Whole tokens only: `{p}._INBOX.>` would reach every inbox.
        subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix("._INBOX."))
            .is_some_and(|rest| {
                rest.split('.')
                    .all(|t| !t.is_empty() && t != "*" && t != ">")
            })
    }

    /// Inventory scatter-gather of one kind.
    pub fn inventory(&self, kind: InventoryKind) -> String {
        format!("{}.inventory.{}", self.prefix, kind.as_str())
    }

    /// All inventory subjects.
    pub fn inventory_all(&self) -> String {
        format!("{}.inventory.*", self.prefix)
    }

    /// CloudEvents.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Lattice-wide binding changes.
    pub fn bindings(&self) -> String {
        format!("{}.bindings", self.prefix)
    }

    /// Commands for one host.
    pub fn control(&self, host: &str) -> String {
        format!("{}.control.{}", self.prefix, token(host))
    }

    /// Auctions among hosts.
    pub fn auction(&self) -> String {
        format!("{}.control.auction", self.prefix)
    }
}

/// What an inventory query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryKind {
    /// Hosts, labels, uptime.
    Hosts,
    /// Actors and their claims.
    Actors,
    /// Providers.
    Providers,
    /// Bindings, lattice-wide.
    Bindings,
}

impl InventoryKind {
    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            InventoryKind::Hosts => "hosts",
            InventoryKind::Actors => "actors",
            InventoryKind::Providers => "providers",
            InventoryKind::Bindings => "bindings",
        }
    }

    /// From a subject token.
    pub fn parse(token: &str) -> Option<InventoryKind> {
        Some(match token {
            "hosts" => InventoryKind::Hosts,
            "actors" => InventoryKind::Actors,
            "providers" => InventoryKind::Providers,
            "bindings" => InventoryKind::Bindings,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lattices_own_inboxes_are_inboxes() {
        let s = Subjects::new("waxosuit").unwrap();
        for yes in ["waxosuit._INBOX.abc", "waxosuit._INBOX.abc.1"] {
            assert!(s.is_inbox(yes), "{yes}");
        }
        for no in [
            "waxosuit._INBOX.",
            "waxosuit._INBOX",
            "_INBOX.abc",
            "victim.x",
            "waxosuitx._INBOX.abc",
            "WAXOSUIT._INBOX.abc",
            "waxosuit._inbox.abc",
            "waxosuit._INBOX.>",
            "waxosuit._INBOX.*",
            "waxosuit._INBOX.a.>",
            "waxosuit._INBOX.a..b",
            "other.waxosuit._INBOX.abc",
        ] {
            assert!(!s.is_inbox(no), "{no}");
        }
    }

    #[test]
    fn subjects_are_sanitized_and_prefixes_validated() {
        let s = Subjects::new("staging.waxosuit").unwrap();
        assert_eq!(
            s.provider("wascc:keyvalue", "my binding"),
            "staging.waxosuit.provider.wascc.keyvalue.my_binding"
        );
        assert_eq!(s.provider("a.b", "x>"), "staging.waxosuit.provider.a_b.x_");
        assert!(Subjects::new("bad prefix").is_err());
        assert!(Subjects::new("a..b").is_err());
        assert!(Subjects::new("").is_err());
    }
}
