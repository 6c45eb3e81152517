//! The `wascc:blobstore` contract of Waxosuit, written once.
//!
//! Every blob store backend (the file system, the SDK's fake host, any
//! later one) answers actors with the same replies and the same errors,
//! because what an actor observes is decided here and a backend only keeps
//! bytes:
//!
//! # A guided tour
//!
//! * [`Store`]: one binding's containers and objects, as a backend keeps
//!   them, with [`Staged`] (an upload being written, published in one step)
//!   and [`Reader`] (an object opened for a download). Their methods take
//!   ids already checked and return plain values; a backend implements
//!   these and nothing about the wire format, chunk arithmetic or quotas.
//! * [`Binding`]: one actor binding's contract state: the store, its
//!   [`Limits`] (read from the binding's values by
//!   [`Limits::from_binding`]) and what its transfers hold of them, and the
//!   uploads in progress. [`dispatch`] is the **operation table**: decode
//!   the request, check the ids ([`check_name`]) and what the contract
//!   forbids, call the store, encode the reply:
//!
//!   | Operation | Payload | Reply |
//!   |---|---|---|
//!   | `CreateContainer` | `Container` | the `Container`; creating an existing one succeeds |
//!   | `RemoveContainer` | `Container` | empty; removes it, its objects and its uploads in progress |
//!   | `RemoveObject` | `Blob` | empty |
//!   | `ListObjects` | `Container` | `BlobList`, sorted by id |
//!   | `GetObjectInfo` | `Blob` | the `Blob` with `byteSize` |
//!   | `StartUpload` | `FileChunk` with `totalBytes`, `chunkSize` | empty |
//!   | `UploadChunk` | `FileChunk` with `sequenceNo`, `chunkBytes` | empty |
//!   | `StartDownload` | `StreamRequest` | `Transfer`, then `ReceiveChunk` calls |
//!
//!   **Uploads**: each chunk goes to offset `sequenceNo × chunkSize` and
//!   must hold exactly `chunkSize` bytes, except the last, which holds the
//!   remainder; `chunkSize` is at most [`MAX_CHUNK_BYTES`] and `totalBytes`
//!   at most the binding's [`MAX_OBJECT_BYTES`]. A retried chunk is written
//!   again, not counted twice. When every byte has arrived the upload is
//!   published in one step, so readers see the old object or the whole new
//!   one; an empty object is complete at its `StartUpload`. A new
//!   `StartUpload` of the same object abandons the old one first (so
//!   restarting never needs a second quota place), as do removing the
//!   container and abandoning the binding.
//!
//!   **Downloads** reply at once with the `Transfer` (a requested chunk
//!   size of 0 becomes [`DEFAULT_CHUNK_BYTES`], one over
//!   [`MAX_CHUNK_BYTES`] is lowered to it, and one whose `ReceiveChunk`
//!   call would not fit in the actor's payload limit is lowered to fit;
//!   one that would make more than [`MAX_CHUNKS`] calls is raised to the
//!   least that does not, and an object too large for that within the
//!   payload limit is refused); the object is opened first, so
//!   a concurrent upload does not mix versions. The started [`Download`]
//!   goes to the backend's [`Delivery`], which sends its chunks as
//!   `ReceiveChunk` calls with [`Download::send`]: in order, each call
//!   returning before the next, the request's context echoed in each.
//!
//!   **Quotas** ([`MAX_CONCURRENT_UPLOADS`], [`MAX_CONCURRENT_DOWNLOADS`],
//!   [`MAX_BYTES_IN_FLIGHT`]) bound what one binding holds at once; a
//!   transfer over one fails before the store opens anything, with a
//!   [`ProviderError::Backend`](waxosuit_provider::ProviderError::Backend)
//!   naming the quota, the actor, the binding and the value to raise.
//!   What it stores is bounded as well ([`MAX_CONTAINERS`],
//!   [`MAX_OBJECTS`], [`MAX_STORED_BYTES`]), counted from the store when
//!   the binding is made ([`Binding::counting`]); an upload takes its place
//!   when it starts, and replacing an object at the quota works.
//!   `ListObjects` stops reading and fails once its reply would be longer
//!   than the actor takes ([`Limits::actor_payload_bytes`]).
//!
//!   **Ids** are one plain path component each, and never start with
//!   [`RESERVED_PREFIX`]; anything else is a
//!   [`ProviderError::BadPayload`](waxosuit_provider::ProviderError::BadPayload)
//!   before the store is asked.
//! * [`BlobError`] is every failure, with the texts actors see, and
//!   [`descriptor`] the provider's descriptor.
//! * [`reference`](mod@reference): the in-memory reference store
//!   ([`MemoryStore`](reference::MemoryStore)), with no runtime and no
//!   clock, so the SDK's fake host builds it for `wasm32` and answers
//!   through [`Binding::call_now`].
//! * [`conformance`]: the suite every backend must pass.
//!
//! Adding a backend means implementing [`Store`], [`Staged`] and
//! [`Reader`], a [`CapabilityProvider`](waxosuit_provider::CapabilityProvider)
//! that keeps a [`Binding`] per (actor, binding) and a [`Delivery`] for its
//! downloads, and running [`conformance::run`] against it: see
//! `docs/capability-backends.md`.
//!
//! ```
//! use waxosuit_cap_blobstore::reference::MemoryStore;
//! use waxosuit_cap_blobstore::{Binding, Limits};
//! use waxosuit_codec::blobstore::{Container, OP_CREATE_CONTAINER};
//!
//! let binding = Binding::new("MACTOR", "default", MemoryStore::new(), Limits::default());
//! let mut downloads = Vec::new();
//! let create = |id: &str| waxosuit_codec::serialize(&Container { id: id.into() }).unwrap();
//! binding.call_now(OP_CREATE_CONTAINER, &create("photos"), &mut downloads)?;
//! let refused = binding.call_now(OP_CREATE_CONTAINER, &create("../escape"), &mut downloads);
//! assert_eq!(
//!     refused.unwrap_err().to_string(),
//!     "bad payload for wascc:blobstore `CreateContainer`: container id `../escape` must be a \
//!      single path component (no `/` or `\\`)"
//! );
//! # Ok::<(), waxosuit_provider::ProviderError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod conformance;
mod download;
mod error;
mod limits;
mod names;
pub mod reference;
mod store;
mod table;

pub use download::Download;
pub use error::{BlobError, DownloadStopped};
pub use limits::{
    DEFAULT_ACTOR_PAYLOAD_BYTES, DEFAULT_CHUNK_BYTES, DEFAULT_MAX_BYTES_IN_FLIGHT,
    DEFAULT_MAX_CONCURRENT_DOWNLOADS, DEFAULT_MAX_CONCURRENT_UPLOADS, DEFAULT_MAX_CONTAINERS,
    DEFAULT_MAX_OBJECT_BYTES, DEFAULT_MAX_OBJECTS, DEFAULT_MAX_STORED_BYTES, Limits,
    MAX_BYTES_IN_FLIGHT, MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_CONCURRENT_DOWNLOADS,
    MAX_CONCURRENT_UPLOADS, MAX_CONTAINERS, MAX_OBJECT_BYTES, MAX_OBJECTS, MAX_STORED_BYTES,
    Stored,
};
pub use names::{MAX_NAME_BYTES, RESERVED_PREFIX, check_container, check_name, check_object};
pub use store::ListBudget;
pub use store::{Delivery, Reader, Staged, Store};
pub use table::{Binding, descriptor, dispatch};
pub use waxosuit_codec::blobstore::CAPABILITY_ID;
