//! Pulls from a registry that is an attacker: endless manifests, endless
//! error answers, token services that answer garbage or sit on plain HTTP.
//! Each is refused with a clear error after reading no more than its bound.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use waxosuit_registry::{
    ArtifactKind, ArtifactRef, CredentialStore, MAX_ERROR_BYTES, MAX_MANIFEST_BYTES,
    MAX_TOKEN_ANSWER_BYTES, Registry, RegistryError, RegistryOptions, Resolved,
};

/// What the hostile registry sends after a head.
enum Body {
    Bytes(Vec<u8>),
    /// 64 KiB at a time, without a length, until the client goes away.
    Endless,
    /// Announces this length, then sends nothing.
    Announced(u64),
}

/// A registry on a free port answering each request with what `answer`
/// makes of its request head and its own `host:port`: a status line and
/// headers, and a body. Counts the body bytes it managed to send, and the
/// requests it was sent.
struct Hostile {
    host: String,
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
}

fn hostile(answer: impl Fn(&str, &str) -> (String, Body) + Send + Sync + 'static) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    let (me, counted, asked) = (host.clone(), Arc::clone(&sent), Arc::clone(&requests));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (answer, me, counted, asked) = (
                Arc::clone(&answer),
                me.clone(),
                Arc::clone(&counted),
                Arc::clone(&asked),
            );
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                asked.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&head).into_owned();
                let (status, body) = answer(&text, &me);
                let _ = match &body {
                    Body::Bytes(bytes) => write!(
                        stream,
                        "{status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    ),
                    Body::Endless => write!(stream, "{status}\r\nConnection: close\r\n\r\n"),
                    Body::Announced(n) => write!(
                        stream,
                        "{status}\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                    ),
                };
                match body {
                    Body::Bytes(bytes) => {
                        if stream.write_all(&bytes).is_ok() {
                            counted.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                        }
                    }
                    Body::Endless => {
                        let chunk = vec![b'x'; 64 * 1024];
                        while stream.write_all(&chunk).is_ok() {
                            counted.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        }
                    }
                    Body::Announced(_) => {}
                }
            });
        }
    });
    Hostile {
        host,
        sent,
        requests,
    }
}

fn registry(insecure: &[&str], credentials: CredentialStore) -> Registry {
    Registry::new(
        credentials,
        RegistryOptions {
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
            deadline: std::time::Duration::from_secs(20),
            ..RegistryOptions::default()
        },
    )
}

fn reference(host: &str) -> ArtifactRef {
    ArtifactRef::parse(&format!("oci://{host}/team/hello:1.0.0"), false).unwrap()
}

fn basic(host: &str) -> CredentialStore {
    CredentialStore::from_parts(
        Some("u".into()),
        Some("secret".into()),
        None,
        Some(host),
        None,
    )
    .unwrap()
}

/// The error and its sources, as the CLI prints them.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// What the socket buffers of loopback may hold on top of what the client
/// read, in the bytes the server managed to send.
const BUFFERED: u64 = 8 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_manifest_is_refused_at_its_limit() {
    let server = hostile(|_, _| ("HTTP/1.1 200 OK".into(), Body::Endless));
    let err = registry(&[&server.host], CredentialStore::anonymous())
        .resolve(&reference(&server.host), None)
        .await
        .unwrap_err();
    match &err {
        RegistryError::TooLarge {
            what, size, limit, ..
        } => {
            assert_eq!(*what, "manifest");
            assert_eq!(*limit, MAX_MANIFEST_BYTES);
            assert!(*size > MAX_MANIFEST_BYTES && *size <= MAX_MANIFEST_BYTES + 64 * 1024);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    // Give the server a moment to notice the client went away.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = server.sent.load(Ordering::SeqCst);
    assert!(
        sent <= MAX_MANIFEST_BYTES + BUFFERED,
        "the server sent {sent} bytes"
    );

    // A manifest announced larger than the limit is refused before its body.
    let server = hostile(|_, _| {
        (
            "HTTP/1.1 200 OK".into(),
            Body::Announced(10 * 1024 * 1024 * 1024),
        )
    });
    let err = registry(&[&server.host], CredentialStore::anonymous())
        .resolve(&reference(&server.host), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { size, .. } if size == 10 * 1024 * 1024 * 1024),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_answer_is_read_no_further_than_its_limit() {
    // A manifest request and a layer request answered with a 500 and a body
    // that never ends; the error shown is short and one line.
    let server = hostile(|_, _| ("HTTP/1.1 500 Internal Server Error".into(), Body::Endless));
    let registry = registry(&[&server.host], CredentialStore::anonymous());
    let r = reference(&server.host);
    let err = registry.resolve(&r, None).await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("500"), "{text}");
    assert!(text.len() < 2048 && !text.contains('\n'), "{text}");

    let resolved = Resolved {
        digest: format!("sha256:{}", "0".repeat(64)),
        kind: ArtifactKind::Actor,
        media_type: "application/wasm".into(),
        layer_digest: format!("sha256:{}", "1".repeat(64)),
        size: 100,
        claims: Default::default(),
    };
    let err = registry.fetch_layer(&r, &resolved, None).await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("500"), "{text}");
    assert!(text.len() < 2048 && !text.contains('\n'), "{text}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = server.sent.load(Ordering::SeqCst);
    assert!(
        sent <= 2 * (MAX_ERROR_BYTES + BUFFERED),
        "the server sent {sent} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_service_answering_garbage_is_refused_without_a_panic() {
    // The challenge names this same host (named insecure) as the token
    // service; the token is what the case says.
    for (token_answer, expected) in [
        (
            Body::Bytes(br#"{"token":"a\u0001b"}"#.to_vec()),
            "not a valid header value",
        ),
        (
            Body::Bytes(br#"{"token":"a\nInjected: yes"}"#.to_vec()),
            "not a valid header value",
        ),
        (Body::Bytes(b"{}".to_vec()), "answered no token"),
        (Body::Bytes(b"<html>".to_vec()), "is not a token"),
        (
            Body::Bytes(format!(r#"{{"token":"{}"}}"#, "t".repeat(20_000)).into_bytes()),
            "a token of 20000 bytes",
        ),
        (Body::Endless, "answer is over"),
    ] {
        let body = std::sync::Mutex::new(Some(token_answer));
        let server = hostile(move |line, me| {
            if line.starts_with("GET /token") {
                let body = body
                    .lock()
                    .unwrap()
                    .take()
                    .unwrap_or(Body::Bytes(Vec::new()));
                ("HTTP/1.1 200 OK".into(), body)
            } else {
                (
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer \
                         realm=\"http://{me}/token\",service=\"s\""
                    ),
                    Body::Bytes(Vec::new()),
                )
            }
        });
        let err = registry(&[&server.host], CredentialStore::anonymous())
            .resolve(&reference(&server.host), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Unauthorized { .. }),
            "{expected}: {err}"
        );
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        let sent = server.sent.load(Ordering::SeqCst);
        assert!(sent <= MAX_TOKEN_ANSWER_BYTES + BUFFERED, "{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plain_http_token_service_is_asked_even_without_credentials() {
    // A token service on plain HTTP on a host not named insecure, however
    // the realm is spelled (a backslash the URL parser reads as a path
    // separator included); asked, it would learn what the registry wants
    // fetched, from wherever the host runs.
    let realm = TcpListener::bind("127.0.0.1:0").unwrap();
    let realm_addr = realm.local_addr().unwrap();
    realm.set_nonblocking(true).unwrap();
    for spelled in [
        format!("http://{realm_addr}/token"),
        format!("HTTP://{realm_addr}/token"),
        format!("ftp://{realm_addr}/token"),
        "not a url".to_string(),
    ] {
        let server = hostile(move |_, _| {
            (
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{spelled}\""
                ),
                Body::Bytes(Vec::new()),
            )
        });
        for credentials in [CredentialStore::anonymous(), basic(&server.host)] {
            let err = registry(&[&server.host], credentials)
                .resolve(&reference(&server.host), None)
                .await
                .unwrap_err();
            assert!(matches!(err, RegistryError::InsecureRealm { .. }), "{err}");
        }
        assert!(realm.accept().is_err(), "the token service was asked");
    }
    // `http://evil\@insecure-host/` is `evil` to the URL parser: refused
    // although the text ends in a host named insecure.
    let server = hostile(move |_, me| {
        (
            format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer \
                 realm=\"http://{realm_addr}\\\\@{me}/token\""
            ),
            Body::Bytes(Vec::new()),
        )
    });
    let err = registry(&[&server.host], basic(&server.host))
        .resolve(&reference(&server.host), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InsecureRealm { .. }), "{err}");
    assert!(realm.accept().is_err(), "the token service was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_fetched_once_and_used_for_the_manifest() {
    // A well-behaved token exchange on hosts named insecure: the token the
    // service gives is what the registry then receives, and a second pull
    // reuses it.
    let tokens = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&tokens);
    let server = hostile(move |head, me| {
        if head.starts_with("GET /token") {
            seen.fetch_add(1, Ordering::SeqCst);
            assert!(
                head.contains("scope=repository%3Ateam%2Fhello%3Apull"),
                "{head}"
            );
            (
                "HTTP/1.1 200 OK".into(),
                Body::Bytes(br#"{"token":"good","expires_in":300}"#.to_vec()),
            )
        } else if head
            .to_ascii_lowercase()
            .contains("authorization: bearer good")
        {
            ("HTTP/1.1 200 OK".into(), Body::Bytes(b"{}".to_vec()))
        } else {
            (
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer \
                     realm=\"http://{me}/token\",service=\"s\""
                ),
                Body::Bytes(Vec::new()),
            )
        }
    });
    let registry = registry(&[&server.host], CredentialStore::anonymous());
    for _ in 0..2 {
        let err = registry
            .resolve(&reference(&server.host), None)
            .await
            .unwrap_err();
        // Past the token, the manifest (`{}`) is no Waxosuit artifact.
        assert!(!matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 1, "the token was reused");
    // 401, token, manifest; then the manifest at once.
    assert_eq!(server.requests.load(Ordering::SeqCst), 3 + 1);
}
