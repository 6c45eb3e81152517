//! The JSON values that cross the plugin boundary, shared by the SDK (plugin
//! side) and `waxosuit-plugin-host` (host side) so both read and write the
//! same shapes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use waxosuit_provider::{BindRequest, Health, ProviderError};

/// A bind request as JSON (`BindRequest` itself is not serializable, and the
/// wire shape must not change when that Rust type does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBind {
    /// The actor's `M…` key.
    pub actor: String,
    /// The binding name.
    pub binding: String,
    /// Configuration values.
    #[serde(default)]
    pub values: HashMap<String, String>,
}

impl From<BindRequest> for WireBind {
    fn from(r: BindRequest) -> Self {
        WireBind {
            actor: r.actor,
            binding: r.binding,
            values: r.values,
        }
    }
}

impl From<WireBind> for BindRequest {
    fn from(w: WireBind) -> Self {
        BindRequest {
            actor: w.actor,
            binding: w.binding,
            values: w.values,
        }
    }
}

/// Health as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireHealth {
    /// Whether the provider can serve.
    pub healthy: bool,
    /// Why not, or any note.
    #[serde(default)]
    pub message: String,
}

impl From<Health> for WireHealth {
    fn from(h: Health) -> Self {
        WireHealth {
            healthy: h.healthy,
            message: h.message,
        }
    }
}

impl From<WireHealth> for Health {
    fn from(h: WireHealth) -> Self {
        Health {
            healthy: h.healthy,
            message: h.message,
        }
    }
}

/// A [`ProviderError`] as JSON: `kind` names the variant, the other fields
/// are the variant's (empty when it has no such field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WireError {
    /// `not_bound`, `unknown_operation`, `bad_payload`, `config`,
    /// `unavailable`, `backend` or `internal`.
    pub kind: String,
    /// The error's full text, for kinds the reader does not know.
    pub message: String,
    /// Capability id.
    pub capid: String,
    /// Actor key.
    pub actor: String,
    /// Binding name.
    pub binding: String,
    /// Operation.
    pub operation: String,
    /// Configuration key.
    pub key: String,
    /// Reason.
    pub reason: String,
}

impl From<&ProviderError> for WireError {
    fn from(e: &ProviderError) -> Self {
        let mut w = WireError {
            message: e.to_string(),
            ..WireError::default()
        };
        match e {
            ProviderError::NotBound {
                capid,
                actor,
                binding,
            } => {
                w.kind = "not_bound".into();
                (w.capid, w.actor, w.binding) = (capid.clone(), actor.clone(), binding.clone());
            }
            ProviderError::UnknownOperation { capid, operation } => {
                w.kind = "unknown_operation".into();
                (w.capid, w.operation) = (capid.clone(), operation.clone());
            }
            ProviderError::BadPayload {
                capid,
                operation,
                reason,
            } => {
                w.kind = "bad_payload".into();
                (w.capid, w.operation, w.reason) =
                    (capid.clone(), operation.clone(), reason.clone());
            }
            ProviderError::Config {
                capid,
                actor,
                key,
                reason,
            } => {
                w.kind = "config".into();
                (w.capid, w.actor, w.key, w.reason) =
                    (capid.clone(), actor.clone(), key.clone(), reason.clone());
            }
            ProviderError::Unavailable { capid, reason } => {
                w.kind = "unavailable".into();
                (w.capid, w.reason) = (capid.clone(), reason.clone());
            }
            ProviderError::Backend { capid, message } => {
                w.kind = "backend".into();
                (w.capid, w.message) = (capid.clone(), message.clone());
            }
            ProviderError::Internal { capid, message } => {
                w.kind = "internal".into();
                (w.capid, w.message) = (capid.clone(), message.clone());
            }
            // A variant added after this SDK was built still reaches the
            // host with its full text.
            _ => w.kind = "internal".into(),
        }
        w
    }
}

impl WireError {
    /// The error as a [`ProviderError`]; `fallback_capid` fills a missing
    /// capability id (a plugin must not blame another capability).
    pub fn into_provider_error(self, fallback_capid: &str) -> ProviderError {
        let capid = if self.capid.is_empty() {
            fallback_capid.to_string()
        } else {
            self.capid
        };
        match self.kind.as_str() {
            "not_bound" => ProviderError::NotBound {
                capid,
                actor: self.actor,
                binding: self.binding,
            },
            "unknown_operation" => ProviderError::UnknownOperation {
                capid,
                operation: self.operation,
            },
            "bad_payload" => ProviderError::BadPayload {
                capid,
                operation: self.operation,
                reason: self.reason,
            },
            "config" => ProviderError::Config {
                capid,
                actor: self.actor,
                key: self.key,
                reason: self.reason,
            },
            "unavailable" => ProviderError::Unavailable {
                capid,
                reason: self.reason,
            },
            "backend" => ProviderError::Backend {
                capid,
                message: self.message,
            },
            _ => ProviderError::Internal {
                capid,
                message: self.message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_survives_the_round_trip() {
        let errors = vec![
            ProviderError::not_bound("acme:x", "MA", "default"),
            ProviderError::unknown_operation("acme:x", "Nope"),
            ProviderError::BadPayload {
                capid: "acme:x".into(),
                operation: "Get".into(),
                reason: "short".into(),
            },
            ProviderError::Config {
                capid: "acme:x".into(),
                actor: "MA".into(),
                key: "URL".into(),
                reason: "missing".into(),
            },
            ProviderError::Unavailable {
                capid: "acme:x".into(),
                reason: "down".into(),
            },
            ProviderError::backend("acme:x", "out of stock"),
            ProviderError::Internal {
                capid: "acme:x".into(),
                message: "boom".into(),
            },
        ];
        for e in errors {
            let json = serde_json::to_vec(&WireError::from(&e)).unwrap();
            let back: WireError = serde_json::from_slice(&json).unwrap();
            assert_eq!(back.into_provider_error("other:cap"), e);
        }
    }

    #[test]
    fn an_unknown_kind_becomes_internal_with_the_text() {
        let w = WireError {
            kind: "from_the_future".into(),
            message: "new failure".into(),
            ..WireError::default()
        };
        let e = w.into_provider_error("acme:x");
        assert!(
            matches!(&e, ProviderError::Internal { capid, message } if capid == "acme:x" && message == "new failure"),
            "{e}"
        );
    }
}
