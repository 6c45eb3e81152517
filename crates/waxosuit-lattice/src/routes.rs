//! Which hosts serve which target, for sending each call to one host.
//!
//! A call goes to one host's own subject, so that its signature or tag,
//! which covers the subject, holds for that host only: a captured call
//! handed to another replica is refused there. The caller therefore picks
//! the host. It learns who serves what from trusted sources only: signed
//! `actor_started`/`provider_started` events, signed inventory answers, and
//! answers to a discovery question on the target's shared subject (each
//! carrying a session token signed by the answering host). Hosts that stop,
//! leave, or stop answering are dropped; calls rotate over the rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

/// At most this many hosts are remembered per target: beyond it, the oldest
/// is dropped (a trusted host can only add itself, so this bounds nothing
/// an attacker controls; it keeps a misbehaving peer from growing memory).
const MAX_HOSTS: usize = 64;

/// Target (its shared subject) → hosts that serve it.
#[derive(Default)]
pub(crate) struct Routes {
    table: RwLock<HashMap<String, Vec<String>>>,
    next: AtomicUsize,
}

impl Routes {
    /// `host` serves the target whose shared subject is `subject`.
    pub(crate) fn add(&self, subject: &str, host: &str) {
        if self
            .table
            .read()
            .get(subject)
            .is_some_and(|hosts| hosts.iter().any(|h| h == host))
        {
            return;
        }
        let mut table = self.table.write();
        let hosts = table.entry(subject.to_string()).or_default();
        if !hosts.iter().any(|h| h == host) {
            if hosts.len() == MAX_HOSTS {
                hosts.remove(0);
            }
            hosts.push(host.to_string());
        }
    }

    /// `host` no longer serves the target.
    pub(crate) fn remove(&self, subject: &str, host: &str) {
        let mut table = self.table.write();
        if let Some(hosts) = table.get_mut(subject) {
            hosts.retain(|h| h != host);
            if hosts.is_empty() {
                table.remove(subject);
            }
        }
    }

    /// `host` left: it serves nothing any more.
    pub(crate) fn remove_host(&self, host: &str) {
        let mut table = self.table.write();
        table.retain(|_, hosts| {
            hosts.retain(|h| h != host);
            !hosts.is_empty()
        });
    }

    /// The next host to send a call for `subject` to, in turn.
    pub(crate) fn pick(&self, subject: &str) -> Option<String> {
        let table = self.table.read();
        let hosts = table.get(subject)?;
        if hosts.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % hosts.len();
        Some(hosts[i].clone())
    }

    /// Hosts known to serve `subject` (tests, inventory).
    pub(crate) fn hosts(&self, subject: &str) -> Vec<String> {
        self.table.read().get(subject).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_rotate_over_the_hosts_that_serve_a_target_and_leavers_drop_out() {
        let routes = Routes::default();
        assert_eq!(routes.pick("s"), None);
        routes.add("s", "NA");
        routes.add("s", "NB");
        routes.add("s", "NA");
        routes.add("t", "NA");
        let picks: Vec<String> = (0..4).filter_map(|_| routes.pick("s")).collect();
        assert!(picks.contains(&"NA".to_string()) && picks.contains(&"NB".to_string()));
        routes.remove("s", "NB");
        assert_eq!(routes.hosts("s"), vec!["NA".to_string()]);
        routes.remove_host("NA");
        assert_eq!(routes.pick("s"), None);
        assert_eq!(routes.pick("t"), None);
    }

    #[test]
    fn hosts_per_target_are_bounded() {
        let routes = Routes::default();
        for i in 0..MAX_HOSTS + 10 {
            routes.add("s", &format!("N{i}"));
        }
        assert_eq!(routes.hosts("s").len(), MAX_HOSTS);
        assert!(!routes.hosts("s").contains(&"N0".to_string()));
    }
}
