//! Successful calls and guest-reported errors.

use waxosuit_runtime::{ErrorKind, Limits, RuntimeError};
use waxosuit_test_fixtures::{wapc_echo, wat_echo};

use crate::common::{load, payload};

const SIZES: [usize; 3] = [0, 1024, 64 * 1024];

#[tokio::test]
async fn wapc_guest_echoes_0b_1k_64k() -> anyhow::Result<()> {
    let actor = load(wapc_echo(), Limits::default()).await?;
    for size in SIZES {
        let data = payload(size);
        assert_eq!(actor.call("echo", &data).await?, data, "size {size}");
    }
    Ok(())
}

#[tokio::test]
async fn wat_guest_echoes_0b_1k_64k() -> anyhow::Result<()> {
    let actor = load(&wat_echo(), Limits::default()).await?;
    for size in SIZES {
        let data = payload(size);
        assert_eq!(actor.call("echo", &data).await?, data, "size {size}");
    }
    Ok(())
}

#[tokio::test]
async fn guest_error_is_typed_and_carries_the_message() -> anyhow::Result<()> {
    let actor = load(wapc_echo(), Limits::default()).await?;
    let err = actor.call("error", b"boom").await.expect_err("must fail");
    match &err {
        RuntimeError::GuestError { message, .. } => {
            assert!(message.contains("requested failure: boom"), "{message}");
        }
        other => panic!("expected GuestError, got {other:?}"),
    }
    assert!(!err.broke_instance());
    // A guest error leaves the instance usable: no instance was discarded.
    assert_eq!(actor.call("echo", b"x").await?, b"x");
    assert_eq!(actor.stats().instances_discarded, 0);

    let unknown = actor.call("no-such-op", b"").await.expect_err("must fail");
    assert_eq!(unknown.kind(), ErrorKind::GuestError);
    assert!(unknown.to_string().contains("no-such-op"), "{unknown}");
    Ok(())
}

#[tokio::test]
async fn wat_guest_error_and_missing_results_follow_wapc_semantics() -> anyhow::Result<()> {
    let actor = load(&wat_echo(), Limits::default()).await?;
    let message = |e: RuntimeError| match e {
        RuntimeError::GuestError { message, .. } => message,
        other => panic!("expected GuestError, got {other:?}"),
    };
    assert_eq!(
        message(actor.call("fail", b"").await.expect_err("fail")),
        "wat failure"
    );
    assert_eq!(
        message(actor.call("zero", b"").await.expect_err("zero")),
        "No error message set for call failure"
    );
    assert_eq!(
        message(actor.call("none", b"").await.expect_err("none")),
        "No error message OR response set for call success"
    );
    assert_eq!(actor.call("echo", b"still fine").await?, b"still fine");
    Ok(())
}
