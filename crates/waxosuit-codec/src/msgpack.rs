//! The byte-level MessagePack the HTTP fast paths share: writing the
//! smallest string, `bin` and map headers, as rmp (under [`serialize`])
//! writes them, and reading a borrowed slice without building anything.
//!
//! Nothing here decides what a contract value is; [`crate::http`] builds its
//! request writer and response view on these, and [`deserialize`] stays the
//! authority on which inputs are valid.
//!
//! [`serialize`]: crate::serialize
//! [`deserialize`]: crate::deserialize

use std::ops::Range;

/// The largest length MessagePack can describe (a 32-bit count).
fn len_u32(len: usize) -> Option<u32> {
    u32::try_from(len).ok()
}

/// Writes a map header for `len` entries; `None` above `u32::MAX`.
pub(crate) fn put_map_len(buf: &mut Vec<u8>, len: usize) -> Option<()> {
    match len {
        0..=15 => buf.push(0x80 | len as u8),
        16..=0xffff => {
            buf.push(0xde);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            buf.push(0xdf);
            buf.extend_from_slice(&len_u32(len)?.to_be_bytes());
        }
    }
    Some(())
}

/// Writes `text` as a string in its smallest form; `None` above 4 GiB.
pub(crate) fn put_str(buf: &mut Vec<u8>, text: &[u8]) -> Option<()> {
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
            buf.extend_from_slice(&len_u32(len)?.to_be_bytes());
        }
    }
    buf.extend_from_slice(text);
    Some(())
}

/// The smallest `bin` header for `len` bytes; `None` above 4 GiB.
pub(crate) fn bin_header(len: usize) -> Option<([u8; 5], usize)> {
    let mut header = [0u8; 5];
    let used = match len {
        0..=0xff => {
            header[..2].copy_from_slice(&[0xc4, len as u8]);
            2
        }
        0x100..=0xffff => {
            header[0] = 0xc5;
            header[1..3].copy_from_slice(&(len as u16).to_be_bytes());
            3
        }
        _ => {
            header[0] = 0xc6;
            header[1..].copy_from_slice(&len_u32(len)?.to_be_bytes());
            5
        }
    };
    Some((header, used))
}

/// Writes the smallest `bin` header for `len` bytes; `None` above 4 GiB.
pub(crate) fn put_bin_header(buf: &mut Vec<u8>, len: usize) -> Option<()> {
    let (header, used) = bin_header(len)?;
    buf.extend_from_slice(&header[..used]);
    Some(())
}

/// One MessagePack item as a walk over the bytes sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// Numbers, nil, booleans, extensions: skipped.
    Scalar,
    /// A `str` or `bin` of this many bytes, skipped.
    Bytes(usize),
    /// An array of this many items, which follow.
    Array(u64),
    /// A map of this many entries, which follow.
    Map(u64),
}

/// Reads a buffer front to back. Every method returns `None`, having read
/// some bytes or not, when the next item is not of the kind asked for or
/// the buffer ends first; none panics or allocates.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Whether every byte has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Bytes not read yet: a bound on how many items can follow, whatever
    /// count the input announces.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(*self.take(1)?.first()?)
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

    /// A map header: its entry count.
    pub(crate) fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some(usize::from(m & 0x0f)),
            0xde => self.len_of(2),
            0xdf => self.len_of(4),
            _ => None,
        }
    }

    /// A `str` that is valid UTF-8, borrowed.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.len_of(1)?,
            0xda => self.len_of(2)?,
            0xdb => self.len_of(4)?,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// A `bin`: where its bytes lie in the buffer.
    pub(crate) fn bin(&mut self) -> Option<Range<usize>> {
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

    /// An unsigned integer in any width that fits `u32`. Signed forms are
    /// not read here.
    pub(crate) fn uint(&mut self) -> Option<u32> {
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

    /// The next item's kind, with its payload skipped for scalars and
    /// bytes; `None` if the buffer ends first or the marker is `0xc1`
    /// (never used).
    pub(crate) fn item(&mut self) -> Option<Item> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_the_smallest_form_at_every_boundary() {
        for (len, first, size) in [
            (0, 0xc4, 2),
            (255, 0xc4, 2),
            (256, 0xc5, 3),
            (65_535, 0xc5, 3),
            (65_536, 0xc6, 5),
        ] {
            let (header, used) = bin_header(len).unwrap();
            assert_eq!((header[0], used), (first, size), "bin of {len}");
        }
        for (len, first) in [
            (0, 0xa0),
            (31, 0xbf),
            (32, 0xd9),
            (256, 0xda),
            (65_536, 0xdb),
        ] {
            let mut buf = Vec::new();
            put_str(&mut buf, &vec![b'x'; len]).unwrap();
            assert_eq!(buf[0], first, "str of {len}");
        }
        for (len, first) in [(15, 0x8f), (16, 0xde), (65_536, 0xdf)] {
            let mut buf = Vec::new();
            put_map_len(&mut buf, len).unwrap();
            assert_eq!(buf[0], first, "map of {len}");
        }
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn lengths_past_four_gib_are_refused() {
        let mut buf = Vec::new();
        assert_eq!(put_map_len(&mut buf, 1 << 32), None);
        assert_eq!(bin_header(1 << 32), None);
        assert_eq!(put_bin_header(&mut buf, usize::MAX), None);
    }

    #[test]
    fn the_reader_refuses_truncated_and_mistyped_items() {
        // A str of 3 with 2 bytes, a bin of 2 with 1, an unknown marker.
        assert_eq!(Reader::new(&[0xa3, b'a', b'b']).str(), None);
        assert_eq!(Reader::new(&[0xc4, 2, 0]).bin(), None);
        assert_eq!(Reader::new(&[0xc1]).item(), None);
        // Not UTF-8; an integer past u32; a signed integer.
        assert_eq!(Reader::new(&[0xa1, 0xff]).str(), None);
        assert_eq!(Reader::new(&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]).uint(), None);
        assert_eq!(Reader::new(&[0xd0, 5]).uint(), None);
        // An ext 8 whose length runs past the end.
        assert_eq!(Reader::new(&[0xc7, 9, 1]).item(), None);
        let mut r = Reader::new(&[0xd4, 1, 2, 0x92]);
        assert_eq!(r.item(), Some(Item::Scalar));
        assert_eq!(r.item(), Some(Item::Array(2)));
        assert!(r.at_end());
    }
}
