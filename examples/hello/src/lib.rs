//! `hello`: the smallest useful Waxosuit actor.
//!
//! Bound to `wascc:http_server`, it answers every request with
//! `200 OK` and the body `Hello from Waxosuit!\n`. It is also the actor the
//! host's latency benchmarks call, so it does as little as possible per
//! request: it never decodes the incoming request (whose body could be
//! large) and only encodes its fixed response.

use waxosuit_actor::{Ctx, Registry, Result, actor};
use waxosuit_codec::http;

actor! { on_init }

/// The response body.
pub const GREETING: &str = "Hello from Waxosuit!\n";

/// Registers the single handler.
pub fn on_init(actor: &mut Registry) {
    // Raw rather than `on_http_request`: the request's content is
    // irrelevant, so skipping its decoding is the whole fast path.
    actor.on_raw(http::OP_HANDLE_REQUEST, hello);
}

/// Answers any `HandleRequest` payload with the greeting.
///
/// # Errors
///
/// Only if the response cannot be encoded, which cannot happen for this
/// fixed value; the `Result` is the handler signature's.
pub fn hello(_ctx: &Ctx, _request: &[u8]) -> Result<Vec<u8>> {
    // The answer never changes: encode it once per instance.
    static ENCODED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if let Some(bytes) = ENCODED.get() {
        return Ok(bytes.clone());
    }
    let response = http::Response {
        body: GREETING.as_bytes().to_vec(),
        ..http::Response::ok()
    };
    let bytes = waxosuit_codec::serialize(&response)?;
    Ok(ENCODED.get_or_init(|| bytes).clone())
}

#[cfg(test)]
mod tests {
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    #[test]
    fn greets_any_request_without_touching_the_host() {
        let fake = FakeHost::new();
        let registry = Registry::from_init(on_init);
        for (method, path) in [("GET", "/"), ("POST", "/anything?x=1")] {
            let response: http::Response = registry
                .invoke(
                    &fake.ctx(),
                    http::OP_HANDLE_REQUEST,
                    &http_request(method, path, "ignored"),
                )
                .unwrap();
            assert_eq!(response.status_code, 200);
            assert_eq!(response.status, "OK");
            assert_eq!(response.body, b"Hello from Waxosuit!\n");
        }
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn answers_health_and_nothing_else() {
        let fake = FakeHost::new();
        let registry = Registry::from_init(on_init);
        let health =
            waxosuit_codec::serialize(&waxosuit_codec::core::HealthRequest::default()).unwrap();
        assert!(
            registry
                .dispatch(&fake.ctx(), "HealthRequest", &health)
                .is_ok()
        );
        let err = registry.dispatch(&fake.ctx(), "Other", b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"no handler registered for operation "Other""#
        );
    }
}
