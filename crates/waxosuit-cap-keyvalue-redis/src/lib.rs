//! The Redis-backed `wascc:keyvalue` provider of Waxosuit.
//!
//! Actors written against the waSCC key-value contract keep their data in a
//! Redis server. The replies, numbers and error texts follow the embedded
//! `waxosuit-cap-keyvalue-memory` provider, so an actor behaves the same when
//! its manifest moves it from memory to Redis.
//!
//! # A guided tour
//!
//! * [`RedisKeyValue`] is the provider: the contract's [`KeyValueProvider`]
//!   over a [`RedisBackend`]. [`RedisKeyValue::new`] builds it with the
//!   default timeouts; [`RedisBackend::with_timeouts`] picks others.
//!   Register it with the host like any
//!   [`CapabilityProvider`](waxosuit_provider::CapabilityProvider). The
//!   operation table, the contract's checks and the replies are the
//!   contract crate's ([`waxosuit_cap_keyvalue::dispatch`]); this crate maps
//!   each operation to Redis commands.
//! * **Configuration**, per binding:
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`CONFIG_URL`] (`URL`) | [`DEFAULT_URL`] | the server, `redis://[user:password@]host[:port][/db]` (or `rediss://`, `redis+unix://`) |
//!   | [`CONFIG_KEY_PREFIX`] (`KEY_PREFIX`) | `wxs:<actor>:<binding>:` | prepended to every key the actor names; may be empty |
//!
//!   A URL that does not parse fails [`bind_actor`](waxosuit_provider::CapabilityProvider::bind_actor)
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
//!   Under a `KEY_PREFIX`, a key that (prefix and key together) starts with
//!   [`RESERVED_PREFIX`] is refused, and so is a prefix starting with it:
//!   those are the per-actor namespaces, which sharing may not reach.
//!   Unlike the memory provider, [`remove_actor`](waxosuit_provider::CapabilityProvider::remove_actor)
//!   keeps the data: it lives in Redis, not in the binding.
//! * **Operations** (all of [`waxosuit_codec::keyvalue`]):
//!
//!   | Operation | Redis | Notes |
//!   |---|---|---|
//!   | `Get` | `GET` (after `STRLEN`, in a script) | `exists: false` for a missing key |
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
//!   `Get`, `Range`, `SetQuery`, `SetUnion` and `SetIntersection` run as
//!   scripts that count the reply's bytes as they gather it (each item at
//!   least 32 bytes, what holding it costs the host) (`Range` and `SetQuery`
//!   256 items at a time) and answer an `ERR` naming the operation, the key
//!   and the bound instead of a reply larger than the actor accepts (the
//!   host's `__waxosuit_max_payload`, [`DEFAULT_MAX_REPLY_BYTES`] without
//!   it): an actor that filled a list cannot make the host hold it all.
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
//!   sooner. [`health`](waxosuit_provider::CapabilityProvider::health) `PING`s every server in
//!   use, and [`shutdown`](waxosuit_provider::CapabilityProvider::shutdown) drops every
//!   binding and closes the connections.
//! * **Traces.** Each call's exchange with Redis is one client span named
//!   after the command (`GET`, `EVALSHA` for the scripts), the child of the
//!   span the call runs in ([`waxosuit_redis::Link::exchange`]).
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
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{Client, FromRedisValue, RedisError, Script};
use waxosuit_cap_keyvalue::{Backend, CAPABILITY_ID, Description, Keyspace};
use waxosuit_provider::{BindRequest, Health, ProviderError};
use waxosuit_redis::{Link, Op, Repeat, Report};

pub use waxosuit_cap_keyvalue::KeyValueProvider;

/// The Redis `wascc:keyvalue` provider. See the [crate docs](crate).
pub type RedisKeyValue = KeyValueProvider<RedisBackend>;

/// Binding value naming the Redis server.
pub const CONFIG_URL: &str = "URL";
/// Binding value replacing the per-actor key prefix (may be empty).
pub const CONFIG_KEY_PREFIX: &str = "KEY_PREFIX";

/// The start of every per-actor key of Waxosuit's Redis providers
/// (`wxs:<actor>:<binding>:` here, `wxs:es:…` for event streams): a
/// `KEY_PREFIX` may not start with it, nor a key under one reach it.
pub const RESERVED_PREFIX: &str = "wxs:";
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

/// Reads whose reply grows with what the actor stored run as scripts that
/// count the reply's bytes as they gather it (`ARGV[1]` the most the actor
/// accepts, `ARGV[2]` the operation, `ARGV[3]` the key as the actor named
/// it): past the bound Redis answers an error of a few bytes instead of,
/// say, a gigabyte the host would hold and then refuse. Each item counts
/// as MessagePack encodes it (its header is 1 to 5 bytes) and at least 32
/// bytes, what holding an item costs the host whatever its length (a reply
/// of four million empty items fits 4 MiB encoded, and took hundreds of MB
/// to read), after room for the reply's envelope.
const BOUND_LUA: &str = r"
local limit, size = tonumber(ARGV[1]) - 32, 0
local function over()
  return redis.error_reply('ERR the reply of `' .. ARGV[2] .. '` on key `' .. ARGV[3] ..
    '` would be more than ' .. ARGV[1] .. ' bytes, more than the actor accepts; read less ' ..
    'at a time (a smaller window) or raise the actor\'s max_payload_kib limit')
end
local function fits(items)
  for i = 1, #items do
    local n = #items[i]
    local cost
    if n < 32 then cost = n + 1 elseif n < 256 then cost = n + 2
    elseif n < 65536 then cost = n + 3 else cost = n + 5 end
    if cost < 32 then cost = 32 end
    size = size + cost
    if size > limit then return false end
  end
  return true
end
";

/// `LRANGE` (`ARGV[4]` start, `ARGV[5]` stop, as Redis reads them), read
/// 256 items at a time so a refused window costs Redis no more than the
/// bound either.
const RANGE_SCRIPT: &str = r"
local n = redis.call('LLEN', KEYS[1])
local start, stop = tonumber(ARGV[4]), tonumber(ARGV[5])
if start < 0 then start = math.max(n + start, 0) end
if stop < 0 then stop = n + stop end
if stop >= n then stop = n - 1 end
local out = {}
while start <= stop do
  local last = math.min(start + 255, stop)
  local items = redis.call('LRANGE', KEYS[1], start, last)
  if not fits(items) then return over() end
  for i = 1, #items do out[#out + 1] = items[i] end
  start = last + 1
end
return out
";

/// `SMEMBERS` by `SSCAN`, 256 at a time (a member a rehash hands out twice
/// is kept once).
const MEMBERS_SCRIPT: &str = r"
redis.call('SCARD', KEYS[1])
local out, seen, cursor = {}, {}, '0'
repeat
  local page = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', 256)
  cursor = page[1]
  local fresh = {}
  for i = 1, #page[2] do
    local m = page[2][i]
    if not seen[m] then seen[m] = true; fresh[#fresh + 1] = m end
  end
  if not fits(fresh) then return over() end
  for i = 1, #fresh do out[#out + 1] = fresh[i] end
until cursor == '0'
return out
";

/// `GET`, refused past the bound before the value is read: a shared
/// prefix (or another writer) can hold a string of up to 512 MB.
const GET_SCRIPT: &str = r"
if redis.call('STRLEN', KEYS[1]) + 5 > limit then return over() end
return redis.call('GET', KEYS[1])
";

/// `SUNION` or `SINTER` (`ARGV[4]`) of `KEYS`, refused past the bound.
const SET_ALGEBRA_SCRIPT: &str = r"
local members = redis.call(ARGV[4], unpack(KEYS))
if not fits(members) then return over() end
return members
";

/// The largest reply a read may gather when the host did not say what the
/// actor accepts (an embedder's own bindings).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// The scripts, loaded once per provider.
struct Scripts {
    get: Script,
    add: Script,
    clear: Script,
    list_del: Script,
    range: Script,
    members: Script,
    set_algebra: Script,
}

/// How long a keyspace waits for Redis.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    connection: Duration,
    response: Duration,
}

impl Timeouts {
    /// The bound on a call's whole exchange: a script may take two round
    /// trips when Redis has lost it, and a retry doubles that.
    fn call(self) -> Duration {
        (self.connection + self.response * 2) * 2
    }
}

/// `Add`, `Push`, `SetAdd` and `SetRemove` are not sent again after a
/// dropped connection: repeating them could apply them twice (`INCRBY`,
/// `LPUSH`) or change their reply (`SADD`, `SREM` report whether they
/// changed the set).
const UNSAFE: Repeat = Repeat::Unsafe {
    advice: "Check the value before repeating the call",
};

/// One bound (actor, binding) pair: its prefix and its server's connection.
pub struct RedisKeyspace {
    /// Shared with every binding of the same URL.
    link: Arc<Link>,
    /// The URL without credentials, for messages.
    safe_url: String,
    prefix: String,
    /// Whether `prefix` is the binding's own (`wxs:<actor>:<binding>:`),
    /// not one given in `KEY_PREFIX`.
    own: bool,
    timeouts: Timeouts,
    scripts: Arc<Scripts>,
    /// The most a read may bring back: what the actor accepts.
    max_reply: usize,
}

impl std::fmt::Debug for RedisKeyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyspace")
            .field("url", &self.safe_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisKeyspace {
    /// The Redis key of `key`. Under a `KEY_PREFIX` of the binding's
    /// choosing the key as a whole is judged: one starting with `wxs:`
    /// belongs to the per-actor namespaces of Waxosuit's Redis providers
    /// (an empty or `w` prefix completed by the actor's key reached another
    /// actor's keys and event streams).
    fn key(&self, key: &str) -> Result<String, ProviderError> {
        let full = format!("{}{key}", self.prefix);
        if !self.own && full.starts_with(RESERVED_PREFIX) {
            return Err(ProviderError::backend(
                CAPABILITY_ID,
                format!(
                    "key `{}` is refused: with the binding's KEY_PREFIX it starts with \
                     `{RESERVED_PREFIX}`, which belongs to the per-actor namespaces of Waxosuit's \
                     Redis providers; use another key or prefix",
                    key.chars().take(128).collect::<String>().escape_debug()
                ),
            ));
        }
        Ok(full)
    }

    /// Runs one exchange for `op` ([`Link::exchange`]: on the open
    /// connection or one made now, once more after a dropped connection
    /// when that is safe), bounded by [`Timeouts::call`].
    async fn run<T, F, Fut>(&self, op: Op<'_>, exchange: F) -> Result<T, ProviderError>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let report = Report {
            capid: CAPABILITY_ID,
            safe_url: &self.safe_url,
        };
        self.link
            .exchange(&report, op, self.timeouts.call(), exchange)
            .await
    }

    async fn cmd<T: FromRedisValue>(
        &self,
        what: &str,
        repeat: Repeat,
        cmd: &redis::Cmd,
    ) -> Result<T, ProviderError> {
        self.run(Op::of(what, cmd, repeat), |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Runs `script` on `key` with `args` under the [`run`](Self::run)
    /// rules.
    async fn script<T: FromRedisValue>(
        &self,
        what: &str,
        repeat: Repeat,
        script: &Script,
        key: &str,
        args: &[&str],
    ) -> Result<T, ProviderError> {
        let key = self.key(key)?;
        let op = Op {
            what,
            // What redis-rs sends first; it loads the script and sends it
            // again only when Redis has lost it.
            command: "EVALSHA",
            repeat,
        };
        self.run(op, |mut conn| {
            let mut invocation = script.key(&key);
            for arg in args {
                invocation.arg(*arg);
            }
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
    }

    /// A bounded read ([`BOUND_LUA`]): `script` over `keys` (the first
    /// named in its refusal) with `args` after the bound's own.
    async fn bounded<T: redis::FromRedisValue + Send>(
        &self,
        what: &str,
        script: &Script,
        keys: &[String],
        args: &[&str],
    ) -> Result<T, ProviderError> {
        let op = Op {
            what,
            command: "EVALSHA",
            repeat: Repeat::Safe,
        };
        let limit = self.max_reply.to_string();
        let named = keys.first().map_or("", String::as_str);
        let full: Vec<String> = keys
            .iter()
            .map(|key| self.key(key))
            .collect::<Result<_, _>>()?;
        self.run(op, |mut conn| {
            let mut invocation = script.prepare_invoke();
            for key in &full {
                invocation.key(key);
            }
            invocation.arg(&limit).arg(what).arg(named);
            for arg in args {
                invocation.arg(*arg);
            }
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
    }
}

#[async_trait]
impl Keyspace for RedisKeyspace {
    async fn get(&self, key: &str) -> Result<Option<String>, ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        self.bounded(
            "Get",
            &scripts.get,
            std::slice::from_ref(&key.to_string()),
            &[],
        )
        .await
    }

    async fn set(&self, key: &str, value: String, expires_s: u32) -> Result<(), ProviderError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)?).arg(value);
        if expires_s > 0 {
            cmd.arg("EX").arg(expires_s);
        }
        self.cmd("Set", Repeat::Safe, &cmd).await
    }

    async fn add(&self, key: &str, delta: i32) -> Result<i32, ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        self.script("Add", UNSAFE, &scripts.add, key, &[&delta.to_string(), key])
            .await
    }

    async fn del(&self, key: &str) -> Result<(), ProviderError> {
        let _deleted: i64 = self
            .cmd("Del", Repeat::Safe, redis::cmd("DEL").arg(self.key(key)?))
            .await?;
        Ok(())
    }

    async fn clear_list(&self, key: &str) -> Result<(), ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        let _done: i64 = self
            .script("Clear", Repeat::Safe, &scripts.clear, key, &[key])
            .await?;
        Ok(())
    }

    async fn range(&self, key: &str, start: i32, stop: i32) -> Result<Vec<String>, ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        let (start, stop) = (start.to_string(), stop.to_string());
        self.bounded(
            "Range",
            &scripts.range,
            std::slice::from_ref(&key.to_string()),
            &[&start, &stop],
        )
        .await
    }

    async fn push(&self, key: &str, value: String) -> Result<u64, ProviderError> {
        self.cmd(
            "Push",
            UNSAFE,
            redis::cmd("LPUSH").arg(self.key(key)?).arg(value),
        )
        .await
    }

    async fn list_remove(&self, key: &str, value: &str) -> Result<u64, ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        self.script(
            "ListItemDelete",
            Repeat::Safe,
            &scripts.list_del,
            key,
            &[value],
        )
        .await
    }

    async fn set_add(&self, key: &str, member: String) -> Result<bool, ProviderError> {
        let added: i64 = self
            .cmd(
                "SetAdd",
                UNSAFE,
                redis::cmd("SADD").arg(self.key(key)?).arg(member),
            )
            .await?;
        Ok(added > 0)
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<bool, ProviderError> {
        let removed: i64 = self
            .cmd(
                "SetRemove",
                UNSAFE,
                redis::cmd("SREM").arg(self.key(key)?).arg(member),
            )
            .await?;
        Ok(removed > 0)
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        self.bounded(
            "SetQuery",
            &scripts.members,
            std::slice::from_ref(&key.to_string()),
            &[],
        )
        .await
    }

    async fn set_union(&self, keys: &[String]) -> Result<Vec<String>, ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        self.bounded("SetUnion", &scripts.set_algebra, keys, &["SUNION"])
            .await
    }

    async fn set_intersection(&self, keys: &[String]) -> Result<Vec<String>, ProviderError> {
        let scripts = Arc::clone(&self.scripts);
        self.bounded("SetIntersection", &scripts.set_algebra, keys, &["SINTER"])
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool, ProviderError> {
        let n: i64 = self
            .cmd(
                "KeyExists",
                Repeat::Safe,
                redis::cmd("EXISTS").arg(self.key(key)?),
            )
            .await?;
        Ok(n > 0)
    }
}

/// The Redis key-value backend: one connection per server URL, shared by
/// the keyspaces of every binding that names it.
pub struct RedisBackend {
    /// Connections by URL as given; a connection closes when the last
    /// keyspace using it is dropped.
    connections: Mutex<HashMap<String, Weak<Link>>>,
    timeouts: Timeouts,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl Default for RedisBackend {
    /// [`DEFAULT_TIMEOUT`] for connecting and for each reply.
    fn default() -> Self {
        Self::with_timeouts(DEFAULT_TIMEOUT, DEFAULT_TIMEOUT)
    }
}

impl RedisBackend {
    /// A backend bounding each connection attempt by `connection` and each
    /// command's reply by `response`; this is how long a call may take to
    /// report an unreachable or stalled server.
    pub fn with_timeouts(connection: Duration, response: Duration) -> Self {
        RedisBackend {
            connections: Mutex::new(HashMap::new()),
            timeouts: Timeouts {
                connection,
                response,
            },
            scripts: Arc::new(Scripts {
                get: Script::new(&format!("{BOUND_LUA}{GET_SCRIPT}")),
                add: Script::new(ADD_SCRIPT),
                clear: Script::new(CLEAR_SCRIPT),
                list_del: Script::new(LIST_DEL_SCRIPT),
                range: Script::new(&format!("{BOUND_LUA}{RANGE_SCRIPT}")),
                members: Script::new(&format!("{BOUND_LUA}{MEMBERS_SCRIPT}")),
                set_algebra: Script::new(&format!("{BOUND_LUA}{SET_ALGEBRA_SCRIPT}")),
            }),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    type Keyspace = RedisKeyspace;

    fn description(&self) -> Description {
        Description {
            name: "Waxosuit Redis key-value store",
            long_description: "Key-value store on a Redis server: strings, counters, lists and \
                               sets with expiry, namespaced per actor binding.",
        }
    }

    /// Validates the configuration and prepares the connection without
    /// connecting; re-binding a bound pair replaces its configuration.
    fn open(
        &self,
        request: &BindRequest,
        _current: Option<&Arc<RedisKeyspace>>,
    ) -> Result<Arc<RedisKeyspace>, ProviderError> {
        let url = request
            .values
            .get(CONFIG_URL)
            .map_or(DEFAULT_URL, String::as_str);
        let safe_url = waxosuit_provider::redact_url(url);
        let (prefix, own) = match request.values.get(CONFIG_KEY_PREFIX) {
            Some(shared) if shared.starts_with(RESERVED_PREFIX) => {
                return Err(ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: CONFIG_KEY_PREFIX.to_string(),
                    reason: format!(
                        "`{shared}` starts with `{RESERVED_PREFIX}`, which the per-actor \
                         namespaces of Waxosuit's Redis providers use; choose another prefix"
                    ),
                });
            }
            Some(shared) => (shared.clone(), false),
            None => (
                format!("{RESERVED_PREFIX}{}:{}:", request.actor, request.binding),
                true,
            ),
        };
        let max_reply = request
            .actor_max_payload()
            .unwrap_or(DEFAULT_MAX_REPLY_BYTES);
        let mut connections = self.connections.lock();
        connections.retain(|_, link| link.strong_count() > 0);
        let link = match connections.get(url).and_then(Weak::upgrade) {
            Some(link) => link,
            None => {
                // The parser's message may quote the URL, password and all.
                let client = Client::open(url).map_err(|e| ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: CONFIG_URL.to_string(),
                    reason: format!(
                        "is not a valid Redis URL ({safe_url}: {}); expected \
                         redis://[user:password@]host[:port][/db]",
                        e.detail().unwrap_or("unparsable")
                    ),
                })?;
                let link = Arc::new(Link::new(
                    client,
                    self.timeouts.connection,
                    self.timeouts.response,
                ));
                connections.insert(url.to_string(), Arc::downgrade(&link));
                link
            }
        };
        tracing::debug!(actor = %request.actor, binding = %request.binding, url = %safe_url,
            "wascc:keyvalue (redis) bound");
        Ok(Arc::new(RedisKeyspace {
            link,
            safe_url,
            prefix,
            own,
            timeouts: self.timeouts,
            scripts: Arc::clone(&self.scripts),
            max_reply,
        }))
    }

    /// `PING`s every server in use (connecting if need be); healthy when
    /// all answer.
    async fn health(&self) -> Health {
        let servers: Vec<(String, Arc<Link>)> = self
            .connections
            .lock()
            .iter()
            .filter_map(|(url, link)| Some((waxosuit_provider::redact_url(url), link.upgrade()?)))
            .collect();
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
            let deadline = self.timeouts.connection + self.timeouts.response;
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

    /// Forgets every connection; the provider has dropped the keyspaces
    /// that held them, which closes them.
    async fn shutdown(&self) {
        self.connections.lock().clear();
    }
}
