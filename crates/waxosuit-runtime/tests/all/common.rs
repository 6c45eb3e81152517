//! Shared helpers: keys, runtimes and a recording host-call handler.

use std::sync::{Arc, Mutex};

use waxosuit_runtime::{
    Actor, ActorKey, HostCall, HostCallError, HostCallHandler, Limits, PoolingConfig, Runtime,
    RuntimeConfig, RuntimeError,
};

/// A syntactically valid actor key, distinct per `n`.
pub(crate) fn key(n: u32) -> ActorKey {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::from("M");
    let mut x = n;
    for i in 0..55u32 {
        s.push(char::from(alphabet[((x + i) % 32) as usize]));
        x /= 2;
    }
    ActorKey::new(s).expect("valid key")
}

/// Small pool so parallel tests do not reserve terabytes of address space.
pub(crate) fn config() -> RuntimeConfig {
    RuntimeConfig::default().pooling(Some(PoolingConfig::default().total_instances(64)))
}

pub(crate) fn runtime() -> Runtime {
    Runtime::new(config()).expect("runtime")
}

/// Answers `default`/`test:ping`/`Ping` with `pong:` + payload, fails the
/// payload `fail` with "host says no", and records every call.
#[derive(Default)]
pub(crate) struct TestHandler {
    pub calls: Mutex<Vec<(ActorKey, HostCall)>>,
    /// When set, replies with this many bytes instead.
    pub big_reply: Option<usize>,
}

impl TestHandler {
    pub(crate) fn calls(&self) -> Vec<(ActorKey, HostCall)> {
        self.calls.lock().expect("lock").clone()
    }
}

impl HostCallHandler for TestHandler {
    type Error = HostCallError;

    async fn host_call(&self, actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
        self.calls
            .lock()
            .expect("lock")
            .push((actor.clone(), call.clone()));
        if let Some(n) = self.big_reply {
            return Ok(vec![7; n]);
        }
        if call.payload == b"fail" {
            return Err(HostCallError::new("host says no"));
        }
        match (&*call.binding, &*call.namespace, &*call.operation) {
            ("default", "test:ping", "Ping") => {
                // Yield once so the guest really is suspended across an await.
                tokio::task::yield_now().await;
                let mut reply = b"pong:".to_vec();
                reply.extend_from_slice(&call.payload);
                Ok(reply)
            }
            (b, n, o) => Err(HostCallError::new(format!("no route for {b}/{n}/{o}"))),
        }
    }
}

pub(crate) async fn load(
    module: &[u8],
    limits: Limits,
) -> Result<Actor<TestHandler>, RuntimeError> {
    runtime()
        .load(key(1), module, limits, Arc::new(TestHandler::default()))
        .await
}

/// Loads `module` as `key(1)` with a fresh [`TestHandler`] on a runtime
/// with `config`.
pub(crate) async fn load_on(
    config: RuntimeConfig,
    module: &[u8],
    limits: Limits,
) -> Result<Actor<TestHandler>, RuntimeError> {
    Runtime::new(config)
        .expect("runtime")
        .load(key(1), module, limits, Arc::new(TestHandler::default()))
        .await
}

pub(crate) async fn load_with(
    module: &[u8],
    limits: Limits,
    handler: Arc<TestHandler>,
) -> Result<Actor<TestHandler>, RuntimeError> {
    runtime().load(key(1), module, limits, handler).await
}

/// `n` bytes of a recognisable pattern.
pub(crate) fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// A future that is pending exactly once and then woken from another
/// thread a millisecond later: a host call that really has to wait, with
/// no timer or runtime involved.
pub(crate) async fn pending_once() {
    let mut pending = true;
    std::future::poll_fn(|cx| {
        if !pending {
            return std::task::Poll::Ready(());
        }
        pending = false;
        let waker = cx.waker().clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1));
            waker.wake();
        });
        std::task::Poll::Pending
    })
    .await;
}

/// Which `__host_call` generation [`caller_guest`] imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abi {
    /// 8 arguments: binding, namespace, operation, payload.
    Binding,
    /// 6 arguments: namespace, operation, payload (binding `default`).
    Namespace,
    /// 4 arguments: `"capid!Operation"` route and payload.
    Route,
}

/// A WAT guest that makes whatever host call its request describes (see
/// [`host_call_request`]): a misbehaving actor can name anything, of any
/// length. `echo` returns the payload; any other 4-byte operation makes
/// the host call and returns the host response, or reports the host error
/// as its guest error.
pub(crate) fn caller_guest(abi: Abi) -> Vec<u8> {
    let (params, args) = match abi {
        Abi::Binding => (
            8,
            "(local.get $bd) (i32.load (i32.const 4096)) (local.get $ns) (i32.load (i32.const 4100)) \
             (local.get $opn) (i32.load (i32.const 4104)) (local.get $pl) (local.get $pl_len)",
        ),
        Abi::Namespace => (
            6,
            "(local.get $ns) (i32.load (i32.const 4100)) (local.get $opn) (i32.load (i32.const 4104)) \
             (local.get $pl) (local.get $pl_len)",
        ),
        Abi::Route => (
            4,
            "(local.get $opn) (i32.load (i32.const 4104)) (local.get $pl) (local.get $pl_len)",
        ),
    };
    let params = vec!["i32"; params].join(" ");
    let wat = format!(
        r#"(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call" (func $host_call (param {params}) (result i32)))
  (import "wapc" "__host_response" (func $host_response (param i32)))
  (import "wapc" "__host_response_len" (func $host_response_len (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)

  ;; Grows memory so that [0, end) is addressable; returns 0 on failure.
  (func $ensure (param $end i32) (result i32)
    (local $have i32)
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.le_u (local.get $end) (local.get $have))
      (then (return (i32.const 1))))
    (i32.ne
      (memory.grow
        (i32.shr_u
          (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
          (i32.const 16)))
      (i32.const -1)))

  ;; Request: u32 binding length, u32 namespace length, u32 operation
  ;; length (little-endian), then the three names, then the payload.
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $bd i32) (local $ns i32) (local $opn i32) (local $pl i32) (local $pl_len i32)
    (local $resp i32) (local $len i32)
    (if (i32.gt_u (local.get $op_len) (i32.const 3000)) (then (unreachable)))
    (if (i32.eqz (call $ensure (i32.add (i32.const 4096) (local.get $msg_len))))
      (then (unreachable)))
    (call $guest_request (i32.const 1024) (i32.const 4096))
    ;; "echo"
    (if (i32.eq (i32.load (i32.const 1024)) (i32.const 0x6f686365))
      (then
        (call $guest_response (i32.const 4096) (local.get $msg_len))
        (return (i32.const 1))))
    (local.set $bd (i32.const 4108))
    (local.set $ns (i32.add (local.get $bd) (i32.load (i32.const 4096))))
    (local.set $opn (i32.add (local.get $ns) (i32.load (i32.const 4100))))
    (local.set $pl (i32.add (local.get $opn) (i32.load (i32.const 4104))))
    (local.set $pl_len (i32.sub (i32.add (i32.const 4096) (local.get $msg_len)) (local.get $pl)))
    (local.set $resp (i32.add (i32.const 4096) (local.get $msg_len)))
    (if (call $host_call {args})
      (then
        (local.set $len (call $host_response_len))
        (if (i32.eqz (call $ensure (i32.add (local.get $resp) (local.get $len))))
          (then (unreachable)))
        (call $host_response (local.get $resp))
        (call $guest_response (local.get $resp) (local.get $len))
        (return (i32.const 1))))
    (local.set $len (call $host_error_len))
    (if (i32.eqz (call $ensure (i32.add (local.get $resp) (local.get $len))))
      (then (unreachable)))
    (call $host_error (local.get $resp))
    (call $guest_error (local.get $resp) (local.get $len))
    (i32.const 0)))"#
    );
    wat::parse_str(wat).expect("caller guest WAT")
}

/// The request that makes a [`caller_guest`] call `binding`/`namespace`/
/// `operation` with `payload` (for [`Abi::Route`], `operation` is the
/// whole `"capid!Operation"` route and `namespace` is ignored; for
/// [`Abi::Namespace`], `binding` is).
pub(crate) fn host_call_request(
    binding: &[u8],
    namespace: &[u8],
    operation: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let len = |name: &[u8]| {
        u32::try_from(name.len())
            .expect("name length")
            .to_le_bytes()
    };
    [
        len(binding).as_slice(),
        &len(namespace),
        &len(operation),
        binding,
        namespace,
        operation,
        payload,
    ]
    .concat()
}
