//! One connection: what it is doing, and the timeouts hyper does not
//! enforce itself.
//!
//! hyper's HTTP/1 server bounds the time to read a request head (see
//! `watchdog`), but not how long a connection may sit idle once its header
//! timer is off, nor how long a response write may stall because the client
//! stopped reading. Both are enforced here without a clock read or a timer
//! per request: the connection's I/O ([`Tracked`]) and its service
//! ([`Activity::request`]) bump two counters, one for any progress and one
//! for progress of the response writes, and the connection's watchdog, which
//! ticks anyway, compares them with what it saw last time ([`Quiet`]). A
//! connection is closed when the counter that matters did not move for the
//! timeout: between the timeout and the timeout plus two watchdog periods
//! (at most half the shortest timeout) after it stopped.
//!
//! A client that reads a segment now and then keeps the write counter
//! moving for ever while its response (up to the actor's payload limit)
//! stays in memory, so a blocked response must also average a minimum
//! rate over each write timeout: the bytes the kernel accepted are counted
//! too, and a window in which fewer than the rate allows arrived closes the
//! connection like a stalled write.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::bounded::ConnectionLimits;
use crate::config::DEFAULT_WRITE_TIMEOUT;
use crate::watchdog::Watchdog;

/// What one connection is doing, shared by its I/O, its service and its
/// watchdog (all on the connection's task), and read by the accept loop
/// when it looks for a connection to evict.
///
/// Only the connection's task writes it, so the counter is bumped with a
/// plain load and store (no read-modify-write instruction): a few
/// nanoseconds on the request path. It is written on every read and write,
/// and the accept thread allocates one per connection, one after the other:
/// aligned to its own cache line (128 bytes: x86 prefetches lines in pairs)
/// so that two connections served on different threads never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Activity {
    /// Changes whenever bytes are read or written, and when a request
    /// starts or ends.
    progress: AtomicU32,
    /// Changes whenever bytes are written, and when a request ends (its
    /// response starts): what the write timeout watches, so that a client
    /// sending bytes it never reads the answers to cannot hold it off.
    writes: AtomicU32,
    /// A request is being handled (from its complete head to its response).
    in_request: AtomicBool,
    /// The last write could not complete: the client is not reading.
    write_blocked: AtomicBool,
    /// Bytes the kernel accepted from response writes.
    written: AtomicU64,
    /// Close with a reset: set when the connection is cut for not reading.
    reset: AtomicBool,
    /// The response write has made no progress for half the write timeout
    /// (as the watchdog last saw): a client not reading, not merely a slow
    /// download. Only such a connection may be evicted while it writes.
    stalled: AtomicBool,
}

impl Activity {
    fn bump(&self) {
        bump(&self.progress);
    }

    fn bump_writes(&self) {
        bump(&self.progress);
        bump(&self.writes);
    }

    /// Marks a request in progress until the returned guard is dropped
    /// (also when hyper drops the request's future because the client went
    /// away).
    pub(crate) fn request(&self) -> InRequest<'_> {
        self.in_request.store(true, Ordering::Relaxed);
        self.bump();
        InRequest(self)
    }

    /// Neither handling a request nor stuck writing a response: idle
    /// keep-alive, or still waiting for a request head. Such a connection
    /// can be closed without losing work.
    pub(crate) fn is_idle(&self) -> bool {
        !self.in_request.load(Ordering::Relaxed) && !self.write_blocked.load(Ordering::Relaxed)
    }

    /// Marks the last write blocked and stalled (or neither), as
    /// [`Tracked`] and the watchdog do.
    #[cfg(test)]
    pub(crate) fn set_write_stalled(&self, stalled: bool) {
        self.write_blocked.store(stalled, Ordering::Relaxed);
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    /// Not handling a request, but with answers its client does not read:
    /// the work done for it is done, and the client (pipelining requests
    /// behind a full receive buffer, say) is not taking what was made. A
    /// write that is merely blocked (a large download to a slower client)
    /// is not this: its writes must also have stalled.
    pub(crate) fn is_unread(&self) -> bool {
        !self.in_request.load(Ordering::Relaxed)
            && self.write_blocked.load(Ordering::Relaxed)
            && self.stalled.load(Ordering::Relaxed)
    }

    /// Makes the connection's close a reset (see [`Reset`]).
    pub(crate) fn reset_on_close(&self) {
        self.reset.store(true, Ordering::Relaxed);
    }
}

/// A request in progress on a connection; see [`Activity::request`].
pub(crate) struct InRequest<'a>(&'a Activity);

impl Drop for InRequest<'_> {
    fn drop(&mut self) {
        self.0.in_request.store(false, Ordering::Relaxed);
        self.0.bump_writes();
    }
}

/// Advances a counter only the connection's task writes.
fn bump(counter: &AtomicU32) {
    let next = counter.load(Ordering::Relaxed).wrapping_add(1);
    counter.store(next, Ordering::Relaxed);
}

/// A socket that can be closed with a reset rather than a FIN. A connection
/// cut because its client does not read must not leave the kernel sending
/// that client what its send buffer holds (megabytes, on loopback) at the
/// client's pace after the host has let go of it.
pub(crate) trait Reset {
    /// Makes the coming close a reset.
    fn reset(&self);
}

impl Reset for TcpStream {
    fn reset(&self) {
        if let Err(e) = self.set_zero_linger() {
            tracing::debug!(error = %e, "cannot make a closing connection reset");
        }
    }
}

impl Reset for () {
    fn reset(&self) {}
}

/// A socket that reports its progress to an [`Activity`], and is reset
/// when dropped if the activity asks for it.
pub(crate) struct Tracked<T: Reset> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: Reset> Drop for Tracked<T> {
    fn drop(&mut self) {
        if self.activity.reset.load(Ordering::Relaxed) {
            self.io.reset();
        }
    }
}

impl<T: Reset> Tracked<T> {
    pub(crate) fn new(io: T, activity: Arc<Activity>) -> Tracked<T> {
        Tracked { io, activity }
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) if *n > 0 => {
                if self.activity.write_blocked.load(Ordering::Relaxed) {
                    self.activity.write_blocked.store(false, Ordering::Relaxed);
                }
                self.activity.bump_writes();
                // Only this task writes it: no read-modify-write needed.
                let written = &self.activity.written;
                written.store(
                    written.load(Ordering::Relaxed).wrapping_add(*n as u64),
                    Ordering::Relaxed,
                );
            }
            Poll::Pending => self.activity.write_blocked.store(true, Ordering::Relaxed),
            // An error ends the connection anyway.
            Poll::Ready(_) => {}
        }
    }
}

impl<T: AsyncRead + Unpin + Reset> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bump();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin + Reset> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why a quiet connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No request and no I/O for the idle timeout.
    Idle,
    /// A response write made no progress for the write timeout.
    Write,
    /// A blocked response went slower than the minimum write rate over a
    /// write timeout.
    SlowRead,
}

/// How long a connection has been quiet, and its writes stuck, sampled at
/// watchdog ticks.
#[derive(Debug)]
pub(crate) struct Quiet {
    progress: Since,
    writes: Since,
    /// Bytes written when the current window of blocked writing began;
    /// `None` while the response is not blocked.
    window: Option<Window>,
}

#[derive(Debug)]
struct Window {
    written: u64,
    since: Instant,
}

/// A counter's value when last sampled, and when it was first seen.
#[derive(Debug)]
struct Since {
    value: u32,
    since: Instant,
}

impl Since {
    /// How long `counter` has kept its value, as far as the samples tell.
    fn unchanged(&mut self, counter: &AtomicU32, now: Instant) -> Duration {
        let value = counter.load(Ordering::Relaxed);
        if value != self.value {
            *self = Since { value, since: now };
        }
        now.saturating_duration_since(self.since)
    }
}

impl Quiet {
    pub(crate) fn new(activity: &Activity, now: Instant) -> Quiet {
        let since = |counter: &AtomicU32| Since {
            value: counter.load(Ordering::Relaxed),
            since: now,
        };
        Quiet {
            progress: since(&activity.progress),
            writes: since(&activity.writes),
            window: None,
        }
    }

    /// Whether the blocked response wrote fewer bytes than the minimum
    /// rate allows over the last write timeout. A window starts at the
    /// first sample that finds the response blocked, and the next one when
    /// it is complete; a sample that finds it not blocked ends it.
    fn too_slow(&mut self, activity: &Activity, limits: &ConnectionLimits, now: Instant) -> bool {
        let written = activity.written.load(Ordering::Relaxed);
        let (Some(length), Some(rate), true) = (
            limits.write_timeout,
            limits.min_write_rate,
            activity.write_blocked.load(Ordering::Relaxed),
        ) else {
            self.window = None;
            return false;
        };
        let Some(window) = &self.window else {
            self.window = Some(Window {
                written,
                since: now,
            });
            return false;
        };
        if now.saturating_duration_since(window.since) < length {
            return false;
        }
        let moved = written.wrapping_sub(window.written);
        let needed = (rate as f64 * length.as_secs_f64()) as u64;
        self.window = Some(Window {
            written,
            since: now,
        });
        moved < needed
    }

    /// Whether the connection has been quiet for longer than one of its
    /// timeouts allows. A request in progress is never idle (its actor may
    /// take up to the request timeout), but its response write can stall.
    pub(crate) fn check(
        &mut self,
        activity: &Activity,
        limits: &ConnectionLimits,
        now: Instant,
    ) -> Option<Expired> {
        let quiet = self.progress.unchanged(&activity.progress, now);
        let stuck = self.writes.unchanged(&activity.writes, now);
        let slow = self.too_slow(activity, limits, now);
        let half = limits.write_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT) / 2;
        activity.stalled.store(
            activity.write_blocked.load(Ordering::Relaxed) && stuck >= half,
            Ordering::Relaxed,
        );
        let over =
            |elapsed: Duration, timeout: Option<Duration>| timeout.is_some_and(|t| elapsed >= t);
        if activity.write_blocked.load(Ordering::Relaxed) {
            if over(stuck, limits.write_timeout) {
                Some(Expired::Write)
            } else {
                slow.then_some(Expired::SlowRead)
            }
        } else if !activity.in_request.load(Ordering::Relaxed) {
            over(quiet, limits.idle_timeout).then_some(Expired::Idle)
        } else {
            None
        }
    }
}

/// The HTTP/1 settings every connection of a server shares.
pub(crate) fn http1_builder(
    limits: &ConnectionLimits,
    max_headers: Option<usize>,
) -> http1::Builder {
    // hyper panics on a read buffer below 8 KiB.
    let max_header_bytes = limits.max_header_bytes.max(crate::config::MIN_HEADER_BYTES);
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .max_header_size(max_header_bytes)
        // The read buffer must hold the largest accepted head; hyper's
        // ~400 KB default would let one client pin that much per connection.
        .max_buf_size(max_header_bytes.max(64 * 1024))
        // Deadlines checked when the connection's watchdog wakes it, not
        // tokio timers armed per request; see `watchdog`.
        .timer(crate::watchdog::DeadlineTimer)
        .header_read_timeout(limits.header_read_timeout);
    // Only when asked: hyper moves the header array to the heap once this is
    // set, which costs every request a few percent.
    if let Some(max) = max_headers {
        http.max_headers(max);
    }
    http
}

/// Serves one connection with `service` until it ends, is stopped through
/// `stop` (graceful: the request in flight finishes), or stays quiet past
/// one of `limits`' timeouts. `server` names it in logs.
pub(crate) async fn serve<S, B>(
    stream: TcpStream,
    http: &http1::Builder,
    service: S,
    limits: &ConnectionLimits,
    activity: Arc<Activity>,
    mut stop: oneshot::Receiver<()>,
    server: &str,
) where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<B>,
            Error = Infallible,
        >,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + 'static,
{
    // Made here, not by the accept loop: its timer belongs to the runtime
    // that serves the connection.
    let mut watchdog = Watchdog::new(limits.shortest_timeout());
    let mut quiet = Quiet::new(&activity, Instant::now());
    // Responses are small and written in one go; Nagle would hold them back
    // waiting for an ACK and add up to 40 ms of latency on keep-alive.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let io = TokioIo::new(Tracked::new(stream, Arc::clone(&activity)));
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            // Polling the connection first keeps the common path to one branch.
            biased;
            result = conn.as_mut() => break result,
            // A dropped sender means the listener is gone: stop as well.
            _ = &mut stop, if !stopping => {
                // Finishes the request in flight (if any), then closes; an
                // idle keep-alive connection closes at once.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            // Being woken also makes hyper re-check its header deadline on
            // the next turn of the loop.
            () = watchdog.tick() => {
                if let Some(expired) = quiet.check(&activity, limits, Instant::now()) {
                    // Dropping the connection closes the socket; one whose
                    // client does not read with a reset, so that what the
                    // send buffer holds is dropped too.
                    if matches!(expired, Expired::Write | Expired::SlowRead) {
                        activity.reset_on_close();
                    }
                    tracing::debug!(server, ?expired, "closing a quiet HTTP connection");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        // Clients hanging up mid-request are routine; not worth more.
        tracing::debug!(server, error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::ConnectionLimits;

    fn limits(idle_ms: u64, write_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            idle_timeout: Some(Duration::from_millis(idle_ms)),
            write_timeout: Some(Duration::from_millis(write_ms)),
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn an_idle_connection_expires_only_after_the_idle_timeout_without_progress() {
        let activity = Activity::default();
        let limits = limits(1000, 5000);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut quiet = Quiet::new(&activity, t0);
        assert_eq!(quiet.check(&activity, &limits, ms(999)), None);
        // Progress restarts the clock.
        activity.bump();
        assert_eq!(quiet.check(&activity, &limits, ms(1500)), None);
        assert_eq!(quiet.check(&activity, &limits, ms(2400)), None);
        assert_eq!(
            quiet.check(&activity, &limits, ms(2500)),
            Some(Expired::Idle)
        );
    }

    #[test]
    fn a_request_in_progress_is_never_idle() {
        let activity = Activity::default();
        let limits = limits(10, 10);
        let t0 = Instant::now();
        let mut quiet = Quiet::new(&activity, t0);
        let request = activity.request();
        assert!(!activity.is_idle());
        // Starting the request was progress; then an hour of silence.
        assert_eq!(quiet.check(&activity, &limits, t0), None);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(quiet.check(&activity, &limits, later), None);
        drop(request);
        assert!(activity.is_idle());
        assert_eq!(quiet.check(&activity, &limits, later), None);
        assert_eq!(
            quiet.check(&activity, &limits, later + Duration::from_millis(10)),
            Some(Expired::Idle)
        );
    }

    #[test]
    fn a_stalled_write_expires_even_during_a_request_and_progress_clears_it() {
        let activity = Arc::new(Activity::default());
        let limits = limits(60_000, 500);
        let t0 = Instant::now();
        let mut quiet = Quiet::new(&activity, t0);
        let _request = activity.request();
        let tracked = Tracked::new((), Arc::clone(&activity));
        tracked.wrote(&Poll::Pending);
        assert!(!activity.is_idle());
        assert_eq!(quiet.check(&activity, &limits, t0), None);
        let stalled = t0 + Duration::from_millis(500);
        assert_eq!(
            quiet.check(&activity, &limits, stalled),
            Some(Expired::Write)
        );
        // The client read some: the write moved, the clock restarts.
        tracked.wrote(&Poll::Ready(Ok(4096)));
        assert_eq!(quiet.check(&activity, &limits, stalled), None);
        assert!(!activity.write_blocked.load(Ordering::Relaxed));
    }

    #[test]
    fn a_blocked_download_is_unread_only_once_its_writes_stall() {
        let activity = Arc::new(Activity::default());
        let limits = limits(60_000, 1000);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut quiet = Quiet::new(&activity, t0);
        let tracked = Tracked::new((), Arc::clone(&activity));
        // A large response to a slower client: blocked, but moving.
        for tick in 1..=8u64 {
            tracked.wrote(&Poll::Ready(Ok(64 * 1024)));
            tracked.wrote(&Poll::Pending);
            assert_eq!(quiet.check(&activity, &limits, ms(tick * 250)), None);
            assert!(!activity.is_unread(), "a moving download at tick {tick}");
        }
        // It stops moving: unread (evictable) from half the write timeout.
        assert_eq!(quiet.check(&activity, &limits, ms(2000 + 250)), None);
        assert!(!activity.is_unread());
        assert_eq!(quiet.check(&activity, &limits, ms(2000 + 500)), None);
        assert!(activity.is_unread());
    }

    #[test]
    fn bytes_coming_in_do_not_hold_off_the_write_timeout() {
        let activity = Arc::new(Activity::default());
        let limits = limits(60_000, 500);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut quiet = Quiet::new(&activity, t0);
        let tracked = Tracked::new((), Arc::clone(&activity));
        tracked.wrote(&Poll::Pending);
        // The client trickles in a byte every 100 ms and reads nothing.
        for tick in 1..5 {
            activity.bump();
            assert_eq!(quiet.check(&activity, &limits, ms(tick * 100)), None);
        }
        activity.bump();
        assert_eq!(
            quiet.check(&activity, &limits, ms(500)),
            Some(Expired::Write)
        );
    }

    #[test]
    fn the_write_clock_starts_when_the_response_does() {
        let activity = Arc::new(Activity::default());
        let limits = limits(60_000, 500);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut quiet = Quiet::new(&activity, t0);
        // An actor that takes ten write timeouts, then a response that
        // cannot be written at once.
        let request = activity.request();
        assert_eq!(quiet.check(&activity, &limits, ms(5000)), None);
        drop(request);
        let tracked = Tracked::new((), Arc::clone(&activity));
        tracked.wrote(&Poll::Pending);
        assert_eq!(quiet.check(&activity, &limits, ms(5100)), None);
        assert_eq!(quiet.check(&activity, &limits, ms(5500)), None);
        assert_eq!(
            quiet.check(&activity, &limits, ms(5600)),
            Some(Expired::Write)
        );
    }

    #[test]
    fn a_reader_that_keeps_a_response_trickling_is_closed_below_the_minimum_rate() {
        let activity = Arc::new(Activity::default());
        let limits = ConnectionLimits {
            min_write_rate: Some(1024),
            ..limits(60_000, 1000)
        };
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut quiet = Quiet::new(&activity, t0);
        let tracked = Tracked::new((), Arc::clone(&activity));
        // 150 bytes every 250 ms (600 B/s): the writes never stall for the
        // timeout, but the rate is under 1 KiB/s. The first window starts
        // at the first sample that finds the response blocked (tick 1) and
        // ends a write timeout later (tick 5).
        let mut expired = None;
        for tick in 1..=12u64 {
            tracked.wrote(&Poll::Ready(Ok(150)));
            tracked.wrote(&Poll::Pending);
            if let Some(why) = quiet.check(&activity, &limits, ms(tick * 250)) {
                expired = Some((tick, why));
                break;
            }
        }
        assert_eq!(expired, Some((5, Expired::SlowRead)));

        // At 2 KiB a second it is kept, window after window.
        let activity = Arc::new(Activity::default());
        let mut quiet = Quiet::new(&activity, t0);
        let tracked = Tracked::new((), Arc::clone(&activity));
        for tick in 1..=20u64 {
            tracked.wrote(&Poll::Ready(Ok(512)));
            tracked.wrote(&Poll::Pending);
            assert_eq!(quiet.check(&activity, &limits, ms(tick * 250)), None);
        }
        // Without a minimum rate, the trickle is kept too.
        let limits = limits_without_rate();
        let activity = Arc::new(Activity::default());
        let mut quiet = Quiet::new(&activity, t0);
        let tracked = Tracked::new((), Arc::clone(&activity));
        for tick in 1..=20u64 {
            tracked.wrote(&Poll::Ready(Ok(1)));
            tracked.wrote(&Poll::Pending);
            assert_eq!(quiet.check(&activity, &limits, ms(tick * 250)), None);
        }
    }

    fn limits_without_rate() -> ConnectionLimits {
        ConnectionLimits {
            min_write_rate: None,
            ..limits(60_000, 1000)
        }
    }

    #[test]
    fn no_timeouts_means_never_expired() {
        let activity = Activity::default();
        let limits = ConnectionLimits {
            idle_timeout: None,
            write_timeout: None,
            ..ConnectionLimits::default()
        };
        let t0 = Instant::now();
        let mut quiet = Quiet::new(&activity, t0);
        let later = t0 + Duration::from_secs(1_000_000);
        assert_eq!(quiet.check(&activity, &limits, later), None);
    }
}
