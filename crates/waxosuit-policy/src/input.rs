//! The input documents: what a policy sees as `input` at each decision
//! point. Field names are the JSON names; `docs/policy.md` shows an example
//! of each.
//!
//! They only serialize: the host fills them and hands
//! `serde_json::to_value(&input)` to [`Policy`](crate::Policy). Nothing in
//! them is a secret the policy should not see (the raw token is already
//! public inside the module), and [`InvokeInput`] never carries the call's
//! payload.

use std::collections::BTreeMap;

use serde::Serialize;

/// `input` of [`DecisionPoint::Start`](crate::DecisionPoint::Start): may
/// this signed module start as an actor? Asked after the signature, issuer
/// and module hash have been verified, so the facts here are checked facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StartInput {
    /// The raw JWT embedded in the module, byte for byte, for policies that
    /// inspect it themselves (OPA's `io.jwt.*` builtins; the embedded engine
    /// has none, so embedded policies read `claims`).
    pub token: String,
    /// The decoded JWT payload, with the JWT's own field names: `iss` (the
    /// issuing account, `A…`), `sub` (the module's key, `M…`), `iat`, `exp`,
    /// `nbf` (seconds since the epoch, when present), `jti`, and `wascap`
    /// with the module's `name`, `hash`, `tags`, `caps`, `rev`, `ver`, …
    pub claims: serde_json::Value,
    /// Facts about the module file itself.
    pub module: ModuleFacts,
    /// Where the module came from: the path the host was given (manifest or
    /// command line), or for a module not read from a file, a short
    /// description chosen by the host.
    pub source: String,
    /// The host deciding.
    pub host: HostFacts,
}

/// Facts about a module, computed by the host from its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModuleFacts {
    /// Upper-case hex SHA-256 of the module without its signature section:
    /// the value the claims' `wascap.hash` must equal.
    pub hash: String,
    /// Size of the module file in bytes, signature included.
    pub size: u64,
}

/// `input` of [`DecisionPoint::Invoke`](crate::DecisionPoint::Invoke): may
/// this call go through? Built only when the decision cache misses, and
/// cached per (actor, capability, binding, operation), so a policy at this
/// point must decide from those four (and the other facts here, which are
/// fixed for a running actor), never from anything that varies per call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvokeInput {
    /// The actor on this host that makes or receives the call.
    pub actor: ActorFacts,
    /// The other side: a capability id (`wascc:keyvalue`), or for a call
    /// between actors, the other actor's public key (`M…`).
    pub capability: String,
    /// The binding name the call goes through (`default` unless named).
    pub binding: String,
    /// The operation, e.g. `Get`, `Set`, `PerformRequest`, `HandleRequest`.
    /// Named by the caller, which may be an untrusted guest.
    pub operation: String,
    /// Which way the call goes, seen from [`actor`](InvokeInput::actor).
    pub direction: Direction,
    /// The host deciding.
    pub host: HostFacts,
}

/// What the host knows about an actor, from its verified claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActorFacts {
    /// The actor's public key (`M…`, the claims' `sub`).
    pub key: String,
    /// The name in its claims (`wascap.name`); empty when the claims give
    /// none.
    pub name: String,
    /// The account that signed it (`A…`, the claims' `iss`).
    pub issuer: String,
    /// The capability ids its claims grant (`wascap.caps`).
    pub caps: Vec<String>,
    /// The tags in its claims (`wascap.tags`).
    pub tags: Vec<String>,
}

/// Which way a call goes, seen from the actor in [`InvokeInput::actor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// `"outbound"`: the actor calls a capability or another actor.
    Outbound,
    /// `"inbound"`: a capability (e.g. the HTTP server delivering a
    /// request) or another actor delivers a call to the actor.
    Inbound,
}

/// `input` of [`DecisionPoint::Provider`](crate::DecisionPoint::Provider):
/// may this signed provider archive load? Asked after its signature and
/// library hash have been verified, before the library is loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProviderInput {
    /// The archive's raw JWT, byte for byte.
    pub token: String,
    /// The decoded JWT payload, with the JWT's own field names (`iss`,
    /// `sub`, `iat`, `exp`, `jti`, and the archive's metadata).
    pub claims: serde_json::Value,
    /// The capability id the archive provides (`acme:inventory`).
    pub capability: String,
    /// Where the archive came from: the path the host was given.
    pub source: String,
    /// The host deciding.
    pub host: HostFacts,
}

/// `input` of [`DecisionPoint::Command`](crate::DecisionPoint::Command): may
/// this lattice command run on this host? Asked after the command's
/// signature has been verified.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommandInput {
    /// The public key that signed the command (an `N…` host or `A…`
    /// account key).
    pub signer: String,
    /// The command itself, as JSON (its kind and arguments).
    pub command: serde_json::Value,
    /// The host deciding.
    pub host: HostFacts,
}

/// The host that asks, so that one policy can serve many hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// The host's public key (`N…`) when it has one (in a lattice); `null`
    /// otherwise.
    pub id: Option<String>,
    /// The host's labels: the manifest's `labels` plus the host's own
    /// `hostcore.*` ones.
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            id: None,
            labels: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
        }
    }

    #[test]
    fn invoke_input_serializes_with_documented_names() {
        let input = InvokeInput {
            actor: ActorFacts {
                key: "MACTOR".into(),
                name: "kvcounter".into(),
                issuer: "AISSUER".into(),
                caps: vec!["wascc:keyvalue".into()],
                tags: vec!["approved".into()],
            },
            capability: "wascc:keyvalue".into(),
            binding: "default".into(),
            operation: "Set".into(),
            direction: Direction::Outbound,
            host: host(),
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({
                "actor": {
                    "key": "MACTOR", "name": "kvcounter", "issuer": "AISSUER",
                    "caps": ["wascc:keyvalue"], "tags": ["approved"]
                },
                "capability": "wascc:keyvalue",
                "binding": "default",
                "operation": "Set",
                "direction": "outbound",
                "host": { "id": null, "labels": { "region": "eu" } }
            })
        );
        assert_eq!(
            serde_json::to_value(Direction::Inbound).unwrap(),
            json!("inbound")
        );
    }

    #[test]
    fn start_provider_and_command_inputs_serialize_with_documented_names() {
        let start = StartInput {
            token: "a.b.c".into(),
            claims: json!({ "iss": "A", "sub": "M" }),
            module: ModuleFacts {
                hash: "AB12".into(),
                size: 42,
            },
            source: "./build/a.wasm".into(),
            host: HostFacts {
                id: Some("NHOST".into()),
                labels: BTreeMap::new(),
            },
        };
        assert_eq!(
            serde_json::to_value(&start).unwrap(),
            json!({
                "token": "a.b.c",
                "claims": { "iss": "A", "sub": "M" },
                "module": { "hash": "AB12", "size": 42 },
                "source": "./build/a.wasm",
                "host": { "id": "NHOST", "labels": {} }
            })
        );
        let provider = ProviderInput {
            capability: "acme:inventory".into(),
            ..ProviderInput::default()
        };
        let value = serde_json::to_value(&provider).unwrap();
        for field in ["token", "claims", "capability", "source", "host"] {
            assert!(value.get(field).is_some(), "{field} in {value}");
        }
        let command = CommandInput {
            signer: "NSIGNER".into(),
            command: json!({ "kind": "stop_actor" }),
            host: host(),
        };
        assert_eq!(
            serde_json::to_value(&command).unwrap(),
            json!({
                "signer": "NSIGNER",
                "command": { "kind": "stop_actor" },
                "host": { "id": null, "labels": { "region": "eu" } }
            })
        );
    }
}
