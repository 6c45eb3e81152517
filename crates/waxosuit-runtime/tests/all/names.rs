//! Binding, namespace and operation names in a guest's host call have
//! their own small limits, on every ABI generation: a longer name is a
//! protocol fault reported to the guest as a host error, never reaches the
//! handler, and leaves the host and the actor fine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use waxosuit_runtime::{
    ErrorKind, Limits, MAX_BINDING_NAME_LEN, MAX_NAMESPACE_LEN, MAX_OPERATION_NAME_LEN,
    RuntimeError,
};

use crate::common::{Abi, TestHandler, caller_guest, host_call_request, load_with};

fn name(len: usize) -> Vec<u8> {
    vec![b'n'; len]
}

/// What a request names, per ABI: (binding, namespace, operation) as the
/// guest passes them, and the names the handler should then see.
fn request(abi: Abi, binding: &[u8], namespace: &[u8], operation: &[u8]) -> Vec<u8> {
    match abi {
        Abi::Route => {
            let route = [namespace, b"!".as_slice(), operation].concat();
            host_call_request(b"", b"", &route, b"payload")
        }
        Abi::Binding | Abi::Namespace => {
            host_call_request(binding, namespace, operation, b"payload")
        }
    }
}

fn assert_name_too_long(err: &RuntimeError, what: &str, size: usize, limit: usize) {
    match err {
        RuntimeError::NameTooLong {
            what: got,
            size: got_size,
            limit: got_limit,
            ..
        } => assert_eq!((*got, *got_size, *got_limit), (what, size, limit), "{err}"),
        other => panic!("expected NameTooLong for the {what}, got {other:?}"),
    }
    let text = err.to_string();
    for needle in [
        format!("{what} name is {size} bytes long"),
        format!("over the {limit}-byte limit"),
        "fix the guest".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} missing from: {text}");
    }
    assert!(!err.broke_instance(), "a refused name is not a trap: {err}");
}

#[tokio::test]
async fn names_at_their_limits_pass_and_longer_ones_are_refused_on_every_abi() -> anyhow::Result<()>
{
    let ok_binding = name(MAX_BINDING_NAME_LEN);
    let ok_namespace = [b"acme:".as_slice(), &name(MAX_NAMESPACE_LEN - 5)].concat();
    let ok_operation = name(MAX_OPERATION_NAME_LEN);
    for abi in [Abi::Binding, Abi::Namespace, Abi::Route] {
        let handler = Arc::new(TestHandler::default());
        let actor = load_with(&caller_guest(abi), Limits::default(), Arc::clone(&handler)).await?;

        // At the limits: the call reaches the handler (which has no route
        // for it and says so: a host error the guest reports).
        let err = actor
            .call(
                "call",
                &request(abi, &ok_binding, &ok_namespace, &ok_operation),
            )
            .await
            .expect_err("the test handler routes only test:ping");
        assert_eq!(err.kind(), ErrorKind::GuestError, "{abi:?}: {err}");
        assert!(err.to_string().contains("no route for"), "{abi:?}: {err}");
        let calls = handler.calls();
        assert_eq!(calls.len(), 1, "{abi:?}");
        let seen = &calls[0].1;
        let expected_binding = if abi == Abi::Binding {
            ok_binding.as_slice()
        } else {
            b"default".as_slice()
        };
        assert_eq!(seen.binding.as_bytes(), expected_binding, "{abi:?}");
        assert_eq!(seen.namespace.as_bytes(), ok_namespace, "{abi:?}");
        assert_eq!(seen.operation.as_bytes(), ok_operation, "{abi:?}");

        // One byte over, each name in turn. A legacy route is bounded as a
        // whole too, so there the other part is kept short.
        let (operation, namespace) = if abi == Abi::Route {
            (b"x".as_slice(), b"x".as_slice())
        } else {
            (ok_operation.as_slice(), ok_namespace.as_slice())
        };
        let mut cases = vec![
            (
                request(abi, &ok_binding, &name(MAX_NAMESPACE_LEN + 1), operation),
                "namespace",
                MAX_NAMESPACE_LEN + 1,
                MAX_NAMESPACE_LEN,
            ),
            (
                request(
                    abi,
                    &ok_binding,
                    namespace,
                    &name(MAX_OPERATION_NAME_LEN + 1),
                ),
                "operation",
                MAX_OPERATION_NAME_LEN + 1,
                MAX_OPERATION_NAME_LEN,
            ),
        ];
        if abi == Abi::Binding {
            cases.push((
                request(
                    abi,
                    &name(MAX_BINDING_NAME_LEN + 1),
                    &ok_namespace,
                    &ok_operation,
                ),
                "binding",
                MAX_BINDING_NAME_LEN + 1,
                MAX_BINDING_NAME_LEN,
            ));
        }
        for (req, what, size, limit) in cases {
            let err = actor.call("call", &req).await.expect_err(what);
            assert_name_too_long(&err, what, size, limit);
            assert_eq!(
                actor.call("echo", b"fine").await?,
                b"fine",
                "{abi:?} {what}"
            );
        }
        assert_eq!(
            handler.calls().len(),
            1,
            "{abi:?}: refused names reach no handler"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_legacy_route_longer_than_both_limits_together_is_refused_whole() -> anyhow::Result<()> {
    let handler = Arc::new(TestHandler::default());
    let actor = load_with(
        &caller_guest(Abi::Route),
        Limits::default(),
        Arc::clone(&handler),
    )
    .await?;
    let route_limit = MAX_NAMESPACE_LEN + 1 + MAX_OPERATION_NAME_LEN;
    let err = actor
        .call(
            "call",
            &host_call_request(b"", b"", &name(route_limit + 1), b""),
        )
        .await
        .expect_err("too long");
    assert_name_too_long(&err, "operation", route_limit + 1, route_limit);
    assert!(handler.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_name_as_long_as_the_payload_limit_is_refused_without_being_read() -> anyhow::Result<()> {
    // Before the limits a name could be as long as `max_payload` (4 MiB):
    // copied, validated and hashed on every host call.
    let handler = Arc::new(TestHandler::default());
    let actor = load_with(
        &caller_guest(Abi::Binding),
        Limits::default(),
        Arc::clone(&handler),
    )
    .await?;
    // Leaves room for the rest of the request within the 4 MiB limit.
    let huge = name((4 << 20) - 1024);
    for (req, what, limit) in [
        (
            host_call_request(&huge, b"test:ping", b"Ping", b""),
            "binding",
            MAX_BINDING_NAME_LEN,
        ),
        (
            host_call_request(b"default", &huge, b"Ping", b""),
            "namespace",
            MAX_NAMESPACE_LEN,
        ),
        (
            host_call_request(b"default", b"test:ping", &huge, b""),
            "operation",
            MAX_OPERATION_NAME_LEN,
        ),
    ] {
        let started = Instant::now();
        let err = actor.call("call", &req).await.expect_err("refused");
        assert_name_too_long(&err, what, huge.len(), limit);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    assert!(handler.calls().is_empty());
    // The host and the actor are fine: a proper host call still works.
    assert_eq!(
        actor
            .call(
                "call",
                &host_call_request(b"default", b"test:ping", b"Ping", b"ok")
            )
            .await?,
        b"pong:ok"
    );
    Ok(())
}
