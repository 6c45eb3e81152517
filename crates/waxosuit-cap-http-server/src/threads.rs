//! Connection threads: where accepted connections are served.
//!
//! On tokio's multi-threaded runtime a connection's task does not stay on
//! one core: the worker that polls the I/O driver schedules every task it
//! wakes, and an idle worker steals half of another's queue. For a plain
//! hyper server that costs little. For the host it means each request's
//! buffers, the actor's wasm instance and its pool shard, and the task's
//! waker cross cores, request after request: measured with `wrk`, the full
//! host needed about 0.6 µs more CPU per request on two workers than on
//! one, while native hyper costs the same either way
//! (`docs/http-benchmarks.md`).
//!
//! So the provider serves connections on a set of single-worker runtimes,
//! one per core by default, and places each accepted connection on the one
//! with the fewest open connections. A connection then stays on that
//! runtime: its socket is registered with the runtime's own `epoll`, its
//! timers live in the runtime's wheel, and its task is never stolen. (The
//! runtime's one worker can still move to another OS thread, when an inline
//! actor call hands it on through `block_in_place`.)
//!
//! The sets are shared by every provider of the process that asks for the
//! same number of threads, and are never stopped. Actor calls run on these
//! threads, and so do the host calls they make. A provider that opens a
//! connection or spawns a task lazily while serving such a call (a Redis
//! connection on first use, a download streamed in the background) has
//! registered it here. Stopping the threads with one HTTP server would
//! silently kill resources that other providers still use.
//!
//! Each is a multi-threaded runtime with one worker rather than a
//! current-thread runtime: an actor call that runs inline and then has to
//! wait hands its worker on through `tokio::task::block_in_place`, which
//! current-thread runtimes do not support.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::{AbortHandle, JoinSet};

/// A set of single-worker runtimes that connections are spread over.
///
/// Dropped, it stops its runtimes without waiting for them, which is
/// allowed from async code. Only the tests drop one: the server uses the
/// process-wide sets of [`ConnectionThreads::shared`].
pub(crate) struct ConnectionThreads {
    threads: Vec<Thread>,
}

/// The process's sets, one per thread count asked for.
static SHARED: Mutex<Vec<Arc<ConnectionThreads>>> = Mutex::new(Vec::new());

struct Thread {
    /// `Some` until dropped; `shutdown_background` takes it by value.
    runtime: Option<Runtime>,
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
    /// Starts `count` runtimes (at least one), named `waxosuit-http-N`.
    pub(crate) fn start(count: usize) -> io::Result<ConnectionThreads> {
        let threads = (0..count.max(1))
            .map(|index| {
                let runtime = Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("waxosuit-http-{index}"))
                    .enable_all()
                    .build()?;
                Ok(Thread {
                    handle: runtime.handle().clone(),
                    runtime: Some(runtime),
                    open: Arc::default(),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ConnectionThreads { threads })
    }

    /// The process-wide set of `count` threads (at least one), started on
    /// first use and kept until the process exits.
    pub(crate) fn shared(count: usize) -> io::Result<Arc<ConnectionThreads>> {
        let count = count.max(1);
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(threads) = shared.iter().find(|t| t.len() == count) {
            return Ok(Arc::clone(threads));
        }
        let threads = Arc::new(ConnectionThreads::start(count)?);
        shared.push(Arc::clone(&threads));
        Ok(threads)
    }

    /// How many runtimes there are.
    pub(crate) fn len(&self) -> usize {
        self.threads.len()
    }

    /// Spawns a connection's task into `set`, on the thread with the fewest
    /// open connections (the lowest index on ties). `connection` gets the
    /// index of that thread, below [`len`](Self::len), so it can use
    /// per-thread state that no other thread writes.
    pub(crate) fn spawn<F>(
        &self,
        set: &mut JoinSet<()>,
        connection: impl FnOnce(usize) -> F,
    ) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (index, thread) = self
            .threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.open.0.load(Ordering::Relaxed))
            .expect("at least one thread, by construction");
        let connection = connection(index);
        // Counted up here and down when the task is dropped, however it
        // ends: aborted before its first poll included.
        let open = OpenGuard::new(Arc::clone(&thread.open));
        set.spawn_on(
            async move {
                let _open = open;
                connection.await;
            },
            &thread.handle,
        )
    }

    /// Open connections per thread, in thread order.
    #[cfg(test)]
    pub(crate) fn open_counts(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|t| t.open.0.load(Ordering::Relaxed))
            .collect()
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
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        threads.spawn(set, |index| async move {
            let name = || std::thread::current().name().unwrap_or("").to_string();
            let before = name();
            assert_eq!(before, format!("waxosuit-http-{index}"));
            let _ = released.await;
            let _ = report.send((before, name()));
        });
        (release, reported)
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_thread_and_stay_there() {
        let threads = ConnectionThreads::start(2).expect("runtimes");
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
        let threads = ConnectionThreads::start(1).expect("runtime");
        let mut set = JoinSet::new();
        let (unblock, blocked) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        threads.spawn(&mut set, |_| async move {
            let _ = started.send(());
            // Holds the only worker, so the next task cannot start.
            let _ = blocked.recv();
        });
        running.await.expect("blocker started");
        let never_run = threads.spawn(&mut set, |_| async { unreachable!("aborted first") });
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
    fn the_shared_sets_are_one_per_thread_count() {
        let one = ConnectionThreads::shared(1).expect("runtime");
        let again = ConnectionThreads::shared(0).expect("at least one thread");
        assert!(Arc::ptr_eq(&one, &again));
        let three = ConnectionThreads::shared(3).expect("runtimes");
        assert_eq!((one.len(), three.len()), (1, 3));
    }

    #[tokio::test]
    async fn dropping_the_threads_inside_async_code_does_not_panic() {
        let threads = ConnectionThreads::start(1).expect("runtime");
        let mut set = JoinSet::new();
        threads.spawn(&mut set, |_| std::future::pending());
        drop(threads);
        // The task is dropped with its runtime: it ends as cancelled.
        let ended = tokio::time::timeout(Duration::from_secs(5), set.join_next())
            .await
            .expect("the task ends when its runtime stops")
            .expect("one task");
        assert!(ended.is_err_and(|e| e.is_cancelled()));
    }
}
