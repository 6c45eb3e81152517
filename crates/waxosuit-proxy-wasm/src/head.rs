//! Header maps as the ABI sees them: HTTP/2-style pseudo-headers first
//! (`:method`, `:path`, `:authority`, `:scheme`; `:status`), then the
//! HTTP server's own header map, used in place so a filter that never
//! looks at headers costs no copy of them.

use waxosuit_cap_http_server::filter::{HeaderMap, HeaderName, HeaderValue};

use crate::abi::Status;

/// Pseudo-headers and headers of a request or a response.
#[derive(Debug, Default, Clone)]
pub(crate) struct Head {
    pub(crate) pseudo: Vec<(&'static str, Vec<u8>)>,
    pub(crate) headers: HeaderMap,
}

/// The pseudo-header named `name`, as the static name the head keeps.
fn pseudo_name(name: &str) -> Option<&'static str> {
    [":method", ":path", ":authority", ":scheme", ":status"]
        .into_iter()
        .find(|p| *p == name)
}

impl Head {
    /// Pairs, pseudo-headers first, as the ABI serializes them.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pseudo
            .iter()
            .map(|(k, v)| (*k, v.as_slice()))
            .chain(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
    }

    pub(crate) fn len(&self) -> usize {
        self.pseudo.len() + self.headers.len()
    }

    pub(crate) fn pseudo(&self, name: &str) -> Option<&[u8]> {
        self.pseudo
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` (any case).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        if name.starts_with(':') {
            return self.pseudo(&name);
        }
        self.headers.get(name.as_str()).map(HeaderValue::as_bytes)
    }

    fn set_pseudo(&mut self, name: &str, value: Vec<u8>) -> Status {
        let Some(name) = pseudo_name(name) else {
            // A pseudo-header HTTP/1.1 has no place for.
            return Status::BadArgument;
        };
        match self.pseudo.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.pseudo.push((name, value)),
        }
        Status::Ok
    }

    fn parse(name: &str, value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
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
            if let Some(slot) = self.pseudo.iter_mut().find(|(k, _)| *k == name) {
                slot.1.clear();
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
        let mut pseudo = Vec::new();
        for (name, value) in pairs {
            if name.starts_with(':') {
                let Some(name) = pseudo_name(&name) else {
                    return Status::BadArgument;
                };
                pseudo.push((name, value));
                continue;
            }
            let Some((name, value)) = Head::parse(&name, &value) else {
                return Status::BadArgument;
            };
            headers.append(name, value);
        }
        // Pseudo-headers the filter left out keep their values.
        for (name, value) in std::mem::take(&mut self.pseudo) {
            if !pseudo.iter().any(|(k, _)| *k == name) {
                pseudo.push((name, value));
            }
        }
        self.pseudo = pseudo;
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

    #[test]
    fn pseudo_headers_come_first_and_names_are_case_blind() {
        let mut head = Head {
            pseudo: vec![(":method", b"GET".to_vec()), (":path", b"/".to_vec())],
            headers: HeaderMap::new(),
        };
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
