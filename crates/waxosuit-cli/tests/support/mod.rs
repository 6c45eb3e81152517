//! Shared by the end-to-end tests: signed actors in a temporary directory,
//! `waxosuit up` as a child process, a minimal HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, embed_claims};

/// A temporary directory with its own account: [`Dir::actor`] signs with
/// it, and [`Up::start_with`] starts hosts that trust exactly it.
pub(crate) struct Dir(pub tempfile::TempDir, pub KeyPair);

impl Dir {
    pub(crate) fn new() -> Dir {
        Dir(
            tempfile::tempdir().unwrap(),
            KeyPair::generate(KeyKind::Account),
        )
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// The account that signs this directory's actors.
    pub(crate) fn account(&self) -> &KeyPair {
        &self.1
    }

    /// The arguments that make `up` or `call` trust this directory's account.
    pub(crate) fn trust_args(&self) -> Vec<String> {
        vec!["--trusted-issuer".to_string(), self.1.public_key()]
    }

    /// A keys directory of this test's own (empty until something signs
    /// with it), so no test trusts the keystore of whoever runs it.
    pub(crate) fn keys(&self) -> PathBuf {
        self.path("keys")
    }

    /// Signs `module` as `name` with these capabilities into `name.wasm`.
    pub(crate) fn actor(&self, module: &[u8], name: &str, caps: &[&str]) -> String {
        let subject = KeyPair::generate(KeyKind::Module);
        let claims = Claims::<Actor>::builder()
            .issuer(self.1.public_key())
            .subject(subject.public_key())
            .metadata(Actor {
                caps: Some(caps.iter().map(|c| c.to_string()).collect()),
                ..Actor::named(name)
            })
            .build();
        let signed = embed_claims(module, &claims, &self.1).unwrap();
        std::fs::write(self.path(&format!("{name}.wasm")), signed).unwrap();
        subject.public_key()
    }

    /// Writes a manifest under another name (several hosts, one directory).
    pub(crate) fn manifest_named(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub(crate) fn manifest(&self, text: &str) -> PathBuf {
        let p = self.path("host.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

pub(crate) struct Up {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// `None` once [`Up::terminate`] has joined it.
    stderr: Option<std::thread::JoinHandle<String>>,
    /// What the host has written to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    /// Actor name → HTTP address, from the startup summary.
    pub listening: Vec<(String, SocketAddr)>,
    /// Every stdout line up to `Ready.`.
    pub summary: Vec<String>,
}

impl Up {
    pub(crate) fn start(dir: &Dir, manifest: &PathBuf) -> Result<Up, String> {
        Up::start_with(dir, manifest, &[], &[])
    }

    /// Like [`Up::start`], with more arguments and environment variables.
    /// The host trusts the directory's account (`--trusted-issuer`), and
    /// its keys directory is the directory's own.
    pub(crate) fn start_with(
        dir: &Dir,
        manifest: &PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Up, String> {
        let mut all: Vec<String> = dir.trust_args();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Up::start_trusting(dir, manifest, &all, env)
    }

    /// Like [`Up::start_with`], but trusting only what `args` and `env` say
    /// (and the directory's keys directory, unless `env` names another).
    pub(crate) fn start_trusting(
        dir: &Dir,
        manifest: &PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Up, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .arg("up")
            .arg(manifest)
            .args(args)
            .env("WAXOSUIT_KEYS", dir.keys())
            // Whatever the caller's shell says, trust is what the test says.
            .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
            .envs(env.iter().copied())
            // Generous: CI runs these tests in parallel on two cores, and a drain
            // cut short by load would look like a host bug.
            .args(["--no-cache", "--drain-timeout", "180"])
            .env("RUST_LOG", "warn,waxosuit=info")
            .current_dir(dir.0.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&log);
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            sink.lock().unwrap().clone()
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listening = Vec::new();
        let mut summary = Vec::new();
        loop {
            match lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if line.starts_with("Ready.") => break,
                Ok(line) => {
                    summary.push(line.clone());
                    if let Some((before, url)) = line.split_once("listening on http://") {
                        let name = before
                            .trim()
                            .strip_prefix("binding")
                            .unwrap()
                            .split_whitespace()
                            .next()
                            .unwrap()
                            .to_string();
                        listening.push((name, url.trim().parse().unwrap()));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    let err = stderr.join().unwrap();
                    return Err(format!("`waxosuit up` did not start ({status}):\n{err}"));
                }
            }
        }
        Ok(Up {
            child,
            lines,
            stderr: Some(stderr),
            log,
            listening,
            summary,
        })
    }

    pub(crate) fn addr(&self, actor: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|(n, _)| n == actor)
            .unwrap_or_else(|| panic!("{actor} is not listening: {:?}", self.listening))
            .1
    }

    /// Waits until the host's stderr holds `needle` at least `count` times.
    pub(crate) fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.log.lock().unwrap().matches(needle).count() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} did not appear {count} times in the host's log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits; returns (exit success, stdout rest, stderr).
    pub(crate) fn terminate(mut self) -> (bool, String, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.try_iter().collect();
        (
            status.success(),
            rest.join("\n"),
            self.stderr.take().unwrap().join().unwrap(),
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // A test that failed before `terminate` must not leave its host
        // running (possibly still spinning in an actor) after the test run.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET: (status, body). Panics if the request fails.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("GET {path} from {addr} failed or timed out"))
}

/// A minimal HTTP/1.1 GET that waits at most `timeout` for the answer:
/// `None` when the connection or the request failed.
pub(crate) fn try_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}
