//! Native capability provider plugins for the Waxosuit host: signed,
//! loaded lazily, and only for capabilities an actor was granted.
//!
//! # A guided tour
//!
//! * [`PluginProvider`] implements
//!   [`CapabilityProvider`], so the
//!   host registers it with `Host::add_provider` like any built-in.
//! * [`PluginProvider::from_archive`] takes a
//!   [`VerifiedArchive`] (signature, trusted
//!   issuer and library hashes already checked by `waxosuit-par`). Its
//!   descriptor comes from the signed claims, so registering the provider
//!   loads **no code**.
//! * **Least privilege.** The library is loaded at the first
//!   `bind_actor`, which the host only issues after checking that the
//!   actor's signed claims grant the capability, and unloaded when the last
//!   binding is removed. [`PluginProvider::is_loaded`] and
//!   [`PluginProvider::load_count`] make that observable.
//! * Plugin functions block, so every call runs on
//!   `tokio::task::spawn_blocking`, at most [`MAX_CONCURRENT_CALLS`] at a
//!   time per plugin (a call its caller gave up on still holds its thread). The plugin's calls back into actors go
//!   through the host's `ActorDispatcher`, driven from the plugin's thread
//!   with the host runtime's `Handle`.
//! * The ABI version is checked before anything else in the plugin's table
//!   is used ([`PluginError::AbiMismatch`]); plugin panics arrive as
//!   `ProviderError::Internal` and the plugin keeps serving.
//! * [`PluginProvider::from_unsigned_library`] loads a bare library without
//!   any signature: only for development, behind an explicit opt-in.
//!
//! ```no_run
//! # async fn demo(host: waxosuit_host::Host, par_bytes: Vec<u8>, account_key: &str)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use waxosuit_claims::Verifier;
//! use waxosuit_par::ProviderArchive;
//! use waxosuit_plugin_host::PluginProvider;
//!
//! // Native code runs only if its signer is trusted: here, one account.
//! let verifier = Verifier::new().trust_issuer(account_key)?;
//! let archive = ProviderArchive::from_bytes(&par_bytes)?.verify(&verifier)?;
//! let plugin = Arc::new(PluginProvider::from_archive(&archive)?);
//! host.add_provider("default", plugin.clone()).await?;
//! assert!(!plugin.is_loaded()); // registered, but no actor is bound yet
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod ffi;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_par::{ParError, VerifiedArchive};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, Health, ProviderCall, ProviderError,
};

use crate::ffi::{HostCtx, Loaded};

/// Why a plugin cannot be prepared or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The archive has no usable library for this host.
    #[error(transparent)]
    Archive(#[from] ParError),
    /// The library file could not be opened.
    #[error("cannot load the plugin library {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// What the loader said.
        reason: String,
    },
    /// The library does not export the entry point.
    #[error(
        "{path} is not a Waxosuit plugin: it does not export `waxosuit_provider_v1` ({reason})"
    )]
    NoEntryPoint {
        /// The file.
        path: String,
        /// What the loader said.
        reason: String,
    },
    /// The plugin speaks another ABI version.
    #[error(
        "plugin ABI version mismatch in {path}: the host speaks version {expected}, the plugin \
         version {found}; rebuild the plugin against waxosuit-plugin-sdk for this host"
    )]
    AbiMismatch {
        /// The file.
        path: String,
        /// The host's version.
        expected: u32,
        /// The plugin's version.
        found: u32,
    },
    /// The plugin refused the host's ABI version, or failed to initialise.
    #[error(
        "the {capid} plugin refused to initialise (host ABI version {version}); see its log lines"
    )]
    RefusedHost {
        /// Capability id.
        capid: String,
        /// The host's ABI version.
        version: u32,
    },
    /// The library implements another capability than the claims say.
    #[error("the plugin implements {actual}, but its signed claims say {claimed}")]
    CapabilityMismatch {
        /// From the claims.
        claimed: String,
        /// From the library's descriptor.
        actual: String,
    },
    /// The plugin failed while starting or describing itself.
    #[error("the plugin failed to start: {0}")]
    Start(#[from] ProviderError),
    /// The library could not be staged on disk for loading.
    #[error("cannot stage the plugin library: {0}")]
    Stage(#[source] std::io::Error),
    /// Loading needs a tokio runtime (for plugin → actor calls).
    #[error("plugins must be loaded from within a tokio runtime")]
    NoRuntime,
}

/// Where the library comes from.
enum Source {
    /// Verified bytes from an archive, staged to a private file at load.
    Archive(Arc<Vec<u8>>),
    /// An unsigned file, loaded in place.
    Unsigned(PathBuf),
}

/// A capability provider backed by a native plugin library, loaded only
/// while some actor is bound to it. See the [crate docs](crate).
pub struct PluginProvider {
    descriptor: CapabilityDescriptor,
    source: Source,
    /// Serializes bind/remove/shutdown, which load and unload the library.
    bindings: tokio::sync::Mutex<HashSet<(String, String)>>,
    loaded: Mutex<Option<Arc<Loaded>>>,
    dispatcher: Mutex<Option<Arc<dyn ActorDispatcher>>>,
    loads: AtomicUsize,
    /// Where libraries are staged for loading; `None`: the system's
    /// temporary directory.
    staging: Option<PathBuf>,
    /// One permit per call running on a blocking thread, held until the
    /// plugin returns (see [`MAX_CONCURRENT_CALLS`]).
    calls: Arc<tokio::sync::Semaphore>,
}

/// Calls one plugin may be running at once; more wait for one to return.
///
/// A plugin function blocks its thread, and a caller that gives up (an
/// actor's deadline, a dropped request) cannot stop it: the thread runs on.
/// Without a bound, an actor calling a slow operation over and over left a
/// thread behind per call, until Tokio's blocking pool (512 threads, shared
/// with module compilation and file I/O) was full.
///
/// A call the plugin makes back into an actor that calls the same plugin
/// again needs a second place: with every place taken by such outer calls,
/// the inner ones wait, and fail at their actor's deadline.
pub const MAX_CONCURRENT_CALLS: usize = 32;

impl std::fmt::Debug for PluginProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProvider")
            .field("capid", &self.descriptor.id)
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

impl PluginProvider {
    /// A provider for the host's target library of a verified archive.
    /// Loads nothing: the descriptor comes from the signed claims.
    pub fn from_archive(archive: &VerifiedArchive) -> Result<PluginProvider, PluginError> {
        let library = archive.library_for_host()?.to_vec();
        let descriptor = CapabilityDescriptor::builder()
            .id(archive.capid())
            .name(archive.name())
            .version(archive.version())
            .revision(archive.revision())
            .long_description(format!(
                "native plugin by {} (issuer {}, service {})",
                archive.vendor(),
                archive.issuer(),
                archive.subject()
            ))
            .build();
        Ok(PluginProvider::new(
            descriptor,
            Source::Archive(Arc::new(library)),
        ))
    }

    /// A provider for an **unsigned** library file. Nothing vouches for the
    /// code, and its capability id is only known by asking it, so the
    /// library is loaded once here (to describe itself, then unloaded) and
    /// again at the first binding. For development only.
    ///
    /// Must be called from within a tokio runtime; it blocks while loading.
    pub fn from_unsigned_library(path: impl AsRef<Path>) -> Result<PluginProvider, PluginError> {
        Self::from_unsigned_library_in(path, None)
    }

    /// [`PluginProvider::from_unsigned_library`], staging the library under
    /// `staging` (see [`PluginProvider::stage_in`]) for the probe too.
    pub fn from_unsigned_library_in(
        path: impl AsRef<Path>,
        staging: Option<&Path>,
    ) -> Result<PluginProvider, PluginError> {
        let path = path.as_ref().to_path_buf();
        let descriptor = probe_library_in(&path, staging)?;
        let provider = PluginProvider::new(descriptor, Source::Unsigned(path));
        Ok(match staging {
            Some(dir) => provider.stage_in(dir),
            None => provider,
        })
    }

    /// Stages the library under `dir` instead of the system's temporary
    /// directory, for a host that writes only under its own directories.
    /// `dir` is created (mode 0700) when missing, and refused at load when
    /// it is a symbolic link, someone else's, or writable by others than
    /// this user and its group: they could swap the staged file between the
    /// hash check and `dlopen`. (On Unix; elsewhere it is only created.)
    pub fn stage_in(mut self, dir: impl Into<PathBuf>) -> PluginProvider {
        self.staging = Some(dir.into());
        self
    }

    fn new(descriptor: CapabilityDescriptor, source: Source) -> PluginProvider {
        PluginProvider {
            descriptor,
            source,
            bindings: tokio::sync::Mutex::new(HashSet::new()),
            loaded: Mutex::new(None),
            dispatcher: Mutex::new(None),
            loads: AtomicUsize::new(0),
            staging: None,
            calls: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS)),
        }
    }

    /// Whether the library is loaded right now.
    pub fn is_loaded(&self) -> bool {
        self.loaded.lock().is_some()
    }

    /// How many times the library has been loaded.
    pub fn load_count(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded.lock().clone()
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> ProviderError {
        ProviderError::Unavailable {
            capid: self.descriptor.id.clone(),
            reason: e.to_string(),
        }
    }

    /// Loads the library, checks it implements the signed capability, and
    /// starts it.
    async fn load(&self) -> Result<Arc<Loaded>, PluginError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| PluginError::NoRuntime)?;
        let ctx = HostCtx {
            capid: self.descriptor.id.clone(),
            dispatcher: self.dispatcher.lock().clone(),
            handle,
        };
        let source = match &self.source {
            Source::Archive(bytes) => Ok(Arc::clone(bytes)),
            Source::Unsigned(path) => Err(path.clone()),
        };
        let claimed = self.descriptor.id.clone();
        let staging = self.staging.clone();
        let loaded = blocking(move || -> Result<Loaded, PluginError> {
            let bytes = match source {
                Ok(bytes) => bytes,
                Err(path) => Arc::new(read_library(&path)?),
            };
            let (dir, path) = stage(&claimed, &bytes, staging.as_deref())?;
            let loaded = Loaded::open(&path, ctx, dir)?;
            let actual = loaded.describe()?.id;
            if actual != claimed {
                return Err(PluginError::CapabilityMismatch { claimed, actual });
            }
            loaded.start()?;
            Ok(loaded)
        })
        .await
        .map_err(PluginError::Start)??;
        self.loads.fetch_add(1, Ordering::SeqCst);
        tracing::info!(capability = %self.descriptor.id, "plugin loaded");
        Ok(Arc::new(loaded))
    }

    async fn unload(&self) {
        let Some(loaded) = self.loaded.lock().take() else {
            return;
        };
        // Dropping the last reference shuts the plugin down and closes the
        // library; a call still in flight holds a reference and finishes first.
        let _ = blocking(move || drop(loaded)).await;
        tracing::info!(capability = %self.descriptor.id, "plugin unloaded (no bindings left)");
    }
}

fn read_library(path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|e| PluginError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Writes the library to a fresh private directory (mode 0700), so no one
/// else can swap the file between our hash check and `dlopen`. A fresh file
/// per load also makes every load a distinct library instance with its own
/// statics, even when two providers use the same plugin file.
fn stage(
    capid: &str,
    bytes: &[u8],
    staging: Option<&Path>,
) -> Result<(tempfile::TempDir, PathBuf), PluginError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("waxosuit-plugin-");
    // tempfile creates directories with the default mode (0777 less the
    // umask, usually 0755); the staged library must be ours alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let dir = match staging {
        Some(parent) => {
            private_dir(parent)?;
            builder.tempdir_in(parent).map_err(|e| {
                PluginError::Stage(std::io::Error::new(
                    e.kind(),
                    format!("cannot stage in {}: {e}", parent.display()),
                ))
            })
        }
        None => builder.tempdir().map_err(PluginError::Stage),
    }?;
    let slug: String = capid
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = dir
        .path()
        .join(format!("{slug}{}", std::env::consts::DLL_SUFFIX));
    std::fs::write(&path, bytes).map_err(PluginError::Stage)?;
    Ok((dir, path))
}

/// Loads a library, asks it to describe itself, and unloads it. Checks the
/// entry point and ABI version like a real load.
///
/// Must be called from within a tokio runtime; it blocks while loading.
pub fn probe_library(path: &Path) -> Result<CapabilityDescriptor, PluginError> {
    probe_library_in(path, None)
}

/// [`probe_library`], staging the library under `staging` (see
/// [`PluginProvider::stage_in`]) rather than the system's temporary
/// directory.
pub fn probe_library_in(
    path: &Path,
    staging: Option<&Path>,
) -> Result<CapabilityDescriptor, PluginError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| PluginError::NoRuntime)?;
    let ctx = HostCtx {
        capid: path.display().to_string(),
        dispatcher: None,
        handle,
    };
    let (dir, staged) = stage("probe", &read_library(path)?, staging)?;
    let loaded = Loaded::open(&staged, ctx, dir)?;
    Ok(loaded.describe()?)
}

/// Creates `dir` (mode 0700) when missing; refuses it when it is a symbolic
/// link, not ours, or writable by others than us and our own group (a
/// Kubernetes `fsGroup` volume makes directories group-writable for the
/// pod's group). Every error names `dir`.
fn private_dir(dir: &Path) -> Result<(), PluginError> {
    let fail = |kind: std::io::ErrorKind, why: String| {
        PluginError::Stage(std::io::Error::new(
            kind,
            format!(
                "{}: {why}; plugin libraries are staged there, so it must be a directory only \
                 this user can write to (set the cache directory elsewhere otherwise)",
                dir.display()
            ),
        ))
    };
    let io = |e: std::io::Error| fail(e.kind(), e.to_string());
    let refuse = |why: String| fail(std::io::ErrorKind::PermissionDenied, why);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(e)),
            _ => {}
        }
        let meta = std::fs::symlink_metadata(dir).map_err(io)?;
        if meta.file_type().is_symlink() {
            return Err(refuse("is a symbolic link".to_string()));
        }
        if !meta.is_dir() {
            return Err(refuse("is not a directory".to_string()));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(refuse(format!(
                "owned by uid {}, not by this process (uid {me})",
                meta.uid()
            )));
        }
        let our_group = meta.gid() == rustix::process::getegid().as_raw();
        let writable_by_others = if our_group { 0o002 } else { 0o022 };
        if meta.mode() & writable_by_others != 0 {
            return Err(refuse(format!(
                "others may write to it (mode {:o}); chmod go-w it",
                meta.mode() & 0o7777
            )));
        }
    }
    #[cfg(not(unix))]
    {
        // No ownership or mode check here: Windows ACLs are not read.
        std::fs::create_dir_all(dir).map_err(io)?;
        let _ = refuse;
    }
    Ok(())
}

/// Runs blocking plugin work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProviderError::Internal {
            capid: String::new(),
            message: format!("the plugin call thread failed: {e}"),
        })
}

#[async_trait]
impl CapabilityProvider for PluginProvider {
    fn descriptor(&self) -> CapabilityDescriptor {
        self.descriptor.clone()
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        // Only remembered: the library is loaded at the first binding.
        *self.dispatcher.lock() = Some(dispatcher);
        Ok(())
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let mut bindings = self.bindings.lock().await;
        let loaded = match self.current() {
            Some(loaded) => loaded,
            None => {
                let loaded = self
                    .load()
                    .await
                    .map_err(|e| self.unavailable(format!("cannot load the plugin: {e}")))?;
                *self.loaded.lock() = Some(Arc::clone(&loaded));
                loaded
            }
        };
        let key = (request.actor.clone(), request.binding.clone());
        let result = blocking(move || loaded.bind(request)).await.and_then(|r| r);
        match result {
            Ok(()) => {
                bindings.insert(key);
                Ok(())
            }
            Err(e) => {
                if bindings.is_empty() {
                    self.unload().await;
                }
                Err(e)
            }
        }
    }

    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let mut bindings = self.bindings.lock().await;
        let was_bound = bindings.remove(&(actor.to_string(), binding.to_string()));
        let Some(loaded) = self.current().filter(|_| was_bound) else {
            return Ok(());
        };
        let (a, b) = (actor.to_string(), binding.to_string());
        let result = blocking(move || loaded.remove(&a, &b))
            .await
            .and_then(|r| r);
        if bindings.is_empty() {
            self.unload().await;
        }
        result
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let Some(loaded) = self.current() else {
            return Err(ProviderError::not_bound(
                &self.descriptor.id,
                &call.actor,
                &call.binding,
            ));
        };
        // Waiting is bounded by the caller (its deadline drops this).
        let permit =
            Arc::clone(&self.calls)
                .acquire_owned()
                .await
                .map_err(|_| ProviderError::Internal {
                    capid: self.descriptor.id.clone(),
                    message: "the plugin's call limit was closed".to_string(),
                })?;
        blocking(move || {
            // Given back when the plugin returns, not when the caller leaves.
            let _running = permit;
            loaded.call(&call)
        })
        .await
        .and_then(|r| r)
    }

    async fn health(&self) -> Health {
        match self.current() {
            Some(loaded) => blocking(move || loaded.health())
                .await
                .unwrap_or_else(|e| Health::unhealthy(e.to_string())),
            None => Health {
                healthy: true,
                message: "not loaded: no actor is bound".to_string(),
            },
        }
    }

    async fn shutdown(&self) {
        let mut bindings = self.bindings.lock().await;
        bindings.clear();
        self.unload().await;
    }
}
