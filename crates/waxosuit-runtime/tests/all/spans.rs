//! What a call tells the caller's span: how long it queued for an
//! instance (`waxosuit.instance.wait_us`), also when the wait ends in a
//! queue timeout or the call is dropped, and nothing when it did not wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use waxosuit_runtime::{ActorKey, ErrorKind, HostCall, HostCallError, HostCallHandler, Limits};
use waxosuit_test_fixtures::wapc_echo;

use crate::common::{key, runtime};

const WAIT: &str = "waxosuit.instance.wait_us";

/// Holds every host call until released, so the call making it keeps the
/// actor's only instance.
#[derive(Default)]
struct Gate(Notify);

impl HostCallHandler for Gate {
    type Error = HostCallError;

    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
        self.0.notified().await;
        Ok(call.payload)
    }
}

/// Every value given to the wait field: at the span's creation, then by
/// records.
#[derive(Clone, Default)]
struct Waits(Arc<Mutex<Vec<u64>>>);

impl Visit for Waits {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == WAIT {
            self.0.lock().expect("lock").push(value);
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for Waits {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        attrs.record(&mut self.clone());
    }
    fn on_record(&self, _id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        values.record(&mut self.clone());
    }
}

fn actor_span() -> tracing::Span {
    tracing::info_span!("actor", waxosuit.instance.wait_us = 0_u64)
}

#[tokio::test]
async fn a_call_that_queues_records_its_wait_and_one_that_does_not_records_nothing()
-> anyhow::Result<()> {
    let waits = Waits::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(waits.clone()));
    let gate = Arc::new(Gate::default());
    let actor = runtime()
        .load(
            key(1),
            wapc_echo(),
            Limits::default().instances(1, 1),
            gate.clone(),
        )
        .await?;

    // An idle instance: the span keeps the 0 it was made with.
    let reply = actor.call("echo", b"x").instrument(actor_span()).await?;
    assert_eq!(reply, b"x");
    assert_eq!(*waits.0.lock().expect("lock"), [0]);

    // The only instance is held by a call suspended in a host call; the
    // next call queues until that one is released, 50 ms later.
    let holder = tokio::spawn({
        let actor = actor.clone();
        async move { actor.call("ping", b"held").await }
    });
    tokio::task::yield_now().await;
    let queued = actor.call("echo", b"y").instrument(actor_span());
    let release = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.0.notify_one();
    };
    let (reply, ()) = tokio::join!(queued, release);
    assert_eq!(reply?, b"y");
    holder.await??;
    let waits = waits.0.lock().expect("lock").clone();
    assert_eq!(
        waits.len(),
        3,
        "made with 0, made with 0, one record: {waits:?}"
    );
    assert_eq!(&waits[..2], [0, 0]);
    assert!(waits[2] >= 40_000, "queued for about 50 ms: {waits:?} µs");
    Ok(())
}

#[tokio::test]
async fn a_wait_that_times_out_or_is_dropped_is_recorded() -> anyhow::Result<()> {
    let waits = Waits::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(waits.clone()));
    let gate = Arc::new(Gate::default());
    let limits = Limits::default()
        .instances(1, 1)
        .queue_timeout(Duration::from_millis(60));
    let actor = runtime()
        .load(key(1), wapc_echo(), limits, gate.clone())
        .await?;
    let holder = tokio::spawn({
        let actor = actor.clone();
        async move { actor.call("ping", b"held").await }
    });
    tokio::task::yield_now().await;

    let err = actor
        .call("echo", b"late")
        .instrument(actor_span())
        .await
        .expect_err("queue timeout");
    assert_eq!(err.kind(), ErrorKind::QueueTimeout, "{err}");
    // Dropped while it waits, after 30 ms.
    let dropped = tokio::time::timeout(
        Duration::from_millis(30),
        actor.call("echo", b"gone").instrument(actor_span()),
    )
    .await;
    assert!(dropped.is_err(), "the call was still waiting");

    gate.0.notify_one();
    holder.await??;
    let waits = waits.0.lock().expect("lock").clone();
    assert_eq!(
        waits.len(),
        4,
        "made with 0 and one record, twice: {waits:?}"
    );
    assert_eq!([waits[0], waits[2]], [0, 0]);
    assert!(waits[1] >= 50_000, "timed out after 60 ms: {waits:?} µs");
    assert!(
        (20_000..2_000_000).contains(&waits[3]),
        "dropped after 30 ms: {waits:?} µs"
    );
    Ok(())
}
