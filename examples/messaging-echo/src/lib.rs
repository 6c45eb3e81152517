//! `messaging-echo`: a service on the message bus (`wascc:messaging`).
//!
//! * Every message on a subscribed subject (binding value `SUBSCRIPTION`)
//!   that carries a reply subject is answered with `echo: <body>`; messages
//!   without one are counted in `wascc:keyvalue` under `seen:<subject>`
//!   when the actor is bound to a key-value store, and logged otherwise.
//! * Over HTTP: `POST /publish/<subject>` publishes the body;
//!   `POST /ask/<subject>` sends a request and returns the reply (2 s timeout).

use waxosuit_actor::codec::messaging::BrokerMessage;
use waxosuit_actor::{Ctx, Error, Registry, Result, actor, http};

actor! { on_init }

/// How long `POST /ask/<subject>` waits for a reply.
pub const ASK_TIMEOUT_MS: u32 = 2_000;

/// Registers the message and HTTP handlers.
pub fn on_init(actor: &mut Registry) {
    actor.on_message(on_message);
    actor.on_http_request(on_http);
}

/// Answers requests, counts notifications.
pub fn on_message(ctx: &Ctx, msg: BrokerMessage) -> Result<()> {
    if !msg.reply_to.is_empty() {
        let mut reply = b"echo: ".to_vec();
        reply.extend_from_slice(&msg.body);
        return ctx.msg().publish(&msg.reply_to, None, &reply);
    }
    if ctx.kv().add(&format!("seen:{}", msg.subject), 1).is_err() {
        ctx.console_log(&format!(
            "message on {} ({} bytes)",
            msg.subject,
            msg.body.len()
        ));
    }
    Ok(())
}

/// `POST /publish/<subject>` and `POST /ask/<subject>`.
pub fn on_http(ctx: &Ctx, req: http::Request) -> Result<http::Response> {
    let route = req.path.trim_start_matches('/').split_once('/');
    match (req.method.as_str(), route) {
        ("POST", Some(("publish", subject))) if !subject.is_empty() => {
            ctx.msg().publish(subject, None, &req.body)?;
            Ok(http::Response {
                status_code: 202,
                status: "Accepted".into(),
                ..http::Response::ok()
            })
        }
        ("POST", Some(("ask", subject))) if !subject.is_empty() => {
            match ctx.msg().request(subject, &req.body, ASK_TIMEOUT_MS) {
                Ok(body) => Ok(http::Response {
                    body,
                    ..http::Response::ok()
                }),
                Err(Error::HostCall { message, .. }) => Ok(http::Response {
                    status_code: 504,
                    status: "Gateway Timeout".into(),
                    body: message.into_bytes(),
                    ..http::Response::ok()
                }),
                Err(e) => Err(e),
            }
        }
        _ => Ok(http::Response::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    fn message(subject: &str, reply_to: &str, body: &[u8]) -> BrokerMessage {
        BrokerMessage {
            subject: subject.into(),
            reply_to: reply_to.into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn requests_are_answered_on_their_reply_subject() {
        let fake = FakeHost::new();
        on_message(&fake.ctx(), message("greet", "_INBOX.1", b"hi")).unwrap();
        let published = fake.published();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].message.subject, "_INBOX.1");
        assert_eq!(published[0].message.body, b"echo: hi");
    }

    #[test]
    fn notifications_are_counted() {
        let fake = FakeHost::new();
        on_message(&fake.ctx(), message("sensor.t1", "", b"1")).unwrap();
        on_message(&fake.ctx(), message("sensor.t1", "", b"2")).unwrap();
        assert_eq!(fake.kv_string("seen:sensor.t1").as_deref(), Some("2"));
        assert!(fake.published().is_empty());
    }

    #[test]
    fn http_publishes_and_asks() {
        let fake = FakeHost::new();
        fake.reply_to_request("svc.time", b"noon".to_vec());
        let r = on_http(&fake.ctx(), http_request("POST", "/publish/news", "x")).unwrap();
        assert_eq!(r.status_code, 202);
        assert_eq!(fake.published()[0].message.subject, "news");
        let r = on_http(&fake.ctx(), http_request("POST", "/ask/svc.time", "?")).unwrap();
        assert_eq!((r.status_code, r.body.as_slice()), (200, &b"noon"[..]));
        let r = on_http(&fake.ctx(), http_request("GET", "/elsewhere", "")).unwrap();
        assert_eq!(r.status_code, 404);
    }
}
