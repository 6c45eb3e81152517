//! The Redis-backed `wascc:keyvalue` provider of Waxosuit.
//!
//! Actors written against the waSCC key-value contract keep their data in a
//! Redis server. The replies, numbers and error texts follow the embedded
//! `waxosuit-cap-keyvalue-memory` provider, so an actor behaves the same when
//! its manifest moves it from memory to Redis.
//!
//! # A guided tour
//!
//! * [`RedisKeyValue::new`] builds the provider with the default timeouts;
//!   [`RedisKeyValue::with_timeouts`] picks others. Register it with the host
//!   like any [`CapabilityProvider`].
//! * **Configuration**, per binding:
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`CONFIG_URL`] (`URL`) | [`DEFAULT_URL`] | the server, `redis://[user:password@]host[:port][/db]` (or `rediss://`, `redis+unix://`) |
//!   | [`CONFIG_KEY_PREFIX`] (`KEY_PREFIX`) | `wxs:<actor>:<binding>:` | prepended to every key the actor names; may be empty |
//!
//!   A URL that does not parse fails [`bind_actor`](CapabilityProvider::bind_actor)
//!   with [`ProviderError::Config`]. A server that cannot be reached does
//!   **not**: binding never touches the network, so a host can start before
//!   its Redis. Calls fail with [`ProviderError::Unavailable`] until the
//!   server answers, then succeed without rebinding.
//! * **Isolation.** By default each (actor, binding) pair works under the
//!   prefix `wxs:<actor>:<binding>:`, so an actor can neither read nor
//!   overwrite another actor's keys: every key it sends, including each key
//!   of `SetUnion` and `SetIntersection`, is prefixed before it reaches
//!   Redis. `KEY_PREFIX` replaces that prefix; an empty one gives the actor
//!   the raw keyspace, for sharing data with applications that predate it,
//!   and two bindings with the same prefix share their keys on purpose.
//!   Unlike the memory provider, [`remove_actor`](CapabilityProvider::remove_actor)
//!   keeps the data: it lives in Redis, not in the binding.
//! * **Operations** (all of [`waxosuit_codec::keyvalue`]):
//!
//!   | Operation | Redis | Notes |
//!   |---|---|---|
//!   | `Get` | `GET` | `exists: false` for a missing key |
//!   | `Set` | `SET` / `SET … EX` | `expires` seconds, `0` for none (the 2020 provider ignored it) |
//!   | `Add` | `INCRBY` | a result outside the reply's `i32` is refused and the value left as it was |
//!   | `Del` | `DEL` | any type |
//!   | `Clear` | `DEL` | lists only: another type is a `WRONGTYPE` error |
//!   | `Range` | `LRANGE` | inclusive stop, negative indices from the end |
//!   | `Push` | `LPUSH` | replies the new length |
//!   | `ListItemDelete` | `LREM key 0 value` + `LLEN` | replies the length left |
//!   | `SetAdd` / `SetRemove` | `SADD` / `SREM` | reply 1 if a member was added / removed, else 0 |
//!   | `SetUnion` / `SetIntersection` | `SUNION` / `SINTER` | at least one key; members sorted |
//!   | `SetQuery` | `SMEMBERS` | members sorted |
//!   | `KeyExists` | `EXISTS` | `value` is empty |
//!
//!   `Add`, `Clear` and `ListItemDelete` run as Lua scripts so that their
//!   checks and writes are one atomic step, as in the memory provider.
//! * **Errors.** Refusals by Redis (`WRONGTYPE …`, `ERR …`) are
//!   [`ProviderError::Backend`] carrying Redis' message. A server that is
//!   down, unreachable or slower than the timeouts gives
//!   [`ProviderError::Unavailable`] naming the URL with any password
//!   removed.
//! * **Connections and recovery.** Bindings with the same URL share one
//!   multiplexed connection, made when a call first needs it. Each
//!   connection attempt is bounded by the connection timeout and each
//!   command by the response timeout (both [`DEFAULT_TIMEOUT`] unless set),
//!   so a call during an outage fails within about that time instead of
//!   hanging (at once when the server refuses connections), with the error
//!   of its own attempt. The provider notices at once when the server
//!   closes the connection (a restart), and a call that finds no open
//!   connection makes one **within the call**: the first call after the
//!   server is back succeeds; no call is ever answered with the error of an
//!   earlier outage. If a connection drops while a command is in flight,
//!   operations that are safe to repeat (`Get`, `Set`, `Del`, `Clear`,
//!   `Range`, `ListItemDelete`, `SetQuery`, `SetUnion`, `SetIntersection`,
//!   `KeyExists`) are retried once on a new connection; `Add`, `Push`,
//!   `SetAdd` and `SetRemove` are not, since Redis may have applied them
//!   (their reply or their effect would differ), and fail with
//!   [`ProviderError::Unavailable`] saying so. A call's whole exchange is
//!   bounded by twice the connection timeout plus four times the response
//!   timeout (6 s by default); the host's per-call deadline may end it
//!   sooner. [`health`](CapabilityProvider::health) `PING`s every server in
//!   use, and [`shutdown`](CapabilityProvider::shutdown) drops every
//!   binding and closes the connections.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use waxosuit_cap_keyvalue_redis::{CONFIG_URL, RedisKeyValue};
//! use waxosuit_codec::keyvalue::{AddRequest, AddResponse, CAPABILITY_ID, OP_ADD};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kv = RedisKeyValue::new();
//! kv.bind_actor(BindRequest {
//!     actor: "MACTOR".into(),
//!     binding: "default".into(),
//!     values: HashMap::from([(CONFIG_URL.to_string(), "redis://127.0.0.1:6379/".to_string())]),
//! })
//! .await?;
//! let reply = kv
//!     .handle_call(ProviderCall {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         operation: OP_ADD.into(),
//!         payload: encode(CAPABILITY_ID, &AddRequest { key: "hits".into(), value: 2 })?,
//!     })
//!     .await?;
//! let AddResponse { value } = waxosuit_codec::deserialize(&reply)?;
//! # let _ = value;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{Client, ErrorKind, FromRedisValue, RedisError, Script};
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::keyvalue::{
    AddRequest, AddResponse, CAPABILITY_ID, DelRequest, DelResponse, GetRequest, GetResponse,
    KeyExistsQuery, ListClearRequest, ListDelItemRequest, ListPushRequest, ListRangeRequest,
    ListRangeResponse, ListResponse, OP_ADD, OP_CLEAR, OP_DEL, OP_GET, OP_KEY_EXISTS, OP_LIST_DEL,
    OP_PUSH, OP_RANGE, OP_SET, OP_SET_ADD, OP_SET_INTERSECT, OP_SET_QUERY, OP_SET_REMOVE,
    OP_SET_UNION, SetAddRequest, SetIntersectionRequest, SetOperationResponse, SetQueryRequest,
    SetQueryResponse, SetRemoveRequest, SetRequest, SetResponse, SetUnionRequest,
};
use waxosuit_provider::{
    BindRequest, CapabilityProvider, Health, ProviderCall, ProviderError, decode, encode,
};

use waxosuit_redis::Link;

/// Binding value naming the Redis server.
pub const CONFIG_URL: &str = "URL";
/// Binding value replacing the per-actor key prefix (may be empty).
pub const CONFIG_KEY_PREFIX: &str = "KEY_PREFIX";
/// The server used when a binding has no [`CONFIG_URL`].
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/";
/// Default bound on one connection attempt and on one command's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// `INCRBY` that refuses, atomically, a result the `i32` reply cannot carry.
/// `KEYS[1]` is the stored key, `ARGV[1]` the amount, `ARGV[2]` the key as
/// the actor named it (for the message). Undoing with `DECRBY` restores the
/// exact value and keeps the TTL, which a `SET` would not.
const ADD_SCRIPT: &str = r"
local before = redis.call('GET', KEYS[1]) or '0'
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n > 2147483647 or n < -2147483648 then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return redis.error_reply('ERR adding ' .. ARGV[1] .. ' to key `' .. ARGV[2] .. '` (now ' ..
    before .. ') would leave the 32-bit range of the reply; the value is unchanged')
end
return n
";

/// `DEL` of a list only, so a list helper pointed at the wrong key cannot
/// wipe a counter. `ARGV[1]` is the key as the actor named it.
const CLEAR_SCRIPT: &str = r"
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'list' then
  redis.call('DEL', KEYS[1])
elseif t ~= 'none' then
  return redis.error_reply('WRONGTYPE operation `Clear` needs a list, but key `' .. ARGV[1] ..
    '` holds a ' .. t .. '; use a different key or `Del` it first')
end
return 1
";

/// `LREM key 0 value` then `LLEN key`, atomically, so the length replied is
/// the one the removal left.
const LIST_DEL_SCRIPT: &str = r"
redis.call('LREM', KEYS[1], 0, ARGV[1])
return redis.call('LLEN', KEYS[1])
";

/// One bound (actor, binding) pair.
#[derive(Clone)]
struct Binding {
    /// Shared with every binding of the same URL.
    link: Arc<Link>,
    /// The URL as given, the key of the shared connection.
    url: String,
    /// The URL without credentials, for messages.
    safe_url: String,
    prefix: String,
}

impl Binding {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[derive(Default)]
struct State {
    /// Bindings by actor, then binding name, so a call is routed from the
    /// borrowed strings it carries.
    bindings: HashMap<String, HashMap<String, Binding>>,
    /// One connection per URL, shared by its bindings.
    connections: HashMap<String, Arc<Link>>,
}

/// Whether an operation may be sent again after its connection dropped
/// with the command in flight (Redis may or may not have applied it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Repeating it gives the same state and the same reply.
    Safe,
    /// Repeating it could apply it twice (`INCRBY`, `LPUSH`) or change its
    /// reply (`SADD`, `SREM` report whether they changed the set).
    Unsafe,
}

fn repeat(op: &str) -> Repeat {
    match op {
        OP_ADD | OP_PUSH | OP_SET_ADD | OP_SET_REMOVE => Repeat::Unsafe,
        _ => Repeat::Safe,
    }
}

/// The Redis `wascc:keyvalue` provider. See the [crate docs](crate).
pub struct RedisKeyValue {
    state: RwLock<State>,
    connection_timeout: Duration,
    response_timeout: Duration,
    add: Script,
    clear: Script,
    list_del: Script,
}

impl std::fmt::Debug for RedisKeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyValue")
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for RedisKeyValue {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisKeyValue {
    /// A provider with no bindings and [`DEFAULT_TIMEOUT`] for connecting
    /// and for each reply.
    pub fn new() -> Self {
        Self::with_timeouts(DEFAULT_TIMEOUT, DEFAULT_TIMEOUT)
    }

    /// A provider bounding each connection attempt by `connection` and each
    /// command's reply by `response`; this is how long a call may take to
    /// report an unreachable or stalled server.
    pub fn with_timeouts(connection: Duration, response: Duration) -> Self {
        RedisKeyValue {
            state: RwLock::default(),
            connection_timeout: connection,
            response_timeout: response,
            add: Script::new(ADD_SCRIPT),
            clear: Script::new(CLEAR_SCRIPT),
            list_del: Script::new(LIST_DEL_SCRIPT),
        }
    }

    fn binding(&self, actor: &str, binding: &str) -> Result<Binding, ProviderError> {
        read(&self.state)
            .bindings
            .get(actor)
            .and_then(|b| b.get(binding))
            .cloned()
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))
    }

    /// Runs one Redis exchange for operation `what`: on the open
    /// connection, or on one made now (see the crate docs on recovery).
    /// `exchange` may run twice: after a connection that dropped with the
    /// command in flight, operations that are [`Repeat::Safe`] are sent
    /// again on a new connection. The whole is bounded (a script may take
    /// two round trips when Redis has lost it, and a retry doubles that).
    async fn run<T, F, Fut>(
        &self,
        binding: &Binding,
        what: &str,
        mut exchange: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let link = &*binding.link;
        let url = &binding.safe_url;
        let attempt = async {
            let first = link.get().await.map_err(|e| connect_error(url, &e))?;
            let error = match exchange(first.conn.clone()).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if waxosuit_redis::connection_is_dead(&error) {
                // The next call must not try this connection again.
                link.forget(&first);
            }
            if !error.is_connection_dropped() || first.fresh {
                // Not a lost connection, or a connection made for this very
                // call that died at once: no second try.
                return Err(map_error(url, what, &error));
            }
            if repeat(what) == Repeat::Unsafe {
                return Err(unavailable(
                    url,
                    &format!(
                        "the connection dropped while `{what}` was in flight ({error}); Redis \
                         may or may not have applied it, so it was not sent again. Check the \
                         value before repeating the call; the next call reconnects"
                    ),
                ));
            }
            // Reconnect within the call: the server probably restarted
            // between the calls that used the old connection and this one.
            let second = link.get().await.map_err(|e| connect_error(url, &e))?;
            let result = exchange(second.conn.clone()).await;
            if let Err(error) = &result
                && waxosuit_redis::connection_is_dead(error)
            {
                link.forget(&second);
            }
            result.map_err(|e| map_error(url, what, &e))
        };
        let bound = (self.connection_timeout + self.response_timeout * 2) * 2;
        match tokio::time::timeout(bound, attempt).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(url, &format!("no reply within {bound:?}"))),
        }
    }

    async fn cmd<T: FromRedisValue>(
        &self,
        binding: &Binding,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, ProviderError> {
        self.run(binding, what, |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Runs `script` with `keys` and `args` under the [`run`](Self::run) rules.
    async fn script<T: FromRedisValue>(
        &self,
        binding: &Binding,
        what: &str,
        script: &Script,
        key: &str,
        args: &[&str],
    ) -> Result<T, ProviderError> {
        self.run(binding, what, |mut conn| async move {
            let mut invocation = script.key(key);
            for arg in args {
                invocation.arg(*arg);
            }
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    async fn dispatch(&self, call: &ProviderCall, b: &Binding) -> Result<Vec<u8>, ProviderError> {
        let op = call.operation.as_str();
        match op {
            OP_GET => {
                let req: GetRequest = decode(CAPABILITY_ID, call)?;
                let value: Option<String> = self
                    .cmd(b, op, redis::cmd("GET").arg(b.key(&req.key)))
                    .await?;
                encode(
                    CAPABILITY_ID,
                    &GetResponse {
                        exists: value.is_some(),
                        value: value.unwrap_or_default(),
                    },
                )
            }
            OP_SET => {
                let req: SetRequest = decode(CAPABILITY_ID, call)?;
                let mut cmd = redis::cmd("SET");
                cmd.arg(b.key(&req.key)).arg(&req.value);
                match req.expires_s {
                    0 => {}
                    s if s < 0 => {
                        return Err(ProviderError::backend(
                            CAPABILITY_ID,
                            format!(
                                "ERR invalid expire time {s} for key `{}`; use 0 for none or a \
                                 positive number of seconds",
                                req.key
                            ),
                        ));
                    }
                    s => {
                        cmd.arg("EX").arg(s);
                    }
                }
                let () = self.cmd(b, op, &cmd).await?;
                encode(CAPABILITY_ID, &SetResponse { value: req.value })
            }
            OP_ADD => {
                let req: AddRequest = decode(CAPABILITY_ID, call)?;
                let value: i32 = self
                    .script(
                        b,
                        op,
                        &self.add,
                        &b.key(&req.key),
                        &[&req.value.to_string(), &req.key],
                    )
                    .await?;
                encode(CAPABILITY_ID, &AddResponse { value })
            }
            OP_DEL => {
                let req: DelRequest = decode(CAPABILITY_ID, call)?;
                let _deleted: i64 = self
                    .cmd(b, op, redis::cmd("DEL").arg(b.key(&req.key)))
                    .await?;
                encode(CAPABILITY_ID, &DelResponse { key: req.key })
            }
            OP_CLEAR => {
                let req: ListClearRequest = decode(CAPABILITY_ID, call)?;
                let _done: i64 = self
                    .script(b, op, &self.clear, &b.key(&req.key), &[&req.key])
                    .await?;
                encode(CAPABILITY_ID, &DelResponse { key: req.key })
            }
            OP_RANGE => {
                let req: ListRangeRequest = decode(CAPABILITY_ID, call)?;
                let values: Vec<String> = self
                    .cmd(
                        b,
                        op,
                        redis::cmd("LRANGE")
                            .arg(b.key(&req.key))
                            .arg(req.start)
                            .arg(req.stop),
                    )
                    .await?;
                encode(CAPABILITY_ID, &ListRangeResponse { values })
            }
            OP_PUSH => {
                let req: ListPushRequest = decode(CAPABILITY_ID, call)?;
                let len: i64 = self
                    .cmd(
                        b,
                        op,
                        redis::cmd("LPUSH").arg(b.key(&req.key)).arg(&req.value),
                    )
                    .await?;
                encode(
                    CAPABILITY_ID,
                    &ListResponse {
                        new_count: count(len),
                    },
                )
            }
            OP_LIST_DEL => {
                let req: ListDelItemRequest = decode(CAPABILITY_ID, call)?;
                let len: i64 = self
                    .script(b, op, &self.list_del, &b.key(&req.key), &[&req.value])
                    .await?;
                encode(
                    CAPABILITY_ID,
                    &ListResponse {
                        new_count: count(len),
                    },
                )
            }
            OP_SET_ADD => {
                let req: SetAddRequest = decode(CAPABILITY_ID, call)?;
                let added: i64 = self
                    .cmd(
                        b,
                        op,
                        redis::cmd("SADD").arg(b.key(&req.key)).arg(&req.value),
                    )
                    .await?;
                encode(
                    CAPABILITY_ID,
                    &SetOperationResponse {
                        new_count: count(added),
                    },
                )
            }
            OP_SET_REMOVE => {
                let req: SetRemoveRequest = decode(CAPABILITY_ID, call)?;
                let removed: i64 = self
                    .cmd(
                        b,
                        op,
                        redis::cmd("SREM").arg(b.key(&req.key)).arg(&req.value),
                    )
                    .await?;
                encode(
                    CAPABILITY_ID,
                    &SetOperationResponse {
                        new_count: count(removed),
                    },
                )
            }
            OP_SET_UNION => {
                let req: SetUnionRequest = decode(CAPABILITY_ID, call)?;
                let values = self.set_query(b, op, "SUNION", &req.keys).await?;
                encode(CAPABILITY_ID, &SetQueryResponse { values })
            }
            OP_SET_INTERSECT => {
                let req: SetIntersectionRequest = decode(CAPABILITY_ID, call)?;
                let values = self.set_query(b, op, "SINTER", &req.keys).await?;
                encode(CAPABILITY_ID, &SetQueryResponse { values })
            }
            OP_SET_QUERY => {
                let req: SetQueryRequest = decode(CAPABILITY_ID, call)?;
                let values = self
                    .set_query(b, op, "SMEMBERS", std::slice::from_ref(&req.key))
                    .await?;
                encode(CAPABILITY_ID, &SetQueryResponse { values })
            }
            OP_KEY_EXISTS => {
                let req: KeyExistsQuery = decode(CAPABILITY_ID, call)?;
                let n: i64 = self
                    .cmd(b, op, redis::cmd("EXISTS").arg(b.key(&req.key)))
                    .await?;
                encode(
                    CAPABILITY_ID,
                    &GetResponse {
                        value: String::new(),
                        exists: n > 0,
                    },
                )
            }
            other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
        }
    }

    /// `SUNION`, `SINTER` or `SMEMBERS` over the actor's keys, sorted so
    /// the answer does not depend on Redis' internal order (and matches the
    /// memory provider's).
    async fn set_query(
        &self,
        b: &Binding,
        op: &str,
        command: &str,
        keys: &[String],
    ) -> Result<Vec<String>, ProviderError> {
        if keys.is_empty() {
            // Redis would say "wrong number of arguments"; name the operation.
            return Err(ProviderError::backend(
                CAPABILITY_ID,
                format!("ERR `{op}` needs at least one key"),
            ));
        }
        let mut cmd = redis::cmd(command);
        for key in keys {
            cmd.arg(b.key(key));
        }
        let mut values: Vec<String> = self.cmd(b, op, &cmd).await?;
        values.sort_unstable();
        Ok(values)
    }
}

// A poisoned lock still guards consistent maps: no code panics between two
// of their mutations.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Lengths travel as `i32`; a larger one is reported as `i32::MAX` rather
/// than wrapped to a negative length.
fn count(n: i64) -> i32 {
    i32::try_from(n.clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
}

fn unavailable(safe_url: &str, reason: &str) -> ProviderError {
    ProviderError::Unavailable {
        capid: CAPABILITY_ID.to_string(),
        reason: format!("Redis at {safe_url}: {reason}"),
    }
}

/// A failed connection attempt made for the current call (never an earlier
/// one's): nothing was sent.
fn connect_error(safe_url: &str, error: &RedisError) -> ProviderError {
    let reason = match error.kind() {
        // A wrong password or database is the configuration's fault.
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig => format!(
            "cannot connect: {error}; fix the binding's `{CONFIG_URL}` (credentials, database)"
        ),
        _ => format!(
            "cannot connect: {error}; nothing was sent. Check that Redis is running and \
             reachable there: calls succeed again as soon as it accepts connections"
        ),
    };
    unavailable(safe_url, &reason)
}

/// Sorts a Redis failure into the server refusing the request (the actor's
/// problem: `Backend`) and the server not answering (`Unavailable`).
fn map_error(safe_url: &str, what: &str, error: &RedisError) -> ProviderError {
    match error.kind() {
        ErrorKind::Server(_) | ErrorKind::Extension => {
            let message = match (error.code(), error.detail()) {
                (Some(code), Some(detail)) => format!("{code} {detail}"),
                (Some(code), None) => code.to_string(),
                _ => error.to_string(),
            };
            ProviderError::backend(CAPABILITY_ID, message)
        }
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => ProviderError::Internal {
            capid: CAPABILITY_ID.to_string(),
            message: format!("unexpected reply from Redis at {safe_url} to `{what}`: {error}"),
        },
        _ => unavailable(safe_url, &error.to_string()),
    }
}

#[async_trait]
impl CapabilityProvider for RedisKeyValue {
    fn descriptor(&self) -> CapabilityDescriptor {
        let to_provider = OperationDirection::ToProvider;
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit Redis key-value store")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(
                "Key-value store on a Redis server: strings, counters, lists and sets with \
                 expiry, namespaced per actor binding.",
            )
            .with_operations(to_provider, &waxosuit_codec::keyvalue::OPERATIONS)
            .build()
    }

    /// Validates the configuration and prepares the connection without
    /// connecting; re-binding a bound pair replaces its configuration.
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let url = request
            .values
            .get(CONFIG_URL)
            .map_or(DEFAULT_URL, String::as_str)
            .to_string();
        let safe_url = waxosuit_provider::redact_url(&url);
        let config_error = |reason: String| ProviderError::Config {
            capid: CAPABILITY_ID.to_string(),
            actor: request.actor.clone(),
            key: CONFIG_URL.to_string(),
            reason,
        };
        let prefix = request
            .values
            .get(CONFIG_KEY_PREFIX)
            .cloned()
            .unwrap_or_else(|| format!("wxs:{}:{}:", request.actor, request.binding));

        let mut state = write(&self.state);
        let link = match state.connections.get(&url) {
            Some(link) => Arc::clone(link),
            None => {
                // The parser's message may quote the URL, password and all.
                let client = Client::open(url.as_str()).map_err(|e| {
                    config_error(format!(
                        "is not a valid Redis URL ({safe_url}: {}); expected \
                         redis://[user:password@]host[:port][/db]",
                        e.detail().unwrap_or("unparsable")
                    ))
                })?;
                let link = Arc::new(Link::new(
                    client,
                    self.connection_timeout,
                    self.response_timeout,
                ));
                state.connections.insert(url.clone(), Arc::clone(&link));
                link
            }
        };
        tracing::debug!(actor = %request.actor, binding = %request.binding, url = %safe_url,
            "wascc:keyvalue (redis) bound");
        state.bindings.entry(request.actor).or_default().insert(
            request.binding,
            Binding {
                link,
                url,
                safe_url,
                prefix,
            },
        );
        Ok(())
    }

    /// Forgets the binding, keeping its data in Redis; the connection is
    /// closed when no other binding uses it.
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let mut state = write(&self.state);
        let bindings = state
            .bindings
            .get_mut(actor)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        let removed = bindings
            .remove(binding)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        if bindings.is_empty() {
            state.bindings.remove(actor);
        }
        let in_use = state
            .bindings
            .values()
            .flat_map(HashMap::values)
            .any(|b| b.url == removed.url);
        if !in_use {
            state.connections.remove(&removed.url);
        }
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let binding = self.binding(&call.actor, &call.binding)?;
        self.dispatch(&call, &binding).await
    }

    /// `PING`s every server in use (connecting if need be); healthy when
    /// all answer.
    async fn health(&self) -> Health {
        let servers: Vec<(String, Arc<Link>)> = {
            let state = read(&self.state);
            state
                .connections
                .iter()
                .map(|(url, link)| (waxosuit_provider::redact_url(url), Arc::clone(link)))
                .collect()
        };
        let mut failures = Vec::new();
        for (safe_url, link) in &servers {
            let ping = async {
                let exchange = link.get().await?;
                let mut conn = exchange.conn.clone();
                let pong = redis::cmd("PING").query_async::<String>(&mut conn).await;
                if let Err(e) = &pong
                    && waxosuit_redis::connection_is_dead(e)
                {
                    link.forget(&exchange);
                }
                pong
            };
            let deadline = self.connection_timeout + self.response_timeout;
            match tokio::time::timeout(deadline, ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failures.push(format!("{safe_url}: {e}")),
                Err(_) => failures.push(format!("{safe_url}: no PONG within {deadline:?}")),
            }
        }
        if failures.is_empty() {
            Health {
                healthy: true,
                message: format!("{} Redis server(s) answer PING", servers.len()),
            }
        } else {
            Health::unhealthy(format!("Redis unreachable: {}", failures.join("; ")))
        }
    }

    /// Drops every binding and connection; later calls are
    /// [`ProviderError::NotBound`].
    async fn shutdown(&self) {
        let mut state = write(&self.state);
        state.bindings.clear();
        state.connections.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        assert_eq!(count(5), 5);
        assert_eq!(count(i64::from(i32::MAX) + 1), i32::MAX);
        assert_eq!(count(-1), 0);
    }
}
