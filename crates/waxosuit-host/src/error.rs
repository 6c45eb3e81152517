//! The host's error type.

use waxosuit_claims::ClaimsError;
use waxosuit_provider::ProviderError;
use waxosuit_runtime::RuntimeError;

/// How to grant `capability` when re-signing: a capability id or an actor's
/// module key is passed to `--cap` as is; a call alias is not a grant (the
/// CLI refuses it), the callee's module key is.
fn grant_hint(capability: &str) -> String {
    let is_key = waxosuit_runtime::ActorKey::is_valid(capability);
    if waxosuit_claims::caps::is_valid_capability_id(capability) || is_key {
        format!("re-sign it with `--cap {capability}` if it should have it")
    } else {
        format!(
            "`{capability}` is a call alias: to let it call that actor, re-sign it with `--cap` \
             and the callee's module key (M…, shown by `waxosuit claims inspect` on the callee)"
        )
    }
}

fn filter_abi_message(
    origin: &str,
    filter: &str,
    name: &str,
    abi: Option<&waxosuit_claims::ProxyWasmAbi>,
) -> String {
    let what = match abi {
        None => "it is signed as a Proxy-Wasm filter but exports no Proxy-Wasm ABI marker \
                 (`proxy_abi_version_0_2_1` or `proxy_abi_version_0_2_0`), so it is not a \
                 Proxy-Wasm module"
            .to_string(),
        Some(abi) => format!(
            "it exports `{}`: Proxy-Wasm ABI {abi} is not supported",
            abi.export_name()
        ),
    };
    format!(
        "module {origin} was refused as a Proxy-Wasm filter: {name} ({filter}): {what}; rebuild \
         it with a proxy-wasm SDK for ABI 0.2.x and sign it again with `waxosuit claims sign`"
    )
}

/// What went wrong in a host operation. Each message names the actor (by
/// name and key), the capability and binding involved, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The module's signature was refused.
    #[error("actor module {origin} was refused: {error}")]
    Claims {
        /// Where the module came from (a path, or "update").
        origin: String,
        /// Why (its text is part of this error's message).
        error: Box<ClaimsError>,
    },
    /// A module signed as a Proxy-Wasm filter (its claims carry
    /// [`waxosuit_claims::PROXY_WASM_FILTER_TAG`]) was given as an actor.
    #[error(
        "module {origin} was refused as an actor: {name} ({actor}) is a Proxy-Wasm filter: list \
         it under `filters:` of a wascc:http_server binding or under `http_filters:` in the \
         manifest, not under `actors:`"
    )]
    FilterAsActor {
        /// Where the module came from (a path, or "update").
        origin: String,
        /// Module key.
        actor: String,
        /// Name from the claims.
        name: String,
    },
    /// A module signed as an actor (its claims lack
    /// [`waxosuit_claims::PROXY_WASM_FILTER_TAG`]) was given as a Proxy-Wasm
    /// filter.
    #[error(
        "module {origin} was refused as a Proxy-Wasm filter: {name} ({filter}) is signed as an \
         actor, not as a Proxy-Wasm filter: sign the filter module with `waxosuit claims sign` \
         (which tags Proxy-Wasm modules)"
    )]
    NotAFilter {
        /// Where the module came from.
        origin: String,
        /// Module key.
        filter: String,
        /// Name from the claims.
        name: String,
    },
    /// A module signed as a Proxy-Wasm filter exports no supported ABI
    /// marker: none at all (`abi` is `None`), or only an unsupported one
    /// (0.1.0).
    #[error("{}", filter_abi_message(.origin, .filter, .name, .abi.as_ref()))]
    FilterAbi {
        /// Where the module came from.
        origin: String,
        /// Module key.
        filter: String,
        /// Name from the claims.
        name: String,
        /// The marker the module exports, if any.
        abi: Option<waxosuit_claims::ProxyWasmAbi>,
    },
    /// The runtime could not load or run the actor.
    #[error("actor `{name}`: {error}")]
    Runtime {
        /// Actor key.
        actor: String,
        /// Actor name.
        name: String,
        /// The runtime's error (its text is part of this error's message).
        error: Box<RuntimeError>,
    },
    /// An actor with this key already runs here.
    #[error(
        "actor {name} ({actor}) is already running in this host; use an update to replace its \
         module, or remove it first"
    )]
    DuplicateActor {
        /// Actor key.
        actor: String,
        /// Actor name.
        name: String,
    },
    /// Policy refused (or could not decide, and so refused) a start or an
    /// invocation.
    #[error("actor {name} ({actor}): {source}")]
    Policy {
        /// Actor key.
        actor: String,
        /// Actor name.
        name: String,
        /// The decision, naming the point, the policy and the reason.
        #[source]
        source: Box<waxosuit_policy::PolicyDenied>,
    },
    /// Another actor already answers to this `call_alias`.
    #[error(
        "actor {name} ({actor}) claims the call alias `{alias}`, which actor {owner} already \
         has (in this host or elsewhere in the lattice); an alias must name one actor: sign one \
         of them with another `--call-alias`, or stop {owner} first"
    )]
    DuplicateAlias {
        /// The alias.
        alias: String,
        /// The refused actor's key.
        actor: String,
        /// The refused actor's name.
        name: String,
        /// The key of the actor that has the alias.
        owner: String,
    },
    /// No actor with this key (or name) runs here.
    #[error("no actor `{actor}` is running in this host")]
    ActorNotFound {
        /// The key or name asked for.
        actor: String,
    },
    /// A name matched several actors.
    #[error("the name `{name}` matches several actors ({keys}); use the actor's public key")]
    AmbiguousActorName {
        /// The name.
        name: String,
        /// The matching keys, comma separated.
        keys: String,
    },
    /// The authorizer refused to load the actor.
    #[error("the host's authorization policy refused to load actor {name} ({actor})")]
    LoadDenied {
        /// Actor key.
        actor: String,
        /// Actor name.
        name: String,
    },
    /// An update was signed for another module key.
    #[error(
        "the update for actor {expected} is signed for module key {got}; an update must be \
         signed with the same module key as the running actor"
    )]
    UpdateKeyMismatch {
        /// The running actor's key.
        expected: String,
        /// The update's key.
        got: String,
    },
    /// The actor's claims do not grant the capability (and no policy allows it).
    #[error(
        "actor {name} ({actor}) attempted to call `{operation}` on {capability} (binding \
         `{binding}`): permission denied, its signed claims do not include {capability}; {}",
        grant_hint(.capability)
    )]
    PermissionDenied {
        /// Actor key.
        actor: String,
        /// Actor name.
        name: String,
        /// Capability id or target actor.
        capability: String,
        /// Binding name.
        binding: String,
        /// The operation.
        operation: String,
    },
    /// An actor called another with an operation only a capability (or
    /// the host) delivers to actors.
    #[error(
        "actor {name} ({actor}) may not call `{operation}` on actor {target}: only \
         {capability} delivers `{operation}` to actors, and a call from an actor could forge \
         what it vouches for; give the callee an operation of its own for actors to call"
    )]
    DeliveredByCapability {
        /// Caller key.
        actor: String,
        /// Caller name.
        name: String,
        /// The actor called, as the caller named it.
        target: String,
        /// The operation.
        operation: String,
        /// What delivers it.
        capability: String,
    },
    /// The actor has no binding to the capability.
    #[error(
        "actor {name} ({actor}) has no binding to {capability} (binding `{binding}`); add \
         `- {{ actor: {actor}, capability: {capability}, binding: {binding} }}` under \
         `bindings` in the manifest"
    )]
    MissingBinding {
        /// Actor key.
        actor: String,
        /// Actor name.
        name: String,
        /// Capability id.
        capability: String,
        /// Binding name.
        binding: String,
    },
    /// A call to another host of the lattice failed.
    #[error("call to {target} ({operation}) over the lattice failed: {error}")]
    Remote {
        /// The actor or capability called.
        target: String,
        /// The operation.
        operation: String,
        /// The transport's error (its text is part of this error's message).
        #[source]
        error: crate::remote::RemoteError,
    },
    /// No provider is registered for the capability and binding.
    #[error(
        "no provider for {capability} (binding `{binding}`) is registered in this host; declare \
         it under `capabilities` in the manifest"
    )]
    ProviderNotFound {
        /// Capability id.
        capability: String,
        /// Binding name.
        binding: String,
    },
    /// A provider is already registered for the capability and binding.
    #[error("a provider for {capability} (binding `{binding}`) is already registered")]
    DuplicateProvider {
        /// Capability id.
        capability: String,
        /// Binding name.
        binding: String,
    },
    /// The binding exists already; bindings are immutable (remove and re-add).
    #[error(
        "actor {actor} is already bound to {capability} (binding `{binding}`); bindings cannot \
         be changed in place, remove it first"
    )]
    DuplicateBinding {
        /// Actor key.
        actor: String,
        /// Capability id.
        capability: String,
        /// Binding name.
        binding: String,
    },
    /// Another transport is attached to this host already
    /// ([`Host::attach_remote`](crate::Host::attach_remote)).
    #[error(
        "a transport is attached to this host already; a host joins one lattice at a time: \
         leave the current one (drop its attachment) first"
    )]
    AlreadyAttached,
    /// The transport detached from this host (it left the lattice); its
    /// attachment serves nothing any more.
    #[error("the transport left this host; join the lattice again to serve remote calls")]
    Detached,
    /// The provider failed.
    #[error(transparent)]
    Provider {
        /// The provider's error.
        #[from]
        source: ProviderError,
    },
    /// A middleware refused the invocation.
    #[error("middleware refused {operation} on {target}: {refusal}")]
    Middleware {
        /// The target.
        target: String,
        /// The operation.
        operation: String,
        /// The middleware's reason.
        #[source]
        refusal: crate::policy::Refusal,
    },
    /// The actor handled the call but returned an error or failed.
    #[error("actor {name} ({actor}) failed to handle `{operation}`: {message}")]
    ActorFailed {
        /// Actor key.
        actor: String,
        /// Actor name.
        name: String,
        /// The operation.
        operation: String,
        /// The error text.
        message: String,
    },
    /// The host is stopping.
    #[error("the host is shutting down and accepts no new work")]
    ShuttingDown,
}
