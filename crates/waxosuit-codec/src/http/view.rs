//! Reading a [`Response`] in place, within limits on its headers: the
//! what and why are on [`ResponseView`], whose docs users see.

use std::borrow::Cow;
use std::ops::Range;

use super::Response;
use crate::msgpack::{Item, Reader};
use crate::{CodecError, MAX_NESTING_DEPTH, deserialize};

/// Bounds on the headers of a [`Response`] read by [`ResponseView::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Most headers a reply may have.
    pub max_headers: usize,
    /// Most bytes its header names and values may add up to.
    pub max_header_bytes: usize,
}

impl ResponseLimits {
    /// No limit: what [`deserialize`] alone accepts. The reply's own size
    /// is then the only bound, so use it only for trusted input.
    pub const UNLIMITED: ResponseLimits = ResponseLimits {
        max_headers: usize::MAX,
        max_header_bytes: usize::MAX,
    };
}

/// Where a [`ResponseView`]'s body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// These bytes of the reply, which can be sliced out without a copy:
    /// the reply had the usual layout.
    InReply(Range<usize>),
    /// Decoded apart: the reply had another layout.
    Owned(Vec<u8>),
}

/// A [`Response`] read from a reply, borrowing from it where it can.
///
/// A server turning an actor's reply into HTTP needs the status, the
/// headers as string slices and the body as a range of the reply: building
/// a [`Response`] first costs a `HashMap`, a `String` per header and a copy
/// of the body, on every request. [`decode`](Self::decode) reads the layout
/// that [`serialize`](crate::serialize) and waSCC actors write (a map keyed
/// by field name, strings as `str`, the body as `bin`) in place, and hands
/// anything else to [`deserialize`], which stays the one authority on what
/// a `Response` is: `decode` accepts exactly the replies `deserialize`
/// accepts, with the same values, unless a limit refuses them. (The
/// crate's property tests, `tests/http_view.rs`, and the `http_reply` fuzz
/// target hold it to that.)
///
/// The reply comes from an actor, so it is hostile until read. The
/// [`ResponseLimits`] bound what it can make the reader spend before
/// anything is allocated per header: the in-place reader refuses as soon as
/// the header map's declared length or the header bytes read pass them, and
/// a reply bound for `deserialize` is first walked without allocating,
/// refusing the same, so that `deserialize` never builds an oversized map.
/// That walk cannot know which field is `header` in an unusual layout (an
/// array, unknown keys), so for such replies, and only those, it counts
/// every map one level down against the limits: a large map in an unknown
/// field is then refused although `deserialize` would ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseView<'a> {
    reply: &'a [u8],
    status_code: u32,
    status: Cow<'a, str>,
    /// Names are distinct.
    header: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    body: ResponseBody,
}

fn too_many_headers(count: u64, limit: usize) -> CodecError {
    CodecError::TooManyHeaders {
        type_name: core::any::type_name::<Response>(),
        count,
        limit,
    }
}

fn headers_too_large(limit: usize) -> CodecError {
    CodecError::HeadersTooLarge {
        type_name: core::any::type_name::<Response>(),
        limit,
    }
}

impl<'a> ResponseView<'a> {
    /// Reads `reply` as a [`Response`] within `limits`; see
    /// [`ResponseView`].
    ///
    /// # Errors
    ///
    /// [`CodecError::TooManyHeaders`] or [`CodecError::HeadersTooLarge`]
    /// when the reply passes `limits` (checked first, whatever else is wrong
    /// with it); otherwise what [`deserialize`] reports for a reply that is
    /// not a `Response`.
    pub fn decode(reply: &'a [u8], limits: &ResponseLimits) -> Result<Self, CodecError> {
        if let Some(view) = read_usual(reply, limits)? {
            return Ok(view);
        }
        check_bounds(reply, limits)?;
        let response: Response = deserialize(reply)?;
        Ok(ResponseView {
            reply,
            status_code: response.status_code,
            status: Cow::Owned(response.status),
            header: response
                .header
                .into_iter()
                .map(|(name, value)| (Cow::Owned(name), Cow::Owned(value)))
                .collect(),
            body: ResponseBody::Owned(response.body),
        })
    }

    /// The numeric status.
    #[must_use]
    pub fn status_code(&self) -> u32 {
        self.status_code
    }

    /// The reason phrase.
    #[must_use]
    pub fn status(&self) -> &str {
        &self.status
    }

    /// The headers as (name, value), names distinct, in no particular order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.header
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_ref()))
    }

    /// The body.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        match &self.body {
            ResponseBody::InReply(range) => self.reply.get(range.clone()).unwrap_or_default(),
            ResponseBody::Owned(body) => body,
        }
    }

    /// Where the body is, for a caller that owns the reply and wants the
    /// body without a copy.
    #[must_use]
    pub fn into_body(self) -> ResponseBody {
        self.body
    }

    /// The owned [`Response`], equal to what [`deserialize`] gives.
    #[must_use]
    pub fn into_response(self) -> Response {
        let body = self.body().to_vec();
        Response {
            status_code: self.status_code,
            status: self.status.into_owned(),
            header: self
                .header
                .into_iter()
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
            body,
        }
    }
}

/// Adds `more` to the header bytes counted so far, or refuses past the
/// limit.
fn count_header_bytes(
    total: &mut usize,
    more: usize,
    limits: &ResponseLimits,
) -> Result<(), CodecError> {
    *total = total.saturating_add(more);
    if *total > limits.max_header_bytes {
        return Err(headers_too_large(limits.max_header_bytes));
    }
    Ok(())
}

/// Reads `reply` in place if it has the usual layout, `Ok(None)` for any
/// other (left to [`deserialize`]): structs as arrays, other integer forms,
/// unknown or repeated keys, repeated header names, trailing bytes.
fn read_usual<'a>(
    reply: &'a [u8],
    limits: &ResponseLimits,
) -> Result<Option<ResponseView<'a>>, CodecError> {
    let mut r = Reader::new(reply);
    let Some(fields) = r.map_len() else {
        return Ok(None);
    };
    let mut status_code = None;
    let mut status = None;
    let mut header = None;
    let mut body = None;
    for _ in 0..fields {
        // A repeated field is an error for serde; leave the verdict to it.
        let Some(field) = r.str() else {
            return Ok(None);
        };
        let read = match field {
            "statusCode" if status_code.is_none() => r.uint().map(|v| status_code = Some(v)),
            "status" if status.is_none() => r.str().map(|v| status = Some(v)),
            "header" if header.is_none() => {
                read_headers(&mut r, limits)?.map(|entries| header = Some(entries))
            }
            "body" if body.is_none() => r.bin().map(|v| body = Some(v)),
            _ => None,
        };
        if read.is_none() {
            return Ok(None);
        }
    }
    if !r.at_end() {
        return Ok(None);
    }
    let (Some(status_code), Some(status)) = (status_code, status) else {
        return Ok(None);
    };
    Ok(Some(ResponseView {
        reply,
        status_code,
        status: Cow::Borrowed(status),
        header: header.unwrap_or_default(),
        body: ResponseBody::InReply(body.unwrap_or(0..0)),
    }))
}

/// A borrowed header pair.
type Header<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The header map, checked against `limits` before any entry is stored;
/// `Ok(None)` for a layout left to serde, repeated names included.
fn read_headers<'a>(
    r: &mut Reader<'a>,
    limits: &ResponseLimits,
) -> Result<Option<Vec<Header<'a>>>, CodecError> {
    let Some(count) = r.map_len() else {
        return Ok(None);
    };
    // Checked on the declared length, so that a reply announcing 160,000
    // headers costs nothing more than reading that number.
    if count > limits.max_headers {
        return Err(too_many_headers(
            u64::try_from(count).unwrap_or(u64::MAX),
            limits.max_headers,
        ));
    }
    // The count is the input's word; each entry takes at least two bytes
    // (two empty strings), so the bytes left bound what can really follow.
    let mut entries: Vec<Header<'a>> = Vec::with_capacity(count.min(r.remaining() / 2));
    let mut bytes = 0;
    for _ in 0..count {
        let (Some(name), Some(value)) = (r.str(), r.str()) else {
            return Ok(None);
        };
        count_header_bytes(&mut bytes, name.len() + value.len(), limits)?;
        entries.push((Cow::Borrowed(name), Cow::Borrowed(value)));
    }
    // A `HashMap` keeps the last of equal names; rare enough to leave to it.
    if has_repeated_names(&entries) {
        return Ok(None);
    }
    Ok(Some(entries))
}

/// Whether two entries have the same name (byte for byte, as a `HashMap`
/// compares them). Pairwise for the few headers of a usual reply; by
/// sorting above that, so that the cost stays `n log n` however many
/// headers the limits allow.
fn has_repeated_names(entries: &[Header<'_>]) -> bool {
    const PAIRWISE_UP_TO: usize = 16;
    if entries.len() <= PAIRWISE_UP_TO {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (name, _))| entries[..i].iter().any(|(other, _)| other == name));
    }
    let mut names: Vec<&str> = entries.iter().map(|(name, _)| name.as_ref()).collect();
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
}

/// Checks a reply that is about to go to [`deserialize`] against `limits`,
/// without allocating per item. Whatever its layout (a map or an array at
/// the top, unknown fields, other integer widths), a map one level down is
/// where serde could find headers: the entries of all such maps count
/// against `max_headers`, and the `str`/`bin` keys and values in them
/// against `max_header_bytes`. Everything else serde reads without keeping
/// it, so it costs time linear in the reply.
///
/// `Ok` for anything malformed or nested deeper than [`deserialize`]
/// accepts: it refuses those itself, before building a header map of them.
fn check_bounds(reply: &[u8], limits: &ResponseLimits) -> Result<(), CodecError> {
    /// An open container: items still to read, and whether it is a map
    /// one level down, whose direct `str`/`bin` items are header bytes.
    struct Open {
        left: u64,
        header_like: bool,
    }
    let mut r = Reader::new(reply);
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
        if depth >= MAX_NESTING_DEPTH {
            return Ok(());
        }
        if header_map {
            headers += left / 2;
            if headers > limits.max_headers as u64 {
                return Err(too_many_headers(headers, limits.max_headers));
            }
        }
        open.push(Open {
            left,
            header_like: header_map,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::msgpack::{put_bin_header, put_map_len, put_str};
    use crate::serialize;

    const LIMITS: ResponseLimits = ResponseLimits {
        max_headers: 128,
        max_header_bytes: 64 * 1024,
    };

    fn in_place(reply: &[u8], limits: &ResponseLimits) -> Option<Response> {
        read_usual(reply, limits)
            .unwrap()
            .map(ResponseView::into_response)
    }

    #[test]
    fn serialized_replies_are_read_in_place_to_the_same_values() {
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
            let bytes = serialize(&response).unwrap();
            assert_eq!(in_place(&bytes, &LIMITS), Some(response.clone()));
            let view = ResponseView::decode(&bytes, &LIMITS).unwrap();
            assert_eq!(view.body(), &response.body[..]);
            assert!(matches!(view.into_body(), ResponseBody::InReply(_)));
        }
    }

    #[test]
    fn unusual_layouts_go_to_serde() {
        let ok = serialize(&Response::ok()).unwrap();
        let mut trailing = ok.clone();
        trailing.push(0xc0);
        let mut truncated = ok.clone();
        truncated.pop();
        // The same value as an array: valid for serde, not read in place.
        let as_array = [0x94, 0xcc, 201, 0xa2, b'O', b'K', 0x80, 0xc4, 0x01, b'!'];
        // Missing `status`, unknown key, signed status.
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
            assert_eq!(in_place(bytes, &LIMITS), None, "{bytes:x?}");
            assert_eq!(check_bounds(bytes, &LIMITS), Ok(()), "{bytes:x?}");
            let serde = deserialize::<Response>(bytes);
            let view = ResponseView::decode(bytes, &LIMITS);
            assert_eq!(view.map(ResponseView::into_response), serde, "{bytes:x?}");
        }
        let view = ResponseView::decode(&as_array, &LIMITS).unwrap();
        assert_eq!(
            (view.status_code(), view.status(), view.body()),
            (201, "OK", &b"!"[..])
        );
        assert_eq!(view.into_body(), ResponseBody::Owned(b"!".to_vec()));
        // The last of repeated names, as the `HashMap` keeps it.
        let view = ResponseView::decode(&duplicate_header, &LIMITS).unwrap();
        assert_eq!(view.headers().collect::<Vec<_>>(), [("a", "2")]);
        let err = ResponseView::decode(&trailing, &LIMITS).unwrap_err();
        assert!(
            matches!(err, CodecError::TrailingBytes { trailing: 1, .. }),
            "{err}"
        );
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
        put_bin_header(&mut buf, 0).unwrap();
        buf
    }

    #[test]
    fn the_header_count_is_capped_on_both_paths() {
        let limits = ResponseLimits {
            max_headers: 5,
            max_header_bytes: 1024,
        };
        let at_limit = reply_with_headers(5, None);
        let view = ResponseView::decode(&at_limit, &limits).unwrap();
        assert_eq!(view.headers().len(), 5);
        assert_eq!(check_bounds(&at_limit, &limits), Ok(()));

        let over = reply_with_headers(6, None);
        let refused = too_many_headers(6, 5);
        assert_eq!(ResponseView::decode(&over, &limits), Err(refused.clone()));
        assert_eq!(check_bounds(&over, &limits), Err(refused.clone()));
        assert_eq!(
            refused.to_string(),
            "refused waxosuit_codec::http::Response: it has 6 headers, more than the limit \
             of 5; fix the sender, or raise the limit"
        );
    }

    #[test]
    fn a_huge_declared_header_count_is_refused_before_reading_it() {
        // Announces 160,000 headers but carries two: refused on the count
        // alone, by both paths, without reserving room for them.
        let reply = reply_with_headers(2, Some(160_000));
        let refused = too_many_headers(160_000, 128);
        assert_eq!(ResponseView::decode(&reply, &LIMITS), Err(refused.clone()));
        assert_eq!(check_bounds(&reply, &LIMITS), Err(refused));
    }

    #[test]
    fn header_bytes_are_capped_on_both_paths() {
        // Five headers `x-N: v`: 3 + 1 bytes each, 20 in total.
        let reply = reply_with_headers(5, None);
        let fits = ResponseLimits {
            max_headers: 128,
            max_header_bytes: 20,
        };
        assert!(ResponseView::decode(&reply, &fits).is_ok());
        assert_eq!(check_bounds(&reply, &fits), Ok(()));
        let tight = ResponseLimits {
            max_headers: 128,
            max_header_bytes: 19,
        };
        let refused = headers_too_large(19);
        assert_eq!(ResponseView::decode(&reply, &tight), Err(refused.clone()));
        assert_eq!(check_bounds(&reply, &tight), Err(refused.clone()));
        assert_eq!(
            refused.to_string(),
            "refused waxosuit_codec::http::Response: its header names and values add up to \
             more than the limit of 19 bytes; fix the sender, or raise the limit"
        );
    }

    #[test]
    fn unusual_layouts_are_bounded_before_serde_sees_them() {
        let limits = ResponseLimits {
            max_headers: 2,
            max_header_bytes: 8,
        };
        // `Response` as an array: [status, reason, headers, body].
        let mut as_array = vec![0x94, 0xcc, 200, 0xa2, b'O', b'K', 0x83];
        for name in [b"a", b"b", b"c"] {
            as_array.extend_from_slice(&[0xa1, name[0], 0xa1, b'1']);
        }
        as_array.extend_from_slice(&[0xc4, 0x00]);
        assert_eq!(in_place(&as_array, &limits), None);
        assert_eq!(
            ResponseView::decode(&as_array, &limits),
            Err(too_many_headers(3, 2))
        );
        // Names and values as `bin`, which serde also accepts, count as
        // header bytes too.
        let bin_strings = [
            0x92, 0xcc, 200, 0x81, 0xc4, 0x05, b'x', b'-', b'l', b'o', b'n', 0xc4, 0x04, b'g',
            b'g', b'g', b'g',
        ];
        assert_eq!(
            ResponseView::decode(&bin_strings, &limits),
            Err(headers_too_large(8))
        );
        // Maps deeper down (in fields serde ignores) are not headers;
        // nesting past the codec's depth is left for serde to refuse.
        let mut deep = vec![0x91; 200];
        deep.push(0xc0);
        assert_eq!(check_bounds(&deep, &limits), Ok(()));
        let nested = [0x91, 0x91, 0x83, 0x01, 0x01, 0x02, 0x02, 0x03, 0x03];
        assert_eq!(check_bounds(&nested, &limits), Ok(()));
        assert!(matches!(
            ResponseView::decode(&deep, &limits),
            Err(CodecError::Deserialize { .. })
        ));
    }

    #[test]
    fn repeated_names_are_found_with_few_and_many_headers() {
        let pairs = |names: &[&'static str]| -> Vec<Header<'static>> {
            names
                .iter()
                .map(|n| (Cow::Borrowed(*n), Cow::Borrowed("v")))
                .collect()
        };
        let few = pairs(&["a", "b", "a"]);
        assert!(has_repeated_names(&few));
        assert!(!has_repeated_names(&few[..2]));
        // Case matters: a `HashMap` keeps both.
        assert!(!has_repeated_names(&pairs(&["A", "a"])));

        let names: Vec<String> = (0..10_000).map(|i| format!("x-{i}")).collect();
        let mut many: Vec<Header<'_>> = names
            .iter()
            .map(|n| (Cow::Borrowed(n.as_str()), Cow::Borrowed("v")))
            .collect();
        assert!(!has_repeated_names(&many));
        many.push((Cow::Borrowed("x-17"), Cow::Borrowed("again")));
        assert!(has_repeated_names(&many));
    }

    #[test]
    fn a_reply_with_ten_thousand_headers_is_read_in_place() {
        let limits = ResponseLimits {
            max_headers: 10_000,
            max_header_bytes: usize::MAX,
        };
        let reply = reply_with_headers(10_000, None);
        let view = read_usual(&reply, &limits).unwrap().unwrap();
        assert_eq!(view.headers().len(), 10_000);
        assert_eq!(
            view.header[9_999],
            (Cow::Borrowed("x-9999"), Cow::Borrowed("v"))
        );
    }

    #[test]
    fn the_body_is_cut_out_of_the_middle_of_the_reply() {
        // Fields in another order than serialize writes: body first.
        let mut reply = vec![
            0x84, 0xa4, b'b', b'o', b'd', b'y', 0xc4, 0x03, b'x', b'y', b'z',
        ];
        reply.extend_from_slice(&[0xaa]);
        reply.extend_from_slice(b"statusCode");
        reply.extend_from_slice(&[0xcc, 202, 0xa6]);
        reply.extend_from_slice(b"status");
        reply.extend_from_slice(&[0xa0, 0xa6]);
        reply.extend_from_slice(b"header");
        reply.extend_from_slice(&[0x81, 0xa1, b'k', 0xa1, b'v']);
        let view = ResponseView::decode(&reply, &LIMITS).unwrap();
        assert_eq!(view.status_code(), 202);
        assert_eq!(view.headers().collect::<Vec<_>>(), [("k", "v")]);
        assert_eq!(view.body(), b"xyz");
        assert_eq!(view.into_body(), ResponseBody::InReply(8..11));
    }
}
