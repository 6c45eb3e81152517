//! Host manifests: `Manifest::from_str_with_env` on arbitrary text, as YAML
//! and as JSON, with a fixed environment so that `${VAR}` and
//! `${VAR:default}` expansion (set, empty, unset, and a value that itself
//! looks like `${…}`) is exercised deterministically.
//!
//! Checked, beyond "no panic, no stack overflow, no alias bomb": the error
//! message renders; an accepted manifest keeps the promises of its
//! documentation (no `hostcore.` label, no empty actor path or binding
//! name, no zero limit, `min_instances <= max_instances`, no duplicate
//! binding) and parsing is deterministic.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use waxosuit_manifest::{
    CapabilitySource, DEFAULT_BINDING, Format, Manifest, RESERVED_LABEL_PREFIX,
};

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("example.org".into()),
        "PORT" => Some("8080".into()),
        "EMPTY" => Some(String::new()),
        "NESTED" => Some("${HOST}".into()),
        "ODD" => Some("a: [b, {c: d}]\n- e\n\"f\0".into()),
        _ => None,
    }
}

fn check(manifest: &Manifest) {
    for key in manifest.labels.keys() {
        assert!(!key.starts_with(RESERVED_LABEL_PREFIX), "label {key:?}");
        assert!(!key.trim().is_empty());
    }
    for actor in &manifest.actors {
        assert!(!actor.declared.trim().is_empty());
        let l = &actor.limits;
        for limit in [
            l.max_memory_mib.map(u64::from),
            l.deadline_ms,
            l.fuel,
            l.max_payload_kib.map(u64::from),
            l.max_instances.map(u64::from),
        ] {
            assert_ne!(limit, Some(0), "zero limit accepted: {l:?}");
        }
        if let (Some(min), Some(max)) = (l.min_instances, l.max_instances) {
            assert!(min <= max, "{l:?}");
        }
    }
    for cap in &manifest.capabilities {
        assert!(!cap.binding_name.trim().is_empty());
        match &cap.kind {
            CapabilitySource::Builtin { id, provider } => {
                assert!(id.contains(':'), "capability id {id:?}");
                assert!(provider.as_ref().is_none_or(|p| !p.trim().is_empty()));
            }
            CapabilitySource::Plugin { declared, .. } => assert!(!declared.trim().is_empty()),
        }
    }
    let mut seen = HashSet::new();
    for b in &manifest.bindings {
        assert!(!b.actor.trim().is_empty());
        assert!(!b.binding.trim().is_empty());
        assert!(
            seen.insert((&b.actor, &b.capability, &b.binding)),
            "duplicate binding {b:?}"
        );
        let _ = manifest.capability(&b.capability, &b.binding);
        let _ = manifest.bindings_for(&b.actor).count();
    }
    let _ = manifest.capability("wascc:keyvalue", DEFAULT_BINDING);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Yaml, Format::Json] {
        let parsed = Manifest::from_str_with_env(text, format, "/srv/host", "host.yaml", &env);
        match &parsed {
            Ok(manifest) => {
                check(manifest);
                let again =
                    Manifest::from_str_with_env(text, format, "/srv/host", "host.yaml", &env);
                assert_eq!(
                    again.as_ref().ok(),
                    Some(manifest),
                    "parsing is not deterministic"
                );
            }
            Err(e) => {
                let _ = (e.to_string(), e.field(), e.file());
                assert_eq!(e.file(), Path::new("host.yaml"));
            }
        }
    }
});
