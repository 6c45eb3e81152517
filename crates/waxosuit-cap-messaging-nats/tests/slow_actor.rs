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

/// A provider whose actor waits for a permit of its gate per message,
/// bound as [`ACTOR`] with `values` on a new (monitored) server.
struct Setup {
    server: NatsServer,
    provider: NatsMessaging,
    gate: Arc<Semaphore>,
    delivered: mpsc::UnboundedReceiver<BrokerMessage>,
    client: async_nats::Client,
}

impl Setup {
    async fn new(values: &[(&str, &str)], permits: usize) -> Setup {
        let server = NatsServer::start_monitored().unwrap();
        let gate = Arc::new(Semaphore::new(permits));
        let (seen, delivered) = mpsc::unbounded_channel();
        let provider = NatsMessaging::new();
        provider
            .start(Arc::new(Slow {
                seen,
                gate: Arc::clone(&gate),
            }))
            .await
            .unwrap();
        let mut values: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        values.insert("URL".to_string(), server.url());
        provider
            .bind_actor(BindRequest {
                actor: ACTOR.into(),
                binding: "default".into(),
                values,
            })
            .await
            .unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        Setup {
            server,
            provider,
            gate,
            delivered,
            client,
        }
    }

    /// Publishes each `(subject, body)` and waits until the server has
    /// sent them all to the provider's connection, which reads them into
    /// its queue (or drops them) as they come.
    async fn publish(&self, messages: impl IntoIterator<Item = (&'static str, Vec<u8>)>) {
        let before = self.server.messages_sent().unwrap();
        let mut sent = 0;
        for (subject, body) in messages {
            self.client
                .publish(subject.to_string(), body.into())
                .await
                .unwrap();
            sent += 1;
        }
        self.client.flush().await.unwrap();
        let started = std::time::Instant::now();
        while self.server.messages_sent().unwrap() < before + sent {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "messages never arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A moment for the last to be read off the socket.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// The next message the actor gets.
    async fn next(&mut self) -> BrokerMessage {
        tokio::time::timeout(WAIT, self.delivered.recv())
            .await
            .expect("nothing delivered")
            .unwrap()
    }

    /// Lets the actor go, and every message it gets from now on.
    async fn release(&mut self) -> Vec<BrokerMessage> {
        self.gate.add_permits(100_000);
        let mut got = Vec::new();
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(500), self.delivered.recv()).await
        {
            got.push(message);
        }
        got
    }
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

#[tokio::test]
async fn a_slow_actor_gets_at_most_max_queued_bytes_and_the_rest_is_dropped() {
    capture_logs();
    // 1 MiB for the binding's two subjects together.
    let mut setup = Setup::new(
        &[
            ("SUBSCRIPTION", "flood,trickle"),
            (MAX_QUEUED_BYTES, "1048576"),
        ],
        0,
    )
    .await;
    // 200 messages of 100 KiB (20 MB) on two subjects while the actor
    // handles the first.
    setup
        .publish((0..200_u8).map(|i| {
            let mut body = vec![b'x'; 100 * 1024];
            body[0] = i;
            (if i % 2 == 0 { "flood" } else { "trickle" }, body)
        }))
        .await;
    let mut got = vec![setup.next().await];
    got.extend(setup.release().await);
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
    setup
        .publish((0..3_u8).map(|i| ("flood", vec![i; 10])))
        .await;
    for i in 0..3_u8 {
        assert_eq!(setup.next().await.body, vec![i; 10]);
    }
    setup.provider.shutdown().await;
}

#[tokio::test]
async fn a_slow_actor_gets_at_most_max_queued_messages() {
    let mut setup = Setup::new(&[("SUBSCRIPTION", "many"), (MAX_QUEUED_MESSAGES, "5")], 0).await;
    setup.publish((0..100_u8).map(|i| ("many", vec![i]))).await;
    let mut got = vec![setup.next().await.body[0]];
    got.extend(setup.release().await.iter().map(|m| m.body[0]));
    // The first five sent, and one more if the actor took the first while
    // the flood was still arriving (there was room again then); in order.
    assert!((5..=6).contains(&got.len()), "{got:?}");
    assert_eq!(got[..5], [0, 1, 2, 3, 4]);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    setup.provider.shutdown().await;
}

#[tokio::test]
async fn a_message_larger_than_the_whole_quota_is_dropped_and_said_so() {
    capture_logs();
    let mut setup = Setup::new(
        &[("SUBSCRIPTION", "huge"), (MAX_QUEUED_BYTES, "1000")],
        1000,
    )
    .await;
    setup
        .publish([("huge", vec![b'x'; 2000]), ("huge", vec![b'y'; 10])])
        .await;
    // The small one arrives; the large one never does.
    assert_eq!(setup.next().await.body, vec![b'y'; 10]);
    assert!(setup.release().await.is_empty());
    let warning = log_lines_with("larger than the binding's whole MAX_QUEUED_BYTES")
        .into_iter()
        .find(|l| l.contains("subject=huge"))
        .expect("the drop was not logged");
    assert!(warning.contains(ACTOR), "{warning}");
    assert!(warning.contains("max_queued_bytes=1000"), "{warning}");
    setup.provider.shutdown().await;
}

#[tokio::test]
async fn the_queue_quotas_must_be_whole_numbers_of_at_least_one() {
    let setup = Setup::new(&[("SUBSCRIPTION", "s")], 0).await;
    for (key, bad) in [
        (MAX_QUEUED_BYTES, "0"),
        (MAX_QUEUED_BYTES, "-1"),
        (MAX_QUEUED_BYTES, "64MiB"),
        (MAX_QUEUED_MESSAGES, "0"),
        (MAX_QUEUED_MESSAGES, "lots"),
    ] {
        let err = setup
            .provider
            .bind_actor(BindRequest {
                actor: ACTOR.into(),
                binding: "default".into(),
                values: HashMap::from([
                    ("URL".to_string(), setup.server.url()),
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
