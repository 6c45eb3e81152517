//! Writing a [`Request`] straight into the payload that is sent: the what
//! and why are on [`RequestWriter`], whose docs users see.

use std::collections::TryReserveError;

use super::Request;
use crate::CodecError;
use crate::msgpack::{bin_header, put_bin_header, put_map_len, put_str};

/// Key names of [`Request`], in declaration order.
const REQUEST_KEYS: [&str; 5] = ["method", "path", "queryString", "header", "body"];

/// Room a `bin` header can take: its marker and a 32-bit length.
const BIN_HEADER_MAX: usize = 5;

/// The head of a request to encode with [`RequestWriter::new`].
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path (server side) or the full URL (client side).
    pub path: &'a str,
    /// The query string without the leading `?`.
    pub query_string: &'a str,
    /// Bytes of body to reserve room for, so that a body of that size
    /// streamed in later does not reallocate the buffer.
    pub body_capacity: usize,
}

/// A [`Request`] written up to its body, which comes next: all at once
/// with [`finish`](Self::finish), or streamed with
/// [`stream_body`](Self::stream_body).
///
/// A server that builds a [`Request`] from its HTTP library's parts pays
/// for a `HashMap`, a `String` per header and a copy of the body, only for
/// [`serialize`](crate::serialize) to walk them once. This writes the same
/// bytes from borrowed parts into one buffer of about the right size, and
/// lets the body be streamed into it as it arrives ([`BodyWriter`]), so
/// that it exists once in memory. The output is byte-for-byte what
/// `serialize` writes for the equivalent `Request` (when its header map
/// has one entry or none: larger maps have no fixed order), so it needs
/// no decoder of its own.
///
/// ```
/// use waxosuit_codec::http::{Request, RequestHead, RequestWriter};
///
/// let head = RequestHead { method: "GET", path: "/", query_string: "a=1", body_capacity: 0 };
/// let fields = [("accept", &b"text/html"[..]), ("accept", b"*/*"), ("host", b"x")];
/// let bytes = RequestWriter::new(&head, 2, fields)?.finish(b"")?;
///
/// let request: Request = waxosuit_codec::deserialize(&bytes)?;
/// assert_eq!(request.header["accept"], "text/html, */*");
/// # Ok::<(), waxosuit_codec::CodecError>(())
/// ```
#[derive(Debug)]
pub struct RequestWriter {
    buf: Vec<u8>,
}

fn too_large(what: &str, len: usize) -> CodecError {
    CodecError::Serialize {
        type_name: core::any::type_name::<Request>(),
        reason: format!(
            "the {what} is {len} bytes, more than MessagePack can describe (4 GiB); \
             refuse such a request before encoding it"
        ),
    }
}

impl RequestWriter {
    /// Writes `head` and the headers: `headers` yields each header field as
    /// (lower-case name, value), the values of one name one after the other
    /// (as `http::HeaderMap::iter` does), and `names` is how many distinct
    /// names there are (`HeaderMap::keys_len`).
    ///
    /// As a [`Request`] has one value per name, the values of one name are
    /// joined with `", "` (RFC 9110 §5.3), and bytes that are not UTF-8 are
    /// replaced with U+FFFD rather than losing the header.
    ///
    /// # Errors
    ///
    /// [`CodecError::Serialize`] if a part is longer than MessagePack can
    /// describe (4 GiB), or if `headers` does not yield `names` groups of
    /// one name each (a name out of its group, or a wrong count): the
    /// encoding would otherwise be corrupt.
    pub fn new<'h>(
        head: &RequestHead<'_>,
        names: usize,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) -> Result<RequestWriter, CodecError> {
        // Keys and prefixes take under 64 bytes; a header field is rarely
        // over 64 (a longer one grows the buffer once, by doubling).
        let capacity = [
            64,
            head.method.len(),
            head.path.len(),
            head.query_string.len(),
            names.saturating_mul(64),
            head.body_capacity,
            BIN_HEADER_MAX,
        ]
        .into_iter()
        .try_fold(0usize, usize::checked_add)
        .ok_or_else(|| too_large("body", head.body_capacity))?;
        let mut buf = Vec::new();
        buf.try_reserve(capacity)
            .map_err(|_| too_large("request with its body", capacity))?;

        // A fixmap of the five keys, which are short strings.
        buf.push(0x80 | REQUEST_KEYS.len() as u8);
        let fields = [head.method, head.path, head.query_string];
        for (key, value) in REQUEST_KEYS.iter().zip(fields) {
            put_key(&mut buf, key);
            put_str(&mut buf, value.as_bytes()).ok_or_else(|| too_large(key, value.len()))?;
        }
        put_key(&mut buf, REQUEST_KEYS[3]);
        put_headers(&mut buf, names, headers)?;
        put_key(&mut buf, REQUEST_KEYS[4]);
        Ok(RequestWriter { buf })
    }

    /// Bytes written so far; the body adds its own length and at most 5.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always `false`: the head is never empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The whole request, with `body`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Serialize`] if `body` is longer than MessagePack can
    /// describe (4 GiB).
    pub fn finish(mut self, body: &[u8]) -> Result<Vec<u8>, CodecError> {
        put_bin_header(&mut self.buf, body.len()).ok_or_else(|| too_large("body", body.len()))?;
        self.buf.extend_from_slice(body);
        Ok(self.buf)
    }

    /// Starts a body whose bytes are then pushed as they arrive. With its
    /// `length` known, its final header is written now; without, a 5-byte
    /// placeholder that [`BodyWriter::finish`] replaces.
    ///
    /// # Errors
    ///
    /// [`CodecError::Serialize`] if `length` is more than MessagePack can
    /// describe (4 GiB).
    pub fn stream_body(mut self, length: Option<usize>) -> Result<BodyWriter, CodecError> {
        let at = self.buf.len();
        match length {
            Some(len) => {
                put_bin_header(&mut self.buf, len).ok_or_else(|| too_large("body", len))?;
            }
            None => self.buf.extend_from_slice(&[0xc6, 0, 0, 0, 0]),
        }
        Ok(BodyWriter {
            body_at: self.buf.len(),
            buf: self.buf,
            at,
            length,
        })
    }
}

/// A [`Request`] whose body is being streamed in; see
/// [`RequestWriter::stream_body`].
#[derive(Debug)]
pub struct BodyWriter {
    buf: Vec<u8>,
    /// Offset of the body's `bin` header.
    at: usize,
    /// Offset of the body's first byte.
    body_at: usize,
    /// The length announced, if any.
    length: Option<usize>,
}

impl BodyWriter {
    /// Body bytes pushed so far.
    #[must_use]
    pub fn body_len(&self) -> usize {
        self.buf.len() - self.body_at
    }

    /// Bytes of the whole request so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always `false`: the head is never empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends `data` to the body.
    ///
    /// # Errors
    ///
    /// If memory for it cannot be had; nothing is appended then.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TryReserveError> {
        self.buf.try_reserve(data.len())?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The whole request. Without a length announced, the placeholder
    /// becomes the smallest header for the length received, as `serialize`
    /// writes it; the body is moved down within the buffer when that header
    /// is shorter, never copied elsewhere.
    ///
    /// # Errors
    ///
    /// [`CodecError::Serialize`] if the body received is not the length
    /// announced, or is longer than MessagePack can describe (4 GiB).
    pub fn finish(mut self) -> Result<Vec<u8>, CodecError> {
        let len = self.body_len();
        match self.length {
            Some(announced) if announced == len => return Ok(self.buf),
            Some(announced) => {
                return Err(CodecError::Serialize {
                    type_name: core::any::type_name::<Request>(),
                    reason: format!(
                        "the body was announced as {announced} bytes but {len} were pushed; \
                         refuse a body that does not match its length before finishing"
                    ),
                });
            }
            None => {}
        }
        let (header, used) = bin_header(len).ok_or_else(|| too_large("body", len))?;
        let data_at = self.at + used;
        self.buf.copy_within(self.body_at.., data_at);
        self.buf.truncate(data_at + len);
        self.buf[self.at..data_at].copy_from_slice(&header[..used]);
        Ok(self.buf)
    }
}

/// A key of [`REQUEST_KEYS`]: a fixstr, which always fits.
fn put_key(buf: &mut Vec<u8>, key: &str) {
    buf.push(0xa0 | key.len() as u8);
    buf.extend_from_slice(key.as_bytes());
}

/// The flat header map: `names` entries, repeated names joined.
fn put_headers<'h>(
    buf: &mut Vec<u8>,
    names: usize,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
) -> Result<(), CodecError> {
    put_map_len(buf, names).ok_or_else(|| CodecError::Serialize {
        type_name: core::any::type_name::<Request>(),
        reason: format!("{names} header names are more than a MessagePack map can hold (2^32 - 1)"),
    })?;
    let mut written = 0usize;
    let mut fields = headers.into_iter().peekable();
    while let Some((name, first)) = fields.next() {
        written += 1;
        if written > names {
            break;
        }
        put_str(buf, name.as_bytes()).ok_or_else(|| too_large("header name", name.len()))?;
        if fields.peek().is_some_and(|(next, _)| *next == name) {
            let mut joined = String::from_utf8_lossy(first).into_owned();
            while let Some((_, more)) = fields.next_if(|(next, _)| *next == name) {
                joined.push_str(", ");
                joined.push_str(&String::from_utf8_lossy(more));
            }
            put_str(buf, joined.as_bytes()).ok_or_else(|| too_large("header", joined.len()))?;
        } else {
            let value = String::from_utf8_lossy(first);
            put_str(buf, value.as_bytes()).ok_or_else(|| too_large("header", value.len()))?;
        }
    }
    if written != names {
        return Err(CodecError::Serialize {
            type_name: core::any::type_name::<Request>(),
            reason: format!(
                "{names} distinct header names were announced but the headers came in \
                 {written}{} groups; give the count of distinct names, and each name's \
                 values one after the other",
                if written > names { " or more" } else { "" }
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{deserialize, serialize};

    fn head<'a>(method: &'a str, path: &'a str, query_string: &'a str) -> RequestHead<'a> {
        RequestHead {
            method,
            path,
            query_string,
            body_capacity: 0,
        }
    }

    fn encode(headers: &[(&str, &[u8])], names: usize, body: &[u8]) -> Vec<u8> {
        RequestWriter::new(&head("POST", "/a/b", "x=1"), names, headers.iter().copied())
            .unwrap()
            .finish(body)
            .unwrap()
    }

    #[test]
    fn request_bytes_match_serialize() {
        // One header, so the map order is fixed and bytes are comparable.
        for (path_len, value_len, body_len) in [
            (1, 1, 0),
            (31, 32, 255),
            (32, 255, 256),
            (256, 256, 65_535),
            (70_000, 300, 65_536),
        ] {
            let path = format!("/{}", "p".repeat(path_len - 1));
            let value = "v".repeat(value_len);
            let body = vec![0xabu8; body_len];
            let ours = RequestWriter::new(&head("GET", &path, ""), 1, [("x-h", value.as_bytes())])
                .unwrap()
                .finish(&body)
                .unwrap();
            let codec = serialize(&Request {
                method: "GET".into(),
                path,
                query_string: String::new(),
                header: HashMap::from([("x-h".to_string(), value)]),
                body,
            })
            .unwrap();
            assert_eq!(
                ours, codec,
                "path {path_len}, value {value_len}, body {body_len}"
            );
        }
    }

    #[test]
    fn repeated_names_are_joined_and_bad_bytes_replaced() {
        let mut headers: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("x-{i}"), i.to_string().into_bytes()))
            .collect();
        headers.push(("accept".into(), b"text/html".to_vec()));
        headers.push(("accept".into(), b"application/json".to_vec()));
        headers.push(("x-raw".into(), b"a\xffb".to_vec()));
        let fields: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let decoded: Request = deserialize(&encode(&fields, 22, b"hi")).unwrap();
        assert_eq!(decoded.method, "POST");
        assert_eq!(decoded.path, "/a/b");
        assert_eq!(decoded.query_string, "x=1");
        assert_eq!(decoded.body, b"hi");
        assert_eq!(decoded.header.len(), 22);
        assert_eq!(decoded.header["x-7"], "7");
        assert_eq!(decoded.header["accept"], "text/html, application/json");
        assert_eq!(decoded.header["x-raw"], "a\u{fffd}b");
    }

    #[test]
    fn a_wrong_name_count_or_a_scattered_name_is_refused() {
        let fields: [(&str, &[u8]); 3] = [("a", b"1"), ("b", b"2"), ("a", b"3")];
        for (names, fields) in [(2, &fields[..]), (3, &fields[..2]), (1, &fields[..2])] {
            let err = RequestWriter::new(&head("GET", "/", ""), names, fields.iter().copied())
                .unwrap_err();
            assert!(
                matches!(&err, CodecError::Serialize { reason, .. }
                    if reason.contains("distinct header names were announced")),
                "{names} names, {fields:?}: {err}"
            );
        }
    }

    #[test]
    fn a_streamed_body_encodes_like_serialize() {
        for len in [0, 1, 255, 256, 65_535, 65_536, 70_000] {
            let body = vec![0x5au8; len];
            let expected = encode(&[], 0, &body);
            for announced in [Some(len), None] {
                let writer = RequestWriter::new(&head("POST", "/a/b", "x=1"), 0, []).unwrap();
                let mut streamed = writer.stream_body(announced).unwrap();
                // In uneven chunks, as they come off the network.
                for chunk in body.chunks(1000) {
                    streamed.push(chunk).unwrap();
                }
                assert_eq!(streamed.body_len(), len);
                assert_eq!(streamed.finish().unwrap(), expected, "{len}, {announced:?}");
            }
        }
    }

    #[test]
    fn a_body_that_does_not_match_its_length_is_refused() {
        for (announced, pushed) in [(3, 2), (3, 4)] {
            let writer = RequestWriter::new(&head("PUT", "/", ""), 0, []).unwrap();
            let mut streamed = writer.stream_body(Some(announced)).unwrap();
            streamed.push(&vec![0; pushed]).unwrap();
            let err = streamed.finish().unwrap_err();
            assert!(
                err.to_string().contains(&format!(
                    "announced as {announced} bytes but {pushed} were pushed"
                )),
                "{err}"
            );
        }
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn parts_past_four_gib_are_refused() {
        let writer = RequestWriter::new(&head("PUT", "/", ""), 0, []).unwrap();
        let err = writer.stream_body(Some(1 << 32)).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than MessagePack can describe")
        );
        let too_big = RequestHead {
            body_capacity: usize::MAX,
            ..head("PUT", "/", "")
        };
        assert!(RequestWriter::new(&too_big, 0, []).is_err());
    }
}
