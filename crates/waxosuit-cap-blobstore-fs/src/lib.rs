//! The file-system `wascc:blobstore` provider of Waxosuit.
//!
//! Actors store and fetch binary objects through the waSCC blob store
//! contract; this provider keeps them as plain files, so an operator can
//! inspect, back up or seed them with ordinary tools. What actors observe
//! (operations, replies, errors, chunking, quotas, id rules) is the
//! contract crate's, `waxosuit_cap_blobstore`; this crate is a backend of
//! it: files, directories, links and the task that sends downloads.
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
//!   | [`MAX_CONTAINERS`] | `1000` | containers (directories) the binding may hold |
//!   | [`MAX_OBJECTS`] | `100000` | objects (files) the binding may hold in all its containers |
//!   | [`MAX_STORED_BYTES`] | `17179869184` (16 GiB) | bytes its objects may hold in all |
//!
//!   A relative `ROOT` is taken as given, i.e. against the host's working
//!   directory; `waxosuit up` hands the provider `ROOT` already resolved
//!   against the manifest's directory (see `waxosuit_manifest::PATH_VALUES`).
//!   Each (actor, binding) pair sees only its own `ROOT`: a container is a
//!   subdirectory of it and an object a regular file in a container. Two
//!   bindings share data only if the operator gives them the same `ROOT`;
//!   a `ROOT` inside another binding's, or holding one, is refused at bind
//!   (one actor's container would be the other's whole store).
//!   What `ROOT` holds is counted when the binding is made (a walk of its
//!   containers) and kept up to date by the binding's own operations; two
//!   bindings sharing a `ROOT` each count the other's changes only at
//!   their next bind.
//! * **Operations, quotas and ids** are the contract's (its crate docs have
//!   the table). The quotas bound what one binding holds at once, so one
//!   actor cannot exhaust the host's file descriptors, disk or memory for
//!   the others: a transfer over one is refused before any file is opened.
//!   Ids are refused before the file system is touched unless they are one
//!   plain path component.
//! * **Uploads** are written to a hidden temporary file in the container
//!   (`.waxosuit-upload-…`, under the contract's reserved prefix), each
//!   chunk at its offset. When every byte has arrived the file is synced
//!   and renamed over the object in one step, so readers see the old object
//!   or the whole new one, never a part. An upload that never completes —
//!   the actor stops sending, a new `StartUpload` of the same object
//!   replaces it, the binding is removed or the provider shuts down —
//!   leaves no object and its temporary file is deleted.
//! * **Downloads**: the object is opened before the `StartDownload` reply,
//!   so a concurrent upload replacing it does not mix versions; a task on
//!   the host's runtime then sends its chunks
//!   ([`Download::send`](waxosuit_cap_blobstore::Download::send)). If the
//!   actor fails a chunk, the download stops (and is logged); removing the
//!   binding stops its downloads.
//! * **Links.** A container or object that is a symbolic link resolving
//!   outside `ROOT` is refused as a [`ProviderError::Backend`]; links
//!   resolving inside `ROOT` are followed; listings leave out links leaving
//!   `ROOT` and subdirectories. The provider never creates links, so they
//!   come from the operator or other processes; the check runs right before
//!   each file-system operation, so a process that swaps links inside
//!   `ROOT` concurrently is outside this protection.
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

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::task::AbortHandle;
use waxosuit_cap_blobstore::{
    Binding, BlobError, CAPABILITY_ID, Delivery, Download, Limits, ListBudget, Reader, Staged,
    Store, Stored, check_container, check_object,
};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, ProviderCall, ProviderError,
};

pub use waxosuit_cap_blobstore::{
    DEFAULT_CHUNK_BYTES, DEFAULT_MAX_BYTES_IN_FLIGHT, DEFAULT_MAX_CONCURRENT_DOWNLOADS,
    DEFAULT_MAX_CONCURRENT_UPLOADS, DEFAULT_MAX_CONTAINERS, DEFAULT_MAX_OBJECTS,
    DEFAULT_MAX_STORED_BYTES, MAX_BYTES_IN_FLIGHT, MAX_CHUNK_BYTES, MAX_CONCURRENT_DOWNLOADS,
    MAX_CONCURRENT_UPLOADS, MAX_CONTAINERS, MAX_OBJECT_BYTES, MAX_OBJECTS, MAX_STORED_BYTES,
};

/// Binding value: the directory holding the binding's containers
/// (required; created if missing).
pub const ROOT: &str = "ROOT";

/// Temporary files of uploads in progress: under the contract's reserved
/// prefix, so actors cannot name them and listings leave them out.
const UPLOAD_PREFIX: &str = ".waxosuit-upload-";

/// The file-system `wascc:blobstore` provider. See the [crate docs](crate).
pub struct FsBlobstore {
    bindings: Bindings<Arc<FsBinding>>,
    dispatcher: RwLock<Option<Arc<dyn ActorDispatcher>>>,
    /// Held by a binding from the check of its ROOT against the others'
    /// until it is in place: two bound at once could each pass the check
    /// before the other was there.
    binding: tokio::sync::Mutex<()>,
}

impl Default for FsBlobstore {
    fn default() -> Self {
        FsBlobstore {
            bindings: Bindings::new(CAPABILITY_ID),
            dispatcher: RwLock::new(None),
            binding: tokio::sync::Mutex::new(()),
        }
    }
}

impl std::fmt::Debug for FsBlobstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: Vec<PathBuf> = self
            .bindings
            .read_all(|map| map.values().map(|b| b.blobs.store().root.clone()).collect());
        f.debug_struct("FsBlobstore")
            .field("roots", &roots)
            .finish_non_exhaustive()
    }
}

/// One (actor, binding) pair: the contract's state over its `ROOT`, and
/// the tasks sending its downloads.
struct FsBinding {
    blobs: Binding<FsStore>,
    downloads: Mutex<Vec<AbortHandle>>,
}

impl FsBinding {
    /// Stops the downloads and drops the uploads (deleting their temporary
    /// files) now, even if a call in flight still holds the binding.
    fn abandon(&self) {
        for download in self.downloads.lock().drain(..) {
            download.abort();
        }
        self.blobs.abandon_uploads();
    }
}

impl Drop for FsBinding {
    fn drop(&mut self) {
        for download in self.downloads.lock().drain(..) {
            download.abort();
        }
    }
}

/// What the file system adds to the contract's failures; the text reaches
/// the actor as a backend error.
#[derive(Debug, thiserror::Error)]
enum FsError {
    #[error("{kind} `{path}` resolves outside this binding's ROOT; links leaving ROOT are refused")]
    Escapes { kind: &'static str, path: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BlobError {
    let what = what.into();
    move |source| BlobError::backend(FsError::Io { what, source })
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BlobError::Internal(format!("a file system task failed: {e}")))?
}

/// The container's directory, checked to exist and stay inside `root`.
fn container_dir(root: &Path, container: &str) -> Result<PathBuf, BlobError> {
    // Checked by the operation table already; again here because this is
    // what keeps paths inside ROOT.
    check_container(container)?;
    let canonical = match root.join(container).canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BlobError::NoContainer(container.to_string()));
        }
        Err(e) => return Err(io_error(format!("container `{container}`"))(e)),
    };
    inside_root(root, "container", container, &canonical)?;
    if !canonical.is_dir() {
        return Err(BlobError::NoContainer(container.to_string()));
    }
    Ok(canonical)
}

/// The object's file, checked to exist, be a file and stay inside `root`.
fn object_file(root: &Path, container: &str, id: &str) -> Result<PathBuf, BlobError> {
    let dir = container_dir(root, container)?;
    check_object(id)?;
    let missing = || BlobError::NoObject {
        container: container.to_string(),
        id: id.to_string(),
    };
    let canonical = match dir.join(id).canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(io_error(format!("object `{container}/{id}`"))(e)),
    };
    inside_root(root, "object", &format!("{container}/{id}"), &canonical)?;
    if !canonical.is_file() {
        return Err(missing());
    }
    Ok(canonical)
}

/// Refuses an object about to be replaced if it is a link leaving `root`.
/// Replacing one would be harmless (a rename replaces the link itself),
/// but refusing keeps one rule for links.
fn replaceable(root: &Path, container: &str, id: &str) -> Result<PathBuf, BlobError> {
    let dir = container_dir(root, container)?;
    match object_file(root, container, id) {
        Ok(_) | Err(BlobError::NoObject { .. }) => Ok(dir),
        Err(e) => Err(e),
    }
}

fn inside_root(
    root: &Path,
    kind: &'static str,
    name: &str,
    canonical: &Path,
) -> Result<(), BlobError> {
    // `starts_with` compares whole components, so `/root-other` is not
    // inside `/root`. ROOT itself is not a valid container or object.
    if canonical.starts_with(root) && canonical != root {
        Ok(())
    } else {
        Err(BlobError::backend(FsError::Escapes {
            kind,
            path: name.to_string(),
        }))
    }
}

/// One binding's `ROOT`, as the contract's [`Store`].
#[derive(Debug)]
struct FsStore {
    /// Canonical, so prefix checks compare like with like.
    root: PathBuf,
    /// Held while an object's size is read and the object replaced or
    /// removed (and a container counted and removed), so that two changes
    /// of one object never both report its size gone: the binding's count
    /// of what it stores would drift down, and its quotas with it.
    changes: Arc<std::sync::Mutex<()>>,
}

/// Takes `changes`; a panic while it was held left nothing half-counted
/// that the lock protects, so a poisoned lock is taken as it is.
fn serialized(changes: &std::sync::Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    changes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FsStore {
    /// Runs `work` on a blocking thread with the root.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Path) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let root = self.root.clone();
        blocking(move || work(&root)).await
    }
}

#[async_trait]
impl Store for FsStore {
    type Staged = FsStaged;
    type Reader = FsReader;

    async fn usage(&self) -> Result<Stored, BlobError> {
        self.run(usage).await
    }

    async fn create_container(&self, container: &str, may_create: bool) -> Result<bool, BlobError> {
        let id = container.to_string();
        self.run(move |root| {
            check_container(&id)?;
            if !may_create {
                // Only an existing one, which must be a directory inside
                // ROOT; a missing one is the caller's quota error.
                return container_dir(root, &id).map(|_| false);
            }
            match std::fs::create_dir(root.join(&id)) {
                Ok(()) => Ok(true),
                // Existing is fine, as long as it is a directory inside
                // ROOT (not, say, a link to one elsewhere).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    container_dir(root, &id).map(|_| false)
                }
                Err(e) => Err(io_error(format!("creating container `{id}`"))(e)),
            }
        })
        .await
    }

    async fn remove_container(&self, container: &str) -> Result<Stored, BlobError> {
        let id = container.to_string();
        let changes = Arc::clone(&self.changes);
        self.run(move |root| {
            let _changes = serialized(&changes);
            let dir = container_dir(root, &id)?;
            // Counted as the binding counted it: its objects, not temporary
            // files or what else stands there.
            let (objects, bytes) = count_objects(root, &id, &dir)?;
            std::fs::remove_dir_all(&dir)
                .map_err(io_error(format!("removing container `{id}`")))?;
            Ok(Stored {
                containers: 1,
                objects,
                bytes,
            })
        })
        .await
    }

    async fn remove_object(&self, container: &str, id: &str) -> Result<u64, BlobError> {
        let (container, id) = (container.to_string(), id.to_string());
        let changes = Arc::clone(&self.changes);
        self.run(move |root| {
            let _changes = serialized(&changes);
            let file = object_file(root, &container, &id)?;
            let size = std::fs::metadata(&file)
                .map_err(io_error(format!("reading object `{container}/{id}`")))?
                .len();
            std::fs::remove_file(&file)
                .map_err(io_error(format!("removing object `{container}/{id}`")))?;
            Ok(size)
        })
        .await
    }

    async fn list_objects(
        &self,
        container: &str,
        budget: ListBudget,
    ) -> Result<Vec<(String, u64)>, BlobError> {
        let container = container.to_string();
        self.run(move |root| list_objects(root, &container, budget))
            .await
    }

    async fn object_size(&self, container: &str, id: &str) -> Result<u64, BlobError> {
        let (container, id) = (container.to_string(), id.to_string());
        self.run(move |root| {
            let file = object_file(root, &container, &id)?;
            let meta = std::fs::metadata(&file)
                .map_err(io_error(format!("reading object `{container}/{id}`")))?;
            Ok(meta.len())
        })
        .await
    }

    async fn stage(&self, container: &str, id: &str) -> Result<FsStaged, BlobError> {
        let (container, id) = (container.to_string(), id.to_string());
        let changes = Arc::clone(&self.changes);
        self.run(move |root| {
            let dir = replaceable(root, &container, &id)?;
            let temp = dir.join(format!("{UPLOAD_PREFIX}{}", nuid::next()));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(io_error(format!("creating an upload in `{container}`")))?;
            Ok(FsStaged(Arc::new(StagedFile {
                changes,
                root: root.to_path_buf(),
                container,
                id,
                temp,
                file: Mutex::new(Some(file)),
            })))
        })
        .await
    }

    async fn open(&self, container: &str, id: &str) -> Result<FsReader, BlobError> {
        let (container, id) = (container.to_string(), id.to_string());
        self.run(move |root| {
            let path = object_file(root, &container, &id)?;
            let file =
                File::open(&path).map_err(io_error(format!("opening `{container}/{id}`")))?;
            let size = file
                .metadata()
                .map_err(io_error(format!("reading `{container}/{id}`")))?
                .len();
            Ok(FsReader {
                file: Arc::new(Mutex::new(file)),
                size,
            })
        })
        .await
    }
}

fn list_objects(
    root: &Path,
    container: &str,
    mut budget: ListBudget,
) -> Result<Vec<(String, u64)>, BlobError> {
    let dir = container_dir(root, container)?;
    let mut objects = Vec::new();
    each_object(root, container, &dir, |id, size| {
        budget.admit(&id)?;
        objects.push((id, size));
        Ok(())
    })?;
    Ok(objects)
}

/// Calls `found` with the id and size of each object in `container`
/// (whose directory is `dir`), as the contract sees objects: the same
/// rules as GetObjectInfo, so temporary files, subdirectories, links
/// leaving ROOT and names that are not UTF-8 are not objects.
fn each_object(
    root: &Path,
    container: &str,
    dir: &Path,
    mut found: impl FnMut(String, u64) -> Result<(), BlobError>,
) -> Result<(), BlobError> {
    let listing = || io_error(format!("listing container `{container}`"));
    for entry in std::fs::read_dir(dir).map_err(listing())? {
        let entry = entry.map_err(listing())?;
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if check_object(&id).is_err() {
            continue;
        }
        let Ok(file) = object_file(root, container, &id) else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        found(id, meta.len())?;
    }
    Ok(())
}

/// The objects in one container and their bytes.
fn count_objects(root: &Path, container: &str, dir: &Path) -> Result<(u64, u64), BlobError> {
    let (mut objects, mut bytes) = (0u64, 0u64);
    each_object(root, container, dir, |_, size| {
        objects += 1;
        bytes = bytes.saturating_add(size);
        Ok(())
    })?;
    Ok((objects, bytes))
}

/// What `root` holds, as the contract counts it: its containers (the
/// subdirectories an actor could name), their objects and their bytes.
fn usage(root: &Path) -> Result<Stored, BlobError> {
    let mut stored = Stored::default();
    let listing = || io_error("listing ROOT");
    for entry in std::fs::read_dir(root).map_err(listing())? {
        let entry = entry.map_err(listing())?;
        let Some(container) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if check_container(&container).is_err() {
            continue;
        }
        let Ok(dir) = container_dir(root, &container) else {
            continue;
        };
        let (objects, bytes) = count_objects(root, &container, &dir)?;
        stored.containers += 1;
        stored.objects += objects;
        stored.bytes = stored.bytes.saturating_add(bytes);
    }
    Ok(stored)
}

/// An upload in progress: a hidden temporary file in its container.
struct FsStaged(Arc<StagedFile>);

/// Shared with the blocking tasks that write it. Dropping the last
/// reference deletes the temporary file, which after publishing no longer
/// exists under that name.
struct StagedFile {
    /// The store's (see [`FsStore::changes`]).
    changes: Arc<std::sync::Mutex<()>>,
    root: PathBuf,
    container: String,
    id: String,
    temp: PathBuf,
    /// `None` once publishing has begun: a late chunk must not write into
    /// the published object through this handle.
    file: Mutex<Option<File>>,
}

impl StagedFile {
    fn finished(&self) -> BlobError {
        BlobError::NoUpload {
            container: self.container.clone(),
            id: self.id.clone(),
        }
    }
}

impl Drop for StagedFile {
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

#[async_trait]
impl Staged for FsStaged {
    async fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<(), BlobError> {
        let staged = Arc::clone(&self.0);
        blocking(move || {
            // Held for the seek and the write, so chunks of one upload
            // written at once do not interleave.
            let file = staged.file.lock();
            let mut file = file.as_ref().ok_or_else(|| staged.finished())?;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(&bytes))
                .map_err(io_error("writing an upload chunk"))
        })
        .await
    }

    async fn publish(&self) -> Result<Option<u64>, BlobError> {
        let staged = Arc::clone(&self.0);
        blocking(move || {
            let mut slot = staged.file.lock();
            let file = slot.take().ok_or_else(|| staged.finished())?;
            // Synced before the store's lock is taken: it may be slow.
            file.sync_all().map_err(io_error("syncing an upload"))?;
            let _changes = serialized(&staged.changes);
            // Check again: the container may have been replaced meanwhile.
            let dir = replaceable(&staged.root, &staged.container, &staged.id)?;
            // What is replaced is no longer stored: its size settles the
            // binding's count.
            let replaced = match object_file(&staged.root, &staged.container, &staged.id) {
                Ok(path) => Some(std::fs::metadata(&path).map_or(0, |m| m.len())),
                Err(_) => None,
            };
            std::fs::rename(&staged.temp, dir.join(&staged.id)).map_err(io_error(format!(
                "moving the upload into place at `{}/{}`",
                staged.container, staged.id
            )))?;
            Ok(replaced)
        })
        .await
    }
}

/// An object opened for a download; the open file keeps the version read.
struct FsReader {
    file: Arc<Mutex<File>>,
    size: u64,
}

#[async_trait]
impl Reader for FsReader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, BlobError> {
        let file = Arc::clone(&self.file);
        blocking(move || {
            let mut file = file.lock();
            let mut buf = vec![0; len];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(io_error("reading a download chunk"))?;
            Ok(buf)
        })
        .await
    }
}

/// Sends one call's download from a task on the host's runtime.
struct Sender<'a> {
    binding: &'a FsBinding,
    dispatcher: Option<Arc<dyn ActorDispatcher>>,
    actor: &'a str,
}

impl Delivery<FsReader> for Sender<'_> {
    fn ready(&self) -> Result<(), ProviderError> {
        match self.dispatcher {
            Some(_) => Ok(()),
            None => Err(ProviderError::Unavailable {
                capid: CAPABILITY_ID.to_string(),
                reason: "the provider has not been started, so it cannot send chunks".to_string(),
            }),
        }
    }

    fn deliver(&self, download: Download<FsReader>) {
        // `ready` said there is one; without one the download is dropped
        // and its quota given back.
        let Some(dispatcher) = self.dispatcher.clone() else {
            return;
        };
        let actor = self.actor.to_string();
        let task = tokio::spawn(async move {
            if let Err(stopped) = download.send(&*dispatcher, &actor).await {
                if stopped.by_actor() {
                    tracing::warn!(error = %stopped, "wascc:blobstore download stopped");
                } else {
                    tracing::error!(error = %stopped, "wascc:blobstore download stopped");
                }
            }
        });
        let mut downloads = self.binding.downloads.lock();
        downloads.retain(|d| !d.is_finished());
        downloads.push(task.abort_handle());
    }
}

impl FsBlobstore {
    /// A provider with no bindings.
    pub fn new() -> FsBlobstore {
        FsBlobstore::default()
    }
}

#[async_trait]
impl CapabilityProvider for FsBlobstore {
    fn descriptor(&self) -> CapabilityDescriptor {
        waxosuit_cap_blobstore::descriptor(
            "Waxosuit file-system blob store",
            "Blob store on the local file system: containers are directories under each \
             binding's ROOT, uploads are chunked and atomic, downloads are streamed to the \
             actor chunk by chunk.",
        )
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *self.dispatcher.write() = Some(dispatcher);
        Ok(())
    }

    /// Creates ROOT if needed and binds the pair to it; re-binding replaces
    /// the configuration and abandons the pair's transfers in progress.
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
        let limits = Limits::from_binding(&request)?;
        let canonical = blocking({
            let root = root.clone();
            move || {
                std::fs::create_dir_all(&root).map_err(io_error("creating ROOT"))?;
                std::fs::canonicalize(&root).map_err(io_error("resolving ROOT"))
            }
        })
        .await
        .map_err(|e| config_error(ROOT, format!("is `{root}`, which cannot be used: {e}")))?;
        // A ROOT inside another binding's (or around it) would make one
        // actor's container the other's whole store: readable, and removed
        // with `RemoveContainer`. The same ROOT is sharing, on purpose.
        let _one_at_a_time = self.binding.lock().await;
        let nested = self.bindings.read_all(|bindings| {
            bindings.iter().find_map(|(actor, binding, other)| {
                let theirs = &other.blobs.store().root;
                let same_pair = actor == request.actor && binding == request.binding;
                let nested = theirs != &canonical
                    && (theirs.starts_with(&canonical) || canonical.starts_with(theirs));
                (nested && !same_pair).then(|| (actor.to_string(), theirs.clone()))
            })
        });
        if let Some((actor, theirs)) = nested {
            return Err(config_error(
                ROOT,
                format!(
                    "is `{root}`, which is inside (or holds) actor {actor}'s ROOT `{}`; one \
                     actor's container would be the other's whole store. Give each binding a \
                     directory of its own beside the others (or the very same one, to share)",
                    theirs.display()
                ),
            ));
        }
        // What ROOT holds already counts against the binding's quotas.
        let blobs = Binding::new(
            request.actor.as_str(),
            request.binding.as_str(),
            FsStore {
                root: canonical,
                changes: Arc::default(),
            },
            limits,
        )
        .counting()
        .await
        .map_err(|e| config_error(ROOT, format!("is `{root}`, which cannot be counted: {e}")))?;
        let binding = FsBinding {
            blobs,
            downloads: Mutex::new(Vec::new()),
        };
        let replaced = self
            .bindings
            .insert(request.actor, request.binding, Arc::new(binding));
        // The old configuration's transfers stop now, rather than running
        // on outside every quota while a call still holds the old binding.
        if let Some(replaced) = replaced {
            replaced.abandon();
        }
        Ok(())
    }

    /// Forgets the pair, stops its downloads and deletes its incomplete
    /// uploads; stored objects stay. An unknown pair is
    /// [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let removed = self.bindings.remove(actor, binding)?;
        removed.abandon();
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let binding = self.bindings.get(&call.actor, &call.binding)?;
        let sender = Sender {
            binding: &binding,
            dispatcher: self.dispatcher.read().clone(),
            actor: &call.actor,
        };
        waxosuit_cap_blobstore::dispatch(&binding.blobs, &call.operation, &call.payload, &sender)
            .await
    }

    async fn shutdown(&self) {
        for binding in self.bindings.drain() {
            binding.abandon();
        }
        self.dispatcher.write().take();
    }
}

#[cfg(test)]
mod tests {
    use waxosuit_cap_blobstore::RESERVED_PREFIX;

    use super::*;

    #[test]
    fn temporary_uploads_are_named_as_no_actor_can() {
        assert!(UPLOAD_PREFIX.starts_with(RESERVED_PREFIX));
        let temp = format!("{UPLOAD_PREFIX}{}", nuid::next());
        let err = check_object(&temp).unwrap_err();
        assert!(
            err.to_string().contains("reserved for the provider"),
            "{err}"
        );
    }
}
