//! The Redis-streams `wascc:eventstreams` provider of Waxosuit.
//!
//! Actors append events to named streams, query them back by time, and have
//! new events pushed to them as they arrive, all on Redis streams.
//!
//! # A guided tour
//!
//! * [`RedisEventStreams::new`] builds the provider with the default
//!   timeouts; [`RedisEventStreams::with_timeouts`] picks others. Register it
//!   with the host like any [`CapabilityProvider`]; the host's
//!   [`start`](CapabilityProvider::start) hands it the [`ActorDispatcher`]
//!   that `DeliverEvent` goes through.
//! * **Configuration**, per binding:
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`CONFIG_URL`] (`URL`) | [`DEFAULT_URL`] | the server, `redis://[user:password@]host[:port][/db]` |
//!   | [`CONFIG_STREAMS`] (`STREAMS`) | none | comma-separated streams whose new events are delivered to the actor |
//!   | [`CONFIG_STREAM_PREFIX`] (`STREAM_PREFIX`) | `wxs:es:<actor>:<binding>:` | prepended to every stream name the actor uses; may be empty (shared streams) |
//!
//!   A URL that does not parse fails [`bind_actor`](CapabilityProvider::bind_actor)
//!   with [`ProviderError::Config`]; an unreachable server does not (calls
//!   fail with [`ProviderError::Unavailable`] until it answers).
//! * **Isolation.** Stream names are namespaced like the key-value
//!   provider's keys: by default every stream an actor writes, queries or
//!   subscribes to lives under `wxs:es:<actor>:<binding>:`, so two actors
//!   using the same stream name do not see each other's events, and no
//!   stream name can reach another actor's key-value keys
//!   (`wxs:<actor>:<binding>:…`, which no `wxs:es:` key can equal) or
//!   anything else in Redis. Events carry the stream name as the actor
//!   gave it. **Shared streams** are an explicit opt-out:
//!   actors whose bindings set the same `STREAM_PREFIX` (e.g. `orders:`)
//!   share those streams with each other; an empty one uses the names as
//!   raw Redis keys, for streams written by applications that predate
//!   Waxosuit. Under a shared prefix, a stream whose key (prefix and name
//!   together) starts with [`RESERVED_PREFIX`] (the per-actor namespaces of
//!   Waxosuit's Redis providers) is refused, and so is a prefix that starts
//!   with it.
//! * **Operations** (actor → provider) are the contract's operation table,
//!   [`waxosuit_cap_eventstreams::dispatch`], over Redis streams: the
//!   provider implements [`Streams`] for the caller's binding and nothing
//!   else, so ids, order, ranges, counts and refusals are the contract's:
//!
//!   | Operation | Redis |
//!   |---|---|
//!   | `WriteEvent` | `XADD stream * field value …`, fields sorted by name |
//!   | `QueryStream` | `XRANGE stream start end [COUNT n]`, in a script (`EVAL`) that reads 256 entries at a time and answers an `ERR` naming the stream and the bound once the reply passes what the actor accepts (the host's `__waxosuit_max_payload`, [`DEFAULT_MAX_REPLY_BYTES`] without it): a query of a long stream no longer brings it all into the host first; it pages with exclusive ids, so Redis 6.2 or later is needed |
//!
//!   `QueryStream`'s `range` is in **milliseconds** since the Unix epoch
//!   (the unit of Redis stream ids; the 2020 provider handed them to Redis
//!   unchanged), mapping to ids `minTime-0` and
//!   `maxTime-18446744073709551615`. The ids carry the Redis server's
//!   clock.
//! * **Delivery** (provider → actor). For a binding with `STREAMS`, a task
//!   blocks on `XREAD BLOCK` over those streams and calls `DeliverEvent`
//!   on the actor with each new event as a MessagePack [`Event`], in stream
//!   order, one at a time. Delivery starts with the events written after
//!   `bind_actor` returned when the provider was started and the server
//!   reachable; a binding made before [`start`](CapabilityProvider::start)
//!   or while the server is down starts when its task first reaches the
//!   server. If Redis goes away the task retries with
//!   a backoff of up to [`MAX_BACKOFF`] and resumes after the last event it
//!   delivered, so nothing written while it reconnects is skipped. A failed
//!   dispatch is logged, not retried. The task ends on
//!   [`remove_actor`](CapabilityProvider::remove_actor) and
//!   [`shutdown`](CapabilityProvider::shutdown), which wait for it.
//! * **Recovery.** `WriteEvent` and `QueryStream` use a connection per
//!   binding, made when a call needs one. The provider notices at once when
//!   the server closes it (a restart), and a call that finds no open
//!   connection connects within the call (bounded by the connection
//!   timeout): the first call after Redis is back succeeds, a call during
//!   an outage fails fast with the error of its own attempt, and none is
//!   answered with an earlier outage's error. If the connection drops with
//!   a command in flight, `QueryStream` is retried once on a new
//!   connection; `WriteEvent` is not (Redis may have added the event) and
//!   fails with [`ProviderError::Unavailable`] saying so. Each call's
//!   exchange is one client span named after the command (`XADD`,
//!   `EVAL`); delivery's blocking `XREAD`s belong to no call and are not.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use waxosuit_cap_eventstreams_redis::{CONFIG_STREAMS, CONFIG_URL, RedisEventStreams};
//! use waxosuit_codec::eventstreams::{CAPABILITY_ID, Event, OP_WRITE_EVENT, WriteResponse};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let streams = RedisEventStreams::new();
//! streams
//!     .bind_actor(BindRequest {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         values: HashMap::from([
//!             (CONFIG_URL.to_string(), "redis://127.0.0.1:6379/".to_string()),
//!             (CONFIG_STREAMS.to_string(), "orders,payments".to_string()),
//!         ]),
//!     })
//!     .await?;
//! let event = Event {
//!     event_id: String::new(),
//!     stream: "orders".into(),
//!     values: HashMap::from([("sku".to_string(), "A-1".to_string())]),
//! };
//! let reply = streams
//!     .handle_call(ProviderCall {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         operation: OP_WRITE_EVENT.into(),
//!         payload: encode(CAPABILITY_ID, &event)?,
//!     })
//!     .await?;
//! let WriteResponse { event_id } = waxosuit_codec::deserialize(&reply)?;
//! # let _ = event_id;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use waxosuit_cap_eventstreams::{Entry, IdRange, Streams};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_codec::eventstreams::{
    CAPABILITY_ID, Event, OP_DELIVER_EVENT, OP_QUERY_STREAM, OP_WRITE_EVENT,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, Health, ProviderCall, ProviderError, encode,
};

use waxosuit_redis::{Link, Op, Repeat, Report};

/// Binding value naming the Redis server.
pub const CONFIG_URL: &str = "URL";
/// Binding value listing, comma-separated, the streams delivered to the actor.
pub const CONFIG_STREAMS: &str = "STREAMS";
/// Binding value replacing the per-actor stream namespace
/// (`wxs:es:<actor>:<binding>:`): bindings with the same value share their
/// streams; an empty one uses stream names as raw Redis keys.
pub const CONFIG_STREAM_PREFIX: &str = "STREAM_PREFIX";
/// The start of every per-actor key Waxosuit's Redis providers make (this
/// one's streams, the key-value provider's keys). Stream names used as raw
/// keys (an empty [`CONFIG_STREAM_PREFIX`]) may not start with it, so that
/// sharing cannot reach into an actor's own data.
pub const RESERVED_PREFIX: &str = "wxs:";
/// The server used when a binding has no [`CONFIG_URL`].
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/";
/// Default bound on one connection attempt and on one command's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest wait between two reconnection attempts of a delivery task.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long one `XREAD` blocks. Bounded, rather than forever, so a
/// connection that silently died is noticed by the reply timeout.
const BLOCK: Duration = Duration::from_secs(2);
/// Events fetched by one `XREAD`, at most.
const READ_BATCH: usize = 100;
/// What one `XREAD` may bring back, roughly: it fetches as many events as
/// this holds if each were as large as the actor accepts (at least one, at
/// most [`READ_BATCH`]). A hundred events of 4 MiB were 400 MiB per read.
const READ_BYTES: usize = 16 * 1024 * 1024;

/// Events one `XREAD` fetches for an actor that accepts `max_payload`.
fn read_batch(max_payload: usize) -> usize {
    (READ_BYTES / max_payload.max(1)).clamp(1, READ_BATCH)
}
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// A delivery task and the way to stop it.
struct Subscription {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Binding {
    link: Arc<Link>,
    client: Client,
    safe_url: String,
    namespace: Namespace,
    /// The most a query may bring back: what the actor accepts.
    max_reply: usize,
    /// Subscribed streams, as the actor names them.
    streams: Vec<String>,
    subscription: Option<Subscription>,
}

/// Where a binding's streams live in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Namespace {
    /// Prepended to every stream name.
    prefix: String,
    /// Whether `prefix` is the binding's own (`wxs:es:<actor>:<binding>:`),
    /// not a shared `STREAM_PREFIX`.
    own: bool,
}

impl Namespace {
    /// The Redis key of `stream` (named: the operation table and the
    /// binding's parser refuse empty names), or why the actor may not use
    /// that name.
    fn key(&self, actor: &str, stream: &str) -> Result<String, String> {
        let key = format!("{}{stream}", self.prefix);
        // The key as a whole is judged: a shared prefix that is itself the
        // start of `wxs:` (`wx`, `wxs:`) joined with the rest of a name
        // would otherwise reach another actor's streams and key-value keys.
        if !self.own && key.starts_with(RESERVED_PREFIX) {
            return Err(format!(
                "stream `{stream}` is refused for actor {actor}: with the binding's \
                 `{CONFIG_STREAM_PREFIX}` its key starts with `{RESERVED_PREFIX}`, and such \
                 keys belong to the per-actor namespaces of Waxosuit's Redis providers, which \
                 shared streams may not reach; use another name or prefix"
            ));
        }
        Ok(key)
    }
}

#[derive(Default)]
struct State {
    dispatcher: Option<Arc<dyn ActorDispatcher>>,
    /// By (actor, binding).
    bindings: HashMap<(String, String), Binding>,
}

/// The Redis `wascc:eventstreams` provider. See the [crate docs](crate).
pub struct RedisEventStreams {
    state: Mutex<State>,
    connection_timeout: Duration,
    response_timeout: Duration,
}

impl std::fmt::Debug for RedisEventStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventStreams")
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for RedisEventStreams {
    fn default() -> Self {
        Self::new()
    }
}

/// What a delivery task needs, cloned out of the provider.
struct Delivery {
    actor: String,
    client: Client,
    safe_url: String,
    /// Subscribed streams, as the actor names them (events carry these).
    streams: Vec<String>,
    /// Their Redis keys, in the same order.
    keys: Vec<String>,
    dispatcher: Arc<dyn ActorDispatcher>,
    connection_timeout: Duration,
    response_timeout: Duration,
    /// Events per `XREAD` ([`read_batch`]).
    batch: usize,
}

impl RedisEventStreams {
    /// A provider with no bindings and [`DEFAULT_TIMEOUT`] for connecting
    /// and for each reply.
    pub fn new() -> Self {
        Self::with_timeouts(DEFAULT_TIMEOUT, DEFAULT_TIMEOUT)
    }

    /// A provider bounding each connection attempt by `connection` and each
    /// command's reply by `response`.
    pub fn with_timeouts(connection: Duration, response: Duration) -> Self {
        RedisEventStreams {
            state: Mutex::default(),
            connection_timeout: connection,
            response_timeout: response,
        }
    }

    /// Starts the delivery task of a binding that has streams but no task;
    /// returns a receiver that fires once the task has fixed where delivery
    /// starts.
    fn subscribe(
        &self,
        state: &mut State,
        key: &(String, String),
    ) -> Result<Option<oneshot::Receiver<()>>, ProviderError> {
        let Some(dispatcher) = state.dispatcher.clone() else {
            return Ok(None);
        };
        let Some(binding) = state.bindings.get_mut(key) else {
            return Ok(None);
        };
        if binding.streams.is_empty() || binding.subscription.is_some() {
            return Ok(None);
        }
        // `tokio::spawn` would panic outside a runtime; say so instead.
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| ProviderError::Internal {
                capid: CAPABILITY_ID.to_string(),
                message: format!("cannot start the event delivery task: {e}"),
            })?;
        let cancel = CancellationToken::new();
        let (ready, ready_rx) = oneshot::channel();
        let keys = binding
            .streams
            .iter()
            .map(|stream| binding.namespace.key(&key.0, stream))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ProviderError::Config {
                capid: CAPABILITY_ID.to_string(),
                actor: key.0.clone(),
                key: CONFIG_STREAMS.to_string(),
                reason,
            })?;
        let delivery = Delivery {
            actor: key.0.clone(),
            client: binding.client.clone(),
            safe_url: binding.safe_url.clone(),
            streams: binding.streams.clone(),
            keys,
            dispatcher,
            connection_timeout: self.connection_timeout,
            response_timeout: self.response_timeout,
            batch: read_batch(binding.max_reply),
        };
        let task = runtime.spawn(delivery.run(cancel.clone(), ready));
        binding.subscription = Some(Subscription { cancel, task });
        Ok(Some(ready_rx))
    }

    fn binding(&self, call: &ProviderCall) -> Result<CallTarget, ProviderError> {
        self.state
            .lock()
            .bindings
            .get(&(call.actor.clone(), call.binding.clone()))
            .map(|b| CallTarget {
                link: Arc::clone(&b.link),
                safe_url: b.safe_url.clone(),
                namespace: b.namespace.clone(),
                max_reply: b.max_reply,
            })
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, &call.actor, &call.binding))
    }

    /// Runs `cmd` for operation `what` on the binding's connection, or on
    /// one made now (see *Recovery* in the crate docs), bounded overall.
    async fn query<T: redis::FromRedisValue>(
        &self,
        target: &CallTarget,
        what: &str,
        repeat: Repeat,
        cmd: &redis::Cmd,
    ) -> Result<T, ProviderError> {
        let deadline = (self.connection_timeout + self.response_timeout) * 2;
        let report = Report {
            capid: CAPABILITY_ID,
            safe_url: &target.safe_url,
        };
        target
            .link
            .exchange(
                &report,
                Op::of(what, cmd, repeat),
                deadline,
                |mut conn| async move { cmd.query_async(&mut conn).await },
            )
            .await
    }
}

/// What a call needs of its binding, cloned out of the provider's state.
struct CallTarget {
    link: Arc<Link>,
    safe_url: String,
    namespace: Namespace,
    max_reply: usize,
}

/// A call's binding, as the operation table drives it.
struct BoundStreams<'a> {
    provider: &'a RedisEventStreams,
    target: CallTarget,
    actor: &'a str,
}

impl BoundStreams<'_> {
    fn key(&self, stream: &str) -> Result<String, ProviderError> {
        self.target
            .namespace
            .key(self.actor, stream)
            .map_err(|reason| ProviderError::backend(CAPABILITY_ID, format!("ERR {reason}")))
    }
}

#[async_trait]
impl Streams for BoundStreams<'_> {
    async fn append(&self, stream: &str, fields: &[(&str, &str)]) -> Result<String, ProviderError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key(stream)?).arg("*");
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        self.provider
            .query(&self.target, OP_WRITE_EVENT, UNSAFE, &cmd)
            .await
    }

    async fn range(
        &self,
        stream: &str,
        range: IdRange,
        limit: Option<u64>,
    ) -> Result<Vec<Entry>, ProviderError> {
        // `XRANGE … [COUNT n]`, read by a script that counts the reply's
        // bytes as it goes (RANGE_SCRIPT).
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RANGE_SCRIPT)
            .arg(1)
            .arg(self.key(stream)?)
            .arg(self.target.max_reply)
            .arg(range.start.to_string())
            .arg(range.end.to_string())
            .arg(limit.unwrap_or(0))
            .arg(stream);
        let reply: StreamRangeReply = self
            .provider
            .query(&self.target, OP_QUERY_STREAM, Repeat::Safe, &cmd)
            .await?;
        Ok(reply.ids.into_iter().map(to_entry).collect())
    }
}

/// `XRANGE KEYS[1] ARGV[2] ARGV[3]`, at most `ARGV[4]` entries (`0`: all),
/// read 256 at a time and refused with an `ERR` naming the stream
/// (`ARGV[5]`) once the reply would pass `ARGV[1]` bytes, what the actor
/// accepts: a `QueryStream` of a long stream cost the host the whole stream
/// in memory before the reply was refused as too large. Each event counts
/// as it is encoded for the actor: its id, the stream's name (every event
/// repeats it), each field and value with its MessagePack header, and the
/// event's own keys; the reply's envelope is set aside first.
const RANGE_SCRIPT: &str = r"
local limit, want, size = tonumber(ARGV[1]) - 64, tonumber(ARGV[4]), 0
local function str(n)
  if n < 32 then return n + 1 elseif n < 256 then return n + 2
  elseif n < 65536 then return n + 3 else return n + 5 end
end
local per_event = str(#ARGV[5]) + 40
local out, from = {}, ARGV[2]
while true do
  local page = 256
  if want > 0 then page = math.min(page, want - #out) end
  if page <= 0 then break end
  local entries = redis.call('XRANGE', KEYS[1], from, ARGV[3], 'COUNT', page)
  for i = 1, #entries do
    local e = entries[i]
    size = size + per_event + str(#e[1])
    for j = 1, #e[2] do size = size + str(#e[2][j]) end
    if size > limit then
      return redis.error_reply('ERR the reply of `QueryStream` on stream `' .. ARGV[5] ..
        '` would be more than ' .. ARGV[1] .. ' bytes, more than the actor accepts; ask for ' ..
        'fewer events (`count`) or a shorter time range')
    end
    out[#out + 1] = e
  end
  local last = entries[#entries]
  -- A short page is the end, and so is the largest id there is (nothing
  -- can follow it, and `(` past it is an error).
  if #entries < page or last[1] == '18446744073709551615-18446744073709551615' then break end
  from = '(' .. last[1]
end
return out
";

/// The largest `QueryStream` reply when the host did not say what the actor
/// accepts (an embedder's own bindings).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// `XADD` is not sent again after a dropped connection: repeating it could
/// add the event twice.
const UNSAFE: Repeat = Repeat::Unsafe {
    advice: "Query the stream before writing the event again",
};

impl Delivery {
    /// Delivers until cancelled, reconnecting with backoff. `ready` fires
    /// once the starting point is fixed, or is dropped if cancelled first.
    async fn run(self, cancel: CancellationToken, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        // Where each stream's delivery resumes; fixed on the first
        // successful connection, then advanced past each delivered event.
        let mut positions: Option<Vec<String>> = None;
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.session(&cancel, &mut positions, &mut ready).await {
                SessionEnd::Cancelled => return,
                SessionEnd::Failed { error, delivered } => {
                    if delivered {
                        backoff = MIN_BACKOFF;
                    }
                    tracing::warn!(actor = %self.actor, url = %self.safe_url, %error,
                        retry_in = ?backoff, "wascc:eventstreams (redis) delivery interrupted");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's worth of delivery; returns why it ended.
    async fn session(
        &self,
        cancel: &CancellationToken,
        positions: &mut Option<Vec<String>>,
        ready: &mut Option<oneshot::Sender<()>>,
    ) -> SessionEnd {
        let mut delivered = false;
        let fail = |error: RedisError, delivered| SessionEnd::Failed {
            error: error.to_string(),
            delivered,
        };
        // A connection of its own: a blocked XREAD holds up every other
        // command queued on the same connection.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(BLOCK + self.response_timeout));
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let mut conn = tokio::select! {
            () = cancel.cancelled() => return SessionEnd::Cancelled,
            conn = connect => match conn {
                Ok(conn) => conn,
                Err(e) => return fail(e, delivered),
            },
        };
        let ids = match positions {
            Some(ids) => ids,
            None => {
                let newest = tokio::select! {
                    () = cancel.cancelled() => return SessionEnd::Cancelled,
                    newest = last_ids(&mut conn, &self.keys) => newest,
                };
                match newest {
                    Ok(ids) => positions.insert(ids),
                    Err(e) => return fail(e, delivered),
                }
            }
        };
        if let Some(ready) = ready.take() {
            // The binder may have stopped waiting; nothing to tell then.
            let _ = ready.send(());
        }
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(self.batch)
                .arg("BLOCK")
                .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(u64::MAX))
                .arg("STREAMS")
                .arg(&self.keys)
                .arg(&*ids);
            let read = cmd.query_async::<Option<StreamReadReply>>(&mut conn);
            let reply = tokio::select! {
                () = cancel.cancelled() => return SessionEnd::Cancelled,
                reply = read => match reply {
                    Ok(reply) => reply,
                    Err(e) => return fail(e, delivered),
                },
            };
            for stream_key in reply.map(|r| r.keys).unwrap_or_default() {
                let Some(index) = self.keys.iter().position(|k| *k == stream_key.key) else {
                    continue;
                };
                for entry in stream_key.ids {
                    // Stop between events, never inside a dispatch.
                    if cancel.is_cancelled() {
                        return SessionEnd::Cancelled;
                    }
                    ids[index].clone_from(&entry.id);
                    delivered = true;
                    // The actor sees the name it subscribed to, not the key.
                    self.deliver(to_entry(entry).into_event(&self.streams[index]))
                        .await;
                }
            }
        }
    }

    async fn deliver(&self, event: Event) {
        let id = event.event_id.clone();
        let payload = match encode(CAPABILITY_ID, &event) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(actor = %self.actor, %error, "cannot encode an event");
                return;
            }
        };
        if let Err(error) = self
            .dispatcher
            .dispatch(&self.actor, OP_DELIVER_EVENT, payload)
            .await
        {
            tracing::warn!(actor = %self.actor, stream = %event.stream, event_id = %id, %error,
                "wascc:eventstreams (redis) could not deliver an event");
        }
    }
}

enum SessionEnd {
    Cancelled,
    Failed { error: String, delivered: bool },
}

/// The id of each stream's newest entry (`0-0` for an empty or missing
/// stream), so delivery starts after what exists now; unlike `$`, these ids
/// stay valid across reconnections.
async fn last_ids(
    conn: &mut MultiplexedConnection,
    streams: &[String],
) -> Result<Vec<String>, RedisError> {
    let mut ids = Vec::with_capacity(streams.len());
    for stream in streams {
        let newest: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        ids.push(
            newest
                .ids
                .into_iter()
                .next()
                .map_or_else(|| "0-0".to_string(), |entry| entry.id),
        );
    }
    Ok(ids)
}

/// A stream entry as the contract carries it.
fn to_entry(entry: StreamId) -> Entry {
    let values = entry
        .map
        .into_iter()
        .map(|(field, value)| {
            // Fields written by other applications may hold binary or
            // numeric values; the contract carries strings.
            let text = redis::from_redis_value::<String>(value.clone())
                .unwrap_or_else(|_| format!("{value:?}"));
            (field, text)
        })
        .collect();
    Entry {
        id: entry.id,
        values,
    }
}

/// Stops a delivery task and waits for it; a task stuck past the bound is
/// aborted.
async fn stop(subscription: Subscription) {
    subscription.cancel.cancel();
    let mut task = subscription.task;
    match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
        Ok(Err(error)) if error.is_panic() => {
            tracing::error!(%error, "wascc:eventstreams (redis) delivery task panicked");
        }
        Ok(_) => {}
        Err(_) => task.abort(),
    }
}

#[async_trait]
impl CapabilityProvider for RedisEventStreams {
    fn descriptor(&self) -> CapabilityDescriptor {
        waxosuit_cap_eventstreams::descriptor(
            "Waxosuit Redis event streams",
            "Append-only event streams on Redis streams: write, query by time, and delivery of \
             new events to subscribed actors.",
        )
    }

    /// Keeps the dispatcher and starts delivery for bindings made before.
    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        let mut state = self.state.lock();
        state.dispatcher = Some(dispatcher);
        let keys: Vec<_> = state.bindings.keys().cloned().collect();
        for key in keys {
            self.subscribe(&mut state, &key)?;
        }
        Ok(())
    }

    /// Validates the configuration and, with `STREAMS`, starts delivery;
    /// waits (bounded by the timeouts) until delivery has fixed its starting
    /// point, so events written after this returns reach the actor.
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let url = request
            .values
            .get(CONFIG_URL)
            .map_or(DEFAULT_URL, String::as_str);
        let safe_url = waxosuit_provider::redact_url(url);
        let config_error = |key: &str, reason: String| ProviderError::Config {
            capid: CAPABILITY_ID.to_string(),
            actor: request.actor.clone(),
            key: key.to_string(),
            reason,
        };
        // The parser's message may quote the URL, password and all.
        let client = Client::open(url).map_err(|e| {
            config_error(
                CONFIG_URL,
                format!(
                    "is not a valid Redis URL ({safe_url}: {}); expected \
                     redis://[user:password@]host[:port][/db]",
                    e.detail().unwrap_or("unparsable")
                ),
            )
        })?;
        let streams: Vec<String> = request
            .values
            .get(CONFIG_STREAMS)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if request.values.contains_key(CONFIG_STREAMS) && streams.is_empty() {
            return Err(config_error(
                CONFIG_STREAMS,
                "names no stream; list them comma-separated, e.g. `orders,payments`".into(),
            ));
        }
        let namespace = match request.values.get(CONFIG_STREAM_PREFIX) {
            Some(shared) => {
                if shared.starts_with(RESERVED_PREFIX) {
                    return Err(config_error(
                        CONFIG_STREAM_PREFIX,
                        format!(
                            "`{shared}` starts with `{RESERVED_PREFIX}`, which the per-actor \
                             namespaces of Waxosuit's Redis providers use; shared streams may \
                             not reach them: choose another prefix"
                        ),
                    ));
                }
                Namespace {
                    prefix: shared.clone(),
                    own: false,
                }
            }
            None => Namespace {
                prefix: format!("wxs:es:{}:{}:", request.actor, request.binding),
                own: true,
            },
        };
        for stream in &streams {
            namespace
                .key(&request.actor, stream)
                .map_err(|reason| config_error(CONFIG_STREAMS, reason))?;
        }
        let max_reply = request
            .actor_max_payload()
            .unwrap_or(DEFAULT_MAX_REPLY_BYTES);
        let link = Arc::new(Link::new(
            client.clone(),
            self.connection_timeout,
            self.response_timeout,
        ));

        let key = (request.actor.clone(), request.binding.clone());
        let (previous, ready) = {
            let mut state = self.state.lock();
            let previous = state.bindings.insert(
                key.clone(),
                Binding {
                    link,
                    client,
                    safe_url,
                    namespace,
                    max_reply,
                    streams,
                    subscription: None,
                },
            );
            let ready = self.subscribe(&mut state, &key)?;
            (previous, ready)
        };
        // A re-bind replaces the old configuration and its delivery.
        if let Some(subscription) = previous.and_then(|b| b.subscription) {
            stop(subscription).await;
        }
        if let Some(ready) = ready {
            let bound = self.connection_timeout + self.response_timeout * 2;
            if tokio::time::timeout(bound, ready).await.is_err() {
                tracing::warn!(actor = %request.actor, "wascc:eventstreams (redis) bound while \
                    Redis is unreachable; delivery starts when it answers");
            }
        }
        Ok(())
    }

    /// Forgets the binding and stops its delivery, waiting for the task.
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let removed = self
            .state
            .lock()
            .bindings
            .remove(&(actor.to_string(), binding.to_string()))
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        if let Some(subscription) = removed.subscription {
            stop(subscription).await;
        }
        Ok(())
    }

    /// Finds the caller's binding and answers through the contract's
    /// operation table.
    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let streams = BoundStreams {
            provider: self,
            target: self.binding(&call)?,
            actor: &call.actor,
        };
        waxosuit_cap_eventstreams::dispatch(&streams, &call.operation, &call.payload).await
    }

    /// `PING`s the server of every binding (connecting if need be);
    /// healthy when all answer.
    async fn health(&self) -> Health {
        let targets: Vec<CallTarget> = self
            .state
            .lock()
            .bindings
            .values()
            .map(|b| CallTarget {
                link: Arc::clone(&b.link),
                safe_url: b.safe_url.clone(),
                namespace: b.namespace.clone(),
                max_reply: b.max_reply,
            })
            .collect();
        let mut failures = Vec::new();
        for target in targets {
            let cmd = redis::cmd("PING");
            if let Err(e) = self
                .query::<String>(&target, "PING", Repeat::Safe, &cmd)
                .await
            {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            Health::healthy()
        } else {
            Health::unhealthy(failures.join("; "))
        }
    }

    /// Stops every delivery task, waiting for them, and drops every binding.
    async fn shutdown(&self) {
        let bindings: Vec<Binding> = {
            let mut state = self.state.lock();
            state.dispatcher = None;
            state.bindings.drain().map(|(_, b)| b).collect()
        };
        for subscription in bindings.into_iter().filter_map(|b| b.subscription) {
            stop(subscription).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_holds_about_sixteen_mebibytes_of_the_largest_events() {
        assert_eq!(read_batch(4 << 20), 4);
        assert_eq!(read_batch(64 << 10), READ_BATCH);
        assert_eq!(read_batch(64 << 20), 1);
    }

    #[test]
    fn non_string_field_values_are_still_delivered() {
        let entry = StreamId {
            id: "1-0".into(),
            map: HashMap::from([
                ("n".to_string(), redis::Value::Int(7)),
                ("s".to_string(), redis::Value::BulkString(b"x".to_vec())),
            ]),
            ..StreamId::default()
        };
        let event = to_entry(entry).into_event("st");
        assert_eq!(event.event_id, "1-0");
        assert_eq!(event.stream, "st");
        assert_eq!(event.values["s"], "x");
        assert_eq!(event.values["n"], "7");
    }
}
