//! `oci://registry/repository:tag` and `…@sha256:…`: what may name an
//! artifact, and what is refused before any network traffic.

use std::fmt;

use crate::error::RegistryError;

/// The prefix that marks a reference wherever a file path is also accepted.
pub const SCHEME: &str = "oci://";

/// The longest reference accepted (a registry host, a repository of at most
/// 255 characters, a tag of at most 128 and a digest fit well within it).
pub const MAX_REFERENCE_LEN: usize = 1024;

/// Whether `text` is a registry reference rather than a file path.
pub fn is_reference(text: &str) -> bool {
    text.starts_with(SCHEME)
}

/// A parsed artifact reference: a registry, a repository, and a tag, a
/// digest or both.
///
/// A tag is a name that can move, so `:latest` and untagged references
/// (which mean `:latest`) are refused unless the caller allows them; a
/// digest pins the content and is checked after every pull.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ArtifactRef {
    inner: oci_client::Reference,
}

impl ArtifactRef {
    /// Parses `text`, with or without the `oci://` prefix.
    ///
    /// `allow_latest` accepts `:latest` and untagged references (which
    /// resolve to `:latest`); a pinned digest is accepted with any tag.
    pub fn parse(text: &str, allow_latest: bool) -> Result<ArtifactRef, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            reference: shown(text),
            reason: reason.to_string(),
        };
        if text.len() > MAX_REFERENCE_LEN {
            return Err(invalid(&format!(
                "it is longer than {MAX_REFERENCE_LEN} bytes"
            )));
        }
        let bare = text.strip_prefix(SCHEME).unwrap_or(text);
        if bare.is_empty() {
            return Err(invalid("it names no registry or repository"));
        }
        if bare
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err(invalid("it contains a space, a control character or `\\`"));
        }
        let (name, digest) = match bare.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (bare, None),
        };
        if let Some(digest) = digest {
            check_digest(digest).map_err(|reason| invalid(&reason))?;
        }
        // Docker's rule for telling a registry host from a repository's
        // first component: a dot, a port or `localhost`.
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, rest)
            }
            _ => (DEFAULT_REGISTRY, name),
        };
        check_registry(registry).map_err(|reason| invalid(&reason))?;
        // Host names are case-insensitive: one spelling for the cache, the
        // insecure list and the credentials.
        let registry = registry.to_ascii_lowercase();
        let registry = registry.as_str();
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(tag)),
            None => (path, None),
        };
        check_repository(repository).map_err(|reason| invalid(&reason))?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| invalid(&reason))?;
        }
        if digest.is_none() && !allow_latest {
            match tag {
                None => {
                    return Err(RegistryError::Unpinned {
                        reference: shown(text),
                        why: "it has no tag, which means `:latest`".to_string(),
                    });
                }
                Some("latest") => {
                    return Err(RegistryError::Unpinned {
                        reference: shown(text),
                        why: "`:latest` names whatever was pushed last".to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        // Docker Hub's official images live under `library/`.
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        // Counted on the full name (with Docker Hub's `library/`), the one
        // the registry sees (a fuzzing finding: a 250-character name grew
        // past the limit and did not parse back).
        check_repository(&repository).map_err(|reason| invalid(&reason))?;
        let registry = registry.to_string();
        // Built from checked parts: `oci-client`'s own parser compiles a
        // large regular expression on first use (tens of milliseconds that
        // a start served from the cache would otherwise pay).
        let inner = match (tag, digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                tag.to_string(),
                digest.to_string(),
            ),
            (None, Some(digest)) => {
                oci_client::Reference::with_digest(registry, repository, digest.to_string())
            }
            (tag, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                tag.unwrap_or("latest").to_string(),
            ),
        };
        Ok(ArtifactRef { inner })
    }

    /// The registry as named (`127.0.0.1:5000`, `ghcr.io`).
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The repository (`team/hello`).
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The tag, if any (an untagged reference reads `latest`).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The pinned manifest digest (`sha256:…`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The same repository, pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> ArtifactRef {
        ArtifactRef {
            inner: oci_client::Reference::with_digest(
                self.inner.registry().to_string(),
                self.inner.repository().to_string(),
                digest.to_string(),
            ),
        }
    }

    pub(crate) fn oci(&self) -> &oci_client::Reference {
        &self.inner
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.inner.whole())
    }
}

impl fmt::Debug for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactRef({self})")
    }
}

/// The registry of a reference that names none (Docker Hub).
const DEFAULT_REGISTRY: &str = "docker.io";

/// `host` or `host:port`: letters, digits, dots and dashes, and a port
/// that is a number.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    // Dot-separated labels of letters, digits and inner dashes (IPv4
    // addresses included; bracketed IPv6 is not accepted).
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    let host_ok = host.len() <= 253 && host.split('.').all(label_ok);
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "the registry `{}` is not a host name with an optional port",
            shown(registry)
        ))
    }
}

/// The OCI distribution specification's repository names: lower-case
/// components of letters and digits, joined inside by `.`, `_`, `__` or
/// dashes, separated by `/`; at most 255 characters.
fn check_repository(repository: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("the repository `{}` {why}", shown(repository)));
    if repository.is_empty() {
        return bad("is empty");
    }
    if repository.len() > 255 {
        return bad("is longer than 255 characters");
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("has upper-case letters; registries want lower case");
    }
    for component in repository.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return bad("has an empty path component");
        };
        if !alnum(first) || !alnum(last) {
            return bad("has a component that does not start and end with a letter or digit");
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            // A separator run: `.`, `_`, `__`, or any number of `-`.
            let run = bytes[i..].iter().take_while(|b| !alnum(**b)).count();
            let sep = &component[i..i + run];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
                return bad("has characters other than lower-case letters, digits and `._-`");
            }
            i += run;
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the tag `{}` is not 1 to 128 letters, digits and `._-` (not starting with `.` or `-`)",
            shown(tag)
        ))
    }
}

/// A reference as a user wrote it, for messages: cut short and stripped of
/// control characters, since it may come from anywhere.
pub(crate) fn shown(text: &str) -> String {
    let cleaned: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.len() < text.len() {
        format!("{cleaned}…")
    } else {
        cleaned
    }
}

/// `sha256:` and 64 lower-case hex digits; the only algorithm pulled
/// content is checked with.
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!(
            "the digest `{}` is not `sha256:` followed by 64 hex digits",
            shown(digest)
        ));
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "the digest `{}` is not `sha256:` followed by 64 lower-case hex digits",
            shown(digest)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tags_and_digests_parse_with_or_without_the_scheme() {
        let r = ArtifactRef::parse("oci://127.0.0.1:5000/team/hello:1.0", false).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/hello");
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/team/hello:1.0");
        let bare = ArtifactRef::parse("127.0.0.1:5000/team/hello:1.0", false).unwrap();
        assert_eq!(bare, r);

        let pinned = ArtifactRef::parse(&format!("oci://ghcr.io/a/b@{DIGEST}"), false).unwrap();
        assert_eq!(pinned.digest(), Some(DIGEST));
        assert_eq!(pinned.registry(), "ghcr.io");
        // A digest pins the content, so even `:latest` is fine with one.
        ArtifactRef::parse(&format!("oci://ghcr.io/a/b:latest@{DIGEST}"), false).unwrap();
    }

    #[test]
    fn latest_and_untagged_references_are_refused_unless_allowed() {
        for text in [
            "oci://127.0.0.1:5000/hello",
            "oci://127.0.0.1:5000/hello:latest",
            "oci://ghcr.io/team/hello",
            "oci://localhost:5000/a/b",
        ] {
            let err = ArtifactRef::parse(text, false).unwrap_err();
            assert!(
                matches!(err, RegistryError::Unpinned { .. }),
                "{text}: {err}"
            );
            assert!(err.to_string().contains("--allow-latest"), "{err}");
            ArtifactRef::parse(text, true).unwrap();
        }
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        for (text, reason) in [
            ("oci://", "names no registry"),
            ("oci://host/a b:1", "space"),
            ("oci://host/a:1@sha256:abc", "64"),
            ("oci://host/a:1@md5:0123", "sha256:"),
            ("oci://host.example/A/B:1", "upper-case"),
            ("oci://host.example/a//b:1", "empty path component"),
            ("oci://host.example/a--b/-c:1", "start and end"),
            ("oci://host.example/a..b:1", "`._-`"),
            ("oci://host.example/a:-1", "the tag"),
            ("oci://host.example:99999/a:1", "registry"),
            ("oci://ho$t.example/a:1", "registry"),
            ("oci://../a:1", "registry"),
            ("oci://-a-.example/b:1", "registry"),
            ("oci://host.example:+80/a:1", "registry"),
            ("oci://host.example:/a:1", "registry"),
        ] {
            let err = ArtifactRef::parse(text, false).unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidReference { .. }),
                "{text}: {err}"
            );
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
        let long = format!("oci://host/{}:1", "a".repeat(MAX_REFERENCE_LEN));
        let err = ArtifactRef::parse(&long, false).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        // The message shows a bounded prefix of what was given.
        assert!(err.to_string().len() < 600, "{err}");
    }

    #[test]
    fn docker_hub_names_get_its_defaults() {
        let r = ArtifactRef::parse("oci://hello:1.0", false).unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/hello");
        let r = ArtifactRef::parse("team/hello-world__x.y:1.0", false).unwrap();
        assert_eq!(r.repository(), "team/hello-world__x.y");
        let r = ArtifactRef::parse("localhost/team/hello:v2", false).unwrap();
        assert_eq!(r.registry(), "localhost");
        // The same text through `oci-client`'s own parser gives the same
        // reference.
        for text in [
            "127.0.0.1:5000/team/hello:1.0.0",
            "ghcr.io/a/b/c:v1.2_3",
            "hello:1.0",
        ] {
            let ours = ArtifactRef::parse(text, false).unwrap();
            let theirs: oci_client::Reference = text.parse().unwrap();
            assert_eq!(ours.oci().whole(), theirs.whole(), "{text}");
        }
    }

    #[test]
    fn registry_hosts_are_compared_in_lower_case() {
        let r = ArtifactRef::parse("oci://Registry.Example:5000/a:1", false).unwrap();
        assert_eq!(r.registry(), "registry.example:5000");
    }

    #[test]
    fn the_length_limit_counts_docker_hubs_library_prefix() {
        let name = "m".repeat(250);
        let err = ArtifactRef::parse(&format!("oci://{name}:1"), false).unwrap_err();
        assert!(err.to_string().contains("longer than 255"), "{err}");
        let r = ArtifactRef::parse(&format!("oci://{}:1", "m".repeat(247)), false).unwrap();
        assert_eq!(ArtifactRef::parse(&r.to_string(), false).unwrap(), r);
    }

    #[test]
    fn a_pinned_copy_keeps_the_repository() {
        let r = ArtifactRef::parse("oci://127.0.0.1:5000/team/hello:1.0", false).unwrap();
        let p = r.pinned(DIGEST);
        assert_eq!(p.repository(), "team/hello");
        assert_eq!(p.digest(), Some(DIGEST));
        assert_eq!(
            p.to_string(),
            format!("oci://127.0.0.1:5000/team/hello@{DIGEST}")
        );
    }
}
