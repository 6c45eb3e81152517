//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF
//! Distribution registry) on a free loopback port, plain HTTP, storing in a
//! temporary directory; optionally with htpasswd basic authentication.

use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;

use crate::{kill, read_contains, spawn, start_on_free_port, started};

/// The user [`RegistryServer::start_with_basic_auth`] accepts.
pub const REGISTRY_USER: &str = "waxosuit";
/// That user's password.
pub const REGISTRY_PASSWORD: &str = "registry-test-password";
/// `htpasswd -Bbn -C 5 waxosuit registry-test-password`: the registry
/// accepts bcrypt entries only; cost 5 keeps each check fast.
const HTPASSWD: &str = "waxosuit:$2y$05$b8pfEtysBAgxgPcJMCOIJuKqMirmFk8cbfBNubFgatA220V9Wi6jW\n";

/// A `docker-registry` on 127.0.0.1. Its storage outlives
/// [`stop`](RegistryServer::stop), so a [`restart`](RegistryServer::restart)
/// serves what was pushed before.
pub struct RegistryServer {
    port: u16,
    dir: tempfile::TempDir,
    basic_auth: bool,
    child: Option<Child>,
}

impl RegistryServer {
    /// Starts an anonymous registry and waits until it answers.
    pub fn start() -> io::Result<RegistryServer> {
        Self::start_with(false)
    }

    /// Starts a registry that wants [`REGISTRY_USER`] and
    /// [`REGISTRY_PASSWORD`] (HTTP basic authentication) for everything.
    pub fn start_with_basic_auth() -> io::Result<RegistryServer> {
        Self::start_with(true)
    }

    fn start_with(basic_auth: bool) -> io::Result<RegistryServer> {
        start_on_free_port(|port| {
            let mut server = RegistryServer {
                port,
                dir: tempfile::tempdir()?,
                basic_auth,
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

    /// `127.0.0.1:PORT`, as references and `--insecure-registry` name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps its content.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Kills the registry (its storage stays).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts the registry again on the same port and storage.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let marker = format!("waxosuit-test-{}-{}", std::process::id(), self.port);
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {marker}\n  headers:\n    X-Waxosuit-Test: [{marker}]\n",
            storage = self.storage().display(),
            port = self.port,
        );
        if self.basic_auth {
            let htpasswd = self.dir.path().join("htpasswd");
            std::fs::write(&htpasswd, HTPASSWD)?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: waxosuit-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = self.dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let child = spawn(
            "docker-registry",
            &["serve".to_string(), config_path.display().to_string()],
            self.dir.path(),
            "apt-get install docker-registry",
        )?;
        // Our own header tells our registry from one another test started
        // on the same port.
        let child = started(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            child,
            "docker-registry",
            &|stream: &mut TcpStream| {
                let request = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                stream.write_all(request.as_bytes()).is_ok() && read_contains(stream, &marker)
            },
        )?;
        self.child = Some(child);
        Ok(())
    }
}

/// Raw HTTP to the registry, for content no client of ours would push
/// (tampered layers, foreign artifact types). Anonymous registries only.
impl RegistryServer {
    /// Uploads `bytes` as a blob of `repository` in one request and
    /// returns its digest (`sha256:…`).
    pub fn put_blob(&self, repository: &str, bytes: &[u8]) -> io::Result<String> {
        let digest = sha256(bytes);
        let (status, head, _) = self.request(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            None,
            &[],
        )?;
        let location = header(&head, "location")
            .filter(|_| status == 202)
            .ok_or_else(|| io::Error::other(format!("blob upload answered {status}")))?;
        // The location may be absolute; only its path and query are ours.
        let path = match location.find("/v2/") {
            Some(at) => &location[at..],
            None => location.as_str(),
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, _, _) = self.request(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            Some("application/octet-stream"),
            bytes,
        )?;
        if status != 201 {
            return Err(io::Error::other(format!("blob upload answered {status}")));
        }
        Ok(digest)
    }

    /// Stores `manifest` (with `media_type`) as `repository:tag` and
    /// returns its digest.
    pub fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> io::Result<String> {
        let path = format!("/v2/{repository}/manifests/{tag}");
        let (status, _, body) = self.request("PUT", &path, Some(media_type), manifest)?;
        if status != 201 {
            return Err(io::Error::other(format!(
                "manifest upload answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(sha256(manifest))
    }

    /// `GET path` (with an `Accept` of `accept`): status and body.
    pub fn get(&self, path: &str, accept: &str) -> io::Result<(u16, Vec<u8>)> {
        let (status, _, body) = self.request("GET", path, Some(accept), &[])?;
        Ok((status, body))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<(u16, String, Vec<u8>)> {
        use std::io::Read as _;
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host(),
            body.len()
        );
        if let Some(content_type) = content_type {
            let name = if method == "GET" {
                "Accept"
            } else {
                "Content-Type"
            };
            head.push_str(&format!("{name}: {content_type}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("no HTTP status from the registry"))?;
        let (head, body) = match response.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => (
                String::from_utf8_lossy(&response[..at]).into_owned(),
                response[at + 4..].to_vec(),
            ),
            None => (text.into_owned(), Vec::new()),
        };
        Ok((status, head, body))
    }
}

/// A header's value from a response head, by case-insensitive name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}
