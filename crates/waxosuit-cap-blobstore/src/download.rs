//! A started download and how its chunks are sent: in order, one at a
//! time, each `ReceiveChunk` call returning before the next is read.

use std::fmt;

use waxosuit_codec::blobstore::{FileChunk, OP_RECEIVE_CHUNK, StreamRequest, Transfer};
use waxosuit_provider::ActorDispatcher;

use crate::limits::Slot;
use crate::store::Reader;
use crate::{BlobError, CAPABILITY_ID, DownloadStopped};

/// A download the operation table started: the object opened, the
/// [`Transfer`] replied, the binding's quota held until this is dropped.
/// A [`Delivery`](crate::Delivery) gets it.
pub struct Download<R> {
    reader: R,
    request: StreamRequest,
    transfer: Transfer,
    _slot: Slot,
}

impl<R> fmt::Debug for Download<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("transfer", &self.transfer)
            .finish_non_exhaustive()
    }
}

impl<R: Reader> Download<R> {
    pub(crate) fn new(
        reader: R,
        request: StreamRequest,
        transfer: Transfer,
        slot: Slot,
    ) -> Download<R> {
        Download {
            reader,
            request,
            transfer,
            _slot: slot,
        }
    }

    /// What the actor asked for.
    pub fn request(&self) -> &StreamRequest {
        &self.request
    }

    /// What the actor was told to expect: chunk size, total size, number of
    /// chunks, its context.
    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }

    /// Chunk `sequence_no` as its `ReceiveChunk` payload: the bytes at
    /// `sequence_no × chunkSize`, the last chunk holding the remainder, and
    /// the request's context echoed.
    ///
    /// # Errors
    ///
    /// [`BlobError::BadRequest`] for a chunk past the last; what the
    /// backend's [`Reader::read`] returns.
    pub async fn chunk(&self, sequence_no: u64) -> Result<FileChunk, BlobError> {
        let t = &self.transfer;
        if sequence_no >= t.total_chunks {
            return Err(BlobError::BadRequest(format!(
                "chunk {sequence_no} is past the last of the {} chunks of `{}/{}`",
                t.total_chunks, t.container, t.blob_id
            )));
        }
        let offset = sequence_no * t.chunk_size;
        // At most `MAX_CHUNK_BYTES`, which fits any `usize`.
        let len = usize::try_from(t.chunk_size.min(t.total_size - offset))
            .map_err(|e| BlobError::Internal(format!("a chunk does not fit in memory: {e}")))?;
        let bytes = self.reader.read(offset, len).await?;
        Ok(FileChunk {
            sequence_no,
            container: self.request.container.clone(),
            id: self.request.id.clone(),
            total_bytes: t.total_size,
            chunk_size: t.chunk_size,
            context: self.request.context.clone(),
            chunk_bytes: bytes,
        })
    }

    /// Every chunk, read now, for a host that does not call the actor back
    /// (the SDK's fake host records them).
    ///
    /// # Errors
    ///
    /// What the backend's [`Reader::read`] returns.
    pub async fn chunks(&self) -> Result<Vec<FileChunk>, BlobError> {
        let mut chunks = Vec::new();
        for sequence_no in 0..self.transfer.total_chunks {
            chunks.push(self.chunk(sequence_no).await?);
        }
        Ok(chunks)
    }

    /// Sends every chunk to `actor` as a `ReceiveChunk` call, in order,
    /// waiting for each call to return before reading the next, so the
    /// actor never holds more than one chunk. The quota is given back when
    /// this ends (or its future is dropped, as when a task is aborted).
    ///
    /// # Errors
    ///
    /// [`DownloadStopped`] when a chunk cannot be read or encoded, or the
    /// actor fails one; the rest are not sent.
    pub async fn send(
        self,
        dispatcher: &dyn ActorDispatcher,
        actor: &str,
    ) -> Result<(), DownloadStopped> {
        let object = || format!("{}/{}", self.request.container, self.request.id);
        for sequence_no in 0..self.transfer.total_chunks {
            let chunk = self
                .chunk(sequence_no)
                .await
                .map_err(|source| DownloadStopped::Read {
                    actor: actor.to_string(),
                    object: object(),
                    sequence_no,
                    source,
                })?;
            let payload = waxosuit_provider::encode(CAPABILITY_ID, &chunk).map_err(|source| {
                DownloadStopped::Encode {
                    actor: actor.to_string(),
                    object: object(),
                    sequence_no,
                    source,
                }
            })?;
            dispatcher
                .dispatch(actor, OP_RECEIVE_CHUNK, payload)
                .await
                .map_err(|source| DownloadStopped::Refused {
                    actor: actor.to_string(),
                    object: object(),
                    sequence_no,
                    source,
                })?;
        }
        Ok(())
    }
}
