//! Who owns the connection threads: an embedder's set is shared by the
//! providers it is given to and outlives their shutdown (so that resources
//! other providers started there during actor calls survive) until the
//! embedder shuts it down; a provider's own set stops with the provider.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use waxosuit_cap_http_server::{ConnectionThreads, HttpServerProvider};
use waxosuit_codec::http::Response;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderError,
};

const PATIENCE: Duration = Duration::from_secs(10);

/// Answers `200`, noting the OS thread each call ran on, and leaves behind
/// a task on the runtime that ran it, as a provider opening a connection
/// lazily during an actor call would. The task holds a sender until it is
/// dropped.
#[derive(Default)]
struct Recorder {
    threads: Mutex<Vec<ThreadId>>,
    lingering: Mutex<Vec<oneshot::Receiver<()>>>,
}

#[async_trait]
impl ActorDispatcher for Recorder {
    async fn dispatch(
        &self,
        _actor: &str,
        _operation: &str,
        _payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        let (held, dropped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        self.lingering.lock().unwrap().push(dropped);
        Ok(waxosuit_codec::serialize(&Response::ok()).unwrap())
    }
}

impl Recorder {
    fn threads(&self) -> Vec<ThreadId> {
        self.threads.lock().unwrap().clone()
    }

    /// How many of the lingering tasks have been dropped.
    fn dropped(&self) -> usize {
        self.lingering
            .lock()
            .unwrap()
            .iter_mut()
            .map(oneshot::Receiver::try_recv)
            .filter(|r| *r == Err(oneshot::error::TryRecvError::Closed))
            .count()
    }
}

fn bind_request(actor: &str) -> BindRequest {
    BindRequest {
        actor: actor.to_string(),
        binding: "default".to_string(),
        values: HashMap::from([
            ("ADDRESS".to_string(), "127.0.0.1".to_string()),
            ("PORT".to_string(), "0".to_string()),
        ]),
    }
}

async fn bound(provider: &HttpServerProvider, recorder: &Arc<Recorder>, actor: &str) -> SocketAddr {
    provider.start(recorder.clone()).await.unwrap();
    provider.bind_actor(bind_request(actor)).await.unwrap();
    provider.bound_address(actor).unwrap()
}

/// One request on its own connection; the status line.
async fn get(addr: SocketAddr) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("answered in time")
}

#[test]
fn providers_given_one_set_share_it_and_its_owner_stops_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // One thread, so sharing shows as the same OS thread serving both.
    let shared = Arc::new(ConnectionThreads::new(1));
    let recorder = Arc::new(Recorder::default());
    let first = HttpServerProvider::with_shared_threads(Arc::clone(&shared));
    let second = HttpServerProvider::with_shared_threads(Arc::clone(&shared));
    let apart = HttpServerProvider::with_connection_threads(1);
    runtime.block_on(async {
        for (provider, actor) in [(&first, "MA"), (&second, "MB"), (&apart, "MC")] {
            let addr = bound(provider, &recorder, actor).await;
            assert_eq!(get(addr).await, "HTTP/1.1 200 OK");
        }
        let threads = recorder.threads();
        assert_eq!(
            threads[0], threads[1],
            "the two providers did not share the set"
        );
        assert_ne!(
            threads[0], threads[2],
            "a provider's own set is not the shared one"
        );

        // The providers' shutdown leaves the shared set running, and with
        // it what other code started there; a provider's own set stops.
        for provider in [&first, &second, &apart] {
            provider.shutdown().await;
        }
        tokio::time::timeout(PATIENCE, async {
            while recorder.dropped() < 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the provider's own set stopped, and its task with it");
        assert!(!shared.is_shut_down());
        assert_eq!(
            recorder.dropped(),
            1,
            "the shared set stopped with a provider"
        );
    });

    // The owner shuts it down last, outside async code so that it waits.
    shared.shutdown(PATIENCE);
    assert!(shared.is_shut_down());
    assert_eq!(recorder.dropped(), 3, "a task outlived its set's shutdown");

    // A provider cannot serve on it any more, and says why.
    let late = HttpServerProvider::with_shared_threads(Arc::clone(&shared));
    let err = runtime.block_on(async {
        late.start(recorder.clone()).await.unwrap();
        late.bind_actor(bind_request("MD")).await.unwrap_err()
    });
    assert!(
        matches!(&err, ProviderError::Internal { message, .. }
            if message.contains("have been shut down by their owner")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_with_its_own_set_serves_again_after_shutdown() {
    let recorder = Arc::new(Recorder::default());
    let provider = HttpServerProvider::with_connection_threads(1);
    let addr = bound(&provider, &recorder, "MA").await;
    assert_eq!(get(addr).await, "HTTP/1.1 200 OK");
    provider.shutdown().await;
    provider.bind_actor(bind_request("MA")).await.unwrap();
    let addr = provider.bound_address("MA").unwrap();
    assert_eq!(get(addr).await, "HTTP/1.1 200 OK");
    provider.shutdown().await;
}
