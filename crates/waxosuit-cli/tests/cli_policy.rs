//! `waxosuit up` with a policy: the embedded engine from flags and from the
//! manifest, the decision log, the metrics, and failing closed when OPA
//! cannot be reached.

mod support;

use support::{Dir, Up, get};

const HELLO_CAPS: &[&str] = &["wascc:http_server"];

fn hello_manifest(extra: &str) -> String {
    format!(
        "actors: [ ./hello.wasm ]\n\
         capabilities:\n  - id: wascc:http_server\n\
         bindings:\n  - {{ actor: hello, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}\n\
         {extra}"
    )
}

#[test]
fn a_start_the_policy_denies_stops_up_with_the_point_and_the_policy() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::example("hello"),
        "hello",
        HELLO_CAPS,
    );
    std::fs::write(
        dir.path("approved-only.rego"),
        "package waxosuit.start\n\ndefault allow := false\n\
         allow if \"approved\" in input.claims.wascap.tags\n",
    )
    .unwrap();
    let manifest = dir.manifest(&hello_manifest(""));
    let err = Up::start_with(&dir, &manifest, &["--policy", "approved-only.rego"], &[])
        .err()
        .expect("the start is denied");
    assert!(err.contains("actor start denied"), "{err}");
    assert!(err.contains("approved-only.rego"), "{err}");
    assert!(err.contains("actors[0]"), "{err}");
}

#[test]
fn invocations_are_decided_logged_counted_and_cached_from_the_manifest_section() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::example("hello"),
        "hello",
        HELLO_CAPS,
    );
    // Deliveries of HTTP requests are allowed only for the path-less
    // operation the HTTP server uses; nothing else is governed.
    std::fs::write(
        dir.path("invoke.rego"),
        "package waxosuit.invoke\n\ndefault allow := false\n\
         allow if {\n  input.direction == \"inbound\"\n  input.capability == \"wascc:http_server\"\n  \
         input.operation == \"HandleRequest\"\n  input.actor.name == \"hello\"\n}\n",
    )
    .unwrap();
    let manifest = dir.manifest(&hello_manifest(
        "policy:\n  policies: [ ./invoke.rego ]\n  decision_log: ./decisions.jsonl\n",
    ));
    let up = Up::start_with(&dir, &manifest, &["--admin", "127.0.0.1:0"], &[]).unwrap();
    assert!(
        up.summary
            .iter()
            .any(|l| l.contains("policy") && l.contains("invoke.rego")),
        "{:?}",
        up.summary
    );
    let addr = up.addr("hello");
    for _ in 0..3 {
        let (status, body) = get(addr, "/");
        assert_eq!(status, 200, "{body}");
    }
    let log = std::fs::read_to_string(dir.path("decisions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One evaluation for the start (undefined there: not governed), one
    // for the first request; the next two were cache hits.
    let invokes: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["path"] == "waxosuit/invoke/allow")
        .collect();
    assert_eq!(invokes.len(), 1, "{log}");
    let decision = invokes[0];
    assert_eq!(decision["result"], true);
    assert_eq!(decision["input"]["direction"], "inbound");
    assert_eq!(decision["input"]["operation"], "HandleRequest");
    assert!(
        decision["decision_id"]
            .as_str()
            .is_some_and(|id| id.len() >= 32)
    );
    assert!(decision["timestamp"].is_string());
    let admin: std::net::SocketAddr = up
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
        .expect("the admin address in the summary");
    let (_, metrics) = get(admin, "/metrics");
    assert!(
        metrics.contains(
            "waxosuit_policy_decisions_total{point=\"invoke\",result=\"allow\",cached=\"true\"} 2"
        ),
        "{metrics}"
    );
    let (stopped, _, _) = up.terminate();
    assert!(stopped, "a clean drain exits 0");
}

#[test]
fn an_unreachable_opa_denies_every_start() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::example("hello"),
        "hello",
        HELLO_CAPS,
    );
    let port = waxosuit_test_servers::free_port().unwrap();
    let manifest = dir.manifest(&hello_manifest(""));
    let url = format!("http://127.0.0.1:{port}");
    let err = Up::start_with(
        &dir,
        &manifest,
        &["--opa-url", &url, "--opa-timeout-ms", "300"],
        &[],
    )
    .err()
    .expect("no decision, no start");
    assert!(err.contains("could not decide"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    // Bad flags are caught before anything starts.
    let err = Up::start_with(&dir, &manifest, &["--policy-data", "x.json"], &[])
        .err()
        .expect("data without a policy");
    assert!(err.contains("--policy"), "{err}");
}
