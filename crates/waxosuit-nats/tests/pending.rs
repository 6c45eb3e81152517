//! `PendingSubscriber` against a real `nats-server` on a free loopback port:
//! a consumer that does not keep up holds at most its bounds, and the rest
//! is dropped and reported, not queued.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use waxosuit_nats::{Dropped, PendingBudget, PendingSubscriber};
use waxosuit_test_servers::NatsServer;

const PATIENCE: Duration = Duration::from_secs(20);

/// Drops seen by `on_drop`, by reason.
#[derive(Default)]
struct Drops(Mutex<Vec<Dropped>>);

impl Drops {
    fn count(&self, reason: Dropped) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| **r == reason)
            .count()
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn subscribe(
    client: &async_nats::Client,
    subject: &str,
    budget: PendingBudget,
) -> (PendingSubscriber, Arc<Drops>) {
    let drops = Arc::new(Drops::default());
    let seen = Arc::clone(&drops);
    let subscriber = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    let pending = PendingSubscriber::new(subscriber, budget, move |_, why| {
        seen.0.lock().unwrap().push(why);
    });
    (pending, drops)
}

/// Publishes `count` messages of `size` bytes, numbered in their first
/// byte, and waits until the server has sent them all.
async fn publish(client: &async_nats::Client, subject: &str, count: u8, size: usize) {
    for i in 0..count {
        let mut body = vec![b'x'; size];
        body[0] = i;
        client
            .publish(subject.to_string(), Bytes::from(body))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

/// Waits until `held` messages are held and the rest of `sent` dropped.
async fn settle(budget: &PendingBudget, drops: &Drops, sent: usize, held_at_least: usize) {
    let started = Instant::now();
    while drops.total() + held_at_least < sent || budget.held_messages() == 0 {
        assert!(started.elapsed() < PATIENCE, "messages never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let anything still on its way arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_slow_consumer_holds_at_most_its_bytes_and_the_rest_is_dropped() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let budget = PendingBudget::new(1000, 1024 * 1024);
    let (mut pending, drops) = subscribe(&client, "big", budget.clone()).await;

    // 100 messages of 100 KiB (10 MB) for a budget of 1 MiB, none taken.
    publish(&client, "big", 100, 100 * 1024).await;
    settle(&budget, &drops, 100, 10).await;
    let held = budget.held_bytes();
    eprintln!(
        "held {held} bytes of a {}-byte budget; {} messages dropped",
        budget.max_bytes(),
        drops.total()
    );
    assert!(held <= budget.max_bytes(), "{held}");
    assert!(held >= 9 * 100 * 1024, "the budget was not used: {held}");
    assert_eq!(drops.count(Dropped::TooManyBytes), drops.total());

    // The consumer gets what was held, whole and in order; nothing else.
    let mut got = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(300), pending.next()).await
    {
        assert_eq!(message.payload.len(), 100 * 1024);
        got.push(message.payload[0]);
    }
    assert_eq!(
        got.len() + drops.total(),
        100,
        "a message was lost unreported"
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    assert_eq!(got[0], 0, "the first ones are kept, later ones dropped");

    // Taken messages give their bytes back: new ones are held again.
    assert_eq!((budget.held_messages(), budget.held_bytes()), (0, 0));
    publish(&client, "big", 5, 100 * 1024).await;
    for _ in 0..5 {
        let message = tokio::time::timeout(PATIENCE, pending.next())
            .await
            .expect("a message within the budget was not delivered")
            .unwrap();
        assert_eq!(message.payload.len(), 100 * 1024);
    }
}

#[tokio::test]
async fn the_message_bound_and_a_shared_budget_both_hold() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();

    // Small messages: the count is what stops them.
    let roomy = PendingBudget::new(3, 64 * 1024 * 1024);
    let (mut few, drops) = subscribe(&client, "small", roomy.clone()).await;
    publish(&client, "small", 50, 10).await;
    settle(&roomy, &drops, 50, 3).await;
    assert_eq!(drops.count(Dropped::TooManyMessages), 47);
    for expected in 0..3 {
        assert_eq!(few.next().await.unwrap().payload[0], expected);
    }

    // One budget for two subscriptions: together they hold no more.
    let shared = PendingBudget::new(1000, 256 * 1024 - 1);
    let (_a, drops_a) = subscribe(&client, "a", shared.clone()).await;
    let (_b, drops_b) = subscribe(&client, "b", shared.clone()).await;
    publish(&client, "a", 20, 64 * 1024).await;
    publish(&client, "b", 20, 64 * 1024).await;
    let started = Instant::now();
    while drops_a.total() + drops_b.total() < 37 {
        assert!(started.elapsed() < PATIENCE, "messages never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(shared.held_bytes() <= shared.max_bytes());
    assert_eq!(drops_a.total() + drops_b.total(), 37, "3 of 64 KiB fit");
    assert_eq!(shared.held_messages(), 3);

    // And a shared count: 5 messages over two subjects.
    let five = PendingBudget::new(5, 1024 * 1024);
    let (_c, drops_c) = subscribe(&client, "c", five.clone()).await;
    let (_d, drops_d) = subscribe(&client, "d", five.clone()).await;
    publish(&client, "c", 4, 10).await;
    publish(&client, "d", 4, 10).await;
    let started = Instant::now();
    while drops_c.total() + drops_d.total() < 3 {
        assert!(started.elapsed() < PATIENCE, "messages never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(five.held_messages(), 5);
    assert_eq!(
        drops_c.count(Dropped::TooManyMessages) + drops_d.count(Dropped::TooManyMessages),
        3
    );

    // A message larger than the whole budget is dropped, never waited for.
    let (mut one, drops) = subscribe(&client, "huge", PendingBudget::new(10, 1024)).await;
    publish(&client, "huge", 1, 2048).await;
    publish(&client, "huge", 1, 100).await;
    let message = tokio::time::timeout(PATIENCE, one.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.payload.len(), 100);
    assert_eq!(drops.count(Dropped::TooManyBytes), 1);
}

#[tokio::test]
async fn dropping_the_pending_subscriber_unsubscribes() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let (pending, drops) = subscribe(&client, "gone", PendingBudget::new(10, 1024 * 1024)).await;
    // The reader task holds the `on_drop` closure, which holds `drops`:
    // once the task has ended, only this test does.
    assert_eq!(Arc::strong_count(&drops), 2);
    drop(pending);
    let started = Instant::now();
    while Arc::strong_count(&drops) > 1 {
        assert!(
            started.elapsed() < PATIENCE,
            "the reader task outlived its subscriber"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // With no subscriber left the server knows there is no responder.
    let started = Instant::now();
    loop {
        let asked = tokio::time::timeout(
            Duration::from_millis(300),
            client.request("gone", Bytes::new()),
        );
        match asked.await {
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => break,
            _ => {
                assert!(started.elapsed() < PATIENCE, "still subscribed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
