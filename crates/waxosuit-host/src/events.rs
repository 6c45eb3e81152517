//! [`HostEvent`]: what changed in a host, for whoever watches it (the
//! lattice turns these into CloudEvents and re-establishes bindings).

use waxosuit_runtime::ActorKey;

use crate::host::RouteKey;

/// A change in the host's actors, providers, bindings or health.
///
/// Events are sent on a bounded broadcast channel ([`crate::Host::subscribe`]);
/// a watcher that falls behind misses events rather than slowing the host,
/// and learns how many it missed from the channel's `Lagged` error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostEvent {
    /// An actor was verified and started.
    ActorStarted {
        /// Module key.
        actor: ActorKey,
        /// Name from the claims.
        name: String,
        /// The actor's signed claims (compact JWT), so that other hosts can
        /// verify them without the module.
        claims: String,
    },
    /// An actor's module was replaced.
    ActorUpdated {
        /// Module key.
        actor: ActorKey,
        /// The new claims (compact JWT).
        claims: String,
    },
    /// An actor was stopped.
    ActorStopped {
        /// Module key.
        actor: ActorKey,
    },
    /// A provider was registered and started.
    ProviderStarted {
        /// Where.
        route: RouteKey,
        /// Its descriptor's name.
        name: String,
        /// Its descriptor's version.
        version: String,
    },
    /// A provider was removed.
    ProviderStopped {
        /// Where it was.
        route: RouteKey,
    },
    /// An actor was bound to a capability (locally or for a remote provider).
    BindingSet {
        /// Module key.
        actor: ActorKey,
        /// The binding's route.
        route: RouteKey,
    },
    /// A binding was removed.
    BindingRemoved {
        /// Module key.
        actor: ActorKey,
        /// The binding's route.
        route: RouteKey,
    },
    /// An actor's health changed (sent on changes only, not every round).
    ActorHealth {
        /// Module key.
        actor: ActorKey,
        /// Healthy now?
        healthy: bool,
        /// Why not, if not.
        message: String,
    },
}
