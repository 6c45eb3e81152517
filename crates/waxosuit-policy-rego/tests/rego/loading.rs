//! Loading: what is an error at construction, and which points a policy set
//! governs.

use std::path::PathBuf;

use serde_json::json;
use waxosuit_policy::{DecisionPoint, PolicyEngine};
use waxosuit_policy_rego::{RegoEngine, RegoError};

use crate::{fixture, fixture_engine, sources};

fn governed(engine: &RegoEngine) -> Vec<&'static str> {
    DecisionPoint::ALL
        .into_iter()
        .filter(|p| engine.governs(*p))
        .map(DecisionPoint::name)
        .collect()
}

#[test]
fn fixtures_load_and_describe_themselves_by_file_name() {
    let engine = fixture_engine();
    assert_eq!(
        engine.describe(),
        "embedded policy (invoke.rego, start.rego)"
    );
    assert_eq!(governed(&engine), ["start", "invoke"]);
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.rego");
    let bad = dir.path().join("bad.rego");
    std::fs::write(&good, "package waxosuit.start\nallow if true\n").unwrap();
    std::fs::write(
        &bad,
        "package waxosuit.invoke\n\nallow if {\n  input.a ==\n}\n",
    )
    .unwrap();

    let err = RegoEngine::from_files(&[good, bad.clone()], &[]).unwrap_err();
    match &err {
        RegoError::Policy {
            file,
            line,
            message,
            ..
        } => {
            assert_eq!(file, &bad.display().to_string());
            assert_eq!(*line, Some(5));
            assert!(message.contains("expecting expression"), "{message}");
        }
        other => panic!("expected RegoError::Policy, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}:5:", bad.display())), "{text}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the full diagnostic is kept"
    );
}

#[test]
fn rego_v0_syntax_is_refused() {
    let err = sources(&[("v0.rego", "package waxosuit.start\nallow {\n  true\n}\n")]).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("v0.rego:2:"), "{text}");
    assert!(text.contains("`if` keyword is required"), "{text}");
}

#[test]
fn compile_errors_are_load_errors() {
    let err = sources(&[
        ("ok.rego", "package waxosuit.invoke\nallow if true\n"),
        ("unsafe.rego", "package waxosuit.start\nallow if x == 1\n"),
    ])
    .unwrap_err();
    assert!(
        matches!(&err, RegoError::Policy { file, line: Some(2), .. } if file == "unsafe.rego"),
        "{err:?}"
    );
    assert!(err.to_string().contains("unsafe"), "{err}");
}

#[test]
fn files_that_cannot_be_read_are_named() {
    let missing = PathBuf::from("/nonexistent/authz.rego");
    let err = RegoEngine::from_files(std::slice::from_ref(&missing), &[]).unwrap_err();
    assert!(matches!(&err, RegoError::Read { file, policy: true, .. } if *file == missing));
    assert_eq!(
        err.to_string(),
        "cannot read policy file /nonexistent/authz.rego"
    );

    let err = RegoEngine::from_files(
        &[fixture("start.rego")],
        &[PathBuf::from("/nonexistent/d.json")],
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("cannot read data file"),
        "{err}"
    );
}

#[test]
fn data_must_be_json_objects_that_merge() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let policy = [fixture("start.rego")];

    let array = write("array.json", "[1, 2]");
    let err = RegoEngine::from_files(&policy, std::slice::from_ref(&array)).unwrap_err();
    assert!(matches!(&err, RegoError::Data { file, .. } if *file == array.display().to_string()));
    assert!(
        err.to_string().contains("must be a JSON object") && err.to_string().contains("an array"),
        "{err}"
    );

    let broken = write("broken.json", "{ \"a\": ");
    let err = RegoEngine::from_files(&policy, &[broken]).unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    // Nested objects merge, like OPA's data files…
    let a = write("a.json", r#"{ "lattice": { "admins": ["NA"] } }"#);
    let b = write(
        "b.json",
        r#"{ "lattice": { "regions": ["eu"] }, "egress": {} }"#,
    );
    RegoEngine::from_files(&policy, &[a.clone(), b]).unwrap();
    // …and the same path with two values is an error naming the file.
    let c = write("c.json", r#"{ "lattice": { "admins": ["NB"] } }"#);
    let err = RegoEngine::from_files(&policy, &[a, c.clone()]).unwrap_err();
    assert!(
        matches!(&err, RegoError::Data { file, .. } if *file == c.display().to_string()),
        "{err:?}"
    );

    let err = RegoEngine::from_sources(vec![], vec![json!("text")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data document #1: a data document must be a JSON object (it is merged into `data`), found a string"
    );
}

#[test]
fn the_same_policy_twice_is_an_error() {
    let err =
        RegoEngine::from_files(&[fixture("start.rego"), fixture("start.rego")], &[]).unwrap_err();
    assert!(matches!(err, RegoError::DuplicatePolicy { .. }), "{err:?}");
}

#[test]
fn governs_follows_packages_rules_and_data() {
    // Deeper packages govern their point.
    let engine = sources(&[(
        "deep.rego",
        "package waxosuit.provider.archives\nok if true\n",
    )])
    .unwrap();
    assert_eq!(governed(&engine), ["provider"]);

    // A package that defines rules other than `allow` still governs.
    let engine = sources(&[(
        "other.rego",
        "package waxosuit.command\nadmins := {\"NA\"}\n",
    )])
    .unwrap();
    assert_eq!(governed(&engine), ["command"]);

    // `package waxosuit` governs the points it names rules for.
    let engine = sources(&[(
        "root.rego",
        "package waxosuit\nstart.allow if true\ncommand := {\"allow\": false}\nhelper := 1\n",
    )])
    .unwrap();
    assert_eq!(governed(&engine), ["start", "command"]);

    // Other packages govern nothing.
    let engine = sources(&[
        ("lib.rego", "package lib\nx := 1\n"),
        ("near.rego", "package waxosuit_extra.start\nallow if true\n"),
    ])
    .unwrap();
    assert!(governed(&engine).is_empty());

    // Data under waxosuit.<point> governs it.
    let engine = RegoEngine::from_sources(
        vec![],
        vec![json!({ "waxosuit": { "invoke": { "allow": true } }, "other": { "start": 1 } })],
    )
    .unwrap();
    assert_eq!(governed(&engine), ["invoke"]);
    assert_eq!(engine.describe(), "embedded policy (data only)");
}
