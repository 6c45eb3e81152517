//! Chaos under load, over a real `nats-server`: a replica killed like a
//! process (its sockets close, nothing announced), a replica cut off the
//! network (its sockets stay open, nothing gets through), a replica that
//! leaves gracefully, and the nats-server itself restarting. Callers keep
//! calling throughout, each call bounded by the lattice timeout and, in
//! case that fails, by a hang detector; the tests count what failed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use waxosuit_host::Host;
use waxosuit_lattice::{Lattice, LatticeError};

/// The callers' lattice timeout: a call to a host that went away fails
/// after this long.
const CALL_TIMEOUT: Duration = Duration::from_millis(800);

/// A call still pending after this long is hung, not failed.
const HANG: Duration = Duration::from_secs(5);

/// Between two calls of one worker, so that four workers in each of the
/// tests running side by side leave the CPU to the hosts.
const PAUSE: Duration = Duration::from_millis(2);

/// Concurrent callers in the replica tests.
const WORKERS: usize = 4;

/// One call made by a load worker.
#[derive(Debug, Clone)]
struct Call {
    started: Instant,
    ended: Instant,
    /// `Err` holds what went wrong, `HUNG` if the lattice timeout did not
    /// end the call.
    result: Result<(), String>,
}

impl Call {
    fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Workers calling the echo actor `key` from `lattice` in a loop, each one
/// call at a time, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Call>>>,
}

fn kind(e: &LatticeError) -> String {
    match e {
        LatticeError::Timeout { .. } => "timeout".into(),
        LatticeError::NoResponders { .. } => "no responders".into(),
        other => other.to_string(),
    }
}

impl Load {
    fn start(lattice: &Lattice, key: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|w| {
                let (lattice, key, stop) = (lattice.clone(), key.to_string(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut calls = Vec::new();
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let payload = format!("worker {w} call {seq}").into_bytes();
                        let started = Instant::now();
                        let result = match tokio::time::timeout(
                            HANG,
                            lattice.call_actor(&key, "echo", payload.clone()),
                        )
                        .await
                        {
                            Ok(Ok(reply)) if reply == payload => Ok(()),
                            Ok(Ok(reply)) => Err(format!(
                                "a wrong answer: {:?}",
                                String::from_utf8_lossy(&reply)
                            )),
                            Ok(Err(e)) => Err(kind(&e)),
                            Err(_) => Err("HUNG".into()),
                        };
                        calls.push(Call {
                            started,
                            ended: Instant::now(),
                            result,
                        });
                        tokio::time::sleep(PAUSE).await;
                    }
                    calls
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Stops the workers and returns each one's calls, in order.
    async fn stop(self) -> Vec<Vec<Call>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            let calls = tokio::time::timeout(HANG * 2, worker)
                .await
                .expect("a load worker stops within 10 s")
                .expect("a load worker ran to its end");
            all.push(calls);
        }
        all
    }
}

/// No call hung; none failed before `quiet_until`.
fn assert_no_hang_and_quiet_until(calls: &[Vec<Call>], quiet_until: Instant) {
    for (w, worker) in calls.iter().enumerate() {
        for call in worker {
            assert!(
                call.result.as_ref().err().is_none_or(|e| e != "HUNG"),
                "worker {w}: a call outlived its timeout"
            );
            if call.ended < quiet_until {
                assert!(
                    call.ok(),
                    "worker {w}: a call failed before the chaos began: {:?}",
                    call.result
                );
            }
        }
    }
}

/// Each worker's failures among calls that ended after `from`.
fn failures_after(calls: &[Vec<Call>], from: Instant) -> Vec<Vec<Call>> {
    calls
        .iter()
        .map(|worker| {
            worker
                .iter()
                .filter(|c| c.ended >= from && !c.ok())
                .cloned()
                .collect()
        })
        .collect()
}

fn describe(failures: &[Vec<Call>], since: Instant) -> String {
    failures
        .iter()
        .enumerate()
        .map(|(w, f)| {
            let each: Vec<String> = f
                .iter()
                .map(|c| {
                    format!(
                        "{} (started {} ms, ended {} ms after)",
                        c.result.as_ref().unwrap_err(),
                        signed_ms(c.started, since),
                        signed_ms(c.ended, since)
                    )
                })
                .collect();
            format!("worker {w}: {} [{}]", f.len(), each.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn signed_ms(t: Instant, since: Instant) -> i128 {
    if t >= since {
        (t - since).as_millis() as i128
    } else {
        -((since - t).as_millis() as i128)
    }
}

/// Successful calls that started at or after `from`.
fn successes_started_after(calls: &[Vec<Call>], from: Instant) -> u64 {
    calls
        .iter()
        .flatten()
        .filter(|c| c.started >= from && c.ok())
        .count() as u64
}

/// Calls `key` from `lattice` until both hosts have served at least one
/// call: the caller then has both in its rotation.
async fn until_both_serve(lattice: &Lattice, key: &str, b: &Host, c: &Host) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(b, "echo") == 0 || served(c, "echo") == 0 {
        assert!(
            Instant::now() < deadline,
            "the caller did not use both replicas within 10 s (B {}, C {})",
            served(b, "echo"),
            served(c, "echo")
        );
        tokio::time::timeout(HANG, lattice.call_actor(key, "echo", b"warm".to_vec()))
            .await
            .expect("a warm-up call returns")
            .expect("a warm-up call succeeds");
    }
}

/// `n` calls in a row, each of which must succeed.
async fn calls_in_a_row(lattice: &Lattice, key: &str, n: usize) {
    for i in 0..n {
        let payload = format!("after {i}").into_bytes();
        let reply = tokio::time::timeout(HANG, lattice.call_actor(key, "echo", payload.clone()))
            .await
            .unwrap_or_else(|_| panic!("call {i} of {n} in a row hung"))
            .unwrap_or_else(|e| panic!("call {i} of {n} in a row failed: {e}"));
        assert_eq!(reply, payload);
    }
}

/// An actor's work: holds each call for a while before the actor runs,
/// and counts the calls it holds (those a kill cuts short).
struct Work {
    hold: Duration,
    inside: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl waxosuit_host::Middleware for Work {
    async fn actor_pre_invoke(
        &self,
        inv: waxosuit_host::MiddlewareCall,
    ) -> Result<waxosuit_host::MiddlewareCall, waxosuit_host::Refusal> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.hold).await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        Ok(inv)
    }
}

/// Host `i` of `net` whose actor calls each take `hold`, and the number
/// of calls it is working on.
fn working_host(net: &Net, hold: Duration) -> (Host, Arc<AtomicUsize>) {
    let inside = Arc::new(AtomicUsize::new(0));
    let host = net
        .builder()
        .middleware(Work {
            hold,
            inside: Arc::clone(&inside),
        })
        .build()
        .unwrap();
    (host, inside)
}

/// A host in a tokio runtime of its own, so that it can die the way a
/// killed process does: every task stops where it is and its sockets
/// close, with no `host_stopped` event, no drain and nothing flushed.
struct Killable {
    runtime: Option<tokio::runtime::Runtime>,
    host: Host,
    /// Calls it is working on (see [`Work`]).
    inside: Arc<AtomicUsize>,
}

impl Killable {
    /// Host `i` of `net`, joined, running `module` as `echo`, each call
    /// taking `hold`.
    async fn start(net: Arc<Net>, i: usize, module: Vec<u8>, hold: Duration) -> Killable {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("doomed-host")
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let (host, inside) = working_host(&net, hold);
            let node = net.join(i, host).await;
            node.host.add_actor(&module, "echo", None).await.unwrap();
            let _ = tx.send((node.host.clone(), inside));
            // The node lives as long as its runtime.
            let _node = node;
            std::future::pending::<()>().await;
        });
        let (host, inside) = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("the doomed host starts within 20 s")
            .expect("the doomed host started");
        Killable {
            runtime: Some(runtime),
            host,
            inside,
        }
    }

    /// Kills the host: returns once its runtime is gone.
    async fn kill(&mut self) {
        let runtime = self.runtime.take().expect("killed once");
        tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(2)))
            .await
            .unwrap();
    }

    /// Returns once the host is working on a call.
    async fn mid_call(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.inside.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the doomed host got no call within 5 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_hosts_killed_mid_load_costs_at_most_one_timeout() {
    let net = Arc::new(Net::new(3));
    let a = net
        .node_with(0, &[], |config| config.timeout = CALL_TIMEOUT)
        .await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let mut c = Killable::start(Arc::clone(&net), 2, module, Duration::ZERO).await;
    until_both_serve(&a.lattice, &key, &b.host, &c.host).await;

    let (b_start, c_start) = (served(&b.host, "echo"), served(&c.host, "echo"));
    let load = Load::start(&a.lattice, &key, WORKERS);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    c.kill().await;
    let (b_dead, c_dead) = (served(&b.host, "echo"), served(&c.host, "echo"));
    let dead = Instant::now();
    // Long enough for every call caught by the kill to time out, and for
    // many more after that.
    tokio::time::sleep(CALL_TIMEOUT * 3).await;
    let calls = load.stop().await;
    let (b_after, c_after) = (served(&b.host, "echo"), served(&c.host, "echo"));

    assert!(
        c_dead > c_start && b_dead > b_start,
        "both replicas served the load before the kill (B {b_start}→{b_dead}, C {c_start}→{c_dead})"
    );
    assert_no_hang_and_quiet_until(&calls, killed);
    let failures = failures_after(&calls, killed);
    let total: usize = failures.iter().map(Vec::len).sum();
    let after = successes_started_after(&calls, dead);
    eprintln!(
        "kill: {} calls, {total} failed after the kill ({}), kill took {} ms, {after} \
         successes started after it",
        calls.iter().map(Vec::len).sum::<usize>(),
        describe(&failures, killed),
        (dead - killed).as_millis()
    );
    for (w, f) in failures.iter().enumerate() {
        assert!(
            f.len() <= 1,
            "worker {w} had {} failed calls after the kill, at most one allowed: {}",
            f.len(),
            describe(&failures, killed)
        );
    }
    assert!(total >= 1, "no call noticed that C died");
    assert!(after >= 100, "only {after} successful calls after the kill");
    assert_eq!(c_after, c_dead, "a dead host served calls");
    assert!(
        b_after - b_dead >= after,
        "B served {} calls since the kill, fewer than the {after} that succeeded",
        b_after - b_dead
    );
    for worker in &calls {
        assert!(worker.last().unwrap().ok(), "a worker ended on a failure");
    }

    // And then every call succeeds, on B.
    calls_in_a_row(&a.lattice, &key, 20).await;
    assert_eq!(served(&b.host, "echo"), b_after + 20);
    assert_eq!(served(&c.host, "echo"), c_dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_call_costs_its_caller_one_failed_call() {
    let net = Arc::new(Net::new(3));
    let a = net
        .node_with(0, &[], |config| config.timeout = CALL_TIMEOUT)
        .await;
    // Both replicas take 20 ms per call, so that C dies in the middle of
    // one: that call is lost and can only time out.
    let hold = Duration::from_millis(20);
    let (b_host, _) = working_host(&net, hold);
    let b = net.join(1, b_host).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let mut c = Killable::start(Arc::clone(&net), 2, module, hold).await;
    until_both_serve(&a.lattice, &key, &b.host, &c.host).await;

    // One caller, one call at a time.
    let load = Load::start(&a.lattice, &key, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.mid_call().await;
    let killed = Instant::now();
    c.kill().await;
    let b_dead = served(&b.host, "echo");
    let dead = Instant::now();
    tokio::time::sleep(CALL_TIMEOUT * 4).await;
    let calls = load.stop().await;

    assert_no_hang_and_quiet_until(&calls, killed);
    let failures = failures_after(&calls, killed);
    let after = successes_started_after(&calls, dead);
    eprintln!(
        "kill mid-call: {} calls, failed after the kill: {}; {after} successes started \
         after it",
        calls[0].len(),
        describe(&failures, killed),
    );
    assert_eq!(
        failures[0].len(),
        1,
        "the caller lost more than the call C died in: {}",
        describe(&failures, killed)
    );
    assert!(after >= 50, "only {after} successful calls after the kill");
    assert!(served(&b.host, "echo") - b_dead >= after);
    assert!(calls[0].last().unwrap().ok());
}

/// A TCP relay between one host and the nats-server that can cut the host
/// off the network: nothing gets through any more either way, but every
/// socket stays open (a machine unplugged, a host stopped with SIGSTOP, a
/// half-open connection), so the server keeps routing calls to it.
struct Relay {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (down_read, down_write) = down.into_split();
                let (up_read, up_write) = up.into_split();
                tokio::spawn(pipe(down_read, up_write, watch.clone()));
                tokio::spawn(pipe(up_read, down_write, watch.clone()));
            }
        });
        Relay { port, frozen, task }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies until frozen; then holds both ends open and moves nothing.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *frozen.borrow() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let mut frozen = frozen;
    // Keep the sockets (moved into this task) open until the relay goes.
    while frozen.changed().await.is_ok() {}
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_mid_load_costs_at_most_one_timeout() {
    let net = Net::new(3);
    let a = net
        .node_with(0, &[], |config| config.timeout = CALL_TIMEOUT)
        .await;
    let b = net.node(1, &[]).await;
    let relay = Relay::start(net.nats.port()).await;
    let c = net
        .node_with(2, &[], |config| config.url = relay.url())
        .await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    c.host.add_actor(&module, "echo", None).await.unwrap();
    until_both_serve(&a.lattice, &key, &b.host, &c.host).await;

    let load = Load::start(&a.lattice, &key, WORKERS);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b_cut = served(&b.host, "echo");
    relay.freeze();
    let cut = Instant::now();
    tokio::time::sleep(CALL_TIMEOUT * 3).await;
    let calls = load.stop().await;
    let b_after = served(&b.host, "echo");

    assert_no_hang_and_quiet_until(&calls, cut);
    let failures = failures_after(&calls, cut);
    let total: usize = failures.iter().map(Vec::len).sum();
    let after = successes_started_after(&calls, cut);
    eprintln!(
        "cut off: {} calls, {total} failed after the cut ({}), {after} successes started \
         after it",
        calls.iter().map(Vec::len).sum::<usize>(),
        describe(&failures, cut),
    );
    for (w, f) in failures.iter().enumerate() {
        assert!(
            f.len() <= 1,
            "worker {w} had {} failed calls after C was cut off, at most one allowed: {}",
            f.len(),
            describe(&failures, cut)
        );
    }
    assert!(after >= 100, "only {after} successful calls after the cut");
    assert!(
        b_after - b_cut >= after,
        "B served fewer calls than succeeded"
    );
    calls_in_a_row(&a.lattice, &key, 20).await;
    assert_eq!(served(&b.host, "echo"), b_after + 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_leaving_gracefully_mid_load_costs_no_call() {
    let net = Net::new(3);
    let a = net
        .node_with(0, &[], |config| config.timeout = CALL_TIMEOUT)
        .await;
    let b = net.node(1, &[]).await;
    // Calls to C take 200 ms, so that C leaves with calls in hand, which
    // it must still answer.
    let (c_host, c_inside) = working_host(&net, Duration::from_millis(200));
    let c = net.join(2, c_host).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    c.host.add_actor(&module, "echo", None).await.unwrap();
    until_both_serve(&a.lattice, &key, &b.host, &c.host).await;

    let load = Load::start(&a.lattice, &key, WORKERS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while c_inside.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "C got no call within 5 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let leaving = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), c.lattice.leave())
        .await
        .expect("C leaves within 10 s");
    let left = Instant::now();
    // Calls C's server tasks took before the drain ended may still be
    // finishing; give them a moment before C's count must stand still.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c_left = served(&c.host, "echo");
    tokio::time::sleep(CALL_TIMEOUT * 2).await;
    let calls = load.stop().await;

    assert_no_hang_and_quiet_until(&calls, leaving);
    let failures = failures_after(&calls, leaving);
    let total: usize = failures.iter().map(Vec::len).sum();
    let after = successes_started_after(&calls, left);
    let refused = a.lattice.refusals("response", "bad_signature");
    eprintln!(
        "leave: {} calls, {total} failed ({}), leave took {} ms, {after} successes started \
         after it; A refused {refused} answers as badly tagged",
        calls.iter().map(Vec::len).sum::<usize>(),
        describe(&failures, leaving),
        (left - leaving).as_millis()
    );
    assert_eq!(
        total,
        0,
        "a graceful leave cost calls ({refused} answers refused as badly tagged): {}",
        describe(&failures, leaving)
    );
    assert!(after >= 50, "only {after} successful calls after the leave");
    assert_eq!(served(&c.host, "echo"), c_left, "C served after leaving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lattice_recovers_after_a_nats_restart_mid_load() {
    let mut net = Net::new(2);
    let a = net
        .node_with(0, &[], |config| config.timeout = CALL_TIMEOUT)
        .await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    calls_in_a_row(&a.lattice, &key, 3).await;
    // A tool connected before the restart must find its way back too.
    let client = net.client().await;

    let load = Load::start(&a.lattice, &key, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down = Instant::now();
    tokio::task::block_in_place(|| net.nats.stop());
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| net.nats.restart()).expect("nats-server starts again");
    let up = Instant::now();
    // Recovery is bounded below; then enough time for many calls.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let calls = load.stop().await;

    assert_no_hang_and_quiet_until(&calls, down);
    // Sanity: with the server down nothing can succeed.
    for worker in &calls {
        for call in worker {
            assert!(
                !(call.started >= down && call.ended <= up && call.ok()),
                "a call succeeded while the nats-server was down"
            );
        }
    }
    let failed = calls.iter().flatten().filter(|c| !c.ok()).count();
    assert!(failed > 0, "no call failed while the nats-server was down");
    let mut recovered = Duration::ZERO;
    for (w, worker) in calls.iter().enumerate() {
        let first = worker
            .iter()
            .position(|c| c.started >= up && c.ok())
            .unwrap_or_else(|| panic!("worker {w}: no call succeeded after the restart"));
        recovered = recovered.max(worker[first].ended - up);
        let trailing = &worker[first..];
        let bad: Vec<&Call> = trailing.iter().filter(|c| !c.ok()).collect();
        assert!(
            bad.is_empty(),
            "worker {w}: {} calls failed after calls worked again: {:?}",
            bad.len(),
            bad.iter().map(|c| &c.result).collect::<Vec<_>>()
        );
        assert!(
            trailing.len() >= 50,
            "worker {w}: only {} calls in a row succeeded after recovery",
            trailing.len()
        );
    }
    let outage_failures: Vec<String> = calls
        .iter()
        .flatten()
        .filter(|c| !c.ok())
        .map(|c| c.result.clone().unwrap_err())
        .collect();
    eprintln!(
        "restart: {} calls, {failed} failed ({:?}), calls worked again {} ms after the \
         server was back (outage {} ms)",
        calls.iter().map(Vec::len).sum::<usize>(),
        outage_failures,
        recovered.as_millis(),
        (up - down).as_millis()
    );
    assert!(
        recovered <= Duration::from_secs(5),
        "calls worked again only {} ms after the server was back",
        recovered.as_millis()
    );

    // Discovery and inventory work again: an actor started now on B is
    // callable from A and listed by the tool.
    let (module2, key2) = net.echo_actor(&[]);
    b.host.add_actor(&module2, "echo2", None).await.unwrap();
    calls_in_a_row(&a.lattice, &key2, 10).await;
    calls_in_a_row(&a.lattice, &key, 10).await;
    let mut listed = Vec::new();
    for _ in 0..50 {
        listed = client
            .actors()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|actor| (actor.key, actor.host))
            .collect();
        if listed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    listed.sort();
    let mut expected = vec![
        (key.clone(), b.lattice.host_id().to_string()),
        (key2.clone(), b.lattice.host_id().to_string()),
    ];
    expected.sort();
    assert_eq!(listed, expected, "the inventory after the restart");
    let hosts = client.hosts().await.unwrap();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
}
