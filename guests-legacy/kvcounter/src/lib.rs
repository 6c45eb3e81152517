//! The classic waSCC key-value counter, unchanged in spirit from the waSCC
//! examples: HTTP request → `AtomicAdd` on `wascc:keyvalue` → JSON.

extern crate wascc_actor as actor;

use actor::prelude::*;
use serde_json::json;

actor_handlers! {
    codec::http::OP_HANDLE_REQUEST => increment_counter,
    codec::core::OP_HEALTH_REQUEST => health
}

fn increment_counter(msg: codec::http::Request) -> HandlerResult<codec::http::Response> {
    let key = msg.path.replace('/', ":");
    let value = keyvalue::default().atomic_add(&key, 1)?;
    let result = json!({ "counter": value });
    Ok(codec::http::Response::json(result, 200, "OK"))
}

fn health(_req: codec::core::HealthRequest) -> HandlerResult<()> {
    Ok(())
}
