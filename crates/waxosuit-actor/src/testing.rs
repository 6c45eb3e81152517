//! An in-memory host for unit-testing handlers natively, with plain
//! `cargo test`.
//!
//! [`FakeHost`] answers the same host calls a Waxosuit host does, decoding
//! each request with the waSCC codec (so a malformed request fails the test
//! just as it would fail in production):
//!
//! | Capability | Fake behaviour |
//! |---|---|
//! | `wascc:keyvalue` | a working store per binding: the reference keyspace of `waxosuit-cap-keyvalue` behind the same operation table as the host's providers, so replies and error texts are the host's (`Push` prepends, inclusive ranges, one kind of value per key, `Clear` deletes lists only, emptied lists and sets disappear); keys expire when [`FakeHost::advance_time`] passes their deadline |
//! | `wascc:messaging` | `Publish` is recorded ([`FakeHost::published`]); `Request` answers from [`FakeHost::reply_to_request`] |
//! | `wascc:logging` | lines are captured ([`FakeHost::logs`]) |
//! | `wascc:extras` | deterministic GUIDs (`00000000-0000-4000-8000-000000000001`, …), a sequence from 0, and random numbers from [`FakeHost::set_random`] (default: `min`) |
//! | `wascc:blobstore` | a working store of containers and objects; downloads are recorded ([`FakeHost::downloads`]) since the fake cannot call the actor back |
//! | `wascc:eventstreams` | working in-memory streams with ids `1`, `2`, … |
//! | `wascc:http_client` | answers from [`FakeHost::http_response`] |
//! | anything else (custom capabilities, actors) | answers scripted with [`FakeHost::reply`], [`FakeHost::fail`] or [`FakeHost::on_call`]; unscripted calls fail |
//!
//! A reply scripted for a well-known capability's operation takes precedence
//! over the built-in fake, which is how failures are injected
//! (`fake.fail("wascc:keyvalue", "Add", "store offline")`). Every call is
//! recorded in [`FakeHost::calls`] and console output in
//! [`FakeHost::console`].
//!
//! ```
//! use waxosuit_actor::testing::{FakeHost, http_request};
//! use waxosuit_actor::{Ctx, Registry, Result, http};
//!
//! fn count(ctx: &Ctx, req: http::Request) -> Result<http::Response> {
//!     let n = ctx.kv().add(&format!("hits:{}", req.path), 1)?;
//!     Ok(http::Response::json(&n, 200, "OK")?)
//! }
//!
//! let registry = Registry::from_init(|r| {
//!     r.on_http_request(count);
//! });
//! let fake = FakeHost::new();
//! for expected in [b"1", b"2"] {
//!     let reply: http::Response =
//!         registry.invoke(&fake.ctx(), "HandleRequest", &http_request("GET", "/a", ""))?;
//!     assert_eq!(reply.body, expected);
//! }
//! assert_eq!(fake.kv_string("hits:/a").as_deref(), Some("2"));
//! # Ok::<(), waxosuit_actor::Error>(())
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_cap_keyvalue::MemoryKeyspace;
use waxosuit_cap_keyvalue::reference::{Limits, ManualClock};
use waxosuit_codec::blobstore::{self, Blob, BlobList, Container, FileChunk, StreamRequest};
use waxosuit_codec::eventstreams::{self, Event, StreamQuery, StreamResults, WriteResponse};
use waxosuit_codec::extras::{self, GeneratorRequest, GeneratorResult};
use waxosuit_codec::http;
use waxosuit_codec::keyvalue::{self as kv};
use waxosuit_codec::logging::{self, WriteLogRequest};
use waxosuit_codec::messaging::{self, BrokerMessage, RequestMessage};

use crate::context::{Ctx, DEFAULT_BINDING, HostCalls};
use crate::error::{Error, Result};

/// Outcome of a fake host call before it is wrapped into [`Error::HostCall`]:
/// the `Err` text is what a real host would send as its error string.
type FakeResult = std::result::Result<Vec<u8>, String>;

type Responder = Rc<dyn Fn(&str, &[u8]) -> FakeResult>;

/// One host call as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The binding name.
    pub binding: String,
    /// The capability id or actor key.
    pub namespace: String,
    /// The operation name.
    pub operation: String,
    /// The encoded request.
    pub payload: Vec<u8>,
}

/// A message published through the fake `wascc:messaging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The binding it was published on.
    pub binding: String,
    /// The message.
    pub message: BrokerMessage,
}

/// A line written through the fake `wascc:logging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The binding it was written to.
    pub binding: String,
    /// One of the `waxosuit_codec::logging::LEVEL_*` constants.
    pub level: u32,
    /// The text.
    pub body: String,
}

#[derive(Default)]
struct State {
    calls: Vec<RecordedCall>,
    console: Vec<String>,
    published: Vec<Published>,
    logs: Vec<LogLine>,
    /// Keyspaces by binding, all on `clock`.
    kv: HashMap<String, Arc<MemoryKeyspace>>,
    clock: Arc<ManualClock>,
    // BTreeMaps so listings come out in a stable order.
    blobs: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    downloads: Vec<StreamRequest>,
    streams: HashMap<String, Vec<Event>>,
    next_event_id: u64,
    guids_issued: u64,
    sequence: u64,
    random: Option<u32>,
    request_replies: HashMap<String, Vec<u8>>,
    http_responses: VecDeque<http::Response>,
    scripted: HashMap<(String, String), Responder>,
}

/// An in-memory stand-in for the Waxosuit host; see the [module
/// docs](self).
///
/// Clones share state, so a test keeps one handle to inspect while handlers
/// run against [`ctx`](Self::ctx).
#[derive(Clone, Default)]
pub struct FakeHost {
    state: Rc<RefCell<State>>,
}

impl std::fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHost")
            .field("calls", &self.state.borrow().calls.len())
            .finish_non_exhaustive()
    }
}

impl FakeHost {
    /// An empty host: empty stores, nothing scripted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handler context whose every call goes to this fake.
    pub fn ctx(&self) -> Ctx {
        Ctx::new(Rc::new(self.clone()))
    }

    // --- scripting -------------------------------------------------------

    /// Answers every `operation` on `namespace` (capability id or actor key)
    /// with `reply`.
    pub fn reply(&self, namespace: &str, operation: &str, reply: impl Into<Vec<u8>>) -> &Self {
        let reply = reply.into();
        self.on_call(namespace, operation, move |_, _| Ok(reply.clone()))
    }

    /// Like [`reply`](Self::reply) with `reply` encoded by the waSCC codec.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `reply` cannot be encoded.
    pub fn reply_with<T: Serialize>(
        &self,
        namespace: &str,
        operation: &str,
        reply: &T,
    ) -> Result<&Self> {
        let bytes = waxosuit_codec::serialize(reply)?;
        Ok(self.reply(namespace, operation, bytes))
    }

    /// Fails every `operation` on `namespace` with the host error text
    /// `message`.
    pub fn fail(&self, namespace: &str, operation: &str, message: &str) -> &Self {
        let message = message.to_string();
        self.on_call(namespace, operation, move |_, _| Err(message.clone()))
    }

    /// Answers every `operation` on `namespace` by calling `responder` with
    /// the binding and the payload; an `Err` becomes the host error text.
    pub fn on_call<F>(&self, namespace: &str, operation: &str, responder: F) -> &Self
    where
        F: Fn(&str, &[u8]) -> std::result::Result<Vec<u8>, String> + 'static,
    {
        self.state.borrow_mut().scripted.insert(
            (namespace.to_string(), operation.to_string()),
            Rc::new(responder),
        );
        self
    }

    /// Queues `response` as the answer to the next `wascc:http_client`
    /// request; queued responses are used in order, and a request with
    /// none queued fails.
    pub fn http_response(&self, response: http::Response) -> &Self {
        self.state.borrow_mut().http_responses.push_back(response);
        self
    }

    /// Answers `wascc:messaging` requests to `subject` with `body`.
    pub fn reply_to_request(&self, subject: &str, body: impl Into<Vec<u8>>) -> &Self {
        self.state
            .borrow_mut()
            .request_replies
            .insert(subject.to_string(), body.into());
        self
    }

    /// Makes `wascc:extras` random requests return `value` (when it lies in
    /// the requested range; otherwise the range's `min`).
    pub fn set_random(&self, value: u32) -> &Self {
        self.state.borrow_mut().random = Some(value);
        self
    }

    /// Stores the string `value` at `key` in the default key-value binding,
    /// as if the actor had set it.
    pub fn kv_insert(&self, key: &str, value: &str) -> &Self {
        let request = kv::SetRequest {
            key: key.to_string(),
            value: value.to_string(),
            expires_s: 0,
        };
        // An unlimited keyspace takes any `Set`, so there is no error to
        // report.
        if let Ok(payload) = waxosuit_codec::serialize(&request) {
            let _ = self
                .keyspace(DEFAULT_BINDING)
                .call_now(kv::OP_SET, &payload);
        }
        self
    }

    /// Moves the fake's clock forward by `by`: keys whose time to live ends
    /// within it expire, as they would on a host. The clock starts at zero
    /// and moves only when told to.
    pub fn advance_time(&self, by: Duration) -> &Self {
        self.state.borrow().clock.advance(by);
        self
    }

    // --- inspection ------------------------------------------------------

    /// Every host call so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state.borrow().calls.clone()
    }

    /// Every `__console_log` line so far.
    pub fn console(&self) -> Vec<String> {
        self.state.borrow().console.clone()
    }

    /// Every message published so far.
    pub fn published(&self) -> Vec<Published> {
        self.state.borrow().published.clone()
    }

    /// Every `wascc:logging` line so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.state.borrow().logs.clone()
    }

    /// Every download started so far.
    pub fn downloads(&self) -> Vec<StreamRequest> {
        self.state.borrow().downloads.clone()
    }

    /// The string at `key` in the default key-value binding.
    pub fn kv_string(&self, key: &str) -> Option<String> {
        self.kv_string_in(DEFAULT_BINDING, key)
    }

    /// The string at `key` in the key-value store of `binding`.
    pub fn kv_string_in(&self, binding: &str, key: &str) -> Option<String> {
        self.keyspace(binding).string(key)
    }

    /// The list at `key` in the default key-value binding, front first
    /// (empty if missing).
    pub fn kv_list(&self, key: &str) -> Vec<String> {
        self.keyspace(DEFAULT_BINDING).list(key)
    }

    /// The members of the set at `key` in the default key-value binding,
    /// sorted (empty if missing).
    pub fn kv_set_members(&self, key: &str) -> Vec<String> {
        self.keyspace(DEFAULT_BINDING).members(key)
    }

    /// The seconds `key` in the default key-value binding has left to live
    /// (rounded up), `None` when it is missing or never expires. The fake's
    /// clock moves only with [`advance_time`](Self::advance_time), so until
    /// then this is the time to live the actor asked for.
    pub fn kv_expiry(&self, key: &str) -> Option<u32> {
        let left = self.keyspace(DEFAULT_BINDING).ttl(key)?;
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(seconds).unwrap_or(u32::MAX))
    }

    /// The bytes of object `id` in `container` of the fake blob store.
    pub fn blob(&self, container: &str, id: &str) -> Option<Vec<u8>> {
        self.state.borrow().blobs.get(container)?.get(id).cloned()
    }

    /// The keyspace of `binding`, made empty and unlimited on first use
    /// (the fake binds every binding name an actor uses).
    fn keyspace(&self, binding: &str) -> Arc<MemoryKeyspace> {
        let mut state = self.state.borrow_mut();
        let clock = Arc::clone(&state.clock);
        Arc::clone(state.kv.entry(binding.to_string()).or_insert_with(|| {
            Arc::new(MemoryKeyspace::new(
                "MFAKEHOST",
                binding,
                Limits::UNLIMITED,
                clock,
            ))
        }))
    }

    // --- the fake capabilities -------------------------------------------

    fn answer(
        &self,
        binding: &str,
        namespace: &str,
        operation: &str,
        payload: &[u8],
    ) -> FakeResult {
        let scripted = self
            .state
            .borrow()
            .scripted
            .get(&(namespace.to_string(), operation.to_string()))
            .cloned();
        if let Some(responder) = scripted {
            // The borrow is released first: a responder may use the fake.
            return responder(binding, payload);
        }
        if namespace == kv::CAPABILITY_ID {
            // The same operation table as the host's providers, so replies
            // and error texts are what the actor would get there.
            return self
                .keyspace(binding)
                .call_now(operation, payload)
                .map_err(|e| e.to_string());
        }
        let mut state = self.state.borrow_mut();
        match namespace {
            messaging::CAPABILITY_ID => messaging(&mut state, binding, operation, payload),
            logging::CAPABILITY_ID if operation == logging::OP_LOG => {
                let line: WriteLogRequest = decode(payload)?;
                state.logs.push(LogLine {
                    binding: binding.to_string(),
                    level: line.level,
                    body: line.body,
                });
                Ok(Vec::new())
            }
            extras::CAPABILITY_ID => extras(&mut state, operation, payload),
            blobstore::CAPABILITY_ID => blobstore(&mut state, operation, payload),
            eventstreams::CAPABILITY_ID => events(&mut state, operation, payload),
            http::CLIENT_CAPABILITY_ID if operation == http::OP_PERFORM_REQUEST => {
                let _: http::Request = decode(payload)?;
                let response = state
                    .http_responses
                    .pop_front()
                    .ok_or("no HTTP response queued on the FakeHost")?;
                encode(&response)
            }
            _ => Err(format!(
                "no reply scripted on the FakeHost for {operation} on {namespace}"
            )),
        }
    }
}

impl HostCalls for FakeHost {
    fn host_call(
        &self,
        binding: &str,
        namespace: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        self.state.borrow_mut().calls.push(RecordedCall {
            binding: binding.to_string(),
            namespace: namespace.to_string(),
            operation: operation.to_string(),
            payload: payload.to_vec(),
        });
        self.answer(binding, namespace, operation, payload)
            .map_err(|message| Error::HostCall {
                binding: binding.to_string(),
                namespace: namespace.to_string(),
                operation: operation.to_string(),
                message,
            })
    }

    fn console_log(&self, message: &str) {
        self.state.borrow_mut().console.push(message.to_string());
    }
}

/// Builds an HTTP server request as `wascc:http_server` would send it: a
/// `?query` suffix of `path` moves to `query_string`.
pub fn http_request(method: &str, path: &str, body: impl Into<Vec<u8>>) -> http::Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    http::Request {
        method: method.to_string(),
        path: path.to_string(),
        query_string: query.to_string(),
        header: HashMap::new(),
        body: body.into(),
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> std::result::Result<T, String> {
    waxosuit_codec::deserialize(payload).map_err(|e| e.to_string())
}

fn encode<T: Serialize>(value: &T) -> FakeResult {
    waxosuit_codec::serialize(value).map_err(|e| e.to_string())
}

fn unsupported(namespace: &str, operation: &str) -> FakeResult {
    Err(format!(
        "{namespace} does not support operation {operation}"
    ))
}

fn messaging(state: &mut State, binding: &str, operation: &str, payload: &[u8]) -> FakeResult {
    match operation {
        messaging::OP_PUBLISH_MESSAGE => {
            let message: BrokerMessage = decode(payload)?;
            state.published.push(Published {
                binding: binding.to_string(),
                message,
            });
            Ok(Vec::new())
        }
        messaging::OP_PERFORM_REQUEST => {
            let request: RequestMessage = decode(payload)?;
            state
                .request_replies
                .get(&request.subject)
                .cloned()
                .ok_or_else(|| format!("no responders for subject {} (timed out)", request.subject))
        }
        _ => unsupported(messaging::CAPABILITY_ID, operation),
    }
}

fn extras(state: &mut State, operation: &str, payload: &[u8]) -> FakeResult {
    let request: GeneratorRequest = decode(payload)?;
    let mut result = GeneratorResult::default();
    match operation {
        extras::OP_REQUEST_GUID => {
            state.guids_issued += 1;
            result.guid = Some(format!(
                "00000000-0000-4000-8000-{:012x}",
                state.guids_issued
            ));
        }
        extras::OP_REQUEST_SEQUENCE => {
            result.sequence_number = state.sequence;
            state.sequence += 1;
        }
        extras::OP_REQUEST_RANDOM => {
            if request.min >= request.max {
                return Err(format!(
                    "empty random range [{}, {})",
                    request.min, request.max
                ));
            }
            result.random_number = state
                .random
                .filter(|v| (request.min..request.max).contains(v))
                .unwrap_or(request.min);
        }
        _ => return unsupported(extras::CAPABILITY_ID, operation),
    }
    encode(&result)
}

fn blobstore(state: &mut State, operation: &str, payload: &[u8]) -> FakeResult {
    let no_container = |id: &str| format!("container {id} does not exist");
    let no_object = |c: &str, id: &str| format!("object {id} does not exist in container {c}");
    match operation {
        blobstore::OP_CREATE_CONTAINER => {
            let container: Container = decode(payload)?;
            state.blobs.entry(container.id.clone()).or_default();
            encode(&container)
        }
        blobstore::OP_REMOVE_CONTAINER => {
            let container: Container = decode(payload)?;
            state
                .blobs
                .remove(&container.id)
                .ok_or_else(|| no_container(&container.id))?;
            Ok(Vec::new())
        }
        blobstore::OP_REMOVE_OBJECT => {
            let blob: Blob = decode(payload)?;
            let objects = state
                .blobs
                .get_mut(&blob.container)
                .ok_or_else(|| no_container(&blob.container))?;
            objects
                .remove(&blob.id)
                .ok_or_else(|| no_object(&blob.container, &blob.id))?;
            Ok(Vec::new())
        }
        blobstore::OP_LIST_OBJECTS => {
            let container: Container = decode(payload)?;
            let objects = state
                .blobs
                .get(&container.id)
                .ok_or_else(|| no_container(&container.id))?;
            let blobs = objects
                .iter()
                .map(|(id, bytes)| Blob {
                    id: id.clone(),
                    container: container.id.clone(),
                    byte_size: bytes.len() as u64,
                })
                .collect();
            encode(&BlobList { blobs })
        }
        blobstore::OP_GET_OBJECT_INFO => {
            let blob: Blob = decode(payload)?;
            let bytes = state
                .blobs
                .get(&blob.container)
                .and_then(|objects| objects.get(&blob.id))
                .ok_or_else(|| no_object(&blob.container, &blob.id))?;
            encode(&Blob {
                byte_size: bytes.len() as u64,
                ..blob
            })
        }
        blobstore::OP_START_UPLOAD => {
            let chunk: FileChunk = decode(payload)?;
            let objects = state
                .blobs
                .get_mut(&chunk.container)
                .ok_or_else(|| no_container(&chunk.container))?;
            objects.insert(chunk.id, Vec::new());
            Ok(Vec::new())
        }
        blobstore::OP_UPLOAD_CHUNK => {
            let chunk: FileChunk = decode(payload)?;
            let object = state
                .blobs
                .get_mut(&chunk.container)
                .and_then(|objects| objects.get_mut(&chunk.id))
                .ok_or_else(|| format!("no upload of {} in progress", chunk.id))?;
            object.extend_from_slice(&chunk.chunk_bytes);
            Ok(Vec::new())
        }
        blobstore::OP_START_DOWNLOAD => {
            let request: StreamRequest = decode(payload)?;
            if !state
                .blobs
                .get(&request.container)
                .is_some_and(|objects| objects.contains_key(&request.id))
            {
                return Err(no_object(&request.container, &request.id));
            }
            state.downloads.push(request);
            Ok(Vec::new())
        }
        _ => unsupported(blobstore::CAPABILITY_ID, operation),
    }
}

fn events(state: &mut State, operation: &str, payload: &[u8]) -> FakeResult {
    match operation {
        eventstreams::OP_WRITE_EVENT => {
            let mut event: Event = decode(payload)?;
            state.next_event_id += 1;
            event.event_id = state.next_event_id.to_string();
            let event_id = event.event_id.clone();
            state
                .streams
                .entry(event.stream.clone())
                .or_default()
                .push(event);
            encode(&WriteResponse { event_id })
        }
        eventstreams::OP_QUERY_STREAM => {
            let query: StreamQuery = decode(payload)?;
            let stream = state
                .streams
                .get(&query.stream_id)
                .map_or(&[][..], Vec::as_slice);
            let limit = match query.count {
                0 => stream.len(),
                n => usize::try_from(n).unwrap_or(usize::MAX),
            };
            encode(&StreamResults {
                events: stream.iter().take(limit).cloned().collect(),
            })
        }
        _ => unsupported(eventstreams::CAPABILITY_ID, operation),
    }
}
