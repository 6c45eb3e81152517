//! Self-description of capability providers.
//!
//! When a provider is loaded the host calls it with
//! [`OP_GET_CAPABILITY_DESCRIPTOR`] (as [`SYSTEM_ACTOR`](crate::SYSTEM_ACTOR),
//! empty payload) and decodes the reply as a [`CapabilityDescriptor`]; the
//! descriptor's `id` is what the provider is registered under. A provider that
//! cannot answer is not loaded.
//!
//! ```
//! use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
//! use waxosuit_codec::keyvalue;
//!
//! let descriptor = CapabilityDescriptor::builder()
//!     .id(keyvalue::CAPABILITY_ID)
//!     .name("In-memory key-value store")
//!     .version("0.1.0")
//!     .revision(1)
//!     .long_description("Keeps values in a HashMap; for tests.")
//!     .with_operation(keyvalue::OP_GET, OperationDirection::ToProvider, "Reads a value")
//!     .build();
//! assert_eq!(descriptor.supported_operations.len(), 1);
//! ```

use serde::{Deserialize, Serialize, Serializer};

use crate::wire;

/// Host → provider: describe yourself. Every provider must answer it.
pub const OP_GET_CAPABILITY_DESCRIPTOR: &str = "GetCapabilityDescriptor";

/// What a provider is and which operations it supports.
///
/// Field names are snake_case on the wire: unlike the capability payloads,
/// the original descriptor carried no `rename_all`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CapabilityDescriptor {
    /// The capability id, e.g. `wascc:messaging` or `vendor:thing`.
    pub id: String,
    /// A short human-readable name, naming the implementation (e.g. "NATS").
    pub name: String,
    /// The provider's version, semver by convention.
    pub version: String,
    /// A monotonically increasing revision, used to compare builds.
    pub revision: u32,
    /// A longer, documentation-friendly description.
    pub long_description: String,
    /// The operations the provider handles or emits.
    pub supported_operations: Vec<OperationDescriptor>,
}

impl CapabilityDescriptor {
    /// Starts building a descriptor; unset fields stay empty/zero.
    pub fn builder() -> CapabilityDescriptorBuilder {
        CapabilityDescriptorBuilder::default()
    }
}

/// Fluent builder for [`CapabilityDescriptor`], obtained from
/// [`CapabilityDescriptor::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CapabilityDescriptorBuilder {
    descriptor: CapabilityDescriptor,
}

impl CapabilityDescriptorBuilder {
    /// Sets the capability id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.descriptor.id = id.into();
        self
    }

    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.descriptor.name = name.into();
        self
    }

    /// Sets the long description.
    pub fn long_description(mut self, description: impl Into<String>) -> Self {
        self.descriptor.long_description = description.into();
        self
    }

    /// Sets the version string.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.descriptor.version = version.into();
        self
    }

    /// Sets the revision number.
    pub fn revision(mut self, revision: u32) -> Self {
        self.descriptor.revision = revision;
        self
    }

    /// Appends a supported operation.
    pub fn with_operation(
        mut self,
        name: impl Into<String>,
        direction: OperationDirection,
        doctext: impl Into<String>,
    ) -> Self {
        self.descriptor
            .supported_operations
            .push(OperationDescriptor::new(name, direction, doctext));
        self
    }

    /// Adds several operations of one direction, e.g. a contract's
    /// `OPERATIONS` table.
    pub fn with_operations(mut self, direction: OperationDirection, ops: &[(&str, &str)]) -> Self {
        for (name, doctext) in ops {
            self = self.with_operation(*name, direction, *doctext);
        }
        self
    }

    /// Returns the finished descriptor.
    #[must_use]
    pub fn build(self) -> CapabilityDescriptor {
        self.descriptor
    }
}

/// One operation of a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationDescriptor {
    /// The operation name, unique within the capability id.
    pub name: String,
    /// Who sends the operation to whom.
    pub direction: OperationDirection,
    /// Documentation for the operation.
    pub doctext: String,
}

impl OperationDescriptor {
    /// Creates an operation descriptor.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        direction: OperationDirection,
        doctext: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            direction,
            doctext: doctext.into(),
        }
    }
}

/// Who sends an operation.
///
/// In MessagePack this is written `{index: nil}` (`ToActor` = 0,
/// `ToProvider` = 1, `Both` = 2), as rmp-serde 0.14 did; human-readable
/// formats get `"to_actor"`, `"to_provider"`, `"both"`. Decoding accepts the
/// index, the snake_case name and the Rust variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationDirection {
    /// Provider → actor (e.g. `HandleRequest`).
    #[serde(alias = "ToActor")]
    ToActor,
    /// Actor → provider (e.g. `Get`).
    #[serde(alias = "ToProvider")]
    ToProvider,
    /// Either way.
    #[serde(alias = "Both")]
    Both,
}

impl Serialize for OperationDirection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (index, name) = match self {
            Self::ToActor => (0, "to_actor"),
            Self::ToProvider => (1, "to_provider"),
            Self::Both => (2, "both"),
        };
        wire::serialize_unit_variant(serializer, "OperationDirection", index, name)
    }
}
