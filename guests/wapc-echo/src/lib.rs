//! waPC test guest used by the Waxosuit runtime tests and benchmarks.
//!
//! Each operation exercises one failure or success path of the host.

use wapc_guest::prelude::*;

#[no_mangle]
pub fn wapc_init() {
    register_function("echo", echo);
    register_function("error", error);
    register_function("panic", panic);
    register_function("loop", spin);
    register_function("grow", grow);
    register_function("ping", ping);
    register_function("forward", forward);
    register_function("HealthRequest", echo);
}

fn echo(msg: &[u8]) -> CallResult {
    Ok(msg.to_vec())
}

fn error(msg: &[u8]) -> CallResult {
    Err(format!("requested failure: {}", String::from_utf8_lossy(msg)).into())
}

fn panic(_msg: &[u8]) -> CallResult {
    panic!("requested panic");
}

fn spin(_msg: &[u8]) -> CallResult {
    // `black_box` keeps the optimiser from proving the loop side-effect free
    // and removing it; the host must stop this with its deadline.
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn grow(_msg: &[u8]) -> CallResult {
    // Keep every chunk alive so linear memory has to grow until the host's
    // limit refuses it (allocation failure aborts, i.e. traps).
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = 1;
        chunks.push(std::hint::black_box(chunk));
    }
}

fn ping(msg: &[u8]) -> CallResult {
    host_call("default", "test:ping", "Ping", msg)
}

/// Makes the host call described by the payload, `binding\nnamespace\noperation\nbody`,
/// and returns the host's reply (or its error as a guest error). Lets host
/// tests drive routing and authorization from inside a real guest.
fn forward(msg: &[u8]) -> CallResult {
    let mut parts = msg.splitn(4, |b| *b == b'\n');
    let mut field = || {
        parts
            .next()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default()
    };
    let (binding, namespace, operation) = (field(), field(), field());
    let body = msg.splitn(4, |b| *b == b'\n').nth(3).unwrap_or_default();
    host_call(&binding, &namespace, &operation, body)
}
