//! `http-fetch`: fetches URLs through `wascc:http_client`, whose binding
//! decides which hosts may be reached (`ALLOWED_HOSTS`).
//!
//! `GET /fetch?url=<url>` answers `{"url", "status", "bytes", "content_type"}`;
//! a refused or failed fetch is a `502` with the host's reason.

use serde_json::json;
use waxosuit_actor::{Ctx, Error, Registry, Result, actor, http};

actor! { on_init }

/// Registers the HTTP handler.
pub fn on_init(actor: &mut Registry) {
    actor.on_http_request(on_http);
}

fn json_response(code: u32, status: &str, value: serde_json::Value) -> http::Response {
    http::Response {
        status_code: code,
        status: status.into(),
        header: [("content-type".to_string(), "application/json".to_string())].into(),
        body: value.to_string().into_bytes(),
    }
}

/// `GET /fetch?url=…`
pub fn on_http(ctx: &Ctx, req: http::Request) -> Result<http::Response> {
    if req.path != "/fetch" {
        return Ok(http::Response::not_found());
    }
    let Some(url) = req
        .query_string
        .split('&')
        .find_map(|kv| kv.strip_prefix("url="))
        .filter(|u| !u.is_empty())
    else {
        return Ok(json_response(
            400,
            "Bad Request",
            json!({"error": "missing ?url="}),
        ));
    };
    match ctx.http_client().get(url) {
        Ok(resp) => Ok(json_response(
            200,
            "OK",
            json!({
                "url": url,
                "status": resp.status_code,
                "bytes": resp.body.len(),
                "content_type": resp.header.get("content-type"),
            }),
        )),
        Err(Error::HostCall { message, .. }) => Ok(json_response(
            502,
            "Bad Gateway",
            json!({"url": url, "error": message}),
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    #[test]
    fn reports_what_the_client_fetched() {
        let fake = FakeHost::new();
        fake.http_response(http::Response {
            body: b"<html/>".to_vec(),
            header: [("content-type".to_string(), "text/html".to_string())].into(),
            ..http::Response::ok()
        });
        let r = on_http(
            &fake.ctx(),
            http_request("GET", "/fetch?url=http://a.example/", ""),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 7);
        assert_eq!(v["content_type"], "text/html");
    }

    #[test]
    fn refusals_are_502_and_bad_requests_400() {
        let fake = FakeHost::new();
        fake.fail(
            "wascc:http_client",
            "PerformRequest",
            "not in ALLOWED_HOSTS",
        );
        let r = on_http(&fake.ctx(), http_request("GET", "/fetch?url=http://b/", "")).unwrap();
        assert_eq!(r.status_code, 502);
        assert!(String::from_utf8_lossy(&r.body).contains("ALLOWED_HOSTS"));
        let r = on_http(&fake.ctx(), http_request("GET", "/fetch", "")).unwrap();
        assert_eq!(r.status_code, 400);
    }
}
