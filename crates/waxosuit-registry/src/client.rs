//! Push and pull over the OCI Distribution API: pushes on `oci-client`,
//! pulls on [`crate::fetch`], which bounds every read.
//!
//! The registry is untrusted transport: every manifest and layer is checked
//! against the digest that names it, sizes are bounded before and while
//! downloading, and only manifests of the layouts in [`crate::media`] are
//! accepted. What the bytes *are* (signed, trusted, allowed) is the host's
//! verification's job, exactly as for a local file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};

use crate::auth::CredentialStore;
use crate::error::{RegistryError, classify};
use crate::fetch::{Bounded, Fetcher, Target, read_bounded};
use crate::media::{self, ArtifactKind, ClaimsSummary};
use crate::reference::{ArtifactRef, check_digest, shown};

/// The largest manifest accepted (the limit the OCI distribution
/// specification suggests registries enforce).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The default largest layer pulled: far above any actor, and above
/// provider archives with a few native targets.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;

/// How a registry is reached.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) spoken to over plain HTTP.
    /// Development only: anything on the path can then swap the manifest of
    /// a tag (a pinned digest and the host's signature checks still hold).
    pub insecure: Vec<String>,
    /// The largest layer pulled.
    pub max_artifact_bytes: u64,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long to wait for any read.
    pub read_timeout: Duration,
    /// The longest one push, manifest fetch or layer download may take.
    pub deadline: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(300),
        }
    }
}

/// Bytes moved so far out of the total; reported as a push or pull goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes sent or received.
    pub done: u64,
    /// Bytes expected.
    pub total: u64,
}

/// Called with each [`Transfer`] step.
pub type Progress = Arc<dyn Fn(Transfer) + Send + Sync>;

/// What a push sends.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Actor or provider archive.
    pub kind: ArtifactKind,
    /// The file's bytes, exactly as signed.
    pub bytes: Bytes,
    /// What its claims say, for the annotations.
    pub claims: ClaimsSummary,
    /// A provider archive's targets (`x86_64-linux`, …), for its config.
    pub targets: Vec<String>,
}

/// What a push wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// The reference pushed to.
    pub reference: String,
    /// The manifest's digest: `…@<this>` pins what was pushed.
    pub digest: String,
    /// The layer's digest.
    pub layer_digest: String,
    /// The layer's size in bytes.
    pub size: u64,
    /// The layer's media type.
    pub media_type: String,
    /// Whether the layer was already in the registry (not sent again).
    pub layer_existed: bool,
}

/// A manifest read and accepted: which layer to fetch, and what it claims
/// to be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    /// The manifest's digest.
    pub digest: String,
    /// Actor or provider archive, from the layer's media type.
    pub kind: ArtifactKind,
    /// The layer's media type.
    pub media_type: String,
    /// The layer's digest.
    pub layer_digest: String,
    /// The layer's size in bytes.
    pub size: u64,
    /// The manifest's annotations, read back (unverified).
    pub claims: ClaimsSummary,
}

/// One registry client: connection pool, tokens and credentials for every
/// registry a command talks to.
///
/// The HTTP client is built on first use: loading the system's trust roots
/// costs tens of milliseconds, which a start served from the cache never
/// needs to pay.
#[derive(Clone)]
pub struct Registry {
    client: Arc<std::sync::OnceLock<oci_client::Client>>,
    /// Pulls: every read bounded, every challenge checked where it is
    /// answered.
    fetcher: Arc<std::sync::OnceLock<Fetcher>>,
    /// For the token realm check of a push, made before credentials are
    /// handed to `oci-client`.
    probe: Arc<std::sync::OnceLock<reqwest::Client>>,
    /// Registries whose token realm was checked during this command.
    realms_checked: Arc<tokio::sync::Mutex<std::collections::HashSet<String>>>,
    credentials: CredentialStore,
    options: RegistryOptions,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client with these credentials and options.
    pub fn new(credentials: CredentialStore, options: RegistryOptions) -> Registry {
        Registry {
            client: Arc::new(std::sync::OnceLock::new()),
            fetcher: Arc::new(std::sync::OnceLock::new()),
            probe: Arc::new(std::sync::OnceLock::new()),
            realms_checked: Arc::default(),
            credentials,
            options,
        }
    }

    fn client(&self) -> Result<&oci_client::Client, RegistryError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        // reqwest is built without a compiled-in crypto provider; every
        // HTTPS client of this process uses ring. Installing fails only if
        // one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if self.options.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(self.options.insecure.clone())
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(self.options.connect_timeout),
            read_timeout: Some(self.options.read_timeout),
            user_agent: concat!("waxosuit/", env!("CARGO_PKG_VERSION")),
            // Waxosuit artifacts are single-layer manifests, never indexes.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client =
            oci_client::Client::try_from(config).map_err(|source| RegistryError::Transport {
                reference: String::new(),
                action: "building the HTTP client",
                hint: String::new(),
                source,
            })?;
        Ok(self.client.get_or_init(|| client))
    }

    fn fetcher(&self, reference: &ArtifactRef) -> Result<&Fetcher, RegistryError> {
        if let Some(fetcher) = self.fetcher.get() {
            return Ok(fetcher);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let built = Fetcher::new(&self.options)
            .map_err(|e| self.fail(reference, "building the HTTP client", None, e.into()))?;
        Ok(self.fetcher.get_or_init(|| built))
    }

    /// The pull client, the credentials for `reference`'s registry and
    /// where they came from: what every pull starts with.
    fn puller(
        &self,
        reference: &ArtifactRef,
    ) -> Result<(&Fetcher, RegistryAuth, Option<String>), RegistryError> {
        let (auth, from) = self.auth_for(reference)?;
        Ok((self.fetcher(reference)?, auth, from))
    }

    /// The credentials for `reference`'s registry, and where they came
    /// from.
    fn auth_for(
        &self,
        reference: &ArtifactRef,
    ) -> Result<(RegistryAuth, Option<String>), RegistryError> {
        self.credentials
            .check_scoped()
            .map_err(|source| RegistryError::Credentials {
                reference: reference.to_string(),
                source,
            })?;
        Ok(match self.credentials.for_registry(reference.registry()) {
            Some(creds) => (creds.auth.clone(), Some(creds.source().to_string())),
            None => (RegistryAuth::Anonymous, None),
        })
    }

    /// Whether `registry` is spoken to over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.options.insecure.iter().any(|r| r == registry)
    }

    /// The credentials store this client uses.
    pub fn credentials(&self) -> &CredentialStore {
        &self.credentials
    }

    /// The client, with the credentials for `reference`'s registry stored
    /// in it, and where those came from.
    async fn client_for(
        &self,
        reference: &ArtifactRef,
    ) -> Result<(&oci_client::Client, Option<String>), RegistryError> {
        let client = self.client()?;
        self.credentials
            .check_scoped()
            .map_err(|source| RegistryError::Credentials {
                reference: reference.to_string(),
                source,
            })?;
        let (auth, from) = match self.credentials.for_registry(reference.registry()) {
            Some(creds) => (creds.auth.clone(), Some(creds.source().to_string())),
            None => (RegistryAuth::Anonymous, None),
        };
        if matches!(auth, RegistryAuth::Basic(..)) {
            self.check_realm(reference).await?;
        }
        client
            .store_auth_if_needed(reference.oci().resolve_registry(), &auth)
            .await;
        Ok((client, from))
    }

    fn fail(
        &self,
        reference: &ArtifactRef,
        action: &'static str,
        from: Option<&str>,
        err: OciDistributionError,
    ) -> RegistryError {
        if let OciDistributionError::DigestError(e) = &err {
            return RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: if action.contains("manifest") {
                    "manifest"
                } else {
                    "layer"
                },
                expected: reference.digest().unwrap_or("the named digest").to_string(),
                actual: e.to_string(),
            };
        }
        classify(
            &reference.to_string(),
            reference.registry(),
            action,
            self.is_insecure(reference.registry()),
            from,
            err,
        )
    }

    /// Pushes `artifact` to `reference` (a tag; a digest reference is
    /// refused, since the registry names what it stores), layer and config
    /// first, then the manifest, within [`RegistryOptions::deadline`].
    pub async fn push(
        &self,
        reference: &ArtifactRef,
        artifact: &Artifact,
        progress: Option<Progress>,
    ) -> Result<Pushed, RegistryError> {
        self.within(
            reference,
            "pushing",
            self.push_inner(reference, artifact, progress),
        )
        .await
    }

    async fn push_inner(
        &self,
        reference: &ArtifactRef,
        artifact: &Artifact,
        progress: Option<Progress>,
    ) -> Result<Pushed, RegistryError> {
        if reference.digest().is_some() {
            return Err(RegistryError::InvalidReference {
                reference: reference.to_string(),
                reason: "a push names a tag; the registry gives the digest".to_string(),
            });
        }
        let (client, from) = self.client_for(reference).await?;
        let from = from.as_deref();
        let layer_digest = sha256_digest(&artifact.bytes);
        let size = artifact.bytes.len() as u64;
        let oci = reference.oci();

        let layer_existed = client
            .blob_exists(oci, &layer_digest)
            .await
            .map_err(|e| self.fail(reference, "checking the registry for the layer", from, e))?;
        if layer_existed {
            if let Some(progress) = &progress {
                progress(Transfer {
                    done: size,
                    total: size,
                });
            }
        } else {
            let chunks = chunked(artifact.bytes.clone(), progress.clone());
            client
                .push_blob_stream(oci, chunks, &layer_digest, Some(size))
                .await
                .map_err(|e| self.fail(reference, "uploading the layer", from, e))?;
        }

        let config = config_json(artifact, &layer_digest);
        let config_digest = sha256_digest(&config);
        client
            .push_blob(oci, config.clone(), &config_digest)
            .await
            .map_err(|e| self.fail(reference, "uploading the config", from, e))?;

        let mut layer = serde_json::json!({
            "mediaType": artifact.kind.layer_media_type(),
            "digest": layer_digest,
            "size": size,
        });
        if let Some(name) = &artifact.claims.name {
            layer["annotations"] = serde_json::json!({ media::ANNOTATION_TITLE: name });
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {
                "mediaType": artifact.kind.config_media_type(),
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [layer],
            "annotations": artifact.claims.annotations(std::time::SystemTime::now()),
        });
        let body = serde_json::to_vec(&manifest).map_err(|e| RegistryError::Transport {
            reference: reference.to_string(),
            action: "writing the manifest",
            hint: String::new(),
            source: e.into(),
        })?;
        let digest = sha256_digest(&body);
        client
            .push_manifest_raw(
                oci,
                body,
                http::HeaderValue::from_static(media::OCI_MANIFEST),
            )
            .await
            .map_err(|e| self.fail(reference, "uploading the manifest", from, e))?;
        Ok(Pushed {
            reference: reference.to_string(),
            digest,
            layer_digest,
            size,
            media_type: artifact.kind.layer_media_type().to_string(),
            layer_existed,
        })
    }

    /// Reads the manifest `reference` names and accepts it if it holds one
    /// layer of a kind in `want` (either kind when `None`), within
    /// [`RegistryOptions::deadline`].
    pub async fn resolve(
        &self,
        reference: &ArtifactRef,
        want: Option<ArtifactKind>,
    ) -> Result<Resolved, RegistryError> {
        self.within(
            reference,
            "fetching the manifest",
            self.resolve_inner(reference, want),
        )
        .await
    }

    async fn resolve_inner(
        &self,
        reference: &ArtifactRef,
        want: Option<ArtifactKind>,
    ) -> Result<Resolved, RegistryError> {
        let (fetcher, auth, from) = self.puller(reference)?;
        let target = Target {
            reference,
            auth: &auth,
            from: from.as_deref(),
            action: "fetching the manifest",
        };
        let name = reference
            .oci()
            .digest()
            .or(reference.oci().tag())
            .unwrap_or("latest");
        let answer = fetcher
            .get(
                &target,
                &format!("manifests/{name}"),
                &[
                    media::OCI_MANIFEST,
                    media::DOCKER_MANIFEST,
                    media::OCI_INDEX,
                    media::DOCKER_MANIFEST_LIST,
                ],
            )
            .await?;
        let digest = answer
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(shown)
            .unwrap_or_default();
        let body = read_bounded(answer, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| match e {
                Bounded::TooLarge(size) => RegistryError::TooLarge {
                    reference: reference.to_string(),
                    what: "manifest",
                    size,
                    limit: MAX_MANIFEST_BYTES,
                    hint: "; a Waxosuit artifact's manifest is a few hundred bytes",
                },
                Bounded::Transport(e) => self.fail(
                    reference,
                    "fetching the manifest",
                    from.as_deref(),
                    e.without_url().into(),
                ),
            })?;
        // The client checks a pinned digest already; checked here again
        // because this is the line the trust in a pinned reference rests on.
        let actual = sha256_digest(&body);
        if let Some(pinned) = reference.digest()
            && pinned != actual
        {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: "manifest",
                expected: pinned.to_string(),
                actual,
            });
        }
        if !digest.is_empty() && digest != actual {
            tracing::debug!(%reference, announced = %digest, %actual, "registry announced another manifest digest");
        }
        accept_manifest(reference, &body, actual, want)
    }

    /// Downloads the layer `resolved` names, bounded by its announced size
    /// and the configured limit, checking its digest, within
    /// [`RegistryOptions::deadline`].
    pub async fn fetch_layer(
        &self,
        reference: &ArtifactRef,
        resolved: &Resolved,
        progress: Option<Progress>,
    ) -> Result<Vec<u8>, RegistryError> {
        self.within(
            reference,
            "downloading the layer",
            self.fetch_layer_inner(reference, resolved, progress),
        )
        .await
    }

    /// Refuses to hand a user and password to a registry whose token
    /// service is reached over plain HTTP: the client sends them to
    /// whatever realm the registry's `WWW-Authenticate: Bearer` challenge
    /// names. HTTPS realms on other hosts are normal (Docker Hub's is
    /// `auth.docker.io`); a plain-HTTP one only when its host is itself
    /// named insecure.
    async fn check_realm(&self, reference: &ArtifactRef) -> Result<(), RegistryError> {
        let registry = reference.oci().resolve_registry().to_string();
        let mut checked = self.realms_checked.lock().await;
        if checked.contains(&registry) {
            return Ok(());
        }
        let probe = match self.probe.get() {
            Some(probe) => probe,
            None => {
                // Redirects followed as the client's own first request
                // follows them: the challenge that counts is the one at the
                // end. The probe carries no credentials.
                let built = reqwest::Client::builder()
                    .connect_timeout(self.options.connect_timeout)
                    .read_timeout(self.options.read_timeout)
                    .redirect(reqwest::redirect::Policy::limited(10))
                    .build()
                    .map_err(|e| {
                        self.fail(reference, "checking the token service", None, e.into())
                    })?;
                self.probe.get_or_init(|| built)
            }
        };
        let scheme = if self.is_insecure(reference.registry()) {
            "http"
        } else {
            "https"
        };
        let answer = probe
            .get(format!("{scheme}://{registry}/v2/"))
            .send()
            .await
            .map_err(|e| self.fail(reference, "checking the token service", None, e.into()))?;
        // Every challenge of every header: the client takes a `Bearer` one
        // wherever it stands, and the last `realm` of it.
        let challenges = answer
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>();
        for challenge in &challenges {
            let realms = bearer_realms(challenge).map_err(|()| RegistryError::InsecureRealm {
                reference: reference.to_string(),
                realm: format!("(an unreadable challenge: {})", shown(challenge)),
            })?;
            for realm in realms {
                let insecure = match split_scheme(&realm) {
                    Some(("https", _)) => false,
                    Some(("http", authority)) => !self.is_insecure(&authority),
                    // Not a URL the client may fetch over TLS at all.
                    _ => true,
                };
                if insecure {
                    return Err(RegistryError::InsecureRealm {
                        reference: reference.to_string(),
                        realm: shown(&realm),
                    });
                }
            }
        }
        checked.insert(registry);
        Ok(())
    }

    /// `operation`, or [`RegistryError::TimedOut`] once the deadline has
    /// passed: a per-read timeout alone lets a registry that trickles bytes
    /// hold a start for ever.
    async fn within<T>(
        &self,
        reference: &ArtifactRef,
        action: &'static str,
        operation: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(self.options.deadline, operation).await {
            Ok(result) => result,
            Err(_) => Err(RegistryError::TimedOut {
                reference: reference.to_string(),
                action,
                after: self.options.deadline,
            }),
        }
    }

    async fn fetch_layer_inner(
        &self,
        reference: &ArtifactRef,
        resolved: &Resolved,
        progress: Option<Progress>,
    ) -> Result<Vec<u8>, RegistryError> {
        let limit = self.options.max_artifact_bytes;
        let too_large = |size: u64| RegistryError::TooLarge {
            reference: reference.to_string(),
            what: "layer",
            size,
            limit,
            hint: "; raise --max-artifact-mib if this artifact is right",
        };
        let lying = |actual: String| RegistryError::DigestMismatch {
            reference: reference.to_string(),
            what: "layer",
            expected: format!("{} ({} bytes)", resolved.layer_digest, resolved.size),
            actual,
        };
        if resolved.size > limit {
            return Err(too_large(resolved.size));
        }
        check_digest(&resolved.layer_digest).map_err(&lying)?;
        let (fetcher, auth, from) = self.puller(reference)?;
        let target = Target {
            reference,
            auth: &auth,
            from: from.as_deref(),
            action: "downloading the layer",
        };
        let mut answer = fetcher
            .get(&target, &format!("blobs/{}", resolved.layer_digest), &[])
            .await?;
        if let Some(length) = answer.content_length()
            && length > resolved.size
        {
            return Err(lying(format!("a body of {length} bytes")));
        }
        let mut hasher = Sha256::new();
        // Grown as bytes arrive: the size is the registry's word.
        let mut bytes = Vec::with_capacity(resolved.size.min(1024 * 1024) as usize);
        loop {
            let chunk = match answer.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    return Err(self.fail(
                        reference,
                        "downloading the layer",
                        from.as_deref(),
                        e.without_url().into(),
                    ));
                }
            };
            let done = (bytes.len() + chunk.len()) as u64;
            // More than announced can only be wrong content: stop reading.
            if done > resolved.size {
                return Err(lying(format!("more than {} bytes", resolved.size)));
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
            if let Some(progress) = &progress {
                progress(Transfer {
                    done,
                    total: resolved.size,
                });
            }
        }
        let actual = format!(
            "sha256:{}",
            data_encoding::HEXLOWER.encode(&hasher.finalize())
        );
        if actual != resolved.layer_digest || bytes.len() as u64 != resolved.size {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: "layer",
                expected: resolved.layer_digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// The `realm` of every `Bearer` challenge in a `WWW-Authenticate` value,
/// unescaped, read with the parser the registry client uses (so quoting,
/// escapes and spaces are read as it reads them); `Err` when the value
/// does not parse, which the caller treats as a realm it cannot vouch for.
fn bearer_realms(header: &str) -> Result<Vec<String>, ()> {
    let mut realms = Vec::new();
    if header.trim().is_empty() {
        // No challenge at all (the parser wants one).
        return Ok(realms);
    }
    for challenge in http_auth::parser::ChallengeParser::new(header) {
        let challenge = challenge.map_err(|_| ())?;
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            realms.extend(
                challenge
                    .params
                    .iter()
                    .filter(|(key, _)| key.eq_ignore_ascii_case("realm"))
                    .map(|(_, value)| value.to_unescaped()),
            );
        }
    }
    Ok(realms)
}

/// A URL's scheme and authority, both lower case (`HTTP://Evil/t` is
/// `("http", "evil")`); `None` when it has no `scheme://`.
fn split_scheme(url: &str) -> Option<(&'static str, String)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => "https",
        "http" => "http",
        _ => "other",
    };
    Some((scheme, authority.to_ascii_lowercase()))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
    )
}

/// The layer as a stream of slices, reporting each as the client takes it.
fn chunked(
    bytes: Bytes,
    progress: Option<Progress>,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static {
    const CHUNK: usize = 256 * 1024;
    let total = bytes.len() as u64;
    let pieces: Vec<Bytes> = (0..bytes.len())
        .step_by(CHUNK)
        .map(|at| bytes.slice(at..(at + CHUNK).min(bytes.len())))
        .collect();
    let mut done = 0u64;
    futures_util::stream::iter(pieces).map(move |piece| {
        done += piece.len() as u64;
        if let Some(progress) = &progress {
            progress(Transfer { done, total });
        }
        Ok(piece)
    })
}

/// The config blob: the CNCF Wasm artifact's fields for an actor, the
/// capability and targets for a provider archive.
fn config_json(artifact: &Artifact, layer_digest: &str) -> Vec<u8> {
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let value = match artifact.kind {
        // `os` is `wasip1` because that is the CNCF layout's value for core
        // modules; an actor imports no WASI at all, which every wasip1
        // host satisfies.
        ArtifactKind::Actor => serde_json::json!({
            "created": created,
            "author": artifact.claims.issuer,
            "architecture": "wasm",
            "os": "wasip1",
            "layerDigests": [layer_digest],
        }),
        ArtifactKind::ProviderArchive => serde_json::json!({
            "created": created,
            "author": artifact.claims.issuer,
            "capability": artifact.claims.capability,
            "targets": artifact.targets,
            "layerDigests": [layer_digest],
        }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
}

impl Resolved {
    /// Accepts `body`, the manifest `reference` named (whose SHA-256 is
    /// `digest`), if it holds one layer of a kind in `want` (either kind
    /// when `None`); otherwise says what it is instead. The registry sends
    /// these bytes, so nothing in them is trusted.
    pub fn from_manifest(
        reference: &ArtifactRef,
        body: &[u8],
        digest: String,
        want: Option<ArtifactKind>,
    ) -> Result<Resolved, RegistryError> {
        accept_manifest(reference, body, digest, want)
    }
}

fn accept_manifest(
    reference: &ArtifactRef,
    body: &[u8],
    digest: String,
    want: Option<ArtifactKind>,
) -> Result<Resolved, RegistryError> {
    let expected = match want {
        Some(ArtifactKind::Actor) => format!("an actor (a `{}` layer)", media::WASM_LAYER),
        Some(ArtifactKind::ProviderArchive) => {
            format!("a provider archive (a `{}` layer)", media::PAR_LAYER)
        }
        None => format!(
            "a Waxosuit artifact (a `{}` or `{}` layer)",
            media::WASM_LAYER,
            media::PAR_LAYER
        ),
    };
    let wrong = |found: String| RegistryError::WrongMediaType {
        reference: reference.to_string(),
        expected: expected.clone(),
        found,
    };
    let manifest: RawManifest = serde_json::from_slice(body)
        .map_err(|e| wrong(format!("its manifest is not an OCI image manifest ({e})")))?;
    let media_type = manifest
        .media_type
        .as_deref()
        .unwrap_or(media::OCI_MANIFEST);
    if manifest.manifests.is_some()
        || media_type == media::OCI_INDEX
        || media_type == media::DOCKER_MANIFEST_LIST
    {
        return Err(wrong(format!(
            "it is an image index (`{}`), which lists platform images; push one artifact per tag",
            shown(media_type)
        )));
    }
    if media_type != media::OCI_MANIFEST && media_type != media::DOCKER_MANIFEST {
        return Err(wrong(format!(
            "its manifest media type is `{}`",
            shown(media_type)
        )));
    }
    let ours: Vec<(&RawDescriptor, ArtifactKind)> = manifest
        .layers
        .iter()
        .filter_map(|l| ArtifactKind::of_layer(&l.media_type).map(|k| (l, k)))
        .collect();
    let describe = || {
        let config = manifest.config.as_ref().map_or("none".to_string(), |c| {
            format!("`{}`", shown(&c.media_type))
        });
        let mut layers: Vec<String> = manifest
            .layers
            .iter()
            .take(8)
            .map(|l| format!("`{}`", shown(&l.media_type)))
            .collect();
        if manifest.layers.len() > 8 {
            layers.push(format!("and {} more", manifest.layers.len() - 8));
        }
        let artifact = manifest
            .artifact_type
            .as_ref()
            .map(|a| format!(", artifact type `{}`", shown(a)))
            .unwrap_or_default();
        format!(
            "its config is {config}{artifact} and its layers are {}",
            if layers.is_empty() {
                "none".to_string()
            } else {
                layers.join(", ")
            }
        )
    };
    let (layer, kind) = match ours.as_slice() {
        [] => return Err(wrong(describe())),
        [one] => *one,
        _ => {
            return Err(wrong(format!(
                "it has {} artifact layers where one is expected ({})",
                ours.len(),
                describe()
            )));
        }
    };
    if let Some(want) = want
        && want != kind
    {
        return Err(wrong(format!(
            "it holds a {kind} (layer `{}`)",
            layer.media_type
        )));
    }
    check_digest(&layer.digest).map_err(|reason| wrong(format!("its layer's {reason}")))?;
    Ok(Resolved {
        digest,
        kind,
        media_type: layer.media_type.clone(),
        layer_digest: layer.digest.clone(),
        size: layer.size,
        claims: ClaimsSummary::from_annotations(&manifest.annotations),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> ArtifactRef {
        ArtifactRef::parse("oci://127.0.0.1:5000/a:1", false).unwrap()
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn manifest(config: &str, layers: &[&str]) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|mt| serde_json::json!({"mediaType": mt, "digest": D, "size": 10}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": config, "digest": D, "size": 2},
            "layers": layers,
            "annotations": {media::ANNOTATION_TITLE: "hello"},
        }))
        .unwrap()
    }

    #[test]
    fn bearer_realms_are_read_from_every_challenge_as_the_client_reads_them() {
        let realms = |h: &str| bearer_realms(h).unwrap();
        assert_eq!(
            realms(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#),
            ["https://auth.docker.io/token"]
        );
        assert_eq!(
            realms(r#"bearer service="x", realm="http://evil:80/t""#),
            ["http://evil:80/t"]
        );
        // A Bearer challenge after another one, and a comma in a quoted value.
        assert_eq!(
            realms(r#"Basic realm="a, b", BEARER realm="HTTP://evil/t",scope="x""#),
            ["HTTP://evil/t"]
        );
        // Every realm of a challenge that names several (the client takes
        // the last), an escaped quote, and spaces around `=`.
        assert_eq!(
            realms(r#"Bearer realm="https://ok/\"", realm="http://evil/t""#),
            ["https://ok/\"", "http://evil/t"]
        );
        assert_eq!(
            realms(r#"Bearer service="x", realm ="http://evil/t""#),
            ["http://evil/t"]
        );
        assert!(realms(r#"Basic realm="test""#).is_empty());
        assert!(realms("").is_empty());
        assert!(bearer_realms(r#"Bearer realm="unterminated"#).is_err());
    }

    #[test]
    fn realm_schemes_and_hosts_are_compared_in_lower_case() {
        assert_eq!(
            split_scheme("HTTP://User@Evil.Example:80/t?x"),
            Some(("http", "evil.example:80".to_string()))
        );
        assert_eq!(split_scheme("https://a/t").map(|(s, _)| s), Some("https"));
        assert_eq!(split_scheme("ftp://a/t").map(|(s, _)| s), Some("other"));
        assert_eq!(split_scheme("/token"), None);
    }

    #[test]
    fn our_layouts_and_the_older_ones_are_accepted() {
        for layer in ArtifactKind::Actor.accepted_layers() {
            let body = manifest(media::WASM_CONFIG, &[layer]);
            let r =
                accept_manifest(&reference(), &body, D.into(), Some(ArtifactKind::Actor)).unwrap();
            assert_eq!(r.kind, ArtifactKind::Actor);
            assert_eq!(r.media_type, layer);
            assert_eq!(r.claims.name.as_deref(), Some("hello"));
        }
        let body = manifest(media::PAR_CONFIG, &[media::PAR_LAYER]);
        let r = accept_manifest(&reference(), &body, D.into(), None).unwrap();
        assert_eq!(r.kind, ArtifactKind::ProviderArchive);
    }

    #[test]
    fn other_artifacts_are_refused_naming_their_media_types() {
        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        );
        let err =
            accept_manifest(&reference(), &image, D.into(), Some(ArtifactKind::Actor)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
            "{text}"
        );
        assert!(
            text.contains("application/vnd.oci.image.config.v1+json"),
            "{text}"
        );
        assert!(text.contains("an actor"), "{text}");

        let par = manifest(media::PAR_CONFIG, &[media::PAR_LAYER]);
        let err =
            accept_manifest(&reference(), &par, D.into(), Some(ArtifactKind::Actor)).unwrap_err();
        assert!(
            err.to_string().contains("holds a provider archive"),
            "{err}"
        );

        let two = manifest(media::WASM_CONFIG, &[media::WASM_LAYER, media::WASM_LAYER]);
        let err = accept_manifest(&reference(), &two, D.into(), None).unwrap_err();
        assert!(err.to_string().contains("2 artifact layers"), "{err}");

        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []
        }))
        .unwrap();
        let err = accept_manifest(&reference(), &index, D.into(), None).unwrap_err();
        assert!(err.to_string().contains("image index"), "{err}");

        let err = accept_manifest(&reference(), b"{]", D.into(), None).unwrap_err();
        assert!(
            err.to_string().contains("not an OCI image manifest"),
            "{err}"
        );
    }
}
