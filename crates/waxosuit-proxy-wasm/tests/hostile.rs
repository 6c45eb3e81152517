//! Filters written to abuse the ABI: every bad pointer, oversized length
//! and unknown name is refused with a status, never a host panic, and the
//! filter's later requests are served.

use std::sync::Arc;
use std::time::Duration;

use waxosuit_cap_http_server::filter::{
    FilterRequest, FilterTarget, HeaderMap, HeaderName, HeaderValue, HttpFilter, StreamInfo,
    Verdict,
};

const ACCEPT: HeaderName = HeaderName::from_static("accept");
use waxosuit_claims::{
    Actor, Claims, KeyKind, KeyPair, PROXY_WASM_FILTER_TAG, Verifier, embed_claims,
};
use waxosuit_proxy_wasm::{FilterHost, FilterLimits, FilterSettings, LoadError, ProxyFilter};
use waxosuit_runtime::{Runtime, RuntimeConfig};

/// Signs `wat` as a filter (or, without the tag, as an actor) and loads it.
async fn load(
    wat: &str,
    tagged: bool,
    limits: FilterLimits,
) -> Result<Arc<ProxyFilter>, LoadError> {
    let settings = FilterSettings {
        limits,
        ..FilterSettings::default()
    };
    load_on(RuntimeConfig::default(), wat, tagged, settings).await
}

/// [`load`] on a runtime configured as `config`, with `settings`.
async fn load_on(
    config: RuntimeConfig,
    wat: &str,
    tagged: bool,
    settings: FilterSettings,
) -> Result<Arc<ProxyFilter>, LoadError> {
    load_in(
        &FilterHost::new(&Runtime::new(config).unwrap()),
        wat,
        tagged,
        settings,
    )
    .await
}

/// [`load`] into `host`, which a test keeps (for its metrics).
async fn load_in(
    host: &FilterHost,
    wat: &str,
    tagged: bool,
    settings: FilterSettings,
) -> Result<Arc<ProxyFilter>, LoadError> {
    let module = wat::parse_str(wat).unwrap();
    let account = KeyPair::generate(KeyKind::Account);
    let subject = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(subject.public_key())
        .metadata(Actor {
            tags: tagged.then(|| vec![PROXY_WASM_FILTER_TAG.to_string()]),
            ..Actor::named("hostile")
        })
        .build();
    let signed = embed_claims(&module, &claims, &account).unwrap();
    let verified = Verifier::new()
        .trust_issuer(&account.public_key())
        .unwrap()
        .verify_actor(&signed)
        .unwrap();
    host.load(&verified, &signed, settings).await
}

fn info() -> StreamInfo {
    StreamInfo {
        target: Arc::new(FilterTarget {
            actor: Arc::from("MACTOR"),
            actor_name: Arc::from("actor"),
            binding: Arc::from("default"),
        }),
        source: None,
        thread: 0,
        deadline: tokio::time::Instant::now() + Duration::from_secs(5),
    }
}

fn request() -> FilterRequest {
    FilterRequest {
        method: "GET".into(),
        path: "/".into(),
        authority: "test".into(),
        scheme: "http",
        headers: HeaderMap::from_iter([(ACCEPT, HeaderValue::from_static("*/*"))]),
        body: Vec::new(),
    }
}

/// Answers each request locally with status 100 + 100·a + 10·b + c, where
/// a, b, c are the host's answers to three abusive calls.
const ABUSER: &str = r#"(module
  (import "env" "proxy_set_header_map_pairs" (func $set_map (param i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "nowhere")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $a i32) (local $b i32) (local $c i32)
    ;; a map said to be 2 GiB long
    (local.set $a (call $set_map (i32.const 0) (i32.const 0) (i32.const 0x7fffffff)))
    ;; a log line that runs off the end of memory
    (local.set $b (call $log (i32.const 2) (i32.const 130000) (i32.const 100000)))
    ;; a callout to an upstream the manifest does not name
    (local.set $c (call $call (i32.const 100) (i32.const 7) (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 200)))
    (drop (call $local
      (i32.add (i32.const 100)
        (i32.add (i32.mul (local.get $a) (i32.const 100))
          (i32.add (i32.mul (local.get $b) (i32.const 10)) (local.get $c))))
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#;

#[tokio::test]
async fn abusive_host_calls_get_a_status_and_the_filter_serves_on() {
    let filter = load(ABUSER, true, FilterLimits::default()).await.unwrap();
    for _ in 0..3 {
        let mut stream = filter.open(&info());
        let mut req = request();
        match stream.request(&mut req).outcome().await.unwrap() {
            // BadArgument (2) for each of the three.
            Verdict::Respond(reply) => assert_eq!(reply.status, 322),
            Verdict::Continue => panic!("the filter answers every request"),
        }
    }
}

#[tokio::test]
async fn a_filter_that_loops_is_stopped_at_its_deadline_and_rebuilt() {
    let looping = r#"(module
      (global $calls (mut i32) (i32.const 0))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (loop $forever (br $forever))
        (i32.const 0)))"#;
    let limits = FilterLimits {
        deadline: Duration::from_millis(20),
        ..FilterLimits::default()
    };
    let filter = load(looping, true, limits).await.unwrap();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let mut stream = filter.open(&info());
        let error = stream
            .request(&mut request())
            .outcome()
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("deadline of 20 ms"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn memory_growth_past_the_limit_is_refused() {
    // Grows memory by 64 MiB; the limit is 1 MiB: `memory.grow` fails (-1)
    // and the filter reports it with a local answer.
    let grower = r#"(module
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $local
          (select (i32.const 507) (i32.const 200) (i32.eq (memory.grow (i32.const 1024)) (i32.const -1)))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1)))"#;
    let limits = FilterLimits {
        max_memory: 1 << 20,
        ..FilterLimits::default()
    };
    let filter = load(grower, true, limits).await.unwrap();
    let mut stream = filter.open(&info());
    match stream.request(&mut request()).outcome().await.unwrap() {
        Verdict::Respond(reply) => assert_eq!(reply.status, 507),
        Verdict::Continue => panic!("expected a local answer"),
    }
}

#[tokio::test]
async fn table_growth_past_the_bound_is_refused_whatever_the_allocator() {
    // Grows its table by 1,000 elements on the first request (fine), by 70
    // million on the next (refused: the pooling allocator has a bound of its
    // own, the on-demand one none but the store's).
    let grower = r#"(module
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (table 0 funcref)
      (global $by (mut i32) (i32.const 1000))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $local
          (select (i32.const 507) (i32.const 200)
            (i32.eq (table.grow (ref.null func) (global.get $by)) (i32.const -1)))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (global.set $by (i32.const 70000000))
        (i32.const 1)))"#;
    for pooling in [true, false] {
        let config = if pooling {
            RuntimeConfig::default()
        } else {
            RuntimeConfig::default().pooling(None)
        };
        let filter = load_on(config, grower, true, FilterSettings::default())
            .await
            .unwrap();
        let mut stream = filter.open(&info());
        let mut statuses = Vec::new();
        for _ in 0..2 {
            match stream.request(&mut request()).outcome().await.unwrap() {
                Verdict::Respond(reply) => statuses.push(reply.status),
                Verdict::Continue => panic!("expected a local answer"),
            }
            stream = filter.open(&info());
        }
        assert_eq!(statuses, [200, 507], "pooling {pooling}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_callbacks_that_enqueue_to_several_queues_do_not_multiply_tasks() {
    // Registers two queues and, from every queue callback, enqueues to
    // both: each callback schedules a callback per queue, which doubled the
    // pending tasks with every round.
    let breeder = r#"(module
      (import "env" "proxy_register_shared_queue" (func $reg (param i32 i32 i32) (result i32)))
      (import "env" "proxy_enqueue_shared_queue" (func $enq (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "ab")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (drop (call $reg (i32.const 0) (i32.const 1) (i32.const 64)))
        (drop (call $reg (i32.const 1) (i32.const 1) (i32.const 68)))
        (drop (call $enq (i32.load (i32.const 64)) (i32.const 0) (i32.const 1)))
        (i32.const 1))
      (func (export "proxy_on_queue_ready") (param i32 i32)
        (drop (call $enq (i32.load (i32.const 64)) (i32.const 0) (i32.const 1)))
        (drop (call $enq (i32.load (i32.const 68)) (i32.const 1) (i32.const 1)))))"#;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let filter = load(breeder, true, FilterLimits::default()).await.unwrap();
    let mut most = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        most = most.max(metrics.num_alive_tasks().saturating_sub(before));
    }
    // One pending callback per queue of the one VM that listens, and the
    // filter's own (its ticker, a callout): a handful, not thousands.
    assert!(most <= 8, "{most} tasks alive");
    drop(filter);
}

/// Counts the events of the filters' log target, and those saying lines
/// were dropped.
struct FilterLines {
    lines: Arc<std::sync::atomic::AtomicUsize>,
    dropped: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for FilterLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Dropped(Option<u64>);
        impl tracing::field::Visit for Dropped {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "dropped" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if event.metadata().target() != "waxosuit::filter" {
            return;
        }
        let mut dropped = Dropped(None);
        event.record(&mut dropped);
        match dropped.0 {
            Some(count) => self.dropped.lock().unwrap().push(count),
            None => {
                self.lines
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

#[tokio::test]
async fn a_filter_logging_in_a_loop_is_held_to_its_lines_per_second() {
    use tracing_subscriber::layer::SubscriberExt;
    // 1,000 log lines through `proxy_log` and 1,000 through standard
    // output, on every request.
    let chatty = r#"(module
      (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "chatter")
      (data (i32.const 16) "\00\00\00\00\07\00\00\00")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (local $i i32)
        (loop $more
          (drop (call $log (i32.const 2) (i32.const 0) (i32.const 7)))
          (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))
        ;; Every byte of the last write is reported written, dropped or not.
        (drop (call $local
          (select (i32.const 200) (i32.const 500) (i32.eq (i32.load (i32.const 32)) (i32.const 7)))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1)))"#;
    let counter = FilterLines {
        lines: Arc::default(),
        dropped: Arc::default(),
    };
    let (lines, dropped) = (Arc::clone(&counter.lines), Arc::clone(&counter.dropped));
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(counter));
    let filter = load(chatty, true, FilterLimits::default()).await.unwrap();
    let limit = waxosuit_runtime::console::MAX_LINES_PER_SECOND as usize;
    for round in 0..2 {
        let mut stream = filter.open(&info());
        match stream.request(&mut request()).outcome().await.unwrap() {
            Verdict::Respond(reply) => assert_eq!(reply.status, 200),
            Verdict::Continue => panic!("expected a local answer"),
        }
        let written = lines.swap(0, std::sync::atomic::Ordering::Relaxed);
        assert!(written <= limit, "round {round}: {written} lines");
        assert!(written > 0, "round {round}: the budget's lines are written");
        if round == 0 {
            assert!(dropped.lock().unwrap().is_empty());
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    // The second second opened with the count of the first one's drops.
    let said = dropped.lock().unwrap().clone();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0] >= 2000 - limit as u64, "{said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_rebuilt_after_a_trap_cannot_start_more_callouts_than_its_bound() {
    // Sends as many callouts as it may to an upstream that never answers,
    // and answers with 200 + how many were taken; when none is, it traps,
    // and its VM is rebuilt for the next request.
    let caller = r#"(module
      (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "silent")
      (data (i32.const 16) "\02\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\01\00\00\00:method\00GET\00:path\00/\00")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (local $i i32) (local $taken i32)
        (loop $more
          (if (i32.eqz (call $call (i32.const 0) (i32.const 6) (i32.const 16) (i32.const 40)
                (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 60000) (i32.const 200)))
            (then (local.set $taken (i32.add (local.get $taken) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 100))))
        (if (i32.eqz (local.get $taken)) (then (unreachable)))
        (drop (call $local (i32.add (i32.const 200) (local.get $taken))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1))
      (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)))"#;
    // The upstream: accepts, counts, holds every connection, never answers.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = upstream.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in upstream.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            held.push(stream);
        }
    });
    let settings = FilterSettings {
        upstreams: [("silent".to_string(), format!("http://{address}"))].into(),
        ..FilterSettings::default()
    };
    let filter = load_on(RuntimeConfig::default(), caller, true, settings)
        .await
        .unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let mut stream = filter.open(&info());
        outcomes.push(match stream.request(&mut request()).outcome().await {
            Ok(Verdict::Respond(reply)) => reply.status.to_string(),
            Ok(Verdict::Continue) => "continue".to_string(),
            Err(_) => "failed".to_string(),
        });
    }
    // The first VM takes its 64; the rest, that VM and the ones rebuilt
    // after it trapped, take none while those are out.
    let bound = waxosuit_proxy_wasm::MAX_CALLS_IN_FLIGHT;
    assert_eq!(outcomes[0], (200 + bound).to_string(), "{outcomes:?}");
    assert!(outcomes[1..].iter().all(|o| o == "failed"), "{outcomes:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opened = connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(opened <= bound, "{opened} connections to the upstream");
}

#[tokio::test]
async fn answers_waiting_for_the_filter_count_as_calls_in_flight() {
    // Each request sends as many callouts as it may (of 100) and answers
    // 200 + how many were taken; each answer's callback spins 2 ms, so the
    // VM owes a pause after it and answers wait their turn.
    let caller = r#"(module
      (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "fast")
      (data (i32.const 16) "\02\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\01\00\00\00:method\00GET\00:path\00/\00")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (local $i i32) (local $taken i32)
        (loop $more
          (if (i32.eqz (call $call (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 40)
                (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 60000) (i32.const 200)))
            (then (local.set $taken (i32.add (local.get $taken) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 100))))
        (drop (call $local (i32.add (i32.const 200) (local.get $taken))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1))
      (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
        (local $start i64)
        (drop (call $now (i32.const 128)))
        (local.set $start (i64.load (i32.const 128)))
        (loop $spin
          (drop (call $now (i32.const 128)))
          (br_if $spin (i64.lt_u (i64.sub (i64.load (i32.const 128)) (local.get $start))
            (i64.const 2000000))))))"#;
    // The upstream answers every request at once, one per connection.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = upstream.local_addr().unwrap();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&served);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = upstream.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let settings = FilterSettings {
        upstreams: [("fast".to_string(), format!("http://{address}"))].into(),
        ..FilterSettings::default()
    };
    let filter = load_on(RuntimeConfig::default(), caller, true, settings)
        .await
        .unwrap();
    let mut taken = 0;
    for _ in 0..20 {
        let mut stream = filter.open(&info());
        match stream.request(&mut request()).outcome().await {
            Ok(Verdict::Respond(reply)) => taken += usize::from(reply.status) - 200,
            other => panic!("expected a local answer, got {:?}", other.is_ok()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bound = waxosuit_proxy_wasm::MAX_CALLS_IN_FLIGHT;
    // Answers are handed over at most one per 20 ms (2 ms, then an 18 ms
    // pause): in the 400 ms or so about 20 of them, so the VM may send
    // about 64 + 20 (a slow machine, taking longer, a few more). When a
    // place was freed on the answer's arrival, each request sent up to 64
    // more while the answers queued (600 to 1,200 measured).
    assert!(taken >= bound, "{taken} calls taken");
    assert!(
        taken < 300,
        "{taken} calls taken, {} served",
        served.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// A trap's backtrace names each frame's function from the name section:
/// thirty frames of a 1 MiB name made the reason 30 MiB, logged and put on
/// the span for every request. It is cut to the runtime's bound, as for
/// actors.
#[tokio::test]
async fn a_trap_through_functions_with_huge_names_has_a_bounded_reason() {
    let name = "f".repeat(1 << 20);
    let wat = format!(
        r#"(module
      (memory (export "memory") 1)
      (func ${name} (param $n i32)
        (if (i32.eqz (local.get $n)) (then (unreachable)))
        (call ${name} (i32.sub (local.get $n) (i32.const 1))))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (call ${name} (i32.const 30))
        (i32.const 0)))"#
    );
    let filter = load(&wat, true, FilterLimits::default()).await.unwrap();
    let mut stream = filter.open(&info());
    let Err(error) = stream.request(&mut request()).outcome().await else {
        panic!("the filter must fail");
    };
    let text = error.to_string();
    assert!(
        text.contains("unreachable"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(
        text.len() <= waxosuit_runtime::MAX_GUEST_ERROR_BYTES + 256,
        "{} bytes",
        text.len()
    );
}

#[tokio::test]
async fn each_callback_that_enqueues_is_owed_its_queue_callback() {
    // Every request enqueues one item and answers 200 + the items its queue
    // callbacks dequeued so far; each queue callback dequeues one item, as
    // SDK examples do.
    let counter = r#"(module
      (import "env" "proxy_register_shared_queue" (func $reg (param i32 i32 i32) (result i32)))
      (import "env" "proxy_enqueue_shared_queue" (func $enq (param i32 i32 i32) (result i32)))
      (import "env" "proxy_dequeue_shared_queue" (func $deq (param i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (global $dequeued (mut i32) (i32.const 0))
      (memory (export "memory") 1)
      (data (i32.const 0) "q")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (drop (call $reg (i32.const 0) (i32.const 1) (i32.const 64)))
        (i32.const 1))
      (func (export "proxy_on_queue_ready") (param i32 i32)
        (if (i32.eqz (call $deq (local.get 1) (i32.const 128) (i32.const 132)))
          (then (global.set $dequeued (i32.add (global.get $dequeued) (i32.const 1))))))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $enq (i32.load (i32.const 64)) (i32.const 0) (i32.const 1)))
        (drop (call $local (i32.add (i32.const 200) (global.get $dequeued))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1)))"#;
    let filter = load(counter, true, FilterLimits::default()).await.unwrap();
    let mut answers = Vec::new();
    // Two requests before the queue callbacks can run (this runtime has one
    // thread, and nothing here yields to them), then a pause, then one more.
    for pause in [false, false, true] {
        if pause {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut stream = filter.open(&info());
        match stream.request(&mut request()).outcome().await.unwrap() {
            Verdict::Respond(reply) => answers.push(reply.status),
            Verdict::Continue => panic!("expected a local answer"),
        }
    }
    // Both items were told of, one call each: none stranded.
    assert_eq!(answers, [200, 200, 202]);
}

#[tokio::test]
async fn modules_outside_the_contract_do_not_load() {
    let untagged = load(ABUSER, false, FilterLimits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(untagged, LoadError::NotAFilter { .. }),
        "{untagged}"
    );
    let no_marker = r#"(module (memory (export "memory") 1))"#;
    let e = load(no_marker, true, FilterLimits::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("proxy_abi_version_0_2_1"), "{e}");
    let sockets = r#"(module
      (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1")))"#;
    let e = load(sockets, true, FilterLimits::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("wasi_snapshot_preview1.sock_accept"),
        "{e}"
    );
    let other = r#"(module
      (import "env" "proxy_exec" (func))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1")))"#;
    let e = load(other, true, FilterLimits::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("env.proxy_exec"), "{e}");
}

#[tokio::test]
async fn probes_the_sdks_make_get_the_statuses_they_tolerate() {
    // Resuming the response while the request is filtered (a late callout
    // answer does that) and reading a body past its end both answer Ok;
    // the filter reports 200 + 10·a + b.
    let prober = r#"(module
      (import "env" "proxy_continue_stream" (func $cont (param i32) (result i32)))
      (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (local $a i32) (local $b i32)
        (local.set $a (call $cont (i32.const 1)))
        (local.set $b (call $buf (i32.const 0) (i32.const 1000) (i32.const 10) (i32.const 200) (i32.const 204)))
        (drop (call $local
          (i32.add (i32.const 200) (i32.add (i32.mul (local.get $a) (i32.const 10)) (local.get $b)))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1)))"#;
    let filter = load(prober, true, FilterLimits::default()).await.unwrap();
    let mut stream = filter.open(&info());
    match stream.request(&mut request()).outcome().await.unwrap() {
        Verdict::Respond(reply) => assert_eq!(reply.status, 200),
        Verdict::Continue => panic!("expected a local answer"),
    }
}

#[tokio::test]
async fn the_request_is_readable_in_the_response_phase_and_handed_back_whole() {
    // In the response phase the filter copies the request's `:path` and
    // `accept` into response headers; a local answer in the request phase
    // (for any 5-byte path, `/deny`) still leaves the server a whole request.
    let reader = r#"(module
      (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) ":path")
      (data (i32.const 110) "x-path")
      (data (i32.const 120) "accept")
      (data (i32.const 130) "x-accept")
      (data (i32.const 140) "/deny")
      (global $next (mut i32) (i32.const 1024))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
        (local $at i32)
        (local.set $at (global.get $next))
        (global.set $next (i32.add (global.get $next) (i32.add (local.get $n) (i32.const 8))))
        (local.get $at))
      (func $copy (param $key i32) (param $len i32) (param $to i32) (param $to_len i32)
        (drop (call $get (i32.const 0) (local.get $key) (local.get $len) (i32.const 200) (i32.const 204)))
        (drop (call $add (i32.const 2) (local.get $to) (local.get $to_len)
          (i32.load (i32.const 200)) (i32.load (i32.const 204)))))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $get (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 200) (i32.const 204)))
        (if (i32.eq (i32.load (i32.const 204)) (i32.const 5))
          (then
            (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 0)
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
            (return (i32.const 1))))
        (i32.const 0))
      (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
        (call $copy (i32.const 100) (i32.const 5) (i32.const 110) (i32.const 6))
        (call $copy (i32.const 120) (i32.const 6) (i32.const 130) (i32.const 8))
        (i32.const 0)))"#;
    let filter = load(reader, true, FilterLimits::default()).await.unwrap();
    for _ in 0..2 {
        let mut stream = filter.open(&info());
        let mut req = request();
        req.path = "/somewhere".into();
        let verdict = stream.request(&mut req).outcome().await.unwrap();
        assert_eq!(verdict, Verdict::Continue);
        let mut expected = request();
        expected.path = "/somewhere".into();
        assert_eq!(req, expected, "the request comes back as it went in");
        let mut response = waxosuit_cap_http_server::filter::FilterResponse {
            status: 200,
            ..Default::default()
        };
        stream
            .response(&mut req, &mut response)
            .outcome()
            .await
            .unwrap();
        assert_eq!(response.headers["x-path"], "/somewhere");
        assert_eq!(response.headers["x-accept"], "*/*");
        assert_eq!(req, expected, "the lent request comes back as it was");
    }
    let mut stream = filter.open(&info());
    let mut req = request();
    req.path = "/deny".into();
    match stream.request(&mut req).outcome().await.unwrap() {
        Verdict::Respond(reply) => assert_eq!(reply.status, 403),
        Verdict::Continue => panic!("expected a local answer"),
    }
    let mut expected = request();
    expected.path = "/deny".into();
    assert_eq!(req, expected, "a local answer leaves the request whole");
}

/// Bytes as a WAT data string.
fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A Proxy-Wasm map of `pairs`, encoded as the ABI has it.
fn abi_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_path_cannot_steer_a_callout_to_another_port() {
    // A listener on a port the upstream's URL does not name, counting.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in other.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(stream);
        }
    });
    let steer = format!(":{port}/x");
    let mut outcomes = Vec::new();
    for pairs in [
        // A checked `:path` first, the one that was used second.
        vec![
            (":method", "GET"),
            (":path", "/"),
            (":path", steer.as_str()),
        ],
        vec![
            (":method", "GET"),
            (":path", steer.as_str()),
            (":path", "/"),
        ],
        vec![(":method", "GET"), (":method", "POST"), (":path", "/")],
        vec![(":method", "GET"), (":path", steer.as_str())],
        // The well-formed call, for contrast: taken.
        vec![(":method", "GET"), (":path", "/")],
    ] {
        let map = abi_map(&pairs);
        // Answers 201 when the call is taken, 400 when it is refused.
        let filter_wat = format!(
            r#"(module
      (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "up")
      (data (i32.const 16) "{data}")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $local
          (select (i32.const 201) (i32.const 400)
            (i32.eqz (call $call (i32.const 0) (i32.const 2) (i32.const 16) (i32.const {len})
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 2000))))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1))
      (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)))"#,
            data = wat_bytes(&map),
            len = map.len(),
        );
        // The upstream names no port: port 80 on this machine, where
        // nothing is expected to listen.
        let settings = FilterSettings {
            upstreams: [("up".to_string(), "http://127.0.0.1".to_string())].into(),
            ..FilterSettings::default()
        };
        let filter = load_on(RuntimeConfig::default(), &filter_wat, true, settings)
            .await
            .unwrap();
        let mut stream = filter.open(&info());
        outcomes.push(match stream.request(&mut request()).outcome().await {
            Ok(Verdict::Respond(reply)) => reply.status,
            other => panic!("{pairs:?}: {:?}", other.map(|_| ())),
        });
    }
    assert_eq!(outcomes, [400, 400, 400, 400, 201]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a callout reached a port its upstream does not name"
    );
}

#[tokio::test]
async fn a_tick_that_runs_long_leaves_the_thread_to_others() {
    // Ticks every 10 ms and spins for 40 ms in each tick, under its 100 ms
    // deadline, so it never traps and its timer never stops.
    let spinner = r#"(module
      (import "env" "proxy_set_tick_period_milliseconds" (func $period (param i32) (result i32)))
      (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (drop (call $period (i32.const 10)))
        (i32.const 1))
      (func (export "proxy_on_tick") (param i32)
        (local $start i64)
        (drop (call $now (i32.const 0)))
        (local.set $start (i64.load (i32.const 0)))
        (loop $spin
          (drop (call $now (i32.const 0)))
          (br_if $spin (i64.lt_u (i64.sub (i64.load (i32.const 0)) (local.get $start))
            (i64.const 40000000))))))"#;
    // One thread, as a connection thread has: the ticks and this task
    // share it.
    let filter = load(spinner, true, FilterLimits::default()).await.unwrap();
    let began = tokio::time::Instant::now();
    let mut worst = Duration::ZERO;
    while began.elapsed() < Duration::from_secs(2) {
        let asked = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        worst = worst.max(asked.elapsed());
    }
    drop(filter);
    // The ticks ran (a 5 ms sleep waited for one)…
    assert!(worst >= Duration::from_millis(20), "no tick ran: {worst:?}");
    // …one at a time: without the pause after each, a tick due again at
    // once kept the thread for up to 128 ticks (seconds).
    assert!(
        worst < Duration::from_millis(250),
        "the thread was held for {worst:?}"
    );
}

#[tokio::test]
async fn properties_a_request_sets_are_bounded_in_bytes() {
    // Sets 64 properties of 60 KiB each on the stream, then the first one
    // again, and answers 200 + how many were taken.
    let setter = r#"(module
      (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 2)
      (data (i32.const 70000) "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (local $i i32) (local $taken i32)
        (loop $more
          (if (i32.eqz (call $set (i32.add (i32.const 70000) (local.get $i)) (i32.const 1)
                (i32.const 0) (i32.const 61440)))
            (then (local.set $taken (i32.add (local.get $taken) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 64))))
        (if (i32.eqz (call $set (i32.const 70000) (i32.const 1) (i32.const 0) (i32.const 61440)))
          (then (local.set $taken (i32.add (local.get $taken) (i32.const 1)))))
        (drop (call $local (i32.add (i32.const 200) (local.get $taken))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1)))"#;
    let filter = load(setter, true, FilterLimits::default()).await.unwrap();
    let mut stream = filter.open(&info());
    match stream.request(&mut request()).outcome().await.unwrap() {
        // The first, and the first again (a replaced value is not counted
        // twice); before the bound, all 64 and the replacement (3.8 MiB).
        Verdict::Respond(reply) => assert_eq!(reply.status, 202),
        Verdict::Continue => panic!("the filter answers every request"),
    }
    assert_eq!(waxosuit_proxy_wasm::MAX_PROPERTY_BYTES, 64 << 10);
}

#[tokio::test]
async fn a_filter_keeping_many_queues_busy_gets_a_tenth_of_its_thread() {
    let calls = spinning_queues(20_000_000).await;
    // 20 ms, then 180 ms in which none of the VM's own callbacks run: about
    // 10 in 2 s, however many queues. Paced per queue, it was about 40;
    // unpaced, about 100 (the thread did nothing else between them).
    assert!(
        (3.0..=16.0).contains(&calls),
        "{calls} callbacks of 20 ms in 2 s"
    );
}

/// Callbacks shorter than the pacing's millisecond add up to it: four
/// queues spinning 0.3 ms each were never paced and took the whole thread
/// (about 6,000 callbacks in 2 s).
#[tokio::test]
async fn short_callbacks_are_paced_together() {
    let calls = spinning_queues(300_000).await;
    // A tenth of 2 s in callbacks of 0.3 ms: about 670.
    assert!(
        (100.0..=1_100.0).contains(&calls),
        "{calls} callbacks of 0.3 ms in 2 s"
    );
}

/// Runs, for 2 s, a filter whose four queues each spin `spin_ns` in every
/// `proxy_on_queue_ready` and enqueue to themselves again; how many such
/// callbacks ran.
async fn spinning_queues(spin_ns: u64) -> f64 {
    // Four queues, each callback spinning and enqueueing to its own queue
    // again: four loops that never end, each counted.
    let spinner = r#"(module
      (import "env" "proxy_register_shared_queue" (func $reg (param i32 i32 i32) (result i32)))
      (import "env" "proxy_enqueue_shared_queue" (func $enq (param i32 i32 i32) (result i32)))
      (import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
      (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "abcd")
      (data (i32.const 8) "calls")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (local $i i32)
        (drop (call $def (i32.const 0) (i32.const 8) (i32.const 5) (i32.const 32)))
        (loop $each
          (drop (call $reg (local.get $i) (i32.const 1) (i32.add (i32.const 64) (i32.mul (local.get $i) (i32.const 4)))))
          (drop (call $enq (i32.load (i32.add (i32.const 64) (i32.mul (local.get $i) (i32.const 4)))) (i32.const 0) (i32.const 1)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $each (i32.lt_u (local.get $i) (i32.const 4))))
        (i32.const 1))
      (func (export "proxy_on_queue_ready") (param i32 i32)
        (local $start i64)
        (drop (call $inc (i32.load (i32.const 32)) (i64.const 1)))
        (drop (call $now (i32.const 128)))
        (local.set $start (i64.load (i32.const 128)))
        (loop $spin
          (drop (call $now (i32.const 128)))
          (br_if $spin (i64.lt_u (i64.sub (i64.load (i32.const 128)) (local.get $start))
            (i64.const SPIN_NS))))
        (drop (call $enq (local.get 1) (i32.const 0) (i32.const 1)))))"#
        .replace("SPIN_NS", &spin_ns.to_string());
    let host = FilterHost::new(&Runtime::new(RuntimeConfig::default()).unwrap());
    let filter = load_in(&host, &spinner, true, FilterSettings::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(host.collector());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    drop(filter);
    text.lines()
        .find(|l| l.contains("name=\"calls\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no calls counter in {text}"))
}

/// Counts the warnings (and worse) of every target, keeping their text.
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
}

#[tokio::test]
async fn calls_to_an_unnamed_upstream_in_a_loop_are_warned_within_the_log_budget() {
    use tracing_subscriber::layer::SubscriberExt;
    // 1,000 callouts to an upstream the manifest does not name, each with
    // a 2 KiB name, on every request.
    let name = "n".repeat(2048);
    let caller = format!(
        r#"(module
      (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "{name}")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (local $i i32)
        (loop $more
          (drop (call $call (i32.const 0) (i32.const 2048) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8000)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))
        (drop (call $local (i32.const 200)
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1)))"#
    );
    let warnings = Warnings::default();
    let said = Arc::clone(&warnings.0);
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings));
    let filter = load(&caller, true, FilterLimits::default()).await.unwrap();
    let mut stream = filter.open(&info());
    match stream.request(&mut request()).outcome().await.unwrap() {
        Verdict::Respond(reply) => assert_eq!(reply.status, 200),
        Verdict::Continue => panic!("expected a local answer"),
    }
    let said = said.lock().unwrap().clone();
    let limit = waxosuit_runtime::console::MAX_LINES_PER_SECOND as usize;
    assert!(!said.is_empty(), "the refusal is said");
    // The budget's second may turn during the loop: two of them, and the
    // notice of what the first dropped.
    assert!(
        said.len() <= 2 * limit + 1,
        "{} warnings for one request",
        said.len()
    );
    // The name is shown clipped, with its length.
    assert!(said[0].contains("(2048 bytes)"), "{}", said[0]);
    assert!(said.iter().all(|line| line.len() < 1024), "{}", said[0]);
}

// On one thread: the callouts' tasks run where the test's subscriber is.
#[tokio::test]
async fn callouts_failing_in_a_chain_are_warned_within_the_log_budget_without_their_query() {
    use tracing_subscriber::layer::SubscriberExt;
    // Each answer to a callout sends the next one; each fails at once (a
    // method that is no HTTP token), with a secret in its query.
    let map = abi_map(&[(":method", "A B"), (":path", "/check?secret=hunter2")]);
    let chain = format!(
        r#"(module
      (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "up")
      (data (i32.const 16) "{data}")
      (func $send
        (drop (call $call (i32.const 0) (i32.const 2) (i32.const 16) (i32.const {len})
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 2000))))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (call $send)
        (drop (call $local (i32.const 200)
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (i32.const 1))
      (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
        (call $send)))"#,
        data = wat_bytes(&map),
        len = map.len(),
    );
    let warnings = Warnings::default();
    let said = Arc::clone(&warnings.0);
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings));
    let settings = FilterSettings {
        upstreams: [("up".to_string(), "http://127.0.0.1:1".to_string())].into(),
        ..FilterSettings::default()
    };
    let filter = load_on(RuntimeConfig::default(), &chain, true, settings)
        .await
        .unwrap();
    let mut stream = filter.open(&info());
    match stream.request(&mut request()).outcome().await.unwrap() {
        Verdict::Respond(reply) => assert_eq!(reply.status, 200),
        Verdict::Continue => panic!("expected a local answer"),
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    drop(stream);
    drop(filter);
    let said = said.lock().unwrap().clone();
    let limit = waxosuit_runtime::console::MAX_LINES_PER_SECOND as usize;
    assert!(
        said.iter().any(|line| line.contains("/check")),
        "the failures are said: {said:?}"
    );
    // One second of budget, perhaps two windows of it, and their notices
    // of what was dropped.
    assert!(
        said.len() <= 2 * limit + 2,
        "{} warnings in a second",
        said.len()
    );
    assert!(
        said.iter().all(|line| !line.contains("hunter2")),
        "a callout's query was logged: {said:?}"
    );
}
