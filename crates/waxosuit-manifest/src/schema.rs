//! The manifest as written: serde types that accept every spelling the file
//! format allows. `validate.rs` checks the rules that span fields and turns
//! these into the public types.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Unexpected, Visitor};

use crate::tree::{Node, float_text};

/// `null` for a whole section (`actors:` with nothing after it) reads as an
/// empty section, which is what a YAML author leaving it blank means.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    pub(crate) labels: Option<BTreeMap<String, Scalar>>,
    pub(crate) actors: Option<Vec<RawActor>>,
    pub(crate) capabilities: Option<Vec<RawCapability>>,
    pub(crate) bindings: Option<Vec<RawBinding>>,
    pub(crate) http_filters: Option<Vec<RawFilter>>,
    pub(crate) policy: Option<RawPolicy>,
}

/// An actor entry: a bare path, or an object with a path and limits.
#[derive(Debug)]
pub(crate) struct RawActor {
    pub(crate) path: String,
    pub(crate) limits: Option<RawLimits>,
    /// Written as a mapping, so errors about the path point at `.path`.
    pub(crate) object: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActorObject {
    path: String,
    limits: Option<RawLimits>,
}

// Hand-written rather than `#[serde(untagged)]`: untagged enums replace the
// inner error (an unknown limit, a negative number) with "data did not match
// any variant", losing the field path.
impl<'de> Deserialize<'de> for RawActor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ActorVisitor;

        impl<'de> Visitor<'de> for ActorVisitor {
            type Value = RawActor;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a path to a signed actor module, or a mapping with `path` and `limits`",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawActor, E> {
                Ok(RawActor {
                    path: v.to_owned(),
                    limits: None,
                    object: false,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawActor, A::Error> {
                let object =
                    RawActorObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawActor {
                    path: object.path,
                    limits: object.limits,
                    object: true,
                })
            }
        }

        deserializer.deserialize_any(ActorVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) max_memory_mib: Option<Count<u32>>,
    pub(crate) deadline_ms: Option<Count<u64>>,
    pub(crate) fuel: Option<Count<u64>>,
    pub(crate) max_payload_kib: Option<Count<u32>>,
    pub(crate) min_instances: Option<Count<u32>>,
    pub(crate) max_instances: Option<Count<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapability {
    pub(crate) id: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) binding_name: Option<String>,
    pub(crate) provider: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBinding {
    pub(crate) actor: String,
    pub(crate) capability: String,
    // waSCC's capability entries say `binding_name`, its bindings `binding`;
    // authors mix them up, and both mean the same thing here.
    #[serde(alias = "binding_name")]
    pub(crate) binding: Option<String>,
    pub(crate) values: Option<BTreeMap<String, Scalar>>,
    pub(crate) filters: Option<Vec<RawFilter>>,
}

/// A Proxy-Wasm filter entry: a bare path (or registry reference), or an
/// object with a path and the filter's configuration, upstreams and limits.
#[derive(Debug)]
pub(crate) struct RawFilter {
    pub(crate) path: String,
    /// Kept as a tree: a string is handed to the filter as is, anything else
    /// as its JSON text, which `validate.rs` produces. `null` reads as `None`.
    pub(crate) config: Option<Node>,
    pub(crate) upstreams: Option<BTreeMap<String, String>>,
    pub(crate) limits: Option<RawFilterLimits>,
    /// Written as a mapping, so errors about the path point at `.path`.
    pub(crate) object: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilterObject {
    path: String,
    config: Option<Node>,
    upstreams: Option<BTreeMap<String, String>>,
    limits: Option<RawFilterLimits>,
}

// Hand-written for the same reason as `RawActor`'s.
impl<'de> Deserialize<'de> for RawFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FilterVisitor;

        impl<'de> Visitor<'de> for FilterVisitor {
            type Value = RawFilter;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a path to a signed Proxy-Wasm filter module, or a mapping with `path`, \
                     `config`, `upstreams` and `limits`",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawFilter, E> {
                Ok(RawFilter {
                    path: v.to_owned(),
                    config: None,
                    upstreams: None,
                    limits: None,
                    object: false,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawFilter, A::Error> {
                let object =
                    RawFilterObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawFilter {
                    path: object.path,
                    config: object.config,
                    upstreams: object.upstreams,
                    limits: object.limits,
                    object: true,
                })
            }
        }

        deserializer.deserialize_any(FilterVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilterLimits {
    pub(crate) max_memory_mib: Option<Count<u32>>,
    pub(crate) deadline_ms: Option<Count<u64>>,
    pub(crate) fuel: Option<Count<u64>>,
    pub(crate) max_body_kib: Option<Count<u32>>,
}

/// The `policy` section. Which fields go together is checked in
/// `validate.rs`, so that each mistake gets its own message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub(crate) policies: Option<Vec<String>>,
    pub(crate) data: Option<Vec<String>>,
    pub(crate) opa_url: Option<String>,
    pub(crate) opa_timeout_ms: Option<Count<u64>>,
    pub(crate) cache_ttl_ms: Option<Count<u64>>,
    pub(crate) decision_log: Option<String>,
}

/// A string-valued map entry. YAML turns `PORT: 8080` into a number and
/// `TLS: true` into a boolean; configuration is strings, so both are taken as
/// their text instead of being an error.
#[derive(Debug)]
pub(crate) struct Scalar(pub(crate) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }

            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }

            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(float_text(v)))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A limit: a whole number, or a string holding one. Strings are accepted
/// because `${VAR}` expansion always produces a string, and
/// `fuel: ${FUEL:1000000}` should work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Count<T>(pub(crate) T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Count<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor<T>(PhantomData<T>);

        impl<T: TryFrom<u64>> Visitor<'_> for CountVisitor<T> {
            type Value = Count<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Say the bound, since a u32 limit refuses what a u64 accepts.
                let max = if T::try_from(u64::from(u32::MAX) + 1).is_ok() {
                    u64::MAX
                } else {
                    u64::from(u32::MAX)
                };
                write!(f, "a whole number from 0 to {max}")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count<T>, E> {
                T::try_from(v)
                    .map(Count)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count<T>, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
                }
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count<T>, E> {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count<T>, E> {
                match v.trim().parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }

        deserializer.deserialize_any(CountVisitor(PhantomData))
    }
}
