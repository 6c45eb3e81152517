//! A response body that keeps its request's places in flight until hyper
//! has taken its last byte.
//!
//! The places (`MAX_IN_FLIGHT`, and the client's `MAX_IN_FLIGHT_PER_CLIENT`)
//! bound how many requests a listener holds in memory at once. Given back
//! as soon as the actor answered, they bounded only the actor's part: a
//! client reading slowly (above the minimum rate) could keep one large
//! response per connection waiting in memory without holding a place,
//! hundreds of connections times the largest reply. Here the places go with
//! the body, and are given back when hyper has taken the last bytes into
//! its write buffer or drops the body because the connection ended. hyper
//! takes another frame whenever its buffer holds less than `max_buf_size`
//! (64 KiB unless `MAX_HEADER_BYTES` is larger: `conn::http1_builder`), so
//! that buffer holds at most about 128 KiB and the head. What a listener
//! keeps of its responses is then bounded by its places, plus that much
//! per open connection.
//!
//! A body of up to [`CHUNK`] bytes is one frame, not copied: the common
//! case costs what `Full` did. A larger one is copied out a chunk at a
//! time, because a slice of the reply's buffer would keep all of that
//! buffer alive until hyper had written the slice, after the places were
//! given back.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};

use crate::inflight::Place;
use crate::serve::ConnService;

/// The most a frame of a response body holds: hyper's write buffer limit
/// (`conn::http1_builder`), so that what it holds after the last frame is
/// at most about twice that.
pub(crate) const CHUNK: usize = 64 * 1024;

/// The places a request took, while it is being answered.
#[derive(Default)]
pub(crate) struct Places<'a> {
    /// Of the listener's `MAX_IN_FLIGHT`.
    pub(crate) listener: Option<Place<'a>>,
    /// Of the client's `MAX_IN_FLIGHT_PER_CLIENT`.
    pub(crate) client: Option<Place<'a>>,
}

impl Places<'_> {
    /// The places as shares to give back later; the guards are gone.
    pub(crate) fn keep(self) -> Kept {
        Kept {
            listener: self.listener.map(Place::keep),
            client: self.client.map(Place::keep),
        }
    }
}

/// Places kept past their guards, as the shares they came from; given
/// back once, by the [`HeldBody`] holding them (not `Copy`, so no second
/// copy can give them back again).
#[derive(Debug, Default)]
pub(crate) struct Kept {
    pub(crate) listener: Option<usize>,
    pub(crate) client: Option<usize>,
}

/// Gives the places back when dropped.
struct Owned {
    conn: Arc<ConnService>,
    kept: Kept,
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.conn.give_back(std::mem::take(&mut self.kept));
    }
}

/// A response body holding its request's places ([module docs](self)).
pub(crate) struct HeldBody {
    rest: Bytes,
    /// Whether frames are copied out of `rest` (it is over [`CHUNK`]).
    copied: bool,
    places: Option<Owned>,
}

impl HeldBody {
    /// `body`, holding `kept` (taken on `conn`) until it has been taken.
    pub(crate) fn new(body: Bytes, conn: Arc<ConnService>, kept: Kept) -> HeldBody {
        HeldBody {
            copied: body.len() > CHUNK,
            rest: body,
            places: Some(Owned { conn, kept }),
        }
    }
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.rest.is_empty() {
            this.places = None;
            return Poll::Ready(None);
        }
        let frame = if this.copied {
            let len = this.rest.len().min(CHUNK);
            let frame = Bytes::copy_from_slice(&this.rest[..len]);
            this.rest.advance(len);
            frame
        } else {
            std::mem::take(&mut this.rest)
        };
        if this.rest.is_empty() {
            // The reply's buffer (if copied) and the places go now, not
            // when hyper drops the body.
            this.rest = Bytes::new();
            this.places = None;
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}
