//! Connection threads: where accepted connections are served. The what,
//! the why and who owns them are on [`ConnectionThreads`], whose docs users
//! see.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::{AbortHandle, JoinSet};

/// A set of single-worker runtimes that HTTP connections are spread over.
///
/// On tokio's multi-threaded runtime a connection's task does not stay on
/// one core: the worker that polls the I/O driver schedules every task it
/// wakes, and an idle worker steals half of another's queue. For a plain
/// hyper server that costs little. For the host it means each request's
/// buffers, the actor's wasm instance and its pool shard, and the task's
/// waker cross cores, request after request, which measurably costs CPU
/// per request (`docs/http-benchmarks.md`, "Cross-core traffic").
///
/// So connections are served on this set of single-worker runtimes, one
/// per core by default, each accepted connection placed on the one with
/// the fewest open connections. A connection then stays on that runtime: its socket is registered with
/// the runtime's own `epoll`, its timers live in the runtime's wheel, and
/// its task is never stolen. (The runtime's one worker can still move to
/// another OS thread, when an inline actor call hands it on through
/// `block_in_place`.)
///
/// **Who owns them.** Actor calls run on these threads, and so do the host
/// calls they make: a provider that opens a connection or spawns a task
/// lazily while serving such a call (a Redis connection on first use, a
/// download streamed in the background) registers it here. The threads
/// therefore outlive any one HTTP server, and only whoever embeds the
/// providers can tell when nothing uses them any more. The embedder (the
/// CLI's `up`) starts one set, gives it to every HTTP server provider
/// ([`HttpServerProvider::with_shared_threads`](crate::HttpServerProvider::with_shared_threads)),
/// and calls [`shutdown`](Self::shutdown) once every provider is
/// stopped. A provider made without a set owns one of its own, and stops
/// it with its own shutdown.
///
/// Each runtime is a multi-threaded runtime with one worker rather than a
/// current-thread runtime: an actor call that runs inline and then has to
/// wait hands its worker on through `tokio::task::block_in_place`, which
/// current-thread runtimes do not support.
///
/// Its runtimes start when the first listener is bound on it, so an
/// embedder can create a set up front at no cost. Dropped (its last `Arc`),
/// it stops them without waiting, which is allowed from async code.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use waxosuit_cap_http_server::{ConnectionThreads, HttpServerProvider};
/// use waxosuit_provider::CapabilityProvider;
///
/// let threads = Arc::new(ConnectionThreads::per_core());
/// let public = HttpServerProvider::with_shared_threads(Arc::clone(&threads));
/// let internal = HttpServerProvider::with_shared_threads(Arc::clone(&threads));
/// let runtime = tokio::runtime::Runtime::new()?;
/// runtime.block_on(async {
///     // … start the host with both providers, serve, then stop it:
///     public.shutdown().await;
///     internal.shutdown().await;
/// });
/// // Last, and outside async code so that it can wait for the threads.
/// threads.shutdown(Duration::from_secs(2));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ConnectionThreads {
    count: usize,
    /// Set once, by the first [`started`](Self::started) that succeeds.
    threads: OnceLock<Vec<Thread>>,
    /// Serializes starting with [`shutdown`](Self::shutdown), so that no
    /// runtime starts after the set was shut down.
    starting: Mutex<()>,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for ConnectionThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionThreads")
            .field("count", &self.count)
            .field("started", &self.threads.get().is_some())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

struct Thread {
    /// `Some` until the set is shut down or dropped.
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    /// Connections open on this thread; its own cache line, since
    /// accepting and closing update it from different threads.
    open: Arc<Padded>,
}

/// A counter on its own cache line (128 bytes: adjacent-line prefetching
/// pairs lines on x86), so that counters written from different threads do
/// not invalidate each other.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded(pub(crate) AtomicUsize);

impl ConnectionThreads {
    /// A set of `count` runtimes (at least one), named `waxosuit-http-N`
    /// and started with the first listener that uses them.
    #[must_use]
    pub fn new(count: usize) -> ConnectionThreads {
        ConnectionThreads {
            count: count.max(1),
            threads: OnceLock::new(),
            starting: Mutex::new(()),
            shut_down: AtomicBool::new(false),
        }
    }

    /// A set of one runtime per core ([`std::thread::available_parallelism`]).
    #[must_use]
    pub fn per_core() -> ConnectionThreads {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        ConnectionThreads::new(cores)
    }

    /// How many runtimes there are (or will be, once started).
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always `false`: a set has at least one runtime.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether [`shutdown`](Self::shutdown) was called. A shut-down set
    /// serves nothing: binding a listener on it fails, saying so.
    #[must_use]
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Stops every runtime of the set. Every task still on them (connections
    /// left open by a provider that was not shut down, tasks other providers
    /// spawned there) is dropped, so call this once every provider using the
    /// set has been shut down. Later calls do nothing.
    ///
    /// Waits up to `timeout` in all for the runtimes' threads, and blocking
    /// tasks spawned from them, to finish. Blocking is not allowed in async
    /// code, so called from within a tokio runtime it does not wait at all
    /// (the threads then finish in the background).
    pub fn shutdown(&self, timeout: Duration) {
        let _starting = self.starting.lock();
        self.shut_down.store(true, Ordering::Release);
        let Some(threads) = self.threads.get() else {
            return;
        };
        let may_block = Handle::try_current().is_err();
        let deadline = Instant::now() + timeout;
        let runtimes: Vec<Runtime> = threads.iter().filter_map(Thread::take_runtime).collect();
        for runtime in runtimes {
            if may_block {
                runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
            } else {
                runtime.shutdown_background();
            }
        }
    }

    /// Starts the runtimes unless they run already; an error if they cannot
    /// be started or the set was shut down.
    pub(crate) fn ensure_started(&self) -> io::Result<()> {
        self.started().map(|_| ())
    }

    /// The runtimes, started on first use; an error if they cannot be
    /// started or the set was shut down.
    fn started(&self) -> io::Result<&[Thread]> {
        if let Some(threads) = self.threads.get()
            && !self.is_shut_down()
        {
            return Ok(threads);
        }
        let _starting = self.starting.lock();
        if self.is_shut_down() {
            return Err(io::Error::other(
                "the HTTP connection threads were shut down by their owner",
            ));
        }
        if let Some(threads) = self.threads.get() {
            return Ok(threads);
        }
        let threads = (0..self.count)
            .map(|index| {
                let runtime = Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("waxosuit-http-{index}"))
                    .enable_all()
                    .build()?;
                Ok(Thread {
                    handle: runtime.handle().clone(),
                    runtime: Mutex::new(Some(runtime)),
                    open: Arc::default(),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(self.threads.get_or_init(|| threads))
    }

    /// Spawns a connection's task into `set`, on the thread with the fewest
    /// open connections (the lowest index on ties). `connection` gets the
    /// index of that thread, below [`len`](Self::len), so it can use
    /// per-thread state that no other thread writes.
    ///
    /// An error, with nothing spawned, if the runtimes cannot be started or
    /// the set was shut down.
    pub(crate) fn spawn<F>(
        &self,
        set: &mut JoinSet<()>,
        connection: impl FnOnce(usize) -> F,
    ) -> io::Result<AbortHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let threads = self.started()?;
        let Some((index, thread)) = threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.open.0.load(Ordering::Relaxed))
        else {
            return Err(io::Error::other("no HTTP connection thread to serve on"));
        };
        let connection = connection(index);
        // Counted up here and down when the task is dropped, however it
        // ends: aborted before its first poll included.
        let open = OpenGuard::new(Arc::clone(&thread.open));
        Ok(set.spawn_on(
            async move {
                let _open = open;
                connection.await;
            },
            &thread.handle,
        ))
    }

    /// Open connections per thread, in thread order (none before start).
    #[cfg(test)]
    pub(crate) fn open_counts(&self) -> Vec<usize> {
        self.threads.get().map_or_else(Vec::new, |threads| {
            threads
                .iter()
                .map(|t| t.open.0.load(Ordering::Relaxed))
                .collect()
        })
    }
}

impl Thread {
    fn take_runtime(&self) -> Option<Runtime> {
        self.runtime.lock().take()
    }
}

struct OpenGuard(Arc<Padded>);

impl OpenGuard {
    fn new(open: Arc<Padded>) -> OpenGuard {
        open.0.fetch_add(1, Ordering::Relaxed);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(runtime) = self.take_runtime() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    /// Spawns a task that reports the thread it started on and the one it
    /// ends on, once released, and checks that the index it was given is
    /// that thread's.
    fn connection(
        threads: &ConnectionThreads,
        set: &mut JoinSet<()>,
    ) -> (oneshot::Sender<()>, oneshot::Receiver<(String, String)>) {
        let (release, released) = oneshot::channel::<()>();
        let (report, reported) = oneshot::channel();
        threads
            .spawn(set, |index| async move {
                let name = || std::thread::current().name().unwrap_or("").to_string();
                let before = name();
                assert_eq!(before, format!("waxosuit-http-{index}"));
                let _ = released.await;
                let _ = report.send((before, name()));
            })
            .expect("threads start");
        (release, reported)
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_thread_and_stay_there() {
        let threads = ConnectionThreads::new(2);
        assert_eq!(threads.len(), 2);
        let mut set = JoinSet::new();
        // Placed 0, 1, 0, 1: the fewest open, the lowest index on ties.
        let mut open: Vec<_> = (0..4).map(|_| connection(&threads, &mut set)).collect();
        assert_eq!(threads.open_counts(), [2, 2]);

        // Close both connections of thread 0.
        for (release, reported) in [open.remove(2), open.remove(0)] {
            release.send(()).expect("task waiting");
            let (before, after) = reported.await.expect("report");
            assert_eq!(before, "waxosuit-http-0");
            assert_eq!(after, before, "a connection changed thread");
        }
        while set.len() > 2 {
            set.join_next().await.expect("task").expect("no panic");
        }
        assert_eq!(threads.open_counts(), [0, 2]);

        // So the next connection goes there.
        let (release, reported) = connection(&threads, &mut set);
        assert_eq!(threads.open_counts(), [1, 2]);
        release.send(()).expect("task waiting");
        assert_eq!(reported.await.expect("report").0, "waxosuit-http-0");

        for (release, _) in open {
            drop(release);
        }
        while set.join_next().await.is_some() {}
        assert_eq!(threads.open_counts(), [0, 0]);
    }

    #[tokio::test]
    async fn a_connection_aborted_before_it_ran_is_no_longer_counted() {
        let threads = ConnectionThreads::new(1);
        let mut set = JoinSet::new();
        let (unblock, blocked) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        threads
            .spawn(&mut set, |_| async move {
                let _ = started.send(());
                // Holds the only worker, so the next task cannot start.
                let _ = blocked.recv();
            })
            .expect("threads start");
        running.await.expect("blocker started");
        let never_run = threads
            .spawn(&mut set, |_| async { unreachable!("aborted first") })
            .expect("threads started");
        assert_eq!(threads.open_counts(), [2]);
        never_run.abort();
        unblock.send(()).expect("blocker waiting");
        let mut cancelled = 0;
        while let Some(ended) = set.join_next().await {
            cancelled += usize::from(ended.is_err_and(|e| e.is_cancelled()));
        }
        assert_eq!(cancelled, 1);
        assert_eq!(threads.open_counts(), [0]);
    }

    #[test]
    fn runtimes_start_with_the_first_connection_and_at_least_one() {
        let threads = ConnectionThreads::new(0);
        assert_eq!((threads.len(), threads.is_empty()), (1, false));
        assert!(threads.open_counts().is_empty(), "started before use");
        let mut set = JoinSet::new();
        let (tx, rx) = std::sync::mpsc::channel();
        threads
            .spawn(&mut set, move |_| async move {
                let _ = tx.send(std::thread::current().name().map(str::to_string));
            })
            .expect("threads start");
        let name = rx.recv_timeout(Duration::from_secs(5)).expect("task ran");
        assert_eq!(name.as_deref(), Some("waxosuit-http-0"));
        assert!(!ConnectionThreads::per_core().is_shut_down());
    }

    #[test]
    fn the_owner_shutting_the_set_down_stops_its_tasks() {
        let threads = ConnectionThreads::new(2);
        let mut set = JoinSet::new();
        // Each task holds a sender it drops only when the task is dropped.
        let mut alive = Vec::new();
        for _ in 0..2 {
            let (held, dropped) = oneshot::channel::<()>();
            threads
                .spawn(&mut set, move |_| async move {
                    let _held = held;
                    std::future::pending::<()>().await;
                })
                .expect("threads start");
            alive.push(dropped);
        }
        assert_eq!(threads.open_counts(), [1, 1]);
        threads.shutdown(Duration::from_secs(5));
        assert!(threads.is_shut_down());
        // Waited for: both tasks were dropped before `shutdown` returned.
        for mut dropped in alive {
            assert_eq!(
                dropped.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            );
        }
        assert_eq!(threads.open_counts(), [0, 0]);
        // Nothing more runs there, and saying why.
        let err = threads
            .spawn(&mut set, |_| async {})
            .expect_err("a shut-down set spawns nothing");
        assert!(
            err.to_string().contains("shut down by their owner"),
            "{err}"
        );
        threads.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn a_set_shut_down_before_it_started_never_starts() {
        let threads = ConnectionThreads::new(1);
        threads.shutdown(Duration::ZERO);
        assert!(threads.started().is_err());
        assert!(threads.open_counts().is_empty());
    }

    #[tokio::test]
    async fn shutting_down_inside_async_code_does_not_wait_or_panic() {
        let threads = ConnectionThreads::new(1);
        let mut set = JoinSet::new();
        threads
            .spawn(&mut set, |_| std::future::pending())
            .expect("threads start");
        threads.shutdown(Duration::from_secs(60));
        // The task is dropped with its runtime: it ends as cancelled.
        let ended = tokio::time::timeout(Duration::from_secs(5), set.join_next())
            .await
            .expect("the task ends when its runtime stops")
            .expect("one task");
        assert!(ended.is_err_and(|e| e.is_cancelled()));
    }

    #[tokio::test]
    async fn dropping_the_threads_inside_async_code_does_not_panic() {
        let threads = ConnectionThreads::new(1);
        let mut set = JoinSet::new();
        threads
            .spawn(&mut set, |_| std::future::pending())
            .expect("threads start");
        drop(threads);
        let ended = tokio::time::timeout(Duration::from_secs(5), set.join_next())
            .await
            .expect("the task ends when its runtime stops")
            .expect("one task");
        assert!(ended.is_err_and(|e| e.is_cancelled()));
    }
}
