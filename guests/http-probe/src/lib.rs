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
//! * `/echo…` (any path starting so): 200 with a JSON object of what the
//!   actor received (`method`, `path`, `query`, `headers`, `body` as text)
//!   and `"greeting": "hello"`, `content-type: application/json`; for
//!   request filters to show what reached the actor

use waxosuit_actor::{Ctx, Error, Registry, Result, actor};
use waxosuit_codec::http;

actor! { on_init }

fn on_init(actor: &mut Registry) {
    actor.on_raw(http::OP_HANDLE_REQUEST, handle);
}

fn handle(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>> {
    let request: http::Request = waxosuit_codec::deserialize(payload)?;
    if request.path.starts_with("/echo") || request.path == "/rewritten" {
        return echo(&request);
    }
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

/// `/echo`: what the actor received, as JSON.
fn echo(request: &http::Request) -> Result<Vec<u8>> {
    let headers: std::collections::BTreeMap<&str, &str> = request
        .header
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let seen = Echo {
        greeting: "hello",
        method: &request.method,
        path: &request.path,
        query: &request.query_string,
        headers,
        body: String::from_utf8_lossy(&request.body).into_owned(),
    };
    let mut response = http::Response::json(&seen, 200, "OK")?;
    response
        .header
        .insert("content-type".to_string(), "application/json".to_string());
    Ok(waxosuit_codec::serialize(&response)?)
}

#[derive(serde::Serialize)]
struct Echo<'a> {
    greeting: &'a str,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: std::collections::BTreeMap<&'a str, &'a str>,
    body: String,
}
