//! What a backend implements: one binding's containers and objects, an
//! upload being written, an object being read, and how a started download
//! reaches the actor.

use async_trait::async_trait;
use waxosuit_provider::ProviderError;

use crate::{BlobError, Download, Stored};

/// One binding's containers and objects, as a backend keeps them.
///
/// The [operation table](crate::dispatch) calls these with ids already
/// checked ([`check_name`](crate::check_name): one plain path component,
/// never reserved), after refusing what the contract forbids; it keeps
/// uploads in progress, quotas and chunk arithmetic itself. A backend
/// reports a missing container as [`BlobError::NoContainer`], a missing
/// object as [`BlobError::NoObject`], and its own failures as
/// [`BlobError::Backend`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// An upload being written.
    type Staged: Staged;
    /// An object opened for a download.
    type Reader: Reader;

    /// What the store holds now; asked once, when the binding is made
    /// ([`Binding::counting`](crate::Binding::counting)), and kept up to
    /// date by the table from then on.
    async fn usage(&self) -> Result<Stored, BlobError>;

    /// Creates `container` when `may_create`, and says whether it made it
    /// now (`false`: it existed already, which is no error). When
    /// `may_create` is false (the binding holds all the containers it
    /// may), an existing container is still `Ok(false)` and a missing one
    /// [`BlobError::NoContainer`].
    async fn create_container(&self, container: &str, may_create: bool) -> Result<bool, BlobError>;

    /// Removes `container` and every object in it; returns what it held
    /// (one container, its objects and their bytes).
    async fn remove_container(&self, container: &str) -> Result<Stored, BlobError>;

    /// Removes one object; returns its size in bytes.
    async fn remove_object(&self, container: &str, id: &str) -> Result<u64, BlobError>;

    /// The complete objects in `container` as `(id, size in bytes)`, in any
    /// order; uploads in progress are not objects yet. The table sorts the
    /// list and leaves out ids an actor could not use. Each entry is
    /// offered to `budget` ([`ListBudget::admit`]) as it is read, and the
    /// listing stops with its error once the reply would be too long.
    async fn list_objects(
        &self,
        container: &str,
        budget: ListBudget,
    ) -> Result<Vec<(String, u64)>, BlobError>;

    /// The size of one object, in bytes.
    async fn object_size(&self, container: &str, id: &str) -> Result<u64, BlobError>;

    /// Prepares an upload of object `id` into `container`, which must
    /// exist. Nothing is visible until [`Staged::publish`]; dropping the
    /// staged upload unpublished discards it.
    async fn stage(&self, container: &str, id: &str) -> Result<Self::Staged, BlobError>;

    /// Opens an object for a download. What is read later is this version
    /// of it, even if an upload replaces it meanwhile.
    async fn open(&self, container: &str, id: &str) -> Result<Self::Reader, BlobError>;
}

/// An upload being written (see [`Store::stage`]).
///
/// The table writes whole chunks, each at a multiple of the upload's chunk
/// size; a retried chunk is written again at the same place. Chunks of one
/// upload may be written concurrently (one actor calling from several
/// instances), so a backend serialises what must not interleave.
#[async_trait]
pub trait Staged: Send + Sync + 'static {
    /// Writes `bytes` at `offset`. After [`publish`](Self::publish) has
    /// begun this must fail with [`BlobError::NoUpload`] rather than touch
    /// the published object.
    async fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<(), BlobError>;

    /// Makes what was written the object, replacing any object with its id
    /// in one step, so readers see the old object or the whole new one.
    /// Called once, when every byte has been written (at once for an empty
    /// object). Returns the size of the object it replaced, if there was
    /// one, so the binding's count of what it stores stays exact.
    async fn publish(&self) -> Result<Option<u64>, BlobError>;
}

/// What a `ListObjects` reply may still hold, in encoded bytes: the
/// actor's payload limit ([`Limits::actor_payload_bytes`](crate::Limits::actor_payload_bytes))
/// less what the entries read so far take. A backend offers each entry as
/// it reads it, so a container too large to list costs no more than one
/// reply's worth of reading.
#[derive(Debug, Clone)]
pub struct ListBudget {
    container: String,
    limit: u64,
    left: u64,
}

impl ListBudget {
    /// Bytes one entry takes besides its id and container name: the map
    /// keys and numbers of a `Blob` in MessagePack, rounded up.
    pub const ENTRY_BYTES: u64 = 40;

    /// A budget of `limit` bytes for listing `container`.
    pub fn new(container: &str, limit: u64) -> ListBudget {
        ListBudget {
            container: container.to_string(),
            limit,
            // The `BlobList` map and array headers.
            left: limit.saturating_sub(16),
        }
    }

    /// Counts one entry with id `id`, or fails with
    /// [`BlobError::ListTooLarge`] when the reply would pass the limit.
    pub fn admit(&mut self, id: &str) -> Result<(), BlobError> {
        let cost = Self::ENTRY_BYTES + (id.len() + self.container.len()) as u64;
        match self.left.checked_sub(cost) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(BlobError::ListTooLarge {
                container: self.container.clone(),
                limit: self.limit,
            }),
        }
    }
}

/// An object opened for a download (see [`Store::open`]).
#[async_trait]
pub trait Reader: Send + Sync + 'static {
    /// The object's size in bytes, when it was opened.
    fn size(&self) -> u64;

    /// `len` bytes from `offset`; the table asks only for bytes within
    /// [`size`](Self::size).
    async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, BlobError>;
}

/// How a backend gets a started download to the actor: the host's
/// providers send its chunks as `ReceiveChunk` calls from a task of their
/// own ([`Download::send`]); the SDK's fake host records them.
pub trait Delivery<R> {
    /// Whether downloads can be delivered now; checked when a
    /// `StartDownload` has decoded, before anything is opened.
    ///
    /// # Errors
    ///
    /// Typically [`ProviderError::Unavailable`] (a provider that has not
    /// been started has no way to call actors).
    fn ready(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Takes a download the table started; its `StartDownload` reply (the
    /// [`Transfer`](waxosuit_codec::blobstore::Transfer)) goes to the actor
    /// once this returns. The download holds its binding's quota until it
    /// is dropped.
    fn deliver(&self, download: Download<R>);
}
