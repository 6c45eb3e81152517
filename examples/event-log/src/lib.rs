//! `event-log`: an append-only log on `wascc:eventstreams`.
//!
//! * `POST /events/<stream>` with a JSON object of strings appends an event
//!   and answers `201` `{"id"}`.
//! * `GET /events/<stream>?limit=N` answers `200` `{"events": [{"id", "values"}]}`.
//! * Events delivered by the provider on subscribed streams (binding value
//!   `STREAMS`) are counted in `wascc:keyvalue` under `delivered:<stream>`.

use std::collections::HashMap;

use serde_json::json;
use waxosuit_actor::codec::eventstreams::Event;
use waxosuit_actor::{Ctx, Registry, Result, actor, http};

actor! { on_init }

/// Registers the HTTP and event handlers.
pub fn on_init(actor: &mut Registry) {
    actor.on_http_request(on_http);
    actor.on_event(on_event);
}

fn reply(code: u32, status: &str, value: serde_json::Value) -> http::Response {
    http::Response {
        status_code: code,
        status: status.into(),
        header: [("content-type".to_string(), "application/json".to_string())].into(),
        body: value.to_string().into_bytes(),
    }
}

/// Counts delivered events per stream.
pub fn on_event(ctx: &Ctx, event: Event) -> Result<()> {
    ctx.kv().add(&format!("delivered:{}", event.stream), 1)?;
    Ok(())
}

/// The HTTP routes described above.
pub fn on_http(ctx: &Ctx, req: http::Request) -> Result<http::Response> {
    let stream = match req.path.strip_prefix("/events/") {
        Some(s) if !s.is_empty() && !s.contains('/') => s,
        _ => return Ok(http::Response::not_found()),
    };
    match req.method.as_str() {
        "POST" => {
            let Ok(values) = serde_json::from_slice::<HashMap<String, String>>(&req.body) else {
                return Ok(reply(
                    400,
                    "Bad Request",
                    json!({"error": "the body must be a JSON object of strings"}),
                ));
            };
            let id = ctx.events().write_event(stream, values)?;
            Ok(reply(201, "Created", json!({ "id": id })))
        }
        "GET" => {
            let limit = req
                .query_string
                .strip_prefix("limit=")
                .and_then(|n| n.parse().ok());
            let events = match limit {
                Some(n) => ctx.events().read_limit(stream, n)?,
                None => ctx.events().read_all(stream)?,
            };
            let events: Vec<_> = events
                .into_iter()
                .map(|e| json!({"id": e.event_id, "values": e.values}))
                .collect();
            Ok(reply(200, "OK", json!({ "events": events })))
        }
        _ => Ok(http::Response::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    #[test]
    fn append_then_query() {
        let fake = FakeHost::new();
        for n in ["1", "2"] {
            let r = on_http(
                &fake.ctx(),
                http_request("POST", "/events/orders", format!(r#"{{"n":"{n}"}}"#)),
            )
            .unwrap();
            assert_eq!(r.status_code, 201);
        }
        let r = on_http(&fake.ctx(), http_request("GET", "/events/orders", "")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 2);
        assert_eq!(v["events"][0]["values"]["n"], "1");
        let r = on_http(
            &fake.ctx(),
            http_request("GET", "/events/orders?limit=1", ""),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_bodies_and_paths() {
        let fake = FakeHost::new();
        let r = on_http(&fake.ctx(), http_request("POST", "/events/x", "nope")).unwrap();
        assert_eq!(r.status_code, 400);
        let r = on_http(&fake.ctx(), http_request("GET", "/elsewhere", "")).unwrap();
        assert_eq!(r.status_code, 404);
    }

    #[test]
    fn delivered_events_are_counted() {
        let fake = FakeHost::new();
        let event = Event {
            event_id: "1-0".into(),
            stream: "orders".into(),
            values: HashMap::new(),
        };
        on_event(&fake.ctx(), event.clone()).unwrap();
        on_event(&fake.ctx(), event).unwrap();
        assert_eq!(fake.kv_string("delivered:orders").as_deref(), Some("2"));
    }
}
