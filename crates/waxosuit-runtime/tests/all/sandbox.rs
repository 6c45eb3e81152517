//! The sandbox: only the waPC contract may be imported, and guest pointers
//! and strings are never trusted.

use std::sync::Arc;

use waxosuit_runtime::{ErrorKind, Limits, RuntimeError};
use waxosuit_test_fixtures::{
    wat_bad_pointers, wat_echo, wat_unknown_wapc_import, wat_wasi, wat_wrong_signature,
};

use crate::common::{TestHandler, load, load_with};

#[tokio::test]
async fn wasi_import_is_refused_naming_module_and_function() {
    let err = load(&wat_wasi(), Limits::default())
        .await
        .expect_err("must be refused");
    match &err {
        RuntimeError::UnknownImport { module, name, .. } => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("wasi_snapshot_preview1", "fd_write")
            );
        }
        other => panic!("expected UnknownImport, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("\"wasi_snapshot_preview1\".\"fd_write\""),
        "{text}"
    );
    assert!(text.contains("capabilities"), "{text}");
}

#[tokio::test]
async fn unknown_wapc_import_is_refused() {
    let err = load(&wat_unknown_wapc_import(), Limits::default())
        .await
        .expect_err("refused");
    match &err {
        RuntimeError::UnknownImport { module, name, .. } => {
            assert_eq!((module.as_str(), name.as_str()), ("wapc", "__open_socket"));
        }
        other => panic!("expected UnknownImport, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_signature_is_refused() {
    let err = load(&wat_wrong_signature(), Limits::default())
        .await
        .expect_err("refused");
    match &err {
        RuntimeError::UnknownImport { name, detail, .. } => {
            assert_eq!(name, "__guest_response");
            assert!(detail.contains("signature"), "{detail}");
        }
        other => panic!("expected UnknownImport, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_and_non_wasm_bytes_are_load_errors() {
    for bytes in [
        b"hello, world".to_vec(),
        Vec::new(),
        b"\0asm\x01\0\0\0\x01\xff\xff".to_vec(),
    ] {
        let err = load(&bytes, Limits::default())
            .await
            .expect_err("must not load");
        assert_eq!(err.kind(), ErrorKind::Load, "{err}");
    }
}

#[tokio::test]
async fn module_without_wapc_exports_is_a_load_error() {
    let no_guest_call = wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("wat");
    let err = load(&no_guest_call, Limits::default())
        .await
        .expect_err("must not load");
    assert_eq!(err.kind(), ErrorKind::Load);
    assert!(err.to_string().contains("__guest_call"), "{err}");

    let no_memory = wat::parse_str(
        r#"(module (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
    )
    .expect("wat");
    let err = load(&no_memory, Limits::default())
        .await
        .expect_err("must not load");
    assert!(err.to_string().contains("memory"), "{err}");
}

#[tokio::test]
async fn bad_pointers_and_invalid_utf8_are_guest_errors() -> anyhow::Result<()> {
    let handler = Arc::new(TestHandler::default());
    let actor = load_with(&wat_bad_pointers(), Limits::default(), Arc::clone(&handler)).await?;
    for (op, expected) in [
        ("oob_response", "outside linear memory"),
        ("bad_utf8", "not valid UTF-8"),
        ("oob_host_call", "outside linear memory"),
        ("oob_request", "outside linear memory"),
        // Only the start of a guest error is read; its whole range is
        // still checked.
        ("oob_error", "outside linear memory"),
    ] {
        let err = actor.call(op, b"abc").await.expect_err(op);
        match &err {
            RuntimeError::GuestError { message, .. } => {
                assert!(message.contains(expected), "{op}: {message}");
            }
            other => panic!("{op}: expected GuestError, got {other:?}"),
        }
        // The host is fine afterwards and so is the actor.
        assert_eq!(actor.call("echo", b"fine").await?, b"fine", "after {op}");
    }
    // Nothing invalid ever reached the embedder.
    assert!(handler.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_long_guest_error_is_cut_to_what_the_host_keeps() -> anyhow::Result<()> {
    // The guest's own words travel into logs, spans and HTTP answers: a
    // guest must not be able to make each of them 60 KB (or 4 MiB) long.
    let handler = Arc::new(TestHandler::default());
    let actor = load_with(&wat_bad_pointers(), Limits::default(), Arc::clone(&handler)).await?;
    let err = actor.call("long_error", b"").await.expect_err("long_error");
    match &err {
        RuntimeError::GuestError { message, .. } => {
            assert!(
                message.len() <= waxosuit_runtime::MAX_GUEST_ERROR_BYTES + 64,
                "{} bytes kept",
                message.len()
            );
            assert!(
                message.ends_with("[cut: 60000 bytes in all]"),
                "{message:?}"
            );
        }
        other => panic!("expected GuestError, got {other:?}"),
    }
    assert_eq!(actor.call("echo", b"fine").await?, b"fine");
    Ok(())
}

#[tokio::test]
async fn console_log_is_accepted() -> anyhow::Result<()> {
    // wat_echo logs from `wapc_init`; loading must succeed and calls work.
    let actor = load(&wat_echo(), Limits::default()).await?;
    assert_eq!(actor.call("echo", b"").await?, b"");
    Ok(())
}
