//! Every blob store failure, with the texts actors see.

use waxosuit_provider::{DispatchError, ProviderError};

use crate::CAPABILITY_ID;

/// Why one call failed, before it is phrased for the actor
/// ([`into_provider_error`](Self::into_provider_error)).
///
/// The operation table raises the contract's refusals; a backend returns
/// [`NoContainer`](Self::NoContainer), [`NoObject`](Self::NoObject) and
/// [`NoUpload`](Self::NoUpload) where the contract says so, and anything of
/// its own (an I/O error, a link leaving its root) as
/// [`Backend`](Self::Backend).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// A container or object id that is not one plain path component
    /// (see [`check_name`](crate::check_name)).
    #[error("{kind} id `{id}` {reason}")]
    BadName {
        /// `"container"` or `"object"`.
        kind: &'static str,
        /// The id sent.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request the contract refuses: sizes over the limits, a chunk that
    /// does not fit its upload.
    #[error("{0}")]
    BadRequest(String),
    /// The container does not exist.
    #[error("container `{0}` does not exist")]
    NoContainer(String),
    /// The object does not exist (or is not complete yet).
    #[error("object `{id}` does not exist in container `{container}`")]
    NoObject {
        /// The container.
        container: String,
        /// The object's id.
        id: String,
    },
    /// A chunk for an upload that is not in progress (never started,
    /// completed, replaced or abandoned).
    #[error(
        "no upload of `{id}` in container `{container}` is in progress; send StartUpload first"
    )]
    NoUpload {
        /// The container.
        container: String,
        /// The object's id.
        id: String,
    },
    /// A transfer the binding's quotas do not allow now.
    #[error(
        "quota {quota} reached for actor {actor} (binding `{binding}`): {detail}; wait for a \
         transfer in progress to finish, or raise {quota} in this wascc:blobstore binding's values"
    )]
    Quota {
        /// The binding value that limits it.
        quota: &'static str,
        /// The actor's key.
        actor: String,
        /// The binding name.
        binding: String,
        /// What is held and what was asked for.
        detail: String,
    },
    /// What the binding stores would pass one of its quotas
    /// ([`MAX_CONTAINERS`](crate::MAX_CONTAINERS),
    /// [`MAX_OBJECTS`](crate::MAX_OBJECTS),
    /// [`MAX_STORED_BYTES`](crate::MAX_STORED_BYTES)).
    #[error(
        "quota {quota} reached for actor {actor} (binding `{binding}`): {detail}; remove objects \
         or containers it no longer needs, or raise {quota} in this wascc:blobstore binding's \
         values"
    )]
    Stored {
        /// The binding value that limits it.
        quota: &'static str,
        /// The actor's key.
        actor: String,
        /// The binding name.
        binding: String,
        /// What is stored and what was asked for.
        detail: String,
    },
    /// A `ListObjects` reply would be longer than the actor takes.
    #[error(
        "the listing of container `{container}` would be more than {limit} bytes, the most the \
         actor takes in one reply; it holds more objects than one reply can carry: spread them \
         over more containers, or raise the actor's max payload"
    )]
    ListTooLarge {
        /// The container.
        container: String,
        /// The reply's limit in bytes.
        limit: u64,
    },
    /// The backend refused or failed the request; its text reaches the
    /// actor as it is.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The backend failed internally (a task it ran panicked, say).
    #[error("{0}")]
    Internal(String),
}

impl BlobError {
    /// A [`BlobError::Backend`] of `error`.
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> BlobError {
        BlobError::Backend(Box::new(error))
    }

    /// The error the actor gets for this failure of `operation`: a
    /// [`ProviderError::BadPayload`] for what the actor sent wrong (names,
    /// sizes, chunks), [`ProviderError::Internal`] for
    /// [`Internal`](Self::Internal), and [`ProviderError::Backend`] for the
    /// rest.
    pub fn into_provider_error(self, operation: &str) -> ProviderError {
        match self {
            e @ (BlobError::BadName { .. } | BlobError::BadRequest(_)) => {
                ProviderError::BadPayload {
                    capid: CAPABILITY_ID.to_string(),
                    operation: operation.to_string(),
                    reason: e.to_string(),
                }
            }
            BlobError::Internal(message) => ProviderError::Internal {
                capid: CAPABILITY_ID.to_string(),
                message,
            },
            e => ProviderError::backend(CAPABILITY_ID, e),
        }
    }
}

/// Why a download stopped before its last chunk (for the backend's log:
/// the actor has had its `StartDownload` reply already).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadStopped {
    /// The backend could not read a chunk.
    #[error(
        "wascc:blobstore download of `{object}` to actor {actor} stopped: reading chunk \
         {sequence_no} failed: {source}; the actor may start the download again"
    )]
    Read {
        /// The actor's key.
        actor: String,
        /// `container/id`.
        object: String,
        /// The chunk.
        sequence_no: u64,
        /// What the backend said.
        #[source]
        source: BlobError,
    },
    /// A chunk could not be encoded.
    #[error(
        "wascc:blobstore download of `{object}` to actor {actor} stopped: chunk {sequence_no} \
         cannot be encoded: {source}"
    )]
    Encode {
        /// The actor's key.
        actor: String,
        /// `container/id`.
        object: String,
        /// The chunk.
        sequence_no: u64,
        /// What the encoder said.
        #[source]
        source: ProviderError,
    },
    /// The actor failed a `ReceiveChunk` call, or the host could not make it.
    #[error(
        "wascc:blobstore download of `{object}` to actor {actor} stopped: the actor did not \
         take chunk {sequence_no}: {source}; fix its ReceiveChunk handler"
    )]
    Refused {
        /// The actor's key.
        actor: String,
        /// `container/id`.
        object: String,
        /// The chunk.
        sequence_no: u64,
        /// What the host said.
        #[source]
        source: DispatchError,
    },
}

impl DownloadStopped {
    /// Whether the actor (or the host delivering to it) stopped the
    /// download, rather than the backend.
    pub fn by_actor(&self) -> bool {
        matches!(self, DownloadStopped::Refused { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_what_the_actor_sent_are_bad_payloads() {
        let err = BlobError::BadRequest("chunkSize 0".into()).into_provider_error("StartUpload");
        assert_eq!(
            err.to_string(),
            "bad payload for wascc:blobstore `StartUpload`: chunkSize 0"
        );
        let err = BlobError::NoContainer("c".into()).into_provider_error("ListObjects");
        assert_eq!(
            err.to_string(),
            "wascc:blobstore backend error: container `c` does not exist"
        );
        let io = std::io::Error::other("disk on fire");
        let err = BlobError::backend(io).into_provider_error("RemoveObject");
        assert_eq!(
            err.to_string(),
            "wascc:blobstore backend error: disk on fire"
        );
        let err = BlobError::Internal("a task panicked".into()).into_provider_error("X");
        assert!(matches!(err, ProviderError::Internal { .. }), "{err}");
    }
}
