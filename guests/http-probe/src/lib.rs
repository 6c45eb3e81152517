//! HTTP test guest for the host's end-to-end tests. Routes:
//!
//! * `/`: 200 `ok`
//! * `/error`: the handler returns an error (the host must answer 500)
//! * `/trap`: the guest panics, i.e. traps (500, and the next request works)
//! * `/malformed`: replies bytes that are not an HTTP response (500)
//! * `/spin?n=N`: logs `spin started` to the console, busy-loops N
//!   iterations, then 200 `done` (a slow request for drain tests; wasm has
//!   no clock, so slowness is counted in work)
//! * `/kv`: increments `hits` in `wascc:keyvalue` and returns the count

use waxosuit_actor::{Ctx, Error, Registry, Result, actor};
use waxosuit_codec::http;

actor! { on_init }

fn on_init(actor: &mut Registry) {
    actor.on_raw(http::OP_HANDLE_REQUEST, handle);
}

fn handle(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>> {
    let request: http::Request = waxosuit_codec::deserialize(payload)?;
    let body = match request.path.as_str() {
        "/" => b"ok".to_vec(),
        "/error" => return Err(Error::msg("the probe was asked to fail")),
        "/trap" => panic!("the probe was asked to trap"),
        "/malformed" => return Ok(b"\xc1 definitely not msgpack".to_vec()),
        "/spin" => {
            // Lets drain tests see that the request is being handled.
            ctx.console_log("spin started");
            let n: u64 = request
                .query_string
                .strip_prefix("n=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            let mut x: u64 = 0;
            for i in 0..n {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            format!("done {}", x % 10).into_bytes()
        }
        "/kv" => ctx.kv().add("hits", 1)?.to_string().into_bytes(),
        _ => {
            let response = http::Response::not_found();
            return Ok(waxosuit_codec::serialize(&response)?);
        }
    };
    let response = http::Response {
        body,
        ..http::Response::ok()
    };
    Ok(waxosuit_codec::serialize(&response)?)
}
