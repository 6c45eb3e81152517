//! Decisions: what the engine makes of each document, alone and behind a
//! `Policy`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waxosuit_policy::{
    DecisionPoint, InvokeKey, Outcome, Policy, PolicyConfig, PolicyDenied, PolicyEngine,
};
use waxosuit_policy_rego::RegoEngine;

use crate::{fixture_engine, sources};

fn invoke(operation: &str) -> Value {
    json!({
        "actor": { "key": "MACTOR", "name": "kv", "issuer": "AISSUER", "caps": [], "tags": [] },
        "capability": "wascc:keyvalue",
        "binding": "default",
        "operation": operation,
        "direction": "outbound",
        "host": { "id": null, "labels": {} }
    })
}

fn start(tags: &[&str], token: &str) -> Value {
    json!({
        "token": token,
        "claims": { "iss": "AISSUER", "sub": "MACTOR", "wascap": { "name": "kv", "tags": tags } },
        "module": { "hash": "AB", "size": 1 },
        "source": "kv.wasm",
        "host": { "id": null, "labels": {} }
    })
}

const MAGIC: &str = "eyJhbGciOiJFZDI1NTE5In0.eyJtYWdpYyI6dHJ1ZX0.c2ln";

#[tokio::test]
async fn fixture_decisions() {
    let engine = fixture_engine();
    let eval = |point, input: Value| {
        let engine = &engine;
        async move { engine.evaluate(point, &input).await }
    };
    assert_eq!(
        eval(DecisionPoint::Invoke, invoke("Get")).await.unwrap(),
        Outcome::Allow
    );
    assert_eq!(
        eval(DecisionPoint::Invoke, invoke("Set")).await.unwrap(),
        Outcome::Deny
    );
    assert_eq!(
        eval(DecisionPoint::Start, start(&["approved"], "t"))
            .await
            .unwrap(),
        Outcome::Allow
    );
    assert_eq!(
        eval(DecisionPoint::Start, start(&["beta"], "t"))
            .await
            .unwrap(),
        Outcome::Undefined
    );
    assert_eq!(
        eval(DecisionPoint::Start, start(&[], MAGIC)).await.unwrap(),
        Outcome::Allow,
        "the token reaches the policy intact"
    );
    // Points nothing defines are undefined, without evaluating anything.
    for point in [DecisionPoint::Provider, DecisionPoint::Command] {
        assert_eq!(eval(point, json!({})).await.unwrap(), Outcome::Undefined);
    }
}

#[tokio::test]
async fn conflicting_values_are_an_evaluation_error_naming_the_rule_and_place() {
    let engine = fixture_engine();
    let err = engine
        .evaluate(DecisionPoint::Invoke, &invoke("Conflict"))
        .await
        .unwrap_err();
    assert!(err.is_evaluation(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot evaluate data.waxosuit.invoke.allow: "),
        "{text}"
    );
    assert!(
        text.contains("invoke.rego:") && text.contains("conflict"),
        "{text}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn only_true_allows() {
    let engine = sources(&[(
        "values.rego",
        r#"package waxosuit.invoke
allow := input.value
"#,
    )])
    .unwrap();
    for (value, expected) in [
        (json!(true), Outcome::Allow),
        (json!(false), Outcome::Deny),
        (json!("true"), Outcome::Deny),
        (json!(1), Outcome::Deny),
        (json!({ "allow": true }), Outcome::Deny),
        (json!([true]), Outcome::Deny),
        (json!(null), Outcome::Deny),
    ] {
        let outcome = engine
            .evaluate(DecisionPoint::Invoke, &json!({ "value": value }))
            .await
            .unwrap();
        assert_eq!(outcome, expected, "allow := {value}");
    }
    // An input without `value` leaves the rule undefined.
    assert_eq!(
        engine
            .evaluate(DecisionPoint::Invoke, &json!({}))
            .await
            .unwrap(),
        Outcome::Undefined
    );
}

#[tokio::test]
async fn documents_from_data_and_parent_rules_are_resolved() {
    // `allow` defined by data only.
    let engine = RegoEngine::from_sources(
        vec![],
        vec![json!({ "waxosuit": { "start": { "allow": true }, "command": { "allow": "no" } } })],
    )
    .unwrap();
    assert_eq!(
        engine
            .evaluate(DecisionPoint::Start, &json!({}))
            .await
            .unwrap(),
        Outcome::Allow
    );
    assert_eq!(
        engine
            .evaluate(DecisionPoint::Command, &json!({}))
            .await
            .unwrap(),
        Outcome::Deny
    );

    // `allow` inside a document built by a rule of `package waxosuit`, and
    // a package that governs a point without defining `allow`.
    let engine = sources(&[
        (
            "root.rego",
            r#"package waxosuit
command := {"allow": input.admin}
start.allow if input.x == 1
"#,
        ),
        ("helpers.rego", "package waxosuit.provider\nhelper := 1\n"),
    ])
    .unwrap();
    let eval = |point, input: Value| {
        let engine = &engine;
        async move { engine.evaluate(point, &input).await.unwrap() }
    };
    assert_eq!(
        eval(DecisionPoint::Command, json!({ "admin": true })).await,
        Outcome::Allow
    );
    assert_eq!(
        eval(DecisionPoint::Command, json!({ "admin": false })).await,
        Outcome::Deny
    );
    assert_eq!(
        eval(DecisionPoint::Start, json!({ "x": 1 })).await,
        Outcome::Allow
    );
    assert_eq!(
        eval(DecisionPoint::Start, json!({ "x": 2 })).await,
        Outcome::Undefined
    );
    assert_eq!(
        eval(DecisionPoint::Provider, json!({})).await,
        Outcome::Undefined
    );
    assert!(engine.governs(DecisionPoint::Provider));
}

#[tokio::test]
async fn builtins_behave_as_in_opa() {
    let engine = sources(&[(
        "builtins.rego",
        r#"package waxosuit.invoke
allow if {
    startswith(input.operation, "Get")
    regex.match(`^[A-Z][a-zA-Z]+$`, input.operation)
    glob.match("wascc:*", [], input.capability)
    net.cidr_contains("10.0.0.0/8", input.peer)
    time.now_ns() > 0
    every tag in input.tags { tag != "blocked" }
}
# A builtin error (bad argument) makes the expression undefined, as in OPA.
allow if to_number(input.level) > 3
"#,
    )])
    .unwrap();
    let eval = |input: Value| {
        let engine = &engine;
        async move { engine.evaluate(DecisionPoint::Invoke, &input).await }
    };
    let base = json!({ "operation": "GetAll", "capability": "wascc:keyvalue", "peer": "10.1.2.3", "tags": ["a"] });
    assert_eq!(eval(base.clone()).await.unwrap(), Outcome::Allow);
    let mut blocked = base.clone();
    blocked["tags"] = json!(["a", "blocked"]);
    assert_eq!(eval(blocked).await.unwrap(), Outcome::Undefined);
    assert_eq!(
        eval(json!({ "level": "high" })).await.unwrap(),
        Outcome::Undefined
    );
    assert_eq!(eval(json!({ "level": "5" })).await.unwrap(), Outcome::Allow);
}

#[tokio::test]
async fn unknown_functions_fail_the_evaluation() {
    // Regorus resolves functions when a rule body runs, so this loads; the
    // decision fails (and a Policy denies it).
    let engine = sources(&[(
        "send.rego",
        "package waxosuit.start\nallow if http.send({\"url\": input.url}).status_code == 200\n",
    )])
    .unwrap();
    let err = engine
        .evaluate(DecisionPoint::Start, &json!({ "url": "http://x" }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("http.send"), "{err}");
}

#[tokio::test]
async fn a_runaway_rule_hits_the_time_limit() {
    let engine = sources(&[(
        "slow.rego",
        r#"package waxosuit.start
allow if {
    some i in numbers.range(1, 5000)
    some j in numbers.range(1, 5000)
    i * j == -1
}
"#,
    )])
    .unwrap()
    .with_time_limit(Duration::from_millis(20));
    let started = Instant::now();
    let err = engine
        .evaluate(DecisionPoint::Start, &json!({}))
        .await
        .unwrap_err();
    assert!(err.is_evaluation(), "{err:?}");
    assert!(err.to_string().contains("exceeded time limit"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn behind_a_policy_the_fixture_allows_denies_and_fails_closed() {
    let policy = Policy::new(Arc::new(fixture_engine()), PolicyConfig::default());
    assert_eq!(
        policy.describe(),
        "embedded policy (invoke.rego, start.rego)"
    );
    let key = |operation| InvokeKey {
        actor: "MACTOR",
        capability: "wascc:keyvalue",
        binding: "default",
        operation,
        direction: waxosuit_policy::input::Direction::Outbound,
    };

    policy
        .check_invoke(key("Get"), || invoke("Get"))
        .await
        .unwrap();
    let denied = policy
        .check_invoke(key("Set"), || invoke("Set"))
        .await
        .unwrap_err();
    assert!(matches!(
        denied,
        PolicyDenied::Denied {
            point: DecisionPoint::Invoke,
            ..
        }
    ));
    assert!(
        denied
            .to_string()
            .starts_with("invocation denied by embedded policy (invoke.rego, start.rego)")
    );

    let failed = policy
        .check_invoke(key("Conflict"), || invoke("Conflict"))
        .await
        .unwrap_err();
    assert!(failed.is_failure(), "{failed:?}");

    policy
        .check(DecisionPoint::Start, start(&["approved"], "t"))
        .await
        .unwrap();
    let undefined = policy
        .check(DecisionPoint::Start, start(&[], "t"))
        .await
        .unwrap_err();
    assert!(undefined.to_string().contains("undefined"), "{undefined}");
    // Nothing in the fixture speaks about providers or commands.
    policy
        .check(DecisionPoint::Provider, json!({}))
        .await
        .unwrap();
    policy
        .check(DecisionPoint::Command, json!({}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_evaluations_on_a_multi_threaded_runtime() {
    let engine = Arc::new(fixture_engine());
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                for i in 0..100 {
                    let (operation, expected) = match (t + i) % 3 {
                        0 => ("Get", Outcome::Allow),
                        1 => ("Set", Outcome::Deny),
                        _ => ("Del", Outcome::Deny),
                    };
                    let outcome = engine
                        .evaluate(DecisionPoint::Invoke, &invoke(operation))
                        .await
                        .unwrap();
                    assert_eq!(outcome, expected, "{operation}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}
