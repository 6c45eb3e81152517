//! `{{name}}`: a Waxosuit actor that greets every HTTP request.
//!
//! Bound to `wascc:http_server`, it answers each request with `200 OK` and
//! a greeting naming the path that was asked for. Start here:
//!
//! * [`on_init`] registers the handlers; `actor!` makes it the module's
//!   `wapc_init` export, which the host calls once per instance.
//! * [`greet`] is the HTTP handler. Capabilities (key-value, messaging,
//!   logging, ...) are reached through its `Ctx`; each one the actor uses
//!   must also be granted when the module is signed (`--keyvalue`, ...).
//! * The tests at the bottom run the handler natively with the SDK's fake
//!   host: `cargo test`.

use waxosuit_actor::{Ctx, Registry, Result, actor, http};

actor! { on_init }

/// Registers the actor's handlers.
pub fn on_init(actor: &mut Registry) {
    actor.on_http_request(greet);
}

/// Answers every request with a greeting that includes its path.
///
/// # Errors
///
/// None today; a handler's `Err` reaches the host as a failed call.
pub fn greet(_ctx: &Ctx, request: http::Request) -> Result<http::Response> {
    let mut response = http::Response {
        body: format!("Hello from {{name}}! You asked for {}\n", request.path).into_bytes(),
        ..http::Response::ok()
    };
    // The path is echoed back: plain text keeps a browser from rendering it.
    response.header.insert(
        "Content-Type".to_string(),
        "text/plain; charset=utf-8".to_string(),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    #[test]
    fn greets_with_the_request_path() {
        let fake = FakeHost::new();
        // The same registry the host builds from `wapc_init`.
        let registry = Registry::from_init(on_init);
        let response: http::Response = registry
            .invoke(
                &fake.ctx(),
                http::OP_HANDLE_REQUEST,
                &http_request("GET", "/hello/world?x=1", ""),
            )
            .unwrap();
        assert_eq!(response.status_code, 200);
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            "Hello from {{name}}! You asked for /hello/world\n"
        );
        // The handler needs no capability, so it made no host call.
        assert!(fake.calls().is_empty());
    }
}
