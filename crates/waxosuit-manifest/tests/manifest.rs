//! Behaviour of `waxosuit_manifest` seen from a host: what parses into what,
//! and that each refusal names the file, the field and the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use waxosuit_manifest::{
    ActorLimits, CapabilitySource, DEFAULT_BINDING, DecisionLogTarget, FilterLimits, Format,
    MAX_FILTER_CHAIN, MAX_FILTER_CONFIG_BYTES, Manifest, ManifestError, PolicyBackend,
    PolicySection, Source,
};

const BASE: &str = "/srv/host";
const ORIGIN: &str = "host.yaml";
const KEY: &str = "MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2";

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn yaml(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::from_str_with_env(text, Format::Yaml, BASE, ORIGIN, &no_env)
}

fn yaml_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Manifest, ManifestError> {
    Manifest::from_str_with_env(text, Format::Yaml, BASE, ORIGIN, env)
}

/// Asserts a `Field` error at `field` whose message contains `needle`, and
/// that the rendered error leads with file and field.
#[track_caller]
fn assert_field_error(
    result: Result<Manifest, ManifestError>,
    field: &str,
    needle: &str,
) -> String {
    let err = match result {
        Ok(manifest) => panic!("expected an error at {field}, got {manifest:#?}"),
        Err(err) => err,
    };
    let rendered = err.to_string();
    match &err {
        ManifestError::Field {
            file,
            field: f,
            message,
        } => {
            assert_eq!(file, Path::new(ORIGIN), "{rendered}");
            assert_eq!(f, field, "{rendered}");
            assert!(message.contains(needle), "`{needle}` not in: {rendered}");
        }
        other => panic!("expected ManifestError::Field at {field}, got {other:?}"),
    }
    assert!(
        rendered.starts_with(&format!("{ORIGIN}: {field}: ")),
        "does not name file and field: {rendered}"
    );
    rendered
}

const EXAMPLE_YAML: &str = r#"
labels: { region: local }
actors:
  - ./build/kvcounter_signed.wasm
  - path: ./build/hello_signed.wasm
    limits: { max_memory_mib: 16, deadline_ms: 500, fuel: 1000000, max_payload_kib: 1024, min_instances: 1, max_instances: 8 }
capabilities:
  - id: wascc:http_server
  - id: wascc:keyvalue
    binding_name: default
    provider: memory
  - path: ./libwascc_redis.so
    binding_name: cache
bindings:
  - actor: MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2
    capability: wascc:http_server
    binding: default
    values: { PORT: "8080" }
  - actor: hello
    capability: wascc:keyvalue
  - actor: hello
    capability: wascc:keyvalue
    binding_name: cache
    values: { URL: "redis://127.0.0.1:6379" }
"#;

const EXAMPLE_JSON: &str = r#"{
  "labels": { "region": "local" },
  "actors": [
    "./build/kvcounter_signed.wasm",
    { "path": "./build/hello_signed.wasm",
      "limits": { "max_memory_mib": 16, "deadline_ms": 500, "fuel": 1000000,
                  "max_payload_kib": 1024, "min_instances": 1, "max_instances": 8 } }
  ],
  "capabilities": [
    { "id": "wascc:http_server" },
    { "id": "wascc:keyvalue", "binding_name": "default", "provider": "memory" },
    { "path": "./libwascc_redis.so", "binding_name": "cache" }
  ],
  "bindings": [
    { "actor": "MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2",
      "capability": "wascc:http_server", "binding": "default", "values": { "PORT": "8080" } },
    { "actor": "hello", "capability": "wascc:keyvalue" },
    { "actor": "hello", "capability": "wascc:keyvalue", "binding_name": "cache",
      "values": { "URL": "redis://127.0.0.1:6379" } }
  ]
}"#;

fn check_example(m: &Manifest) {
    assert_eq!(
        m.labels,
        BTreeMap::from([("region".to_owned(), "local".to_owned())])
    );

    assert_eq!(m.actors.len(), 2);
    assert_eq!(m.actors[0].declared, "./build/kvcounter_signed.wasm");
    assert_eq!(
        m.actors[0].source.path().unwrap(),
        Path::new("/srv/host/build/kvcounter_signed.wasm")
    );
    assert_eq!(m.actors[0].limits, ActorLimits::default());
    assert_eq!(
        m.actors[1].source.path().unwrap(),
        Path::new("/srv/host/build/hello_signed.wasm")
    );
    assert_eq!(
        m.actors[1].limits,
        ActorLimits {
            max_memory_mib: Some(16),
            deadline_ms: Some(500),
            fuel: Some(1_000_000),
            max_payload_kib: Some(1024),
            min_instances: Some(1),
            max_instances: Some(8),
        }
    );

    assert_eq!(m.capabilities.len(), 3);
    assert_eq!(
        m.capabilities[0].kind,
        CapabilitySource::Builtin {
            id: "wascc:http_server".into(),
            provider: None
        }
    );
    assert_eq!(m.capabilities[0].binding_name, DEFAULT_BINDING);
    assert_eq!(
        m.capabilities[1].kind,
        CapabilitySource::Builtin {
            id: "wascc:keyvalue".into(),
            provider: Some("memory".into())
        }
    );
    assert_eq!(
        m.capabilities[2].kind,
        CapabilitySource::Plugin {
            source: Source::File(PathBuf::from("/srv/host/libwascc_redis.so")),
            declared: "./libwascc_redis.so".into()
        }
    );
    assert_eq!(m.capabilities[2].binding_name, "cache");
    assert_eq!(m.capabilities[2].id(), None);

    assert_eq!(m.bindings.len(), 3);
    assert_eq!(m.bindings[0].actor, KEY);
    assert_eq!(m.bindings[0].capability, "wascc:http_server");
    assert_eq!(m.bindings[0].binding, "default");
    assert_eq!(m.bindings[0].values["PORT"], "8080");
    assert_eq!(m.bindings[1].binding, "default");
    assert!(m.bindings[1].values.is_empty());
    assert_eq!(m.bindings[2].binding, "cache");
    assert_eq!(m.bindings[2].values["URL"], "redis://127.0.0.1:6379");

    // The lookups.
    assert_eq!(
        m.capability("wascc:keyvalue", "default").map(|c| &c.kind),
        Some(&m.capabilities[1].kind)
    );
    assert!(m.capability("wascc:keyvalue", "cache").is_none());
    let hello: Vec<_> = m
        .bindings_for("hello")
        .map(|b| b.binding.as_str())
        .collect();
    assert_eq!(hello, ["default", "cache"]);
}

#[test]
fn example_parses_as_yaml_with_every_field() {
    let m = yaml(EXAMPLE_YAML).expect("the example is valid");
    check_example(&m);
    assert_eq!(m.source, Path::new(ORIGIN));
}

#[test]
fn equivalent_json_parses_to_the_same_manifest() {
    let json = Manifest::from_str_with_env(EXAMPLE_JSON, Format::Json, BASE, ORIGIN, &no_env)
        .expect("the JSON example is valid");
    check_example(&json);
    assert_eq!(json, yaml(EXAMPLE_YAML).expect("valid"));
}

#[test]
fn original_wascc_sample_parses() {
    // examples/sample_manifest.yaml from wascc-host 0.14, plus a binding
    // without `values` and one using `binding`.
    let text = r#"---
labels:
    sample: "Key-Value Counter"
actors:
    - ./examples/.assets/kvcounter.wasm
capabilities:
    - path: ./examples/.assets/libwascc_redis.so
    - path: ./examples/.assets/libwascc_httpsrv.so
      binding_name: default
bindings:
    - actor: "MASCXFM4R6X63UD5MSCDZYCJNPBVSIU6RKMXUPXRKAOSBQ6UY3VT3NPZ"
      capability: "wascc:keyvalue"
      values:
        URL: redis://127.0.0.1:6379
    - actor: "MASCXFM4R6X63UD5MSCDZYCJNPBVSIU6RKMXUPXRKAOSBQ6UY3VT3NPZ"
      capability: "wascc:http_server"
      values:
        PORT: "8081"
    - actor: "MASCXFM4R6X63UD5MSCDZYCJNPBVSIU6RKMXUPXRKAOSBQ6UY3VT3NPZ"
      capability: "wascc:messaging"
      binding: default
"#;
    let m = yaml(text).expect("the waSCC sample is valid");
    assert_eq!(m.labels["sample"], "Key-Value Counter");
    assert_eq!(
        m.actors[0].source.path().unwrap(),
        Path::new("/srv/host/examples/.assets/kvcounter.wasm")
    );
    assert_eq!(m.capabilities.len(), 2);
    for cap in &m.capabilities {
        assert!(
            matches!(cap.kind, CapabilitySource::Plugin { .. }),
            "{cap:?}"
        );
        assert_eq!(cap.binding_name, "default");
    }
    assert_eq!(m.bindings.len(), 3);
    assert_eq!(m.bindings[0].values["URL"], "redis://127.0.0.1:6379");
    assert_eq!(m.bindings[1].values["PORT"], "8081");
    assert!(m.bindings[2].values.is_empty());
}

#[test]
fn sections_are_optional_and_may_be_empty() {
    let m = yaml("{}").expect("an empty mapping is a valid manifest");
    assert_eq!(
        m,
        Manifest {
            source: ORIGIN.into(),
            ..Manifest::default()
        }
    );
    let m = yaml("actors: []\ncapabilities:\nbindings:\nlabels:\n").expect("empty sections");
    assert!(m.actors.is_empty() && m.capabilities.is_empty() && m.bindings.is_empty());
}

#[test]
fn an_empty_file_or_a_non_mapping_is_refused() {
    assert_field_error(yaml(""), "(top level)", "empty");
    assert_field_error(yaml("# only a comment\n"), "(top level)", "empty");
    assert_field_error(yaml("- a\n- b\n"), "(top level)", "found a list");
}

// --- environment expansion ---------------------------------------------------

const ENV_MANIFEST: &str = r#"
labels: { zone: "${ZONE}", "${ZONE}": key-is-not-expanded }
actors:
  - path: ${ACTOR_DIR:./build}/hello.wasm
    limits: { fuel: "${FUEL:1000}" }
capabilities:
  - id: wascc:http_server
bindings:
  - actor: hello
    capability: wascc:http_server
    values:
      PORT: ${PORT:8080}
      HOST: "${HOST:}"
      LITERAL: $HOME/x
      MIXED: "http://${HOST:localhost}:${PORT:80}/${PATH_PART:}"
"#;

#[test]
fn env_expansion_uses_variables_then_defaults() {
    let env = env_of(&[("ZONE", "eu-1"), ("PORT", "9090"), ("FUEL", "77")]);
    let m = yaml_env(ENV_MANIFEST, &env).expect("valid");
    assert_eq!(m.labels["zone"], "eu-1");
    assert_eq!(m.labels["${ZONE}"], "key-is-not-expanded");
    assert_eq!(m.actors[0].declared, "./build/hello.wasm");
    assert_eq!(
        m.actors[0].source.path().unwrap(),
        Path::new("/srv/host/build/hello.wasm")
    );
    assert_eq!(m.actors[0].limits.fuel, Some(77));
    let values = &m.bindings[0].values;
    assert_eq!(values["PORT"], "9090");
    assert_eq!(values["HOST"], "", "an empty default gives an empty string");
    assert_eq!(
        values["LITERAL"], "$HOME/x",
        "$VAR without braces is not expanded"
    );
    assert_eq!(values["MIXED"], "http://localhost:9090/");

    let env = env_of(&[
        ("ZONE", "eu-1"),
        ("ACTOR_DIR", "/opt/actors"),
        ("HOST", "h"),
    ]);
    let m = yaml_env(ENV_MANIFEST, &env).expect("valid");
    assert_eq!(
        m.actors[0].source.path().unwrap(),
        Path::new("/opt/actors/hello.wasm")
    );
    assert_eq!(m.actors[0].limits.fuel, Some(1000));
    assert_eq!(m.bindings[0].values["PORT"], "8080");
    assert_eq!(m.bindings[0].values["HOST"], "h");
}

#[test]
fn unset_variable_without_default_is_an_error_naming_field_and_variable() {
    let err = yaml_env(ENV_MANIFEST, &no_env).expect_err("ZONE is unset");
    let rendered = err.to_string();
    match &err {
        ManifestError::Env { file, field, var } => {
            assert_eq!(file, Path::new(ORIGIN));
            assert_eq!(field, "labels.zone");
            assert_eq!(var, "ZONE");
        }
        other => panic!("expected ManifestError::Env, got {other:?}"),
    }
    assert!(
        rendered.starts_with("host.yaml: labels.zone: "),
        "{rendered}"
    );
    assert!(rendered.contains("`ZONE`"), "{rendered}");
    assert!(rendered.contains("${ZONE:default}"), "{rendered}");

    let err =
        yaml("bindings: [{ actor: a, capability: wascc:logging, values: { X: [ok, '${NOPE}'] } }]")
            .expect_err("NOPE is unset");
    assert_eq!(err.field(), Some("bindings[0].values.X[1]"));
}

#[test]
fn expanded_text_cannot_inject_structure() {
    let env = env_of(&[
        ("EVIL", "a\nb: c"),
        ("EVIL_JSON", "\", \"b\": \"c"),
        ("FLOW", "{x: 1}"),
    ]);
    let m = yaml_env(
        "labels: { l: '${EVIL}', f: '${FLOW}' }\nbindings:\n  - actor: ${EVIL}\n    capability: wascc:extras\n    values: { K: '${EVIL}' }\n",
        &env,
    )
    .expect("valid");
    assert_eq!(m.labels.len(), 2);
    assert_eq!(m.labels["l"], "a\nb: c");
    assert_eq!(m.labels["f"], "{x: 1}");
    assert_eq!(m.bindings[0].actor, "a\nb: c");
    assert_eq!(
        m.bindings[0].values,
        BTreeMap::from([("K".to_owned(), "a\nb: c".to_owned())])
    );

    let m = Manifest::from_str_with_env(
        r#"{"labels": {"a": "${EVIL_JSON}"}}"#,
        Format::Json,
        BASE,
        "host.json",
        &env,
    )
    .expect("valid");
    assert_eq!(m.labels.len(), 1);
    assert_eq!(m.labels["a"], "\", \"b\": \"c");
}

#[test]
fn expansion_that_is_not_a_number_fails_as_a_typed_field() {
    let env = env_of(&[("FUEL", "lots")]);
    let err = yaml_env(
        "actors: [{ path: a.wasm, limits: { fuel: '${FUEL}' } }]",
        &env,
    )
    .expect_err("not a number");
    assert!(matches!(err, ManifestError::Field { .. }), "{err:?}");
    assert_eq!(err.field(), Some("actors[0].limits.fuel"));
    assert!(err.to_string().contains("lots"), "{err}");
}

// --- validation rules --------------------------------------------------------

#[test]
fn reserved_label_prefix_is_refused() {
    assert_field_error(
        yaml("labels: { hostcore.os: linux }"),
        "labels.hostcore.os",
        "reserved",
    );
    assert!(yaml("labels: { myhostcore.os: linux, host: a }").is_ok());
    assert_field_error(yaml("labels: { '': x }"), "labels", "must not be empty");
}

#[test]
fn capability_ids_must_be_namespace_and_name() {
    for bad in ["keyvalue", "wascc:", ":kv", "wascc:key value", "a:b:c"] {
        let text = format!("capabilities: [{{ id: '{bad}' }}]");
        assert_field_error(yaml(&text), "capabilities[0].id", "namespace:name");
    }
    assert_field_error(
        yaml(
            "capabilities: [{ id: wascc:logging }]\nbindings: [{ actor: a, capability: logging }]",
        ),
        "bindings[0].capability",
        "`logging` is not a capability id",
    );
    assert!(yaml("capabilities: [{ id: acme.io:blob-store_2 }]").is_ok());
}

#[test]
fn a_capability_has_exactly_one_of_id_and_path() {
    assert_field_error(
        yaml("capabilities: [{ id: wascc:keyvalue }, { id: wascc:kv, path: ./x.so }]"),
        "capabilities[1]",
        "both `id` and `path`",
    );
    assert_field_error(
        yaml("capabilities: [{ binding_name: cache }]"),
        "capabilities[0]",
        "needs either `id`",
    );
}

#[test]
fn provider_applies_only_to_builtins_and_names_must_not_be_empty() {
    assert_field_error(
        yaml("capabilities: [{ path: ./x.so, provider: memory }]"),
        "capabilities[0].provider",
        "only applies to built-in",
    );
    assert_field_error(
        yaml("capabilities: [{ id: wascc:keyvalue, provider: '' }]"),
        "capabilities[0].provider",
        "must not be empty",
    );
    assert_field_error(
        yaml("capabilities: [{ id: wascc:keyvalue, binding_name: ' ' }]"),
        "capabilities[0].binding_name",
        "must not be empty",
    );
    assert_field_error(
        yaml("capabilities: [{ path: '' }]"),
        "capabilities[0].path",
        "empty",
    );
}

#[test]
fn duplicate_capabilities_name_both_indices() {
    let text = "capabilities:\n  - id: wascc:keyvalue\n  - id: wascc:http_server\n  - id: wascc:keyvalue\n    binding_name: default\n    provider: redis\n";
    let rendered = assert_field_error(yaml(text), "capabilities[2]", "duplicates capabilities[0]");
    assert!(rendered.contains("wascc:keyvalue"), "{rendered}");
    // Same plugin twice under one binding name.
    assert_field_error(
        yaml("capabilities: [{ path: ./a.so }, { path: a.so }]"),
        "capabilities[1]",
        "duplicates capabilities[0]",
    );
    // Another binding name is another instance.
    assert!(
        yaml("capabilities: [{ id: wascc:keyvalue }, { id: wascc:keyvalue, binding_name: cache }]")
            .is_ok()
    );
}

#[test]
fn bindings_need_a_declared_capability() {
    let text = "capabilities:\n  - id: wascc:keyvalue\nbindings:\n  - { actor: a, capability: wascc:keyvalue }\n  - { actor: b, capability: wascc:keyvalue }\n  - { actor: a, capability: wascc:keyvalue, binding: cache }\n";
    let rendered = assert_field_error(yaml(text), "bindings[2].capability", "not declared");
    assert_eq!(
        rendered,
        "host.yaml: bindings[2].capability: capability wascc:keyvalue (binding `cache`) is not \
         declared under `capabilities`; add `- id: wascc:keyvalue\n  binding_name: cache`"
    );
    let rendered = assert_field_error(
        yaml("bindings: [{ actor: a, capability: wascc:http_server }]"),
        "bindings[0].capability",
        "add `- id: wascc:http_server`",
    );
    assert!(
        !rendered.contains("binding_name"),
        "default binding needs no binding_name: {rendered}"
    );
}

#[test]
fn extras_and_logging_need_no_declaration() {
    let m = yaml(
        "bindings:\n  - { actor: a, capability: wascc:extras }\n  - { actor: a, capability: wascc:logging, binding: audit }\n",
    )
    .expect("built-ins are always available");
    assert_eq!(m.bindings.len(), 2);
    assert!(waxosuit_manifest::is_always_available("wascc:logging"));
    assert!(!waxosuit_manifest::is_always_available("wascc:keyvalue"));
}

#[test]
fn a_plugin_may_provide_any_capability_under_its_binding_name() {
    let text = "capabilities: [{ path: ./redis.so, binding_name: cache }]\nbindings:\n  - { actor: a, capability: wascc:keyvalue, binding: cache }\n";
    assert!(yaml(text).is_ok());
    let text = "capabilities: [{ path: ./redis.so, binding_name: cache }]\nbindings:\n  - { actor: a, capability: wascc:keyvalue }\n";
    assert_field_error(
        yaml(text),
        "bindings[0].capability",
        "(binding `default`) is not declared",
    );
}

#[test]
fn binding_actor_must_not_be_empty() {
    assert_field_error(
        yaml("bindings: [{ actor: '', capability: wascc:extras }]"),
        "bindings[0].actor",
        "must not be empty",
    );
    assert_field_error(
        yaml("bindings: [{ actor: '  ', capability: wascc:extras }]"),
        "bindings[0].actor",
        "must not be empty",
    );
    assert_field_error(
        yaml("bindings: [{ actor: a, capability: wascc:extras, binding: '' }]"),
        "bindings[0].binding",
        "must not be empty",
    );
}

#[test]
fn duplicate_bindings_name_both_indices() {
    let text = format!(
        "capabilities: [{{ id: wascc:keyvalue }}]\nbindings:\n  - {{ actor: {KEY}, capability: wascc:keyvalue }}\n  - {{ actor: other, capability: wascc:keyvalue }}\n  - {{ actor: {KEY}, capability: wascc:keyvalue, binding_name: default, values: {{ A: b }} }}\n"
    );
    let rendered = assert_field_error(yaml(&text), "bindings[2]", "duplicates bindings[0]");
    assert!(rendered.contains(KEY), "{rendered}");
}

#[test]
fn limits_must_make_sense() {
    let limit = |body: &str| {
        yaml(&format!(
            "actors:\n  - a.wasm\n  - path: b.wasm\n    limits: {{ {body} }}\n"
        ))
    };
    for name in [
        "max_memory_mib",
        "deadline_ms",
        "fuel",
        "max_payload_kib",
        "max_instances",
    ] {
        assert_field_error(
            limit(&format!("{name}: 0")),
            &format!("actors[1].limits.{name}"),
            "at least 1",
        );
    }
    assert_field_error(
        limit("min_instances: 4, max_instances: 2"),
        "actors[1].limits.min_instances",
        "min_instances (4) is greater than max_instances (2)",
    );
    // Past what the host can honour: refused naming the field and the
    // ceiling, not at load (or, for min_instances, by reserving room for
    // billions of instances).
    for (body, field, ceiling) in [
        ("max_memory_mib: 512", "max_memory_mib", "more than 256"),
        (
            "max_payload_kib: 4000000",
            "max_payload_kib",
            "more than 2097151",
        ),
        (
            "min_instances: 4000000000, max_instances: 4000000000",
            "min_instances",
            "more than 1000",
        ),
        ("max_instances: 1001", "max_instances", "more than 1000"),
    ] {
        assert_field_error(limit(body), &format!("actors[1].limits.{field}"), ceiling);
    }
    let top = limit(
        "max_memory_mib: 256, max_payload_kib: 2097151, min_instances: 1000, max_instances: 1000",
    )
    .expect("the ceilings themselves are allowed");
    assert_eq!(
        top.actors[1].limits.max_memory_mib,
        Some(waxosuit_manifest::MAX_MEMORY_MIB)
    );
    let ok = limit("min_instances: 0, max_instances: 1").expect("scale to zero is allowed");
    assert_eq!(ok.actors[1].limits.min_instances, Some(0));
    assert_eq!(
        limit("min_instances: 3, max_instances: 3")
            .expect("equal is fine")
            .actors[1]
            .limits
            .max_instances,
        Some(3)
    );
}

#[test]
fn limit_type_errors_carry_the_field_path() {
    let err =
        yaml("actors: [{ path: a.wasm, limits: { deadline_ms: -5 } }]").expect_err("negative");
    assert_field_error(Err(err), "actors[0].limits.deadline_ms", "-5");
    // 2^32 does not fit a u32 limit.
    assert_field_error(
        yaml("actors: [{ path: a.wasm, limits: { max_memory_mib: 4294967296 } }]"),
        "actors[0].limits.max_memory_mib",
        "4294967295",
    );
    assert_field_error(
        yaml("actors: [{ path: a.wasm, limits: { fuel: 1.5 } }]"),
        "actors[0].limits.fuel",
        "1.5",
    );
}

#[test]
fn type_errors_and_missing_fields_carry_the_field_path() {
    assert_field_error(
        yaml(
            "capabilities: [{ id: wascc:extras }]\nbindings:\n  - { actor: a, capability: wascc:extras }\n  - { actor: a, capability: [wascc, x] }\n",
        ),
        "bindings[1].capability",
        "expected a string",
    );
    assert_field_error(
        yaml("bindings: [{ actor: a }]"),
        "bindings[0]",
        "missing field `capability`",
    );
    assert_field_error(yaml("labels: [a, b]"), "labels", "invalid type");
    assert_field_error(
        yaml("actors: [42]"),
        "actors[0]",
        "a path to a signed actor module",
    );
    assert_field_error(
        yaml("actors: [{ limits: {} }]"),
        "actors[0]",
        "missing field `path`",
    );
    assert_field_error(yaml("actors: ['']"), "actors[0]", "empty");
    assert_field_error(yaml("actors: [{ path: '' }]"), "actors[0].path", "empty");
}

#[test]
fn numbers_and_booleans_in_values_become_strings() {
    let m = yaml(
        "labels: { version: 2, beta: true }\nbindings:\n  - actor: a\n    capability: wascc:logging\n    values: { PORT: 8080, TLS: false, RATIO: 1.0, NEG: -3, 443: https }\n",
    )
    .expect("valid");
    assert_eq!(m.labels["version"], "2");
    assert_eq!(m.labels["beta"], "true");
    let values = &m.bindings[0].values;
    assert_eq!(values["PORT"], "8080");
    assert_eq!(values["TLS"], "false");
    assert_eq!(values["RATIO"], "1.0");
    assert_eq!(values["NEG"], "-3");
    assert_eq!(values["443"], "https");
    assert_field_error(
        yaml("bindings: [{ actor: a, capability: wascc:logging, values: { X: { y: 1 } } }]"),
        "bindings[0].values.X",
        "a string, number or boolean",
    );
}

#[test]
fn binding_name_is_accepted_for_binding() {
    let m = yaml("bindings: [{ actor: a, capability: wascc:logging, binding_name: audit }]")
        .expect("alias");
    assert_eq!(m.bindings[0].binding, "audit");
    assert_field_error(
        yaml("bindings: [{ actor: a, capability: wascc:logging, binding: x, binding_name: y }]"),
        "bindings[0]",
        "duplicate field",
    );
}

// --- syntax and unknown fields -------------------------------------------------

#[test]
fn yaml_syntax_errors_report_line_and_column() {
    let err = yaml("actors:\n  - a.wasm\nbindings: [\n  { actor: a\n").expect_err("unclosed");
    match &err {
        ManifestError::Syntax {
            file,
            line: Some(line),
            column: Some(column),
            message,
        } => {
            assert_eq!(file, Path::new(ORIGIN));
            assert!(*line >= 4, "line {line}: {message}");
            assert!(
                !message.contains(&format!("at line {line} column {column}")),
                "position said twice: {message}"
            );
        }
        other => panic!("expected a positioned ManifestError::Syntax, got {other:?}"),
    }
    let err = yaml("labels:\n  a: b\n   c: d\n").expect_err("bad indentation");
    let ManifestError::Syntax {
        line: Some(3),
        column: Some(_),
        ..
    } = err
    else {
        panic!("expected a Syntax error on line 3, got {err:?}");
    };
    assert!(err.to_string().starts_with("host.yaml:3:"), "{err}");
}

#[test]
fn json_syntax_errors_report_line_and_column() {
    let err = Manifest::from_str_with_env(
        "{\n  \"actors\": [\"a.wasm\",]\n}",
        Format::Json,
        BASE,
        "host.json",
        &no_env,
    )
    .expect_err("trailing comma");
    match &err {
        ManifestError::Syntax {
            file,
            line,
            column,
            message,
        } => {
            assert_eq!(file, Path::new("host.json"));
            assert_eq!((*line, *column), (Some(2), Some(23)), "{message}");
            assert_eq!(err.to_string(), format!("host.json:2:23: {message}"));
        }
        other => panic!("expected ManifestError::Syntax, got {other:?}"),
    }
}

#[test]
fn duplicate_keys_and_tags_are_syntax_errors() {
    let err = yaml("labels:\n  a: x\n  a: y\n").expect_err("duplicate key");
    let ManifestError::Syntax {
        line: Some(_),
        message,
        ..
    } = &err
    else {
        panic!("expected Syntax, got {err:?}");
    };
    assert!(message.contains("duplicate key `a`"), "{message}");
    let err = Manifest::from_str_with_env(
        r#"{"labels": {"a": "x", "a": "y"}}"#,
        Format::Json,
        BASE,
        "h.json",
        &no_env,
    )
    .expect_err("duplicate key");
    assert!(matches!(err, ManifestError::Syntax { .. }), "{err:?}");
    let err = yaml("labels: { a: !secret x }").expect_err("tag");
    assert!(matches!(err, ManifestError::Syntax { .. }), "{err:?}");
}

#[test]
fn unknown_fields_are_refused_with_a_suggestion() {
    let err = yaml("bindings:\n  - actor: a\n    capability: wascc:logging\n    bindng: audit\n")
        .expect_err("typo");
    let rendered = err.to_string();
    match &err {
        ManifestError::UnknownField {
            file,
            field,
            name,
            suggestion,
            expected,
        } => {
            assert_eq!(file, Path::new(ORIGIN));
            assert_eq!(field, "bindings[0].bindng");
            assert_eq!(name, "bindng");
            assert_eq!(suggestion.as_deref(), Some("binding"));
            assert!(expected.iter().any(|e| e == "values"), "{expected:?}");
        }
        other => panic!("expected UnknownField, got {other:?}"),
    }
    assert!(
        rendered.starts_with("host.yaml: bindings[0].bindng: unknown field `bindng`"),
        "{rendered}"
    );
    assert!(rendered.contains("did you mean `binding`?"), "{rendered}");

    let err = yaml("actor: [a.wasm]").expect_err("top-level typo");
    let ManifestError::UnknownField {
        field, suggestion, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (field.as_str(), suggestion.as_deref()),
        ("actor", Some("actors"))
    );

    let err = yaml("actors: [{ path: a.wasm, limits: { deadline: 5 } }]").expect_err("limits typo");
    let ManifestError::UnknownField {
        field, suggestion, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (field.as_str(), suggestion.as_deref()),
        ("actors[0].limits.deadline", Some("deadline_ms"))
    );

    let err =
        yaml("capabilities: [{ id: wascc:logging, colour: blue }]").expect_err("no close name");
    let ManifestError::UnknownField {
        field, suggestion, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(field, "capabilities[0].colour");
    assert_eq!(*suggestion, None);
    assert!(!err.to_string().contains("did you mean"), "{err}");
}

// --- policy ------------------------------------------------------------------

#[test]
fn policy_section_with_embedded_rego() {
    let m = yaml(
        "policy:\n  policies: [./policies/authz.rego, /etc/waxosuit/tenants.rego]\n  data: \
         [policies/data.json]\n  cache_ttl_ms: 2500\n  decision_log: ./log/decisions.jsonl\n",
    )
    .expect("valid");
    assert_eq!(
        m.policy,
        Some(PolicySection {
            backend: PolicyBackend::Embedded {
                policies: vec![
                    PathBuf::from("/srv/host/policies/authz.rego"),
                    PathBuf::from("/etc/waxosuit/tenants.rego"),
                ],
                data: vec![PathBuf::from("/srv/host/policies/data.json")],
            },
            cache_ttl_ms: Some(2500),
            decision_log: Some(DecisionLogTarget::File(PathBuf::from(
                "/srv/host/log/decisions.jsonl"
            ))),
        })
    );
}

#[test]
fn policy_section_with_an_opa_server() {
    let env = env_of(&[("OPA", "http://127.0.0.1:8181"), ("TTL", "0")]);
    let m = yaml_env(
        "policy:\n  opa_url: ${OPA}\n  opa_timeout_ms: 250\n  cache_ttl_ms: ${TTL}\n  \
         decision_log: \"-\"\n",
        &env,
    )
    .expect("valid");
    assert_eq!(
        m.policy,
        Some(PolicySection {
            backend: PolicyBackend::Opa {
                url: "http://127.0.0.1:8181".into(),
                timeout_ms: Some(250),
            },
            cache_ttl_ms: Some(0),
            decision_log: Some(DecisionLogTarget::Stdout),
        })
    );

    let json = Manifest::from_str_with_env(
        r#"{ "policy": { "opa_url": "https://opa.internal" } }"#,
        Format::Json,
        BASE,
        "host.json",
        &no_env,
    )
    .expect("valid");
    assert_eq!(
        json.policy,
        Some(PolicySection {
            backend: PolicyBackend::Opa {
                url: "https://opa.internal".into(),
                timeout_ms: None,
            },
            cache_ttl_ms: None,
            decision_log: None,
        })
    );
}

#[test]
fn a_missing_or_blank_policy_section_means_no_policy() {
    assert_eq!(yaml("actors: []").expect("valid").policy, None);
    assert_eq!(yaml("policy:\n").expect("valid").policy, None);
}

#[test]
fn a_policy_section_names_exactly_one_backend() {
    let both = yaml("policy:\n  policies: [a.rego]\n  opa_url: http://127.0.0.1:8181\n");
    assert_field_error(both, "policy", "choose one backend");
    let neither = yaml("policy:\n  cache_ttl_ms: 100\n");
    assert_field_error(neither, "policy", "needs `policies`");
}

#[test]
fn policy_fields_that_do_not_fit_the_backend_are_refused() {
    assert_field_error(
        yaml("policy: { opa_url: \"http://opa:8181\", data: [d.json] }"),
        "policy.data",
        "an OPA server loads its own data",
    );
    assert_field_error(
        yaml("policy: { policies: [a.rego], opa_timeout_ms: 100 }"),
        "policy.opa_timeout_ms",
        "only applies with `opa_url`",
    );
    assert_field_error(
        yaml("policy: { opa_url: \"http://opa:8181\", opa_timeout_ms: 0 }"),
        "policy.opa_timeout_ms",
        "at least 1",
    );
    assert_field_error(
        yaml("policy: { opa_url: \"opa:8181\" }"),
        "policy.opa_url",
        "not an http:// or https:// URL",
    );
    assert_field_error(
        yaml("policy: { policies: [] }"),
        "policy.policies",
        "is empty",
    );
    assert_field_error(
        yaml("policy: { policies: [a.rego, \"\"] }"),
        "policy.policies[1]",
        "the policy path is empty",
    );
    assert_field_error(
        yaml("policy: { policies: [a.rego], data: [\" \"] }"),
        "policy.data[0]",
        "the data path is empty",
    );
    assert_field_error(
        yaml("policy: { policies: [a.rego], decision_log: \"\" }"),
        "policy.decision_log",
        "`-` for standard output",
    );
    assert_field_error(
        yaml("policy: { policies: [a.rego], cache_ttl_ms: -1 }"),
        "policy.cache_ttl_ms",
        "whole number",
    );
    assert_field_error(
        yaml("policy: { policies: a.rego }"),
        "policy.policies",
        "sequence",
    );
}

#[test]
fn unknown_policy_fields_are_refused_with_a_suggestion() {
    let err = yaml("policy:\n  opa_url: http://opa:8181\n  opa_timeout: 100\n").expect_err("typo");
    match &err {
        ManifestError::UnknownField {
            field,
            name,
            suggestion,
            expected,
            ..
        } => {
            assert_eq!(field, "policy.opa_timeout");
            assert_eq!(name, "opa_timeout");
            assert_eq!(suggestion.as_deref(), Some("opa_timeout_ms"));
            for known in [
                "policies",
                "data",
                "opa_url",
                "opa_timeout_ms",
                "cache_ttl_ms",
                "decision_log",
            ] {
                assert!(
                    expected.iter().any(|e| e == known),
                    "{known} in {expected:?}"
                );
            }
        }
        other => panic!("expected UnknownField, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("host.yaml: policy.opa_timeout: unknown field `opa_timeout`"),
        "{err}"
    );

    let err = yaml("polcy: { policies: [a.rego] }").expect_err("section typo");
    let ManifestError::UnknownField { suggestion, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(suggestion.as_deref(), Some("policy"));
}

// --- files -------------------------------------------------------------------

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path
}

#[test]
fn from_path_resolves_relative_paths_against_the_manifest_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).expect("mkdir");
    let path = write(
        &sub,
        "host.yaml",
        "actors: [./build/a.wasm, ../b.wasm, /opt/c.wasm]\ncapabilities: [{ path: plugins/libkv.so }]\n",
    );
    let m = Manifest::from_path_with_env(&path, &no_env).expect("valid");
    assert_eq!(m.source, path);
    assert_eq!(m.actors[0].declared, "./build/a.wasm");
    assert_eq!(
        m.actors[0].source.path().unwrap(),
        sub.join("build").join("a.wasm")
    );
    assert_eq!(
        m.actors[1].source.path().unwrap(),
        sub.join("..").join("b.wasm")
    );
    assert_eq!(m.actors[2].source.path().unwrap(), Path::new("/opt/c.wasm"));
    assert_eq!(
        m.capabilities[0].kind,
        CapabilitySource::Plugin {
            source: Source::File(sub.join("plugins/libkv.so")),
            declared: "plugins/libkv.so".into()
        }
    );
}

#[test]
fn from_path_picks_the_format_by_extension_then_by_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = r#"{"labels": {"a": "b"}}"#;
    let yaml_text = "labels:\n  a: b\n";
    for (name, text) in [
        ("m.json", json),
        ("m.yaml", yaml_text),
        ("m.yml", yaml_text),
        ("manifest", yaml_text),
        ("m.conf", json),
        ("m.txt", yaml_text),
    ] {
        let m = Manifest::from_path_with_env(write(dir.path(), name, text), &no_env).expect(name);
        assert_eq!(m.labels["a"], "b", "{name}");
    }
    // YAML in a `.json` file is a JSON syntax error, not silently accepted.
    let err = Manifest::from_path_with_env(write(dir.path(), "y.json", yaml_text), &no_env)
        .expect_err("not JSON");
    assert!(
        matches!(err, ManifestError::Syntax { line: Some(1), .. }),
        "{err:?}"
    );
    // Neither format.
    let path = write(dir.path(), "n.conf", "just some words");
    let err = Manifest::from_path_with_env(&path, &no_env).expect_err("neither");
    assert!(
        matches!(&err, ManifestError::UnrecognizedFormat { file, .. } if *file == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("n.conf"), "{err}");
}

#[test]
fn errors_from_files_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "host.yaml",
        "bindings: [{ actor: a, capability: wascc:keyvalue }]\n",
    );
    let err = Manifest::from_path_with_env(&path, &no_env).expect_err("undeclared");
    assert_eq!(err.file(), path);
    assert_eq!(err.field(), Some("bindings[0].capability"));
    assert!(
        err.to_string()
            .starts_with(&format!("{}: bindings[0].capability: ", path.display())),
        "{err}"
    );

    let missing = dir.path().join("missing.yaml");
    let err = Manifest::from_path(&missing).expect_err("no such file");
    assert!(
        matches!(&err, ManifestError::Read { file, .. } if *file == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}

#[test]
fn from_path_reads_the_process_environment() {
    // PATH is set in any environment the tests run in; nothing is mutated.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "host.yaml", "labels: { p: '${PATH}' }\n");
    let m = Manifest::from_path(&path).expect("valid");
    assert_eq!(Some(m.labels["p"].clone()), std::env::var("PATH").ok());
    let m = Manifest::from_str("labels: { p: '${PATH}' }", Format::Yaml, ".", "inline.yaml")
        .expect("valid");
    assert_eq!(Some(m.labels["p"].clone()), std::env::var("PATH").ok());
}

// --- path-valued binding values ---------------------------------------------

const PATH_BINDINGS: &str = r#"
capabilities:
  - id: wascc:blobstore
  - id: wascc:messaging
    provider: nats
  - path: ./libacme.so
    binding_name: acme
bindings:
  - actor: app
    capability: wascc:blobstore
    values: { ROOT: "${ROOT_DIR:./data/blobs}", MAX_OBJECT_BYTES: "./not-a-path" }
  - actor: app
    capability: wascc:messaging
    values: { CREDSFILE: ../secrets/app.creds, URL: "nats://127.0.0.1:4222", SUBSCRIPTION: ./x }
  - actor: app
    capability: acme:thing
    binding: acme
    values: { ROOT: ./relative-for-the-plugin, CREDSFILE: ./also-untouched }
"#;

#[test]
fn relative_path_values_resolve_against_the_manifest_directory() {
    let m = yaml(PATH_BINDINGS).expect("valid");
    let blob = &m.bindings[0].values;
    assert_eq!(blob["ROOT"], "/srv/host/data/blobs");
    assert_eq!(
        blob["MAX_OBJECT_BYTES"], "./not-a-path",
        "only the keys that name paths are touched"
    );
    let nats = &m.bindings[1].values;
    assert_eq!(nats["CREDSFILE"], "/srv/host/../secrets/app.creds");
    assert_eq!(nats["URL"], "nats://127.0.0.1:4222");
    assert_eq!(nats["SUBSCRIPTION"], "./x");
    // The same key names of another capability may mean anything.
    let plugin = &m.bindings[2].values;
    assert_eq!(plugin["ROOT"], "./relative-for-the-plugin");
    assert_eq!(plugin["CREDSFILE"], "./also-untouched");

    // Absolute values (here from the environment) and empty ones stay as
    // written; the provider refuses an empty ROOT with its own message.
    let m = yaml_env(PATH_BINDINGS, &env_of(&[("ROOT_DIR", "/var/lib/blobs")])).expect("valid");
    assert_eq!(m.bindings[0].values["ROOT"], "/var/lib/blobs");
    let m = yaml_env(PATH_BINDINGS, &env_of(&[("ROOT_DIR", "")])).expect("valid");
    assert_eq!(m.bindings[0].values["ROOT"], "");
}

#[test]
fn path_values_are_listed_and_recognised_by_capability_and_key() {
    assert_eq!(
        waxosuit_manifest::PATH_VALUES,
        [
            ("wascc:blobstore", "ROOT"),
            ("wascc:messaging", "CREDSFILE")
        ]
    );
    assert!(waxosuit_manifest::is_path_value("wascc:blobstore", "ROOT"));
    assert!(waxosuit_manifest::is_path_value(
        "wascc:messaging",
        "CREDSFILE"
    ));
    assert!(!waxosuit_manifest::is_path_value("wascc:blobstore", "root"));
    assert!(!waxosuit_manifest::is_path_value("acme:thing", "ROOT"));
    assert!(!waxosuit_manifest::is_path_value("wascc:keyvalue", "URL"));
}

#[test]
fn a_path_value_starting_with_a_tilde_is_refused_with_a_fix() {
    let text = r#"
capabilities: [{ id: wascc:blobstore }]
bindings:
  - { actor: app, capability: wascc:blobstore, values: { ROOT: ~/blobs } }
"#;
    let rendered = assert_field_error(yaml(text), "bindings[0].values.ROOT", "not expanded");
    assert!(rendered.contains("${HOME}/blobs"), "{rendered}");
}

#[test]
fn from_path_resolves_path_values_whatever_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).expect("mkdir");
    let path = write(
        &sub,
        "host.yaml",
        "capabilities: [{ id: wascc:blobstore }]\n\
         bindings: [{ actor: app, capability: wascc:blobstore, values: { ROOT: ./blobs } }]\n",
    );
    let m = Manifest::from_path_with_env(&path, &no_env).expect("valid");
    // The manifest's directory, not the test's working directory (the
    // crate directory under cargo), which the old behaviour would use.
    assert_eq!(
        Path::new(&m.bindings[0].values["ROOT"]),
        sub.join("blobs"),
        "{m:#?}"
    );
    assert!(Path::new(&m.bindings[0].values["ROOT"]).is_absolute());
}

#[test]
fn actors_and_plugins_may_be_registry_references() {
    let m = yaml(
        "actors:\n  - oci://127.0.0.1:5000/team/hello:1.0.0\n  - path: oci://ghcr.io/t/kv@sha256:0123\ncapabilities:\n  - path: oci://127.0.0.1:5000/team/inventory:0.1.0\n",
    )
    .unwrap();
    assert_eq!(
        m.actors[0].source,
        Source::Registry("oci://127.0.0.1:5000/team/hello:1.0.0".into())
    );
    assert_eq!(m.actors[0].source.path(), None);
    assert_eq!(
        m.actors[1].source,
        Source::Registry("oci://ghcr.io/t/kv@sha256:0123".into())
    );
    assert!(matches!(
        &m.capabilities[0].kind,
        CapabilitySource::Plugin { source: Source::Registry(r), .. } if r == "oci://127.0.0.1:5000/team/inventory:0.1.0"
    ));
}

#[test]
fn malformed_registry_references_are_refused_at_their_field() {
    assert_field_error(
        yaml("actors: ['oci://']"),
        "actors[0]",
        "oci://REGISTRY/REPOSITORY",
    );
    assert_field_error(
        yaml("actors: [{ path: 'oci://' }]"),
        "actors[0].path",
        "oci://REGISTRY/REPOSITORY",
    );
    // Docker Hub's short names are the host's to resolve.
    let m = yaml("actors: ['oci://hello:1.0']").unwrap();
    assert_eq!(
        m.actors[0].source,
        Source::Registry("oci://hello:1.0".into())
    );
    assert_field_error(
        yaml("capabilities: [{ path: 'oci://host/a b:1' }]"),
        "capabilities[0].path",
        "no spaces",
    );
}

// --- HTTP filters --------------------------------------------------------------

const FILTERS_YAML: &str = r#"
capabilities:
  - id: wascc:http_server
  - id: wascc:keyvalue
http_filters:
  - path: ./add_header_signed.wasm
    config: { name: x-served-by, value: waxosuit }
bindings:
  - actor: hello
    capability: wascc:http_server
    values: { PORT: "8080" }
    filters:
      - path: ./authz_signed.wasm
        config: '{"tokens": ["t1"]}'
        upstreams:
          auth: http://127.0.0.1:9000
        limits:
          max_memory_mib: 16
          deadline_ms: 100
          fuel: 100000000
          max_body_kib: 1024
      - ./passthrough_signed.wasm
      - oci://registry.example.com/filters/authz:1.0
  - actor: hello
    capability: wascc:keyvalue
"#;

const FILTERS_JSON: &str = r#"{
  "capabilities": [{ "id": "wascc:http_server" }, { "id": "wascc:keyvalue" }],
  "http_filters": [
    { "path": "./add_header_signed.wasm",
      "config": { "name": "x-served-by", "value": "waxosuit" } }
  ],
  "bindings": [
    { "actor": "hello", "capability": "wascc:http_server", "values": { "PORT": "8080" },
      "filters": [
        { "path": "./authz_signed.wasm",
          "config": "{\"tokens\": [\"t1\"]}",
          "upstreams": { "auth": "http://127.0.0.1:9000" },
          "limits": { "max_memory_mib": 16, "deadline_ms": 100, "fuel": 100000000,
                      "max_body_kib": 1024 } },
        "./passthrough_signed.wasm",
        "oci://registry.example.com/filters/authz:1.0"
      ] },
    { "actor": "hello", "capability": "wascc:keyvalue" }
  ]
}"#;

/// `bytes` parsed as JSON.
#[track_caller]
fn json_value(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(bytes)))
}

fn check_filters_example(m: &Manifest) {
    assert_eq!(m.http_filters.len(), 1);
    let header = &m.http_filters[0];
    assert_eq!(
        header.source,
        Source::File(PathBuf::from("/srv/host/add_header_signed.wasm"))
    );
    assert_eq!(header.declared, "./add_header_signed.wasm");
    assert_eq!(
        json_value(&header.config),
        serde_json::json!({ "name": "x-served-by", "value": "waxosuit" })
    );
    assert!(header.upstreams.is_empty());
    assert_eq!(header.limits, FilterLimits::default());

    let filters = &m.bindings[0].filters;
    assert_eq!(filters.len(), 3);
    let authz = &filters[0];
    assert_eq!(
        authz.source.path(),
        Some(Path::new("/srv/host/authz_signed.wasm"))
    );
    assert_eq!(authz.declared, "./authz_signed.wasm");
    // A string is handed over byte for byte, spacing and all.
    assert_eq!(authz.config, br#"{"tokens": ["t1"]}"#);
    assert_eq!(
        authz.upstreams,
        BTreeMap::from([("auth".to_owned(), "http://127.0.0.1:9000".to_owned())])
    );
    assert_eq!(
        authz.limits,
        FilterLimits {
            max_memory_mib: Some(16),
            deadline_ms: Some(100),
            fuel: Some(100_000_000),
            max_body_kib: Some(1024),
        }
    );

    let passthrough = &filters[1];
    assert_eq!(
        passthrough.source,
        Source::File(PathBuf::from("/srv/host/passthrough_signed.wasm"))
    );
    assert_eq!(passthrough.declared, "./passthrough_signed.wasm");
    assert!(passthrough.config.is_empty());
    assert!(passthrough.upstreams.is_empty());
    assert_eq!(passthrough.limits, FilterLimits::default());

    assert_eq!(
        filters[2].source,
        Source::Registry("oci://registry.example.com/filters/authz:1.0".into())
    );
    assert_eq!(
        filters[2].declared,
        "oci://registry.example.com/filters/authz:1.0"
    );

    assert!(m.bindings[1].filters.is_empty());
}

#[test]
fn http_filters_parse_with_every_field() {
    let m = yaml(FILTERS_YAML).expect("the filter example is valid");
    check_filters_example(&m);
}

#[test]
fn http_filters_parse_the_same_from_json() {
    let json = Manifest::from_str_with_env(FILTERS_JSON, Format::Json, BASE, ORIGIN, &no_env)
        .expect("the JSON filter example is valid");
    check_filters_example(&json);
    assert_eq!(json, yaml(FILTERS_YAML).expect("valid"));
}

#[test]
fn manifests_without_filters_have_empty_chains() {
    let m = yaml(EXAMPLE_YAML).expect("valid");
    assert!(m.http_filters.is_empty());
    assert!(m.bindings.iter().all(|b| b.filters.is_empty()));
    let m = yaml(
        "http_filters:\nbindings:\n  - { actor: a, capability: wascc:logging, filters: [] }\n",
    )
    .expect("blank and empty chains");
    assert!(m.http_filters.is_empty() && m.bindings[0].filters.is_empty());
}

/// A manifest whose `http_filters[0]` has `config` written as given.
fn with_filter_config(config: &str) -> Result<Manifest, ManifestError> {
    yaml(&format!(
        "http_filters:\n  - path: f.wasm\n    config: {config}\n"
    ))
}

/// The config of `http_filters[0]` written as `config`.
fn filter_config(config: &str) -> Result<Vec<u8>, ManifestError> {
    with_filter_config(config).map(|m| m.http_filters[0].config.clone())
}

#[test]
fn filter_config_that_is_not_a_string_becomes_json_with_its_types() {
    let config = filter_config(
        "{ zeta: 1, alpha: -2, big: 18446744073709551615, ratio: 1.5, whole: 2.0, on: true, \
         off: false, none: null, text: '42', list: [1, a, { b: [] }], 8080: port }",
    )
    .expect("valid");
    assert_eq!(
        json_value(&config),
        serde_json::json!({
            "zeta": 1, "alpha": -2, "big": u64::MAX, "ratio": 1.5, "whole": 2.0,
            "on": true, "off": false, "none": null, "text": "42",
            "list": [1, "a", { "b": [] }], "8080": "port",
        })
    );
    // Keys keep the file's order, and `2.0` stays a float.
    let text = String::from_utf8(config).expect("UTF-8");
    assert!(text.starts_with(r#"{"zeta":1,"alpha":-2,"#), "{text}");
    assert!(text.contains(r#""whole":2.0"#), "{text}");

    assert_eq!(
        filter_config("[a, 1, true]").expect("a list"),
        br#"["a",1,true]"#
    );
    assert_eq!(filter_config("42").expect("a number"), b"42");
    assert_eq!(filter_config("-0.25").expect("a float"), b"-0.25");
    assert_eq!(filter_config("true").expect("a boolean"), b"true");
    assert_eq!(filter_config("{}").expect("an empty mapping"), b"{}");
}

#[test]
fn filter_config_strings_are_kept_as_written_and_null_is_empty() {
    assert_eq!(filter_config("'plain text'").expect("valid"), b"plain text");
    assert_eq!(
        filter_config("\"t\\u00e9\"").expect("valid"),
        "té".as_bytes()
    );
    assert_eq!(filter_config("''").expect("valid"), b"");
    assert_eq!(
        filter_config("|\n      a: 1\n      b: 2\n").expect("valid"),
        b"a: 1\nb: 2\n"
    );
    for null in ["", "null", "~"] {
        assert_eq!(filter_config(null).expect("valid"), b"", "config: {null}");
    }
}

#[test]
fn filter_fields_are_expanded_like_the_rest() {
    let env = env_of(&[
        ("FILTER_DIR", "/opt/filters"),
        ("TOKEN", "se\"cret"),
        ("AUTH_URL", "https://auth.example.com/v1"),
        ("RAW", r#"{"k": 1}"#),
    ]);
    let m = yaml_env(
        "http_filters:\n  - path: ${FILTER_DIR}/authz.wasm\n    config: { token: '${TOKEN}', \
         port: '${PORT:8080}', n: 3 }\n    upstreams: { auth: '${AUTH_URL}' }\n    limits: \
         { fuel: '${FUEL:500}', max_body_kib: '${BODY:64}' }\n  - path: ./raw.wasm\n    config: \
         '${RAW}'\n",
        &env,
    )
    .expect("valid");
    let authz = &m.http_filters[0];
    assert_eq!(authz.declared, "/opt/filters/authz.wasm");
    assert_eq!(
        authz.source.path(),
        Some(Path::new("/opt/filters/authz.wasm"))
    );
    // Expanded text stays a JSON string, however it is quoted.
    assert_eq!(
        json_value(&authz.config),
        serde_json::json!({ "token": "se\"cret", "port": "8080", "n": 3 })
    );
    assert_eq!(authz.upstreams["auth"], "https://auth.example.com/v1");
    assert_eq!(authz.limits.fuel, Some(500));
    assert_eq!(authz.limits.max_body_kib, Some(64));
    assert_eq!(m.http_filters[1].config, br#"{"k": 1}"#);

    let err = yaml("http_filters: [{ path: f.wasm, config: { tokens: [ok, '${NOPE}'] } }]")
        .expect_err("NOPE is unset");
    assert!(matches!(err, ManifestError::Env { .. }), "{err:?}");
    assert_eq!(err.field(), Some("http_filters[0].config.tokens[1]"));
}

#[test]
fn filters_only_apply_to_http_server_bindings() {
    let rendered = assert_field_error(
        yaml(
            "capabilities: [{ id: wascc:keyvalue }]\nbindings:\n  - actor: a\n    capability: \
             wascc:keyvalue\n    filters: [f.wasm]\n",
        ),
        "bindings[0].filters",
        "filters only apply to HTTP server bindings",
    );
    assert!(rendered.contains("wascc:keyvalue"), "{rendered}");
    assert!(rendered.contains("remove `filters`"), "{rendered}");
}

#[test]
fn an_empty_filter_path_is_refused_at_its_field() {
    assert_field_error(
        yaml("http_filters: ['']"),
        "http_filters[0]",
        "path is empty",
    );
    assert_field_error(
        yaml(
            "bindings:\n  - actor: a\n    capability: wascc:http_server\n    filters: [ok.wasm, \
             { path: ' ' }]\ncapabilities: [{ id: wascc:http_server }]\n",
        ),
        "bindings[0].filters[1].path",
        "path is empty",
    );
    assert_field_error(
        yaml("http_filters: [{ path: 'oci://' }]"),
        "http_filters[0].path",
        "oci://REGISTRY/REPOSITORY",
    );
}

#[test]
fn filter_type_errors_carry_the_field_path() {
    assert_field_error(
        yaml("http_filters: [42]"),
        "http_filters[0]",
        "a path to a signed Proxy-Wasm filter module",
    );
    assert_field_error(
        yaml("http_filters: [{ config: x }]"),
        "http_filters[0]",
        "missing field `path`",
    );
    assert_field_error(
        yaml("http_filters: [{ path: f.wasm, upstreams: { auth: 9000 } }]"),
        "http_filters[0].upstreams.auth",
        "expected a string",
    );
    assert_field_error(
        yaml("http_filters: [{ path: f.wasm, limits: { deadline_ms: -1 } }]"),
        "http_filters[0].limits.deadline_ms",
        "-1",
    );
}

#[track_caller]
fn assert_unknown_field(
    result: Result<Manifest, ManifestError>,
    field: &str,
    suggestion: Option<&str>,
) {
    let err = result.expect_err("an unknown field");
    let rendered = err.to_string();
    let ManifestError::UnknownField {
        field: f,
        suggestion: s,
        ..
    } = &err
    else {
        panic!("expected UnknownField at {field}, got {err:?}")
    };
    assert_eq!(
        (f.as_str(), s.as_deref()),
        (field, suggestion),
        "{rendered}"
    );
    assert!(
        rendered.starts_with(&format!("{ORIGIN}: {field}: unknown field")),
        "{rendered}"
    );
}

#[test]
fn unknown_filter_fields_are_refused_with_a_suggestion() {
    assert_unknown_field(
        yaml(
            "capabilities: [{ id: wascc:http_server }]\nbindings:\n  - actor: a\n    \
             capability: wascc:http_server\n    filters:\n      - path: f.wasm\n        \
             confg: x\n",
        ),
        "bindings[0].filters[0].confg",
        Some("config"),
    );
    assert_unknown_field(
        yaml("http_filters: [{ path: f.wasm, limits: { max_body: 4 } }]"),
        "http_filters[0].limits.max_body",
        Some("max_body_kib"),
    );
    // Actor-only limits do not apply to filters.
    let err = yaml("http_filters: [{ path: f.wasm, limits: { max_instances: 4 } }]")
        .expect_err("an actor limit");
    assert_eq!(err.field(), Some("http_filters[0].limits.max_instances"));
    assert_unknown_field(
        yaml("http_filter: [f.wasm]"),
        "http_filter",
        Some("http_filters"),
    );
    assert_unknown_field(
        yaml("bindings: [{ actor: a, capability: wascc:http_server, filter: [f.wasm] }]"),
        "bindings[0].filter",
        Some("filters"),
    );
}

#[test]
fn filter_limits_must_be_at_least_one() {
    for name in ["max_memory_mib", "deadline_ms", "fuel", "max_body_kib"] {
        assert_field_error(
            yaml(&format!(
                "http_filters:\n  - a.wasm\n  - path: b.wasm\n    limits: {{ {name}: 0 }}\n"
            )),
            &format!("http_filters[1].limits.{name}"),
            "at least 1",
        );
    }
}

/// A binding to the HTTP server whose first filter has `upstreams`.
fn upstreams(body: &str) -> Result<Manifest, ManifestError> {
    yaml(&format!(
        "capabilities: [{{ id: wascc:http_server }}]\nbindings:\n  - actor: a\n    capability: \
         wascc:http_server\n    filters:\n      - ok.wasm\n      - path: f.wasm\n        \
         upstreams: {{ {body} }}\n"
    ))
}

#[test]
fn upstream_names_are_checked() {
    let long = "a".repeat(256);
    let ok = "a".repeat(255);
    let m = upstreams(&format!("{ok}: http://x, auth.v1_b-2: http://y")).expect("valid names");
    assert_eq!(m.bindings[0].filters[1].upstreams.len(), 2);

    assert_field_error(
        upstreams("'': http://x"),
        "bindings[0].filters[1].upstreams",
        "must not be empty",
    );
    assert_field_error(
        upstreams(&format!("{long}: http://x")),
        &format!("bindings[0].filters[1].upstreams.{long}"),
        "1 to 255",
    );
    for bad in ["a b", "auth/x", "auth:1", "ä"] {
        assert_field_error(
            upstreams(&format!("'{bad}': http://x")),
            &format!("bindings[0].filters[1].upstreams.{bad}"),
            "letters, digits",
        );
    }
}

#[test]
fn upstream_urls_are_http_base_urls() {
    let m = upstreams(
        "a: 'http://127.0.0.1:9000', b: 'https://auth.example.com/v1/', c: 'http://[::1]:80'",
    )
    .expect("valid URLs");
    assert_eq!(
        m.bindings[0].filters[1].upstreams["b"],
        "https://auth.example.com/v1/"
    );
    for (url, needle) in [
        ("grpc://auth:9000", "not an http:// or https:// URL"),
        ("127.0.0.1:9000", "not an http:// or https:// URL"),
        ("''", "not an http:// or https:// URL"),
        ("http://", "has no host"),
        ("'https:///path'", "has no host"),
        ("'http://:9000'", "has no host"),
        ("'http://auth:9000/check?x=1'", "query or fragment"),
        ("'http://auth:9000/#top'", "query or fragment"),
        ("'http://auth:99999'", "port"),
        ("'http://user:pw@auth'", "credentials"),
        ("'http://au th'", "spaces"),
    ] {
        let rendered = assert_field_error(
            upstreams(&format!("auth: {url}")),
            "bindings[0].filters[1].upstreams.auth",
            needle,
        );
        assert!(
            rendered.contains("http://127.0.0.1:9000"),
            "no example in: {rendered}"
        );
    }
}

#[test]
fn filter_chains_are_bounded() {
    let chain = |n: usize| format!("[{}]", vec!["f.wasm"; n].join(", "));
    let binding = |n: usize| {
        yaml(&format!(
            "capabilities: [{{ id: wascc:http_server }}]\nbindings:\n  - actor: a\n    \
             capability: wascc:http_server\n    filters: {}\n",
            chain(n)
        ))
    };
    assert_eq!(MAX_FILTER_CHAIN, 16);
    assert_eq!(
        binding(MAX_FILTER_CHAIN).expect("16 fit").bindings[0]
            .filters
            .len(),
        MAX_FILTER_CHAIN
    );
    let rendered = assert_field_error(
        binding(MAX_FILTER_CHAIN + 1),
        "bindings[0].filters",
        "has 17 filters, more than the 16",
    );
    assert!(rendered.contains("http_filters"), "no fix in: {rendered}");

    let host = |n: usize| yaml(&format!("http_filters: {}\n", chain(n)));
    assert_eq!(
        host(MAX_FILTER_CHAIN).expect("16 fit").http_filters.len(),
        MAX_FILTER_CHAIN
    );
    let rendered = assert_field_error(
        host(MAX_FILTER_CHAIN + 1),
        "http_filters",
        "has 17 filters, more than the 16",
    );
    assert!(rendered.contains("merge filters"), "no fix in: {rendered}");
}

#[test]
fn filter_config_is_at_most_one_mib() {
    assert_eq!(MAX_FILTER_CONFIG_BYTES, 1024 * 1024);
    let fits = "x".repeat(MAX_FILTER_CONFIG_BYTES);
    assert_eq!(
        filter_config(&format!("'{fits}'"))
            .expect("exactly 1 MiB")
            .len(),
        MAX_FILTER_CONFIG_BYTES
    );
    let rendered = assert_field_error(
        with_filter_config(&format!("'{fits}x'")),
        "http_filters[0].config",
        "1 MiB",
    );
    assert!(rendered.contains("1048577 bytes"), "{rendered}");
    // Measured after conversion: the quotes and braces of the JSON count.
    let almost = "x".repeat(MAX_FILTER_CONFIG_BYTES - 7); // `{"k":""}` is 8 more
    assert_field_error(
        with_filter_config(&format!("{{ k: '{almost}' }}")),
        "http_filters[0].config",
        "1 MiB",
    );
}

#[test]
fn filter_config_numbers_json_cannot_hold_are_refused() {
    for nan in [".nan", ".inf", "-.inf"] {
        assert_field_error(
            with_filter_config(&format!("{{ a: [1, {{ ratio: {nan} }}] }}")),
            "http_filters[0].config.a[1].ratio",
            "NaN or infinity",
        );
    }
    assert_field_error(
        with_filter_config(".inf"),
        "http_filters[0].config",
        "NaN or infinity",
    );
}

#[test]
fn yaml_aliases_that_expand_past_the_tree_budget_are_refused() {
    // 6 KB of anchors that expand to 222 million strings (GBs of memory)
    // when each alias is copied where it is used.
    let a = vec!["x"; 1000].join(", ");
    let b = vec!["*a"; 1000].join(", ");
    let c = vec!["*b"; 221].join(", ");
    let bomb = format!("a: &a [{a}]\nb: &b [{b}]\nc: [{c}]\n");
    let err = yaml(&bomb).unwrap_err();
    let ManifestError::Syntax { message, .. } = &err else {
        panic!("expected a Syntax error, got {err:?}");
    };
    assert!(message.contains("expands to more than 64 MiB"), "{message}");
    // One long string used many times weighs its length each time.
    let long = "y".repeat(1 << 20);
    let uses = vec!["*s"; 100].join(", ");
    let err = yaml(&format!("s: &s {long}\nl: [{uses}]\n")).unwrap_err();
    assert!(err.to_string().contains("expands to more than"), "{err}");
    // Aliases used modestly are still fine: the usual unknown-field error.
    let err = yaml("a: &a [x, y]\nb: [*a, *a]\n").unwrap_err();
    assert!(!err.to_string().contains("expands"), "{err}");
}

#[test]
fn a_manifest_file_past_the_size_bound_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(waxosuit_manifest::MAX_MANIFEST_BYTES + 1)
        .unwrap();
    let err = Manifest::from_path(&path).unwrap_err();
    assert!(matches!(err, ManifestError::Read { .. }), "{err:?}");
    let reason = std::error::Error::source(&err).unwrap().to_string();
    assert!(reason.contains("larger than 16 MiB"), "{reason}");
}
