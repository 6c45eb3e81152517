//! The format-neutral value tree that YAML and JSON are both parsed into.
//!
//! Parsing into our own tree, rather than straight into the schema, is what
//! makes `${VAR}` expansion safe: expansion rewrites [`Node::Str`] leaves, and
//! the schema is then deserialized from the tree, so an expanded value can only
//! ever be a string, never new structure. The tree also lets one
//! [`Deserializer`] with our own error type serve both formats, which is how
//! unknown fields come back as data (name + valid names) instead of a message
//! to pick apart.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A parsed YAML or JSON value. Mapping keys keep document order so that the
/// first error reported is the first one a reader meets in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What the node is, for "expected a mapping, found …" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::UInt(_) | Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// Written out as the value it was read as, mappings in document order, so
/// that a filter's `config` mapping reaches the filter as the JSON an author
/// would expect: numbers stay numbers, booleans booleans. (A non-finite float
/// would come out as `null`; [`Node::non_finite`] finds those first.)
impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(v) => serializer.serialize_bool(*v),
            Node::Int(v) => serializer.serialize_i64(*v),
            Node::UInt(v) => serializer.serialize_u64(*v),
            Node::Float(v) => serializer.serialize_f64(*v),
            Node::Str(v) => serializer.serialize_str(v),
            Node::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl Node {
    /// The path of the first NaN or infinite number in the tree (YAML's
    /// `.nan`, `.inf`), which JSON cannot represent.
    pub(crate) fn non_finite(&self, path: &FieldPath) -> Option<FieldPath> {
        match self {
            Node::Float(v) if !v.is_finite() => Some(path.clone()),
            Node::Seq(items) => items
                .iter()
                .enumerate()
                .find_map(|(index, item)| item.non_finite(&path.index(index))),
            Node::Map(entries) => entries
                .iter()
                .find_map(|(key, value)| value.non_finite(&path.key(key))),
            _ => None,
        }
    }
}

/// The most memory one document's tree may take, counted as each node's
/// size plus its text. A YAML alias is expanded each time it is used, so a
/// few kilobytes of anchors referring to anchors describe billions of
/// values; the parser's own guard counts alias uses, not what they expand
/// to. A real manifest takes a few kilobytes.
pub(crate) const MAX_TREE_BYTES: usize = 64 << 20;

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let budget = Cell::new(MAX_TREE_BYTES);
        Budgeted(&budget).deserialize(deserializer)
    }
}

/// A node drawing on what is left of its document's [`MAX_TREE_BYTES`].
struct Budgeted<'a>(&'a Cell<usize>);

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor { budget: self.0 })
    }
}

/// Takes `text` bytes and one node from `budget`.
fn charge<E: de::Error>(budget: &Cell<usize>, text: usize) -> Result<(), E> {
    let cost = std::mem::size_of::<Node>().saturating_add(text);
    match budget.get().checked_sub(cost) {
        Some(left) => {
            budget.set(left);
            Ok(())
        }
        None => Err(E::custom(format_args!(
            "the document expands to more than {} MiB of values (YAML aliases \
             are copied each time they are used); write the values out, or split \
             the manifest",
            MAX_TREE_BYTES >> 20
        ))),
    }
}

struct NodeVisitor<'a> {
    budget: &'a Cell<usize>,
}

impl<'de> Visitor<'de> for NodeVisitor<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        charge(self.budget, 0)?;
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        charge(self.budget, 0)?;
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        charge(self.budget, 0)?;
        Ok(Node::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        charge(self.budget, 0)?;
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        charge(self.budget, v.len())?;
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        charge(self.budget, v.len())?;
        Ok(Node::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        charge(self.budget, 0)?;
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        charge(self.budget, 0)?;
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Budgeted(self.budget).deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        charge(self.budget, 0)?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Budgeted(self.budget))? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        charge(self.budget, 0)?;
        let mut entries = Vec::new();
        // serde_json keeps the last of two equal keys and YAML parsers differ;
        // either way one of the author's values would vanish silently.
        let mut seen = BTreeSet::new();
        while let Some(Key(key)) = map.next_key()? {
            // The key is kept twice: in the entry and in `seen`.
            charge(self.budget, key.len().saturating_mul(2))?;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(Budgeted(self.budget))?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Node, A::Error> {
        // serde_norway hands `!Tag value` to visitors as an enum.
        Err(de::Error::custom(
            "YAML tags (`!name`) are not supported in a manifest",
        ))
    }
}

/// A mapping key. YAML allows `8080: x` or `true: x`; those are turned into
/// their text so that a `values` map can use them, while a list or mapping as a
/// key is refused.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean as a mapping key")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
        Ok(Key(float_text(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Key, E> {
        Ok(Key(v))
    }
}

/// Text for a float that reads back as the same float and keeps a `.0` on whole
/// numbers, so `VERSION: 1.0` becomes `"1.0"` rather than `"1"`.
pub(crate) fn float_text(v: f64) -> String {
    format!("{v:?}")
}

/// A path to a field, printed the way `serde_path_to_error` prints one
/// (`bindings[1].values.PORT`), so that every error in the crate names fields
/// the same way.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// A path already printed, e.g. `bindings[0].filters[1].config`.
    pub(crate) fn new(path: impl Into<String>) -> Self {
        Self(path.into())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        if self.0.is_empty() {
            Self(key.to_owned())
        } else {
            Self(format!("{}.{key}", self.0))
        }
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    pub(crate) fn into_string(self) -> String {
        if self.0.is_empty() {
            ROOT_FIELD.to_owned()
        } else {
            self.0
        }
    }
}

/// How an error about the whole document names its "field".
pub(crate) const ROOT_FIELD: &str = "(top level)";

/// Replaces `${VAR}` and `${VAR:default}` in every string value of the tree.
/// Mapping keys are left alone: they are field names, and a field name that
/// depends on the environment could not be checked.
///
/// On an unset variable without a default, returns the field path and the
/// variable name.
pub(crate) fn expand_tree(
    node: &mut Node,
    path: &FieldPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match node {
        Node::Str(text) => {
            if let Some(expanded) =
                expand_str(text, env).map_err(|var| (path.clone().into_string(), var))?
            {
                *text = expanded;
            }
        }
        Node::Seq(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_tree(item, &path.index(index), env)?;
            }
        }
        Node::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                expand_tree(value, &path.key(key), env)?;
            }
        }
        Node::Null | Node::Bool(_) | Node::Int(_) | Node::UInt(_) | Node::Float(_) => {}
    }
    Ok(())
}

/// Expands one string. `Ok(None)` means nothing to replace. The result is not
/// scanned again, so a variable's value (or a default) containing `${…}` stays
/// literal text and expansion cannot recurse.
///
/// A `${` that is not followed by a variable name and a closing `}` is kept as
/// written: without an escape syntax, that is the only way to write such text.
fn expand_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !is_var_name(name) {
            out.push_str(&rest[..start + 2]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..start]);
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(name.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Error of [`NodeDe`]. Unknown fields are kept as data so the caller can
/// suggest the closest valid name.
#[derive(Debug)]
pub(crate) enum DeError {
    Custom(String),
    UnknownField {
        name: String,
        expected: &'static [&'static str],
    },
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::Custom(message) => f.write_str(message),
            DeError::UnknownField { name, .. } => write!(f, "unknown field `{name}`"),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Custom(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::UnknownField {
            name: field.to_owned(),
            expected,
        }
    }
}

/// Deserializes a schema type from a borrowed [`Node`].
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a>(pub(crate) &'a Node);

impl<'de> IntoDeserializer<'de, DeError> for NodeDe<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Node::Null => visitor.visit_unit(),
            Node::Bool(v) => visitor.visit_bool(*v),
            Node::Int(v) => visitor.visit_i64(*v),
            Node::UInt(v) => visitor.visit_u64(*v),
            Node::Float(v) => visitor.visit_f64(*v),
            Node::Str(v) => visitor.visit_borrowed_str(v),
            Node::Seq(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(NodeDe));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Node::Map(entries) => {
                let mut map =
                    MapDeserializer::new(entries.iter().map(|(k, v)| (k.as_str(), NodeDe(v))));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("${HOST}".into()),
            _ => None,
        }
    }

    fn expand(text: &str) -> Result<String, String> {
        expand_str(text, &env).map(|out| out.unwrap_or_else(|| text.to_owned()))
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(
            expand("http://${HOST}:${PORT:8080}/").as_deref(),
            Ok("http://example.org:8080/")
        );
        assert_eq!(expand("[${MISSING:}]").as_deref(), Ok("[]"));
        assert_eq!(expand("[${EMPTY:fallback}]").as_deref(), Ok("[]"));
        assert_eq!(expand("${A:x:y}").as_deref(), Ok("x:y"));
    }

    #[test]
    fn leaves_non_variables_alone() {
        for text in [
            "$HOST",
            "${",
            "${HOST",
            "${not a name}",
            "${1X}",
            "$ {HOST}",
            "plain",
        ] {
            assert_eq!(expand(text).as_deref(), Ok(text), "{text}");
        }
        assert_eq!(
            expand("${bad name} ${HOST}").as_deref(),
            Ok("${bad name} example.org")
        );
    }

    #[test]
    fn does_not_expand_twice() {
        assert_eq!(expand("${NESTED}").as_deref(), Ok("${HOST}"));
        // A default ends at the first `}` and is not expanded itself.
        assert_eq!(expand("${MISSING:${HOST}}").as_deref(), Ok("${HOST}"));
    }

    #[test]
    fn reports_the_missing_variable() {
        assert_eq!(
            expand("a ${HOST} ${MISSING} ${OTHER}"),
            Err("MISSING".to_owned())
        );
    }

    #[test]
    fn field_paths_print_like_serde_path_to_error() {
        let path = FieldPath::root()
            .key("bindings")
            .index(1)
            .key("values")
            .key("PORT");
        assert_eq!(path.into_string(), "bindings[1].values.PORT");
        assert_eq!(FieldPath::root().into_string(), ROOT_FIELD);
    }
}
