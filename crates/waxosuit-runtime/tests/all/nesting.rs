//! Calls an actor makes into another actor while its own frames are on the
//! stack. An inline instance runs on the stack of whoever calls it, and
//! wasmtime gives each store its own `max_wasm_stack` measured from there:
//! a chain of inline calls, each guest deep in recursion, would pass the
//! end of the thread's (or a fiber's) stack and kill the process. A nested
//! call runs on a fiber instance of its own instead.

use std::sync::{Arc, OnceLock};

use waxosuit_runtime::{
    Actor, ActorKey, ErrorKind, HostCall, HostCallError, HostCallHandler, Limits,
};

use crate::common::{key, runtime};

/// Payload: u32 depth, u32 hops (little-endian). The guest recurses `depth`
/// frames; at the bottom it replies, or, while `hops` is not 0, makes a host
/// call with the same operation and `hops - 1` and replies with that.
const DEEP: &str = r#"(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_response" (func $host_response (param i32)))
  (import "wapc" "__host_response_len" (func $host_response_len (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (global $op_len (mut i32) (i32.const 0))
  (global $sink (mut i64) (i64.const 0))
  (func $bottom (result i32)
    (local $len i32)
    (if (i32.eqz (i32.load (i32.const 4100)))
      (then
        (call $guest_response (i32.const 4096) (i32.const 8))
        (return (i32.const 1))))
    (i32.store (i32.const 4100) (i32.sub (i32.load (i32.const 4100)) (i32.const 1)))
    (if (call $host_call (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 1024) (global.get $op_len) (i32.const 4096) (i32.const 8))
      (then
        (if (i32.ne (call $host_response_len) (i32.const 8)) (then (unreachable)))
        (call $host_response (i32.const 4096))
        (call $guest_response (i32.const 4096) (i32.const 8))
        (return (i32.const 1))))
    (local.set $len (call $host_error_len))
    (if (i32.gt_u (local.get $len) (i32.const 32768)) (then (unreachable)))
    (call $host_error (i32.const 8192))
    (call $guest_error (i32.const 8192) (local.get $len))
    (i32.const 0))
  ;; Three values live across the call, so each frame takes stack.
  (func $down (param $n i32) (param $a i64) (param $b i64) (param $c i64) (result i32)
    (local $r i32)
    (if (i32.eqz (local.get $n)) (then (return (call $bottom))))
    (local.set $r
      (call $down (i32.sub (local.get $n) (i32.const 1))
        (i64.add (local.get $a) (i64.const 1))
        (i64.mul (local.get $b) (i64.const 3))
        (i64.xor (local.get $c) (local.get $a))))
    (global.set $sink
      (i64.add (global.get $sink) (i64.add (local.get $a) (i64.add (local.get $b) (local.get $c)))))
    (local.get $r))
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (if (i32.or (i32.gt_u (local.get $op_len) (i32.const 64))
                (i32.ne (local.get $msg_len) (i32.const 8)))
      (then (unreachable)))
    (global.set $op_len (local.get $op_len))
    (call $guest_request (i32.const 1024) (i32.const 4096))
    (call $down (i32.load (i32.const 4096)) (i64.const 1) (i64.const 2) (i64.const 3))))"#;

/// Routes every host call back into the same actor (another instance).
#[derive(Default)]
struct Loopback {
    actor: OnceLock<Actor<Loopback>>,
}

impl HostCallHandler for Loopback {
    type Error = HostCallError;

    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
        let actor = self.actor.get().expect("the actor is loaded").clone();
        actor
            .call(&call.operation, &call.payload)
            .await
            .map_err(|e| HostCallError::new(e.to_string()))
    }
}

fn request(depth: u32, hops: u32) -> Vec<u8> {
    [depth.to_le_bytes(), hops.to_le_bytes()].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_deep_guests_calling_each_other_does_not_overflow_a_stack() -> anyhow::Result<()>
{
    let handler = Arc::new(Loopback::default());
    let actor = runtime()
        .load(
            key(70),
            &wat::parse_str(DEEP)?,
            Limits::default().instances(1, 16),
            Arc::clone(&handler),
        )
        .await?;
    assert!(handler.actor.set(actor.clone()).is_ok());
    assert!(actor.stats().inline);

    // How deep one guest may go: the deepest recursion that does not use
    // up `max_wasm_stack` (found by halving; too deep is a trap).
    let (mut fits, mut traps) = (1_000u32, 1_000_000u32);
    assert!(actor.call("deep", &request(fits, 0)).await.is_ok());
    let err = actor.call("deep", &request(traps, 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    while traps - fits > fits / 64 {
        let mid = fits + (traps - fits) / 2;
        match actor.call("deep", &request(mid, 0)).await {
            Ok(_) => fits = mid,
            Err(_) => traps = mid,
        }
    }

    // Eight guests, each using most of its stack, each calling the next
    // from the bottom of its recursion: far more than a worker thread's
    // stack holds if they shared it.
    let depth = fits / 8 * 7;
    let reply = actor.call("deep", &request(depth, 7)).await?;
    assert_eq!(reply, request(depth, 0));
    // The chain leaves the actor fit for more, inline at the top.
    assert_eq!(actor.call("deep", &request(10, 2)).await?, request(10, 0));
    Ok(())
}
