//! The actor side of downloads, for the suite: records every
//! `ReceiveChunk` and lets a check wait for them without a runtime of its
//! own.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use waxosuit_codec::blobstore::{FileChunk, OP_RECEIVE_CHUNK};
use waxosuit_provider::{ActorDispatcher, DispatchError};

#[derive(Default)]
struct Recorded {
    chunks: Vec<FileChunk>,
    /// Tasks waiting for chunks.
    waiting: Vec<Waker>,
}

/// Records the `ReceiveChunk` calls a provider makes (every other
/// operation is refused), answering each with an empty reply, and how many
/// were ever in progress at once.
#[derive(Clone, Default)]
pub struct Recorder {
    recorded: Arc<Mutex<Recorded>>,
    in_progress: Arc<AtomicUsize>,
    most_in_progress: Arc<AtomicUsize>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("chunks", &self.recorded.lock().chunks.len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder with nothing recorded.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// The dispatcher to start a provider with.
    pub fn dispatcher(&self) -> Arc<dyn ActorDispatcher> {
        Arc::new(self.clone())
    }

    /// Every chunk so far, in the order received.
    pub fn chunks(&self) -> Vec<FileChunk> {
        self.recorded.lock().chunks.clone()
    }

    /// The most `ReceiveChunk` calls that were ever in progress at once.
    pub fn most_in_progress(&self) -> usize {
        self.most_in_progress.load(Ordering::SeqCst)
    }

    /// The chunks whose context is `context`, once `count` have come or
    /// `within` has passed (then what has come). Runtime-agnostic: a
    /// thread of its own wakes the wait at the deadline.
    pub async fn wait_for(&self, context: &str, count: usize, within: Duration) -> Vec<FileChunk> {
        let timed_out = Arc::new(AtomicBool::new(false));
        let mut timer_started = false;
        poll_fn(|cx| {
            let mut recorded = self.recorded.lock();
            let got: Vec<FileChunk> = recorded
                .chunks
                .iter()
                .filter(|c| c.context.as_deref() == Some(context))
                .cloned()
                .collect();
            if got.len() >= count || within.is_zero() || timed_out.load(Ordering::SeqCst) {
                return Poll::Ready(got);
            }
            // Registered under the lock the recorder pushes under, so no
            // chunk can arrive unseen between the count and the wait.
            recorded.waiting.push(cx.waker().clone());
            if !timer_started {
                timer_started = true;
                let (flag, waker) = (Arc::clone(&timed_out), cx.waker().clone());
                std::thread::spawn(move || {
                    std::thread::sleep(within);
                    flag.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        })
        .await
    }
}

#[async_trait]
impl ActorDispatcher for Recorder {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let refuse = |message: String| DispatchError::Actor {
            actor: actor.to_string(),
            operation: operation.to_string(),
            message,
        };
        if operation != OP_RECEIVE_CHUNK {
            return Err(refuse(
                "the conformance recorder takes only ReceiveChunk".into(),
            ));
        }
        let chunk: FileChunk = waxosuit_codec::deserialize(&payload)
            .map_err(|e| refuse(format!("undecodable ReceiveChunk: {e}")))?;
        let now = self.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_progress.fetch_max(now, Ordering::SeqCst);
        // One turn of the executor, so a provider that does not wait for
        // each call gets the chance to overlap them.
        yield_now().await;
        self.in_progress.fetch_sub(1, Ordering::SeqCst);
        let waiting = {
            let mut recorded = self.recorded.lock();
            recorded.chunks.push(chunk);
            std::mem::take(&mut recorded.waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
        Ok(Vec::new())
    }
}

/// Pending once, waking itself at once: whatever else the executor has
/// ready runs first.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(context: &str, sequence_no: u64) -> Vec<u8> {
        waxosuit_codec::serialize(&FileChunk {
            sequence_no,
            context: Some(context.into()),
            ..FileChunk::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn waits_for_chunks_and_gives_up_at_the_deadline() {
        let recorder = Recorder::new();
        let sender = recorder.clone();
        let task = tokio::spawn(async move {
            for seq in 0..3 {
                sender
                    .dispatch("MA", OP_RECEIVE_CHUNK, chunk("a", seq))
                    .await
                    .unwrap();
            }
        });
        let got = recorder.wait_for("a", 3, Duration::from_secs(30)).await;
        assert_eq!(
            got.iter().map(|c| c.sequence_no).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        task.await.unwrap();
        assert_eq!(recorder.most_in_progress(), 1);

        let start = std::time::Instant::now();
        let got = recorder.wait_for("b", 1, Duration::from_millis(50)).await;
        assert!(got.is_empty());
        assert!(start.elapsed() >= Duration::from_millis(50));

        let err = recorder
            .dispatch("MA", "DeliverMessage", chunk("a", 9))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("takes only ReceiveChunk"), "{err}");
        let err = recorder
            .dispatch("MA", OP_RECEIVE_CHUNK, b"\xc1".to_vec())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("undecodable ReceiveChunk"),
            "{err}"
        );
        assert_eq!(recorder.chunks().len(), 3);
    }
}
