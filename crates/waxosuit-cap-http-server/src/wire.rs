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
//!
//! Both paths are bounded by the binding's [`ReplyLimits`] before anything
//! is allocated per header: the in-place reader refuses as soon as the
//! header map's declared length or the header bytes read pass the limits,
//! and [`check_unusual`] walks a reply bound for the codec, without
//! allocating per item, to refuse the same before the codec builds a map
//! of it. An actor's reply costs at most the limits' worth of work, never
//! work proportional to the square of anything it chose.

use std::ops::Range;

use hyper::header::HeaderMap;

use crate::config::ReplyLimits;

/// Key names of [`waxosuit_codec::http::Request`], in declaration order.
const REQUEST_KEYS: [&str; 5] = ["method", "path", "queryString", "header", "body"];

/// The request as MessagePack, or `None` if a part is longer than
/// MessagePack can describe (4 GiB). The server streams bodies instead;
/// this is the reference the tests hold that to.
#[cfg(test)]
pub(crate) fn encode_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = encode_request_head(method, path, query, headers, body.len() + 5)?;
    put_bin(&mut buf, body)?;
    Some(buf)
}

/// The request up to and including the `body` key, in a buffer with room
/// for `body_room` more bytes: the body's `bin` follows, written with
/// [`put_bin`] or streamed in with [`begin_bin`] and [`finish_bin`].
pub(crate) fn encode_request_head(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body_room: usize,
) -> Option<Vec<u8>> {
    // Upper bound: every string or bin carries at most 5 bytes of prefix, a
    // joined header adds ", " per extra value.
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 2 + 10)
        .sum();
    let capacity = 64 + method.len() + path.len() + query.len() + header_bytes;
    let mut buf = Vec::with_capacity(capacity.checked_add(body_room)?);

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
    Some(buf)
}

/// Where a streamed `bin` starts in the buffer, and whether its length is
/// still to be written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BinStart {
    /// Offset of the `bin` marker.
    at: usize,
    /// `true` when a 5-byte placeholder was written because the length was
    /// not known in advance.
    placeholder: bool,
}

/// Starts a `bin` whose bytes are then appended to `buf` as they arrive:
/// with its final header when `len` is known, else with a placeholder that
/// [`finish_bin`] replaces. `None` above 4 GiB.
pub(crate) fn begin_bin(buf: &mut Vec<u8>, len: Option<usize>) -> Option<BinStart> {
    let at = buf.len();
    match len {
        Some(len) => {
            put_bin_header(buf, len)?;
            Some(BinStart {
                at,
                placeholder: false,
            })
        }
        None => {
            buf.extend_from_slice(&[0xc6, 0, 0, 0, 0]);
            Some(BinStart {
                at,
                placeholder: true,
            })
        }
    }
}

/// Completes a `bin` started with [`begin_bin`] once all its bytes are in
/// `buf`: writes the smallest header for the length received, as the codec
/// would, moving the bytes down when that header is shorter than the
/// placeholder (within the buffer: no second copy of the body exists at any
/// time). `None` if the length does not fit MessagePack or `start` lies past
/// the end of `buf`.
pub(crate) fn finish_bin(buf: &mut Vec<u8>, start: BinStart) -> Option<()> {
    if !start.placeholder {
        return Some(());
    }
    let data_at = start.at.checked_add(5)?;
    let len = buf.len().checked_sub(data_at)?;
    let mut header = Vec::with_capacity(5);
    put_bin_header(&mut header, len)?;
    let new_data_at = start.at + header.len();
    buf.copy_within(data_at.., new_data_at);
    buf.truncate(new_data_at + len);
    buf.get_mut(start.at..new_data_at)?.copy_from_slice(&header);
    Some(())
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

pub(crate) fn put_bin(buf: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    put_bin_header(buf, bytes.len())?;
    buf.extend_from_slice(bytes);
    Some(())
}

/// The smallest `bin` header for `len` bytes, as rmp writes it.
fn put_bin_header(buf: &mut Vec<u8>, len: usize) -> Option<()> {
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
    Some(())
}

/// Why an actor's reply was refused before being turned into HTTP: it
/// exceeds a limit of the binding. The message names the binding value to
/// raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReplyRefusal {
    /// More headers than `MAX_REPLY_HEADERS`.
    #[error(
        "the reply has {count} headers, more than MAX_REPLY_HEADERS = {limit}; \
         fix the actor, or raise MAX_REPLY_HEADERS in the binding's values"
    )]
    TooManyHeaders {
        /// Headers the reply declares (or counted so far).
        count: u64,
        /// The binding's limit.
        limit: usize,
    },
    /// More header bytes than `MAX_REPLY_HEADER_BYTES`.
    #[error(
        "the reply's header names and values exceed MAX_REPLY_HEADER_BYTES = {limit} bytes; \
         fix the actor, or raise MAX_REPLY_HEADER_BYTES in the binding's values"
    )]
    HeaderBytes {
        /// The binding's limit.
        limit: usize,
    },
}

impl ReplyRefusal {
    /// The short reason sent to the client in the `500`'s body.
    pub(crate) fn client_reason(self) -> &'static [u8] {
        match self {
            ReplyRefusal::TooManyHeaders { .. } => b"Actor response has too many headers",
            ReplyRefusal::HeaderBytes { .. } => b"Actor response headers are too large",
        }
    }
}

/// Adds `more` to the header bytes counted so far, or refuses past the
/// limit.
fn count_header_bytes(
    total: &mut usize,
    more: usize,
    limits: &ReplyLimits,
) -> Result<(), ReplyRefusal> {
    *total = total.saturating_add(more);
    if *total > limits.max_header_bytes {
        return Err(ReplyRefusal::HeaderBytes {
            limit: limits.max_header_bytes,
        });
    }
    Ok(())
}

fn check_header_count(count: usize, limits: &ReplyLimits) -> Result<(), ReplyRefusal> {
    if count > limits.max_headers {
        return Err(ReplyRefusal::TooManyHeaders {
            count: count as u64,
            limit: limits.max_headers,
        });
    }
    Ok(())
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

/// Reads `reply` if it has the codec's layout, `Ok(None)` otherwise (the
/// caller then asks the codec, after [`check_unusual`], which may still
/// accept it or explains why not). Refuses a reply past `limits` as soon as
/// that shows, whatever else is wrong with it.
pub(crate) fn decode_reply<'a>(
    reply: &'a [u8],
    limits: &ReplyLimits,
) -> Result<Option<ReplyView<'a>>, ReplyRefusal> {
    let mut r = Reader { buf: reply, pos: 0 };
    let Some(fields) = r.map_len() else {
        return Ok(None);
    };
    let mut status_code = None;
    let mut status = None;
    let mut headers = None;
    let mut body = None;
    for _ in 0..fields {
        // A repeated field is an error for serde; leave the verdict to it.
        let Some(field) = r.str() else {
            return Ok(None);
        };
        let read = match field {
            "statusCode" if status_code.is_none() => r.uint().map(|v| status_code = Some(v)),
            "status" if status.is_none() => r.str().map(|v| status = Some(v)),
            "header" if headers.is_none() => match read_headers(&mut r, limits)? {
                Some(entries) => {
                    headers = Some(entries);
                    Some(())
                }
                None => None,
            },
            "body" if body.is_none() => r.bin().map(|v| body = Some(v)),
            _ => None,
        };
        if read.is_none() {
            return Ok(None);
        }
    }
    if r.pos != reply.len() {
        return Ok(None);
    }
    let (Some(status_code), Some(status)) = (status_code, status) else {
        return Ok(None);
    };
    Ok(Some(ReplyView {
        status_code,
        status,
        headers: headers.unwrap_or_default(),
        body: body.unwrap_or(0..0),
    }))
}

/// The header map, checked against `limits` before any entry is stored;
/// `Ok(None)` for a layout left to the codec, repeated names included.
fn read_headers<'a>(
    r: &mut Reader<'a>,
    limits: &ReplyLimits,
) -> Result<Option<Vec<(&'a str, &'a str)>>, ReplyRefusal> {
    let Some(count) = r.map_len() else {
        return Ok(None);
    };
    // Checked on the declared length, so that a reply announcing 160,000
    // headers costs nothing more than reading that number.
    check_header_count(count, limits)?;
    let mut entries: Vec<(&str, &str)> = Vec::with_capacity(count);
    let mut bytes = 0;
    for _ in 0..count {
        let (Some(name), Some(value)) = (r.str(), r.str()) else {
            return Ok(None);
        };
        count_header_bytes(&mut bytes, name.len() + value.len(), limits)?;
        entries.push((name, value));
    }
    // The codec's HashMap keeps the last of equal names; rare enough to let
    // it handle that.
    if has_repeated_names(&entries) {
        return Ok(None);
    }
    Ok(Some(entries))
}

/// Whether two entries have the same name (byte for byte, as the codec's
/// `HashMap` compares them). Pairwise for the few headers of a usual reply;
/// by sorting above that, so that the cost stays `n log n` even at the
/// highest `MAX_REPLY_HEADERS`.
fn has_repeated_names(entries: &[(&str, &str)]) -> bool {
    const PAIRWISE_UP_TO: usize = 16;
    if entries.len() <= PAIRWISE_UP_TO {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (name, _))| entries[..i].iter().any(|(other, _)| other == name));
    }
    let mut names: Vec<&str> = entries.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
}

/// Deepest nesting the codec accepts (`waxosuit_codec`'s limit, 64
/// containers); anything deeper is refused by it anyway.
const CODEC_MAX_DEPTH: usize = 64;

/// Checks a reply that is about to go to the codec against `limits`,
/// without allocating per item. Whatever its layout (a map or an array at
/// the top, unknown fields, other integer widths), a map one level down is
/// where the codec could find headers: the entries of all such maps count
/// against `MAX_REPLY_HEADERS`, and the `str`/`bin` keys and values in them
/// against `MAX_REPLY_HEADER_BYTES`. Everything else the codec reads
/// without keeping it, so it costs time linear in the reply, whose size the
/// dispatcher bounds (the actor's payload limit).
///
/// `Ok` for anything malformed or nested deeper than the codec accepts:
/// the codec refuses those itself, before building a header map of them.
pub(crate) fn check_unusual(reply: &[u8], limits: &ReplyLimits) -> Result<(), ReplyRefusal> {
    /// An open container: items still to read, and whether it is a map
    /// one level down, whose direct `str`/`bin` items are header bytes.
    struct Open {
        left: u64,
        header_like: bool,
    }
    let mut r = Reader { buf: reply, pos: 0 };
    let mut open: Vec<Open> = Vec::with_capacity(4);
    let mut headers: u64 = 0;
    let mut bytes = 0;
    let mut started = false;
    loop {
        while open.last().is_some_and(|o| o.left == 0) {
            open.pop();
        }
        if open.is_empty() && started {
            return Ok(());
        }
        started = true;
        let depth = open.len();
        let header_like = open.last().is_some_and(|o| o.header_like);
        if let Some(parent) = open.last_mut() {
            parent.left -= 1;
        }
        let Some(item) = r.item() else {
            return Ok(());
        };
        let (left, header_map) = match item {
            Item::Scalar => continue,
            Item::Bytes(len) => {
                if header_like {
                    count_header_bytes(&mut bytes, len, limits)?;
                }
                continue;
            }
            Item::Array(len) => (len, false),
            Item::Map(len) => (len * 2, depth == 1),
        };
        if depth >= CODEC_MAX_DEPTH {
            return Ok(());
        }
        if header_map {
            headers += left / 2;
            if headers > limits.max_headers as u64 {
                return Err(ReplyRefusal::TooManyHeaders {
                    count: headers,
                    limit: limits.max_headers,
                });
            }
        }
        open.push(Open {
            left,
            header_like: header_map,
        });
    }
}

/// One MessagePack item as [`check_unusual`] sees it.
enum Item {
    /// Numbers, nil, booleans, extensions: skipped.
    Scalar,
    /// A `str` or `bin` of this many bytes, skipped.
    Bytes(usize),
    /// An array of this many items, which follow.
    Array(u64),
    /// A map of this many entries, which follow.
    Map(u64),
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

    /// The next item's kind, with its payload skipped for scalars and
    /// bytes; `None` if the buffer ends first or the marker is `0xc1`.
    fn item(&mut self) -> Option<Item> {
        let marker = self.byte()?;
        let item = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Item::Scalar,
            0x80..=0x8f => Item::Map(u64::from(marker & 0x0f)),
            0x90..=0x9f => Item::Array(u64::from(marker & 0x0f)),
            0xa0..=0xbf => self.skip_bytes(usize::from(marker & 0x1f))?,
            0xc4 | 0xd9 => {
                let len = self.len_of(1)?;
                self.skip_bytes(len)?
            }
            0xc5 | 0xda => {
                let len = self.len_of(2)?;
                self.skip_bytes(len)?
            }
            0xc6 | 0xdb => {
                let len = self.len_of(4)?;
                self.skip_bytes(len)?
            }
            // ext 8/16/32: length, type byte, data.
            0xc7..=0xc9 => {
                let len = self.len_of(1 << (marker - 0xc7))?;
                self.take(len.checked_add(1)?)?;
                Item::Scalar
            }
            0xca => self.skip_scalar(4)?,
            0xcb => self.skip_scalar(8)?,
            0xcc..=0xcf => self.skip_scalar(1 << (marker - 0xcc))?,
            0xd0..=0xd3 => self.skip_scalar(1 << (marker - 0xd0))?,
            // fixext 1/2/4/8/16: type byte and data.
            0xd4..=0xd8 => self.skip_scalar(1 + (1 << (marker - 0xd4)))?,
            0xdc => Item::Array(self.be(2)?),
            0xdd => Item::Array(self.be(4)?),
            0xde => Item::Map(self.be(2)?),
            0xdf => Item::Map(self.be(4)?),
            // 0xc1 is never used.
            _ => return None,
        };
        Some(item)
    }

    fn skip_bytes(&mut self, len: usize) -> Option<Item> {
        self.take(len)?;
        Some(Item::Bytes(len))
    }

    fn skip_scalar(&mut self, len: usize) -> Option<Item> {
        self.take(len)?;
        Some(Item::Scalar)
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

    const LIMITS: ReplyLimits = ReplyLimits {
        max_headers: 128,
        max_header_bytes: 64 * 1024,
    };

    fn view_as_response(reply: &[u8]) -> Option<Response> {
        let view = decode_reply(reply, &LIMITS).unwrap()?;
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
            assert_eq!(decode_reply(bytes, &LIMITS), Ok(None), "{bytes:x?}");
            assert_eq!(check_unusual(bytes, &LIMITS), Ok(()), "{bytes:x?}");
        }
        assert!(waxosuit_codec::deserialize::<Response>(&as_array).is_ok());
    }

    /// A `Response` map whose `header` holds `count` entries `x-<i>: v`
    /// (only `declared` of them announced when given).
    fn reply_with_headers(count: usize, declared: Option<u32>) -> Vec<u8> {
        let mut buf = Vec::new();
        put_map_len(&mut buf, 4).unwrap();
        put_str(&mut buf, b"statusCode").unwrap();
        buf.extend_from_slice(&[0xcc, 200]);
        put_str(&mut buf, b"status").unwrap();
        put_str(&mut buf, b"OK").unwrap();
        put_str(&mut buf, b"header").unwrap();
        match declared {
            Some(n) => {
                buf.push(0xdf);
                buf.extend_from_slice(&n.to_be_bytes());
            }
            None => put_map_len(&mut buf, count).unwrap(),
        }
        for i in 0..count {
            put_str(&mut buf, format!("x-{i}").as_bytes()).unwrap();
            put_str(&mut buf, b"v").unwrap();
        }
        put_str(&mut buf, b"body").unwrap();
        put_bin(&mut buf, b"").unwrap();
        buf
    }

    #[test]
    fn reply_header_count_is_capped_on_both_paths() {
        let limits = ReplyLimits {
            max_headers: 5,
            max_header_bytes: 1024,
        };
        let at_limit = reply_with_headers(5, None);
        let view = decode_reply(&at_limit, &limits).unwrap().unwrap();
        assert_eq!(view.headers.len(), 5);
        assert_eq!(check_unusual(&at_limit, &limits), Ok(()));

        let over = reply_with_headers(6, None);
        let refused = ReplyRefusal::TooManyHeaders { count: 6, limit: 5 };
        assert_eq!(decode_reply(&over, &limits), Err(refused));
        assert_eq!(check_unusual(&over, &limits), Err(refused));
    }

    #[test]
    fn a_huge_declared_header_count_is_refused_before_reading_it() {
        // Announces 160,000 headers but carries two: refused on the count
        // alone, by both paths, without reserving room for them.
        let reply = reply_with_headers(2, Some(160_000));
        let refused = ReplyRefusal::TooManyHeaders {
            count: 160_000,
            limit: 128,
        };
        assert_eq!(decode_reply(&reply, &LIMITS), Err(refused));
        assert_eq!(check_unusual(&reply, &LIMITS), Err(refused));
    }

    #[test]
    fn reply_header_bytes_are_capped_on_both_paths() {
        // Five headers `x-N: v`: 3 + 1 bytes each, 20 in total.
        let reply = reply_with_headers(5, None);
        let fits = ReplyLimits {
            max_headers: 128,
            max_header_bytes: 20,
        };
        assert!(decode_reply(&reply, &fits).unwrap().is_some());
        assert_eq!(check_unusual(&reply, &fits), Ok(()));
        let tight = ReplyLimits {
            max_headers: 128,
            max_header_bytes: 19,
        };
        let refused = ReplyRefusal::HeaderBytes { limit: 19 };
        assert_eq!(decode_reply(&reply, &tight), Err(refused));
        assert_eq!(check_unusual(&reply, &tight), Err(refused));
    }

    #[test]
    fn unusual_layouts_are_bounded_before_the_codec_sees_them() {
        let limits = ReplyLimits {
            max_headers: 2,
            max_header_bytes: 8,
        };
        // `Response` as an array: [status, reason, headers, body].
        let mut as_array = vec![0x94, 0xcc, 200, 0xa2, b'O', b'K', 0x83];
        for name in [b"a", b"b", b"c"] {
            as_array.extend_from_slice(&[0xa1, name[0], 0xa1, b'1']);
        }
        as_array.extend_from_slice(&[0xc4, 0x00]);
        assert_eq!(decode_reply(&as_array, &limits), Ok(None));
        assert_eq!(
            check_unusual(&as_array, &limits),
            Err(ReplyRefusal::TooManyHeaders { count: 3, limit: 2 })
        );
        // Names and values as `bin`, which the codec also accepts, count
        // as header bytes too.
        let bin_strings = [
            0x92, 0xcc, 200, 0x81, 0xc4, 0x05, b'x', b'-', b'l', b'o', b'n', 0xc4, 0x04, b'g',
            b'g', b'g', b'g',
        ];
        assert_eq!(
            check_unusual(&bin_strings, &limits),
            Err(ReplyRefusal::HeaderBytes { limit: 8 })
        );
        // Maps deeper down (in fields the codec ignores) are not headers;
        // nesting past the codec's depth is left for it to refuse.
        let mut deep = vec![0x91; 200];
        deep.push(0xc0);
        assert_eq!(check_unusual(&deep, &limits), Ok(()));
        let nested = [0x91, 0x91, 0x83, 0x01, 0x01, 0x02, 0x02, 0x03, 0x03];
        assert_eq!(check_unusual(&nested, &limits), Ok(()));
        assert!(waxosuit_codec::deserialize::<Response>(&deep).is_err());
    }

    #[test]
    fn repeated_names_are_found_with_few_and_many_headers() {
        let few = [("a", "1"), ("b", "2"), ("a", "3")];
        assert!(has_repeated_names(&few));
        assert!(!has_repeated_names(&few[..2]));
        // Case matters: the codec's map keeps both.
        assert!(!has_repeated_names(&[("A", "1"), ("a", "2")]));

        let names: Vec<String> = (0..MAX_NAMES).map(|i| format!("x-{i}")).collect();
        let mut many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert!(!has_repeated_names(&many));
        many.push(("x-17", "again"));
        assert!(has_repeated_names(&many));
    }
    const MAX_NAMES: usize = crate::config::MAX_REPLY_HEADERS_LIMIT;

    #[test]
    fn a_reply_with_the_most_headers_allowed_decodes() {
        let limits = ReplyLimits {
            max_headers: MAX_NAMES,
            max_header_bytes: usize::MAX,
        };
        let reply = reply_with_headers(MAX_NAMES, None);
        let view = decode_reply(&reply, &limits).unwrap().unwrap();
        assert_eq!(view.headers.len(), MAX_NAMES);
        assert_eq!(view.headers[9_999], ("x-9999", "v"));
    }

    #[test]
    fn a_streamed_body_encodes_like_the_codec() {
        let headers = HeaderMap::new();
        for len in [0, 1, 255, 256, 65_535, 65_536, 70_000] {
            let body = vec![0x5au8; len];
            let expected = encode_request("POST", "/", "", &headers, &body).unwrap();
            for declared in [Some(len), None] {
                let mut buf = encode_request_head("POST", "/", "", &headers, 0).unwrap();
                let start = begin_bin(&mut buf, declared).unwrap();
                // In uneven chunks, as they come off the network.
                for chunk in body.chunks(1000) {
                    buf.extend_from_slice(chunk);
                }
                finish_bin(&mut buf, start).unwrap();
                assert_eq!(buf, expected, "length {len}, declared {declared:?}");
            }
        }
    }
}
