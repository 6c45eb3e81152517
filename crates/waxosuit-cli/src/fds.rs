//! The process's open-file limit, raised for a host.
//!
//! Most systems start processes with a soft limit of 1,024 descriptors and
//! a far higher hard limit. One HTTP binding may hold 1,024 connections by
//! default, and the host also needs descriptors for its providers (Redis,
//! NATS, the blob store, outbound HTTP), its lattice connection and the
//! admin endpoint: at the soft limit, connections alone could take every
//! descriptor and make the rest of the host fail. A host raises its soft
//! limit to the hard one, as Go's runtime and most servers do; what an
//! operator set as the hard limit still holds.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The most the soft limit is raised to when the hard one is unlimited
/// (Linux refuses more than `fs.nr_open`, 1,048,576 by default).
const CEILING: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard one; returns the soft limit
/// in force afterwards (`None` when unlimited).
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(CEILING);
    match limit.current {
        Some(current) if current < target => {
            let raised = Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::debug!(from = current, to = target, "raised the open-file limit");
                    Some(target)
                }
                Err(e) => {
                    tracing::debug!(error = %e, current, "cannot raise the open-file limit");
                    Some(current)
                }
            }
        }
        current => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        // Started low, as most systems start processes.
        let before = getrlimit(Resource::Nofile);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: before.maximum,
            },
        )
        .unwrap();
        assert_eq!(getrlimit(Resource::Nofile).current, Some(256));
        let raised = raise_open_files_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(raised, after.current);
        match (after.current, after.maximum) {
            (Some(soft), Some(hard)) => assert_eq!(soft, hard),
            (Some(soft), None) => assert_eq!(soft, CEILING),
            (None, _) => {}
        }
    }
}
