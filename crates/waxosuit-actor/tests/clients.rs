//! Every capability client against the in-memory `FakeHost`, checking both
//! what the client returns and what went over the (fake) wire.

use std::collections::HashMap;

use waxosuit_actor::codec::blobstore::{Blob, FileChunk, StreamRequest};
use waxosuit_actor::codec::extras::GeneratorRequest;
use waxosuit_actor::codec::keyvalue::SetRequest;
use waxosuit_actor::codec::logging;
use waxosuit_actor::codec::messaging::{BrokerMessage, RequestMessage};
use waxosuit_actor::testing::{FakeHost, LogLine, RecordedCall};
use waxosuit_actor::{Error, http};

fn last_call(fake: &FakeHost) -> RecordedCall {
    fake.calls().pop().expect("a host call was made")
}

#[test]
fn kv_strings_and_counters() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let kv = ctx.kv();

    assert_eq!(kv.get("k").unwrap(), None);
    assert!(!kv.exists("k").unwrap());
    kv.set("k", "v", None).unwrap();
    let set_payload = last_call(&fake).payload;
    assert_eq!(kv.get("k").unwrap().as_deref(), Some("v"));
    assert!(kv.exists("k").unwrap());
    // An empty string is a value, not absence.
    kv.set("empty", "", None).unwrap();
    assert_eq!(kv.get("empty").unwrap().as_deref(), Some(""));

    // The exact bytes of wascc-codec 0.8.1 for SetRequest{k, v, 0} (spec
    // §13.2): the client adds nothing of its own.
    assert_eq!(
        set_payload,
        b"\x83\xa3key\xa1k\xa5value\xa1v\xa7expires\x00"
    );
    kv.set("ttl", "x", Some(30)).unwrap();
    assert_eq!(fake.kv_expiry("ttl"), Some(30));
    let sent: SetRequest = waxosuit_codec::deserialize(&last_call(&fake).payload).unwrap();
    assert_eq!(sent.expires_s, 30);
    kv.set("ttl", "y", Some(u32::MAX)).unwrap();
    let sent: SetRequest = waxosuit_codec::deserialize(&last_call(&fake).payload).unwrap();
    assert_eq!(sent.expires_s, i32::MAX, "an oversized TTL saturates");
    kv.set("ttl", "z", None).unwrap();
    assert_eq!(fake.kv_expiry("ttl"), None);

    assert_eq!(kv.add("n", 1).unwrap(), 1);
    assert_eq!(kv.atomic_add("n", 5).unwrap(), 6);
    assert_eq!(kv.add("n", -10).unwrap(), -4);
    assert_eq!(kv.get("n").unwrap().as_deref(), Some("-4"));
    let err = kv.add("k", 1).unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    kv.set("plus", "+1", None).unwrap();
    assert!(kv.add("plus", 1).is_err(), "not a canonical integer");
    kv.set("big", &i32::MAX.to_string(), None).unwrap();
    let err = kv.add("big", 1).unwrap_err();
    // The host's text, not one of the fake's own.
    assert!(err.to_string().contains("32-bit range"), "{err}");
    assert_eq!(
        kv.get("big").unwrap(),
        Some(i32::MAX.to_string()),
        "unchanged"
    );

    kv.del("k").unwrap();
    assert_eq!(kv.get("k").unwrap(), None);
    kv.del("never-there").unwrap();

    let call = last_call(&fake);
    assert_eq!(
        (
            call.binding.as_str(),
            call.namespace.as_str(),
            call.operation.as_str()
        ),
        ("default", "wascc:keyvalue", "Del")
    );
}

#[test]
fn kv_lists_follow_redis_semantics() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let kv = ctx.kv();

    assert_eq!(kv.list_range("l", 0, -1).unwrap(), Vec::<String>::new());
    assert_eq!(kv.list_push("l", "a").unwrap(), 1);
    assert_eq!(kv.list_push("l", "b").unwrap(), 2);
    assert_eq!(kv.list_push("l", "c").unwrap(), 3);
    assert_eq!(kv.list_push("l", "b").unwrap(), 4);
    // Push prepends (LPUSH), so the newest item comes first.
    assert_eq!(kv.list_range("l", 0, -1).unwrap(), ["b", "c", "b", "a"]);
    assert_eq!(kv.list_range("l", 1, 2).unwrap(), ["c", "b"]);
    assert_eq!(kv.list_range("l", -2, -1).unwrap(), ["b", "a"]);
    assert_eq!(kv.list_range("l", 0, 100).unwrap(), ["b", "c", "b", "a"]);
    assert_eq!(kv.list_range("l", -100, 0).unwrap(), ["b"]);
    assert_eq!(kv.list_range("l", 3, 1).unwrap(), Vec::<String>::new());
    assert_eq!(kv.list_range("l", 10, 20).unwrap(), Vec::<String>::new());

    // Every occurrence goes.
    assert_eq!(kv.list_del_item("l", "b").unwrap(), 2);
    assert_eq!(fake.kv_list("l"), ["c", "a"]);
    assert_eq!(kv.list_del_item("l", "zzz").unwrap(), 2);

    // A key holds one kind of value at a time.
    let err = kv.get("l").unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    kv.set("s", "string", None).unwrap();
    assert!(kv.list_push("s", "x").is_err());

    assert!(kv.list_clear("s").is_err(), "Clear only deletes lists");
    assert_eq!(kv.get("s").unwrap().as_deref(), Some("string"));
    kv.list_clear("l").unwrap();
    kv.list_clear("never-there").unwrap();
    assert!(!kv.exists("l").unwrap());
    assert!(fake.kv_list("l").is_empty());

    // Removing the last item removes the key.
    kv.list_push("one", "x").unwrap();
    assert_eq!(kv.list_del_item("one", "x").unwrap(), 0);
    assert!(!kv.exists("one").unwrap());
}

#[test]
fn kv_sets() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let kv = ctx.kv();

    assert_eq!(kv.set_add("a", "x").unwrap(), 1);
    assert_eq!(kv.set_add("a", "y").unwrap(), 1);
    assert_eq!(kv.set_add("a", "x").unwrap(), 0, "already a member");
    assert_eq!(kv.set_add("b", "y").unwrap(), 1);
    assert_eq!(kv.set_add("b", "z").unwrap(), 1);

    assert_eq!(kv.set_members("a").unwrap(), ["x", "y"]);
    assert_eq!(kv.set_members("missing").unwrap(), Vec::<String>::new());
    assert_eq!(kv.set_union(&["a", "b"]).unwrap(), ["x", "y", "z"]);
    assert_eq!(kv.set_intersect(&["a", "b"]).unwrap(), ["y"]);
    assert_eq!(
        kv.set_intersect(&["a", "missing"]).unwrap(),
        Vec::<String>::new()
    );
    assert!(kv.set_intersect(&[]).is_err(), "at least one key");
    assert!(kv.set_union(&[]).is_err(), "at least one key");

    assert_eq!(kv.set_remove("a", "x").unwrap(), 1);
    assert_eq!(kv.set_remove("a", "x").unwrap(), 0);
    assert_eq!(fake.kv_set_members("a"), ["y"]);
    assert_eq!(kv.set_remove("a", "y").unwrap(), 1);
    assert!(!kv.exists("a").unwrap(), "an emptied set disappears");

    kv.set("str", "v", None).unwrap();
    assert!(kv.set_add("str", "x").is_err());
    assert!(kv.set_union(&["b", "str"]).is_err());
}

#[test]
fn named_bindings_are_separate_stores() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    ctx.kv().set("k", "main", None).unwrap();
    ctx.kv_named("cache").set("k", "cached", None).unwrap();
    assert_eq!(ctx.kv().binding("cache").binding_name(), "cache");
    assert_eq!(
        ctx.kv().binding("cache").get("k").unwrap().as_deref(),
        Some("cached")
    );
    assert_eq!(last_call(&fake).binding, "cache");
    assert_eq!(ctx.kv().get("k").unwrap().as_deref(), Some("main"));
    assert_eq!(last_call(&fake).binding, "default");
    assert_eq!(fake.kv_string_in("cache", "k").as_deref(), Some("cached"));

    fake.kv_insert("seeded", "1");
    assert_eq!(ctx.kv().add("seeded", 1).unwrap(), 2);
    assert!(format!("{:?}", ctx.kv_named("cache")).contains("cache"));
}

#[test]
fn messaging_publish_and_request() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();

    ctx.msg().publish("events", None, b"one").unwrap();
    ctx.msg()
        .binding("other")
        .publish("events", Some("inbox"), b"two")
        .unwrap();
    let published = fake.published();
    assert_eq!(published.len(), 2);
    assert_eq!(
        published[0].message,
        BrokerMessage {
            subject: "events".into(),
            reply_to: String::new(),
            body: b"one".to_vec(),
        }
    );
    assert_eq!(published[1].binding, "other");
    assert_eq!(published[1].message.reply_to, "inbox");

    fake.reply_to_request("time", b"noon".to_vec());
    assert_eq!(ctx.msg().request("time", b"?", 250).unwrap(), b"noon");
    let sent: RequestMessage = waxosuit_codec::deserialize(&last_call(&fake).payload).unwrap();
    assert_eq!(sent.timeout_ms, 250);
    assert_eq!(sent.body, b"?");

    let err = ctx.msg().request("nobody", b"", 10).unwrap_err();
    assert!(matches!(err, Error::HostCall { .. }));
}

#[test]
fn http_client_requests() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    fake.http_response(http::Response {
        body: b"first".to_vec(),
        ..http::Response::ok()
    })
    .http_response(http::Response::not_found());

    let request = http::Request {
        method: "POST".into(),
        path: "https://example.com/api".into(),
        body: b"{}".to_vec(),
        ..http::Request::default()
    };
    let response = ctx.http_client().request(&request).unwrap();
    assert_eq!(response.body, b"first");
    let call = last_call(&fake);
    assert_eq!(
        (call.namespace.as_str(), call.operation.as_str()),
        ("wascc:http_client", "PerformRequest")
    );
    let sent: http::Request = waxosuit_codec::deserialize(&call.payload).unwrap();
    assert_eq!(sent, request);

    let response = ctx
        .http_client()
        .get("https://example.com/missing")
        .unwrap();
    assert_eq!(response.status_code, 404);
    let sent: http::Request = waxosuit_codec::deserialize(&last_call(&fake).payload).unwrap();
    assert_eq!(sent.method, "GET");

    assert!(
        ctx.http_client().get("https://example.com").is_err(),
        "queue is empty"
    );
}

#[test]
fn logging_levels() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let log = ctx.log();
    log.error("e").unwrap();
    log.warn("w").unwrap();
    log.info("i").unwrap();
    log.debug("d").unwrap();
    log.trace("t").unwrap();
    ctx.log()
        .binding("audit")
        .write(logging::LEVEL_INFO, "x")
        .unwrap();
    let levels: Vec<(u32, String)> = fake
        .logs()
        .into_iter()
        .map(|line| (line.level, line.body))
        .collect();
    assert_eq!(
        levels,
        [
            (1, "e".to_string()),
            (2, "w".to_string()),
            (3, "i".to_string()),
            (4, "d".to_string()),
            (5, "t".to_string()),
            (3, "x".to_string()),
        ]
    );
    assert_eq!(
        fake.logs()[5],
        LogLine {
            binding: "audit".into(),
            level: 3,
            body: "x".into()
        }
    );
    assert_eq!(last_call(&fake).operation, "WriteLog");

    ctx.console_log("to the console");
    assert_eq!(fake.console(), ["to the console"]);
}

#[test]
fn extras_generate_values() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let extras = ctx.extras();

    let first = extras.guid().unwrap();
    let second = extras.guid().unwrap();
    assert_eq!(first, "00000000-0000-4000-8000-000000000001");
    assert_ne!(first, second);
    let sent: GeneratorRequest = waxosuit_codec::deserialize(&last_call(&fake).payload).unwrap();
    assert!(sent.guid && !sent.random && !sent.sequence);

    assert_eq!(extras.sequence().unwrap(), 0);
    assert_eq!(extras.sequence().unwrap(), 1);

    assert_eq!(extras.random(5, 10).unwrap(), 5);
    fake.set_random(7);
    assert_eq!(extras.random(5, 10).unwrap(), 7);
    assert_eq!(
        extras.random(0, 3).unwrap(),
        0,
        "out-of-range script ignored"
    );
    let sent: GeneratorRequest = waxosuit_codec::deserialize(&last_call(&fake).payload).unwrap();
    assert_eq!((sent.random, sent.min, sent.max), (true, 0, 3));
    assert!(extras.random(3, 3).is_err());

    // A reply without a GUID is a broken contract, not an empty string.
    fake.reply_with(
        "wascc:extras",
        "RequestGuid",
        &waxosuit_codec::extras::GeneratorResult::default(),
    )
    .unwrap();
    let err = extras.guid().unwrap_err();
    assert!(matches!(err, Error::InvalidReply { .. }), "{err}");
}

#[test]
fn blobstore_round_trip() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let blob = ctx.blob();

    assert_eq!(blob.create_container("photos").unwrap().id, "photos");
    let target = Blob {
        id: "cat.jpg".into(),
        container: "photos".into(),
        byte_size: 10,
    };
    let transfer = blob.start_upload(&target, 4).unwrap();
    assert_eq!(
        (
            transfer.total_size,
            transfer.chunk_size,
            transfer.total_chunks
        ),
        (10, 4, 3)
    );
    for (seq, chunk) in b"0123456789".chunks(4).enumerate() {
        blob.upload_chunk(&transfer, seq as u64, chunk).unwrap();
    }
    let sent: FileChunk = waxosuit_codec::deserialize(&last_call(&fake).payload).unwrap();
    assert_eq!(
        (sent.sequence_no, sent.chunk_bytes.as_slice()),
        (2, &b"89"[..])
    );
    assert_eq!(fake.blob("photos", "cat.jpg").unwrap(), b"0123456789");

    let info = blob.get_object_info("photos", "cat.jpg").unwrap();
    assert_eq!(info.byte_size, 10);
    assert_eq!(
        blob.list_objects("photos").unwrap(),
        std::slice::from_ref(&info)
    );

    let download = blob.start_download(&info, 3, Some("ctx-1".into())).unwrap();
    assert_eq!(download.total_chunks, 4);
    assert_eq!(download.context.as_deref(), Some("ctx-1"));
    assert_eq!(
        fake.downloads(),
        [StreamRequest {
            id: "cat.jpg".into(),
            container: "photos".into(),
            chunk_size: 3,
            context: Some("ctx-1".into()),
        }]
    );
    // What the host would send the actor's ReceiveChunk handler.
    let chunks = fake.received_chunks();
    let parts: Vec<_> = chunks.iter().map(|c| &c.chunk_bytes[..]).collect();
    assert_eq!(parts, [&b"012"[..], b"345", b"678", b"9"]);
    assert!(chunks.iter().all(|c| c.context.as_deref() == Some("ctx-1")));

    assert!(blob.start_upload(&target, 0).is_err(), "chunk size 0");
    blob.remove_object("photos", "cat.jpg").unwrap();
    assert!(blob.get_object_info("photos", "cat.jpg").is_err());
    assert!(blob.list_objects("photos").unwrap().is_empty());
    blob.remove_container("photos").unwrap();
    assert!(blob.list_objects("photos").is_err());
    assert!(blob.remove_container("photos").is_err());
}

#[test]
fn event_streams() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let events = ctx.events();
    for n in 0..3 {
        let values = HashMap::from([("n".to_string(), n.to_string())]);
        let id = events.write_event("s", values).unwrap();
        // `<ms>-<seq>`, as Redis assigns them, on the fake's clock at 0.
        assert_eq!(id, format!("0-{}", n + 1));
    }
    let all = events.read_all("s").unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].values["n"], "0");
    let two = events.read_limit("s", 2).unwrap();
    assert_eq!(two.len(), 2);
    assert!(events.read_all("other").unwrap().is_empty());
}

#[test]
fn raw_and_actor_calls_use_scripted_replies() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    fake.reply("acme:inventory", "Count", b"7".to_vec());
    fake.on_call("acme:inventory", "Echo", |binding, payload| {
        let mut reply = binding.as_bytes().to_vec();
        reply.extend_from_slice(payload);
        Ok(reply)
    });

    assert_eq!(
        ctx.raw().call("acme:inventory", "Count", b"").unwrap(),
        b"7"
    );
    assert_eq!(
        ctx.raw()
            .binding("eu")
            .call("acme:inventory", "Echo", b":x")
            .unwrap(),
        b"eu:x"
    );
    fake.reply_with("acme:inventory", "Typed", &vec![1u32, 2])
        .unwrap();
    let typed: Vec<u32> = ctx.raw().invoke("acme:inventory", "Typed", &()).unwrap();
    assert_eq!(typed, [1, 2]);

    let err = ctx.raw().call("acme:unknown", "X", b"").unwrap_err();
    assert!(err.to_string().contains("no reply scripted"), "{err}");

    let peer = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW";
    fake.reply(peer, "Ping", b"pong".to_vec());
    let client = ctx.actor(peer);
    assert_eq!(client.target(), peer);
    assert_eq!(client.call("Ping", b"").unwrap(), b"pong");
    let call = last_call(&fake);
    assert_eq!(
        (call.binding.as_str(), call.namespace.as_str()),
        ("default", peer)
    );
    fake.reply_with(peer, "Sum", &3u8).unwrap();
    let sum: u8 = ctx.actor(peer).invoke("Sum", &[1u8, 2]).unwrap();
    assert_eq!(sum, 3);

    fake.fail(peer, "Ping", "PERMISSION DENIED");
    let err = ctx.actor(peer).call("Ping", b"").unwrap_err();
    assert!(
        matches!(&err, Error::HostCall { message, .. } if message == "PERMISSION DENIED"),
        "{err}"
    );
}

#[test]
fn undecodable_replies_are_invalid_reply_errors() {
    let fake = FakeHost::new();
    fake.reply("wascc:keyvalue", "Get", b"\xc1".to_vec());
    let err = fake.ctx().kv().get("k").unwrap_err();
    assert!(
        matches!(&err, Error::InvalidReply { namespace, operation, .. }
            if namespace == "wascc:keyvalue" && operation == "Get"),
        "{err}"
    );
    // Replies the client does not need are not decoded at all.
    fake.reply("wascc:keyvalue", "Set", Vec::new());
    fake.ctx().kv().set("k", "v", None).unwrap();
}

/// The fake's key-value store is the contract's reference keyspace behind
/// the host's operation table: it passes the same conformance suite as the
/// host's providers.
#[test]
fn the_fake_key_value_store_passes_the_conformance_suite() {
    struct Fake(FakeHost);
    impl waxosuit_cap_keyvalue::conformance::Subject for Fake {
        async fn call(
            &self,
            binding: &str,
            operation: &str,
            payload: Vec<u8>,
        ) -> std::result::Result<Vec<u8>, String> {
            use waxosuit_actor::HostCalls;
            self.0
                .host_call(binding, "wascc:keyvalue", operation, &payload)
                .map_err(|e| match e {
                    waxosuit_actor::Error::HostCall { message, .. } => message,
                    other => other.to_string(),
                })
        }
    }
    let report = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(waxosuit_cap_keyvalue::conformance::run(&Fake(
            FakeHost::new(),
        )));
    report.assert_passed();
}

/// The fake's blob store is the contract's reference store behind the
/// host's operation table: it passes the same conformance suite as the
/// host's providers.
#[test]
fn the_fake_blob_store_passes_the_conformance_suite() {
    struct Fake(FakeHost);
    impl waxosuit_cap_blobstore::conformance::Subject for Fake {
        async fn call(
            &self,
            binding: &str,
            operation: &str,
            payload: Vec<u8>,
        ) -> std::result::Result<Vec<u8>, String> {
            use waxosuit_actor::HostCalls;
            self.0
                .host_call(binding, "wascc:blobstore", operation, &payload)
                .map_err(|e| match e {
                    waxosuit_actor::Error::HostCall { message, .. } => message,
                    other => other.to_string(),
                })
        }

        async fn received(&self, context: &str, _count: usize) -> Vec<FileChunk> {
            // Delivered at StartDownload already: nothing to wait for.
            let chunks = self.0.received_chunks().into_iter();
            chunks
                .filter(|c| c.context.as_deref() == Some(context))
                .collect()
        }
    }
    let report = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(waxosuit_cap_blobstore::conformance::run(&Fake(
            FakeHost::new(),
        )));
    report.assert_passed();
}

#[test]
fn keys_expire_when_the_fake_clock_passes_their_deadline() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let kv = ctx.kv();
    kv.set("ttl", "v", Some(30)).unwrap();
    fake.advance_time(std::time::Duration::from_millis(29_500));
    assert_eq!(fake.kv_expiry("ttl"), Some(1));
    assert_eq!(kv.get("ttl").unwrap().as_deref(), Some("v"));
    fake.advance_time(std::time::Duration::from_millis(500));
    assert_eq!(kv.get("ttl").unwrap(), None, "expired at its deadline");
    assert_eq!(fake.kv_expiry("ttl"), None);
}
