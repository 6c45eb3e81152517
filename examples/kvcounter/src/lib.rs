//! `kvcounter`: the classic waSCC key-value counter.
//!
//! Every HTTP request atomically increments the counter `counter:<path>` in
//! `wascc:keyvalue` and answers `200 OK` with `{"counter": N}`, the value
//! after the increment. Requires the `wascc:http_server` and
//! `wascc:keyvalue` capabilities.

use waxosuit_actor::{Ctx, Registry, Result, actor, http};

actor! { on_init }

/// Registers the HTTP handler.
pub fn on_init(actor: &mut Registry) {
    actor.on_http_request(count);
}

/// The key counting requests to `path`.
pub fn counter_key(path: &str) -> String {
    format!("counter:{path}")
}

/// Increments the request path's counter and reports its new value.
///
/// # Errors
///
/// The key-value store call failed (not bound, or the key holds something
/// other than an integer); the HTTP server then answers 500.
pub fn count(ctx: &Ctx, request: http::Request) -> Result<http::Response> {
    let value = ctx.kv().add(&counter_key(&request.path), 1)?;
    let mut response = http::Response::json(&serde_json::json!({ "counter": value }), 200, "OK")?;
    response
        .header
        .insert("Content-Type".to_string(), "application/json".to_string());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    fn get(registry: &Registry, fake: &FakeHost, path: &str) -> Result<http::Response> {
        registry.invoke(
            &fake.ctx(),
            http::OP_HANDLE_REQUEST,
            &http_request("GET", path, ""),
        )
    }

    fn counter(response: &http::Response) -> i64 {
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        body["counter"].as_i64().unwrap()
    }

    #[test]
    fn counter_rises_per_path() {
        let fake = FakeHost::new();
        let registry = Registry::from_init(on_init);
        for expected in 1..=3 {
            let response = get(&registry, &fake, "/a").unwrap();
            assert_eq!(response.status_code, 200);
            assert_eq!(response.header["Content-Type"], "application/json");
            assert_eq!(counter(&response), expected);
        }
        assert_eq!(counter(&get(&registry, &fake, "/b").unwrap()), 1);
        assert_eq!(fake.kv_string("counter:/a").as_deref(), Some("3"));
        assert_eq!(fake.kv_string("counter:/b").as_deref(), Some("1"));
        let body = get(&registry, &fake, "/a").unwrap().body;
        assert_eq!(body, br#"{"counter":4}"#);
    }

    #[test]
    fn store_failure_fails_the_request() {
        let fake = FakeHost::new();
        fake.fail("wascc:keyvalue", "Add", "no store bound");
        let err = get(&Registry::from_init(on_init), &fake, "/a").unwrap_err();
        assert!(err.to_string().contains("no store bound"), "{err}");
    }
}
