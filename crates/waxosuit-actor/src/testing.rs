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
//! | `wascc:blobstore` | a working store per binding: the reference store of `waxosuit-cap-blobstore` behind the same operation table as the host's providers, so chunking, id rules, replies and error texts are the host's (an upload is visible only once complete); the fake cannot call the actor back, so downloads are recorded ([`FakeHost::downloads`]) with the chunks a host would send ([`FakeHost::received_chunks`]) |
//! | `wascc:eventstreams` | working streams per binding: the reference streams of `waxosuit-cap-eventstreams` behind the same operation table as the host's providers, so ids (`<ms>-<seq>` on the fake's clock: `0-1`, `0-2`, … until [`FakeHost::advance_time`] moves it), order, time ranges, counts and error texts are the host's |
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
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_cap_blobstore::reference::{Delivered, MemoryStore};
use waxosuit_cap_eventstreams::MemoryStreams;
use waxosuit_cap_keyvalue::MemoryKeyspace;
use waxosuit_cap_keyvalue::reference::{Limits, ManualClock};
use waxosuit_codec::blobstore::{self, FileChunk, StreamRequest};
use waxosuit_codec::eventstreams;
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
    /// What the actor did that a test inspects.
    seen: Seen,
    /// What a test set up for the actor to get.
    script: Script,
    /// Keyspaces by binding, all on `clock`.
    kv: HashMap<String, Arc<MemoryKeyspace>>,
    clock: Arc<ManualClock>,
    /// Blob stores by binding: the contract's reference store.
    blobs: HashMap<String, waxosuit_cap_blobstore::Binding<MemoryStore>>,
    /// Event streams by binding, their ids on `clock`.
    streams: HashMap<String, MemoryStreams>,
    /// `wascc:extras` counters: GUIDs issued, the next sequence number.
    guids_issued: u64,
    sequence: u64,
}

#[derive(Default)]
struct Seen {
    calls: Vec<RecordedCall>,
    console: Vec<String>,
    published: Vec<Published>,
    logs: Vec<LogLine>,
    /// Every download started, with the chunks a host would send.
    downloads: Vec<Delivered>,
}

#[derive(Default)]
struct Script {
    random: Option<u32>,
    request_replies: HashMap<String, Vec<u8>>,
    http_responses: VecDeque<http::Response>,
    replies: HashMap<(String, String), Responder>,
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
            .field("calls", &self.state.borrow().seen.calls.len())
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
        self.state.borrow_mut().script.replies.insert(
            (namespace.to_string(), operation.to_string()),
            Rc::new(responder),
        );
        self
    }

    /// Queues `response` as the answer to the next `wascc:http_client`
    /// request; queued responses are used in order, and a request with
    /// none queued fails.
    pub fn http_response(&self, response: http::Response) -> &Self {
        self.state
            .borrow_mut()
            .script
            .http_responses
            .push_back(response);
        self
    }

    /// Answers `wascc:messaging` requests to `subject` with `body`.
    pub fn reply_to_request(&self, subject: &str, body: impl Into<Vec<u8>>) -> &Self {
        self.state
            .borrow_mut()
            .script
            .request_replies
            .insert(subject.to_string(), body.into());
        self
    }

    /// Makes `wascc:extras` random requests return `value` (when it lies in
    /// the requested range; otherwise the range's `min`).
    pub fn set_random(&self, value: u32) -> &Self {
        self.state.borrow_mut().script.random = Some(value);
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
    /// and moves only when told to; event stream ids read it as
    /// milliseconds since the Unix epoch.
    pub fn advance_time(&self, by: Duration) -> &Self {
        self.state.borrow().clock.advance(by);
        self
    }

    // --- inspection ------------------------------------------------------

    /// Every host call so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state.borrow().seen.calls.clone()
    }

    /// Every `__console_log` line so far.
    pub fn console(&self) -> Vec<String> {
        self.state.borrow().seen.console.clone()
    }

    /// Every message published so far.
    pub fn published(&self) -> Vec<Published> {
        self.state.borrow().seen.published.clone()
    }

    /// Every `wascc:logging` line so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.state.borrow().seen.logs.clone()
    }

    /// Every download started so far.
    pub fn downloads(&self) -> Vec<StreamRequest> {
        let state = self.state.borrow();
        state
            .seen
            .downloads
            .iter()
            .map(|d| d.request.clone())
            .collect()
    }

    /// The `ReceiveChunk` payloads a host would send for every download
    /// started so far, in order. The fake does not call the actor back: a
    /// test hands these to the actor's chunk handler itself.
    pub fn received_chunks(&self) -> Vec<FileChunk> {
        let state = self.state.borrow();
        state
            .seen
            .downloads
            .iter()
            .flat_map(|d| d.chunks.iter().cloned())
            .collect()
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

    /// The bytes of object `id` in `container` of the default blob store
    /// binding, once its upload is complete.
    pub fn blob(&self, container: &str, id: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        state
            .blobs
            .get(DEFAULT_BINDING)?
            .store()
            .object(container, id)
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
            .script
            .replies
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
                state.seen.logs.push(LogLine {
                    binding: binding.to_string(),
                    level: line.level,
                    body: line.body,
                });
                Ok(Vec::new())
            }
            extras::CAPABILITY_ID => extras(&mut state, operation, payload),
            blobstore::CAPABILITY_ID => blobstore(&mut state, binding, operation, payload),
            eventstreams::CAPABILITY_ID => events(&mut state, binding, operation, payload),
            http::CLIENT_CAPABILITY_ID if operation == http::OP_PERFORM_REQUEST => {
                let _: http::Request = decode(payload)?;
                let response = state
                    .script
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
        self.state.borrow_mut().seen.calls.push(RecordedCall {
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
        self.state
            .borrow_mut()
            .seen
            .console
            .push(message.to_string());
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
            state.seen.published.push(Published {
                binding: binding.to_string(),
                message,
            });
            Ok(Vec::new())
        }
        messaging::OP_PERFORM_REQUEST => {
            let request: RequestMessage = decode(payload)?;
            state
                .script
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
                .script
                .random
                .filter(|v| (request.min..request.max).contains(v))
                .unwrap_or(request.min);
        }
        _ => return unsupported(extras::CAPABILITY_ID, operation),
    }
    encode(&result)
}

/// The same operation table as the host's providers, over the binding's
/// reference store (made empty and unlimited on first use), so replies and
/// error texts are what the actor would get there.
fn blobstore(state: &mut State, binding: &str, operation: &str, payload: &[u8]) -> FakeResult {
    let mut delivered = Vec::new();
    let reply = state
        .blobs
        .entry(binding.to_string())
        .or_insert_with(|| {
            waxosuit_cap_blobstore::Binding::new(
                "MFAKEHOST",
                binding,
                MemoryStore::new(),
                // Downloads are never sent, so they would never give a
                // quota back.
                waxosuit_cap_blobstore::Limits::UNLIMITED,
            )
        })
        .call_now(operation, payload, &mut delivered)
        .map_err(|e| e.to_string());
    state.seen.downloads.extend(delivered);
    reply
}

/// The same operation table as the host's providers, over the binding's
/// streams (made empty on first use), so replies and error texts are what
/// the actor would get there.
fn events(state: &mut State, binding: &str, operation: &str, payload: &[u8]) -> FakeResult {
    let clock = Arc::clone(&state.clock);
    state
        .streams
        .entry(binding.to_string())
        .or_insert_with(|| {
            MemoryStreams::new(Arc::new(move || {
                waxosuit_cap_keyvalue::reference::Clock::now(&*clock)
            }))
        })
        .call_now(operation, payload)
        .map_err(|e| e.to_string())
}
