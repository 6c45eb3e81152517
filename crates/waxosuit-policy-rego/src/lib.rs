//! The embedded policy engine of Waxosuit: Rego policies, OPA's language,
//! evaluated in the host's process with [`regorus`], so that a host needs no
//! OPA server to enforce policy.
//!
//! # A guided tour
//!
//! * [`RegoEngine::from_files`] loads `.rego` files and JSON data files;
//!   [`RegoEngine::from_sources`] takes the same as text and values. Both
//!   parse and prepare everything at once: a syntax error is an error of the
//!   constructor ([`RegoError::Policy`], naming the file and line), not of
//!   the first request. Policies use Rego v1 (`if`, `contains`, `in`,
//!   `every` without imports).
//! * Data files must each be a JSON object; they are deep-merged into
//!   `data`, as OPA merges its data files (the same path with two different
//!   values is an error).
//! * [`RegoEngine`] implements [`PolicyEngine`]: wrap it in a
//!   [`Policy`](waxosuit_policy::Policy) for caching, logging, metrics and
//!   the undefined rule. It evaluates `data.waxosuit.<point>.allow` and
//!   [governs](PolicyEngine::governs) the points its policies and data say
//!   something about: a package `waxosuit.<point>` (or deeper), a rule named
//!   `<point>` (or `<point>.…`) in package `waxosuit`, or data under
//!   `waxosuit.<point>`.
//! * Evaluation is plain CPU work of microseconds, done inline on the
//!   calling task. The prepared engine is cloned per evaluation (its
//!   policies and data are shared, so a clone costs about 100 ns), which lets
//!   any number of tasks on a multi-threaded runtime decide at once.
//!   Evaluations are bounded in time ([`RegoEngine::with_time_limit`],
//!   default [`DEFAULT_TIME_LIMIT`]), so a runaway rule fails (and denies)
//!   instead of stalling a runtime thread.
//! * As in OPA, a builtin given bad arguments makes its expression undefined
//!   rather than failing the evaluation. A rule that produces two different
//!   values, a function that does not exist or an exceeded time limit is an
//!   evaluation error, which the [`Policy`](waxosuit_policy::Policy) turns
//!   into a denial.
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use waxosuit_policy::{DecisionPoint, Outcome, Policy, PolicyConfig, PolicyEngine};
//! use waxosuit_policy_rego::RegoEngine;
//!
//! let read_only = r#"
//!     package waxosuit.invoke
//!
//!     writes := {"Set", "Del", "Clear"}
//!
//!     default allow := false
//!     allow if not input.operation in writes
//! "#;
//! let engine = RegoEngine::from_sources(vec![("read-only.rego".into(), read_only.into())], vec![])?;
//! assert_eq!(engine.describe(), "embedded policy (read-only.rego)");
//! assert!(engine.governs(DecisionPoint::Invoke));
//! assert!(!engine.governs(DecisionPoint::Start));
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let set = json!({ "operation": "Set" });
//! assert_eq!(engine.evaluate(DecisionPoint::Invoke, &set).await?, Outcome::Deny);
//!
//! let policy = Policy::new(Arc::new(engine), PolicyConfig::default());
//! assert!(policy.check(DecisionPoint::Invoke, json!({ "operation": "Get" })).await.is_ok());
//! assert!(policy.check(DecisionPoint::Invoke, set).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use serde::Deserialize;
use waxosuit_policy::{DecisionPoint, EngineError, Outcome, PolicyEngine};

/// How long one evaluation may run before it fails, unless changed with
/// [`RegoEngine::with_time_limit`]. Authorization policies decide in
/// microseconds; this only stops a runaway rule.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(100);

/// A policy set that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegoError {
    /// A policy or data file could not be read.
    #[error("cannot read {} file {}", if *policy { "policy" } else { "data" }, file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Whether it was given as a policy (else as data).
        policy: bool,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A policy does not parse or compile: a syntax error, an unsafe
    /// variable, a rule defined inconsistently.
    #[error("{file}{}: {message}", Position(*line, *column))]
    Policy {
        /// The policy's name: its path as given, or the name passed to
        /// [`RegoEngine::from_sources`].
        file: String,
        /// 1-based line, when known.
        line: Option<u32>,
        /// 1-based column, when known.
        column: Option<u32>,
        /// What is wrong.
        message: String,
        /// The interpreter's full diagnostic (with the offending line).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A data document is not a JSON object, does not parse, or conflicts
    /// with another.
    #[error("{file}: {message}")]
    Data {
        /// The data file, or `data document #N` for
        /// [`RegoEngine::from_sources`].
        file: String,
        /// What is wrong.
        message: String,
    },

    /// Two policies have the same name (the same file given twice).
    #[error("policy {name} is given twice")]
    DuplicatePolicy {
        /// The name.
        name: String,
    },
}

/// `:line:column`, in the form editors turn into links.
struct Position(Option<u32>, Option<u32>);

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(column)) => write!(f, ":{line}:{column}"),
            (Some(line), None) => write!(f, ":{line}"),
            _ => Ok(()),
        }
    }
}

/// How a decision point is evaluated, chosen at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Nothing defines `data.waxosuit.<point>`: always undefined.
    Ungoverned,
    /// `allow` is a rule the interpreter evaluates directly (the fast path).
    Rule,
    /// `allow` comes from data, or from rules that define a parent document:
    /// evaluated as a query, which resolves any document.
    Query,
}

/// Rego policies and data, loaded and prepared, evaluated in process. See
/// the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct RegoEngine {
    /// Parsed, analysed and holding the data; cloned for each evaluation.
    prepared: regorus::Engine,
    plans: [Plan; 4],
    describe: String,
}

impl RegoEngine {
    /// Loads the `.rego` files `policies` and the JSON files `data`. Errors
    /// name the file (as given) and, for policies, the line.
    pub fn from_files(policies: &[PathBuf], data: &[PathBuf]) -> Result<RegoEngine, RegoError> {
        let read = |file: &PathBuf, policy: bool| {
            std::fs::read_to_string(file).map_err(|source| RegoError::Read {
                file: file.clone(),
                policy,
                source,
            })
        };
        let mut sources = Vec::with_capacity(policies.len());
        for file in policies {
            sources.push((file.display().to_string(), read(file, true)?));
        }
        let mut documents = Vec::with_capacity(data.len());
        for file in data {
            let text = read(file, false)?;
            let value = serde_json::from_str(&text).map_err(|e| RegoError::Data {
                file: file.display().to_string(),
                message: format!("not valid JSON: {e}"),
            })?;
            documents.push((file.display().to_string(), value));
        }
        RegoEngine::load(sources, documents)
    }

    /// Loads policies given as `(name, text)` and data documents given as
    /// values. Names are what errors and [`describe`](PolicyEngine::describe)
    /// call the policies.
    pub fn from_sources(
        policies: Vec<(String, String)>,
        data: Vec<serde_json::Value>,
    ) -> Result<RegoEngine, RegoError> {
        let documents = data
            .into_iter()
            .enumerate()
            .map(|(i, value)| (format!("data document #{}", i + 1), value))
            .collect();
        RegoEngine::load(policies, documents)
    }

    /// Sets how long one evaluation may run before it fails (and so denies).
    pub fn with_time_limit(mut self, limit: Duration) -> RegoEngine {
        self.prepared.set_execution_timer_config(timer(limit));
        self
    }

    fn load(
        policies: Vec<(String, String)>,
        data: Vec<(String, serde_json::Value)>,
    ) -> Result<RegoEngine, RegoError> {
        let mut engine = regorus::Engine::new();
        // OPA's default: a builtin error makes the expression undefined.
        engine.set_strict_builtin_errors(false);
        engine.set_execution_timer_config(timer(DEFAULT_TIME_LIMIT));

        let mut names = Vec::with_capacity(policies.len());
        let mut seen = BTreeSet::new();
        for (name, text) in policies {
            if !seen.insert(name.clone()) {
                return Err(RegoError::DuplicatePolicy { name });
            }
            engine
                .add_policy(name.clone(), text)
                .map_err(|e| policy_error(&name, e))?;
            names.push(name);
        }

        let mut merged = serde_json::Map::new();
        for (file, value) in data {
            let serde_json::Value::Object(object) = value else {
                return Err(RegoError::Data {
                    file,
                    message: format!(
                        "a data document must be a JSON object (it is merged into `data`), \
                         found {}",
                        json_kind(&value)
                    ),
                });
            };
            // Kept as JSON too, to find which points data governs.
            merge_for_governance(&mut merged, &object);
            let value =
                regorus::Value::deserialize(&serde_json::Value::Object(object)).map_err(|e| {
                    RegoError::Data {
                        file: file.clone(),
                        message: e.to_string(),
                    }
                })?;
            engine.add_data(value).map_err(|e| RegoError::Data {
                file,
                message: format!("cannot merge into `data`: {}", one_line(&e)),
            })?;
        }

        // Analyse now, so that compile errors (unsafe variables, …) are load
        // errors. The trivial query makes the engine prepare itself, and the
        // clones made per evaluation inherit the prepared state.
        engine
            .eval_query("true".to_owned(), false)
            .map_err(|e| compile_error(&names, e))?;

        let mut plans = [Plan::Ungoverned; 4];
        for point in DecisionPoint::ALL {
            if governed_by_policies(&engine, point) || governed_by_data(&merged, point) {
                // The direct path works only where `allow` is a rule; a trial
                // evaluation tells, and anything else takes the general path.
                let mut trial = engine.clone();
                plans[point.index()] = match trial.eval_rule(point.rule().to_owned()) {
                    Ok(_) => Plan::Rule,
                    Err(_) => Plan::Query,
                };
            }
        }

        Ok(RegoEngine {
            prepared: engine,
            plans,
            describe: describe(&names),
        })
    }

    fn evaluate_now(
        &self,
        point: DecisionPoint,
        input: &serde_json::Value,
    ) -> Result<Outcome, EngineError> {
        let plan = self.plans[point.index()];
        if plan == Plan::Ungoverned {
            return Ok(Outcome::Undefined);
        }
        let input = regorus::Value::deserialize(input).map_err(|e| {
            EngineError::evaluation(format!(
                "the input is not a JSON document Rego accepts: {e}"
            ))
        })?;
        let mut engine = self.prepared.clone();
        engine.set_input(input);
        let failed = |e: anyhow::Error| {
            EngineError::evaluation(format!(
                "cannot evaluate {}: {}",
                point.rule(),
                one_line(&e)
            ))
            .with_source(e)
        };
        let value = match plan {
            Plan::Rule => engine.eval_rule(point.rule().to_owned()).map_err(failed)?,
            _ => {
                let results = engine
                    .eval_query(point.rule().to_owned(), false)
                    .map_err(failed)?;
                results
                    .result
                    .into_iter()
                    .next()
                    .and_then(|r| r.expressions.into_iter().next())
                    .map_or(regorus::Value::Undefined, |e| e.value)
            }
        };
        Ok(match value {
            regorus::Value::Bool(true) => Outcome::Allow,
            regorus::Value::Undefined => Outcome::Undefined,
            _ => Outcome::Deny,
        })
    }
}

#[async_trait::async_trait]
impl PolicyEngine for RegoEngine {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn governs(&self, point: DecisionPoint) -> bool {
        self.plans[point.index()] != Plan::Ungoverned
    }

    async fn evaluate(
        &self,
        point: DecisionPoint,
        input: &serde_json::Value,
    ) -> Result<Outcome, EngineError> {
        // Microseconds of CPU: done inline rather than on a blocking thread,
        // whose hand-off would cost more than the evaluation.
        self.evaluate_now(point, input)
    }
}

fn timer(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        // Check the clock every few hundred steps: often enough to stop near
        // the limit, rarely enough to cost nothing measurable.
        check_interval: NonZeroU32::new(256).unwrap_or(NonZeroU32::MIN),
    }
}

/// Whether any policy defines something under `data.waxosuit.<point>`.
fn governed_by_policies(engine: &regorus::Engine, point: DecisionPoint) -> bool {
    let Ok(packages) = engine.get_policy_package_components() else {
        return false;
    };
    packages
        .iter()
        .any(|package| match package.components.as_slice() {
            [root, name, ..] => root == "waxosuit" && name == point.name(),
            // `package waxosuit` with a rule `<point>` or `<point>.…`.
            [root] if root == "waxosuit" => engine
                .has_declared_rule_rooted_at(&package.source_file, point.name())
                .unwrap_or(false),
            _ => false,
        })
}

/// Whether the data documents hold anything at `waxosuit.<point>`.
fn governed_by_data(
    data: &serde_json::Map<String, serde_json::Value>,
    point: DecisionPoint,
) -> bool {
    data.get("waxosuit")
        .and_then(serde_json::Value::as_object)
        .is_some_and(|waxosuit| waxosuit.contains_key(point.name()))
}

/// Merges `object` into `into` far enough to answer [`governed_by_data`];
/// conflicts are left to the interpreter's merge, which reports them.
fn merge_for_governance(
    into: &mut serde_json::Map<String, serde_json::Value>,
    object: &serde_json::Map<String, serde_json::Value>,
) {
    if let Some(serde_json::Value::Object(waxosuit)) = object.get("waxosuit") {
        let entry = into
            .entry("waxosuit")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(target) = entry {
            for (key, value) in waxosuit {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

fn describe(names: &[String]) -> String {
    const SHOWN: usize = 4;
    let file_name = |name: &String| {
        Path::new(name)
            .file_name()
            .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned())
    };
    let mut list: Vec<String> = names.iter().take(SHOWN).map(file_name).collect();
    if names.len() > SHOWN {
        list.push(format!("and {} more", names.len() - SHOWN));
    }
    if list.is_empty() {
        "embedded policy (data only)".to_owned()
    } else {
        format!("embedded policy ({})", list.join(", "))
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A regorus diagnostic, taken apart. They read
/// `\n--> FILE:LINE:COL\n  |\nL | source line\n  | ^\nerror: MESSAGE`.
struct Diagnostic {
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    message: String,
}

fn diagnostic(error: &anyhow::Error) -> Diagnostic {
    let text = error.to_string();
    let location = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "))
        .and_then(|at| {
            let mut parts = at.rsplitn(3, ':');
            let column = parts.next()?.trim().parse().ok()?;
            let line = parts.next()?.trim().parse().ok()?;
            Some((parts.next()?.to_owned(), line, column))
        });
    let message = text
        .rsplit_once("error: ")
        .map_or_else(|| text.trim().to_owned(), |(_, m)| m.trim().to_owned());
    match location {
        Some((file, line, column)) => Diagnostic {
            file: Some(file),
            line: Some(line),
            column: Some(column),
            message,
        },
        None => Diagnostic {
            file: None,
            line: None,
            column: None,
            message,
        },
    }
}

/// A diagnostic on one line: `file:line:col: message`.
fn one_line(error: &anyhow::Error) -> String {
    let d = diagnostic(error);
    match d.file {
        Some(file) => format!("{file}{}: {}", Position(d.line, d.column), d.message),
        None => d.message,
    }
}

fn policy_error(name: &str, error: anyhow::Error) -> RegoError {
    let d = diagnostic(&error);
    RegoError::Policy {
        file: d.file.unwrap_or_else(|| name.to_owned()),
        line: d.line,
        column: d.column,
        message: d.message,
        source: error.into(),
    }
}

/// An error from preparing the whole set: the diagnostic names the file
/// when it is about one; otherwise it is blamed on the set.
fn compile_error(names: &[String], error: anyhow::Error) -> RegoError {
    let d = diagnostic(&error);
    let file = d.file.unwrap_or_else(|| names.join(", "));
    RegoError::Policy {
        file,
        line: d.line,
        column: d.column,
        message: d.message,
        source: error.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_are_taken_apart() {
        let error = anyhow::anyhow!(
            "\n--> policies/a.rego:5:12\n  |\n5 | allow if {{\n  |            ^\nerror: expecting expression"
        );
        let d = diagnostic(&error);
        assert_eq!(d.file.as_deref(), Some("policies/a.rego"));
        assert_eq!((d.line, d.column), (Some(5), Some(12)));
        assert_eq!(d.message, "expecting expression");
        assert_eq!(
            one_line(&error),
            "policies/a.rego:5:12: expecting expression"
        );

        let plain = anyhow::anyhow!("not a valid rule path");
        assert_eq!(one_line(&plain), "not a valid rule path");
    }

    #[test]
    fn descriptions_list_file_names() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(describe(&names(&[])), "embedded policy (data only)");
        assert_eq!(
            describe(&names(&["/etc/waxosuit/authz.rego", "tenants.rego"])),
            "embedded policy (authz.rego, tenants.rego)"
        );
        assert_eq!(
            describe(&names(&["a", "b", "c", "d", "e", "f"])),
            "embedded policy (a, b, c, d, and 2 more)"
        );
    }
}
