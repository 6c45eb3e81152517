//! Media types and annotations: how an actor and a provider archive look in
//! a registry, and which older layouts a pull still accepts.

use std::collections::BTreeMap;
use std::fmt;

/// The OCI image manifest every push writes.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's schema 2 manifest, which older registries and tools still
/// serve for the same content; accepted on pull.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// An OCI image index (a multi-platform image); refused with its name.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's manifest list; refused like an index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The CNCF Wasm OCI artifact's config media type.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The CNCF Wasm OCI artifact's layer: the module's bytes, as signed.
pub const WASM_LAYER: &str = "application/wasm";
/// A provider archive's config: a small JSON object naming the capability
/// and the targets the archive holds libraries for.
pub const PAR_CONFIG: &str = "application/vnd.waxosuit.provider-archive.config.v1+json";
/// A provider archive's layer: the `.par` file's bytes, as signed.
pub const PAR_LAYER: &str = "application/vnd.waxosuit.provider-archive.layer.v1+par";

/// Actor layer types earlier hosts pushed (wasmCloud's and waSCC's), which a
/// pull still accepts. The bytes are verified exactly like ours.
pub const LEGACY_ACTOR_LAYERS: [&str; 2] = [
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];
/// wasmCloud's provider archive layer, accepted on pull; the archive must
/// still be one this host can read and verify.
pub const LEGACY_PAR_LAYERS: [&str; 1] =
    ["application/vnd.wasmcloud.provider.archive.layer.v1+par"];

/// Annotation: the claims' name.
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Annotation: the claims' version.
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
/// Annotation: when the artifact was pushed (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Annotation: the issuer's public key (an account key, `A…`).
pub const ANNOTATION_ISSUER: &str = "dev.waxosuit.claims.issuer";
/// Annotation: the subject's public key (a module key `M…`, or a
/// provider's service key `V…`).
pub const ANNOTATION_SUBJECT: &str = "dev.waxosuit.claims.subject";
/// Annotation: a provider archive's capability id.
pub const ANNOTATION_CAPABILITY: &str = "dev.waxosuit.capability";

/// What an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A signed actor module (`.wasm`).
    Actor,
    /// A signed provider archive (`.par`).
    ProviderArchive,
}

impl ArtifactKind {
    /// The layer media type a push writes.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            ArtifactKind::Actor => WASM_LAYER,
            ArtifactKind::ProviderArchive => PAR_LAYER,
        }
    }

    /// The config media type a push writes.
    pub fn config_media_type(self) -> &'static str {
        match self {
            ArtifactKind::Actor => WASM_CONFIG,
            ArtifactKind::ProviderArchive => PAR_CONFIG,
        }
    }

    /// The layer media types a pull accepts for this kind.
    pub fn accepted_layers(self) -> Vec<&'static str> {
        match self {
            ArtifactKind::Actor => std::iter::once(WASM_LAYER)
                .chain(LEGACY_ACTOR_LAYERS)
                .collect(),
            ArtifactKind::ProviderArchive => std::iter::once(PAR_LAYER)
                .chain(LEGACY_PAR_LAYERS)
                .collect(),
        }
    }

    /// The kind a layer media type holds, if it is one this host reads.
    pub fn of_layer(media_type: &str) -> Option<ArtifactKind> {
        [ArtifactKind::Actor, ArtifactKind::ProviderArchive]
            .into_iter()
            .find(|kind| kind.accepted_layers().contains(&media_type))
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Actor => "actor",
            ArtifactKind::ProviderArchive => "provider archive",
        })
    }
}

/// What the claims say about an artifact, written into its manifest's
/// annotations so a registry's UI and `waxosuit pull --json` show it
/// without downloading the layer. Never trusted: the layer's own signed
/// claims are what the host verifies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimsSummary {
    /// The claims' name.
    pub name: Option<String>,
    /// The claims' version.
    pub version: Option<String>,
    /// The issuer's public key.
    pub issuer: String,
    /// The subject's public key (module or provider service key).
    pub subject: String,
    /// A provider archive's capability id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
}

impl ClaimsSummary {
    /// The manifest annotations for these claims, plus the creation time.
    pub fn annotations(&self, created: std::time::SystemTime) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(name) = &self.name {
            out.insert(ANNOTATION_TITLE.to_string(), name.clone());
        }
        if let Some(version) = &self.version {
            out.insert(ANNOTATION_VERSION.to_string(), version.clone());
        }
        out.insert(ANNOTATION_ISSUER.to_string(), self.issuer.clone());
        out.insert(ANNOTATION_SUBJECT.to_string(), self.subject.clone());
        if let Some(capability) = &self.capability {
            out.insert(ANNOTATION_CAPABILITY.to_string(), capability.clone());
        }
        out.insert(
            ANNOTATION_CREATED.to_string(),
            humantime::format_rfc3339_seconds(created).to_string(),
        );
        out
    }

    /// Reads annotations back (as a registry returned them: unverified).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> ClaimsSummary {
        let get = |key: &str| annotations.get(key).cloned();
        ClaimsSummary {
            name: get(ANNOTATION_TITLE),
            version: get(ANNOTATION_VERSION),
            issuer: get(ANNOTATION_ISSUER).unwrap_or_default(),
            subject: get(ANNOTATION_SUBJECT).unwrap_or_default(),
            capability: get(ANNOTATION_CAPABILITY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_accepted_layer_type_maps_to_one_kind() {
        assert_eq!(
            ArtifactKind::of_layer(WASM_LAYER),
            Some(ArtifactKind::Actor)
        );
        for legacy in LEGACY_ACTOR_LAYERS {
            assert_eq!(ArtifactKind::of_layer(legacy), Some(ArtifactKind::Actor));
        }
        assert_eq!(
            ArtifactKind::of_layer(PAR_LAYER),
            Some(ArtifactKind::ProviderArchive)
        );
        assert_eq!(
            ArtifactKind::of_layer(LEGACY_PAR_LAYERS[0]),
            Some(ArtifactKind::ProviderArchive)
        );
        assert_eq!(
            ArtifactKind::of_layer("application/vnd.oci.image.layer.v1.tar+gzip"),
            None
        );
    }

    #[test]
    fn claims_round_trip_through_annotations() {
        let claims = ClaimsSummary {
            name: Some("hello".into()),
            version: Some("1.2.0".into()),
            issuer: "AISSUER".into(),
            subject: "MMODULE".into(),
            capability: None,
        };
        let annotations = claims.annotations(std::time::UNIX_EPOCH);
        assert_eq!(annotations[ANNOTATION_TITLE], "hello");
        assert_eq!(annotations[ANNOTATION_CREATED], "1970-01-01T00:00:00Z");
        assert_eq!(ClaimsSummary::from_annotations(&annotations), claims);
    }
}
