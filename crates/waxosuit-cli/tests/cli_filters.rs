//! Proxy-Wasm filters in front of actors, end to end: filters built from
//! source with the public `proxy-wasm` SDK for both wasm targets, signed,
//! listed in a manifest and run by `waxosuit up` in front of a real actor;
//! every assertion is over real HTTP. Then the filters that must not load
//! or must fail only their own request.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use support::{Dir, Up};
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, PROXY_WASM_FILTER_TAG, embed_claims};
use waxosuit_test_fixtures::{FilterTarget, filter};

/// Signs `module` as a filter named `name` into `name.wasm`.
fn sign_filter(dir: &Dir, module: &[u8], name: &str, signer: &KeyPair) {
    let subject = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(signer.public_key())
        .subject(subject.public_key())
        .metadata(Actor {
            tags: Some(vec![PROXY_WASM_FILTER_TAG.to_string()]),
            ..Actor::named(name)
        })
        .build();
    let signed = embed_claims(module, &claims, signer).unwrap();
    std::fs::write(dir.path(&format!("{name}.wasm")), signed).unwrap();
}

/// What a request got back.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers, "")
}

/// An upstream for callouts: `/auth` answers 200 `allowed` for
/// `x-user: alice`, 403 otherwise.
fn auth_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            let (status, body) = if text.starts_with("get /auth") && text.contains("x-user: alice")
            {
                ("200 OK", "allowed")
            } else {
                ("403 Forbidden", "no")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

const ACTORS: &[&str] = &[
    "headers", "config", "body", "callout", "tick", "metrics", "props", "examples",
];

fn suite(target: FilterTarget) {
    let dir = Dir::new();
    for actor in ACTORS {
        dir.actor(
            waxosuit_test_fixtures::http_probe(),
            actor,
            &["wascc:http_server"],
        );
    }
    for name in [
        "pw-headers",
        "pw-config",
        "pw-body",
        "pw-callout",
        "pw-tick-shared",
        "pw-metrics",
        "pw-props",
        "filter-authz",
        "filter-add-header",
        "filter-json-rewrite",
    ] {
        sign_filter(&dir, filter(name, target), name, dir.account());
    }
    let auth = auth_server();
    let bind = |actor: &str, filters: &str| {
        format!(
            "  - actor: {actor}\n    capability: wascc:http_server\n    values: {{ PORT: 0, ADDRESS: 127.0.0.1 }}\n    filters:\n{filters}"
        )
    };
    let manifest = format!(
        r#"
actors:
{actors}
capabilities:
  - id: wascc:http_server
http_filters:
  - path: ./filter-add-header.wasm
    config: {{ name: x-served-by, value: waxosuit }}
bindings:
{headers}
{config}
{body}
{callout}
{tick}
{metrics}
{props}
{examples}
"#,
        actors = ACTORS
            .iter()
            .map(|a| format!("  - ./{a}.wasm"))
            .collect::<Vec<_>>()
            .join("\n"),
        headers = bind("headers", "      - ./pw-headers.wasm"),
        config = bind(
            "config",
            "      - { path: ./pw-config.wasm, config: from-the-manifest }"
        ),
        body = bind("body", "      - ./pw-body.wasm"),
        callout = bind(
            "callout",
            &format!(
                "      - path: ./pw-callout.wasm\n        upstreams: {{ auth: 'http://{auth}' }}"
            )
        ),
        tick = bind("tick", "      - ./pw-tick-shared.wasm"),
        metrics = bind("metrics", "      - ./pw-metrics.wasm"),
        props = bind("props", "      - ./pw-props.wasm"),
        examples = bind(
            "examples",
            "      - path: ./filter-authz.wasm\n        config: { tokens: [t0ken] }\n      - path: ./filter-json-rewrite.wasm\n        config: { field: greeting, value: { rewritten: true } }"
        ),
    );
    let manifest = dir.manifest(&manifest);
    let up = Up::start_with(&dir, &manifest, &["--admin", "127.0.0.1:0"], &[]).unwrap();
    let summary = up.summary.join("\n");
    assert!(
        summary.contains("filters     filter-add-header → pw-headers → headers"),
        "{summary}"
    );
    let admin: SocketAddr = up
        .summary
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("admin")?
                .trim()
                .strip_prefix("http://")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap();

    // http_headers: a local answer for /hello, mixed-case names lower-cased;
    // the request reaches the actor otherwise.
    let a = up.addr("headers");
    let hello = get(a, "/hello", &[]);
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "Hello, World!\n")
    );
    assert_eq!(hello.header("hello"), "World");
    assert_eq!(hello.header("powered-by"), "proxy-wasm");
    assert_eq!(
        hello.header("x-served-by"),
        "waxosuit",
        "the host-wide chain sees local answers"
    );
    let echo = get(a, "/echo?x=1", &[]);
    assert_eq!(echo.status, 200);
    assert_eq!(echo.header("x-request-path"), "/echo?x=1");
    assert_eq!(echo.header("x-served-by"), "waxosuit");
    assert!(echo.body.contains(r#""greeting":"hello""#), "{}", echo.body);
    up.wait_for_log("completed.", 2);
    up.wait_for_log("-> :path: /echo?x=1", 1);

    // http_config: the configuration string becomes a header.
    let c = get(up.addr("config"), "/echo", &[]);
    assert_eq!(c.header("custom-header"), "from-the-manifest");

    // http_body: the actor sees the filter's request body; the response body
    // is replaced when it holds a secret.
    let b = up.addr("body");
    let upper = request(b, "POST", "/echo", &[("x-upper", "1")], "tell me a secret");
    assert_eq!(upper.status, 200);
    assert!(
        upper.body.contains(r#""body":"TELL ME A SECRET""#),
        "{}",
        upper.body
    );
    let redacted = request(b, "POST", "/echo", &[], "a secret");
    assert!(
        redacted.body.starts_with("Original message body (")
            && redacted.body.ends_with("bytes) redacted.\n"),
        "{}",
        redacted.body
    );
    assert_eq!(
        redacted.header("content-length"),
        redacted.body.len().to_string(),
        "the server frames the body the filter left"
    );

    // http_auth: a callout to the upstream decides; the stream pauses until
    // the answer, then resumes or is answered locally.
    let co = up.addr("callout");
    let allowed = get(co, "/echo", &[("x-user", "alice")]);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("x-auth-body"), "allowed");
    let denied = get(co, "/echo", &[("x-user", "bob")]);
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "Access forbidden.\n")
    );
    assert_eq!(denied.header("powered-by"), "proxy-wasm");

    // Ticks and shared data with compare-and-swap.
    std::thread::sleep(Duration::from_millis(400));
    let t = up.addr("tick");
    let first = get(t, "/echo", &[]);
    let second = get(t, "/echo", &[]);
    let ticks: u64 = first.header("x-ticks").parse().unwrap();
    assert!(ticks >= 2, "ticks every 50 ms for 400 ms: {ticks}");
    let requests: Vec<u64> = [&first, &second]
        .iter()
        .map(|r| r.header("x-requests").parse().unwrap())
        .collect();
    assert_eq!(requests[1], requests[0] + 1, "{requests:?}");
    up.wait_for_log("/echo", 1);

    // Metrics: defined by the filter, readable by it, exported by the host.
    let m = up.addr("metrics");
    assert_eq!(get(m, "/echo", &[]).header("x-requests-total"), "1");
    assert_eq!(get(m, "/echo", &[]).header("x-requests-total"), "2");
    let metrics = get(admin, "/metrics", &[]).body;
    assert!(
        metrics.contains(
            r#"waxosuit_filter_counter_total{filter="pw-metrics",name="requests_total"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"waxosuit_filter_histogram_count{filter="pw-metrics",name="body_bytes"}"#),
        "{metrics}"
    );

    // Properties, and a request changed on its way to the actor.
    let p = get(up.addr("props"), "/rewrite-me", &[]);
    assert_eq!(p.status, 200, "{p:?}");
    assert!(p.body.contains(r#""path":"/rewritten""#), "{}", p.body);
    assert!(p.body.contains(r#""x-filtered":"yes""#), "{}", p.body);
    assert_eq!(p.header("x-path"), "/rewrite-me");
    assert_eq!(p.header("x-method"), "GET");
    assert!(p.header("x-source").starts_with("127.0.0.1:"), "{p:?}");
    assert_eq!(p.header("x-plugin"), "pw-props");
    assert_eq!(p.header("x-actor-name"), "props");
    assert!(p.header("x-actor").starts_with('M'), "{p:?}");

    // The three examples: authorization, then a JSON field rewritten, then
    // (host-wide) a header added.
    let e = up.addr("examples");
    let none = get(e, "/echo", &[]);
    assert_eq!(
        (none.status, none.body.as_str()),
        (403, "Access forbidden.\n")
    );
    assert!(
        none.header("www-authenticate").starts_with("Bearer"),
        "{none:?}"
    );
    let wrong = get(e, "/echo", &[("authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 403);
    let ok = get(e, "/echo", &[("authorization", "Bearer t0ken")]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(
        ok.body.contains(r#""greeting":{"rewritten":true}"#),
        "{}",
        ok.body
    );
    assert_eq!(ok.header("x-served-by"), "waxosuit");
    assert_eq!(ok.header("content-length"), ok.body.len().to_string());

    let (clean, _, _) = up.terminate();
    assert!(clean);
}

#[test]
fn sdk_filters_built_for_wasip1_run_unchanged_in_front_of_actors() {
    suite(FilterTarget::Wasip1);
}

#[test]
fn sdk_filters_built_for_wasm32_unknown_unknown_run_unchanged_in_front_of_actors() {
    suite(FilterTarget::Unknown);
}

/// A filter that misbehaves fails its own requests only: the host, its
/// other listeners and the next requests carry on.
#[test]
fn trapping_looping_and_stalling_filters_fail_only_their_requests() {
    let dir = Dir::new();
    for actor in ["trap", "spin", "stall", "fine"] {
        dir.actor(
            waxosuit_test_fixtures::http_probe(),
            actor,
            &["wascc:http_server"],
        );
    }
    sign_filter(
        &dir,
        filter("pw-misbehave", FilterTarget::Wasip1),
        "pw-misbehave",
        dir.account(),
    );
    let manifest = dir.manifest(
        r#"
actors: [./trap.wasm, ./spin.wasm, ./stall.wasm, ./fine.wasm]
capabilities:
  - id: wascc:http_server
bindings:
  - actor: trap
    capability: wascc:http_server
    values: { PORT: 0, ADDRESS: 127.0.0.1 }
    filters: [{ path: ./pw-misbehave.wasm, config: trap }]
  - actor: spin
    capability: wascc:http_server
    values: { PORT: 0, ADDRESS: 127.0.0.1 }
    filters: [{ path: ./pw-misbehave.wasm, config: loop, limits: { deadline_ms: 50 } }]
  - actor: stall
    capability: wascc:http_server
    values: { PORT: 0, ADDRESS: 127.0.0.1, REQUEST_TIMEOUT_MS: 500 }
    filters: [{ path: ./pw-misbehave.wasm, config: pause }]
  - actor: fine
    capability: wascc:http_server
    values: { PORT: 0, ADDRESS: 127.0.0.1 }
    filters: [{ path: ./pw-misbehave.wasm, config: none }]
"#,
    );
    let up = Up::start(&dir, &manifest).unwrap();
    for _ in 0..3 {
        let trapped = get(up.addr("trap"), "/", &[]);
        assert_eq!(
            (trapped.status, trapped.body.as_str()),
            (500, "Filter failed")
        );
        assert_eq!(get(up.addr("fine"), "/", &[]).status, 200);
    }
    let started = std::time::Instant::now();
    assert_eq!(get(up.addr("spin"), "/", &[]).status, 500);
    assert!(started.elapsed() < Duration::from_secs(30));
    // A header value that is not UTF-8 would make an SDK filter trap on
    // reading it: such a request is refused before any filter runs.
    let mut raw = TcpStream::connect(up.addr("fine")).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Bytes: \xff\xfe\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(get(up.addr("fine"), "/", &[]).status, 200);
    let stalled = get(up.addr("stall"), "/", &[]);
    assert_eq!(
        (stalled.status, stalled.body.as_str()),
        (504, "Filter did not resume the request in time")
    );
    assert_eq!(get(up.addr("fine"), "/", &[]).status, 200);
    up.wait_for_log("the filter trapped", 3);
    up.wait_for_log("past the filter's deadline of 50 ms", 1);
    up.wait_for_log("paused the request and did not resume it", 1);
    let (clean, _, _) = up.terminate();
    assert!(clean);
}

/// Starts `up` with one filter in front of one actor; the startup error.
fn refused(dir: &Dir, filter_file: &str, extra: &str) -> String {
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server"],
    );
    let manifest = dir.manifest(&format!(
        r#"
actors: [./probe.wasm]
capabilities:
  - id: wascc:http_server
bindings:
  - actor: probe
    capability: wascc:http_server
    values: {{ PORT: 0, ADDRESS: 127.0.0.1 }}
    filters:
      - path: ./{filter_file}
{extra}
"#
    ));
    match Up::start(dir, &manifest) {
        Ok(_) => panic!("a host with filter {filter_file} started"),
        Err(e) => e,
    }
}

#[test]
fn filters_that_must_not_load_are_refused_at_startup_with_the_reason() {
    // A WASI import outside the subset.
    let dir = Dir::new();
    let reads_files = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))"#,
    )
    .unwrap();
    sign_filter(&dir, &reads_files, "reads-files", dir.account());
    let e = refused(&dir, "reads-files.wasm", "");
    assert!(e.contains("wasi_snapshot_preview1.path_open"), "{e}");
    assert!(e.contains("bindings[0].filters[0]"), "{e}");

    // A configuration the filter refuses.
    let dir = Dir::new();
    sign_filter(
        &dir,
        filter("pw-misbehave", FilterTarget::Unknown),
        "bad",
        dir.account(),
    );
    let e = refused(&dir, "bad.wasm", "        config: bad-config");
    assert!(e.contains("proxy_on_configure returned false"), "{e}");

    // Unsigned, then signed by an issuer the host does not trust.
    let dir = Dir::new();
    std::fs::write(
        dir.path("unsigned.wasm"),
        filter("pw-passthrough", FilterTarget::Wasip1),
    )
    .unwrap();
    let e = refused(&dir, "unsigned.wasm", "");
    assert!(e.contains("bindings[0].filters[0]"), "{e}");
    assert!(e.to_lowercase().contains("sign"), "{e}");
    let dir = Dir::new();
    let stranger = KeyPair::generate(KeyKind::Account);
    sign_filter(
        &dir,
        filter("pw-passthrough", FilterTarget::Wasip1),
        "stranger",
        &stranger,
    );
    let e = refused(&dir, "stranger.wasm", "");
    assert!(e.contains(&stranger.public_key()), "{e}");

    // A filter module signed as an actor is no filter.
    let dir = Dir::new();
    dir.actor(
        filter("pw-passthrough", FilterTarget::Wasip1),
        "as-actor",
        &[],
    );
    let e = refused(&dir, "as-actor.wasm", "");
    assert!(e.contains("signed as an actor"), "{e}");
}

#[test]
fn a_filter_listed_as_an_actor_is_refused() {
    let dir = Dir::new();
    sign_filter(
        &dir,
        filter("pw-passthrough", FilterTarget::Wasip1),
        "pass",
        dir.account(),
    );
    let manifest = dir.manifest("actors: [./pass.wasm]\n");
    let e = match Up::start(&dir, &manifest) {
        Ok(_) => panic!("a filter started as an actor"),
        Err(e) => e,
    };
    assert!(e.contains("Proxy-Wasm filter"), "{e}");
    assert!(e.contains("filters:"), "{e}");
}
