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

/// What is tried when the kernel refuses the hard limit itself (macOS
/// reports it unlimited and refuses more than `kern.maxfilesperproc`; a
/// Linux `fs.nr_open` may be set below it).
const FALLBACK: u64 = 10_240;

/// Below this, after raising, a host warns: one HTTP binding alone may
/// hold 1,024 connections by default.
const LOW: u64 = 4_096;

/// Raises the soft open-file limit to the hard one; returns the soft limit
/// in force afterwards (`None` when unlimited).
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(CEILING).min(CEILING);
    // `None`: unlimited already.
    let current = limit.current?;
    let mut now = current;
    for to in [target, FALLBACK.min(target)] {
        if now >= to {
            break;
        }
        let raised = Rlimit {
            current: Some(to),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = current, to, "raised the open-file limit");
                now = to;
            }
            Err(e) => tracing::debug!(error = %e, to, "cannot raise the open-file limit that far"),
        }
    }
    if now < LOW {
        tracing::warn!(
            open_files_limit = now,
            "the open-file limit is low for a host (an HTTP binding alone may hold 1,024 \
             connections); raise it (ulimit -n, LimitNOFILE=) or lower MAX_CONNECTIONS"
        );
    }
    Some(now)
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
            (Some(soft), Some(hard)) => assert_eq!(soft, hard.min(CEILING)),
            (Some(soft), None) => assert!(soft == CEILING || soft == FALLBACK, "{soft}"),
            (None, _) => {}
        }
    }
}
