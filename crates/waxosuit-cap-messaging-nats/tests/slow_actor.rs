//! An actor slower than its publishers, against a real `nats-server`: the
//! binding holds at most `MAX_QUEUED_BYTES` of messages for it, drops the
//! rest as they arrive, and says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};
use waxosuit_cap_messaging_nats::{MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, NatsMessaging};
use waxosuit_codec::messaging::BrokerMessage;
use waxosuit_provider::{ActorDispatcher, BindRequest, CapabilityProvider, DispatchError};
use waxosuit_test_servers::NatsServer;

const WAIT: Duration = Duration::from_secs(10);
const ACTOR: &str = "MSLOWACTOR";

/// Reports each message it gets, then waits for a permit of `gate`.
struct Slow {
    seen: mpsc::UnboundedSender<BrokerMessage>,
    gate: Arc<Semaphore>,
}

#[async_trait]
impl ActorDispatcher for Slow {
    async fn dispatch(
        &self,
        _actor: &str,
        _operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let message: BrokerMessage = waxosuit_codec::deserialize(&payload).unwrap();
        self.seen.send(message).unwrap();
        self.gate.acquire().await.unwrap().forget();
        Ok(Vec::new())
    }
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn bind(provider: &NatsMessaging, url: String, pending: &str) {
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: "default".into(),
            values: HashMap::from([
                ("URL".to_string(), url),
                ("SUBSCRIPTION".to_string(), "flood,trickle".to_string()),
                (MAX_QUEUED_BYTES.to_string(), pending.to_string()),
            ]),
        })
        .await
        .unwrap();
}

/// Routes every test's log lines into [`LOGS`]; tests tell theirs apart by
/// subject.
fn capture_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .init();
    });
}

fn log_lines_with(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Waits until the server has sent `count` messages in all, then a moment
/// for the last to be read off the socket.
async fn until_sent(server: &NatsServer, count: u64) {
    let started = std::time::Instant::now();
    while server.messages_sent().unwrap() < count {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_slow_actor_gets_at_most_max_pending_bytes_and_the_rest_is_dropped() {
    capture_logs();
    let server = NatsServer::start_monitored().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (seen, mut delivered) = mpsc::unbounded_channel();
    let provider = NatsMessaging::new();
    provider
        .start(Arc::new(Slow {
            seen,
            gate: Arc::clone(&gate),
        }))
        .await
        .unwrap();
    // 1 MiB for the binding's two subjects together.
    bind(&provider, server.url(), "1048576").await;

    // 200 messages of 100 KiB (20 MB) on two subjects while the actor
    // handles the first.
    let client = async_nats::connect(server.url()).await.unwrap();
    let before = server.messages_sent().unwrap();
    for i in 0..200_u8 {
        let subject = if i % 2 == 0 { "flood" } else { "trickle" };
        let mut body = vec![b'x'; 100 * 1024];
        body[0] = i;
        client
            .publish(subject.to_string(), body.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let first = tokio::time::timeout(WAIT, delivered.recv())
        .await
        .expect("nothing delivered")
        .unwrap();
    // Until all 200 have reached the provider's connection, which reads
    // them into its queue (or drops them) as they come.
    until_sent(&server, before + 200).await;

    gate.add_permits(1000);
    let mut got = vec![first];
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), delivered.recv()).await
    {
        got.push(message);
    }
    eprintln!("{} of 200 messages of 100 KiB delivered", got.len());
    // What fits in 1 MiB (ten), plus one in the actor's hands per subject.
    assert!(got.len() <= 12, "{} delivered", got.len());
    assert!(got.len() >= 10, "the budget was not used: {}", got.len());
    assert!(got.iter().all(|m| m.body.len() == 100 * 1024));
    for subject in ["flood", "trickle"] {
        let order: Vec<u8> = got
            .iter()
            .filter(|m| m.subject == subject)
            .map(|m| m.body[0])
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }
    // (Other tests of this binary log too: only this one's subjects.)
    let warnings: Vec<String> = log_lines_with("one was dropped")
        .into_iter()
        .filter(|l| l.contains("subject=flood") || l.contains("subject=trickle"))
        .collect();
    let warning = warnings.first().expect("the drops were not logged");
    assert!(warning.contains(ACTOR), "{warning}");
    assert!(warning.contains("raise MAX_QUEUED_BYTES"), "{warning}");
    // At most one line per subscription for the whole flood.
    assert!(warnings.len() <= 2, "the log was flooded: {warnings:?}");

    // Once the actor has caught up, messages are delivered again.
    for i in 0..3_u8 {
        client
            .publish("flood".to_string(), vec![i; 10].into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for i in 0..3_u8 {
        let message = tokio::time::timeout(WAIT, delivered.recv())
            .await
            .expect("a message after the flood was not delivered")
            .unwrap();
        assert_eq!(message.body, vec![i; 10]);
    }
    provider.shutdown().await;
}

#[tokio::test]
async fn a_slow_actor_gets_at_most_max_queued_messages() {
    let server = NatsServer::start_monitored().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (seen, mut delivered) = mpsc::unbounded_channel();
    let provider = NatsMessaging::new();
    provider
        .start(Arc::new(Slow {
            seen,
            gate: Arc::clone(&gate),
        }))
        .await
        .unwrap();
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: "default".into(),
            values: HashMap::from([
                ("URL".to_string(), server.url()),
                ("SUBSCRIPTION".to_string(), "many".to_string()),
                (MAX_QUEUED_MESSAGES.to_string(), "5".to_string()),
            ]),
        })
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let before = server.messages_sent().unwrap();
    for i in 0..100_u8 {
        client
            .publish("many".to_string(), vec![i].into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let first = tokio::time::timeout(WAIT, delivered.recv())
        .await
        .expect("nothing delivered")
        .unwrap();
    until_sent(&server, before + 100).await;
    gate.add_permits(1000);
    let mut got = vec![first.body[0]];
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), delivered.recv()).await
    {
        got.push(message.body[0]);
    }
    // Five waiting, and the one in the actor's hands if it took it before
    // the fifth arrived: the first ones sent, in order.
    assert!((5..=6).contains(&got.len()), "{got:?}");
    assert!(
        got.iter().enumerate().all(|(i, b)| usize::from(*b) == i),
        "{got:?}"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn a_message_larger_than_the_whole_quota_is_dropped_and_said_so() {
    capture_logs();
    let server = NatsServer::start().unwrap();
    let (seen, mut delivered) = mpsc::unbounded_channel();
    let provider = NatsMessaging::new();
    provider
        .start(Arc::new(Slow {
            seen,
            gate: Arc::new(Semaphore::new(1000)),
        }))
        .await
        .unwrap();
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: "default".into(),
            values: HashMap::from([
                ("URL".to_string(), server.url()),
                ("SUBSCRIPTION".to_string(), "huge".to_string()),
                (MAX_QUEUED_BYTES.to_string(), "1000".to_string()),
            ]),
        })
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    client
        .publish("huge".to_string(), vec![b'x'; 2000].into())
        .await
        .unwrap();
    client
        .publish("huge".to_string(), vec![b'y'; 10].into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    // The small one arrives; the large one never does.
    let message = tokio::time::timeout(WAIT, delivered.recv())
        .await
        .expect("the small message was not delivered")
        .unwrap();
    assert_eq!(message.body, vec![b'y'; 10]);
    let warning = log_lines_with("larger than the binding's whole MAX_QUEUED_BYTES")
        .into_iter()
        .find(|l| l.contains("subject=huge"))
        .expect("the drop was not logged");
    assert!(warning.contains(ACTOR), "{warning}");
    assert!(warning.contains("max_queued_bytes=1000"), "{warning}");
    provider.shutdown().await;
}

#[tokio::test]
async fn the_queue_quotas_must_be_whole_numbers_of_at_least_one() {
    let server = NatsServer::start().unwrap();
    let provider = NatsMessaging::new();
    let (seen, _delivered) = mpsc::unbounded_channel();
    provider
        .start(Arc::new(Slow {
            seen,
            gate: Arc::new(Semaphore::new(0)),
        }))
        .await
        .unwrap();
    for (key, bad) in [
        (MAX_QUEUED_BYTES, "0"),
        (MAX_QUEUED_BYTES, "-1"),
        (MAX_QUEUED_BYTES, "64MiB"),
        (MAX_QUEUED_MESSAGES, "0"),
        (MAX_QUEUED_MESSAGES, "lots"),
    ] {
        let err = provider
            .bind_actor(BindRequest {
                actor: ACTOR.into(),
                binding: "default".into(),
                values: HashMap::from([
                    ("URL".to_string(), server.url()),
                    ("SUBSCRIPTION".to_string(), "s".to_string()),
                    (key.to_string(), bad.to_string()),
                ]),
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
        assert!(err.contains(ACTOR), "{err}");
        assert!(err.contains("whole number of at least 1"), "{err}");
    }
}
