//! `waxosuit claims inspect`: verify a signed module or a token file and
//! show what it claims, as a table or as JSON.
//!
//! Separate because everything shown here comes from a file that may be
//! hostile, and is shown even when verification fails: every value is
//! escaped and bounded ([`cell`], [`safe_json`]), and the property tests
//! below feed it hostile claims.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use waxosuit_claims::{
    Account, Actor, Claims, ClaimsError, ProxyWasmAbi, Verifier, caps, display, human_date,
    human_relative, now_secs,
};

use super::TrustArgs;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A signed .wasm module, or a file holding an account/operator token.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: TrustArgs,
}

pub(super) fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let bytes =
        fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let verifier = args.trust.verifier()?;
    let file = args.file.display().to_string();
    let now = now_secs();
    let error = if bytes.starts_with(b"\0asm") {
        let report = module_report(&file, &bytes, &verifier);
        if args.json {
            outln!("{}", safe_json(&module_json(&report))?);
        } else {
            outln!("{}", module_table(&report, now));
        }
        report.verdict.err()
    } else {
        let text = String::from_utf8(bytes).map_err(|_| ClaimsError::NotWasm)?;
        let report = token_report(text.trim(), &verifier);
        if args.json {
            outln!("{}", safe_json(&token_json(&report))?);
        } else {
            outln!("{}", token_table(&report, now));
        }
        report.error
    };
    match error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {file} is not valid: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `value` as pretty JSON that is safe to print on a terminal: besides what
/// JSON escapes itself, every character that could move the cursor or turn
/// the reading direction ([`display::is_unsafe_char`]: DEL, C1 controls,
/// bidirectional overrides, zero-width characters) is written as a `\uXXXX`
/// escape. A JSON parser reads back exactly the same value.
pub(crate) fn safe_json(value: &serde_json::Value) -> Result<String> {
    let raw = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        // Outside strings pretty JSON holds only spaces and newlines, and
        // serde_json escapes newlines inside them: a raw unsafe character
        // other than '\n' can only be inside a string, where `\uXXXX`
        // means that same character. All of them are in the BMP.
        if c != '\n' && display::is_unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// How many characters of a claims value a table cell shows.
const CELL_CHARS: usize = 128;

/// A claims value as a table shows it: escaped and bounded, since the token
/// may be hostile (and is shown even when it fails verification).
fn cell(value: &str) -> String {
    display::escape(value, CELL_CHARS)
}

/// What `claims inspect` knows about a signed module: the claims as found
/// (verified, or decoded without trust when verification failed, so a person
/// can see *why*: which issuer, which dates, which field) and the verdict.
#[derive(Debug)]
pub(crate) struct ModuleReport {
    file: String,
    claims: Option<Claims<Actor>>,
    /// The Proxy-Wasm ABI marker the module exports, if any.
    abi: Option<ProxyWasmAbi>,
    verdict: Result<(), ClaimsError>,
    any_issuer: bool,
}

impl ModuleReport {
    /// What the claims say the module is signed as: `actor` or
    /// `proxy-wasm-filter` (tagged [`waxosuit_claims::PROXY_WASM_FILTER_TAG`]);
    /// `None` when there are no claims to tell.
    fn kind(&self) -> Option<&'static str> {
        let meta = self.claims.as_ref()?.metadata.as_ref();
        Some(if meta.is_some_and(Actor::is_proxy_wasm_filter) {
            "proxy-wasm-filter"
        } else {
            "actor"
        })
    }

    /// The kind as the table shows it, with the ABI and what is amiss.
    fn kind_text(&self) -> String {
        match (self.kind(), self.abi) {
            (Some("proxy-wasm-filter"), Some(abi)) if abi.is_supported() => {
                format!("Proxy-Wasm filter (ABI {abi})")
            }
            (Some("proxy-wasm-filter"), Some(abi)) => {
                format!("Proxy-Wasm filter (ABI {abi}: not supported)")
            }
            (Some("proxy-wasm-filter"), None) => {
                "Proxy-Wasm filter (but the module exports no ABI marker)".to_string()
            }
            (_, Some(abi)) => format!(
                "Actor (the module exports the Proxy-Wasm ABI {abi} marker; sign it with \
                 `waxosuit claims sign` to run it as a filter)"
            ),
            (_, None) => "Actor".to_string(),
        }
    }
}

/// Verifies `bytes` with `verifier` and keeps whatever can be shown.
pub(crate) fn module_report(file: &str, bytes: &[u8], verifier: &Verifier) -> ModuleReport {
    let (claims, verdict) = match verifier.verify_actor(bytes) {
        Ok(v) => (Some(v.claims().clone()), Ok(())),
        Err(e) => (
            waxosuit_claims::extract(bytes)
                .ok()
                .and_then(|x| Claims::<Actor>::decode_unverified(&x.jwt).ok()),
            Err(e),
        ),
    };
    ModuleReport {
        file: file.to_string(),
        claims,
        abi: waxosuit_claims::proxy_wasm_abi(bytes).ok().flatten(),
        verdict,
        any_issuer: verifier.allows_any_issuer(),
    }
}

/// The report as `--json` prints it. Values are the token's own (JSON
/// escapes them); capability names are the display names. `kind` is what
/// the claims say the module is signed as (`actor`, `proxy-wasm-filter`;
/// `null` without claims) and `proxy_wasm_abi` the ABI marker the module
/// exports (`0.2.1`; `null` for none).
pub(crate) fn module_json(report: &ModuleReport) -> serde_json::Value {
    let mut out = json!({
        "file": report.file,
        "valid": report.verdict.is_ok(),
        "kind": report.kind(),
        "proxy_wasm_abi": report.abi.map(|abi| abi.to_string()),
    });
    if let Some(c) = &report.claims {
        let meta = c.metadata.clone().unwrap_or_default();
        out["claims"] = json!({
            "account": c.issuer,
            "module": c.subject,
            "name": meta.name,
            "version": meta.ver,
            "revision": meta.rev,
            "hash": meta.module_hash,
            "issued_at": c.issued_at,
            "expires": c.expires,
            "not_before": c.not_before,
            "capabilities": meta.capabilities().iter()
                .map(|id| json!({ "id": id, "name": caps::display_name(id) }))
                .collect::<Vec<_>>(),
            "tags": meta.tag_list(),
            "call_alias": meta.call_alias,
            "provider": meta.provider,
        });
    }
    if let Err(e) = &report.verdict {
        out["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
    }
    if report.any_issuer {
        out["any_issuer_accepted"] = json!(true);
    }
    out
}

/// The report as a table, followed by the verdict line when it is valid
/// (the error itself goes to stderr). Every claims value is escaped.
pub(crate) fn module_table(report: &ModuleReport, now: u64) -> String {
    let mut out = String::new();
    if let Some(c) = &report.claims {
        let meta = c.metadata.clone().unwrap_or_default();
        let name = meta
            .name
            .as_deref()
            .map_or_else(|| "(unnamed)".to_string(), cell);
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let title = if report.verdict.is_ok() {
            format!("{name} - Module")
        } else {
            format!("{name} - Module (NOT VALID)")
        };
        table.set_header(vec![title, String::new()]);
        table.add_row(vec!["Kind".to_string(), report.kind_text()]);
        table.add_row(vec!["Account".to_string(), cell(&c.issuer)]);
        table.add_row(vec!["Module".to_string(), cell(&c.subject)]);
        let version = match (meta.ver.as_deref().map(cell), meta.rev) {
            (Some(v), Some(r)) => format!("{v} ({r})"),
            (Some(v), None) => v,
            (None, Some(r)) => format!("({r})"),
            (None, None) => "-".to_string(),
        };
        table.add_row(vec!["Version".to_string(), version]);
        table.add_row(vec!["Expires".to_string(), when(c.expires, now, "never")]);
        table.add_row(vec![
            "Can Be Used".to_string(),
            when(c.not_before, now, "immediately"),
        ]);
        table.add_row(vec!["Hash".to_string(), cell(&meta.module_hash)]);
        let capabilities: Vec<String> = meta
            .capabilities()
            .iter()
            .map(|id| caps::display_name(id))
            .collect();
        table.add_row(vec![
            "Capabilities".to_string(),
            if capabilities.is_empty() {
                "None".to_string()
            } else {
                capabilities.join("\n")
            },
        ]);
        let tags: Vec<String> = meta.tag_list().iter().map(|t| cell(t)).collect();
        table.add_row(vec![
            "Tags".to_string(),
            if tags.is_empty() {
                "None".to_string()
            } else {
                tags.join(", ")
            },
        ]);
        if let Some(alias) = &meta.call_alias {
            table.add_row(vec!["Call Alias".to_string(), cell(alias)]);
        }
        out.push_str(&table.to_string());
    }
    if report.verdict.is_ok() {
        let trust = if report.any_issuer {
            "ANY issuer accepted: --allow-any-issuer, development only"
        } else {
            "issuer trusted"
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("Signature valid ({trust})."));
    }
    out
}

/// What `claims inspect` knows about an account or operator token file.
#[derive(Debug)]
pub(crate) struct TokenReport {
    kind: &'static str,
    issuer: String,
    subject: String,
    name: Option<String>,
    signers: Vec<String>,
    expires: Option<u64>,
    error: Option<ClaimsError>,
}

/// Verifies `jwt` as an operator token, else as an account token, reporting
/// the error of the kind whose key roles match the token's issuer.
pub(crate) fn token_report(jwt: &str, verifier: &Verifier) -> TokenReport {
    let (op, acct) = (verifier.verify_operator(jwt), verifier.verify_account(jwt));
    let verified = |kind,
                    issuer: &str,
                    subject: &str,
                    name: &Option<String>,
                    signers: &Option<Vec<String>>,
                    expires| {
        TokenReport {
            kind,
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            name: name.clone(),
            signers: signers.clone().unwrap_or_default(),
            expires,
            error: None,
        }
    };
    match (op, acct) {
        (Ok(v), _) => verified(
            "operator",
            v.issuer(),
            v.subject(),
            &v.metadata().name,
            &v.metadata().valid_signers,
            v.claims().expires,
        ),
        (_, Ok(v)) => verified(
            "account",
            v.issuer(),
            v.subject(),
            &v.metadata().name,
            &v.metadata().valid_signers,
            v.claims().expires,
        ),
        (Err(op_err), Err(acct_err)) => {
            let raw = Claims::<Account>::decode_unverified(jwt);
            let self_signed = raw.as_ref().is_ok_and(|c| c.issuer == c.subject);
            let (kind, error) = if self_signed {
                ("operator", op_err)
            } else {
                ("account", acct_err)
            };
            let mut report = TokenReport {
                kind,
                issuer: String::new(),
                subject: String::new(),
                name: None,
                signers: Vec::new(),
                expires: None,
                error: Some(error),
            };
            if let Ok(c) = raw {
                let m = c.metadata.clone().unwrap_or_default();
                report.issuer = c.issuer;
                report.subject = c.subject;
                report.name = m.name;
                report.signers = m.valid_signers.unwrap_or_default();
                report.expires = c.expires;
            }
            report
        }
    }
}

/// The token report as `--json` prints it.
pub(crate) fn token_json(report: &TokenReport) -> serde_json::Value {
    let mut out = json!({
        "kind": report.kind, "issuer": report.issuer, "subject": report.subject,
        "name": report.name, "valid_signers": report.signers, "expires": report.expires,
        "valid": report.error.is_none(),
    });
    if let Some(e) = &report.error {
        out["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
    }
    out
}

/// The token report as a table; every token value is escaped.
pub(crate) fn token_table(report: &TokenReport, now: u64) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        format!(
            "{} - {} token{}",
            report
                .name
                .as_deref()
                .map_or_else(|| "(unnamed)".to_string(), cell),
            report.kind,
            if report.error.is_some() {
                " (NOT VALID)"
            } else {
                ""
            }
        ),
        String::new(),
    ]);
    table.add_row(vec!["Issuer".to_string(), cell(&report.issuer)]);
    table.add_row(vec!["Subject".to_string(), cell(&report.subject)]);
    table.add_row(vec![
        "Expires".to_string(),
        when(report.expires, now, "never"),
    ]);
    let signers: Vec<String> = report.signers.iter().map(|s| cell(s)).collect();
    table.add_row(vec![
        "Valid Signers".to_string(),
        if signers.is_empty() {
            "None".to_string()
        } else {
            signers.join("\n")
        },
    ]);
    table.to_string()
}

fn when(at: Option<u64>, now: u64, none: &str) -> String {
    match at {
        None => none.to_string(),
        Some(t) => format!("{} ({})", human_date(t), human_relative(t, now)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use waxosuit_claims::{KeyKind, KeyPair, TokenKind};
    use waxosuit_test_fixtures::hostile::{self, proptest};

    use self::proptest::prelude::*;
    use super::*;
    use crate::claims::test_support::{MODULE, signed_by};

    /// The module whose `claims inspect` used to panic: a 56-byte non-ASCII
    /// `caps` entry starting with `M` (`display_name` sliced `[..8]`).
    #[test]
    fn inspect_shows_and_refuses_the_caps_entry_that_used_to_panic() {
        let account = KeyPair::generate(KeyKind::Account);
        let hostile_cap = format!("MAAAAAA\u{e9}{}", "A".repeat(47));
        assert_eq!(hostile_cap.len(), 56);
        let bytes = signed_by(
            &account,
            Actor {
                caps: Some(vec![caps::KEY_VALUE.into(), hostile_cap.clone()]),
                ..Actor::named("sneaky")
            },
        );
        let verifier = Verifier::new().trust_issuer(&account.public_key()).unwrap();
        let report = module_report("sneaky.wasm", &bytes, &verifier);
        assert!(
            matches!(&report.verdict, Err(ClaimsError::InvalidClaim { field, .. }) if field == "caps[1]"),
            "{:?}",
            report.verdict
        );
        let table = module_table(&report, 1_700_000_000);
        assert!(table.contains("sneaky - Module (NOT VALID)"), "{table}");
        assert!(table.contains("K/V Store"), "{table}");
        assert!(table.contains(&hostile_cap), "shown as it is: {table}");
        assert!(!table.contains("Signature valid"), "{table}");
        let json = module_json(&report);
        assert_eq!(json["valid"], false);
        assert_eq!(json["error"]["kind"], "invalid_claim");
        assert_eq!(
            json["claims"]["capabilities"][1]["id"],
            hostile_cap.as_str()
        );
    }

    #[test]
    fn inspect_shows_the_kind_of_module() {
        let account = KeyPair::generate(KeyKind::Account);
        let verifier = Verifier::new().trust_issuer(&account.public_key()).unwrap();
        let filter = wat::parse_str(
            r#"(module (func (export "proxy_abi_version_0_2_1")) (memory (export "memory") 1))"#,
        )
        .unwrap();
        let sign = |module: &[u8], tags: &[&str]| {
            let module_key = KeyPair::generate(KeyKind::Module).public_key();
            let meta = Actor {
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                ..Actor::named("f")
            };
            hostile::signed_module(module, &account, &module_key, meta, None, None)
        };
        let cases = [
            (
                sign(&filter, &[waxosuit_claims::PROXY_WASM_FILTER_TAG]),
                "proxy-wasm-filter",
                "Proxy-Wasm filter (ABI 0.2.1)",
            ),
            (sign(MODULE, &[]), "actor", "Actor"),
            (
                sign(&filter, &[]),
                "actor",
                "the module exports the Proxy-Wasm ABI 0.2.1 marker",
            ),
            (
                sign(MODULE, &[waxosuit_claims::PROXY_WASM_FILTER_TAG]),
                "proxy-wasm-filter",
                "exports no ABI marker",
            ),
        ];
        for (bytes, kind, shown) in cases {
            let report = module_report("f.wasm", &bytes, &verifier);
            assert!(report.verdict.is_ok(), "{:?}", report.verdict);
            assert_eq!(module_json(&report)["kind"], kind);
            let table = module_table(&report, 1_700_000_000);
            assert!(table.contains(shown), "{shown:?} in {table}");
        }
        let report = module_report("f.wasm", &filter, &verifier);
        let json = module_json(&report);
        assert_eq!(json["kind"], serde_json::Value::Null, "unsigned: no claims");
        assert_eq!(json["proxy_wasm_abi"], "0.2.1");
    }

    static ACCOUNT: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::generate(KeyKind::Account));

    fn assert_shows_safely(text: &str) -> Result<(), TestCaseError> {
        // Tables are multi-line; nothing else that moves the cursor or the
        // reading direction may come from the token.
        prop_assert!(
            !text
                .chars()
                .any(|c| c != '\n' && display::is_unsafe_char(c)),
            "unescaped token text in: {text:?}"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

        /// `claims inspect`'s rendering of any signed module, valid or not:
        /// no panic, nothing unescaped, the verdict `InvalidClaim` exactly
        /// when a field breaks the rules, and JSON that round-trips.
        #[test]
        fn inspect_renders_hostile_modules_without_panicking(
            meta in hostile::actor(),
            subject in prop_oneof![3 => hostile::module_key(), 1 => hostile::near_miss_key()],
            expires in hostile::time(),
            not_before in hostile::time(),
        ) {
            // What the verifier will judge: the metadata with the module's hash.
            let invalid = Actor {
                module_hash: waxosuit_claims::module_hash(MODULE).unwrap(),
                ..meta.clone()
            }
            .validate()
            .is_err();
            let subject_ok = KeyKind::of_public_key(&subject).is_ok_and(|k| k == KeyKind::Module);
            let bytes = hostile::signed_module(MODULE, &ACCOUNT, &subject, meta, expires, not_before);
            let verifier = Verifier::new().trust_issuer(&ACCOUNT.public_key()).unwrap();
            let report = module_report("hostile.wasm", &bytes, &verifier);
            if subject_ok {
                let is_invalid_claim = matches!(report.verdict, Err(ClaimsError::InvalidClaim { .. }));
                prop_assert_eq!(is_invalid_claim, invalid, "{:?}", report.verdict);
            }
            let table = module_table(&report, 1_700_000_000);
            assert_shows_safely(&table)?;
            prop_assert_eq!(table.contains("(NOT VALID)"), report.verdict.is_err());
            if let Err(e) = &report.verdict {
                assert_shows_safely(&e.to_string())?;
            }
            let value = module_json(&report);
            let json = safe_json(&value).unwrap();
            assert_shows_safely(&json)?;
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &value, "safe JSON reads back as the same value");
        }

        /// The same for account tokens with hostile names and signers.
        #[test]
        fn inspect_renders_hostile_account_tokens_without_panicking(
            name in proptest::option::of(hostile::text()),
            signers in proptest::collection::vec(hostile::near_miss_key(), 0..3),
            expires in hostile::time(),
        ) {
            let operator = KeyPair::from_raw_seed(KeyKind::Operator, [9; 32]).unwrap();
            let mut claims = Claims::<Account>::builder()
                .issuer(operator.public_key())
                .subject(ACCOUNT.public_key())
                .metadata(Account { name, valid_signers: Some(signers) })
                .build();
            claims.expires = expires;
            let jwt = claims.encode(&operator).unwrap();
            let verifier = Verifier::new().trust_operator(&operator.public_key()).unwrap();
            let report = token_report(&jwt, &verifier);
            assert_shows_safely(&token_table(&report, 1_700_000_000))?;
            let value = token_json(&report);
            let json = safe_json(&value).unwrap();
            assert_shows_safely(&json)?;
            prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap(), value);
        }
    }
}
