//! What one binding may do at once, read from its values, and the
//! accounting that enforces it.
//!
//! A binding's transfers hold a [`Slot`] of its quotas: an upload from its
//! `StartUpload` until it completes or is abandoned, a download from its
//! `StartDownload` until its last chunk is taken or it stops. A transfer
//! that would exceed a quota is refused before the backend opens anything,
//! so the quotas bound open files and memory as well as bytes.
//!
//! What stays stored is counted too ([`Stored`]): containers, objects and
//! their bytes, taken from the backend when the binding is made and kept
//! up to date by the binding's operations that change them (a backend
//! serializes measuring and replacing or removing an object, so the count
//! does not drift; changes made outside the binding count at its next
//! bind). An upload reserves
//! its object and bytes when it starts (so concurrent uploads cannot all
//! pass the last free place) and settles the count when it is published,
//! against the object it replaced.

use std::sync::Arc;

use parking_lot::Mutex;
use waxosuit_provider::{BindRequest, ProviderError};

use crate::{BlobError, CAPABILITY_ID};

/// Binding value: the largest object, in bytes, an upload may announce;
/// default [`DEFAULT_MAX_OBJECT_BYTES`].
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
/// Binding value: containers the binding may hold, at least 1; default
/// [`DEFAULT_MAX_CONTAINERS`].
pub const MAX_CONTAINERS: &str = "MAX_CONTAINERS";
/// Binding value: objects the binding may hold in all its containers, at
/// least 1; default [`DEFAULT_MAX_OBJECTS`].
pub const MAX_OBJECTS: &str = "MAX_OBJECTS";
/// Binding value: bytes the binding's objects may hold in all, at least 1;
/// default [`DEFAULT_MAX_STORED_BYTES`].
pub const MAX_STORED_BYTES: &str = "MAX_STORED_BYTES";
/// [`MAX_CONTAINERS`] when the binding does not set it.
pub const DEFAULT_MAX_CONTAINERS: u64 = 1_000;
/// [`MAX_OBJECTS`] when the binding does not set it: each is a file (an
/// inode) on the file-system backend.
pub const DEFAULT_MAX_OBJECTS: u64 = 100_000;
/// [`MAX_STORED_BYTES`] when the binding does not set it (16 GiB: sixteen
/// objects of the largest default size).
pub const DEFAULT_MAX_STORED_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// [`Limits::actor_payload_bytes`] when the host does not pass the actor's
/// payload limit (16 MiB).
pub const DEFAULT_ACTOR_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;
/// [`MAX_OBJECT_BYTES`] when the binding does not set it (1 GiB).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 1024 * 1024 * 1024;
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
/// The most chunks one upload may have (2^20): which have arrived is kept
/// in a bitmap of at most 128 KiB, made when the upload starts. A 1 GiB
/// object then needs chunks of 1 KiB or more.
pub const MAX_CHUNKS: u64 = 1 << 20;
/// The chunk size of a download that asks for chunk size 0 (1 MiB).
pub const DEFAULT_CHUNK_BYTES: u64 = 1024 * 1024;

/// What one binding may do at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// [`MAX_OBJECT_BYTES`].
    pub max_object_bytes: u64,
    /// [`MAX_CONCURRENT_UPLOADS`].
    pub max_uploads: usize,
    /// [`MAX_CONCURRENT_DOWNLOADS`].
    pub max_downloads: usize,
    /// [`MAX_BYTES_IN_FLIGHT`].
    pub max_bytes_in_flight: u64,
    /// [`MAX_CONTAINERS`].
    pub max_containers: u64,
    /// [`MAX_OBJECTS`].
    pub max_objects: u64,
    /// [`MAX_STORED_BYTES`].
    pub max_stored_bytes: u64,
    /// The actor's payload limit, as the host passes it, or
    /// [`DEFAULT_ACTOR_PAYLOAD_BYTES`]: the longest `ListObjects` reply (a
    /// listing that would be longer is refused while it is being read, so
    /// a container of a million objects costs no more than this), and what
    /// a download's `ReceiveChunk` call must fit in (its chunk size is
    /// lowered to fit).
    pub actor_payload_bytes: u64,
}

impl Limits {
    /// No limit at all (the SDK's fake host, whose downloads are never
    /// sent and so would never give their place back).
    pub const UNLIMITED: Limits = Limits {
        max_object_bytes: u64::MAX,
        max_uploads: usize::MAX,
        max_downloads: usize::MAX,
        max_bytes_in_flight: u64::MAX,
        max_containers: u64::MAX,
        max_objects: u64::MAX,
        max_stored_bytes: u64::MAX,
        actor_payload_bytes: u64::MAX,
    };

    /// The limits a binding's values set, with the defaults for those it
    /// leaves out or leaves empty.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Config`] naming the value: [`MAX_OBJECT_BYTES`]
    /// that is not a number of bytes, or a quota that is not a whole number
    /// of at least 1. [`actor_payload_bytes`](Self::actor_payload_bytes) is the
    /// actor's payload limit the host passes.
    pub fn from_binding(request: &BindRequest) -> Result<Limits, ProviderError> {
        let max_object_bytes = match request.values.get(MAX_OBJECT_BYTES).map(|v| v.trim()) {
            None | Some("") => DEFAULT_MAX_OBJECT_BYTES,
            Some(raw) => raw.parse().map_err(|_| ProviderError::Config {
                capid: CAPABILITY_ID.to_string(),
                actor: request.actor.clone(),
                key: MAX_OBJECT_BYTES.to_string(),
                reason: format!("is `{raw}`, not a number of bytes"),
            })?,
        };
        Ok(Limits {
            max_object_bytes,
            max_uploads: positive(request, MAX_CONCURRENT_UPLOADS)?
                .unwrap_or(DEFAULT_MAX_CONCURRENT_UPLOADS),
            max_downloads: positive(request, MAX_CONCURRENT_DOWNLOADS)?
                .unwrap_or(DEFAULT_MAX_CONCURRENT_DOWNLOADS),
            max_bytes_in_flight: positive(request, MAX_BYTES_IN_FLIGHT)?
                .unwrap_or(DEFAULT_MAX_BYTES_IN_FLIGHT),
            max_containers: positive(request, MAX_CONTAINERS)?.unwrap_or(DEFAULT_MAX_CONTAINERS),
            max_objects: positive(request, MAX_OBJECTS)?.unwrap_or(DEFAULT_MAX_OBJECTS),
            max_stored_bytes: positive(request, MAX_STORED_BYTES)?
                .unwrap_or(DEFAULT_MAX_STORED_BYTES),
            actor_payload_bytes: request
                .actor_max_payload()
                .map_or(DEFAULT_ACTOR_PAYLOAD_BYTES, |n| n as u64),
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
            max_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
            max_bytes_in_flight: DEFAULT_MAX_BYTES_IN_FLIGHT,
            max_containers: DEFAULT_MAX_CONTAINERS,
            max_objects: DEFAULT_MAX_OBJECTS,
            max_stored_bytes: DEFAULT_MAX_STORED_BYTES,
            actor_payload_bytes: DEFAULT_ACTOR_PAYLOAD_BYTES,
        }
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

/// One binding's quotas and what its transfers hold of them.
#[derive(Debug)]
pub(crate) struct Transfers {
    actor: String,
    binding: String,
    pub(crate) limits: Limits,
    held: Mutex<Held>,
    stored: Mutex<Stored>,
}

/// What a binding's store holds: containers, objects and their bytes.
/// A backend reports it when the binding is made ([`Store::usage`]) and
/// what a removed container held ([`Store::remove_container`]).
///
/// [`Store::usage`]: crate::Store::usage
/// [`Store::remove_container`]: crate::Store::remove_container
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Containers.
    pub containers: u64,
    /// Complete objects (uploads in progress are not objects yet).
    pub objects: u64,
    /// The objects' bytes.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Held {
    uploads: usize,
    downloads: usize,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Upload,
    Download,
}

impl Transfers {
    pub(crate) fn new(actor: String, binding: String, limits: Limits) -> Transfers {
        Transfers {
            actor,
            binding,
            limits,
            held: Mutex::new(Held::default()),
            stored: Mutex::new(Stored::default()),
        }
    }

    /// Starts counting from what the store holds already.
    pub(crate) fn count_from(&self, stored: Stored) {
        *self.stored.lock() = stored;
    }

    /// What is stored now, reservations of uploads in progress included.
    pub(crate) fn stored(&self) -> Stored {
        *self.stored.lock()
    }

    /// Takes a place for a new container: `true` when one is free (the
    /// caller gives it back with [`release_container`](Self::release_container)
    /// if the container existed after all), `false` at the quota.
    pub(crate) fn take_container(&self) -> bool {
        let mut stored = self.stored.lock();
        if stored.containers >= self.limits.max_containers {
            return false;
        }
        stored.containers += 1;
        true
    }

    pub(crate) fn release_container(&self) {
        let mut stored = self.stored.lock();
        stored.containers = stored.containers.saturating_sub(1);
    }

    pub(crate) fn containers_full(&self) -> BlobError {
        let max = self.limits.max_containers;
        self.stored_error(
            MAX_CONTAINERS,
            format!("the binding holds {max} containers, the most it allows"),
        )
    }

    /// Forgets what a removed container or object held.
    pub(crate) fn removed(&self, gone: Stored) {
        let mut stored = self.stored.lock();
        stored.containers = stored.containers.saturating_sub(gone.containers);
        stored.objects = stored.objects.saturating_sub(gone.objects);
        stored.bytes = stored.bytes.saturating_sub(gone.bytes);
    }

    /// Reserves one object of `bytes` for an upload, counting `replacing`
    /// (the size of the object it would replace, if there is one) as freed
    /// for the check only: replacing an object at the quota works.
    pub(crate) fn reserve_object(
        self: &Arc<Self>,
        bytes: u64,
        replacing: Option<u64>,
    ) -> Result<ObjectSlot, BlobError> {
        let mut stored = self.stored.lock();
        let (freed_objects, freed_bytes) = replacing.map_or((0, 0), |size| (1, size));
        let objects = stored.objects.saturating_sub(freed_objects);
        if objects >= self.limits.max_objects {
            let max = self.limits.max_objects;
            return Err(self.stored_error(
                MAX_OBJECTS,
                format!(
                    "the binding holds {} objects, the most it allows",
                    stored.objects.min(max)
                ),
            ));
        }
        let held = stored.bytes.saturating_sub(freed_bytes);
        if held.saturating_add(bytes) > self.limits.max_stored_bytes {
            return Err(self.stored_error(
                MAX_STORED_BYTES,
                format!(
                    "the binding's objects hold {} bytes and this upload needs {bytes} more, over \
                     the {} it allows",
                    stored.bytes, self.limits.max_stored_bytes
                ),
            ));
        }
        stored.objects = stored.objects.saturating_add(1);
        stored.bytes = stored.bytes.saturating_add(bytes);
        Ok(ObjectSlot {
            transfers: Arc::clone(self),
            bytes,
            settled: false,
        })
    }

    fn stored_error(&self, quota: &'static str, detail: String) -> BlobError {
        BlobError::Stored {
            quota,
            actor: self.actor.clone(),
            binding: self.binding.clone(),
            detail,
        }
    }

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
    pub(crate) fn reserve(
        self: &Arc<Self>,
        direction: Direction,
        bytes: u64,
    ) -> Result<Slot, BlobError> {
        let mut held = self.held.lock();
        let (count, max, quota, what) = match direction {
            Direction::Upload => (
                held.uploads,
                self.limits.max_uploads,
                MAX_CONCURRENT_UPLOADS,
                "uploads are in progress",
            ),
            Direction::Download => (
                held.downloads,
                self.limits.max_downloads,
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
        let max = self.limits.max_bytes_in_flight;
        if held.bytes.saturating_add(bytes) > max {
            return Err(self.quota_error(
                MAX_BYTES_IN_FLIGHT,
                format!(
                    "{} bytes are in flight and this transfer needs {bytes} more, over the {max} \
                     it allows",
                    held.bytes
                ),
            ));
        }
        Ok(())
    }

    /// Uploads, downloads and bytes held now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> (usize, usize, u64) {
        let held = self.held.lock();
        (held.uploads, held.downloads, held.bytes)
    }
}

/// An upload's reservation of one object and its bytes in what the binding
/// stores: given back when dropped unless the upload was published.
#[derive(Debug)]
pub(crate) struct ObjectSlot {
    transfers: Arc<Transfers>,
    bytes: u64,
    settled: bool,
}

impl ObjectSlot {
    /// The upload is now an object; `replaced` is the size of the object
    /// it took the place of, which is no longer stored.
    pub(crate) fn publish(mut self, replaced: Option<u64>) {
        self.settled = true;
        if let Some(size) = replaced {
            self.transfers.removed(Stored {
                containers: 0,
                objects: 1,
                bytes: size,
            });
        }
    }
}

impl Drop for ObjectSlot {
    fn drop(&mut self) {
        if !self.settled {
            self.transfers.removed(Stored {
                containers: 0,
                objects: 1,
                bytes: self.bytes,
            });
        }
    }
}

/// One transfer's share of its binding's quotas, given back when dropped.
/// It holds the quotas, not the binding, so that a transfer never keeps
/// its binding alive.
#[derive(Debug)]
pub(crate) struct Slot {
    transfers: Arc<Transfers>,
    direction: Direction,
    bytes: u64,
}

impl Slot {
    /// Adds `bytes` to the transfer, if the quota allows.
    pub(crate) fn grow(&mut self, bytes: u64) -> Result<(), BlobError> {
        let mut held = self.transfers.held.lock();
        self.transfers.check_bytes(&held, bytes)?;
        held.bytes += bytes;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.transfers.held.lock();
        match self.direction {
            Direction::Upload => held.uploads -= 1,
            Direction::Download => held.downloads -= 1,
        }
        held.bytes -= self.bytes;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn request(values: &[(&str, &str)]) -> BindRequest {
        BindRequest {
            actor: "MACTOR".into(),
            binding: "default".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn binding_values_set_the_limits() {
        assert_eq!(
            Limits::from_binding(&request(&[])).unwrap(),
            Limits::default()
        );
        let limits = Limits::from_binding(&request(&[
            (MAX_OBJECT_BYTES, " 0 "),
            (MAX_CONCURRENT_UPLOADS, "3"),
            (MAX_CONCURRENT_DOWNLOADS, ""),
            (MAX_BYTES_IN_FLIGHT, "1000"),
        ]))
        .unwrap();
        assert_eq!(
            limits,
            Limits {
                max_object_bytes: 0,
                max_uploads: 3,
                max_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
                max_bytes_in_flight: 1000,
                ..Limits::default()
            }
        );
        let err = Limits::from_binding(&request(&[(MAX_OBJECT_BYTES, "huge")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration for wascc:blobstore binding of actor MACTOR: \
             `MAX_OBJECT_BYTES` is `huge`, not a number of bytes"
        );
        let err = Limits::from_binding(&request(&[(MAX_CONCURRENT_UPLOADS, "0")])).unwrap_err();
        assert!(
            matches!(&err, ProviderError::Config { key, reason, .. }
                if key == MAX_CONCURRENT_UPLOADS && reason.contains("at least 1")),
            "{err}"
        );
    }

    #[test]
    fn slots_are_counted_and_given_back() {
        let limits = Limits {
            max_uploads: 1,
            max_downloads: 1,
            max_bytes_in_flight: 10,
            ..Limits::default()
        };
        let transfers = Arc::new(Transfers::new("MA".into(), "default".into(), limits));
        let upload = transfers.reserve(Direction::Upload, 6).unwrap();
        let err = transfers.reserve(Direction::Upload, 1).unwrap_err();
        assert!(
            err.to_string().contains("quota MAX_CONCURRENT_UPLOADS"),
            "{err}"
        );
        let mut download = transfers.reserve(Direction::Download, 0).unwrap();
        let err = download.grow(5).unwrap_err();
        assert!(
            err.to_string()
                .contains("6 bytes are in flight and this transfer needs 5 more, over the 10"),
            "{err}"
        );
        download.grow(4).unwrap();
        assert_eq!(transfers.in_flight(), (1, 1, 10));
        drop(upload);
        drop(download);
        assert_eq!(transfers.in_flight(), (0, 0, 0));
    }
}
