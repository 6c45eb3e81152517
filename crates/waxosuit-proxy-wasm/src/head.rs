//! Header maps as the ABI sees them: HTTP/2-style pseudo-headers first
//! (`:method`, `:path`, `:authority`, `:scheme`; `:status`), then the
//! HTTP server's own header map, used in place so a filter that never
//! looks at headers costs no copy of them.

use waxosuit_cap_http_server::filter::{HeaderMap, HeaderName, HeaderValue};

use crate::abi::Status;

/// The pseudo-headers a head can hold, in the order the ABI lists them.
const PSEUDO: [&str; 5] = [":method", ":path", ":authority", ":scheme", ":status"];

/// Index of `:method` in [`Head::pseudo`].
pub(crate) const METHOD: usize = 0;
/// Index of `:path`.
pub(crate) const PATH: usize = 1;
/// Index of `:authority`.
pub(crate) const AUTHORITY: usize = 2;
/// Index of `:scheme`.
pub(crate) const SCHEME: usize = 3;
/// Index of `:status`.
pub(crate) const STATUS: usize = 4;

/// Pseudo-headers and headers of a request or a response.
///
/// The pseudo-headers sit in fixed places, so building, reading and
/// handing back a head allocates nothing of its own: the values are the
/// request's own buffers, moved in and out.
#[derive(Debug, Default, Clone)]
pub(crate) struct Head {
    pub(crate) pseudo: [Option<Value>; 5],
    pub(crate) headers: HeaderMap,
}

/// A pseudo-header's value: the host's own text, moved in and handed back
/// without a second UTF-8 check, or bytes a filter wrote.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Text(String),
    Static(&'static [u8]),
    Bytes(Vec<u8>),
}

impl Value {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Text(text) => text.as_bytes(),
            Value::Static(bytes) => bytes,
            Value::Bytes(bytes) => bytes,
        }
    }

    /// As text: lossy only for bytes a filter wrote that are not UTF-8.
    fn into_text(self) -> String {
        match self {
            Value::Text(text) => text,
            Value::Static(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Value::Bytes(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }
}

/// The place of the pseudo-header `name`.
fn pseudo_index(name: &str) -> Option<usize> {
    PSEUDO.iter().position(|p| *p == name)
}

/// The three digits of a status code, without allocating for the codes
/// HTTP allows.
pub(crate) fn status_digits(status: u16) -> Value {
    static DIGITS: [u8; 2700] = {
        let mut digits = [0u8; 2700];
        let mut i = 0;
        while i < 900 {
            let n = i + 100;
            digits[i * 3] = b'0' + (n / 100) as u8;
            digits[i * 3 + 1] = b'0' + (n / 10 % 10) as u8;
            digits[i * 3 + 2] = b'0' + (n % 10) as u8;
            i += 1;
        }
        digits
    };
    if (100..=999).contains(&status) {
        let at = usize::from(status - 100) * 3;
        Value::Static(&DIGITS[at..at + 3])
    } else {
        Value::Text(status.to_string())
    }
}

impl Head {
    /// Pairs, pseudo-headers first, as the ABI serializes them.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        PSEUDO
            .iter()
            .zip(&self.pseudo)
            .filter_map(|(k, v)| Some((*k, v.as_ref()?.as_bytes())))
            .chain(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
    }

    pub(crate) fn len(&self) -> usize {
        self.pseudo.iter().flatten().count() + self.headers.len()
    }

    pub(crate) fn pseudo(&self, index: usize) -> Option<&[u8]> {
        self.pseudo.get(index)?.as_ref().map(Value::as_bytes)
    }

    /// Moves a pseudo-header's value out as text (lossy only if a filter
    /// wrote bytes that are not UTF-8); empty if it has none.
    pub(crate) fn take_text(&mut self, index: usize) -> String {
        self.pseudo
            .get_mut(index)
            .and_then(Option::take)
            .map(Value::into_text)
            .unwrap_or_default()
    }

    /// The first value of `name` (any case).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        if name.starts_with(':') {
            return self.pseudo(pseudo_index(&name)?);
        }
        self.headers.get(name.as_str()).map(HeaderValue::as_bytes)
    }

    fn set_pseudo(&mut self, name: &str, value: Vec<u8>) -> Status {
        if std::str::from_utf8(&value).is_err() {
            return Status::BadArgument;
        }
        let Some(index) = pseudo_index(name) else {
            // A pseudo-header HTTP/1.1 has no place for.
            return Status::BadArgument;
        };
        self.pseudo[index] = Some(Value::Bytes(value));
        Status::Ok
    }

    /// A header a filter writes. Its value must be UTF-8, as the server
    /// requires of clients: the Rust SDK reads every value as a `String` and
    /// unwraps, so one filter writing other bytes made every later SDK
    /// filter that reads the headers trap, on every such request.
    fn parse(name: &str, value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
        std::str::from_utf8(value).ok()?;
        Some((
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        ))
    }

    /// Adds a value (`replace`: instead of every value there was).
    pub(crate) fn add(&mut self, name: &str, value: Vec<u8>, replace: bool) -> Status {
        let name = name.to_ascii_lowercase();
        if name.starts_with(':') {
            return self.set_pseudo(&name, value);
        }
        let Some((name, value)) = Head::parse(&name, &value) else {
            return Status::BadArgument;
        };
        if replace {
            self.headers.insert(name, value);
        } else {
            self.headers.append(name, value);
        }
        Status::Ok
    }

    pub(crate) fn remove(&mut self, name: &str) -> Status {
        let name = name.to_ascii_lowercase();
        if name.starts_with(':') {
            // Keeps the pseudo-header, empty: the request still has a
            // method and a path, which the host ignores when empty.
            if let Some(value) = pseudo_index(&name).and_then(|i| self.pseudo[i].as_mut()) {
                *value = Value::Static(&[]);
            }
            return Status::Ok;
        }
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            self.headers.remove(name);
        }
        Status::Ok
    }

    /// Replaces everything with `pairs` (lower-case names); refused whole
    /// if a name or value cannot be an HTTP header.
    pub(crate) fn set_all(&mut self, pairs: Vec<(String, Vec<u8>)>) -> Status {
        let mut headers = HeaderMap::with_capacity(pairs.len());
        let mut pseudo: [Option<Vec<u8>>; 5] = Default::default();
        for (name, value) in pairs {
            if name.starts_with(':') {
                let Some(index) = pseudo_index(&name) else {
                    return Status::BadArgument;
                };
                if std::str::from_utf8(&value).is_err() {
                    return Status::BadArgument;
                }
                pseudo[index] = Some(value);
                continue;
            }
            let Some((name, value)) = Head::parse(&name, &value) else {
                return Status::BadArgument;
            };
            headers.append(name, value);
        }
        // Pseudo-headers the filter left out keep their values.
        for (slot, value) in self.pseudo.iter_mut().zip(pseudo) {
            if let Some(value) = value {
                *slot = Some(Value::Bytes(value));
            }
        }
        self.headers = headers;
        Status::Ok
    }

    /// The ABI's serialized form.
    pub(crate) fn serialize(&self) -> Vec<u8> {
        crate::abi::serialize_pairs(|| self.pairs(), self.len())
    }

    pub(crate) fn serialized_size(&self) -> usize {
        crate::abi::pairs_size(self.pairs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values a filter writes are UTF-8, like the ones clients may send:
    /// the Rust SDK reads each as a `String` and unwraps, so a later filter
    /// would trap on every such request. The head is left as it was.
    #[test]
    fn a_value_that_is_not_utf8_is_refused_and_changes_nothing() {
        let mut head = Head::default();
        head.pseudo[PATH] = Some(Value::Static(b"/"));
        assert_eq!(head.add("x-a", b"1".to_vec(), false), Status::Ok);
        let before = head.serialize();
        assert_eq!(
            head.add("x-a", b"\xe9".to_vec(), false),
            Status::BadArgument
        );
        assert_eq!(
            head.add("x-b", b"\xff\xfe".to_vec(), true),
            Status::BadArgument
        );
        assert_eq!(
            head.add(":path", b"/\xe9".to_vec(), true),
            Status::BadArgument
        );
        assert_eq!(
            head.set_all(vec![
                ("x-c".into(), b"ok".to_vec()),
                ("x-d".into(), b"\xe9".to_vec())
            ]),
            Status::BadArgument
        );
        assert_eq!(
            head.set_all(vec![(":path".into(), b"/\xe9".to_vec())]),
            Status::BadArgument
        );
        assert_eq!(head.serialize(), before);
        // Non-ASCII UTF-8 is a value like any other.
        assert_eq!(head.add("x-a", "é".as_bytes().to_vec(), false), Status::Ok);
    }

    #[test]
    fn pseudo_headers_come_first_and_names_are_case_blind() {
        let mut head = Head::default();
        head.pseudo[METHOD] = Some(Value::Text("GET".into()));
        head.pseudo[PATH] = Some(Value::Static(b"/"));
        assert_eq!(
            head.add("Powered-By", b"proxy-wasm".to_vec(), false),
            Status::Ok
        );
        assert_eq!(head.add("x-a", b"1".to_vec(), false), Status::Ok);
        assert_eq!(head.add("x-a", b"2".to_vec(), false), Status::Ok);
        assert_eq!(head.get("POWERED-BY"), Some(&b"proxy-wasm"[..]));
        assert_eq!(head.get(":PATH"), Some(&b"/"[..]));
        assert_eq!(head.add("x-a", b"3".to_vec(), true), Status::Ok);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 1);
        let names: Vec<&str> = head.pairs().map(|(k, _)| k).collect();
        assert_eq!(names, [":method", ":path", "powered-by", "x-a"]);
        assert_eq!(head.serialize().len(), head.serialized_size());
        assert_eq!(head.remove(":path"), Status::Ok);
        assert_eq!(head.get(":path"), Some(&b""[..]));
        assert_eq!(head.take_text(METHOD), "GET");
        assert_eq!(head.get(":method"), None);
    }

    #[test]
    fn status_codes_are_three_digits() {
        assert_eq!(status_digits(100).as_bytes(), b"100");
        assert_eq!(status_digits(204).as_bytes(), b"204");
        assert_eq!(status_digits(999).as_bytes(), b"999");
        assert_eq!(status_digits(42).as_bytes(), b"42");
    }

    #[test]
    fn what_http_cannot_carry_is_refused() {
        let mut head = Head::default();
        assert_eq!(
            head.add("bad name", b"v".to_vec(), false),
            Status::BadArgument
        );
        assert_eq!(
            head.add("x", b"line\nbreak".to_vec(), false),
            Status::BadArgument
        );
        assert_eq!(
            head.add(":protocol", b"h2".to_vec(), false),
            Status::BadArgument
        );
        assert_eq!(
            head.set_all(vec![
                ("ok".into(), b"1".to_vec()),
                ("bad name".into(), b"2".to_vec())
            ]),
            Status::BadArgument
        );
        assert!(
            head.headers.is_empty(),
            "nothing applied from a refused set"
        );
    }
}
