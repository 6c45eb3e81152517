//! Hot-path MessagePack for `HandleRequest`.
//!
//! Going through [`waxosuit_codec::http::Request`] and
//! [`waxosuit_codec::http::Response`] costs every request a `HashMap`, a
//! `String` per header and a copy of each body, which profiling showed to
//! be most of this provider's own overhead. This module writes the request
//! straight from hyper's parts into one buffer of the right size, and reads
//! the reply in place, producing byte-for-byte the same encoding and the
//! same decoded values as the codec (the tests hold it to that).
//!
//! Decoding only handles the layout the codec and waSCC actors produce
//! (a map keyed by field name); anything else — structs as arrays, other
//! integer widths for strings, unknown keys — returns `None` and the caller
//! falls back to the codec, which stays the authority on what is accepted.

use std::ops::Range;

use hyper::header::HeaderMap;

/// Key names of [`waxosuit_codec::http::Request`], in declaration order.
const REQUEST_KEYS: [&str; 5] = ["method", "path", "queryString", "header", "body"];

/// The request as MessagePack, or `None` if a part is longer than
/// MessagePack can describe (4 GiB).
pub(crate) fn encode_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Vec<u8>> {
    // Upper bound: every string or bin carries at most 5 bytes of prefix, a
    // joined header adds ", " per extra value.
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 2 + 10)
        .sum();
    let capacity = 64 + method.len() + path.len() + query.len() + header_bytes + body.len();
    let mut buf = Vec::with_capacity(capacity);

    put_map_len(&mut buf, REQUEST_KEYS.len())?;
    put_str(&mut buf, REQUEST_KEYS[0].as_bytes())?;
    put_str(&mut buf, method.as_bytes())?;
    put_str(&mut buf, REQUEST_KEYS[1].as_bytes())?;
    put_str(&mut buf, path.as_bytes())?;
    put_str(&mut buf, REQUEST_KEYS[2].as_bytes())?;
    put_str(&mut buf, query.as_bytes())?;
    put_str(&mut buf, REQUEST_KEYS[3].as_bytes())?;
    put_headers(&mut buf, headers)?;
    put_str(&mut buf, REQUEST_KEYS[4].as_bytes())?;
    put_bin(&mut buf, body)?;
    Some(buf)
}

/// The codec's flat header map, written directly: names are already lower
/// case in `http`, a repeated header becomes one value joined with `", "`
/// (RFC 9110 §5.3), and bytes that are not UTF-8 are replaced rather than
/// dropping the header.
fn put_headers(buf: &mut Vec<u8>, headers: &HeaderMap) -> Option<()> {
    put_map_len(buf, headers.keys_len())?;
    // `iter` yields a repeated header's values one after the other, so the
    // groups come out in `keys_len` runs.
    let mut values = headers.iter().peekable();
    while let Some((name, first)) = values.next() {
        put_str(buf, name.as_str().as_bytes())?;
        if values.peek().is_some_and(|(next, _)| *next == name) {
            let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
            while let Some((_, more)) = values.next_if(|(next, _)| *next == name) {
                joined.push_str(", ");
                joined.push_str(&String::from_utf8_lossy(more.as_bytes()));
            }
            put_str(buf, joined.as_bytes())?;
        } else {
            put_str(buf, String::from_utf8_lossy(first.as_bytes()).as_bytes())?;
        }
    }
    Some(())
}

fn put_map_len(buf: &mut Vec<u8>, len: usize) -> Option<()> {
    match len {
        0..=15 => buf.push(0x80 | len as u8),
        16..=0xffff => {
            buf.push(0xde);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            buf.push(0xdf);
            buf.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
        }
    }
    Some(())
}

/// The smallest string form, as rmp (and so the codec) writes it.
fn put_str(buf: &mut Vec<u8>, text: &[u8]) -> Option<()> {
    let len = text.len();
    match len {
        0..=31 => buf.push(0xa0 | len as u8),
        32..=0xff => buf.extend_from_slice(&[0xd9, len as u8]),
        0x100..=0xffff => {
            buf.push(0xda);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            buf.push(0xdb);
            buf.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
        }
    }
    buf.extend_from_slice(text);
    Some(())
}

fn put_bin(buf: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    let len = bytes.len();
    match len {
        0..=0xff => buf.extend_from_slice(&[0xc4, len as u8]),
        0x100..=0xffff => {
            buf.push(0xc5);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            buf.push(0xc6);
            buf.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
        }
    }
    buf.extend_from_slice(bytes);
    Some(())
}

/// A `Response` read in place from the actor's reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReplyView<'a> {
    pub(crate) status_code: u32,
    pub(crate) status: &'a str,
    /// In wire order; names are distinct.
    pub(crate) headers: Vec<(&'a str, &'a str)>,
    /// Where the body lies in the reply, so it can be sliced without a copy.
    pub(crate) body: Range<usize>,
}

/// Reads `reply` if it has the codec's layout, `None` otherwise (the caller
/// then asks the codec, which may still accept it or explains why not).
pub(crate) fn decode_reply(reply: &[u8]) -> Option<ReplyView<'_>> {
    let mut r = Reader { buf: reply, pos: 0 };
    let fields = r.map_len()?;
    let mut status_code = None;
    let mut status = None;
    let mut headers = None;
    let mut body = None;
    for _ in 0..fields {
        // A repeated field is an error for serde; leave the verdict to it.
        match r.str()? {
            "statusCode" if status_code.is_none() => status_code = Some(r.uint()?),
            "status" if status.is_none() => status = Some(r.str()?),
            "header" if headers.is_none() => {
                let count = r.map_len()?;
                // Each entry takes at least two bytes, so a forged count
                // cannot make this reserve more than the reply's size.
                let mut entries: Vec<(&str, &str)> = Vec::with_capacity(count.min(reply.len() / 2));
                for _ in 0..count {
                    let name = r.str()?;
                    let value = r.str()?;
                    // The codec's HashMap keeps the last of equal keys; rare
                    // enough to let it handle that.
                    if entries.iter().any(|(n, _)| *n == name) {
                        return None;
                    }
                    entries.push((name, value));
                }
                headers = Some(entries);
            }
            "body" if body.is_none() => body = Some(r.bin()?),
            _ => return None,
        }
    }
    if r.pos != reply.len() {
        return None;
    }
    Some(ReplyView {
        status_code: status_code?,
        status: status?,
        headers: headers.unwrap_or_default(),
        body: body.unwrap_or(0..0),
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    }

    fn len_of(&mut self, n: usize) -> Option<usize> {
        usize::try_from(self.be(n)?).ok()
    }

    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some(usize::from(m & 0x0f)),
            0xde => self.len_of(2),
            0xdf => self.len_of(4),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.len_of(1)?,
            0xda => self.len_of(2)?,
            0xdb => self.len_of(4)?,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn bin(&mut self) -> Option<Range<usize>> {
        let len = match self.byte()? {
            0xc4 => self.len_of(1)?,
            0xc5 => self.len_of(2)?,
            0xc6 => self.len_of(4)?,
            _ => return None,
        };
        let start = self.pos;
        self.take(len)?;
        Some(start..self.pos)
    }

    /// Unsigned forms only; a signed encoding of a status is left to serde.
    fn uint(&mut self) -> Option<u32> {
        let value = match self.byte()? {
            m @ 0x00..=0x7f => u64::from(m),
            0xcc => self.be(1)?,
            0xcd => self.be(2)?,
            0xce => self.be(4)?,
            0xcf => self.be(8)?,
            _ => return None,
        };
        u32::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use hyper::header::HeaderValue;
    use waxosuit_codec::http::{Request, Response};

    use super::*;

    fn encode(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
        encode_request("POST", "/a/b", "x=1", headers, body).unwrap()
    }

    #[test]
    fn request_bytes_match_the_codec() {
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
            let mut headers = HeaderMap::new();
            headers.insert("x-h", HeaderValue::from_str(&value).unwrap());
            let ours = encode_request("GET", &path, "", &headers, &body).unwrap();
            let codec = waxosuit_codec::serialize(&Request {
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
    fn many_headers_decode_like_the_codec_would_build_them() {
        let mut headers = HeaderMap::new();
        for i in 0..20 {
            headers.append(
                hyper::header::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_str(&i.to_string()).unwrap(),
            );
        }
        headers.append("accept", HeaderValue::from_static("text/html"));
        headers.append("accept", HeaderValue::from_static("application/json"));
        headers.insert("x-raw", HeaderValue::from_bytes(b"a\xffb").unwrap());
        let decoded: Request = waxosuit_codec::deserialize(&encode(&headers, b"hi")).unwrap();
        assert_eq!(decoded.method, "POST");
        assert_eq!(decoded.path, "/a/b");
        assert_eq!(decoded.query_string, "x=1");
        assert_eq!(decoded.body, b"hi");
        assert_eq!(decoded.header.len(), 22);
        assert_eq!(decoded.header["x-7"], "7");
        assert_eq!(decoded.header["accept"], "text/html, application/json");
        assert_eq!(decoded.header["x-raw"], "a\u{fffd}b");
    }

    fn view_as_response(reply: &[u8]) -> Option<Response> {
        let view = decode_reply(reply)?;
        Some(Response {
            status_code: view.status_code,
            status: view.status.to_string(),
            header: view
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: reply[view.body].to_vec(),
        })
    }

    #[test]
    fn codec_replies_decode_to_the_same_values() {
        let many: HashMap<String, String> = (0..40)
            .map(|i| (format!("X-Header-{i}"), "v".repeat(i * 10)))
            .collect();
        for response in [
            Response::ok(),
            Response::not_found(),
            Response::internal_server_error("boom"),
            Response {
                status_code: 70_000,
                status: "s".repeat(300),
                header: many,
                body: vec![1; 70_000],
            },
            Response {
                status_code: u32::MAX,
                ..Response::default()
            },
        ] {
            let bytes = waxosuit_codec::serialize(&response).unwrap();
            assert_eq!(view_as_response(&bytes), Some(response));
        }
    }

    #[test]
    fn unusual_layouts_are_left_to_the_codec() {
        let ok = waxosuit_codec::serialize(&Response::ok()).unwrap();
        let mut trailing = ok.clone();
        trailing.push(0xc0);
        let mut truncated = ok.clone();
        truncated.pop();
        // The same value as an array: valid for the codec, not for us.
        let as_array = [0x94, 0xcc, 200, 0xa2, b'O', b'K', 0x80, 0xc4, 0x00];
        // Missing `status`, unknown key, repeated key, signed status.
        let missing = [
            0x81, 0xaa, b's', b't', b'a', b't', b'u', b's', b'C', b'o', b'd', b'e', 0x01,
        ];
        let mut unknown = vec![0x83];
        unknown.extend_from_slice(&ok[1..]);
        unknown.extend_from_slice(&[0xa1, b'z', 0xc0]);
        let signed = [
            0x82, 0xaa, b's', b't', b'a', b't', b'u', b's', b'C', b'o', b'd', b'e', 0xd0, 0x05,
            0xa6, b's', b't', b'a', b't', b'u', b's', 0xa0,
        ];
        let duplicate_header = [
            0x83, 0xaa, b's', b't', b'a', b't', b'u', b's', b'C', b'o', b'd', b'e', 0x01, 0xa6,
            b's', b't', b'a', b't', b'u', b's', 0xa0, 0xa6, b'h', b'e', b'a', b'd', b'e', b'r',
            0x82, 0xa1, b'a', 0xa1, b'1', 0xa1, b'a', 0xa1, b'2',
        ];
        for bytes in [
            &trailing[..],
            &truncated[..],
            &as_array[..],
            &missing[..],
            &unknown[..],
            &signed[..],
            &duplicate_header[..],
            &[][..],
            &b"\xdf\xff\xff\xff\xff"[..],
        ] {
            assert_eq!(decode_reply(bytes), None, "{bytes:x?}");
        }
        assert!(waxosuit_codec::deserialize::<Response>(&as_array).is_ok());
    }
}
