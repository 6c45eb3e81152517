//! `Policy` seen from a host: what each outcome turns into, what is cached,
//! logged and counted.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use waxosuit_policy::{
    DecisionLog, DecisionPoint, EngineError, EngineErrorKind, InvokeKey, Outcome, Policy,
    PolicyConfig, PolicyDenied, PolicyEngine,
};

/// An engine that answers from `input["answer"]` ("allow", "deny",
/// "undefined", "error", "timeout") and counts its evaluations.
struct Scripted {
    governed: Vec<DecisionPoint>,
    evaluations: AtomicUsize,
}

impl Scripted {
    fn new(governed: &[DecisionPoint]) -> Arc<Scripted> {
        Arc::new(Scripted {
            governed: governed.to_vec(),
            evaluations: AtomicUsize::new(0),
        })
    }

    fn evaluations(&self) -> usize {
        self.evaluations.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl PolicyEngine for Scripted {
    fn describe(&self) -> String {
        "scripted policy".into()
    }

    fn governs(&self, point: DecisionPoint) -> bool {
        self.governed.contains(&point)
    }

    async fn evaluate(&self, _point: DecisionPoint, input: &Value) -> Result<Outcome, EngineError> {
        self.evaluations.fetch_add(1, Ordering::SeqCst);
        // Yield once, like a real engine would at an I/O boundary.
        tokio::task::yield_now().await;
        match input["answer"].as_str() {
            Some("allow") => Ok(Outcome::Allow),
            Some("deny") => Ok(Outcome::Deny),
            Some("undefined") => Ok(Outcome::Undefined),
            Some("timeout") => Err(EngineError::new(
                EngineErrorKind::Timeout,
                "no answer within 1000 ms",
            )),
            _ => Err(EngineError::evaluation("conflicting values for allow")
                .with_source(io::Error::other("rule at authz.rego:7"))),
        }
    }
}

const ALL: [DecisionPoint; 4] = DecisionPoint::ALL;

fn policy(engine: &Arc<Scripted>, ttl: Duration) -> Policy {
    Policy::new(
        Arc::clone(engine) as Arc<dyn PolicyEngine>,
        PolicyConfig {
            cache_ttl: ttl,
            decision_log: None,
        },
    )
}

fn key(operation: &str) -> InvokeKey<'_> {
    InvokeKey {
        actor: "MACTOR",
        capability: "wascc:keyvalue",
        binding: "default",
        operation,
        direction: waxosuit_policy::input::Direction::Outbound,
    }
}

fn answer(answer: &str) -> Value {
    json!({ "answer": answer })
}

#[tokio::test]
async fn outcomes_map_to_allow_deny_and_fail_closed() {
    let engine = Scripted::new(&ALL);
    let policy = policy(&engine, Duration::ZERO);
    assert_eq!(policy.describe(), "scripted policy");

    policy
        .check(DecisionPoint::Start, answer("allow"))
        .await
        .unwrap();

    let denied = policy
        .check(DecisionPoint::Start, answer("deny"))
        .await
        .unwrap_err();
    match &denied {
        PolicyDenied::Denied {
            point,
            policy,
            reason,
        } => {
            assert_eq!(*point, DecisionPoint::Start);
            assert_eq!(policy, "scripted policy");
            assert!(reason.contains("data.waxosuit.start.allow"), "{reason}");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert_eq!(
        denied.to_string(),
        "actor start denied by scripted policy: data.waxosuit.start.allow is not true"
    );

    let undefined = policy
        .check(DecisionPoint::Provider, answer("undefined"))
        .await
        .unwrap_err();
    assert!(!undefined.is_failure());
    assert!(
        undefined.to_string().contains("is undefined"),
        "{undefined}"
    );
    assert_eq!(undefined.point(), DecisionPoint::Provider);

    for (what, kind) in [
        ("error", EngineErrorKind::Evaluation),
        ("timeout", EngineErrorKind::Timeout),
    ] {
        let failed = policy
            .check(DecisionPoint::Command, answer(what))
            .await
            .unwrap_err();
        assert!(failed.is_failure(), "{failed:?}");
        assert_eq!(failed.point(), DecisionPoint::Command);
        let text = failed.to_string();
        assert!(
            text.contains("lattice command") && text.contains("scripted policy"),
            "{text}"
        );
        match failed {
            PolicyDenied::Failed { source, .. } => assert_eq!(source.kind(), kind),
            other => panic!("expected Failed, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn undefined_allows_only_where_the_policy_says_nothing() {
    let engine = Scripted::new(&[DecisionPoint::Invoke]);
    let policy = policy(&engine, Duration::ZERO);
    assert!(policy.governs(DecisionPoint::Invoke));
    assert!(!policy.governs(DecisionPoint::Start));

    for point in [
        DecisionPoint::Start,
        DecisionPoint::Provider,
        DecisionPoint::Command,
    ] {
        policy.check(point, answer("undefined")).await.unwrap();
        // Only undefined is forgiven: an explicit deny still denies.
        assert!(policy.check(point, answer("deny")).await.is_err());
    }
    let err = policy
        .check(DecisionPoint::Invoke, answer("undefined"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        PolicyDenied::Denied {
            point: DecisionPoint::Invoke,
            ..
        }
    ));
}

#[tokio::test]
async fn an_outbound_call_and_an_inbound_delivery_are_decided_apart() {
    let engine = Scripted::new(&ALL);
    let policy = policy(&engine, Duration::from_secs(60));
    policy
        .check_invoke(key("Deliver"), || answer("allow"))
        .await
        .unwrap();
    let inbound = InvokeKey {
        direction: waxosuit_policy::input::Direction::Inbound,
        ..key("Deliver")
    };
    let denied = policy.check_invoke(inbound, || answer("deny")).await;
    assert!(denied.is_err(), "the outbound verdict was reused");
    assert_eq!(engine.evaluations(), 2);
    policy
        .check_invoke(key("Deliver"), || panic!("cached"))
        .await
        .unwrap();
}

#[tokio::test]
async fn invocation_decisions_are_cached_per_key_allow_and_deny() {
    let engine = Scripted::new(&ALL);
    let policy = policy(&engine, Duration::from_secs(60));

    policy
        .check_invoke(key("Get"), || answer("allow"))
        .await
        .unwrap();
    assert!(
        policy
            .check_invoke(key("Set"), || answer("deny"))
            .await
            .is_err()
    );
    assert_eq!(engine.evaluations(), 2);

    for _ in 0..3 {
        policy
            .check_invoke(key("Get"), || panic!("a hit must not build the input"))
            .await
            .unwrap();
        let denied = policy
            .check_invoke(key("Set"), || panic!("a hit must not build the input"))
            .await
            .unwrap_err();
        assert!(matches!(
            denied,
            PolicyDenied::Denied {
                point: DecisionPoint::Invoke,
                ..
            }
        ));
    }
    assert_eq!(engine.evaluations(), 2, "hits do not evaluate");

    // Any field of the key makes another decision.
    let other_binding = InvokeKey {
        binding: "cache",
        ..key("Get")
    };
    policy
        .check_invoke(other_binding, || answer("allow"))
        .await
        .unwrap();
    assert_eq!(engine.evaluations(), 3);

    // `check` is never cached.
    policy
        .check(DecisionPoint::Invoke, answer("allow"))
        .await
        .unwrap();
    policy
        .check(DecisionPoint::Invoke, answer("allow"))
        .await
        .unwrap();
    assert_eq!(engine.evaluations(), 5);
}

#[tokio::test]
async fn failures_are_never_cached() {
    let engine = Scripted::new(&ALL);
    let policy = policy(&engine, Duration::from_secs(60));
    for _ in 0..3 {
        let err = policy
            .check_invoke(key("Get"), || answer("timeout"))
            .await
            .unwrap_err();
        assert!(err.is_failure());
    }
    assert_eq!(engine.evaluations(), 3);
    // Once the engine answers, that answer is cached.
    policy
        .check_invoke(key("Get"), || answer("allow"))
        .await
        .unwrap();
    policy
        .check_invoke(key("Get"), || answer("timeout"))
        .await
        .unwrap();
    assert_eq!(engine.evaluations(), 4);
}

#[tokio::test]
async fn zero_ttl_asks_every_time_and_entries_expire() {
    let engine = Scripted::new(&ALL);
    let uncached = policy(&engine, Duration::ZERO);
    for _ in 0..3 {
        uncached
            .check_invoke(key("Get"), || answer("allow"))
            .await
            .unwrap();
    }
    assert_eq!(engine.evaluations(), 3);

    let engine = Scripted::new(&ALL);
    let short = policy(&engine, Duration::from_millis(100));
    short
        .check_invoke(key("Get"), || answer("allow"))
        .await
        .unwrap();
    short
        .check_invoke(key("Get"), || answer("allow"))
        .await
        .unwrap();
    assert_eq!(engine.evaluations(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // After the TTL the engine decides again, and its new answer counts.
    assert!(
        short
            .check_invoke(key("Get"), || answer("deny"))
            .await
            .is_err()
    );
    assert_eq!(engine.evaluations(), 2);
}

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn evaluated_decisions_are_logged_and_hits_are_not() {
    let engine = Scripted::new(&[DecisionPoint::Invoke, DecisionPoint::Start]);
    let buffer = Shared::default();
    let policy = Policy::new(
        engine,
        PolicyConfig {
            cache_ttl: Duration::from_secs(60),
            decision_log: Some(DecisionLog::to_writer("buffer", buffer.clone())),
        },
    );

    policy
        .check_invoke(key("Get"), || answer("allow"))
        .await
        .unwrap();
    policy
        .check_invoke(key("Get"), || answer("allow"))
        .await
        .unwrap();
    let _ = policy
        .check(DecisionPoint::Start, answer("undefined"))
        .await;
    let _ = policy.check(DecisionPoint::Command, answer("deny")).await;
    let _ = policy.check(DecisionPoint::Provider, answer("error")).await;

    let lines = buffer.lines();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0]["path"], "waxosuit/invoke/allow");
    assert_eq!(lines[0]["input"], answer("allow"));
    assert_eq!(lines[0]["result"], true);
    assert_eq!(lines[1]["path"], "waxosuit/start/allow");
    assert!(lines[1].get("result").is_none(), "undefined: no result");
    assert_eq!(lines[2]["path"], "waxosuit/command/allow");
    assert_eq!(lines[2]["result"], false);
    assert_eq!(lines[3]["path"], "waxosuit/provider/allow");
    assert!(lines[3].get("result").is_none());
    assert_eq!(
        lines[3]["error"],
        "conflicting values for allow: rule at authz.rego:7"
    );
    for line in &lines {
        for field in ["decision_id", "timestamp"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }
}

fn exposition(policy: &Policy) -> String {
    let mut registry = Registry::with_prefix("waxosuit");
    registry.register_collector(policy.collector());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn series(text: &str, point: &str, result: &str, cached: bool) -> u64 {
    let prefix = format!(
        "waxosuit_policy_decisions_total{{point=\"{point}\",result=\"{result}\",cached=\"{cached}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn decisions_are_counted_by_point_result_and_cache() {
    let engine = Scripted::new(&ALL);
    let policy = policy(&engine, Duration::from_secs(60));
    for _ in 0..3 {
        policy
            .check_invoke(key("Get"), || answer("allow"))
            .await
            .unwrap();
        let _ = policy.check_invoke(key("Set"), || answer("deny")).await;
        let _ = policy.check_invoke(key("Del"), || answer("error")).await;
    }
    let _ = policy
        .check(DecisionPoint::Start, answer("undefined"))
        .await;

    let text = exposition(&policy);
    assert_eq!(series(&text, "invoke", "allow", false), 1);
    assert_eq!(series(&text, "invoke", "allow", true), 2);
    assert_eq!(series(&text, "invoke", "deny", false), 1);
    assert_eq!(series(&text, "invoke", "deny", true), 2);
    assert_eq!(series(&text, "invoke", "error", false), 3);
    assert_eq!(series(&text, "invoke", "error", true), 0);
    assert_eq!(series(&text, "start", "deny", false), 1);
    assert_eq!(series(&text, "command", "allow", false), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_between_tasks_on_a_multi_threaded_runtime() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let engine = Scripted::new(&ALL);
    let policy = Arc::new(policy(&engine, Duration::from_secs(60)));
    assert_send_sync(&*policy);

    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let policy = Arc::clone(&policy);
            tokio::spawn(async move {
                for i in 0..200 {
                    let operation = format!("Op{}", i % 10);
                    let expected_allow = (i % 10) % 2 == 0;
                    let input = move || answer(if expected_allow { "allow" } else { "deny" });
                    let result = policy.check_invoke(key(&operation), input).await;
                    assert_eq!(result.is_ok(), expected_allow, "task {t} op {operation}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Ten keys; racing misses may evaluate a key more than once, but never
    // anywhere near once per call.
    let evaluations = engine.evaluations();
    assert!(
        (10..=80).contains(&evaluations),
        "{evaluations} evaluations"
    );
    let text = exposition(&policy);
    let total: u64 = [
        ("allow", false),
        ("allow", true),
        ("deny", false),
        ("deny", true),
    ]
    .iter()
    .map(|(result, cached)| series(&text, "invoke", result, *cached))
    .sum();
    assert_eq!(total, 8 * 200);
}
