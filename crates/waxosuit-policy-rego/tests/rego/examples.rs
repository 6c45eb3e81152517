//! The example policies in `examples/policies`, each with allow and deny
//! cases, alone and loaded together as one set.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use waxosuit_policy::{DecisionPoint, Policy, PolicyConfig, PolicyDenied};
use waxosuit_policy_rego::RegoEngine;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(name)
}

fn policy(files: &[&str]) -> Policy {
    let files: Vec<PathBuf> = files.iter().map(|f| example(f)).collect();
    let engine = RegoEngine::from_files(&files, &[example("data.json")]).unwrap();
    Policy::new(Arc::new(engine), PolicyConfig::default())
}

const ADMIN: &str = "NBLXA3SI6WYI2LJWKBKDLVNGMGJJUYVG5VEVAHK4ZJKC5TY3YQFZMWCB";

fn start(tags: Value) -> Value {
    json!({
        "token": "a.b.c",
        "claims": { "iss": "AISSUER", "sub": "MACTOR", "wascap": { "name": "kv", "tags": tags } },
        "module": { "hash": "AB", "size": 1 },
        "source": "kv.wasm",
        "host": { "id": null, "labels": {} }
    })
}

fn invoke(name: &str, capability: &str, operation: &str, direction: &str) -> Value {
    json!({
        "actor": { "key": format!("M{}", name.to_uppercase()), "name": name, "issuer": "AISSUER", "caps": [], "tags": [] },
        "capability": capability,
        "binding": "default",
        "operation": operation,
        "direction": direction,
        "host": { "id": null, "labels": {} }
    })
}

fn command(signer: &str) -> Value {
    json!({
        "signer": signer,
        "command": { "cmd": "stop_actor", "actor": "MACTOR" },
        "host": { "id": "NHOST", "labels": {} }
    })
}

#[track_caller]
fn assert_denied(result: Result<(), PolicyDenied>, point: DecisionPoint) {
    match result {
        Err(PolicyDenied::Denied { point: p, .. }) => assert_eq!(p, point),
        other => panic!("expected a denial at {point}, got {other:?}"),
    }
}

#[tokio::test]
async fn trusted_tags_starts_only_approved_actors() {
    let policy = policy(&["trusted-tags.rego"]);
    policy
        .check(DecisionPoint::Start, start(json!(["beta", "approved"])))
        .await
        .unwrap();
    assert_denied(
        policy
            .check(DecisionPoint::Start, start(json!(["beta"])))
            .await,
        DecisionPoint::Start,
    );
    assert_denied(
        policy.check(DecisionPoint::Start, start(Value::Null)).await,
        DecisionPoint::Start,
    );
    // It says nothing about calls.
    policy
        .check(
            DecisionPoint::Invoke,
            invoke("kv", "wascc:keyvalue", "Set", "outbound"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn no_egress_allows_outbound_http_only_to_listed_actors() {
    let policy = policy(&["no-egress.rego"]);
    let fetch = |name: &str| invoke(name, "wascc:http_client", "PerformRequest", "outbound");
    policy
        .check(DecisionPoint::Invoke, fetch("http-fetch"))
        .await
        .unwrap();
    assert_denied(
        policy
            .check(DecisionPoint::Invoke, fetch("kvcounter"))
            .await,
        DecisionPoint::Invoke,
    );
    // Listed by key works too.
    let mut by_key = fetch("other");
    by_key["actor"]["key"] = json!("http-fetch");
    policy.check(DecisionPoint::Invoke, by_key).await.unwrap();
    // Everything else goes through.
    policy
        .check(
            DecisionPoint::Invoke,
            invoke("kvcounter", "wascc:http_server", "HandleRequest", "inbound"),
        )
        .await
        .unwrap();
    policy
        .check(
            DecisionPoint::Invoke,
            invoke("kvcounter", "wascc:keyvalue", "Set", "outbound"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn read_only_kv_denies_every_write_operation() {
    let policy = policy(&["read-only-kv.rego"]);
    for read in [
        "Get",
        "Range",
        "SetQuery",
        "SetUnion",
        "SetIntersection",
        "KeyExists",
    ] {
        policy
            .check(
                DecisionPoint::Invoke,
                invoke("kv", "wascc:keyvalue", read, "outbound"),
            )
            .await
            .unwrap_or_else(|e| panic!("{read}: {e}"));
    }
    for write in [
        "Set",
        "Add",
        "Del",
        "Clear",
        "Push",
        "ListItemDelete",
        "SetAdd",
        "SetRemove",
    ] {
        assert_denied(
            policy
                .check(
                    DecisionPoint::Invoke,
                    invoke("kv", "wascc:keyvalue", write, "outbound"),
                )
                .await,
            DecisionPoint::Invoke,
        );
    }
    // The same operation names on another capability are not key-value writes.
    policy
        .check(
            DecisionPoint::Invoke,
            invoke("kv", "acme:inventory", "Set", "outbound"),
        )
        .await
        .unwrap();
}

/// The write operations the example lists are exactly the contract's
/// operations that change data: a new operation in the codec must be
/// classified here.
#[test]
fn read_only_kv_lists_the_contracts_operations() {
    let text = std::fs::read_to_string(example("read-only-kv.rego")).unwrap();
    let listed = text
        .lines()
        .find_map(|l| l.strip_prefix("kv_writes := {"))
        .unwrap()
        .trim_end_matches('}');
    let writes: Vec<&str> = listed
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    let header = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<String>();
    let all = [
        "Get",
        "Set",
        "Add",
        "Del",
        "Clear",
        "Range",
        "Push",
        "ListItemDelete",
        "SetAdd",
        "SetRemove",
        "SetUnion",
        "SetIntersection",
        "SetQuery",
        "KeyExists",
    ];
    for op in all {
        assert!(
            writes.contains(&op) || header.contains(op),
            "{op} is neither a listed write nor a documented read"
        );
    }
    assert_eq!(writes.len(), 8);
}

#[tokio::test]
async fn commands_by_admin_runs_only_listed_signers() {
    let policy = policy(&["commands-by-admin.rego"]);
    policy
        .check(DecisionPoint::Command, command(ADMIN))
        .await
        .unwrap();
    assert_denied(
        policy
            .check(DecisionPoint::Command, command("NSOMEONEELSE"))
            .await,
        DecisionPoint::Command,
    );
}

#[tokio::test]
async fn all_examples_load_together() {
    let policy = policy(&[
        "trusted-tags.rego",
        "no-egress.rego",
        "read-only-kv.rego",
        "commands-by-admin.rego",
    ]);
    policy
        .check(DecisionPoint::Start, start(json!(["approved"])))
        .await
        .unwrap();
    policy
        .check(
            DecisionPoint::Invoke,
            invoke(
                "http-fetch",
                "wascc:http_client",
                "PerformRequest",
                "outbound",
            ),
        )
        .await
        .unwrap();
    policy
        .check(
            DecisionPoint::Invoke,
            invoke("kv", "wascc:keyvalue", "Get", "outbound"),
        )
        .await
        .unwrap();
    // Each file's denials still apply in the combined set.
    assert_denied(
        policy
            .check(
                DecisionPoint::Invoke,
                invoke("kv", "wascc:http_client", "PerformRequest", "outbound"),
            )
            .await,
        DecisionPoint::Invoke,
    );
    assert_denied(
        policy
            .check(
                DecisionPoint::Invoke,
                invoke("kv", "wascc:keyvalue", "Del", "outbound"),
            )
            .await,
        DecisionPoint::Invoke,
    );
    assert_denied(
        policy.check(DecisionPoint::Command, command("NX")).await,
        DecisionPoint::Command,
    );
    // No example governs provider archives.
    policy
        .check(DecisionPoint::Provider, json!({}))
        .await
        .unwrap();
}
