//! One binding's connector: the TLS-or-plain connector, with a cap on the
//! connections the binding holds open and a time limit on making one.
//!
//! hyper's pool keeps an idle connection per origin (scheme, host, port)
//! for the pool's idle timeout, and sets no bound of its own on how many.
//! An actor under `*` could name a new origin on every call (ports 1 to
//! 65535, or any number of subdomains) and leave one open descriptor
//! behind each time, until the host could open no more sockets for its
//! HTTP server or any other capability. So every connection holds a place
//! among the binding's [`MAX_CONNECTIONS`](crate::MAX_CONNECTIONS), given
//! back when hyper drops it, idle or not.
//!
//! A connection hyper starts for a request that is then served by another
//! (pooled) connection goes on in the background, no longer under the
//! call's `TIMEOUT_MS`; a server that accepts and never finishes the TLS
//! handshake would hold it forever. So making a connection (TCP and TLS)
//! has a deadline of its own.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a connection was not made, besides what the inner connector says.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Every place was held for the whole wait.
    #[error(
        "all {limit} connections of this binding are in use or idle in its pool \
         (MAX_CONNECTIONS; idle ones close after {idle_ms} ms, IDLE_TIMEOUT_MS); raise \
         MAX_CONNECTIONS, lower IDLE_TIMEOUT_MS, or reach fewer hosts"
    )]
    Saturated { limit: usize, idle_ms: u128 },
    /// TCP and TLS did not complete in time.
    #[error("no connection within {millis} ms")]
    TimedOut { millis: u128 },
}

/// Wraps `C`, counting the connections it makes against a fixed number of
/// places.
#[derive(Clone)]
pub(crate) struct Capped<C> {
    inner: C,
    places: Arc<Semaphore>,
    limit: usize,
    /// How long a connection may wait for a place.
    wait: Duration,
    /// How long making one may take, place found.
    connect_timeout: Duration,
    idle_ms: u128,
}

impl<C> Capped<C> {
    pub(crate) fn new(
        inner: C,
        limit: usize,
        wait: Duration,
        connect_timeout: Duration,
        idle: Duration,
    ) -> Capped<C> {
        Capped {
            inner,
            places: Arc::new(Semaphore::new(limit)),
            limit,
            wait,
            connect_timeout,
            idle_ms: idle.as_millis(),
        }
    }
}

impl<C> tower_service::Service<Uri> for Capped<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Response: Send,
    C::Error: Into<BoxError>,
    C::Future: Send,
{
    type Response = Counted<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner connector is made ready on the clone that connects,
        // once a place is had.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let places = Arc::clone(&self.places);
        let (limit, wait, connect_timeout, idle_ms) =
            (self.limit, self.wait, self.connect_timeout, self.idle_ms);
        Box::pin(async move {
            let place = match places.clone().try_acquire_owned() {
                Ok(place) => place,
                Err(_) => {
                    tracing::debug!(
                        limit,
                        "wascc:http_client binding waits for a connection place"
                    );
                    match tokio::time::timeout(wait, places.acquire_owned()).await {
                        // Never closed: the semaphore lives as long as the binding.
                        Ok(Ok(place)) => place,
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => return Err(ConnectError::Saturated { limit, idle_ms }.into()),
                    }
                }
            };
            let connect = async move {
                std::future::poll_fn(|cx| inner.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                inner.call(uri).await.map_err(Into::into)
            };
            match tokio::time::timeout(connect_timeout, connect).await {
                Ok(Ok(io)) => Ok(Counted { io, _place: place }),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ConnectError::TimedOut {
                    millis: connect_timeout.as_millis(),
                }
                .into()),
            }
        })
    }
}

/// A connection and the place it holds, given back when hyper drops it.
pub(crate) struct Counted<T> {
    io: T,
    _place: OwnedSemaphorePermit,
}

impl<T: Connection> Connection for Counted<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Unpin> Read for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connector whose connections never complete, as a server that
    /// accepts and never finishes a TLS handshake.
    #[derive(Clone)]
    struct Stalled;

    impl tower_service::Service<Uri> for Stalled {
        type Response = tokio::io::DuplexStream;
        type Error = io::Error;
        type Future = std::future::Pending<io::Result<tokio::io::DuplexStream>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _uri: Uri) -> Self::Future {
            std::future::pending()
        }
    }

    /// A connection that cannot be made ends at its own deadline and gives
    /// its place back, whoever still waits for it: hyper finishes some in
    /// the background, where no call's `TIMEOUT_MS` bounds them.
    // Paused time: the place's wait (20 ms) ends before the connection's
    // deadline (50 ms) however slowly the machine runs.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_connection_ends_at_its_deadline_and_frees_its_place() {
        let mut capped = Capped::new(
            Stalled,
            1,
            Duration::from_millis(20),
            Duration::from_millis(50),
            Duration::from_secs(90),
        );
        let uri: Uri = "https://example.com/".parse().unwrap();
        let started = tokio::time::Instant::now();
        let first = tower_service::Service::call(&mut capped, uri.clone());
        let second = tower_service::Service::call(&mut capped, uri.clone());
        let (first, second) = tokio::join!(first, second);
        let first = first.err().expect("the stalled connection fails");
        assert!(
            matches!(
                first.downcast_ref::<ConnectError>(),
                Some(ConnectError::TimedOut { millis: 50 })
            ),
            "{first}"
        );
        let second = second.err().expect("no place for the second");
        assert!(
            matches!(
                second.downcast_ref::<ConnectError>(),
                Some(ConnectError::Saturated { limit: 1, .. })
            ),
            "{second}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(capped.places.available_permits(), 1, "the place is back");
    }
}
