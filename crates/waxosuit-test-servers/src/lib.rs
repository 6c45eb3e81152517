//! Real servers for tests: `redis-server` and `nats-server` started on a
//! free loopback port, in a private temporary directory, and stopped when
//! the handle drops.
//!
//! Tests that need a backend start the real one rather than a mock. The
//! binaries come from Debian (`apt-get install redis-server nats-server`,
//! done by `.ci/run`); when one is missing, [`RedisServer::start`] and
//! [`NatsServer::start`] fail with a message saying how to install it.
//!
//! Both handles can [`stop`](RedisServer::stop) and
//! [`restart`](RedisServer::restart) the server **on the same port**, which is
//! what reconnect tests need.
//!
//! ```no_run
//! let redis = waxosuit_test_servers::RedisServer::start().unwrap();
//! let url = redis.url(); // redis://127.0.0.1:PORT/
//! # let _ = url;
//! ```

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

fn wait_ready(addr: SocketAddr, child: &mut Child, what: &str) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "{what} exited before accepting connections ({status})"
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{what} did not accept connections on {addr} within {READY_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
        let mut server = RedisServer {
            port: free_port()?,
            dir: tempfile::tempdir()?,
            child: None,
        };
        server.restart()?;
        Ok(server)
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
        let mut child = spawn(
            "redis-server",
            &args,
            self.dir.path(),
            "apt-get install redis-server",
        )?;
        wait_ready(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            &mut child,
            "redis-server",
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
        let mut server = NatsServer {
            port: free_port()?,
            dir: tempfile::tempdir()?,
            extra: extra.iter().map(|s| (*s).to_string()).collect(),
            child: None,
        };
        server.restart()?;
        Ok(server)
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
        let mut args = vec![
            "--addr".to_string(),
            "127.0.0.1".to_string(),
            "--port".to_string(),
            self.port.to_string(),
            "--store_dir".to_string(),
            self.dir.path().join("jetstream").display().to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        let mut child = spawn(
            "nats-server",
            &args,
            self.dir.path(),
            "apt-get install nats-server",
        )?;
        wait_ready(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            &mut child,
            "nats-server",
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
