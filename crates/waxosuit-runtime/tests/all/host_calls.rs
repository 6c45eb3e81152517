//! Guest → host calls on every ABI generation.

use std::sync::Arc;

use waxosuit_runtime::{Limits, RuntimeError};
use waxosuit_test_fixtures::{wapc_echo, wat_echo, wat_legacy4, wat_legacy6};

use crate::common::{TestHandler, key, load_with, payload};

fn pong(data: &[u8]) -> Vec<u8> {
    let mut v = b"pong:".to_vec();
    v.extend_from_slice(data);
    v
}

#[tokio::test]
async fn ping_routes_through_the_handler_for_every_abi() -> anyhow::Result<()> {
    let modules = [
        ("wapc-guest (8 args)", wapc_echo().to_vec(), "ping"),
        ("wat 8 args", wat_echo(), "ping"),
        ("wat 6 args", wat_legacy6(), "anything"),
        ("wat 4 args", wat_legacy4(), "anything"),
    ];
    for (name, module, op) in modules {
        let handler = Arc::new(TestHandler::default());
        let actor = load_with(&module, Limits::default(), Arc::clone(&handler)).await?;
        for size in [0, 1024, 64 * 1024] {
            let data = payload(size);
            assert_eq!(
                actor.call(op, &data).await?,
                pong(&data),
                "{name} size {size}"
            );
        }
        let calls = handler.calls();
        assert_eq!(calls.len(), 3, "{name}");
        for (who, call) in calls {
            assert_eq!(who, key(1), "{name}");
            assert_eq!(
                (&*call.binding, &*call.namespace, &*call.operation),
                ("default", "test:ping", "Ping"),
                "{name}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn host_error_reaches_the_guest() -> anyhow::Result<()> {
    for (module, op) in [
        (wapc_echo().to_vec(), "ping"),
        (wat_echo(), "ping"),
        (wat_legacy6(), "x"),
        (wat_legacy4(), "x"),
    ] {
        let actor = load_with(&module, Limits::default(), Arc::new(TestHandler::default())).await?;
        let err = actor.call(op, b"fail").await.expect_err("host error");
        match &err {
            RuntimeError::GuestError { message, .. } => {
                assert!(message.contains("host says no"), "{message}");
            }
            other => panic!("expected GuestError, got {other:?}"),
        }
        assert!(!err.broke_instance());
        assert_eq!(actor.call(op, b"ok").await?, pong(b"ok"));
    }
    Ok(())
}
