//! Real servers for tests: `redis-server`, `nats-server` and `docker-registry` started on a
//! free loopback port, in a private temporary directory, and stopped when
//! the handle drops.
//!
//! Tests that need a backend start the real one rather than a mock. The
//! binaries come from Debian (`apt-get install redis-server nats-server`,
//! done by `.ci/run`); when one is missing, [`RedisServer::start`] and
//! [`NatsServer::start`] fail with a message saying how to install it.
//!
//! [`RegistryServer`] is Debian's `docker-registry` (the CNCF Distribution
//! registry) the same way, plain HTTP, optionally with basic authentication.
//!
//! [`OtlpReceiver`] is the other end of trace export: an OTLP/HTTP (or,
//! with tonic, OTLP/gRPC) receiver in the test process that decodes and
//! keeps every span it is sent, in the clear or over TLS with the
//! certificates of a [`TestPki`]; [`collect_spans`] records the spans a
//! test makes on its own thread.
//!
//! Both server handles can [`stop`](RedisServer::stop) and
//! [`restart`](RedisServer::restart) the server **on the same port**, which is
//! what reconnect tests need.
//!
//! ```no_run
//! let redis = waxosuit_test_servers::RedisServer::start().unwrap();
//! let url = redis.url(); // redis://127.0.0.1:PORT/
//! # let _ = url;
//! ```

mod otlp;
mod pki;
mod registry;
mod spans;

pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use pki::TestPki;
pub use registry::{REGISTRY_PASSWORD, REGISTRY_USER, RegistryServer};
pub use spans::{CollectedSpans, collect_spans, span_attribute, span_recorder};

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it next).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `is_ours` confirms that the server listening on `addr` is
/// `child` (another test may have grabbed the port between [`free_port`]
/// releasing it and the server binding it).
fn wait_ready(
    addr: SocketAddr,
    child: &mut Child,
    what: &str,
    is_ours: &dyn Fn(&mut TcpStream) -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            if is_ours(&mut stream) {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "{what} exited before accepting connections ({status})"
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{what} did not answer as itself on {addr} within {READY_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_ready`], handing back `child` once it answers as itself, or
/// killing and reaping it.
fn started(
    addr: SocketAddr,
    mut child: Child,
    what: &str,
    is_ours: &dyn Fn(&mut TcpStream) -> bool,
) -> io::Result<Child> {
    match wait_ready(addr, &mut child, what, is_ours) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Reads from `stream` until `needle` shows up (true) or the peer stops (false).
fn read_contains(stream: &mut TcpStream, needle: &str) -> bool {
    use std::io::Read;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&seen).contains(needle) {
            return true;
        }
    }
    false
}

/// Starts a server on fresh ports until one binds (another test may race us
/// for a port), trying a few times.
fn start_on_free_port<T>(mut attempt: impl FnMut(u16) -> io::Result<T>) -> io::Result<T> {
    let mut last = None;
    for _ in 0..5 {
        match attempt(free_port()?) {
            Ok(server) => return Ok(server),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no attempt made")))
}

fn spawn(program: &str, args: &[String], dir: &Path, hint: &str) -> io::Result<Child> {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start `{program}` ({e}); install it with `{hint}`"),
            )
        })
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A `redis-server` on 127.0.0.1, without persistence.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> io::Result<RedisServer> {
        start_on_free_port(|port| {
            let mut server = RedisServer {
                port,
                dir: tempfile::tempdir()?,
                child: None,
            };
            server.restart()?;
            Ok(server)
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (connections drop at once, as in a crash).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts the server again on the same port (stopping it first if running).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let args = [
            "--port".to_string(),
            self.port.to_string(),
            "--bind".to_string(),
            "127.0.0.1".to_string(),
            "--save".to_string(),
            String::new(),
            "--appendonly".to_string(),
            "no".to_string(),
            "--daemonize".to_string(),
            "no".to_string(),
        ];
        let child = spawn(
            "redis-server",
            &args,
            self.dir.path(),
            "apt-get install redis-server",
        )?;
        let pid = format!("process_id:{}", child.id());
        let child = started(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            child,
            "redis-server",
            &|stream| {
                use std::io::Write;
                stream.write_all(b"INFO server\r\n").is_ok() && read_contains(stream, &pid)
            },
        )?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `nats-server` on 127.0.0.1.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
    /// Its HTTP monitoring port, when started with one.
    monitor: Option<u16>,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> io::Result<NatsServer> {
        Self::start_with_args(&[])
    }

    /// Like [`NatsServer::start`], with extra `nats-server` arguments
    /// (e.g. `["--max_payload", "1048576"]`, or `["-js"]` for JetStream;
    /// JetStream's store goes to this server's temporary directory).
    pub fn start_with_args(extra: &[&str]) -> io::Result<NatsServer> {
        start_on_free_port(|port| {
            let mut server = NatsServer {
                port,
                dir: tempfile::tempdir()?,
                extra: extra.iter().map(|s| (*s).to_string()).collect(),
                child: None,
                monitor: None,
            };
            server.restart()?;
            Ok(server)
        })
    }

    /// Like [`NatsServer::start`], with its HTTP monitoring endpoint on
    /// another free port, for [`NatsServer::messages_sent`].
    pub fn start_monitored() -> io::Result<NatsServer> {
        start_on_free_port(|monitor| {
            let monitor_arg = monitor.to_string();
            let mut server = Self::start_with_args(&["--http_port", &monitor_arg])?;
            server.monitor = Some(monitor);
            Ok(server)
        })
    }

    /// Messages the server has sent to its clients so far (`out_msgs` of
    /// its `/varz`): a test waits on it to know that what it published
    /// has reached the subscribers' connections. Needs
    /// [`NatsServer::start_monitored`].
    pub fn messages_sent(&self) -> io::Result<u64> {
        use std::io::{Read, Write};
        let monitor = self.monitor.ok_or_else(|| {
            io::Error::other("this nats-server has no monitoring port: use start_monitored")
        })?;
        let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, monitor))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        let value = body
            .split("\"out_msgs\":")
            .nth(1)
            .map(|rest| {
                rest.trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|digits| digits.parse().ok());
        value.ok_or_else(|| io::Error::other(format!("no out_msgs in /varz: {body:.200}")))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts the server again on the same port (stopping it first if running).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        // A unique name lets readiness tell our server from one that another
        // test started on the same port.
        let name = format!("waxosuit-test-{}-{}", std::process::id(), self.port);
        let mut args = vec![
            "--name".to_string(),
            name.clone(),
            "--addr".to_string(),
            "127.0.0.1".to_string(),
            "--port".to_string(),
            self.port.to_string(),
            "--store_dir".to_string(),
            self.dir.path().join("jetstream").display().to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        let child = spawn(
            "nats-server",
            &args,
            self.dir.path(),
            "apt-get install nats-server",
        )?;
        let needle = format!("\"server_name\":\"{name}\"");
        let child = started(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            child,
            "nats-server",
            &|stream| read_contains(stream, &needle),
        )?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn roundtrip(port: u16, send: &[u8]) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(send).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn redis_starts_stops_and_restarts_on_the_same_port() {
        let mut redis = RedisServer::start().unwrap();
        assert_eq!(roundtrip(redis.port(), b"PING\r\n"), "+PONG\r\n");
        redis.stop();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, redis.port())).is_err());
        redis.restart().unwrap();
        assert_eq!(roundtrip(redis.port(), b"PING\r\n"), "+PONG\r\n");
    }

    #[test]
    fn nats_starts_and_greets() {
        let nats = NatsServer::start().unwrap();
        assert!(roundtrip(nats.port(), b"").starts_with("INFO "));
        assert!(nats.url().starts_with("nats://127.0.0.1:"));
    }
}
