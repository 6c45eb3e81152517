//! `iot-sensor`: a small sensor-ingest microservice, in the spirit of the
//! original Waxosuit article: devices post readings over HTTP, the actor
//! keeps them in `wascc:keyvalue`, and anyone can ask for a sensor's state.
//!
//! | Route | Body | Answer |
//! |---|---|---|
//! | `POST /readings/<sensor>` | `{"value": 21.5}` | `201` `{"id": "<guid>", "sensor": "t1", "value": 21.5, "count": 3}` |
//! | `GET /sensors/<sensor>` | | `200` `{"sensor": "t1", "latest": {"id": "<guid>", "value": 21.5}, "count": 3, "recent": [21.5, 20.0, 19.5]}` |
//! | `GET /sensors` | | `200` `{"sensors": ["t1", "t2"]}` |
//!
//! `recent` holds the last 10 values, newest first; `count` counts every
//! reading ever accepted. Errors are JSON `{"error": "<message>"}`: `400`
//! for a body that is not a reading or a malformed sensor id, `404` for an
//! unknown path or sensor, `405` for a known path with the wrong method.
//!
//! Each accepted reading gets an id from `wascc:extras` and is logged at
//! info level through `wascc:logging`. Storage layout, per sensor `s`:
//! `sensor:s:latest` (the last reading as JSON), `sensor:s:history` (a list
//! of readings, newest first, capped at 100), `sensor:s:count` (a counter),
//! plus the set `sensors` of all sensor ids.

use serde::{Deserialize, Serialize};
use serde_json::json;
use waxosuit_actor::{Ctx, Error, Registry, Result, actor, http};

actor! { on_init }

/// How many readings a sensor's history keeps.
pub const HISTORY_CAP: i32 = 100;
/// How many recent values `GET /sensors/<sensor>` returns.
pub const RECENT: i32 = 10;
/// The set of every sensor id that has reported.
pub const SENSORS_KEY: &str = "sensors";

/// Registers the HTTP handler.
pub fn on_init(actor: &mut Registry) {
    actor.on_http_request(handle);
}

/// The request body of `POST /readings/<sensor>`.
#[derive(Debug, Deserialize)]
struct NewReading {
    value: f64,
}

/// A reading as stored: the id keeps otherwise equal values apart in the
/// history list, which the capping relies on.
#[derive(Debug, Serialize, Deserialize)]
struct StoredReading {
    id: String,
    value: f64,
}

/// Routes one HTTP request.
///
/// # Errors
///
/// A capability call failed or stored data is corrupt; the HTTP server
/// turns this into a 500. Client mistakes are answered with 4xx responses,
/// not errors.
pub fn handle(ctx: &Ctx, request: http::Request) -> Result<http::Response> {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let method = request.method.as_str();
    match segments.as_slice() {
        ["readings", sensor] if !sensor.is_empty() => match method {
            "POST" => with_sensor(sensor, |s| record(ctx, s, &request.body)),
            _ => method_not_allowed("POST"),
        },
        ["sensors", sensor] if !sensor.is_empty() => match method {
            "GET" => with_sensor(sensor, |s| report(ctx, s)),
            _ => method_not_allowed("GET"),
        },
        ["sensors"] => match method {
            "GET" => list(ctx),
            _ => method_not_allowed("GET"),
        },
        _ => problem(404, "Not Found", &format!("no route for {}", request.path)),
    }
}

/// Rejects sensor ids that could not safely be part of a storage key
/// (`:` would let one sensor's keys alias another's).
fn with_sensor(
    sensor: &str,
    then: impl FnOnce(&str) -> Result<http::Response>,
) -> Result<http::Response> {
    let valid = sensor.len() <= 64
        && sensor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        then(sensor)
    } else {
        problem(
            400,
            "Bad Request",
            "invalid sensor id: use up to 64 of A-Z a-z 0-9 - _ .",
        )
    }
}

fn record(ctx: &Ctx, sensor: &str, body: &[u8]) -> Result<http::Response> {
    let reading: NewReading = match serde_json::from_slice(body) {
        Ok(reading) => reading,
        Err(e) => return problem(400, "Bad Request", &format!("invalid reading: {e}")),
    };
    let stored = StoredReading {
        id: ctx.extras().guid()?,
        value: reading.value,
    };
    let encoded = serde_json::to_string(&stored).map_err(Error::msg)?;

    // Not a transaction: a failure part-way leaves earlier writes in place,
    // which a retried POST simply supersedes.
    let kv = ctx.kv();
    kv.set(&key(sensor, "latest"), &encoded, None)?;
    let history = key(sensor, "history");
    if kv.list_push(&history, &encoded)? > HISTORY_CAP {
        // There is no trim operation in the contract; readings are unique
        // (they carry their id), so deleting by value removes exactly the
        // overflowing oldest ones.
        for old in kv.list_range(&history, HISTORY_CAP, -1)? {
            kv.list_del_item(&history, &old)?;
        }
    }
    let count = kv.add(&key(sensor, "count"), 1)?;
    kv.set_add(SENSORS_KEY, sensor)?;

    let line = format!(
        "reading {} from sensor {sensor}: {}",
        stored.id, stored.value
    );
    if let Err(e) = ctx.log().info(&line) {
        // The reading is stored; losing the log sink must not turn that into
        // a failed request. The console needs no capability.
        ctx.console_log(&format!("{line} (logging unavailable: {e})"));
    }

    json_response(
        201,
        "Created",
        &json!({ "id": stored.id, "sensor": sensor, "value": stored.value, "count": count }),
    )
}

fn report(ctx: &Ctx, sensor: &str) -> Result<http::Response> {
    let kv = ctx.kv();
    let Some(latest) = kv.get(&key(sensor, "latest"))? else {
        return problem(404, "Not Found", &format!("unknown sensor {sensor}"));
    };
    let latest = parse_reading(sensor, &latest)?;
    let count: i64 = match kv.get(&key(sensor, "count"))? {
        Some(count) => count
            .parse()
            .map_err(|e| Error::msg(format!("corrupt count for sensor {sensor}: {e}")))?,
        None => 0,
    };
    let recent = kv
        .list_range(&key(sensor, "history"), 0, RECENT - 1)?
        .iter()
        .map(|item| parse_reading(sensor, item).map(|r| r.value))
        .collect::<Result<Vec<f64>>>()?;
    json_response(
        200,
        "OK",
        &json!({ "sensor": sensor, "latest": latest, "count": count, "recent": recent }),
    )
}

fn list(ctx: &Ctx) -> Result<http::Response> {
    let mut sensors = ctx.kv().set_members(SENSORS_KEY)?;
    // Set order is up to the provider; sort for stable output.
    sensors.sort_unstable();
    json_response(200, "OK", &json!({ "sensors": sensors }))
}

fn key(sensor: &str, field: &str) -> String {
    format!("sensor:{sensor}:{field}")
}

fn parse_reading(sensor: &str, stored: &str) -> Result<StoredReading> {
    serde_json::from_str(stored)
        .map_err(|e| Error::msg(format!("corrupt stored reading for sensor {sensor}: {e}")))
}

fn json_response(code: u32, status: &str, body: &serde_json::Value) -> Result<http::Response> {
    let mut response = http::Response::json(body, code, status)?;
    response
        .header
        .insert("Content-Type".to_string(), "application/json".to_string());
    Ok(response)
}

fn problem(code: u32, status: &str, message: &str) -> Result<http::Response> {
    json_response(code, status, &json!({ "error": message }))
}

fn method_not_allowed(allowed: &str) -> Result<http::Response> {
    let mut response = problem(405, "Method Not Allowed", "method not allowed")?;
    response
        .header
        .insert("Allow".to_string(), allowed.to_string());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    struct Service {
        fake: FakeHost,
        registry: Registry,
    }

    impl Service {
        fn new() -> Self {
            Self {
                fake: FakeHost::new(),
                registry: Registry::from_init(on_init),
            }
        }

        fn call(&self, method: &str, path: &str, body: &str) -> (u32, Value) {
            let response: http::Response = self
                .registry
                .invoke(
                    &self.fake.ctx(),
                    http::OP_HANDLE_REQUEST,
                    &http_request(method, path, body),
                )
                .unwrap();
            assert_eq!(response.header["Content-Type"], "application/json");
            let body = serde_json::from_slice(&response.body).unwrap();
            (response.status_code, body)
        }

        fn post(&self, sensor: &str, value: f64) -> Value {
            let (code, body) = self.call(
                "POST",
                &format!("/readings/{sensor}"),
                &json!({ "value": value }).to_string(),
            );
            assert_eq!(code, 201, "{body}");
            body
        }
    }

    #[test]
    fn readings_flow_into_the_sensor_report() {
        let svc = Service::new();
        let first = svc.post("t1", 19.5);
        assert_eq!(first["count"], 1);
        assert_eq!(first["sensor"], "t1");
        assert_eq!(first["value"], 19.5);
        assert_eq!(first["id"], "00000000-0000-4000-8000-000000000001");
        svc.post("t1", 20.0);
        let third = svc.post("t1", 21.5);
        assert_eq!(third["count"], 3);

        let (code, report) = svc.call("GET", "/sensors/t1", "");
        assert_eq!(code, 200);
        assert_eq!(
            report,
            json!({
                "sensor": "t1",
                "latest": { "id": third["id"], "value": 21.5 },
                "count": 3,
                "recent": [21.5, 20.0, 19.5],
            })
        );

        svc.post("t2", -4.0);
        let (code, list) = svc.call("GET", "/sensors", "");
        assert_eq!(code, 200);
        assert_eq!(list, json!({ "sensors": ["t1", "t2"] }));
    }

    #[test]
    fn each_reading_is_logged_with_its_id() {
        let svc = Service::new();
        let reading = svc.post("boiler", 71.25);
        let logs = svc.fake.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, waxosuit_codec::logging::LEVEL_INFO);
        assert_eq!(
            logs[0].body,
            format!(
                "reading {} from sensor boiler: 71.25",
                reading["id"].as_str().unwrap()
            )
        );
    }

    #[test]
    fn a_missing_log_sink_does_not_fail_the_reading() {
        let svc = Service::new();
        svc.fake
            .fail("wascc:logging", "WriteLog", "PERMISSION DENIED");
        svc.post("t1", 1.0);
        let console = svc.fake.console();
        assert_eq!(console.len(), 1);
        assert!(console[0].contains("logging unavailable"), "{console:?}");
        assert!(console[0].contains("PERMISSION DENIED"), "{console:?}");
    }

    #[test]
    fn history_is_capped_and_report_shows_the_last_ten() {
        let svc = Service::new();
        let total = 105;
        for n in 0..total {
            svc.post("t1", f64::from(n));
        }
        assert_eq!(svc.fake.kv_list("sensor:t1:history").len(), 100);
        let (_, report) = svc.call("GET", "/sensors/t1", "");
        assert_eq!(report["count"], total);
        let expected: Vec<f64> = (95..total).rev().map(f64::from).collect();
        assert_eq!(report["recent"], json!(expected));
        // The oldest surviving reading is number 5.
        let oldest = svc.fake.kv_list("sensor:t1:history").pop().unwrap();
        let oldest: Value = serde_json::from_str(&oldest).unwrap();
        assert_eq!(oldest["value"], 5.0);
    }

    #[test]
    fn equal_values_are_kept_apart() {
        let svc = Service::new();
        for _ in 0..3 {
            svc.post("t1", 1.0);
        }
        let (_, report) = svc.call("GET", "/sensors/t1", "");
        assert_eq!(report["recent"], json!([1.0, 1.0, 1.0]));
    }

    #[test]
    fn bad_bodies_are_400_and_store_nothing() {
        let svc = Service::new();
        for body in [
            "",
            "not json",
            r#"{"value": "hot"}"#,
            r#"{"temp": 3}"#,
            "{}",
        ] {
            let (code, reply) = svc.call("POST", "/readings/t1", body);
            assert_eq!(code, 400, "{body}");
            let message = reply["error"].as_str().unwrap();
            assert!(message.starts_with("invalid reading: "), "{message}");
        }
        assert!(svc.fake.calls().is_empty(), "nothing reached the host");
        let (code, _) = svc.call("GET", "/sensors/t1", "");
        assert_eq!(code, 404);
    }

    #[test]
    fn unknown_paths_sensors_and_methods() {
        let svc = Service::new();
        for path in [
            "/",
            "/readings",
            "/readings/",
            "/sensors/",
            "/readings/t1/x",
            "/other",
        ] {
            let (code, reply) = svc.call("GET", path, "");
            assert_eq!(code, 404, "{path}: {reply}");
            assert!(
                reply["error"].as_str().unwrap().contains("no route"),
                "{reply}"
            );
        }
        let (code, reply) = svc.call("GET", "/sensors/ghost", "");
        assert_eq!(
            (code, reply),
            (404, json!({ "error": "unknown sensor ghost" }))
        );

        let (code, _) = svc.call("GET", "/readings/t1", "");
        assert_eq!(code, 405);
        let (code, _) = svc.call("DELETE", "/sensors/t1", "");
        assert_eq!(code, 405);
        let (code, _) = svc.call("POST", "/sensors", "");
        assert_eq!(code, 405);
    }

    #[test]
    fn malformed_sensor_ids_are_rejected() {
        let svc = Service::new();
        let long = "x".repeat(65);
        for sensor in ["a:b", "caf%C3%A9", long.as_str()] {
            let (code, reply) = svc.call("POST", &format!("/readings/{sensor}"), r#"{"value":1}"#);
            assert_eq!(code, 400, "{sensor}");
            assert!(
                reply["error"]
                    .as_str()
                    .unwrap()
                    .contains("invalid sensor id")
            );
        }
        svc.post(&"x".repeat(64), 1.0);
    }

    #[test]
    fn store_failures_become_guest_errors() {
        let svc = Service::new();
        svc.fake.fail("wascc:keyvalue", "Push", "store offline");
        let err = svc
            .registry
            .invoke::<_, http::Response>(
                &svc.fake.ctx(),
                http::OP_HANDLE_REQUEST,
                &http_request("POST", "/readings/t1", r#"{"value":1}"#),
            )
            .unwrap_err();
        assert!(err.to_string().contains("store offline"), "{err}");
    }

    #[test]
    fn corrupt_stored_data_is_an_error_not_a_guess() {
        let svc = Service::new();
        svc.fake.kv_insert("sensor:t1:latest", "{broken");
        let err = svc
            .registry
            .invoke::<_, http::Response>(
                &svc.fake.ctx(),
                http::OP_HANDLE_REQUEST,
                &http_request("GET", "/sensors/t1", ""),
            )
            .unwrap_err();
        assert!(err.to_string().contains("corrupt stored reading"), "{err}");
    }
}
