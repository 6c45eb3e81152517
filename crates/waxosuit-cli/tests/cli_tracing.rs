//! Traces and logs of `waxosuit up`, seen from outside: an OTLP/HTTP (or
//! gRPC) receiver in this process (decoding the protobuf exports with the
//! OpenTelemetry proto types) is the collector, real nats-servers carry the
//! lattice and messages, and each request carries a W3C `traceparent`.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use support::{Dir, Up};
use waxosuit_claims::{KeyKind, KeyPair};
use waxosuit_test_servers::{NatsServer, OtlpReceiver, ReceivedSpan};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// One HTTP/1.1 request with extra headers: (status, head, body).
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (status, head.to_string(), body.to_string())
}

fn exporting_to(receiver: &OtlpReceiver, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_SERVICE_NAME", service.to_string()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The kv-counter actor signed into `dir`, and a manifest serving it over
/// HTTP with the in-memory key-value store: (its key, the manifest).
fn counter_host(dir: &Dir) -> (String, std::path::PathBuf) {
    let key = dir.actor(
        waxosuit_test_fixtures::example("kvcounter"),
        "counter",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    let manifest = dir.manifest(
        "actors: [ ./counter.wasm ]\n\
         capabilities:\n  - id: wascc:http_server\n  - id: wascc:keyvalue\n\
         bindings:\n  - { actor: counter, capability: wascc:http_server, values: { PORT: 0, ADDRESS: 127.0.0.1 } }\n  \
         - { actor: counter, capability: wascc:keyvalue }\n",
    );
    (key, manifest)
}

/// The spans of trace `trace`, by span id.
fn trace(spans: &[ReceivedSpan], trace: &str) -> BTreeMap<String, ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .map(|s| (s.span_id.clone(), s.clone()))
        .collect()
}

fn find<'a>(
    spans: &'a BTreeMap<String, ReceivedSpan>,
    what: &str,
    pick: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    spans.values().find(|s| pick(s)).unwrap_or_else(|| {
        panic!(
            "no {what} span in {:#?}",
            spans.values().collect::<Vec<_>>()
        )
    })
}

/// Whether `child` descends from `ancestor` within `spans`.
fn descends(spans: &BTreeMap<String, ReceivedSpan>, child: &ReceivedSpan, ancestor: &str) -> bool {
    let mut at = child.parent_span_id.clone();
    for _ in 0..32 {
        if at == ancestor {
            return true;
        }
        match spans.get(&at) {
            Some(parent) => at = parent.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

#[test]
fn a_request_is_one_trace_from_the_http_server_through_the_actor_to_key_value() {
    let receiver = OtlpReceiver::start().unwrap();
    let dir = Dir::new();
    let (counter, manifest) = counter_host(&dir);
    let env = exporting_to(&receiver, "waxosuit");
    let up = Up::start_with(
        &dir,
        &manifest,
        &["--log-format", "json"],
        &env_refs(&env[..1]),
    )
    .unwrap();
    let addr = up.addr("counter");
    let (status, _, body) = send(
        addr,
        "GET",
        "/count",
        &[("traceparent", &traceparent())],
        b"",
    );
    assert_eq!((status, body.as_str()), (200, r#"{"counter":1}"#));
    // A malformed traceparent starts a trace of its own.
    let (status, _, _) = send(addr, "GET", "/count", &[("traceparent", "00-zz-1")], b"");
    assert_eq!(status, 200);

    // Spans are batched for seconds; SIGTERM must flush them all.
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
    let all = receiver.spans();
    assert_eq!(receiver.rejected(), 0);
    let spans = trace(&all, TRACE);
    println!("{}", draw(&spans));

    let server = find(&spans, "HTTP server", |s| s.kind == "server");
    assert_eq!(
        server.parent_span_id, PARENT,
        "the parent comes from the header"
    );
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("url.path"), Some("/count"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(
        server.service(),
        "waxosuit",
        "service.name defaults to waxosuit"
    );

    let actor = find(&spans, "actor", |s| {
        s.attr("waxosuit.operation") == Some("HandleRequest")
    });
    assert!(descends(&spans, actor, &server.span_id), "{actor:#?}");
    assert_eq!(actor.attr("waxosuit.actor.key"), Some(counter.as_str()));
    assert_eq!(actor.attr("waxosuit.actor.name"), Some("counter"));
    assert_eq!(actor.attr("waxosuit.outcome"), Some("ok"));
    assert!(
        actor.attr("waxosuit.instance.wait_us").is_some(),
        "{actor:#?}"
    );
    assert_eq!(actor.name, "counter HandleRequest");

    let kv = find(&spans, "key-value", |s| {
        s.attr("waxosuit.capability") == Some("wascc:keyvalue")
    });
    assert!(descends(&spans, kv, &actor.span_id), "{kv:#?}");
    assert_eq!(kv.attr("waxosuit.binding"), Some("default"));
    assert_eq!(kv.attr("waxosuit.actor.key"), Some(counter.as_str()));
    assert_eq!(kv.attr("waxosuit.outcome"), Some("ok"));

    // The second request made a trace of its own, just as complete.
    let other: Vec<&ReceivedSpan> = all
        .iter()
        .filter(|s| s.trace_id != TRACE && s.kind == "server")
        .collect();
    assert_eq!(other.len(), 1, "{all:#?}");
    assert!(other[0].parent_span_id.is_empty());

    // JSON logs: every line an object, no colour codes in a file.
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
    }
}

#[test]
fn over_grpc_the_same_trace_reaches_the_collector() {
    let receiver = OtlpReceiver::start_grpc().unwrap();
    let dir = Dir::new();
    let (counter, manifest) = counter_host(&dir);
    // The flag wins over the variable's `http/protobuf`.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
    ];
    let up = Up::start_with(
        &dir,
        &manifest,
        &["--otlp-protocol", "grpc"],
        &env_refs(&env),
    )
    .unwrap();
    let (status, _, _) = send(
        up.addr("counter"),
        "GET",
        "/count",
        &[("traceparent", &traceparent())],
        b"",
    );
    assert_eq!(status, 200);
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("exporting traces over OTLP/gRPC"),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot export spans"), "{stderr}");
    let spans = trace(&receiver.spans(), TRACE);
    let server = find(&spans, "HTTP server", |s| s.kind == "server");
    assert_eq!(server.parent_span_id, PARENT);
    assert_eq!(server.service(), "waxosuit");
    let actor = find(&spans, "actor", |s| {
        s.attr("waxosuit.actor.key") == Some(counter.as_str())
            && s.attr("waxosuit.operation") == Some("HandleRequest")
    });
    assert!(descends(&spans, actor, &server.span_id), "{actor:#?}");
    let kv = find(&spans, "key-value", |s| {
        s.attr("waxosuit.capability") == Some("wascc:keyvalue")
    });
    assert!(descends(&spans, kv, &actor.span_id), "{kv:#?}");
}

#[test]
fn actor_log_lines_carry_the_actor_and_trace_ids_and_become_span_events() {
    let receiver = OtlpReceiver::start().unwrap();
    let dir = Dir::new();
    let sensor = dir.actor(
        waxosuit_test_fixtures::example("iot-sensor"),
        "sensor",
        &[
            "wascc:http_server",
            "wascc:keyvalue",
            "wascc:logging",
            "wascc:extras",
        ],
    );
    let manifest = dir.manifest(
        "actors: [ ./sensor.wasm ]\n\
         capabilities:\n  - id: wascc:http_server\n  - id: wascc:keyvalue\n\
         bindings:\n  - { actor: sensor, capability: wascc:http_server, values: { PORT: 0, ADDRESS: 127.0.0.1 } }\n  \
         - { actor: sensor, capability: wascc:keyvalue }\n",
    );
    let env = exporting_to(&receiver, "sensors");
    let up = Up::start_with(&dir, &manifest, &["--log-format", "json"], &env_refs(&env)).unwrap();
    let (status, _, body) = send(
        up.addr("sensor"),
        "POST",
        "/readings/t1",
        &[("traceparent", &traceparent())],
        br#"{"value": 21.5}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");

    let line = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains("t1")))
        .unwrap_or_else(|| panic!("no log line of the actor's in:\n{stderr}"));
    assert_eq!(line["actor"], sensor.as_str(), "{line}");
    assert_eq!(line["actor_name"], "sensor", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["trace_id"], TRACE, "{line}");
    let span_id = line["span_id"].as_str().unwrap().to_string();

    let spans = trace(&receiver.spans(), TRACE);
    let logged_in = spans
        .get(&span_id)
        .unwrap_or_else(|| panic!("the line's span {span_id} was not exported"));
    assert_eq!(logged_in.service(), "sensors");
    assert!(
        logged_in.events.iter().any(|(name, _)| name.contains("t1")),
        "the log line is an event of its span: {logged_in:#?}"
    );
}

#[test]
fn one_trace_spans_two_hosts_of_a_lattice() {
    let nats = NatsServer::start().expect("nats-server (apt-get install nats-server)");
    let receiver = OtlpReceiver::start().unwrap();
    let dir = Dir::new();
    let counter = dir.actor(
        waxosuit_test_fixtures::example("kvcounter"),
        "counter",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    let pairs: Vec<KeyPair> = (0..2).map(|_| KeyPair::generate(KeyKind::Server)).collect();
    let trust: Vec<String> = pairs.iter().map(|k| k.public_key()).collect();
    let trust = trust.join(",");
    let up = |i: usize, service: &str, manifest: &str| {
        let path = dir.manifest_named(&format!("host{i}.yaml"), manifest);
        let seed = pairs[i].seed().unwrap();
        let mut env = exporting_to(&receiver, service);
        env.extend([
            ("WAXOSUIT_LATTICE", nats.url()),
            ("WAXOSUIT_HOST_SEED", seed),
            ("WAXOSUIT_LATTICE_TRUST_HOSTS", trust.clone()),
            ("WAXOSUIT_LATTICE_TIMEOUT_MS", "5000".to_string()),
        ]);
        Up::start_with(&dir, &path, &[], &env_refs(&env)).unwrap()
    };
    // B runs the actor and the key-value store; A only serves HTTP.
    let b = up(
        1,
        "host-b",
        &format!(
            "actors: [ ./counter.wasm ]\ncapabilities:\n  - id: wascc:keyvalue\n\
             bindings:\n  - {{ actor: {counter}, capability: wascc:keyvalue }}\n"
        ),
    );
    let a = up(
        0,
        "host-a",
        &format!(
            "capabilities:\n  - id: wascc:http_server\n\
             bindings:\n  - {{ actor: {counter}, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}\n"
        ),
    );
    let addr = a.addr(&counter);
    // The lattice settles (B's inventory reaches A) before A can route.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = send(addr, "GET", "/warmup", &[], b"");
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "A never reached B");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _, body) = send(addr, "GET", "/", &[("traceparent", &traceparent())], b"");
    assert_eq!(status, 200, "{body}");
    let (ok, _, err) = a.terminate();
    assert!(ok, "{err}");
    let (ok, _, err) = b.terminate();
    assert!(ok, "{err}");

    let spans = trace(&receiver.spans(), TRACE);
    println!("{}", draw(&spans));
    let server = find(&spans, "HTTP server on A", |s| {
        s.kind == "server" && s.service() == "host-a" && s.attr("http.request.method").is_some()
    });
    assert_eq!(server.parent_span_id, PARENT);
    let client = find(&spans, "lattice client on A", |s| {
        s.kind == "client" && s.service() == "host-a" && s.attr("messaging.system") == Some("nats")
    });
    assert!(descends(&spans, client, &server.span_id), "{client:#?}");
    let serving = find(&spans, "lattice server on B", |s| {
        s.kind == "server" && s.service() == "host-b"
    });
    assert!(descends(&spans, serving, &client.span_id), "{serving:#?}");
    let actor = find(&spans, "actor on B", |s| {
        s.service() == "host-b"
            && s.attr("waxosuit.actor.key") == Some(counter.as_str())
            && s.attr("waxosuit.operation") == Some("HandleRequest")
    });
    assert!(descends(&spans, actor, &serving.span_id), "{actor:#?}");
    let kv = find(&spans, "key-value on B", |s| {
        s.service() == "host-b" && s.attr("waxosuit.capability") == Some("wascc:keyvalue")
    });
    assert!(descends(&spans, kv, &actor.span_id), "{kv:#?}");
}

/// A plain NATS subscriber that reports the first message's headers.
fn nats_headers(port: u16, subject: &str) -> std::sync::mpsc::Receiver<Vec<(String, String)>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let subject = subject.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use futures_util::StreamExt;
            let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
                .await
                .unwrap();
            let mut sub = client.subscribe(subject).await.unwrap();
            client.flush().await.unwrap();
            ready_tx.send(()).unwrap();
            if let Some(msg) = sub.next().await {
                let headers = msg
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
                    .collect();
                let _ = tx.send(headers);
            }
        });
    });
    ready.recv_timeout(Duration::from_secs(20)).unwrap();
    rx
}

/// An HTTP server that answers once and reports the request's head.
fn upstream() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = tx.send(String::from_utf8_lossy(&head).to_string());
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    });
    (addr, rx)
}

fn header_trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

#[test]
fn messages_and_outgoing_http_requests_carry_the_trace() {
    let nats = NatsServer::start().expect("nats-server (apt-get install nats-server)");
    let receiver = OtlpReceiver::start().unwrap();
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::example("messaging-echo"),
        "echo",
        &["wascc:http_server", "wascc:messaging"],
    );
    dir.actor(
        waxosuit_test_fixtures::example("http-fetch"),
        "fetch",
        &["wascc:http_server", "wascc:http_client"],
    );
    let manifest = dir.manifest(&format!(
        "actors: [ ./echo.wasm, ./fetch.wasm ]\n\
         capabilities:\n  - id: wascc:http_server\n  - {{ id: wascc:messaging, provider: nats }}\n  - id: wascc:http_client\n\
         bindings:\n  - {{ actor: echo, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}\n  \
         - {{ actor: echo, capability: wascc:messaging, values: {{ URL: \"{}\" }} }}\n  \
         - {{ actor: fetch, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}\n  \
         - {{ actor: fetch, capability: wascc:http_client, values: {{ ALLOWED_HOSTS: \"127.0.0.1\" }} }}\n",
        nats.url()
    ));
    let env = exporting_to(&receiver, "waxosuit");
    let up = Up::start_with(&dir, &manifest, &[], &env_refs(&env)).unwrap();

    // A publish: a plain NATS subscriber sees traceparent in the headers.
    let seen = nats_headers(nats.port(), "orders.created");
    let (status, _, body) = send(
        up.addr("echo"),
        "POST",
        "/publish/orders.created",
        &[("traceparent", &traceparent())],
        b"{}",
    );
    assert_eq!(status, 202, "{body}");
    let headers = seen.recv_timeout(Duration::from_secs(20)).unwrap();
    let published = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        .unwrap_or_else(|| panic!("no traceparent in {headers:?}"));
    assert_eq!(header_trace_id(&published.1), TRACE);

    // An outgoing HTTP request carries it to the server it calls.
    let (upstream, head) = upstream();
    let (status, _, body) = send(
        up.addr("fetch"),
        "GET",
        &format!("/fetch?url=http://{upstream}/x"),
        &[("traceparent", &traceparent())],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let head = head.recv_timeout(Duration::from_secs(20)).unwrap();
    let sent = head
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent in {head}"));
    assert_eq!(header_trace_id(sent), TRACE);

    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
    let spans = trace(&receiver.spans(), TRACE);
    let producer = find(&spans, "NATS publish", |s| s.kind == "producer");
    assert_eq!(
        producer.attr("messaging.destination.name"),
        Some("orders.created")
    );
    // What the subscriber got names the producer span as its parent.
    assert_eq!(
        published.1.split('-').nth(2),
        Some(producer.span_id.as_str())
    );
    let client = find(&spans, "HTTP client", |s| {
        s.kind == "client" && s.attr("http.request.method").is_some()
    });
    assert_eq!(sent.split('-').nth(2), Some(client.span_id.as_str()));
    assert_eq!(client.attr("http.response.status_code"), Some("200"));
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_nothing_connects() {
    // Where an exporter with defaults would send spans.
    let Ok(default_port) = OtlpReceiver::start_on("127.0.0.1:4318".parse().unwrap()) else {
        eprintln!("127.0.0.1:4318 is taken on this machine; the socket check below still runs");
        return without_an_endpoint(None);
    };
    without_an_endpoint(Some(default_port));
}

fn without_an_endpoint(default_port: Option<OtlpReceiver>) {
    let dir = Dir::new();
    let (_, manifest) = counter_host(&dir);
    // Every other trace setting present: only the endpoint turns export on.
    let up = Up::start_with(
        &dir,
        &manifest,
        &[],
        &[
            ("OTEL_SERVICE_NAME", "nothing"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ],
    )
    .unwrap();
    let addr = up.addr("counter");
    let (status, _, _) = send(addr, "GET", "/", &[("traceparent", &traceparent())], b"");
    assert_eq!(status, 200);
    let pid = up.child.id();
    // No exporter thread exists, and the process's only TCP sockets are
    // its listener and the connections made to it.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    assert!(!threads.iter().any(|t| t.contains("otlp")), "{threads:?}");
    // The table lists every socket of the network namespace (other tests
    // run beside this one): only the host's own, by inode, count.
    let own: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let listener_port = format!("{:04X}", addr.port());
    for line in tcp.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !own.contains(fields[9]) {
            continue;
        }
        let (local, remote, state) = (fields[1], fields[2], fields[3]);
        // 01 = ESTABLISHED, 02 = SYN_SENT: any outgoing connection.
        if matches!(state, "01" | "02") && !local.ends_with(&listener_port) {
            assert!(
                remote.ends_with(&listener_port),
                "an unexpected connection {local} -> {remote} in\n{tcp}"
            );
        }
    }
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("exporting traces"), "{stderr}");
    // Text logs into a pipe: no colour codes.
    assert!(
        stderr.contains("INFO") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    if let Some(receiver) = default_port {
        assert_eq!(receiver.connections(), 0);
    }
}

#[test]
fn bad_trace_settings_stop_the_host_before_it_starts_and_say_why() {
    let dir = Dir::new();
    let manifest = dir.manifest("actors: []\n");
    for (var, value, named) in [
        ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4318",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ] {
        let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")];
        env.push((var, value));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .arg("up")
            .arg(&manifest)
            .envs(env)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named) && err.contains(value), "{err}");
    }
    // The log format: named with what works; any case is fine.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["up", "--log-format", "yaml"])
        .arg(&manifest)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--log-format") && err.contains("json"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["up", "--log-format", "JSON", "--help"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The trace as an indented tree (printed with `--nocapture`; the sample
/// in `docs/observability.md` comes from it).
fn draw(spans: &BTreeMap<String, ReceivedSpan>) -> String {
    fn walk(spans: &BTreeMap<String, ReceivedSpan>, parent: &str, depth: usize, out: &mut String) {
        let mut children: Vec<&ReceivedSpan> = spans
            .values()
            .filter(|s| s.parent_span_id == parent)
            .collect();
        children.sort_by_key(|s| s.start_unix_nano);
        for s in children {
            let keys = [
                "http.response.status_code",
                "waxosuit.outcome",
                "waxosuit.instance.wait_us",
                "db.operation.name",
                "messaging.destination.name",
            ];
            let attrs: Vec<String> = keys
                .iter()
                .filter_map(|k| s.attr(k).map(|v| format!("{k}={v}")))
                .collect();
            out.push_str(&format!(
                "{}{} [{}, {}, {} µs] {}\n",
                "  ".repeat(depth),
                s.name,
                s.kind,
                s.service(),
                s.duration_us,
                attrs.join(" ")
            ));
            walk(spans, &s.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, PARENT, 0, &mut out);
    out
}
