//! Why a manifest was refused. Every variant names the file, and all but
//! [`ManifestError::Read`] name the place in it, because the reader of these
//! messages is someone with the manifest open in an editor.

use std::fmt;
use std::path::PathBuf;

/// A manifest that could not be read, parsed or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {}", file.display())]
    Read {
        /// The manifest file.
        file: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid YAML or JSON (or has a duplicate key or a YAML
    /// tag, which the parser reports at their position too).
    #[error("{}{}: {message}", file.display(), Position(*line, *column))]
    Syntax {
        /// The manifest file.
        file: PathBuf,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// 1-based column, when the parser knows it.
        column: Option<usize>,
        /// The parser's description of the problem.
        message: String,
    },

    /// The file has an extension other than `.yaml`, `.yml` or `.json` and
    /// its content parses as neither.
    #[error(
        "{}: not a YAML or JSON manifest (as JSON: {json}; as YAML: {yaml}); \
         name it `.yaml` or `.json` to get a precise syntax error",
        file.display()
    )]
    UnrecognizedFormat {
        /// The manifest file.
        file: PathBuf,
        /// Why it is not JSON.
        json: String,
        /// Why it is not a YAML manifest.
        yaml: String,
    },

    /// A field has the wrong type or breaks a rule.
    #[error("{}: {field}: {message}", file.display())]
    Field {
        /// The manifest file.
        file: PathBuf,
        /// Where, e.g. `bindings[1].capability` or `actors[0].limits.deadline_ms`.
        field: String,
        /// What is wrong, and where possible how to fix it.
        message: String,
    },

    /// A mapping has a key the schema does not know.
    #[error(
        "{}: {field}: unknown field `{name}`{}, expected {}",
        file.display(),
        Suggestion(suggestion.as_deref()),
        OneOf(expected)
    )]
    UnknownField {
        /// The manifest file.
        file: PathBuf,
        /// Path of the unknown key itself, e.g. `bindings[0].bindng`.
        field: String,
        /// The unknown key.
        name: String,
        /// The valid name it most resembles, if one is close.
        suggestion: Option<String>,
        /// The valid names at that place.
        expected: Vec<String>,
    },

    /// A `${VAR}` names an unset variable and gives no default.
    #[error(
        "{}: {field}: environment variable `{var}` is not set; set it, or give a default \
         with `${{{var}:default}}` (`${{{var}:}}` for an empty one)",
        file.display()
    )]
    Env {
        /// The manifest file.
        file: PathBuf,
        /// The field whose value uses the variable.
        field: String,
        /// The variable.
        var: String,
    },
}

impl ManifestError {
    /// The manifest file the error is about.
    pub fn file(&self) -> &std::path::Path {
        match self {
            ManifestError::Read { file, .. }
            | ManifestError::Syntax { file, .. }
            | ManifestError::UnrecognizedFormat { file, .. }
            | ManifestError::Field { file, .. }
            | ManifestError::UnknownField { file, .. }
            | ManifestError::Env { file, .. } => file,
        }
    }

    /// The field path the error is about, for errors tied to one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ManifestError::Field { field, .. }
            | ManifestError::UnknownField { field, .. }
            | ManifestError::Env { field, .. } => Some(field),
            ManifestError::Read { .. }
            | ManifestError::Syntax { .. }
            | ManifestError::UnrecognizedFormat { .. } => None,
        }
    }
}

/// `:line:column`, in the form editors and terminals turn into links.
struct Position(Option<usize>, Option<usize>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(column)) => write!(f, ":{line}:{column}"),
            (Some(line), None) => write!(f, ":{line}"),
            _ => Ok(()),
        }
    }
}

struct Suggestion<'a>(Option<&'a str>);

impl fmt::Display for Suggestion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " (did you mean `{name}`?)"),
            None => Ok(()),
        }
    }
}

struct OneOf<'a>(&'a [String]);

impl fmt::Display for OneOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("no fields here"),
            [only] => write!(f, "`{only}`"),
            names => {
                f.write_str("one of ")?;
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{name}`")?;
                }
                Ok(())
            }
        }
    }
}
