//! One binding's contract state and the operation table: what every
//! operation means, whatever the backend.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::blobstore::{
    Blob, BlobList, Container, FileChunk, OP_CREATE_CONTAINER, OP_GET_OBJECT_INFO, OP_LIST_OBJECTS,
    OP_RECEIVE_CHUNK, OP_REMOVE_CONTAINER, OP_REMOVE_OBJECT, OP_START_DOWNLOAD, OP_START_UPLOAD,
    OP_UPLOAD_CHUNK, StreamRequest, Transfer,
};
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_provider::ProviderError;

use crate::limits::{Direction, ObjectSlot, Slot, Transfers};
use crate::names::{check_container, check_object};
use crate::store::{Delivery, ListBudget, Staged, Store};
use crate::{
    BlobError, CAPABILITY_ID, DEFAULT_CHUNK_BYTES, Download, Limits, MAX_CHUNK_BYTES, MAX_CHUNKS,
    Reader, Stored,
};

/// One actor binding's blob store: the backend's [`Store`], the binding's
/// [`Limits`] and what its transfers hold of them, and its uploads in
/// progress. [`dispatch`] answers the binding's calls from it.
///
/// Dropping a binding abandons its uploads; downloads already handed to a
/// [`Delivery`] are the delivery's to stop.
pub struct Binding<S: Store> {
    store: S,
    transfers: Arc<Transfers>,
    uploads: Mutex<Uploads<S::Staged>>,
}

/// Uploads in progress by (container, object id).
type Uploads<U> = HashMap<(String, String), Arc<Upload<U>>>;

impl<S: Store + fmt::Debug> fmt::Debug for Binding<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("store", &self.store)
            .field("limits", &self.transfers.limits)
            .field("uploads", &self.uploads.lock().len())
            .finish()
    }
}

/// An upload in progress. Dropping it discards the staged data (a
/// published one has nothing left to discard) and then gives its quota
/// back, in field order.
struct Upload<U> {
    staged: U,
    total_bytes: u64,
    chunk_size: u64,
    progress: Mutex<Progress>,
    /// Its place in what the binding stores; `None` once published.
    object: Mutex<Option<ObjectSlot>>,
    _slot: Slot,
}

impl<U: Staged> Upload<U> {
    /// Publishes the staged data and settles the binding's count against
    /// the object it replaced.
    async fn publish(&self) -> Result<(), BlobError> {
        let replaced = self.staged.publish().await?;
        if let Some(object) = self.object.lock().take() {
            object.publish(replaced);
        }
        Ok(())
    }
}

struct Progress {
    /// One bit per chunk, sized when the upload starts: at most
    /// [`MAX_CHUNKS`] / 8 bytes, whatever chunks arrive.
    received: Vec<u64>,
    received_bytes: u64,
    complete: bool,
}

impl Progress {
    fn new(chunks: u64) -> Progress {
        Progress {
            received: vec![0; chunks.div_ceil(64) as usize],
            received_bytes: 0,
            complete: false,
        }
    }

    /// Marks chunk `n`; true the first time.
    fn mark(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        match self.received.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}

impl<U> Upload<U> {
    /// Counts chunk `sequence_no` of `bytes` as written (once, however
    /// often it is retried); true for the one call that completes the
    /// upload.
    fn record(&self, sequence_no: u64, bytes: u64) -> bool {
        let mut progress = self.progress.lock();
        if progress.mark(sequence_no) {
            progress.received_bytes += bytes;
        }
        if progress.received_bytes < self.total_bytes || progress.complete {
            return false;
        }
        progress.complete = true;
        true
    }
}

impl<S: Store> Binding<S> {
    /// The binding `binding` of `actor` (both named in quota errors) over
    /// `store`, with `limits`.
    pub fn new(
        actor: impl Into<String>,
        binding: impl Into<String>,
        store: S,
        limits: Limits,
    ) -> Binding<S> {
        Binding {
            store,
            transfers: Arc::new(Transfers::new(actor.into(), binding.into(), limits)),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    /// The backend's store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The binding's limits.
    pub fn limits(&self) -> Limits {
        self.transfers.limits
    }

    /// Counts what the store holds already ([`Store::usage`]) against the
    /// binding's [`MAX_CONTAINERS`](crate::MAX_CONTAINERS),
    /// [`MAX_OBJECTS`](crate::MAX_OBJECTS) and
    /// [`MAX_STORED_BYTES`](crate::MAX_STORED_BYTES); a binding made over
    /// a store that is not empty must be counted before its first call,
    /// or it starts from nothing.
    ///
    /// # Errors
    ///
    /// What the store's [`usage`](Store::usage) fails with.
    pub async fn counting(self) -> Result<Binding<S>, BlobError> {
        let stored = self.store.usage().await?;
        self.transfers.count_from(stored);
        Ok(self)
    }

    /// What the binding stores now, as counted (uploads in progress
    /// included: each holds its place from its `StartUpload`).
    pub fn stored(&self) -> Stored {
        self.transfers.stored()
    }

    /// Drops every upload in progress now, discarding what was written,
    /// even if a call in flight still holds the binding.
    pub fn abandon_uploads(&self) {
        let uploads = std::mem::take(&mut *self.uploads.lock());
        // Dropped outside the lock: discarding may delete files.
        drop(uploads);
    }

    async fn create_container(&self, container: &str) -> Result<(), BlobError> {
        check_container(container)?;
        // A place is taken before the store is asked, so concurrent creates
        // cannot all pass the last one; given back if it existed already.
        let taken = self.transfers.take_container();
        match self.store.create_container(container, taken).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                if taken {
                    self.transfers.release_container();
                }
                Ok(())
            }
            Err(BlobError::NoContainer(_)) if !taken => Err(self.transfers.containers_full()),
            Err(e) => {
                if taken {
                    self.transfers.release_container();
                }
                Err(e)
            }
        }
    }

    async fn remove_object(&self, container: &str, id: &str) -> Result<(), BlobError> {
        check_container(container)?;
        check_object(id)?;
        let size = self.store.remove_object(container, id).await?;
        self.transfers.removed(Stored {
            containers: 0,
            objects: 1,
            bytes: size,
        });
        Ok(())
    }

    async fn list_objects(&self, container: &str) -> Result<BlobList, BlobError> {
        check_container(container)?;
        let budget = ListBudget::new(container, self.transfers.limits.actor_payload_bytes);
        let mut blobs: Vec<Blob> = self
            .store
            .list_objects(container, budget)
            .await?
            .into_iter()
            // Names an actor could not use (a backend's temporary files,
            // say) are not its objects.
            .filter(|(id, _)| check_object(id).is_ok())
            .map(|(id, byte_size)| Blob {
                id,
                container: container.to_string(),
                byte_size,
            })
            .collect();
        blobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(BlobList { blobs })
    }

    async fn remove_container(&self, container: &str) -> Result<(), BlobError> {
        check_container(container)?;
        // Uploads into it could not be published any more; drop them now.
        let abandoned: Vec<_> = self
            .uploads
            .lock()
            .extract_if(|(c, _), _| c == container)
            .collect();
        drop(abandoned);
        let gone = self.store.remove_container(container).await?;
        self.transfers.removed(gone);
        Ok(())
    }

    async fn start_upload(&self, chunk: FileChunk) -> Result<(), BlobError> {
        let max = self.transfers.limits.max_object_bytes;
        if chunk.total_bytes > max {
            return Err(BlobError::BadRequest(format!(
                "totalBytes {} exceeds MAX_OBJECT_BYTES ({max}) for this binding",
                chunk.total_bytes
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
        // Which chunks arrived is kept per chunk: 1-byte chunks of a 1 GiB
        // object would be a billion entries, none of them in the quota.
        let chunks = if chunk.total_bytes == 0 {
            0
        } else {
            chunk.total_bytes.div_ceil(chunk.chunk_size)
        };
        if chunks > MAX_CHUNKS && chunk.total_bytes.div_ceil(MAX_CHUNKS) > MAX_CHUNK_BYTES {
            return Err(BlobError::BadRequest(format!(
                "totalBytes {} is more than an upload can carry: at most {MAX_CHUNKS} chunks of \
                 {MAX_CHUNK_BYTES} bytes",
                chunk.total_bytes
            )));
        }
        if chunks > MAX_CHUNKS {
            return Err(BlobError::BadRequest(format!(
                "{} bytes in chunks of {} is {chunks} chunks, more than the {MAX_CHUNKS} an upload \
                 may have; use chunks of at least {} bytes",
                chunk.total_bytes,
                chunk.chunk_size,
                chunk.total_bytes.div_ceil(MAX_CHUNKS)
            )));
        }
        check_container(&chunk.container)?;
        check_object(&chunk.id)?;
        let key = (chunk.container, chunk.id);
        // The earlier upload of this object goes first, discarding what it
        // wrote and freeing its place: restarting an upload at the quota
        // works, and many StartUploads of one object never hold more than
        // one place each.
        let replaced = self.uploads.lock().remove(&key);
        drop(replaced);
        let slot = self
            .transfers
            .reserve(Direction::Upload, chunk.total_bytes)?;
        // Its place in what is stored, taken now: uploads that start
        // together cannot all pass the last one. An object it would replace
        // frees its own place, so replacing at the quota works.
        let replacing = match self.store.object_size(&key.0, &key.1).await {
            Ok(size) => Some(size),
            Err(BlobError::NoObject { .. }) => None,
            Err(e) => return Err(e),
        };
        let object = self
            .transfers
            .reserve_object(chunk.total_bytes, replacing)?;
        let staged = self.store.stage(&key.0, &key.1).await?;
        let upload = Upload {
            staged,
            total_bytes: chunk.total_bytes,
            chunk_size: chunk.chunk_size,
            progress: Mutex::new(Progress::new(chunks)),
            object: Mutex::new(Some(object)),
            _slot: slot,
        };
        let replaced = if upload.total_bytes == 0 {
            // Complete already; a concurrent StartUpload of the same object
            // that got in first is replaced by it, as the last one wins.
            upload.publish().await?;
            self.uploads.lock().remove(&key)
        } else {
            self.uploads.lock().insert(key, Arc::new(upload))
        };
        drop(replaced);
        Ok(())
    }

    async fn upload_chunk(&self, chunk: FileChunk) -> Result<(), BlobError> {
        let key = (chunk.container, chunk.id);
        let found = self.uploads.lock().get(&key).cloned();
        let Some(upload) = found else {
            return Err(BlobError::NoUpload {
                container: key.0,
                id: key.1,
            });
        };
        let (total, size) = (upload.total_bytes, upload.chunk_size);
        let offset = chunk
            .sequence_no
            .checked_mul(size)
            .filter(|offset| *offset < total)
            .ok_or_else(|| {
                BlobError::BadRequest(format!(
                    "sequenceNo {} is past the end of a {total}-byte object in {size}-byte chunks",
                    chunk.sequence_no
                ))
            })?;
        let expected = size.min(total - offset);
        if chunk.chunk_bytes.len() as u64 != expected {
            return Err(BlobError::BadRequest(format!(
                "chunk {} holds {} bytes; it must hold {expected} (chunkSize, or the rest of \
                 totalBytes for the last chunk)",
                chunk.sequence_no,
                chunk.chunk_bytes.len()
            )));
        }
        upload.staged.write(offset, chunk.chunk_bytes).await?;
        if !upload.record(chunk.sequence_no, expected) {
            return Ok(());
        }
        // Complete. Only the upload still registered may be published: one
        // replaced by a newer StartUpload or abandoned with its binding
        // while this chunk was written must not overwrite anything.
        {
            let mut uploads = self.uploads.lock();
            if !uploads.get(&key).is_some_and(|u| Arc::ptr_eq(u, &upload)) {
                return Err(BlobError::NoUpload {
                    container: key.0,
                    id: key.1,
                });
            }
            uploads.remove(&key);
        }
        upload.publish().await
    }

    async fn start_download<D>(
        &self,
        request: StreamRequest,
        delivery: &D,
    ) -> Result<Transfer, BlobError>
    where
        D: Delivery<S::Reader> + ?Sized,
    {
        check_container(&request.container)?;
        check_object(&request.id)?;
        // Each chunk reaches the actor as one `ReceiveChunk` call, which
        // must fit in what it accepts with the chunk's other fields: a
        // larger chunk would be read, then refused by the host, every time.
        let envelope = (CHUNK_ENVELOPE_BYTES
            + request.container.len()
            + request.id.len()
            + request.context.as_ref().map_or(0, String::len)) as u64;
        let fits = self
            .transfers
            .limits
            .actor_payload_bytes
            .saturating_sub(envelope)
            .max(1);
        let chunk_size = match request.chunk_size {
            0 => DEFAULT_CHUNK_BYTES,
            n => n.min(MAX_CHUNK_BYTES),
        }
        .min(fits);
        // Taken before the object is opened: the quota bounds open files.
        let mut slot = self.transfers.reserve(Direction::Download, 0)?;
        let reader = self.store.open(&request.container, &request.id).await?;
        let total_size = reader.size();
        // Each chunk is a `ReceiveChunk` call: 1-byte chunks of a 1 GiB
        // object would be a billion of them. Chunks grow to keep a download
        // within MAX_CHUNKS, as an upload must be; the reply names the size.
        let least = total_size.div_ceil(MAX_CHUNKS);
        let most = fits.min(MAX_CHUNK_BYTES);
        if least > most {
            return Err(BlobError::BadRequest(format!(
                "object `{}` in container `{}` is {total_size} bytes: more than {MAX_CHUNKS} \
                 chunks of at most {most} bytes, what fits in this actor's payload limit \
                 beside a chunk's other fields (context included); raise the actor's payload \
                 limit or download a smaller object",
                request.id, request.container,
            )));
        }
        let chunk_size = chunk_size.max(least);
        slot.grow(total_size)?;
        let transfer = Transfer {
            blob_id: request.id.clone(),
            container: request.container.clone(),
            chunk_size,
            total_size,
            total_chunks: total_size.div_ceil(chunk_size),
            context: request.context.clone(),
        };
        delivery.deliver(Download::new(reader, request, transfer.clone(), slot));
        Ok(transfer)
    }
}

/// The operation table of `wascc:blobstore`: decodes `payload` as
/// `operation`'s request, refuses what the contract forbids, runs it on
/// `binding`'s store and encodes the reply. A started download goes to
/// `delivery`. Every backend answers through this, so replies and errors
/// are the same bytes and texts everywhere.
///
/// # Errors
///
/// [`ProviderError::UnknownOperation`] for an operation outside the
/// contract; [`ProviderError::BadPayload`] for a request that does not
/// decode, a bad id, sizes over the limits or a chunk that does not fit;
/// what `delivery` refuses; [`ProviderError::Backend`] for quotas, missing
/// containers, objects and uploads, and the backend's failures.
pub async fn dispatch<S, D>(
    binding: &Binding<S>,
    operation: &str,
    payload: &[u8],
    delivery: &D,
) -> Result<Vec<u8>, ProviderError>
where
    S: Store,
    D: Delivery<S::Reader> + ?Sized,
{
    let req = Request { operation, payload };
    let fail = |e: BlobError| e.into_provider_error(operation);
    match operation {
        OP_CREATE_CONTAINER => {
            let container: Container = req.decode()?;
            binding
                .create_container(&container.id)
                .await
                .map_err(fail)?;
            encode(&container)
        }
        OP_REMOVE_CONTAINER => {
            let container: Container = req.decode()?;
            binding
                .remove_container(&container.id)
                .await
                .map_err(fail)?;
            Ok(Vec::new())
        }
        OP_REMOVE_OBJECT => {
            let blob: Blob = req.decode()?;
            binding
                .remove_object(&blob.container, &blob.id)
                .await
                .map_err(fail)?;
            Ok(Vec::new())
        }
        OP_LIST_OBJECTS => {
            let container: Container = req.decode()?;
            encode(&binding.list_objects(&container.id).await.map_err(fail)?)
        }
        OP_GET_OBJECT_INFO => {
            let blob: Blob = req.decode()?;
            check_container(&blob.container).map_err(fail)?;
            check_object(&blob.id).map_err(fail)?;
            let byte_size = binding
                .store
                .object_size(&blob.container, &blob.id)
                .await
                .map_err(fail)?;
            encode(&Blob { byte_size, ..blob })
        }
        OP_START_UPLOAD => {
            let chunk: FileChunk = req.decode()?;
            binding.start_upload(chunk).await.map_err(fail)?;
            Ok(Vec::new())
        }
        OP_UPLOAD_CHUNK => {
            let chunk: FileChunk = req.decode()?;
            binding.upload_chunk(chunk).await.map_err(fail)?;
            Ok(Vec::new())
        }
        OP_START_DOWNLOAD => {
            let request: StreamRequest = req.decode()?;
            delivery.ready()?;
            let transfer = binding
                .start_download(request, delivery)
                .await
                .map_err(fail)?;
            encode(&transfer)
        }
        other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
    }
}

/// What a `ReceiveChunk` call's `FileChunk` takes besides its bytes and
/// names: the field names, three numbers and the headers, rounded up.
const CHUNK_ENVELOPE_BYTES: usize = 256;

/// A request not yet decoded.
struct Request<'a> {
    operation: &'a str,
    payload: &'a [u8],
}

impl Request<'_> {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        waxosuit_codec::deserialize(self.payload).map_err(|e| ProviderError::BadPayload {
            capid: CAPABILITY_ID.to_string(),
            operation: self.operation.to_string(),
            reason: e.to_string(),
        })
    }
}

fn encode<T: Serialize>(reply: &T) -> Result<Vec<u8>, ProviderError> {
    waxosuit_provider::encode(CAPABILITY_ID, reply)
}

/// The descriptor of a `wascc:blobstore` provider: the contract's
/// operations under the backend's `name` and `long_description`.
pub fn descriptor(name: &str, long_description: &str) -> CapabilityDescriptor {
    let to_provider = OperationDirection::ToProvider;
    CapabilityDescriptor::builder()
        .id(CAPABILITY_ID)
        .name(name)
        .version(env!("CARGO_PKG_VERSION"))
        .revision(1)
        .long_description(long_description)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use waxosuit_provider::{ActorDispatcher, DispatchError};

    use super::*;
    use crate::conformance::Recorder;
    use crate::reference::{Delivered, MemoryStore};

    fn binding(limits: Limits) -> Binding<MemoryStore> {
        let binding = Binding::new("MA", "default", MemoryStore::new(), limits);
        call(&binding, OP_CREATE_CONTAINER, &Container { id: "c".into() }).unwrap();
        binding
    }

    fn call<T: Serialize>(
        binding: &Binding<MemoryStore>,
        operation: &str,
        request: &T,
    ) -> Result<Vec<u8>, ProviderError> {
        let payload = waxosuit_codec::serialize(request).unwrap();
        binding.call_now(operation, &payload, &mut Vec::new())
    }

    fn start(id: &str, total: u64) -> FileChunk {
        FileChunk {
            container: "c".into(),
            id: id.into(),
            total_bytes: total,
            chunk_size: total.max(1),
            ..FileChunk::default()
        }
    }

    fn whole(id: &str, data: &[u8]) -> FileChunk {
        FileChunk {
            chunk_bytes: data.to_vec(),
            ..start(id, data.len() as u64)
        }
    }

    fn request(id: &str) -> StreamRequest {
        StreamRequest {
            id: id.into(),
            container: "c".into(),
            chunk_size: 2,
            context: None,
        }
    }

    #[test]
    fn quotas_refuse_the_next_transfer_and_restarts_reuse_their_place() {
        let b = binding(Limits {
            max_uploads: 2,
            max_object_bytes: 100,
            ..Limits::default()
        });
        call(&b, OP_START_UPLOAD, &start("a", 10)).unwrap();
        call(&b, OP_START_UPLOAD, &start("b", 10)).unwrap();
        let err = call(&b, OP_START_UPLOAD, &start("c", 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wascc:blobstore backend error: quota MAX_CONCURRENT_UPLOADS reached for actor MA \
             (binding `default`): 2 uploads are in progress, the most it allows; wait for a \
             transfer in progress to finish, or raise MAX_CONCURRENT_UPLOADS in this \
             wascc:blobstore binding's values"
        );
        // Restarting one in progress needs no second place.
        call(&b, OP_START_UPLOAD, &start("a", 10)).unwrap();
        let err = call(&b, OP_START_UPLOAD, &start("big", 101)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad payload for wascc:blobstore `StartUpload`: totalBytes 101 exceeds \
             MAX_OBJECT_BYTES (100) for this binding"
        );
        // Completing one gives its place back.
        call(&b, OP_UPLOAD_CHUNK, &whole("b", b"0123456789")).unwrap();
        call(&b, OP_START_UPLOAD, &start("c", 10)).unwrap();
        assert_eq!(b.transfers.in_flight(), (2, 0, 20));
        b.abandon_uploads();
        assert_eq!(b.transfers.in_flight(), (0, 0, 0));
        let err = call(&b, OP_UPLOAD_CHUNK, &whole("c", b"0123456789")).unwrap_err();
        assert!(err.to_string().contains("send StartUpload first"), "{err}");
        assert_eq!(b.store().object("c", "b").unwrap(), b"0123456789");
    }

    #[tokio::test]
    async fn a_download_never_has_more_than_max_chunks_chunks() {
        let size = MAX_CHUNKS + 1;
        let b = binding(Limits {
            max_object_bytes: size,
            ..Limits::default()
        });
        let data = vec![7u8; size as usize];
        call(&b, OP_START_UPLOAD, &start("big", size)).unwrap();
        call(&b, OP_UPLOAD_CHUNK, &whole("big", &data)).unwrap();
        let ask = |chunk_size| {
            waxosuit_codec::serialize(&StreamRequest {
                chunk_size,
                ..request("big")
            })
            .unwrap()
        };
        let pending = Pending::default();
        // One-byte chunks would be MAX_CHUNKS + 1 calls: they grow to two.
        let reply = dispatch(&b, OP_START_DOWNLOAD, &ask(1), &pending)
            .await
            .unwrap();
        let transfer: Transfer = waxosuit_codec::deserialize(&reply).unwrap();
        assert_eq!(
            (transfer.chunk_size, transfer.total_chunks),
            (2, size / 2 + 1)
        );
        // Larger chunks are kept as asked.
        let reply = dispatch(&b, OP_START_DOWNLOAD, &ask(1000), &pending)
            .await
            .unwrap();
        let transfer: Transfer = waxosuit_codec::deserialize(&reply).unwrap();
        assert_eq!(transfer.chunk_size, 1000);
        drop(std::mem::take(&mut *pending.0.lock()));

        // An actor whose payload limit leaves room for one byte a chunk
        // cannot take the object in MAX_CHUNKS calls: refused, nothing held.
        let envelope = CHUNK_ENVELOPE_BYTES + "c".len() + "big".len();
        let small = binding(Limits {
            max_object_bytes: size,
            actor_payload_bytes: envelope as u64 + 1,
            ..Limits::default()
        });
        call(&small, OP_START_UPLOAD, &start("big", size)).unwrap();
        call(&small, OP_UPLOAD_CHUNK, &whole("big", &data)).unwrap();
        let err = dispatch(&small, OP_START_DOWNLOAD, &ask(1), &pending)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "bad payload for wascc:blobstore `StartDownload`: object `big` in container \
                 `c` is {size} bytes: more than {MAX_CHUNKS} chunks of at most 1 bytes, what \
                 fits in this actor's payload limit beside a chunk's other fields (context \
                 included); raise the actor's payload limit or download a smaller object"
            )
        );
        assert!(pending.0.lock().is_empty());
        assert_eq!(small.transfers.in_flight(), (0, 0, 0));
    }

    #[test]
    fn downloads_hold_their_bytes_until_dropped() {
        let b = binding(Limits {
            max_downloads: 1,
            max_bytes_in_flight: 15,
            ..Limits::default()
        });
        call(&b, OP_START_UPLOAD, &start("o", 10)).unwrap();
        call(&b, OP_UPLOAD_CHUNK, &whole("o", b"0123456789")).unwrap();
        let pending = Pending::default();
        let payload = waxosuit_codec::serialize(&request("o")).unwrap();
        let now = |op, payload| poll_now(dispatch(&b, op, payload, &pending));
        now(OP_START_DOWNLOAD, &payload).unwrap();
        assert_eq!(b.transfers.in_flight(), (0, 1, 10));
        let err = now(OP_START_DOWNLOAD, &payload).unwrap_err();
        assert!(
            err.to_string().contains("quota MAX_CONCURRENT_DOWNLOADS"),
            "{err}"
        );
        // Uploads count against the same bytes.
        let err = call(&b, OP_START_UPLOAD, &start("p", 6)).unwrap_err();
        assert!(
            err.to_string()
                .contains("10 bytes are in flight and this transfer needs 6 more"),
            "{err}"
        );
        pending.0.lock().clear();
        assert_eq!(b.transfers.in_flight(), (0, 0, 0));
        let mut delivered = Vec::new();
        b.call_now(OP_START_DOWNLOAD, &payload, &mut delivered)
            .unwrap();
        let [Delivered { request: r, chunks }] = &delivered[..] else {
            panic!("{delivered:?}")
        };
        assert_eq!(r, &request("o"));
        assert_eq!(chunks.len(), 5);
        assert_eq!(b.transfers.in_flight(), (0, 0, 0), "delivered at once");
    }

    /// A memory store whose uploads' writes wait until `open`.
    struct Gated {
        inner: MemoryStore,
        open: Arc<std::sync::atomic::AtomicBool>,
    }

    struct GatedStaged(
        crate::reference::MemoryStaged,
        Arc<std::sync::atomic::AtomicBool>,
    );

    #[async_trait]
    impl Store for Gated {
        type Staged = GatedStaged;
        type Reader = crate::reference::MemoryReader;

        async fn usage(&self) -> Result<Stored, BlobError> {
            self.inner.usage().await
        }
        async fn create_container(
            &self,
            container: &str,
            may_create: bool,
        ) -> Result<bool, BlobError> {
            self.inner.create_container(container, may_create).await
        }
        async fn remove_container(&self, container: &str) -> Result<Stored, BlobError> {
            self.inner.remove_container(container).await
        }
        async fn remove_object(&self, container: &str, id: &str) -> Result<u64, BlobError> {
            self.inner.remove_object(container, id).await
        }
        async fn list_objects(
            &self,
            container: &str,
            budget: ListBudget,
        ) -> Result<Vec<(String, u64)>, BlobError> {
            self.inner.list_objects(container, budget).await
        }
        async fn object_size(&self, container: &str, id: &str) -> Result<u64, BlobError> {
            self.inner.object_size(container, id).await
        }
        async fn stage(&self, container: &str, id: &str) -> Result<GatedStaged, BlobError> {
            let staged = self.inner.stage(container, id).await?;
            Ok(GatedStaged(staged, Arc::clone(&self.open)))
        }
        async fn open(
            &self,
            container: &str,
            id: &str,
        ) -> Result<crate::reference::MemoryReader, BlobError> {
            self.inner.open(container, id).await
        }
    }

    #[async_trait]
    impl Staged for GatedStaged {
        async fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<(), BlobError> {
            while !self.1.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            self.0.write(offset, bytes).await
        }
        async fn publish(&self) -> Result<Option<u64>, BlobError> {
            self.0.publish().await
        }
    }

    #[tokio::test]
    async fn an_upload_replaced_while_its_last_chunk_is_written_publishes_nothing() {
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = Gated {
            inner: MemoryStore::new(),
            open: Arc::clone(&open),
        };
        let b = Binding::new("MA", "default", store, Limits::default());
        let pending = Pending::default();
        let run = |op, request: &FileChunk| {
            let payload = waxosuit_codec::serialize(request).unwrap();
            let b = &b;
            let pending = &pending;
            async move { dispatch(b, op, &payload, pending).await }
        };
        let create = waxosuit_codec::serialize(&Container { id: "c".into() }).unwrap();
        dispatch(&b, OP_CREATE_CONTAINER, &create, &pending)
            .await
            .unwrap();
        run(OP_START_UPLOAD, &start("o", 4)).await.unwrap();
        let (old_chunk, restarted) =
            tokio::join!(run(OP_UPLOAD_CHUNK, &whole("o", b"old!")), async {
                let restarted = run(OP_START_UPLOAD, &start("o", 4)).await;
                open.store(true, Ordering::SeqCst);
                restarted
            });
        restarted.unwrap();
        let err = old_chunk.unwrap_err();
        assert!(err.to_string().contains("no upload of `o`"), "{err}");
        assert_eq!(b.store().inner.object("c", "o"), None, "nothing published");
        run(OP_UPLOAD_CHUNK, &whole("o", b"new!")).await.unwrap();
        assert_eq!(b.store().inner.object("c", "o").unwrap(), b"new!");
    }

    /// Fails the chunk numbered `fail_at`, counting calls.
    struct Flaky {
        calls: AtomicUsize,
        fail_at: usize,
    }

    #[async_trait]
    impl ActorDispatcher for Flaky {
        async fn dispatch(
            &self,
            actor: &str,
            operation: &str,
            _payload: Vec<u8>,
        ) -> Result<Vec<u8>, DispatchError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) == self.fail_at {
                return Err(DispatchError::Actor {
                    actor: actor.into(),
                    operation: operation.into(),
                    message: "handler failed".into(),
                });
            }
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn downloads_are_sent_in_order_and_stop_at_a_refused_chunk() {
        let b = binding(Limits::default());
        call(&b, OP_START_UPLOAD, &start("o", 5)).unwrap();
        call(&b, OP_UPLOAD_CHUNK, &whole("o", b"abcde")).unwrap();
        let pending = Pending::default();
        let payload = waxosuit_codec::serialize(&StreamRequest {
            context: Some("x".into()),
            ..request("o")
        })
        .unwrap();
        for _ in 0..2 {
            dispatch(&b, OP_START_DOWNLOAD, &payload, &pending)
                .await
                .unwrap();
        }
        let mut started = std::mem::take(&mut *pending.0.lock());
        let recorder = Recorder::new();
        started.remove(0).send(&recorder, "MA").await.unwrap();
        let chunks = recorder.chunks();
        let got: Vec<_> = chunks
            .iter()
            .map(|c| (c.sequence_no, &c.chunk_bytes[..]))
            .collect();
        assert_eq!(got, [(0, &b"ab"[..]), (1, b"cd"), (2, b"e")]);
        assert!(chunks.iter().all(|c| c.context.as_deref() == Some("x")));
        assert_eq!(recorder.most_in_progress(), 1);

        let flaky = Flaky {
            calls: AtomicUsize::new(0),
            fail_at: 1,
        };
        let err = started.remove(0).send(&flaky, "MA").await.unwrap_err();
        assert!(err.by_actor());
        assert_eq!(
            err.to_string(),
            "wascc:blobstore download of `c/o` to actor MA stopped: the actor did not take \
             chunk 1: actor MA failed to handle `ReceiveChunk`: handler failed; fix its \
             ReceiveChunk handler"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2, "nothing sent after");
        assert_eq!(b.transfers.in_flight(), (0, 0, 0));
    }

    #[derive(Default)]
    struct Pending(Mutex<Vec<Download<crate::reference::MemoryReader>>>);

    impl Delivery<crate::reference::MemoryReader> for Pending {
        fn deliver(&self, download: Download<crate::reference::MemoryReader>) {
            self.0.lock().push(download);
        }
    }

    fn poll_now<F: std::future::Future>(future: F) -> F::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut cx) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the memory store waited"),
        }
    }
}
