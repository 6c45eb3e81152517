//! `wascc:blobstore`: containers of binary objects, transferred in chunks.
//!
//! Objects move in chunks so that neither side has to hold a whole object in
//! (small, linear) wasm memory and other messages can interleave with a long
//! transfer. An upload is [`OP_START_UPLOAD`] followed by one
//! [`OP_UPLOAD_CHUNK`] per [`FileChunk`]; a download is [`OP_START_DOWNLOAD`]
//! (a [`StreamRequest`]), after which the provider calls the actor with
//! [`OP_RECEIVE_CHUNK`] once per chunk.

use serde::{Deserialize, Serialize};

/// Capability id of blob store providers.
pub const CAPABILITY_ID: &str = "wascc:blobstore";

/// Actor → provider: create the [`Container`] sent; replies with it.
pub const OP_CREATE_CONTAINER: &str = "CreateContainer";
/// Actor → provider: remove the [`Container`] sent; an empty reply is success.
pub const OP_REMOVE_CONTAINER: &str = "RemoveContainer";
/// Actor → provider: remove the [`Blob`] sent; an empty reply is success.
pub const OP_REMOVE_OBJECT: &str = "RemoveObject";
/// Actor → provider: list the [`Container`] sent; replies with a [`BlobList`].
pub const OP_LIST_OBJECTS: &str = "ListObjects";
/// Actor → provider: store one [`FileChunk`] of an upload started with
/// [`OP_START_UPLOAD`].
pub const OP_UPLOAD_CHUNK: &str = "UploadChunk";
/// Actor → provider: begin streaming the object named by a
/// [`StreamRequest`] back as [`OP_RECEIVE_CHUNK`] calls.
pub const OP_START_DOWNLOAD: &str = "StartDownload";
/// Actor → provider: announce an upload with a metadata-only [`FileChunk`].
pub const OP_START_UPLOAD: &str = "StartUpload";
/// Provider → actor: one [`FileChunk`] of a download.
pub const OP_RECEIVE_CHUNK: &str = "ReceiveChunk";
/// Actor → provider: complete the [`Blob`] sent with its metadata.
pub const OP_GET_OBJECT_INFO: &str = "GetObjectInfo";

/// One piece of an object in transfer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChunk {
    /// Position of this chunk, for ordering and retries.
    pub sequence_no: u64,
    /// The container holding the object.
    pub container: String,
    /// The object's id.
    pub id: String,
    /// Size of the whole object.
    pub total_bytes: u64,
    /// Nominal chunk size; the last chunk may be shorter.
    pub chunk_size: u64,
    /// Opaque value from the [`StreamRequest`], echoed so the actor can tell
    /// concurrent downloads apart. Omitted from the encoding when `None`,
    /// as the original did, so old peers see the exact same map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The chunk's bytes, as MessagePack `bin`.
    #[serde(with = "serde_bytes", default)]
    pub chunk_bytes: Vec<u8>,
}

/// A container (bucket, directory) of objects.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// The container's id.
    pub id: String,
}

/// A list of containers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerList {
    /// The containers.
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// An object's metadata (never its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    /// The object's id.
    pub id: String,
    /// The container holding the object.
    pub container: String,
    /// The object's size in bytes.
    pub byte_size: u64,
}

/// A list of objects.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobList {
    /// The objects.
    #[serde(default)]
    pub blobs: Vec<Blob>,
}

/// Payload of [`OP_START_DOWNLOAD`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRequest {
    /// The object's id.
    pub id: String,
    /// The container holding the object.
    pub container: String,
    /// Preferred chunk size; the provider may choose another.
    pub chunk_size: u64,
    /// Opaque value echoed in every [`FileChunk`] of this download; omitted
    /// from the encoding when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Metadata of a transfer in progress, kept by the actor.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// The object's id.
    pub blob_id: String,
    /// The container holding the object.
    pub container: String,
    /// Chunk size in use.
    pub chunk_size: u64,
    /// Size of the whole object.
    pub total_size: u64,
    /// Number of chunks in the transfer.
    pub total_chunks: u64,
    /// Opaque value identifying the transfer; omitted from the encoding when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}
