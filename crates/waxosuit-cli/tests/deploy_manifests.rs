//! deploy/ validated offline by scripts/validate-deploy.sh: the Kubernetes
//! objects with kubernetes-validate (bundled schemas, strict), the Knative
//! Service with the @kubernetes-models/knative schema and Knative's
//! admission rules. The committed manifests must pass; a copy broken on
//! purpose must fail with the validators' own messages, so the check is
//! known to bite.
//!
//! Needs python3 (with venv), node and npm, and PyPI and the npm registry
//! the first time (the tools are kept under the target directory).

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the validators are installed: beside this build's binaries, in the
/// target directory (which may not be `target/`).
fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_waxosuit"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("deploy-validate")
}

fn validate(dir: &Path) -> (Output, String) {
    let out = std::process::Command::new(repo_root().join("scripts/validate-deploy.sh"))
        .arg(dir)
        .env("WAXOSUIT_VALIDATE_TOOLS", tools_dir())
        .env_remove("KUBERNETES_VERSION")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// `text` with `from` replaced once; fails if `from` is not there, so a
/// change to deploy/ cannot quietly leave the broken copy unbroken.
#[track_caller]
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "`{from}` once in:\n{text}");
    text.replacen(from, to, 1)
}

fn copy_deploy(to: &Path) {
    for sub in ["kubernetes", "knative"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(repo_root().join("deploy").join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(sub).join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_committed_manifests_pass_both_validators() {
    let deploy = repo_root().join("deploy");
    let (out, text) = validate(&deploy);
    assert!(out.status.success(), "{text}");
    for file in ["configmap", "deployment", "networkpolicy", "service"] {
        assert!(
            text.contains(&format!("kubernetes/{file}.yaml passed for resource")),
            "{file}: {text}"
        );
    }
    assert!(
        text.contains("knative/service.yaml: Service/waxosuit"),
        "{text}"
    );
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn a_broken_copy_fails_with_the_validators_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    copy_deploy(tmp.path());

    let deployment = tmp.path().join("kubernetes/deployment.yaml");
    let text = std::fs::read_to_string(&deployment).unwrap();
    std::fs::write(
        &deployment,
        replace_once(&text, "replicas: 2", "replicas: \"two\""),
    )
    .unwrap();
    // kubernetes-validate reports one error per object: the typo goes in
    // another one.
    let service = tmp.path().join("kubernetes/service.yaml");
    let text = std::fs::read_to_string(&service).unwrap();
    std::fs::write(
        &service,
        replace_once(
            &text,
            "      targetPort: http\n",
            "      tragetPort: http\n",
        ),
    )
    .unwrap();

    let knative = tmp.path().join("knative/service.yaml");
    let mut text = std::fs::read_to_string(&knative).unwrap();
    text = replace_once(
        &text,
        "              containerPort: 8080\n",
        "              containerPort: 8080\n            - name: admin\n              containerPort: 9901\n",
    );
    text = replace_once(
        &text,
        "          image: registry.example.com/waxosuit:0.1.0\n",
        "",
    );
    text = replace_once(&text, "timeoutSeconds: 30", "timeoutSeconds: thirty");
    text = replace_once(&text, "value: 0.0.0.0:9901", "value: 0.0.0.0:9090");
    // Typos, which the schema alone lets through.
    text = replace_once(
        &text,
        "            runAsNonRoot: true\n",
        "            runAsNonRot: true\n",
    );
    text = replace_once(
        &text,
        "          readinessProbe:\n",
        "          readinesProbe:\n",
    );
    text = replace_once(
        &text,
        "          args: [run]\n",
        "          args: [run]\n          bogusField: 1\n",
    );
    text = replace_once(
        &text,
        "autoscaling.knative.dev/min-scale: \"0\"",
        "autoscaling.knative.dev/min-scale: \"zero\"\n        autoscaling.knative.dev/max-scal: \"3\"",
    );
    text = replace_once(
        &text,
        "            sizeLimit: 512Mi\n",
        "            sizeLimit: 512Mi\n            sizeLimt: 1Gi\n",
    );
    std::fs::write(&knative, text).unwrap();

    let (out, text) = validate(tmp.path());
    assert_eq!(out.status.code(), Some(1), "{text}");
    for reason in [
        // kubernetes-validate, against the Kubernetes schema, --strict
        "spec.replicas: 'two' is not of type 'integer'",
        "spec.ports.0: Additional properties are not allowed ('tragetPort' was unexpected)",
        // the @kubernetes-models/knative schema
        "data/spec/template/spec/timeoutSeconds must be integer",
        // Knative's admission rules
        "more than one container port is set",
        "containers[0].image: missing field(s)",
        "WAXOSUIT_ADMIN=0.0.0.0:9090: port 9090 is taken by Knative's queue-proxy",
        // unknown fields, everywhere in the Knative Service
        "spec.template.spec.containers[0].securityContext.runAsNonRot: unknown field",
        "spec.template.spec.containers[0].readinesProbe: unknown field",
        "spec.template.spec.containers[0].bogusField: unknown field",
        "spec.template.spec.volumes[0].emptyDir.sizeLimt: unknown field",
        // the autoscaling annotations
        "autoscaling.knative.dev/min-scale: invalid value \"zero\": must be a non-negative integer",
        "autoscaling.knative.dev/max-scal: not an annotation Knative reads",
    ] {
        assert!(text.contains(reason), "`{reason}` not in:\n{text}");
    }
    // The untouched objects still pass: the failure is the edits, not setup.
    assert!(
        text.contains("kubernetes/configmap.yaml passed for resource"),
        "{text}"
    );
    // One report per typo: nothing below an unknown field is reported again.
    assert_eq!(text.matches("readinesProbe").count(), 1, "{text}");
}

#[test]
fn a_custom_resource_among_the_kubernetes_objects_is_not_waved_through() {
    let tmp = tempfile::tempdir().unwrap();
    copy_deploy(tmp.path());
    std::fs::copy(
        repo_root().join("deploy/knative/service.yaml"),
        tmp.path().join("kubernetes/knative-service.yaml"),
    )
    .unwrap();
    let (out, text) = validate(tmp.path());
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Couldn't find schema for kind Service"),
        "{text}"
    );
}
