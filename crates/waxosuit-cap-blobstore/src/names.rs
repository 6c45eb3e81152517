//! Container and object ids: one plain path component each.
//!
//! The operation table checks every id an actor sends before a backend
//! sees it, so a backend on a file system can join an id to its root
//! without fear of `..` or `/`, and every backend refuses the same names
//! with the same text.

use std::path::{Component, Path};

use crate::BlobError;

/// Names starting with this belong to backends (the file-system store's
/// temporary uploads are `.waxosuit-upload-…`): actors may not use them,
/// and listings leave them out.
pub const RESERVED_PREFIX: &str = ".waxosuit-";

/// The longest id, in bytes: a file name on common file systems.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a container id; see [`check_name`].
///
/// # Errors
///
/// [`BlobError::BadName`] saying what is wrong with it.
pub fn check_container(id: &str) -> Result<(), BlobError> {
    check_name("container", id)
}

/// Checks an object id; see [`check_name`].
///
/// # Errors
///
/// [`BlobError::BadName`] saying what is wrong with it.
pub fn check_object(id: &str) -> Result<(), BlobError> {
    check_name("object", id)
}

/// Checks that `id` (of a `kind`, `"container"` or `"object"`, for the
/// message) is one plain path component: not empty, not `.` or `..`,
/// without `/`, `\` or NUL, at most [`MAX_NAME_BYTES`] bytes and not
/// starting with [`RESERVED_PREFIX`].
///
/// # Errors
///
/// [`BlobError::BadName`] saying what is wrong with it.
pub fn check_name(kind: &'static str, id: &str) -> Result<(), BlobError> {
    let bad = |reason| {
        Err(BlobError::BadName {
            kind,
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("is empty");
    }
    if id == "." || id == ".." {
        return bad("must not be `.` or `..`");
    }
    if id.contains(['/', '\\']) {
        return bad("must be a single path component (no `/` or `\\`)");
    }
    if id.contains('\0') {
        return bad("must not contain NUL");
    }
    if id.len() > MAX_NAME_BYTES {
        return bad("is longer than 255 bytes");
    }
    if id.starts_with(RESERVED_PREFIX) {
        return bad("uses the `.waxosuit-` prefix, which is reserved for the provider");
    }
    // Belt and braces for platform quirks (drive prefixes and the like):
    // the path must parse as exactly one normal component.
    let mut components = Path::new(id).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => bad("must be a single path component"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_single_plain_components() {
        for good in ["a", "photo.jpg", "..hidden", "a b", "ü", ".x"] {
            check_object(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/abs",
            "a\\b",
            "..\\x",
            "nul\0",
            ".waxosuit-upload-x",
        ] {
            let err = check_object(bad).unwrap_err();
            assert!(err.to_string().starts_with("object id"), "{err}");
            let err = check_container(bad).unwrap_err();
            assert!(err.to_string().starts_with("container id"), "{err}");
        }
        check_object(&"x".repeat(255)).unwrap();
        let err = check_object(&"x".repeat(256)).unwrap_err();
        assert!(
            err.to_string().ends_with("is longer than 255 bytes"),
            "{err}"
        );
    }
}
