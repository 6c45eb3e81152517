//! The file-system `wascc:blobstore` provider of Waxosuit.
//!
//! Actors store and fetch binary objects through the waSCC blob store
//! contract; this provider keeps them as plain files, so an operator can
//! inspect, back up or seed them with ordinary tools.
//!
//! # A guided tour
//!
//! * [`FsBlobstore::new`] builds the provider; register it with the host
//!   like any [`CapabilityProvider`]. [`start`](CapabilityProvider::start)
//!   keeps the host's dispatcher, through which downloads are streamed.
//! * **Configuration** (binding values):
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`ROOT`] | *(required)* | directory holding this binding's containers; created if missing |
//!   | [`MAX_OBJECT_BYTES`] | `1073741824` (1 GiB) | largest object an upload may announce |
//!   | [`MAX_CONCURRENT_UPLOADS`] | `64` | uploads in progress at once (each holds an open temporary file) |
//!   | [`MAX_CONCURRENT_DOWNLOADS`] | `64` | downloads being sent at once (each holds an open file) |
//!   | [`MAX_BYTES_IN_FLIGHT`] | `4294967296` (4 GiB) | announced sizes of the uploads in progress plus sizes of the downloads being sent |
//!
//!   A relative `ROOT` is taken as given, i.e. against the host's working
//!   directory; `waxosuit up` hands the provider `ROOT` already resolved
//!   against the manifest's directory (see `waxosuit_manifest::PATH_VALUES`).
//!   Each (actor, binding) pair sees only its own `ROOT`: a container is a
//!   subdirectory of it and an object a regular file in a container. Two
//!   bindings share data only if the operator gives them the same `ROOT`.
//! * **Operations** (all of [`waxosuit_codec::blobstore`]):
//!
//!   | Operation | Payload | Reply |
//!   |---|---|---|
//!   | `CreateContainer` | [`Container`] | the [`Container`]; creating an existing one succeeds |
//!   | `RemoveContainer` | [`Container`] | empty; removes the directory and everything in it |
//!   | `RemoveObject` | [`Blob`] | empty |
//!   | `ListObjects` | [`Container`] | [`BlobList`], sorted by id |
//!   | `GetObjectInfo` | [`Blob`] | the [`Blob`] with `byteSize` |
//!   | `StartUpload` | [`FileChunk`] with `totalBytes`, `chunkSize` | empty |
//!   | `UploadChunk` | [`FileChunk`] with `sequenceNo`, `chunkBytes` | empty |
//!   | `StartDownload` | [`StreamRequest`] | [`Transfer`], then `ReceiveChunk` calls |
//!
//! * **Quotas.** The three `MAX_CONCURRENT_*`/`MAX_BYTES_IN_FLIGHT` values
//!   bound what one binding holds at once, so one actor cannot exhaust the
//!   host's file descriptors, disk or memory for the others. An upload
//!   counts from its `StartUpload` until it completes or is abandoned; a
//!   download from its `StartDownload` until its last chunk is taken, the
//!   actor fails a chunk, or the binding goes. A `StartUpload` or
//!   `StartDownload` that would exceed a quota fails before any file is
//!   opened with a [`ProviderError::Backend`] naming the quota, the actor,
//!   the binding and the value to raise; nothing in progress is affected.
//! * **Uploads** are written to a hidden temporary file in the container
//!   (`.waxosuit-upload-…`), each chunk at offset `sequenceNo × chunkSize`
//!   (a retried chunk is written again, not counted twice). When every byte
//!   of `totalBytes` has arrived the file is synced and renamed over the
//!   object in one step, so readers see the old object or the whole new
//!   one, never a part. An upload that never completes — the actor stops
//!   sending, a new `StartUpload` of the same object replaces it (the old
//!   one is abandoned first, even if the new one then fails, so that
//!   restarting never needs a second quota slot), the binding is removed or
//!   the provider shuts down — leaves no object and its temporary file is
//!   deleted. A chunk must be exactly `chunkSize` bytes, except the last,
//!   which holds the remainder; `chunkSize` is at most
//!   [`MAX_CHUNK_BYTES`].
//! * **Downloads** reply at once with the [`Transfer`] (chunk size, total
//!   size and number of chunks; a requested chunk size of 0 becomes
//!   [`DEFAULT_CHUNK_BYTES`] and one over [`MAX_CHUNK_BYTES`] is lowered to
//!   it). A task then calls the actor with `ReceiveChunk` once per chunk,
//!   in order, waiting for each call to return before sending the next, so
//!   the actor never holds more than one chunk. The object is opened
//!   before the reply, so a concurrent upload replacing it does not mix
//!   versions. An empty object has no chunks. If the actor fails a chunk,
//!   the download stops (and is logged).
//! * **Names.** Container and object ids must each be one plain path
//!   component: not empty, not `.` or `..`, without `/`, `\` or NUL, at
//!   most 255 bytes, and not starting with the reserved `.waxosuit-`
//!   prefix. Anything else is refused as a [`ProviderError::BadPayload`]
//!   before the file system is touched. A container or object that is a
//!   symbolic link resolving outside `ROOT` is refused as a
//!   [`ProviderError::Backend`]; links resolving inside `ROOT` are
//!   followed; listings leave out links leaving `ROOT` and
//!   subdirectories. The provider never creates links, so they come from
//!   the operator or other processes; the check runs right before each
//!   file-system operation, so a process that swaps links inside `ROOT`
//!   concurrently is outside this protection.
//! * **Crashes.** Temporary files of uploads cut short by a crash of the
//!   whole host stay hidden (listings skip the reserved prefix); delete
//!   `.waxosuit-upload-*` files while the host is stopped to reclaim the
//!   space.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_blobstore_fs::{FsBlobstore, ROOT};
//! use waxosuit_codec::blobstore::{CAPABILITY_ID, Container, OP_CREATE_CONTAINER};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("waxosuit-doc-{}", std::process::id()));
//! let store = FsBlobstore::new();
//! store
//!     .bind_actor(BindRequest {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         values: HashMap::from([(ROOT.to_string(), dir.display().to_string())]),
//!     })
//!     .await?;
//! let create = |id: &str| ProviderCall {
//!     actor: "MACTOR".into(),
//!     binding: "default".into(),
//!     operation: OP_CREATE_CONTAINER.into(),
//!     payload: encode(CAPABILITY_ID, &Container { id: id.into() }).unwrap_or_default(),
//! };
//! store.handle_call(create("photos")).await?;
//! assert!(dir.join("photos").is_dir());
//! let refused = store.handle_call(create("../escape")).await.unwrap_err();
//! assert!(matches!(refused, ProviderError::BadPayload { .. }));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use tokio::task::AbortHandle;
use waxosuit_codec::blobstore::{
    Blob, BlobList, CAPABILITY_ID, Container, FileChunk, OP_CREATE_CONTAINER, OP_GET_OBJECT_INFO,
    OP_LIST_OBJECTS, OP_RECEIVE_CHUNK, OP_REMOVE_CONTAINER, OP_REMOVE_OBJECT, OP_START_DOWNLOAD,
    OP_START_UPLOAD, OP_UPLOAD_CHUNK, StreamRequest, Transfer,
};
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, ProviderCall, ProviderError,
    decode, encode,
};

/// Binding value: the directory holding the binding's containers
/// (required; created if missing).
pub const ROOT: &str = "ROOT";
/// Binding value: the largest object, in bytes, an upload may announce;
/// default 1 GiB.
pub const MAX_OBJECT_BYTES: &str = "MAX_OBJECT_BYTES";
/// Binding value: uploads in progress at once, at least 1; default
/// [`DEFAULT_MAX_CONCURRENT_UPLOADS`].
pub const MAX_CONCURRENT_UPLOADS: &str = "MAX_CONCURRENT_UPLOADS";
/// Binding value: downloads being sent at once, at least 1; default
/// [`DEFAULT_MAX_CONCURRENT_DOWNLOADS`].
pub const MAX_CONCURRENT_DOWNLOADS: &str = "MAX_CONCURRENT_DOWNLOADS";
/// Binding value: bytes of the transfers in progress (announced
/// `totalBytes` of uploads, `totalSize` of downloads), at least 1; default
/// [`DEFAULT_MAX_BYTES_IN_FLIGHT`].
pub const MAX_BYTES_IN_FLIGHT: &str = "MAX_BYTES_IN_FLIGHT";
/// [`MAX_CONCURRENT_UPLOADS`] when the binding does not set it.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 64;
/// [`MAX_CONCURRENT_DOWNLOADS`] when the binding does not set it.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 64;
/// [`MAX_BYTES_IN_FLIGHT`] when the binding does not set it (4 GiB: four
/// uploads of the largest default object).
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: u64 = 4 * 1024 * 1024 * 1024;
/// The largest chunk, in bytes, of an upload or a download (4 MiB): chunks
/// pass through the actor's linear memory whole.
pub const MAX_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// The chunk size of a download that asks for chunk size 0 (1 MiB).
pub const DEFAULT_CHUNK_BYTES: u64 = 1024 * 1024;

const DEFAULT_MAX_OBJECT_BYTES: u64 = 1024 * 1024 * 1024;
/// Names starting with this are the provider's own (temporary uploads);
/// actors may not use them, and listings hide them.
const RESERVED_PREFIX: &str = ".waxosuit-";
const UPLOAD_PREFIX: &str = ".waxosuit-upload-";

/// The file-system `wascc:blobstore` provider. See the [crate docs](crate).
pub struct FsBlobstore {
    bindings: Bindings<Arc<Binding>>,
    dispatcher: RwLock<Option<Arc<dyn ActorDispatcher>>>,
}

impl Default for FsBlobstore {
    fn default() -> Self {
        FsBlobstore {
            bindings: Bindings::new(CAPABILITY_ID),
            dispatcher: RwLock::new(None),
        }
    }
}

impl std::fmt::Debug for FsBlobstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: Vec<PathBuf> = self
            .bindings
            .read_all(|map| map.values().map(|b| b.root.clone()).collect());
        f.debug_struct("FsBlobstore")
            .field("roots", &roots)
            .finish_non_exhaustive()
    }
}

struct Binding {
    /// Canonical, so prefix checks compare like with like.
    root: PathBuf,
    max_object_bytes: u64,
    /// Shared with every transfer's [`Slot`]; not the other way round, so
    /// that a transfer never keeps its binding alive.
    transfers: Arc<Transfers>,
    /// Keyed by (container, object id).
    uploads: Mutex<HashMap<(String, String), SharedUpload>>,
    downloads: Mutex<Vec<AbortHandle>>,
}

impl Drop for Binding {
    fn drop(&mut self) {
        for download in lock(&self.downloads).drain(..) {
            download.abort();
        }
    }
}

/// An upload shared between the map and the chunk being written; the
/// async lock serialises one upload's chunks without blocking others.
type SharedUpload = Arc<tokio::sync::Mutex<Upload>>;

/// One binding's quotas and what its transfers hold of them.
struct Transfers {
    actor: String,
    binding: String,
    max_uploads: usize,
    max_downloads: usize,
    max_bytes: u64,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    uploads: usize,
    downloads: usize,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Upload,
    Download,
}

impl Transfers {
    fn quota_error(&self, quota: &'static str, detail: String) -> BlobError {
        BlobError::Quota {
            quota,
            actor: self.actor.clone(),
            binding: self.binding.clone(),
            detail,
        }
    }

    /// Takes one transfer of `direction` and `bytes`, or says which quota
    /// it would exceed. Checked and taken under one lock, so concurrent
    /// calls cannot all squeeze past the last free place.
    fn reserve(self: &Arc<Self>, direction: Direction, bytes: u64) -> Result<Slot, BlobError> {
        let mut held = lock(&self.held);
        let (count, max, quota, what) = match direction {
            Direction::Upload => (
                held.uploads,
                self.max_uploads,
                MAX_CONCURRENT_UPLOADS,
                "uploads are in progress",
            ),
            Direction::Download => (
                held.downloads,
                self.max_downloads,
                MAX_CONCURRENT_DOWNLOADS,
                "downloads are being sent",
            ),
        };
        if count >= max {
            return Err(self.quota_error(quota, format!("{count} {what}, the most it allows")));
        }
        self.check_bytes(&held, bytes)?;
        match direction {
            Direction::Upload => held.uploads += 1,
            Direction::Download => held.downloads += 1,
        }
        held.bytes += bytes;
        Ok(Slot {
            transfers: Arc::clone(self),
            direction,
            bytes,
        })
    }

    fn check_bytes(&self, held: &Held, bytes: u64) -> Result<(), BlobError> {
        if held.bytes.saturating_add(bytes) > self.max_bytes {
            return Err(self.quota_error(
                MAX_BYTES_IN_FLIGHT,
                format!(
                    "{} bytes are in flight and this transfer needs {bytes} more, over the {} it \
                     allows",
                    held.bytes, self.max_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// One transfer's share of its binding's quotas, given back when dropped:
/// with the [`Upload`] (completed or abandoned) or with the download's task
/// (finished or aborted).
struct Slot {
    transfers: Arc<Transfers>,
    direction: Direction,
    bytes: u64,
}

impl Slot {
    /// Adds `bytes` to the transfer, if the quota allows.
    fn grow(&mut self, bytes: u64) -> Result<(), BlobError> {
        let mut held = lock(&self.transfers.held);
        self.transfers.check_bytes(&held, bytes)?;
        held.bytes += bytes;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = lock(&self.transfers.held);
        match self.direction {
            Direction::Upload => held.uploads -= 1,
            Direction::Download => held.downloads -= 1,
        }
        held.bytes -= self.bytes;
    }
}

/// An upload in progress. Dropping it deletes its temporary file, which
/// after completion no longer exists under that name.
struct Upload {
    temp: PathBuf,
    file: Arc<File>,
    total_bytes: u64,
    chunk_size: u64,
    received: HashSet<u64>,
    received_bytes: u64,
    /// Released after `drop` has deleted the temporary file.
    _slot: Slot,
}

impl Drop for Upload {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.temp) {
            Ok(()) => {
                tracing::debug!(temp = %self.temp.display(), "discarded an incomplete upload")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(temp = %self.temp.display(), error = %e, "cannot delete an incomplete upload")
            }
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why one call failed, before it is phrased for the actor.
#[derive(Debug, thiserror::Error)]
enum BlobError {
    #[error("{kind} id `{id}` {reason}")]
    BadName {
        kind: &'static str,
        id: String,
        reason: &'static str,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{kind} `{path}` resolves outside this binding's ROOT; links leaving ROOT are refused")]
    Escapes { kind: &'static str, path: String },
    #[error("container `{0}` does not exist")]
    NoContainer(String),
    #[error("object `{id}` does not exist in container `{container}`")]
    NoObject { container: String, id: String },
    #[error(
        "no upload of `{id}` in container `{container}` is in progress; send StartUpload first"
    )]
    NoUpload { container: String, id: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("a file system task failed: {0}")]
    Task(String),
    #[error(
        "quota {quota} reached for actor {actor} (binding `{binding}`): {detail}; wait for a \
         transfer in progress to finish, or raise {quota} in this wascc:blobstore binding's values"
    )]
    Quota {
        quota: &'static str,
        actor: String,
        binding: String,
        detail: String,
    },
}

impl BlobError {
    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BlobError {
        let what = what.into();
        move |source| BlobError::Io { what, source }
    }

    fn into_provider_error(self, operation: &str) -> ProviderError {
        match self {
            e @ (BlobError::BadName { .. } | BlobError::BadRequest(_)) => {
                ProviderError::BadPayload {
                    capid: CAPABILITY_ID.to_string(),
                    operation: operation.to_string(),
                    reason: e.to_string(),
                }
            }
            e @ BlobError::Task(_) => ProviderError::Internal {
                capid: CAPABILITY_ID.to_string(),
                message: e.to_string(),
            },
            e => ProviderError::backend(CAPABILITY_ID, e),
        }
    }
}

/// Checks that `id` is one plain path component.
fn check_name(kind: &'static str, id: &str) -> Result<(), BlobError> {
    let bad = |reason| {
        Err(BlobError::BadName {
            kind,
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("is empty");
    }
    if id == "." || id == ".." {
        return bad("must not be `.` or `..`");
    }
    if id.contains(['/', '\\']) {
        return bad("must be a single path component (no `/` or `\\`)");
    }
    if id.contains('\0') {
        return bad("must not contain NUL");
    }
    if id.len() > 255 {
        return bad("is longer than 255 bytes");
    }
    if id.starts_with(RESERVED_PREFIX) {
        return bad("uses the `.waxosuit-` prefix, which is reserved for the provider");
    }
    // Belt and braces for platform quirks (drive prefixes and the like):
    // the path must parse as exactly one normal component.
    let mut components = Path::new(id).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => bad("must be a single path component"),
    }
}

impl Binding {
    /// The container's directory, checked to exist and stay inside ROOT.
    fn container_dir(&self, container: &str) -> Result<PathBuf, BlobError> {
        check_name("container", container)?;
        let path = self.root.join(container);
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NoContainer(container.to_string()));
            }
            Err(e) => return Err(BlobError::io(format!("container `{container}`"))(e)),
        };
        self.inside_root("container", container, &canonical)?;
        if !canonical.is_dir() {
            return Err(BlobError::NoContainer(container.to_string()));
        }
        Ok(canonical)
    }

    /// The object's file, checked to exist, be a file and stay inside ROOT.
    fn object_file(&self, container: &str, id: &str) -> Result<PathBuf, BlobError> {
        let dir = self.container_dir(container)?;
        check_name("object", id)?;
        let missing = || BlobError::NoObject {
            container: container.to_string(),
            id: id.to_string(),
        };
        let canonical = match dir.join(id).canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(BlobError::io(format!("object `{container}/{id}`"))(e)),
        };
        self.inside_root("object", &format!("{container}/{id}"), &canonical)?;
        if !canonical.is_file() {
            return Err(missing());
        }
        Ok(canonical)
    }

    fn inside_root(
        &self,
        kind: &'static str,
        name: &str,
        canonical: &Path,
    ) -> Result<(), BlobError> {
        // `starts_with` compares whole components, so `/root-other` is not
        // inside `/root`. ROOT itself is not a valid container or object.
        if canonical.starts_with(&self.root) && canonical != self.root {
            Ok(())
        } else {
            Err(BlobError::Escapes {
                kind,
                path: name.to_string(),
            })
        }
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BlobError::Task(e.to_string()))?
}

impl FsBlobstore {
    /// A provider with no bindings.
    pub fn new() -> FsBlobstore {
        FsBlobstore::default()
    }

    fn binding(&self, actor: &str, binding: &str) -> Result<Arc<Binding>, ProviderError> {
        self.bindings.get(actor, binding)
    }

    async fn dispatch_op(
        &self,
        binding: Arc<Binding>,
        call: &ProviderCall,
    ) -> Result<Vec<u8>, ProviderError> {
        let op = call.operation.as_str();
        let fail = |e: BlobError| e.into_provider_error(op);
        match op {
            OP_CREATE_CONTAINER => {
                let container: Container = decode(CAPABILITY_ID, call)?;
                create_container(binding, container.id.clone())
                    .await
                    .map_err(fail)?;
                encode(CAPABILITY_ID, &container)
            }
            OP_REMOVE_CONTAINER => {
                let container: Container = decode(CAPABILITY_ID, call)?;
                // Pending uploads into it would fail at rename; drop them now.
                lock(&binding.uploads).retain(|(c, _), _| *c != container.id);
                blocking(move || {
                    let dir = binding.container_dir(&container.id)?;
                    std::fs::remove_dir_all(&dir).map_err(BlobError::io(format!(
                        "removing container `{}`",
                        container.id
                    )))
                })
                .await
                .map_err(fail)?;
                Ok(Vec::new())
            }
            OP_REMOVE_OBJECT => {
                let blob: Blob = decode(CAPABILITY_ID, call)?;
                blocking(move || {
                    let file = binding.object_file(&blob.container, &blob.id)?;
                    std::fs::remove_file(&file).map_err(BlobError::io(format!(
                        "removing object `{}/{}`",
                        blob.container, blob.id
                    )))
                })
                .await
                .map_err(fail)?;
                Ok(Vec::new())
            }
            OP_LIST_OBJECTS => {
                let container: Container = decode(CAPABILITY_ID, call)?;
                let list = blocking(move || list_objects(&binding, &container.id))
                    .await
                    .map_err(fail)?;
                encode(CAPABILITY_ID, &list)
            }
            OP_GET_OBJECT_INFO => {
                let blob: Blob = decode(CAPABILITY_ID, call)?;
                let info = blocking(move || {
                    let file = binding.object_file(&blob.container, &blob.id)?;
                    let len = std::fs::metadata(&file)
                        .map_err(BlobError::io(format!(
                            "reading object `{}/{}`",
                            blob.container, blob.id
                        )))?
                        .len();
                    Ok(Blob {
                        byte_size: len,
                        ..blob
                    })
                })
                .await
                .map_err(fail)?;
                encode(CAPABILITY_ID, &info)
            }
            OP_START_UPLOAD => {
                let chunk: FileChunk = decode(CAPABILITY_ID, call)?;
                start_upload(binding, chunk).await.map_err(fail)?;
                Ok(Vec::new())
            }
            OP_UPLOAD_CHUNK => {
                let chunk: FileChunk = decode(CAPABILITY_ID, call)?;
                upload_chunk(binding, chunk).await.map_err(fail)?;
                Ok(Vec::new())
            }
            OP_START_DOWNLOAD => {
                let request: StreamRequest = decode(CAPABILITY_ID, call)?;
                let dispatcher =
                    read(&self.dispatcher)
                        .clone()
                        .ok_or_else(|| ProviderError::Unavailable {
                            capid: CAPABILITY_ID.to_string(),
                            reason: "the provider has not been started, so it cannot send chunks"
                                .to_string(),
                        })?;
                let transfer = start_download(binding, dispatcher, call.actor.clone(), request)
                    .await
                    .map_err(fail)?;
                encode(CAPABILITY_ID, &transfer)
            }
            _ => Err(ProviderError::unknown_operation(CAPABILITY_ID, op)),
        }
    }
}

async fn create_container(binding: Arc<Binding>, id: String) -> Result<(), BlobError> {
    blocking(move || {
        check_name("container", &id)?;
        let path = binding.root.join(&id);
        match std::fs::create_dir(&path) {
            Ok(()) => Ok(()),
            // Existing is fine, as long as it is a directory inside ROOT
            // (not, say, a link to one elsewhere).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                binding.container_dir(&id).map(drop)
            }
            Err(e) => Err(BlobError::io(format!("creating container `{id}`"))(e)),
        }
    })
    .await
}

fn list_objects(binding: &Binding, container: &str) -> Result<BlobList, BlobError> {
    let dir = binding.container_dir(container)?;
    let entries = std::fs::read_dir(&dir)
        .map_err(BlobError::io(format!("listing container `{container}`")))?;
    let mut blobs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BlobError::io(format!("listing container `{container}`")))?;
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            // Not representable in the contract's strings; skip it.
            continue;
        };
        if id.starts_with(RESERVED_PREFIX) {
            continue;
        }
        // Same rules as GetObjectInfo: subdirectories and links leaving
        // ROOT are not objects.
        let Ok(file) = binding.object_file(container, &id) else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        blobs.push(Blob {
            id,
            container: container.to_string(),
            byte_size: meta.len(),
        });
    }
    blobs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(BlobList { blobs })
}

async fn start_upload(binding: Arc<Binding>, chunk: FileChunk) -> Result<(), BlobError> {
    if chunk.total_bytes > binding.max_object_bytes {
        return Err(BlobError::BadRequest(format!(
            "totalBytes {} exceeds MAX_OBJECT_BYTES ({}) for this binding",
            chunk.total_bytes, binding.max_object_bytes
        )));
    }
    if chunk.chunk_size > MAX_CHUNK_BYTES {
        return Err(BlobError::BadRequest(format!(
            "chunkSize {} exceeds the maximum of {MAX_CHUNK_BYTES} bytes",
            chunk.chunk_size
        )));
    }
    if chunk.chunk_size == 0 && chunk.total_bytes > 0 {
        return Err(BlobError::BadRequest(
            "chunkSize must not be 0 for a non-empty object".to_string(),
        ));
    }
    let key = (chunk.container.clone(), chunk.id.clone());
    // The earlier upload of this object goes first, deleting its temporary
    // file and freeing its place: restarting an upload at the quota works,
    // and many StartUploads of one object never hold more than one place
    // each.
    let replaced = lock(&binding.uploads).remove(&key);
    drop(replaced);
    let slot = binding
        .transfers
        .reserve(Direction::Upload, chunk.total_bytes)?;
    let setup = Arc::clone(&binding);
    let FileChunk {
        container,
        id,
        total_bytes,
        chunk_size,
        ..
    } = chunk;
    let upload = blocking(move || {
        let dir = setup.container_dir(&container)?;
        check_name("object", &id)?;
        // Replacing a link that leaves ROOT would be harmless (rename
        // replaces the link itself), but refusing keeps one rule for links.
        match setup.object_file(&container, &id) {
            Ok(_) | Err(BlobError::NoObject { .. }) => {}
            Err(e) => return Err(e),
        }
        let temp = dir.join(format!("{UPLOAD_PREFIX}{}", nuid::next()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(BlobError::io(format!(
                "creating an upload in `{container}`"
            )))?;
        let upload = Upload {
            temp,
            file: Arc::new(file),
            total_bytes,
            chunk_size,
            received: HashSet::new(),
            received_bytes: 0,
            _slot: slot,
        };
        if total_bytes == 0 {
            finish(&upload, &dir.join(&id))?;
            return Ok(None);
        }
        Ok(Some(upload))
    })
    .await?;
    let replaced = {
        let mut uploads = lock(&binding.uploads);
        match upload {
            // A concurrent StartUpload of the same object may have got in
            // first; the last one wins, as before.
            Some(upload) => uploads.insert(key, Arc::new(tokio::sync::Mutex::new(upload))),
            None => uploads.remove(&key),
        }
    };
    // Dropped outside the lock: it deletes a file.
    drop(replaced);
    Ok(())
}

/// Makes a complete upload the object, atomically.
fn finish(upload: &Upload, destination: &Path) -> Result<(), BlobError> {
    upload
        .file
        .sync_all()
        .map_err(BlobError::io("syncing an upload"))?;
    std::fs::rename(&upload.temp, destination).map_err(BlobError::io(format!(
        "moving the upload into place at `{}`",
        destination.display()
    )))
}

async fn upload_chunk(binding: Arc<Binding>, chunk: FileChunk) -> Result<(), BlobError> {
    let key = (chunk.container.clone(), chunk.id.clone());
    let upload = lock(&binding.uploads)
        .get(&key)
        .cloned()
        .ok_or_else(|| BlobError::NoUpload {
            container: chunk.container.clone(),
            id: chunk.id.clone(),
        })?;
    // One chunk of one upload at a time; other uploads proceed.
    let mut state = upload.lock().await;
    let offset = chunk
        .sequence_no
        .checked_mul(state.chunk_size)
        .filter(|offset| *offset < state.total_bytes)
        .ok_or_else(|| {
            BlobError::BadRequest(format!(
                "sequenceNo {} is past the end of a {}-byte object in {}-byte chunks",
                chunk.sequence_no, state.total_bytes, state.chunk_size
            ))
        })?;
    let expected = state.chunk_size.min(state.total_bytes - offset);
    if chunk.chunk_bytes.len() as u64 != expected {
        return Err(BlobError::BadRequest(format!(
            "chunk {} holds {} bytes; it must hold {expected} (chunkSize, or the rest of \
             totalBytes for the last chunk)",
            chunk.sequence_no,
            chunk.chunk_bytes.len()
        )));
    }
    let file = Arc::clone(&state.file);
    let bytes = chunk.chunk_bytes;
    blocking(move || {
        let mut file = &*file;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(&bytes))
            .map_err(BlobError::io("writing an upload chunk"))
    })
    .await?;
    if state.received.insert(chunk.sequence_no) {
        state.received_bytes += expected;
    }
    if state.received_bytes < state.total_bytes {
        return Ok(());
    }

    // Complete. Only the upload still registered may be published: one
    // replaced by a newer StartUpload or abandoned with its binding while
    // this chunk was written must not overwrite anything. Once renamed, the
    // temporary name is gone, so dropping the state deletes nothing.
    {
        let mut uploads = lock(&binding.uploads);
        if !uploads.get(&key).is_some_and(|u| Arc::ptr_eq(u, &upload)) {
            return Err(BlobError::NoUpload {
                container: key.0,
                id: key.1,
            });
        }
        uploads.remove(&key);
    }
    let checker = Arc::clone(&binding);
    let (container, id) = key;
    let temp = state.temp.clone();
    let file = Arc::clone(&state.file);
    blocking(move || {
        // Check again: the container may have been replaced meanwhile.
        let dir = checker.container_dir(&container)?;
        match checker.object_file(&container, &id) {
            Ok(_) | Err(BlobError::NoObject { .. }) => {}
            Err(e) => return Err(e),
        }
        file.sync_all()
            .map_err(BlobError::io("syncing an upload"))?;
        std::fs::rename(&temp, dir.join(&id)).map_err(BlobError::io(format!(
            "moving the upload into place at `{container}/{id}`"
        )))
    })
    .await
}

async fn start_download(
    binding: Arc<Binding>,
    dispatcher: Arc<dyn ActorDispatcher>,
    actor: String,
    request: StreamRequest,
) -> Result<Transfer, BlobError> {
    let chunk_size = match request.chunk_size {
        0 => DEFAULT_CHUNK_BYTES,
        n => n.min(MAX_CHUNK_BYTES),
    };
    // Taken before the file is opened: the quota bounds open descriptors.
    let mut slot = binding.transfers.reserve(Direction::Download, 0)?;
    let opener = Arc::clone(&binding);
    let (container, id) = (request.container.clone(), request.id.clone());
    let (file, total_size) = blocking(move || {
        let path = opener.object_file(&container, &id)?;
        let file =
            File::open(&path).map_err(BlobError::io(format!("opening `{container}/{id}`")))?;
        let len = file
            .metadata()
            .map_err(BlobError::io(format!("reading `{container}/{id}`")))?
            .len();
        Ok((file, len))
    })
    .await?;
    slot.grow(total_size)?;
    let total_chunks = total_size.div_ceil(chunk_size);
    let transfer = Transfer {
        blob_id: request.id.clone(),
        container: request.container.clone(),
        chunk_size,
        total_size,
        total_chunks,
        context: request.context.clone(),
    };
    let stream = ChunkStream {
        file: Arc::new(Mutex::new(file)),
        request,
        chunk_size,
        total_size,
        total_chunks,
        _slot: slot,
    };
    let task = tokio::spawn(stream.send_all(dispatcher, actor));
    let mut downloads = lock(&binding.downloads);
    downloads.retain(|d| !d.is_finished());
    downloads.push(task.abort_handle());
    Ok(transfer)
}

/// One download being sent to the actor.
struct ChunkStream {
    file: Arc<Mutex<File>>,
    request: StreamRequest,
    chunk_size: u64,
    total_size: u64,
    total_chunks: u64,
    /// Released when the task ends or is aborted, with the file.
    _slot: Slot,
}

impl ChunkStream {
    async fn send_all(self, dispatcher: Arc<dyn ActorDispatcher>, actor: String) {
        let name = format!("{}/{}", self.request.container, self.request.id);
        for sequence_no in 0..self.total_chunks {
            let offset = sequence_no * self.chunk_size;
            let len = self.chunk_size.min(self.total_size - offset);
            let file = Arc::clone(&self.file);
            let bytes = blocking(move || {
                let mut file = lock(&file);
                let mut buf = vec![0; len as usize];
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(&mut buf))
                    .map_err(BlobError::io("reading a download chunk"))?;
                Ok(buf)
            })
            .await;
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::error!(%actor, object = %name, %error, "wascc:blobstore download stopped");
                    return;
                }
            };
            let chunk = FileChunk {
                sequence_no,
                container: self.request.container.clone(),
                id: self.request.id.clone(),
                total_bytes: self.total_size,
                chunk_size: self.chunk_size,
                context: self.request.context.clone(),
                chunk_bytes: bytes,
            };
            let payload = match encode(CAPABILITY_ID, &chunk) {
                Ok(payload) => payload,
                Err(error) => {
                    tracing::error!(%actor, object = %name, %error, "wascc:blobstore download stopped");
                    return;
                }
            };
            if let Err(error) = dispatcher.dispatch(&actor, OP_RECEIVE_CHUNK, payload).await {
                tracing::warn!(
                    %actor, object = %name, sequence_no, %error,
                    "wascc:blobstore download stopped: the actor did not take a chunk"
                );
                return;
            }
        }
    }
}

#[async_trait]
impl CapabilityProvider for FsBlobstore {
    fn descriptor(&self) -> CapabilityDescriptor {
        let to_provider = OperationDirection::ToProvider;
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit file-system blob store")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(
                "Blob store on the local file system: containers are directories under each \
                 binding's ROOT, uploads are chunked and atomic, downloads are streamed to the \
                 actor chunk by chunk.",
            )
            .with_operation(OP_CREATE_CONTAINER, to_provider, "Creates a container")
            .with_operation(
                OP_REMOVE_CONTAINER,
                to_provider,
                "Removes a container and its objects",
            )
            .with_operation(OP_REMOVE_OBJECT, to_provider, "Removes an object")
            .with_operation(OP_LIST_OBJECTS, to_provider, "Lists a container's objects")
            .with_operation(OP_GET_OBJECT_INFO, to_provider, "Reads an object's size")
            .with_operation(OP_START_UPLOAD, to_provider, "Announces an upload")
            .with_operation(
                OP_UPLOAD_CHUNK,
                to_provider,
                "Stores one chunk of an upload",
            )
            .with_operation(
                OP_START_DOWNLOAD,
                to_provider,
                "Starts streaming an object back as ReceiveChunk calls",
            )
            .with_operation(
                OP_RECEIVE_CHUNK,
                OperationDirection::ToActor,
                "Delivers one chunk of a download",
            )
            .build()
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *write(&self.dispatcher) = Some(dispatcher);
        Ok(())
    }

    /// Creates ROOT if needed and binds the pair to it; re-binding replaces
    /// the configuration and abandons the pair's uploads in progress.
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let config_error = |key: &str, reason: String| ProviderError::Config {
            capid: CAPABILITY_ID.to_string(),
            actor: request.actor.clone(),
            key: key.to_string(),
            reason,
        };
        let root = request.require(CAPABILITY_ID, ROOT)?.trim().to_string();
        if root.is_empty() {
            return Err(config_error(ROOT, "is empty; name a directory".to_string()));
        }
        let max_object_bytes = match request.values.get(MAX_OBJECT_BYTES).map(|v| v.trim()) {
            None | Some("") => DEFAULT_MAX_OBJECT_BYTES,
            Some(raw) => raw.parse().map_err(|_| {
                config_error(
                    MAX_OBJECT_BYTES,
                    format!("is `{raw}`, not a number of bytes"),
                )
            })?,
        };
        let max_uploads =
            positive(&request, MAX_CONCURRENT_UPLOADS)?.unwrap_or(DEFAULT_MAX_CONCURRENT_UPLOADS);
        let max_downloads = positive(&request, MAX_CONCURRENT_DOWNLOADS)?
            .unwrap_or(DEFAULT_MAX_CONCURRENT_DOWNLOADS);
        let max_bytes =
            positive(&request, MAX_BYTES_IN_FLIGHT)?.unwrap_or(DEFAULT_MAX_BYTES_IN_FLIGHT);
        let canonical = blocking({
            let root = root.clone();
            move || {
                std::fs::create_dir_all(&root).map_err(BlobError::io("creating ROOT"))?;
                std::fs::canonicalize(&root).map_err(BlobError::io("resolving ROOT"))
            }
        })
        .await
        .map_err(|e| config_error(ROOT, format!("is `{root}`, which cannot be used: {e}")))?;
        let transfers = Transfers {
            actor: request.actor.clone(),
            binding: request.binding.clone(),
            max_uploads,
            max_downloads,
            max_bytes,
            held: Mutex::new(Held::default()),
        };
        let binding = Binding {
            root: canonical,
            max_object_bytes,
            transfers: Arc::new(transfers),
            uploads: Mutex::new(HashMap::new()),
            downloads: Mutex::new(Vec::new()),
        };
        let replaced = self
            .bindings
            .insert(request.actor, request.binding, Arc::new(binding));
        // The old configuration's transfers stop now, rather than running
        // on outside every quota while a call still holds the old binding.
        if let Some(replaced) = replaced {
            abandon(&replaced);
        }
        Ok(())
    }

    /// Forgets the pair, stops its downloads and deletes its incomplete
    /// uploads; stored objects stay. An unknown pair is
    /// [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let removed = self.bindings.remove(actor, binding)?;
        abandon(&removed);
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let binding = self.binding(&call.actor, &call.binding)?;
        self.dispatch_op(binding, &call).await
    }

    async fn shutdown(&self) {
        for binding in self.bindings.drain() {
            abandon(&binding);
        }
        write(&self.dispatcher).take();
    }
}

/// A whole-number binding value of at least 1, or `None` when unset or
/// empty.
fn positive<T: std::str::FromStr + PartialEq + From<u8>>(
    request: &BindRequest,
    key: &str,
) -> Result<Option<T>, ProviderError> {
    if request.values.get(key).is_some_and(|v| v.trim().is_empty()) {
        return Ok(None);
    }
    request.positive(CAPABILITY_ID, key)
}

/// Stops a binding's downloads and drops its uploads (deleting their
/// temporary files) now, even if a call in flight still holds the binding.
fn abandon(binding: &Binding) {
    for download in lock(&binding.downloads).drain(..) {
        download.abort();
    }
    let uploads = std::mem::take(&mut *lock(&binding.uploads));
    // Dropped outside the lock: each deletes a file.
    drop(uploads);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_single_plain_components() {
        for good in ["a", "photo.jpg", "..hidden", "a b", "ü", ".x"] {
            check_name("object", good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/abs",
            "a\\b",
            "..\\x",
            "nul\0",
            ".waxosuit-upload-x",
        ] {
            let err = check_name("object", bad).unwrap_err();
            assert!(err.to_string().starts_with("object id"), "{err}");
        }
        check_name("object", &"x".repeat(255)).unwrap();
        check_name("object", &"x".repeat(256)).unwrap_err();
    }
}
