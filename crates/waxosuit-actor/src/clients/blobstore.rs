use waxosuit_codec::blobstore::{
    self as blob, Blob, BlobList, Container, FileChunk, StreamRequest, Transfer,
};

use super::bound_client;
use crate::context::{call_encoded, call_typed};
use crate::{Error, HostCalls, Result};

/// Client for `wascc:blobstore`: containers of objects moved in chunks.
///
/// An upload is [`start_upload`](Self::start_upload) followed by one
/// [`upload_chunk`](Self::upload_chunk) per chunk. A download is
/// [`start_download`](Self::start_download); the provider then calls the
/// actor's `ReceiveChunk` handler (see
/// [`Registry::on_receive_chunk`](crate::Registry::on_receive_chunk)) once
/// per chunk.
pub struct Blobstore<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(Blobstore);

impl Blobstore<'_> {
    fn call<Req, Resp>(&self, operation: &str, request: &Req) -> Result<Resp>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        call_typed(
            self.host,
            &self.binding,
            blob::CAPABILITY_ID,
            operation,
            request,
        )
    }

    fn call_ignoring_reply<Req: serde::Serialize>(
        &self,
        operation: &str,
        request: &Req,
    ) -> Result<()> {
        call_encoded(
            self.host,
            &self.binding,
            blob::CAPABILITY_ID,
            operation,
            request,
        )
        .map(drop)
    }

    /// Creates the container `id` and returns it as the provider reports it.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn create_container(&self, id: &str) -> Result<Container> {
        self.call(blob::OP_CREATE_CONTAINER, &Container { id: id.to_string() })
    }

    /// Removes the container `id`.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        self.call_ignoring_reply(blob::OP_REMOVE_CONTAINER, &Container { id: id.to_string() })
    }

    /// Removes the object `id` from `container`.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn remove_object(&self, container: &str, id: &str) -> Result<()> {
        let target = Blob {
            id: id.to_string(),
            container: container.to_string(),
            byte_size: 0,
        };
        self.call_ignoring_reply(blob::OP_REMOVE_OBJECT, &target)
    }

    /// The objects in `container`.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn list_objects(&self, container: &str) -> Result<Vec<Blob>> {
        let list: BlobList = self.call(
            blob::OP_LIST_OBJECTS,
            &Container {
                id: container.to_string(),
            },
        )?;
        Ok(list.blobs)
    }

    /// The metadata (size) of the object `id` in `container`.
    ///
    /// # Errors
    ///
    /// The host call failed (e.g. no such object) or its reply did not
    /// decode.
    pub fn get_object_info(&self, container: &str, id: &str) -> Result<Blob> {
        let target = Blob {
            id: id.to_string(),
            container: container.to_string(),
            byte_size: 0,
        };
        self.call(blob::OP_GET_OBJECT_INFO, &target)
    }

    /// Announces an upload of `blob.byte_size` bytes in chunks of
    /// `chunk_size` and returns the [`Transfer`] to pass to
    /// [`upload_chunk`](Self::upload_chunk).
    ///
    /// # Errors
    ///
    /// `chunk_size` is 0, or the host call failed.
    pub fn start_upload(&self, blob: &Blob, chunk_size: u64) -> Result<Transfer> {
        let transfer = transfer_for(blob, chunk_size, None)?;
        let announcement = FileChunk {
            sequence_no: 0,
            container: blob.container.clone(),
            id: blob.id.clone(),
            total_bytes: blob.byte_size,
            chunk_size,
            context: None,
            chunk_bytes: Vec::new(),
        };
        self.call_ignoring_reply(blob::OP_START_UPLOAD, &announcement)?;
        Ok(transfer)
    }

    /// Sends chunk number `sequence_no` (counting from 0) of `transfer`.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn upload_chunk(&self, transfer: &Transfer, sequence_no: u64, bytes: &[u8]) -> Result<()> {
        let chunk = FileChunk {
            sequence_no,
            container: transfer.container.clone(),
            id: transfer.blob_id.clone(),
            total_bytes: transfer.total_size,
            chunk_size: transfer.chunk_size,
            context: transfer.context.clone(),
            chunk_bytes: bytes.to_vec(),
        };
        self.call_ignoring_reply(blob::OP_UPLOAD_CHUNK, &chunk)
    }

    /// Asks the provider to stream `blob` to this actor in chunks of
    /// `chunk_size`; `context` is echoed in every chunk so concurrent
    /// downloads can be told apart. Returns the expected [`Transfer`]
    /// (sizes taken from `blob`, e.g. from
    /// [`get_object_info`](Self::get_object_info)).
    ///
    /// # Errors
    ///
    /// `chunk_size` is 0, or the host call failed.
    pub fn start_download(
        &self,
        blob: &Blob,
        chunk_size: u64,
        context: Option<String>,
    ) -> Result<Transfer> {
        let transfer = transfer_for(blob, chunk_size, context.clone())?;
        let request = StreamRequest {
            id: blob.id.clone(),
            container: blob.container.clone(),
            chunk_size,
            context,
        };
        self.call_ignoring_reply(blob::OP_START_DOWNLOAD, &request)?;
        Ok(transfer)
    }
}

fn transfer_for(blob: &Blob, chunk_size: u64, context: Option<String>) -> Result<Transfer> {
    if chunk_size == 0 {
        return Err(Error::msg(
            "blob transfer chunk size must be greater than 0",
        ));
    }
    Ok(Transfer {
        blob_id: blob.id.clone(),
        container: blob.container.clone(),
        chunk_size,
        total_size: blob.byte_size,
        total_chunks: blob.byte_size.div_ceil(chunk_size),
        context,
    })
}
