//! Shared helpers: keys, runtimes and a recording host-call handler.

use std::sync::{Arc, Mutex};

use waxosuit_runtime::{
    Actor, ActorKey, HostCall, HostCallHandler, Limits, PoolingConfig, Runtime, RuntimeConfig,
    RuntimeError,
};

/// A syntactically valid actor key, distinct per `n`.
pub fn key(n: u32) -> ActorKey {
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
pub fn config() -> RuntimeConfig {
    RuntimeConfig::default().pooling(Some(PoolingConfig::default().total_instances(64)))
}

pub fn runtime() -> Runtime {
    Runtime::new(config()).expect("runtime")
}

/// Answers `default`/`test:ping`/`Ping` with `pong:` + payload, fails the
/// payload `fail` with "host says no", and records every call.
#[derive(Default)]
pub struct TestHandler {
    pub calls: Mutex<Vec<(ActorKey, HostCall)>>,
    /// When set, replies with this many bytes instead.
    pub big_reply: Option<usize>,
}

impl TestHandler {
    pub fn calls(&self) -> Vec<(ActorKey, HostCall)> {
        self.calls.lock().expect("lock").clone()
    }
}

impl HostCallHandler for TestHandler {
    async fn host_call(&self, actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, String> {
        self.calls
            .lock()
            .expect("lock")
            .push((actor.clone(), call.clone()));
        if let Some(n) = self.big_reply {
            return Ok(vec![7; n]);
        }
        if call.payload == b"fail" {
            return Err("host says no".into());
        }
        match (&*call.binding, &*call.namespace, &*call.operation) {
            ("default", "test:ping", "Ping") => {
                // Yield once so the guest really is suspended across an await.
                tokio::task::yield_now().await;
                let mut reply = b"pong:".to_vec();
                reply.extend_from_slice(&call.payload);
                Ok(reply)
            }
            (b, n, o) => Err(format!("no route for {b}/{n}/{o}")),
        }
    }
}

pub async fn load(module: &[u8], limits: Limits) -> Result<Actor<TestHandler>, RuntimeError> {
    runtime()
        .load(key(1), module, limits, Arc::new(TestHandler::default()))
        .await
}

/// Loads `module` as `key(1)` with a fresh [`TestHandler`] on a runtime
/// with `config`.
pub async fn load_on(
    config: RuntimeConfig,
    module: &[u8],
    limits: Limits,
) -> Result<Actor<TestHandler>, RuntimeError> {
    Runtime::new(config)
        .expect("runtime")
        .load(key(1), module, limits, Arc::new(TestHandler::default()))
        .await
}

pub async fn load_with(
    module: &[u8],
    limits: Limits,
    handler: Arc<TestHandler>,
) -> Result<Actor<TestHandler>, RuntimeError> {
    runtime().load(key(1), module, limits, handler).await
}

/// `n` bytes of a recognisable pattern.
pub fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// A future that is pending exactly once and then woken from another
/// thread a millisecond later: a host call that really has to wait, with
/// no timer or runtime involved.
pub async fn pending_once() {
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
