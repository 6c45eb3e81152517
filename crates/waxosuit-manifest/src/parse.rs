//! From text to a [`Manifest`]: parsing YAML or JSON into the value tree,
//! `${VAR}` expansion, deserializing the tree into the schema types, and
//! turning each parser's or serde's complaint into a [`ManifestError`] that
//! names the file and field.
//!
//! Kept apart from `validate.rs` because this half knows about parsers and
//! serde, and the rules half knows about neither: a rule can be read (and
//! changed) without wading through error plumbing.

use std::path::{Path, PathBuf};

use crate::schema::RawManifest;
use crate::tree::{self, DeError, FieldPath, Node, NodeDe, ROOT_FIELD};
use crate::validate::Validator;
use crate::{Format, Manifest, ManifestError};

/// Where `${VAR}` values come from: the process environment or a test's.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The directory relative paths in the manifest at `path` are resolved
/// against. Made absolute so that the resolved paths stay right if the host
/// later changes its working directory.
pub(crate) fn manifest_dir(path: &Path) -> PathBuf {
    // `absolute` only fails without a usable working directory; relative
    // resolution is then the best that can be done.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(crate) fn parse(text: &str, format: Format, file: &Path) -> Result<Node, ManifestError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| json_syntax(&e, file)),
        Format::Yaml => serde_norway::from_str(text).map_err(|e| yaml_syntax(&e, file)),
    }
}

/// For a file whose name does not say its format: JSON if it parses as JSON,
/// else YAML if it is a YAML mapping. (Almost any text is a YAML scalar, so
/// "parses as YAML" alone would accept a file that is neither.)
pub(crate) fn parse_unknown(text: &str, file: &Path) -> Result<Node, ManifestError> {
    let json = match serde_json::from_str::<Node>(text) {
        Ok(node) => return Ok(node),
        Err(e) => e.to_string(),
    };
    let yaml = match serde_norway::from_str::<Node>(text) {
        Ok(node @ Node::Map(_)) => return Ok(node),
        Ok(other) => format!("the document is {}, not a mapping", other.kind()),
        Err(e) => e.to_string(),
    };
    Err(ManifestError::UnrecognizedFormat {
        file: file.to_path_buf(),
        json,
        yaml,
    })
}

fn json_syntax(error: &serde_json::Error, file: &Path) -> ManifestError {
    let (line, column) = (error.line(), error.column());
    let position = (line > 0).then_some((line, column));
    syntax(file, error.to_string(), position)
}

fn yaml_syntax(error: &serde_norway::Error, file: &Path) -> ManifestError {
    let position = error.location().map(|l| (l.line(), l.column()));
    syntax(file, error.to_string(), position)
}

/// Both parsers put "at line L column C" into their messages; the position
/// is moved into the error's fields instead of being said twice.
fn syntax(file: &Path, message: String, position: Option<(usize, usize)>) -> ManifestError {
    let message = match position {
        Some((line, column)) => {
            message.replacen(&format!(" at line {line} column {column}"), "", 1)
        }
        None => message,
    };
    ManifestError::Syntax {
        file: file.to_path_buf(),
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        message,
    }
}

pub(crate) fn build(
    mut node: Node,
    base_dir: &Path,
    file: &Path,
    env: Env<'_>,
) -> Result<Manifest, ManifestError> {
    let field_error = |field: String, message: String| ManifestError::Field {
        file: file.to_path_buf(),
        field,
        message,
    };
    match &node {
        Node::Map(_) => {}
        Node::Null => {
            return Err(field_error(
                ROOT_FIELD.to_owned(),
                "the manifest is empty; expected a mapping with `actors`, `capabilities`, \
                 `bindings`, `http_filters`, `labels` and/or `policy`"
                    .to_owned(),
            ));
        }
        other => {
            return Err(field_error(
                ROOT_FIELD.to_owned(),
                format!(
                    "expected a mapping with `actors`, `capabilities`, `bindings`, \
                     `http_filters`, `labels` and/or `policy`, found {}",
                    other.kind()
                ),
            ));
        }
    }

    tree::expand_tree(&mut node, &FieldPath::root(), env).map_err(|(field, var)| {
        ManifestError::Env {
            file: file.to_path_buf(),
            field,
            var,
        }
    })?;

    let raw: RawManifest =
        serde_path_to_error::deserialize(NodeDe(&node)).map_err(|e| schema_error(e, file))?;

    Validator { file, base_dir }.manifest(raw)
}

fn schema_error(error: serde_path_to_error::Error<DeError>, file: &Path) -> ManifestError {
    let path = error.path().to_string();
    let at = if path == "." { String::new() } else { path };
    match error.into_inner() {
        DeError::UnknownField { name, expected } => {
            // serde_path_to_error records the key before it is rejected, so
            // the path already ends with it; an empty path would only come
            // from a deserializer that does not, and then the key alone is
            // the best pointer.
            let field = if at.is_empty() { name.clone() } else { at };
            ManifestError::UnknownField {
                file: file.to_path_buf(),
                field,
                suggestion: suggest(&name, expected),
                name,
                expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            }
        }
        DeError::Custom(message) => ManifestError::Field {
            file: file.to_path_buf(),
            field: if at.is_empty() {
                ROOT_FIELD.to_owned()
            } else {
                at
            },
            message,
        },
    }
}

/// The valid name `name` was most likely meant to be, if any is close.
fn suggest(name: &str, expected: &[&str]) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    expected
        .iter()
        .map(|candidate| (strsim::jaro_winkler(&lower, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_when_close() {
        let expected = ["actor", "capability", "binding", "binding_name", "values"];
        assert_eq!(suggest("bindng", &expected).as_deref(), Some("binding"));
        assert_eq!(suggest("Values", &expected).as_deref(), Some("values"));
        assert_eq!(suggest("zzz", &expected), None);
    }
}
