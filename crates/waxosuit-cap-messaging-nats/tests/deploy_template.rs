//! `deploy/nats/nats-server.conf` against the real `nats-server`: the
//! LATTICE account's users stay under the lattice prefix, the ACTORS
//! account's users (the messaging provider) cannot touch it, and the
//! template refuses to start without its secrets.

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use waxosuit_cap_messaging_nats::NatsMessaging;
use waxosuit_codec::messaging::{BrokerMessage, CAPABILITY_ID, OP_PUBLISH_MESSAGE};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError, encode};

/// Upper bound for anything that should happen "soon".
const WAIT: Duration = Duration::from_secs(10);

const HOST_USER: &str = "waxosuit-host";
const ADMIN_USER: &str = "waxosuit-admin";
const ACTORS_USER: &str = "waxosuit-actors";
const SECRETS: [&str; 3] = [
    "WAXOSUIT_NATS_HOST_PASSWORD",
    "WAXOSUIT_NATS_ADMIN_PASSWORD",
    "WAXOSUIT_NATS_ACTORS_PASSWORD",
];

fn template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats/nats-server.conf")
}

/// Passwords for one run, as the README says to make them: a letter first,
/// then something unguessable enough for a test.
#[derive(Clone)]
struct Passwords {
    host: String,
    admin: String,
    actors: String,
}

impl Passwords {
    fn fresh() -> Passwords {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let pid = std::process::id();
        Passwords {
            host: format!("h{pid:x}{nanos:x}"),
            admin: format!("a{pid:x}{nanos:x}"),
            actors: format!("c{pid:x}{nanos:x}"),
        }
    }

    fn env(&self) -> [(&'static str, &str); 3] {
        [
            (SECRETS[0], self.host.as_str()),
            (SECRETS[1], self.admin.as_str()),
            (SECRETS[2], self.actors.as_str()),
        ]
    }
}

/// `nats-server -c CONFIG` on a free loopback port, with the secrets in its
/// environment only (this process cannot set its own environment safely).
struct TemplateServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TemplateServer {
    fn start(config: &Path, passwords: &Passwords) -> TemplateServer {
        let mut last = String::new();
        // Another test may take the free port before the server binds it.
        for _ in 0..5 {
            let port = waxosuit_test_servers::free_port().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let name = format!("waxosuit-template-{}-{port}", std::process::id());
            let log = dir.path().join("nats.log");
            let mut child = Command::new("nats-server")
                .arg("-c")
                .arg(config)
                .args(["--addr", "127.0.0.1", "--port", &port.to_string()])
                .args(["--name", &name])
                .arg("--log")
                .arg(&log)
                .envs(passwords.env())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start nats-server; install it with `apt-get install nats-server`");
            match wait_ready(port, &name, &mut child) {
                Ok(()) => {
                    return TemplateServer {
                        port,
                        child,
                        _dir: dir,
                    };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!(
                        "{e}; log: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        panic!(
            "nats-server with {} did not start: {last}",
            config.display()
        );
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for TemplateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server on `port` greets with our `name` (not another
/// test's server that won the port).
fn wait_ready(port: u16, name: &str, child: &mut Child) -> Result<(), String> {
    let needle = format!("\"server_name\":\"{name}\"");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut greeting = [0u8; 4096];
            if let Ok(n) = stream.read(&mut greeting)
                && String::from_utf8_lossy(&greeting[..n]).contains(&needle)
            {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("nats-server exited ({status})"));
        }
        if Instant::now() > deadline {
            return Err(format!("no greeting from {name} on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client of the templated server, with the server's `-ERR`s (permission
/// violations) collected.
struct User {
    client: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
}

async fn connect(
    server: &TemplateServer,
    user: &str,
    password: &str,
    inbox: Option<&str>,
) -> Result<User, async_nats::ConnectError> {
    let (tx, errors) = mpsc::unbounded_channel();
    let mut options =
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            });
    if let Some(prefix) = inbox {
        options = options.custom_inbox_prefix(prefix);
    }
    let client = options.connect(server.url()).await?;
    Ok(User { client, errors })
}

impl User {
    /// Waits for the server to refuse something with an error containing
    /// `needle` (it answers a refused PUB or SUB with `-ERR`, and the
    /// operation itself returns Ok on the client side).
    async fn refused(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.errors.recv()).await {
                Ok(Some(e)) if e.contains(needle) => return,
                Ok(Some(_)) => {}
                _ => panic!("the server did not refuse: no error containing {needle:?}"),
            }
        }
    }

    /// Returns once the server has processed everything this client sent,
    /// by echoing a message off it; then no refusal may be pending.
    async fn settle_without_refusal(&mut self) {
        let inbox = self.client.new_inbox();
        self.settle_via(inbox).await;
    }

    /// [`User::settle_without_refusal`] through `subject`, which this user
    /// may publish and subscribe to.
    async fn settle_via(&mut self, subject: String) {
        let mut echo = self.client.subscribe(subject.clone()).await.unwrap();
        self.client.publish(subject, "".into()).await.unwrap();
        tokio::time::timeout(WAIT, echo.next())
            .await
            .expect("no echo from the server")
            .unwrap();
        if let Ok(e) = self.errors.try_recv() {
            panic!("unexpected refusal: {e}");
        }
    }
}

/// The next message, skipping those to inboxes (`_INBOX.…`, or
/// `{prefix}._INBOX.…` with the lattice's inbox prefix): a wide subscriber
/// also sees every echo `settle_without_refusal` makes.
async fn next(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    loop {
        let message = tokio::time::timeout(WAIT, subscriber.next())
            .await
            .expect("nothing arrived within the bounded wait")
            .unwrap();
        let subject = message.subject.as_str();
        if !subject.starts_with("_INBOX.") && !subject.contains("._INBOX.") {
            return message;
        }
    }
}

/// Subjects seen (inboxes skipped) until `probe`, which is not included.
async fn until(subscriber: &mut async_nats::Subscriber, probe: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let message = next(subscriber).await;
        if message.subject.as_str() == probe {
            return seen;
        }
        seen.push(message.subject.to_string());
    }
}

#[test]
fn the_template_does_not_start_without_its_secrets() {
    let check = |env: &[(&str, &str)]| {
        let mut command = Command::new("nats-server");
        command.arg("-c").arg(template()).arg("-t");
        for secret in SECRETS {
            command.env_remove(secret);
        }
        command.envs(env.iter().copied());
        command.output().expect("cannot run nats-server")
    };
    let passwords = Passwords::fresh();
    let ok = check(&passwords.env());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let missing = check(&passwords.env()[..2]);
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("WAXOSUIT_NATS_ACTORS_PASSWORD"), "{said}");

    // The README's warning: an all-digit value is a number to nats-server.
    let numeric = check(&[
        (SECRETS[0], "12345"),
        (SECRETS[1], "a1"),
        (SECRETS[2], "c1"),
    ]);
    assert!(!numeric.status.success());
}

#[tokio::test]
async fn lattice_users_stay_under_the_prefix_and_actors_stay_out() {
    let pw = Passwords::fresh();
    let server = TemplateServer::start(&template(), &pw);
    let inbox = Some("waxosuit._INBOX");

    // Hosts: publish, subscribe and request/reply under the prefix, with
    // the lattice's inbox prefix.
    let mut host_a = connect(&server, HOST_USER, &pw.host, inbox).await.unwrap();
    let mut host_b = connect(&server, HOST_USER, &pw.host, inbox).await.unwrap();
    let mut planes = host_a.client.subscribe("waxosuit.>").await.unwrap();
    let mut calls = host_a
        .client
        .queue_subscribe("waxosuit.actor.MECHO", "waxosuit.actor.MECHO".into())
        .await
        .unwrap();
    host_a.settle_without_refusal().await;
    let responder = host_a.client.clone();
    let serve = tokio::spawn(async move {
        while let Some(call) = calls.next().await {
            if let Some(reply) = call.reply {
                responder.publish(reply, call.payload).await.unwrap();
            }
        }
    });
    host_b
        .client
        .publish("waxosuit.control.NHOST", "stop".into())
        .await
        .unwrap();
    assert_eq!(
        next(&mut planes).await.subject.as_str(),
        "waxosuit.control.NHOST"
    );
    let answer = host_b
        .client
        .request("waxosuit.actor.MECHO", "ping".into())
        .await
        .unwrap();
    assert_eq!(answer.payload.as_ref(), b"ping");
    host_b.settle_without_refusal().await;
    // ...and nothing outside it.
    host_b.client.publish("jobs.x", "".into()).await.unwrap();
    host_b
        .refused("Permissions Violation for Publish to \"jobs.x\"")
        .await;
    // Why the lattice needs its own inbox prefix: NATS's default `_INBOX.`
    // is outside the prefix.
    let mut plain_inbox = connect(&server, HOST_USER, &pw.host, None).await.unwrap();
    let _ = plain_inbox
        .client
        .send_request(
            "waxosuit.actor.MECHO",
            async_nats::Request::new().timeout(Some(Duration::from_millis(300))),
        )
        .await;
    plain_inbox
        .refused("Permissions Violation for Subscription to \"_INBOX.")
        .await;

    // Actors: anything but the lattice prefix.
    let mut actors = connect(&server, ACTORS_USER, &pw.actors, None)
        .await
        .unwrap();
    let mut peer = connect(&server, ACTORS_USER, &pw.actors, None)
        .await
        .unwrap();
    let mut jobs = peer.client.subscribe("jobs.>").await.unwrap();
    let mut everything = peer.client.subscribe(">").await.unwrap();
    peer.settle_without_refusal().await;
    actors
        .client
        .publish("waxosuit.control.NFROMACTORS", "stop".into())
        .await
        .unwrap();
    actors
        .refused("Permissions Violation for Publish to \"waxosuit.control.NFROMACTORS\"")
        .await;
    actors.client.subscribe("waxosuit.>").await.unwrap();
    actors
        .refused("Permissions Violation for Subscription to \"waxosuit.>\"")
        .await;
    actors
        .client
        .publish("$SYS.REQ.SERVER.PING", "".into())
        .await
        .unwrap();
    actors
        .refused("Permissions Violation for Publish to \"$SYS.REQ.SERVER.PING\"")
        .await;
    actors
        .client
        .publish("jobs.x", "work".into())
        .await
        .unwrap();
    assert_eq!(next(&mut jobs).await.subject.as_str(), "jobs.x");
    actors.settle_without_refusal().await;
    // The `>` subscriber in ACTORS saw jobs.x and nothing of the lattice's
    // traffic (another account).
    let first = next(&mut everything).await;
    assert_eq!(first.subject.as_str(), "jobs.x");

    // Nothing from ACTORS reached the hosts: the server had processed the
    // refused publish before `refused` returned, so had it been delivered
    // it would be queued before a probe sent now.
    host_b
        .client
        .publish("waxosuit.probe", "".into())
        .await
        .unwrap();
    let seen = until(&mut planes, "waxosuit.probe").await;
    assert!(
        !seen.iter().any(|s| s == "waxosuit.control.NFROMACTORS"),
        "{seen:?}"
    );

    // Admin tools: commands and events, but no host's planes.
    let mut admin = connect(&server, ADMIN_USER, &pw.admin, inbox)
        .await
        .unwrap();
    let mut events = admin.client.subscribe("waxosuit.events").await.unwrap();
    // The admin may not publish to its own inbox (only answer requests).
    admin.settle_via("waxosuit.chunks.settle".into()).await;
    admin
        .client
        .publish("waxosuit.control.NHOST", "stop".into())
        .await
        .unwrap();
    // The admin may not publish to its own inbox (only answer requests).
    admin.settle_via("waxosuit.chunks.settle".into()).await;
    host_b
        .client
        .publish("waxosuit.probe", "".into())
        .await
        .unwrap();
    let seen = until(&mut planes, "waxosuit.probe").await;
    assert!(
        seen.iter().any(|s| s == "waxosuit.control.NHOST"),
        "{seen:?}"
    );
    host_b
        .client
        .publish("waxosuit.events", "{}".into())
        .await
        .unwrap();
    assert_eq!(next(&mut events).await.subject.as_str(), "waxosuit.events");
    admin.client.subscribe("waxosuit.actor.>").await.unwrap();
    admin
        .refused("Permissions Violation for Subscription to \"waxosuit.actor.>\"")
        .await;
    admin
        .client
        .publish("waxosuit.bindings", "{}".into())
        .await
        .unwrap();
    admin
        .refused("Permissions Violation for Publish to \"waxosuit.bindings\"")
        .await;
    serve.abort();
}

#[tokio::test]
async fn no_credentials_or_wrong_ones_get_no_connection() {
    let pw = Passwords::fresh();
    let server = TemplateServer::start(&template(), &pw);
    let Err(anonymous) = async_nats::ConnectOptions::new()
        .connect(server.url())
        .await
    else {
        panic!("an anonymous client was let in");
    };
    assert_eq!(
        anonymous.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{anonymous}"
    );
    // A host password does not open the actors' user, nor the reverse.
    for (user, password) in [(ACTORS_USER, &pw.host), (HOST_USER, &pw.actors)] {
        let Err(err) = connect(&server, user, password, None).await else {
            panic!("{user} was let in with a wrong password");
        };
        assert_eq!(
            err.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{err}"
        );
    }
}

async fn provider_publish(
    provider: &NatsMessaging,
    actor: &str,
    subject: &str,
) -> Result<Vec<u8>, ProviderError> {
    let message = BrokerMessage {
        subject: subject.into(),
        reply_to: String::new(),
        body: b"hi".to_vec(),
    };
    provider
        .handle_call(ProviderCall {
            actor: actor.into(),
            binding: "default".into(),
            operation: OP_PUBLISH_MESSAGE.into(),
            payload: encode(CAPABILITY_ID, &message).unwrap(),
        })
        .await
}

fn bind(actor: &str, url: String) -> BindRequest {
    BindRequest {
        actor: actor.into(),
        binding: "default".into(),
        values: [("URL".to_string(), url)].into(),
    }
}

#[tokio::test]
async fn the_messaging_provider_connects_as_an_actors_user() {
    let pw = Passwords::fresh();
    let server = TemplateServer::start(&template(), &pw);
    let provider = Arc::new(NatsMessaging::new());
    let mut peer = connect(&server, ACTORS_USER, &pw.actors, None)
        .await
        .unwrap();
    let mut jobs = peer.client.subscribe("jobs.>").await.unwrap();
    peer.settle_without_refusal().await;

    provider
        .bind_actor(bind("MWORKER", server.url_as(ACTORS_USER, &pw.actors)))
        .await
        .unwrap();
    provider_publish(&provider, "MWORKER", "jobs.done")
        .await
        .unwrap();
    assert_eq!(next(&mut jobs).await.subject.as_str(), "jobs.done");
    let err = provider_publish(&provider, "MWORKER", "waxosuit.control.NHOST")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    // A wrong password fails the bind without showing it.
    let wrong = format!("{}-wrong", pw.actors);
    let err = provider
        .bind_actor(bind("MOTHER", server.url_as(ACTORS_USER, &wrong)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains(&wrong), "{text}");
    assert!(
        text.contains(&format!("nats://***@127.0.0.1:{}", server.port)),
        "{text}"
    );
}

#[tokio::test]
async fn the_template_rewritten_for_another_prefix_guards_that_prefix() {
    // What README.md tells operators to run, done in Rust.
    let text = std::fs::read_to_string(template()).unwrap();
    let staging = text.replace("\"waxosuit.", "\"staging.waxosuit.");
    assert_ne!(text, staging);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("staging.conf");
    std::fs::write(&config, staging).unwrap();
    let pw = Passwords::fresh();
    let server = TemplateServer::start(&config, &pw);

    let inbox = Some("staging.waxosuit._INBOX");
    let mut host = connect(&server, HOST_USER, &pw.host, inbox).await.unwrap();
    let mut planes = host.client.subscribe("staging.waxosuit.>").await.unwrap();
    host.settle_without_refusal().await;
    host.client
        .publish("staging.waxosuit.events", "{}".into())
        .await
        .unwrap();
    assert_eq!(
        next(&mut planes).await.subject.as_str(),
        "staging.waxosuit.events"
    );
    host.client
        .publish("waxosuit.events", "{}".into())
        .await
        .unwrap();
    host.refused("Permissions Violation for Publish to \"waxosuit.events\"")
        .await;

    let mut actors = connect(&server, ACTORS_USER, &pw.actors, None)
        .await
        .unwrap();
    actors
        .client
        .publish("staging.waxosuit.control.NHOST", "".into())
        .await
        .unwrap();
    actors
        .refused("Permissions Violation for Publish to \"staging.waxosuit.control.NHOST\"")
        .await;
}

/// Every line `tracing` writes on this thread, debug included.
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

/// An actor publishing, again and again, to a subject its NATS user may not
/// use gets a server error per publish: they are logged at most once per
/// ten seconds (before, one warning line each). When the server goes away,
/// the client's own debug lines about reconnecting never show the password
/// of the binding's URL (it went to the client inside the URL, whose
/// `Debug` prints it).
#[tokio::test]
async fn refused_publishes_and_a_lost_server_log_little_and_no_password() {
    let lines = Lines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(lines.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // This test's runtime has one thread: the client's tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let pw = Passwords::fresh();
    let mut server = TemplateServer::start(&template(), &pw);
    let provider = NatsMessaging::new();
    provider
        .bind_actor(bind("MWORKER", server.url_as(ACTORS_USER, &pw.actors)))
        .await
        .unwrap();
    for _ in 0..2000 {
        provider_publish(&provider, "MWORKER", "$SYS.REQ.SERVER.PING")
            .await
            .unwrap();
    }
    let started = Instant::now();
    while !lines.text().contains("Permissions Violation") && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = lines.text();
    let warned = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("NATS connection event"))
        .count();
    assert!(text.contains("Permissions Violation"), "{text}");
    assert_eq!(warned, 1, "{warned} warnings for 2,000 refused publishes");

    let _ = server.child.kill();
    let _ = server.child.wait();
    let started = Instant::now();
    while !lines.text().contains("connection failed") && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = lines.text();
    assert!(
        text.contains("connection failed"),
        "no reconnect tried: {text}"
    );
    assert!(
        !text.contains(&pw.actors),
        "the password was logged: {text}"
    );
}
