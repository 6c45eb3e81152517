//! What one binding may do at once, read from its values, and the
//! accounting that enforces it.
//!
//! A binding's transfers hold a [`Slot`] of its quotas: an upload from its
//! `StartUpload` until it completes or is abandoned, a download from its
//! `StartDownload` until its last chunk is taken or it stops. A transfer
//! that would exceed a quota is refused before the backend opens anything,
//! so the quotas bound open files and memory as well as bytes.

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
}

impl Limits {
    /// No limit at all (the SDK's fake host, whose downloads are never
    /// sent and so would never give their place back).
    pub const UNLIMITED: Limits = Limits {
        max_object_bytes: u64::MAX,
        max_uploads: usize::MAX,
        max_downloads: usize::MAX,
        max_bytes_in_flight: u64::MAX,
    };

    /// The limits a binding's values set, with the defaults for those it
    /// leaves out or leaves empty.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Config`] naming the value: [`MAX_OBJECT_BYTES`]
    /// that is not a number of bytes, or a quota that is not a whole number
    /// of at least 1.
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
