//! The in-memory reference store: what every other backend is measured
//! against.
//!
//! [`MemoryStore`] keeps one binding's containers and objects in memory,
//! objects as shared immutable byte buffers: an upload is kept as its
//! chunks ([`MemoryStaged`]) and becomes the object in one step when
//! published, and a download reads the version it opened
//! ([`MemoryReader`]) whatever happens to the object afterwards. Nothing
//! here waits, needs a clock or a runtime, so the SDK's fake host builds it
//! for `wasm32` as well and answers calls synchronously through
//! [`Binding::call_now`], which delivers downloads at once as the chunks
//! they consist of ([`Delivered`]).
//!
//! Objects live as long as the store; the binding's
//! [`Limits`](crate::Limits) bound what uploads in progress hold and what
//! is stored, as for every backend.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use parking_lot::Mutex;
use waxosuit_codec::blobstore::{FileChunk, StreamRequest};
use waxosuit_provider::ProviderError;

use crate::{
    Binding, BlobError, CAPABILITY_ID, Delivery, Download, ListBudget, Reader, Staged, Store,
    Stored,
};

/// Containers by id, objects by id: sorted, so nothing depends on a hash
/// seed.
type Containers = BTreeMap<String, BTreeMap<String, Arc<[u8]>>>;

/// One binding's containers and objects, in memory. See the [module
/// docs](self).
#[derive(Default)]
pub struct MemoryStore {
    containers: Arc<Mutex<Containers>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("containers", &self.containers.lock().len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The bytes of object `id` in `container`, if it is complete.
    pub fn object(&self, container: &str, id: &str) -> Option<Vec<u8>> {
        self.containers
            .lock()
            .get(container)?
            .get(id)
            .map(|bytes| bytes.to_vec())
    }

    fn with_object<T>(
        &self,
        container: &str,
        id: &str,
        f: impl FnOnce(&mut BTreeMap<String, Arc<[u8]>>) -> Option<T>,
    ) -> Result<T, BlobError> {
        let mut containers = self.containers.lock();
        let objects = containers
            .get_mut(container)
            .ok_or_else(|| BlobError::NoContainer(container.to_string()))?;
        f(objects).ok_or_else(|| BlobError::NoObject {
            container: container.to_string(),
            id: id.to_string(),
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    type Staged = MemoryStaged;
    type Reader = MemoryReader;

    async fn usage(&self) -> Result<Stored, BlobError> {
        let containers = self.containers.lock();
        Ok(containers.values().fold(
            Stored {
                containers: containers.len() as u64,
                ..Stored::default()
            },
            |mut stored, objects| {
                stored.objects += objects.len() as u64;
                stored.bytes += objects.values().map(|b| b.len() as u64).sum::<u64>();
                stored
            },
        ))
    }

    async fn create_container(&self, container: &str, may_create: bool) -> Result<bool, BlobError> {
        let mut containers = self.containers.lock();
        if containers.contains_key(container) {
            return Ok(false);
        }
        if !may_create {
            return Err(BlobError::NoContainer(container.to_string()));
        }
        containers.insert(container.to_string(), BTreeMap::new());
        Ok(true)
    }

    async fn remove_container(&self, container: &str) -> Result<Stored, BlobError> {
        let removed = self
            .containers
            .lock()
            .remove(container)
            .ok_or_else(|| BlobError::NoContainer(container.to_string()))?;
        let gone = Stored {
            containers: 1,
            objects: removed.len() as u64,
            bytes: removed.values().map(|b| b.len() as u64).sum(),
        };
        // Dropped outside the lock: it may free a lot.
        drop(removed);
        Ok(gone)
    }

    async fn remove_object(&self, container: &str, id: &str) -> Result<u64, BlobError> {
        self.with_object(container, id, |objects| objects.remove(id))
            .map(|bytes| bytes.len() as u64)
    }

    async fn list_objects(
        &self,
        container: &str,
        mut budget: ListBudget,
    ) -> Result<Vec<(String, u64)>, BlobError> {
        let containers = self.containers.lock();
        let objects = containers
            .get(container)
            .ok_or_else(|| BlobError::NoContainer(container.to_string()))?;
        objects
            .iter()
            .map(|(id, bytes)| {
                budget.admit(id)?;
                Ok((id.clone(), bytes.len() as u64))
            })
            .collect()
    }

    async fn object_size(&self, container: &str, id: &str) -> Result<u64, BlobError> {
        self.with_object(container, id, |objects| {
            objects.get(id).map(|bytes| bytes.len() as u64)
        })
    }

    async fn stage(&self, container: &str, id: &str) -> Result<MemoryStaged, BlobError> {
        if !self.containers.lock().contains_key(container) {
            return Err(BlobError::NoContainer(container.to_string()));
        }
        Ok(MemoryStaged {
            containers: Arc::clone(&self.containers),
            container: container.to_string(),
            id: id.to_string(),
            chunks: Mutex::new(Some(BTreeMap::new())),
        })
    }

    async fn open(&self, container: &str, id: &str) -> Result<MemoryReader, BlobError> {
        let bytes = self.with_object(container, id, |objects| objects.get(id).cloned())?;
        Ok(MemoryReader { bytes })
    }
}

/// An upload into a [`MemoryStore`]: its chunks by offset until published.
pub struct MemoryStaged {
    containers: Arc<Mutex<Containers>>,
    container: String,
    id: String,
    /// `None` once published.
    chunks: Mutex<Option<BTreeMap<u64, Vec<u8>>>>,
}

impl fmt::Debug for MemoryStaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStaged")
            .field("container", &self.container)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MemoryStaged {
    fn finished(&self) -> BlobError {
        BlobError::NoUpload {
            container: self.container.clone(),
            id: self.id.clone(),
        }
    }
}

#[async_trait]
impl Staged for MemoryStaged {
    async fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<(), BlobError> {
        let mut chunks = self.chunks.lock();
        let chunks = chunks.as_mut().ok_or_else(|| self.finished())?;
        // The table writes whole chunks at multiples of one chunk size, so
        // chunks never overlap and a retried one lands on itself.
        chunks.insert(offset, bytes);
        Ok(())
    }

    async fn publish(&self) -> Result<Option<u64>, BlobError> {
        let chunks = self.chunks.lock().take().ok_or_else(|| self.finished())?;
        let bytes: Arc<[u8]> = chunks.into_values().flatten().collect();
        let mut containers = self.containers.lock();
        let objects = containers
            .get_mut(&self.container)
            .ok_or_else(|| BlobError::NoContainer(self.container.clone()))?;
        Ok(objects
            .insert(self.id.clone(), bytes)
            .map(|old| old.len() as u64))
    }
}

/// An object of a [`MemoryStore`] opened for a download: the version that
/// was current then.
#[derive(Debug, Clone)]
pub struct MemoryReader {
    bytes: Arc<[u8]>,
}

#[async_trait]
impl Reader for MemoryReader {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, BlobError> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| self.bytes.get(start..start.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                BlobError::Internal(format!(
                    "{len} bytes at {offset} are outside a {}-byte object",
                    self.bytes.len()
                ))
            })
    }
}

/// A download the reference delivered at once: what the actor asked for
/// and the `ReceiveChunk` payloads a host would send it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The `StartDownload` request.
    pub request: StreamRequest,
    /// The chunks, in order.
    pub chunks: Vec<FileChunk>,
}

/// Collects the downloads of one call.
struct Collect(RefCell<Vec<Download<MemoryReader>>>);

impl Delivery<MemoryReader> for Collect {
    fn deliver(&self, download: Download<MemoryReader>) {
        self.0.borrow_mut().push(download);
    }
}

impl Binding<MemoryStore> {
    /// Runs one encoded call through the [operation table](crate::dispatch)
    /// now, for callers that are not async (the SDK's fake host); a
    /// download started by it is read at once, pushed to `delivered` and
    /// gives its quota back. A memory store never waits, so the call is
    /// complete on its first poll.
    ///
    /// # Errors
    ///
    /// As [`dispatch`](crate::dispatch).
    pub fn call_now(
        &self,
        operation: &str,
        payload: &[u8],
        delivered: &mut Vec<Delivered>,
    ) -> Result<Vec<u8>, ProviderError> {
        let collect = Collect(RefCell::new(Vec::new()));
        let reply = now(
            operation,
            crate::dispatch(self, operation, payload, &collect),
        )?;
        for download in collect.0.into_inner() {
            let chunks =
                now(operation, download.chunks())?.map_err(|e| e.into_provider_error(operation))?;
            delivered.push(Delivered {
                request: download.request().clone(),
                chunks,
            });
        }
        reply
    }
}

/// Polls `future` once: nothing in a memory store awaits anything.
fn now<F: Future>(operation: &str, future: F) -> Result<F::Output, ProviderError> {
    match std::pin::pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        // Unreachable with the reference store.
        Poll::Pending => Err(ProviderError::Internal {
            capid: CAPABILITY_ID.to_string(),
            message: format!("the in-memory `{operation}` did not complete at once"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready<F: Future>(future: F) -> F::Output {
        now("test", future).unwrap()
    }

    #[test]
    fn staged_uploads_refuse_what_comes_after_publishing() {
        let store = MemoryStore::new();
        ready(store.create_container("c", true)).unwrap();
        let staged = ready(store.stage("c", "o")).unwrap();
        ready(staged.write(2, b"cd".to_vec())).unwrap();
        ready(staged.write(0, b"ab".to_vec())).unwrap();
        assert_eq!(store.object("c", "o"), None, "not before publishing");
        ready(staged.publish()).unwrap();
        assert_eq!(store.object("c", "o").unwrap(), b"abcd");
        for err in [
            ready(staged.write(0, b"zz".to_vec())).unwrap_err(),
            ready(staged.publish()).unwrap_err(),
        ] {
            assert_eq!(
                err.to_string(),
                "no upload of `o` in container `c` is in progress; send StartUpload first"
            );
        }
        assert_eq!(store.object("c", "o").unwrap(), b"abcd");

        let orphan = ready(store.stage("c", "p")).unwrap();
        ready(store.remove_container("c")).unwrap();
        let err = ready(orphan.publish()).unwrap_err();
        assert_eq!(err.to_string(), "container `c` does not exist");
        let err = ready(store.stage("c", "q")).unwrap_err();
        assert_eq!(err.to_string(), "container `c` does not exist");
    }

    #[test]
    fn readers_keep_their_version_and_refuse_reads_outside_it() {
        let store = MemoryStore::new();
        ready(store.create_container("c", true)).unwrap();
        let staged = ready(store.stage("c", "o")).unwrap();
        ready(staged.write(0, b"old".to_vec())).unwrap();
        ready(staged.publish()).unwrap();
        let reader = ready(store.open("c", "o")).unwrap();
        let staged = ready(store.stage("c", "o")).unwrap();
        ready(staged.write(0, b"newer".to_vec())).unwrap();
        ready(staged.publish()).unwrap();
        assert_eq!(
            (reader.size(), ready(reader.read(1, 2)).unwrap()),
            (3, b"ld".to_vec())
        );
        let err = ready(reader.read(2, 2)).unwrap_err();
        assert_eq!(err.to_string(), "2 bytes at 2 are outside a 3-byte object");
        let err = ready(reader.read(u64::MAX, 1)).unwrap_err();
        assert!(matches!(err, BlobError::Internal(_)), "{err}");
        let err = ready(store.open("c", "missing")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object `missing` does not exist in container `c`"
        );
    }

    #[test]
    fn call_now_answers_at_once() {
        let binding = Binding::new("MA", "default", MemoryStore::new(), Default::default());
        let mut delivered = Vec::new();
        let err = binding
            .call_now("Teleport", &[], &mut delivered)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "wascc:blobstore does not support the operation `Teleport`"
        );
        let err = binding
            .call_now(
                waxosuit_codec::blobstore::OP_LIST_OBJECTS,
                b"\xc1",
                &mut delivered,
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad payload for wascc:blobstore `ListObjects`: "),
            "{err}"
        );
        assert!(delivered.is_empty());
    }
}
