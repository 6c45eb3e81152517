//! The decision log: one JSON line per evaluated decision, with the field
//! names of OPA's decision logs, so the tools that read those read these.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use crate::DecisionPoint;

/// Where decisions are written: standard output or a file, one JSON object
/// per line, flushed after each line.
///
/// A line looks like (wrapped here):
///
/// ```json
/// {"decision_id":"4c3a…","path":"waxosuit/invoke/allow",
///  "input":{"actor":{…},"capability":"wascc:keyvalue",…},
///  "result":false,"timestamp":"2026-01-02T03:04:05.123456789Z"}
/// ```
///
/// `result` is absent when the document was undefined; a decision that
/// failed has no `result` and an `error` with the reason. Cached decisions
/// are not logged (they are counted in the metrics).
///
/// Writing is best effort: a log that cannot be written (disk full, a closed
/// pipe) is reported once through `tracing` and does not change decisions.
///
/// Clones write to the same destination.
#[derive(Clone)]
pub struct DecisionLog {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    out: Mutex<Box<dyn Write + Send>>,
    /// Whether a write failure has been reported, so a broken log does not
    /// produce a warning per decision.
    warned: AtomicBool,
}

impl fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DecisionLog")
            .field(&self.inner.name)
            .finish()
    }
}

impl DecisionLog {
    /// `-` is standard output; anything else is a file path, see
    /// [`DecisionLog::file`].
    pub fn open(target: &str) -> io::Result<DecisionLog> {
        if target == "-" {
            Ok(DecisionLog::stdout())
        } else {
            DecisionLog::file(Path::new(target))
        }
    }

    /// Standard output.
    pub fn stdout() -> DecisionLog {
        DecisionLog::to_writer("standard output", io::stdout())
    }

    /// The file at `path`, created if missing and appended to. On Unix a new
    /// file is created with mode 0600: decisions include their input, which
    /// names actors, tokens and hosts.
    pub fn file(path: &Path) -> io::Result<DecisionLog> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        Ok(DecisionLog::to_writer(path.display().to_string(), file))
    }

    /// Any writer, e.g. a buffer in tests or a pipe to a log shipper. `name`
    /// is what messages about the log call it.
    pub fn to_writer(name: impl Into<String>, writer: impl Write + Send + 'static) -> DecisionLog {
        DecisionLog {
            inner: Arc::new(Inner {
                name: name.into(),
                out: Mutex::new(Box::new(writer)),
                warned: AtomicBool::new(false),
            }),
        }
    }

    /// What the log writes to: "standard output" or the file's path.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Writes one decision.
    pub(crate) fn record(
        &self,
        point: DecisionPoint,
        input: &serde_json::Value,
        result: Option<bool>,
        error: Option<String>,
    ) {
        let line = Line {
            decision_id: uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string(),
            path: point.data_path(),
            input,
            result,
            error,
            timestamp: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        };
        let written = serde_json::to_vec(&line)
            .map_err(io::Error::other)
            .and_then(|mut bytes| {
                bytes.push(b'\n');
                let mut out = self.inner.out.lock();
                out.write_all(&bytes)?;
                out.flush()
            });
        if let Err(err) = written
            && !self.inner.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                log = %self.inner.name,
                error = %err,
                "cannot write the policy decision log; decisions go on, unlogged \
                 (reported once)"
            );
        }
    }
}

/// One line, in OPA's decision log field names.
#[derive(Serialize)]
struct Line<'a> {
    decision_id: String,
    path: &'static str,
    input: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    timestamp: String,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(buffer: &Shared) -> Vec<Value> {
        String::from_utf8(buffer.0.lock().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn one_line_per_decision_with_opa_field_names() {
        let buffer = Shared::default();
        let log = DecisionLog::to_writer("test", buffer.clone());
        let input = json!({ "operation": "Set" });
        log.record(DecisionPoint::Invoke, &input, Some(false), None);
        log.record(DecisionPoint::Start, &input, None, None);
        log.record(
            DecisionPoint::Command,
            &input,
            None,
            Some("no answer".into()),
        );

        let lines = lines(&buffer);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["path"], "waxosuit/invoke/allow");
        assert_eq!(lines[0]["input"], input);
        assert_eq!(lines[0]["result"], false);
        assert!(lines[0].get("error").is_none());
        assert!(lines[1].get("result").is_none(), "undefined has no result");
        assert_eq!(lines[2]["error"], "no answer");

        let id = lines[0]["decision_id"].as_str().unwrap();
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(lines[0]["decision_id"], lines[1]["decision_id"]);

        let timestamp = lines[0]["timestamp"].as_str().unwrap();
        assert!(timestamp.ends_with('Z'), "{timestamp}");
        humantime::parse_rfc3339(timestamp).unwrap();
    }

    #[test]
    fn files_are_appended_to_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = DecisionLog::open(path.to_str().unwrap()).unwrap();
        assert_eq!(log.name(), path.display().to_string());
        log.record(DecisionPoint::Start, &json!({}), Some(true), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("earlier\n{"), "{text}");

        let new = dir.path().join("new.log");
        DecisionLog::file(&new).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&new).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let missing_dir = dir.path().join("no/such/dir.log");
        assert!(DecisionLog::open(missing_dir.to_str().unwrap()).is_err());
        assert_eq!(DecisionLog::open("-").unwrap().name(), "standard output");
    }

    #[test]
    fn a_failing_writer_does_not_panic() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = DecisionLog::to_writer("broken", Broken);
        log.record(DecisionPoint::Start, &json!({}), Some(true), None);
        log.record(DecisionPoint::Start, &json!({}), Some(true), None);
        assert!(log.inner.warned.load(Ordering::Relaxed));
    }
}
