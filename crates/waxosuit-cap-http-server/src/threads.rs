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
//! with the fewest open connections. A connection then never changes
//! thread, its socket is registered with that thread's own `epoll`, and its
//! timers live in that thread's wheel.
//!
//! Each is a multi-threaded runtime with one worker rather than a
//! current-thread runtime: an actor call that runs inline and then has to
//! wait hands its worker on through `tokio::task::block_in_place`, which
//! current-thread runtimes do not support.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::{AbortHandle, JoinSet};

/// A set of single-worker runtimes that connections are spread over.
///
/// Dropped, it stops its runtimes without waiting for them, which is
/// allowed from async code; the listeners that use it hold it until their
/// connections have drained.
pub(crate) struct ConnectionThreads {
    threads: Vec<Thread>,
}

struct Thread {
    /// `Some` until dropped; `shutdown_background` takes it by value.
    runtime: Option<Runtime>,
    handle: Handle,
    /// Connections open on this thread; its own cache line, since
    /// accepting and closing update it from different threads.
    open: Arc<Padded>,
}

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

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

    /// How many runtimes there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.threads.len()
    }

    /// Spawns a connection's task into `set`, on the thread with the fewest
    /// open connections (the lowest index on ties).
    pub(crate) fn spawn<F>(&self, set: &mut JoinSet<()>, connection: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let thread = self
            .threads
            .iter()
            .min_by_key(|t| t.open.0.load(Ordering::Relaxed))
            .expect("at least one thread, by construction");
        let open = Arc::clone(&thread.open);
        open.0.fetch_add(1, Ordering::Relaxed);
        set.spawn_on(
            async move {
                // Counted down however the task ends, aborted included.
                let _open = OpenGuard(open);
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
    /// ends on, once released.
    fn connection(
        threads: &ConnectionThreads,
        set: &mut JoinSet<()>,
    ) -> (oneshot::Sender<()>, oneshot::Receiver<(String, String)>) {
        let (release, released) = oneshot::channel::<()>();
        let (report, reported) = oneshot::channel();
        threads.spawn(set, async move {
            let name = || std::thread::current().name().unwrap_or("").to_string();
            let before = name();
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
    async fn dropping_the_threads_inside_async_code_does_not_panic() {
        let threads = ConnectionThreads::start(1).expect("runtime");
        let mut set = JoinSet::new();
        threads.spawn(&mut set, std::future::pending());
        drop(threads);
        // The task is dropped with its runtime: it ends as cancelled.
        let ended = tokio::time::timeout(Duration::from_secs(5), set.join_next())
            .await
            .expect("the task ends when its runtime stops")
            .expect("one task");
        assert!(ended.is_err_and(|e| e.is_cancelled()));
    }
}
