//! Whom a command trusts to issue actors and provider archives: the
//! `--trusted-issuer`, `--trusted-operator`, `--account-token` and
//! `--allow-any-issuer` options, and how they (plus the local keystore's
//! account) become a [`Verifier`] with a summary a person can check.
//!
//! Separate from the `claims` commands because `up`, `call` and `par`
//! flatten these same options into their own arguments.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use waxosuit_claims::{Account, Claims, KeyKind, Operator, Verifier, display};

use crate::keystore;

/// Whom `up`, `call` and the `inspect` commands trust to issue actors and
/// provider archives. There is no implicit trust: an issuer is trusted only
/// when it is the local keystore's account, named here, or vouched for by a
/// trusted operator; `--allow-any-issuer` is the explicit, loud exception.
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// Trust actors and provider archives issued by this account key
    /// (repeatable). The local keystore's account (the keys directory's
    /// account.nk, which `claims sign` uses without --issuer) is trusted
    /// without being named.
    #[arg(
        long = "trusted-issuer",
        value_name = "ACCOUNT_KEY",
        env = "WAXOSUIT_TRUSTED_ISSUERS",
        value_delimiter = ','
    )]
    trusted_issuers: Vec<String>,
    /// Trust accounts issued by this operator: an `O…` key, or a file holding
    /// a self-signed operator token (repeatable).
    #[arg(
        long = "trusted-operator",
        value_name = "KEY_OR_FILE",
        env = "WAXOSUIT_TRUSTED_OPERATORS",
        value_delimiter = ','
    )]
    trusted_operators: Vec<String>,
    /// A file holding an account token that links an issuer to a trusted operator (repeatable).
    #[arg(
        long = "account-token",
        value_name = "FILE",
        env = "WAXOSUIT_ACCOUNT_TOKENS",
        value_delimiter = ','
    )]
    account_tokens: Vec<PathBuf>,
    /// Accept actors and provider archives from ANY issuer, as long as they
    /// are correctly signed. Development only: anyone with a key pair can
    /// then run code here.
    #[arg(
        long,
        env = "WAXOSUIT_ALLOW_ANY_ISSUER",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    allow_any_issuer: bool,
}

/// A [`TrustArgs`] turned into a verifier, with what it trusts in words.
#[derive(Debug)]
pub(crate) struct ResolvedTrust {
    /// The verifier for actors, provider archives and account tokens.
    pub verifier: Verifier,
    /// One line per trusted party (or the warning that any issuer is
    /// accepted, or that none is), for the caller to print at start-up.
    pub summary: Vec<String>,
}

impl TrustArgs {
    /// The verifier these options describe (see [`TrustArgs::resolve`]).
    pub(crate) fn verifier(&self) -> Result<Verifier> {
        Ok(self.resolve()?.verifier)
    }

    /// The verifier these options describe, trusting the local keystore's
    /// account too, and a summary of whom it trusts.
    pub(crate) fn resolve(&self) -> Result<ResolvedTrust> {
        self.resolve_with(&keystore::local_account(), &keystore::keys_dir())
    }

    fn resolve_with(
        &self,
        local: &keystore::LocalAccount,
        keys_dir: &Path,
    ) -> Result<ResolvedTrust> {
        let mut v = Verifier::new();
        let mut summary = Vec::new();
        if self.allow_any_issuer {
            v = v.allow_any_issuer();
            summary.push(
                "WARNING: accepting actors and provider archives from ANY issuer \
                 (--allow-any-issuer or WAXOSUIT_ALLOW_ANY_ISSUER; development only)"
                    .to_string(),
            );
        }
        match local {
            keystore::LocalAccount::Found { key, path } => {
                v = v.trust_issuer(key)?;
                summary.push(format!(
                    "trusting actors and provider archives issued by {key} (the local \
                     keystore's account, {})",
                    path.display()
                ));
            }
            keystore::LocalAccount::Unusable { path, reason } => summary.push(format!(
                "note: not trusting the local keystore's account {}: {reason}",
                path.display()
            )),
            keystore::LocalAccount::Absent(_) => {}
        }
        for key in &self.trusted_issuers {
            v = v.trust_issuer(key).with_context(|| {
                format!(
                    "--trusted-issuer `{}` is not an account key",
                    display::shown_key(key)
                )
            })?;
            if !matches!(local, keystore::LocalAccount::Found { key: k, .. } if k == key) {
                summary.push(format!(
                    "trusting actors and provider archives issued by {key} (--trusted-issuer)"
                ));
            }
        }
        for op in &self.trusted_operators {
            v = if super::is_kind(op, KeyKind::Operator) && !Path::new(op).exists() {
                summary.push(format!(
                    "trusting accounts vouched for by operator {op} (--trusted-operator)"
                ));
                v.trust_operator(op)?
            } else {
                let jwt = fs::read_to_string(op).with_context(|| {
                    format!(
                        "cannot read operator token file `{}`",
                        display::shown_key(op)
                    )
                })?;
                let v = v.trust_operator_token(jwt.trim()).with_context(|| {
                    format!("operator token `{}` is not valid", display::shown_key(op))
                })?;
                let key = Claims::<Operator>::decode_unverified(jwt.trim())
                    .map(|c| c.subject)
                    .unwrap_or_default();
                summary.push(format!(
                    "trusting accounts vouched for by operator {key} and its valid signers \
                     (--trusted-operator {op})"
                ));
                v
            };
        }
        for path in &self.account_tokens {
            let jwt = fs::read_to_string(path)
                .with_context(|| format!("cannot read account token file {}", path.display()))?;
            let account = Claims::<Account>::decode_unverified(jwt.trim())
                .map(|c| display::escape(&c.subject, 60))
                .unwrap_or_else(|_| "(unreadable)".to_string());
            summary.push(format!(
                "offering the account token for {account} (--account-token {}); it counts \
                 only if a trusted operator issued it",
                path.display()
            ));
            v = v.with_account_token(jwt.trim());
        }
        if !self.allow_any_issuer && !v.has_trust_list() {
            summary.push(format!(
                "trusting NO issuer: every actor and provider archive will be refused; trust \
                 one with --trusted-issuer A…, sign with `waxosuit claims sign` (its account, \
                 {}, is then trusted automatically), or pass --allow-any-issuer (development \
                 only)",
                keys_dir.join(keystore::ACCOUNT_FILE).display()
            ));
        }
        Ok(ResolvedTrust {
            verifier: v,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use waxosuit_claims::{Actor, ClaimsError, KeyKind, KeyPair};

    use super::*;
    use crate::claims::test_support::signed_by;
    use crate::keystore::{LocalAccount, local_account_in, write_seed};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        trust: TrustArgs,
    }

    fn trust_args(args: &[&str]) -> TrustArgs {
        Cli::try_parse_from(std::iter::once("waxosuit").chain(args.iter().copied()))
            .unwrap()
            .trust
    }

    #[test]
    fn the_local_keystore_account_is_trusted_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let account = KeyPair::generate(KeyKind::Account);
        write_seed(&dir.path().join(keystore::ACCOUNT_FILE), &account).unwrap();
        let local = local_account_in(dir.path());
        let trust = trust_args(&[]).resolve_with(&local, dir.path()).unwrap();
        assert_eq!(trust.summary.len(), 1, "{:?}", trust.summary);
        let line = &trust.summary[0];
        assert!(line.contains(&account.public_key()), "{line}");
        assert!(line.contains("the local keystore's account"), "{line}");
        assert!(line.contains(&dir.path().display().to_string()), "{line}");
        trust
            .verifier
            .verify_actor(&signed_by(&account, Actor::named("mine")))
            .unwrap();
        // Anyone else's actor is refused as untrusted.
        let stranger = KeyPair::generate(KeyKind::Account);
        let err = trust
            .verifier
            .verify_actor(&signed_by(&stranger, Actor::named("theirs")))
            .unwrap_err();
        assert!(matches!(err, ClaimsError::UntrustedIssuer { .. }), "{err}");
    }

    #[test]
    fn with_nothing_trusted_the_summary_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust_args(&[])
            .resolve_with(
                &LocalAccount::Absent(dir.path().join("account.nk")),
                dir.path(),
            )
            .unwrap();
        let text = trust.summary.join("\n");
        for needle in [
            "trusting NO issuer",
            "--trusted-issuer",
            "waxosuit claims sign",
            "--allow-any-issuer",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let err = trust
            .verifier
            .verify_actor(&signed_by(
                &KeyPair::generate(KeyKind::Account),
                Actor::named("x"),
            ))
            .unwrap_err();
        assert!(matches!(err, ClaimsError::NoTrustedIssuer { .. }), "{err}");

        // An unusable keystore file is reported, not trusted.
        let unusable = LocalAccount::Unusable {
            path: dir.path().join("account.nk"),
            reason: "it holds a module key, not an account key".into(),
        };
        let trust = trust_args(&[]).resolve_with(&unusable, dir.path()).unwrap();
        assert!(
            trust.summary[0].starts_with("note: not trusting"),
            "{:?}",
            trust.summary
        );
        assert!(!trust.verifier.has_trust_list());
    }

    #[test]
    fn explicit_issuers_and_allow_any_are_summarised() {
        let dir = tempfile::tempdir().unwrap();
        let absent = LocalAccount::Absent(dir.path().join("account.nk"));
        let account = KeyPair::generate(KeyKind::Account);
        let trust = trust_args(&["--trusted-issuer", &account.public_key()])
            .resolve_with(&absent, dir.path())
            .unwrap();
        assert_eq!(trust.summary.len(), 1, "{:?}", trust.summary);
        assert!(trust.summary[0].contains("(--trusted-issuer)"));
        trust
            .verifier
            .verify_actor(&signed_by(&account, Actor::named("x")))
            .unwrap();

        let trust = trust_args(&["--allow-any-issuer"])
            .resolve_with(&absent, dir.path())
            .unwrap();
        assert!(trust.verifier.allows_any_issuer());
        assert!(
            trust.summary[0]
                .starts_with("WARNING: accepting actors and provider archives from ANY issuer"),
            "{:?}",
            trust.summary
        );
        assert!(!trust.summary.iter().any(|l| l.contains("NO issuer")));

        let err = trust_args(&["--trusted-issuer", "AOOPS"])
            .resolve_with(&absent, dir.path())
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("--trusted-issuer `AOOPS`"),
            "{err:#}"
        );
    }

    /// A seed pasted where a public key belongs (the trust list of a
    /// ConfigMap, say) is refused without being echoed to the log: it was
    /// shown whole, twice, in the error.
    #[test]
    fn a_seed_given_as_a_key_is_never_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let absent = LocalAccount::Absent(dir.path().join("account.nk"));
        let account = KeyPair::generate(KeyKind::Account);
        let seed = account.seed().unwrap();
        let operator_seed = KeyPair::generate(KeyKind::Operator).seed().unwrap();
        for (flag, value) in [
            ("--trusted-issuer", &seed),
            ("--trusted-operator", &operator_seed),
        ] {
            let err = trust_args(&[flag, value])
                .resolve_with(&absent, dir.path())
                .unwrap_err();
            let text = format!("{err:#} {err:?}");
            assert!(!text.contains(&value[2..]), "{flag}: {text}");
            assert!(text.contains("a seed"), "{flag}: {text}");
        }
    }
}
