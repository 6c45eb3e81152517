//! One actor binding's keyspace, with Redis semantics.
//!
//! Everything here is synchronous and takes the current time as an argument
//! (a [`Duration`] since an epoch the caller picks, so the store needs no
//! clock and builds for `wasm32` inside the SDK's fake host): the keyspace
//! holds the store's lock for the whole of an operation (which is what makes
//! `Add` atomic), and tests can move time without sleeping.
//!
//! A store also keeps its quotas ([`Limits`]): every operation that would
//! add a key or bytes checks first and fails, changing nothing, when the
//! result would be over a limit. The byte count is kept up to date on every
//! change rather than computed, so the check costs nothing.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use super::Limits;

/// A point in time: how long after the caller's epoch.
type Instant = Duration;

/// What a key holds. Redis has one keyspace for all types, and so does a store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    List(VecDeque<String>),
    // Ordered so that `SetQuery`, `SetUnion` and `SetIntersection` answer in a
    // stable order, which Redis does not promise but which costs nothing here.
    Set(BTreeSet<String>),
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::String,
            Value::List(_) => Kind::List,
            Value::Set(_) => Kind::Set,
        }
    }
}

/// A value's type, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    List,
    Set,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::String => "a string",
            Kind::List => "a list",
            Kind::Set => "a set",
        })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Why a store refused an operation. The provider turns these into
/// [`ProviderError::Backend`](waxosuit_provider::ProviderError::Backend), so
/// the texts follow Redis' (`WRONGTYPE`, `ERR …`) where Redis has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(
        "WRONGTYPE operation `{operation}` needs {wanted}, but key `{key}` holds {held}; use a \
         different key or `Del` it first"
    )]
    WrongType {
        operation: &'static str,
        key: String,
        held: Kind,
        wanted: Kind,
    },
    #[error(
        "ERR the value of key `{key}` is not an integer or out of range; `Add` needs a decimal \
         integer string such as \"42\""
    )]
    NotAnInteger { key: String },
    #[error(
        "ERR adding {delta} to key `{key}` (now {current}) would leave the 32-bit range of the \
         reply; the value is unchanged"
    )]
    Overflow {
        key: String,
        current: i64,
        delta: i32,
    },
    #[error("ERR `{operation}` needs at least one key")]
    NoKeys { operation: &'static str },
    /// The same text as the Redis backend's bound.
    #[error(
        "ERR the reply of `{operation}` on key `{key}` would be more than {limit} bytes, more \
         than the actor accepts; read less at a time (a smaller window) or raise the actor's \
         max_payload_kib limit"
    )]
    ReplyTooLarge {
        operation: &'static str,
        key: String,
        limit: u64,
    },
    /// The write would take the store over one of its [`Limits`]. The
    /// provider adds who and what to raise, which the store does not know.
    #[error(
        "{in_use} of {limit} {unit} are in use and `{operation}` on key `{key}` needs {needed} \
         more; nothing was changed"
    )]
    Quota {
        quota: Quota,
        operation: &'static str,
        key: String,
        limit: u64,
        in_use: u64,
        needed: u64,
        unit: &'static str,
    },
}

/// Which of a store's [`Limits`] a write would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quota {
    /// [`Limits::max_keys`].
    Keys,
    /// [`Limits::max_bytes`].
    Bytes,
}

/// What one key, list item or set member costs on top of its bytes: an
/// empty string still takes memory (its `String`, its slot in the map, list
/// or set), and without this an actor could hold millions of empty list
/// items inside a byte quota of zero.
pub(crate) const ITEM_OVERHEAD_BYTES: u64 = 32;

/// Items of a reply, counted as MessagePack encodes them (a header of 1 to
/// 5 bytes each) and at least [`ITEM_OVERHEAD_BYTES`] (what each costs the
/// host to hold, however short), after 32 for the reply's envelope, against
/// `limit`, and copied only once they all fit. The Redis backend counts the
/// same way.
fn bounded_reply<'a>(
    operation: &'static str,
    key: &str,
    limit: u64,
    items: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<String>, StoreError> {
    let room = limit.saturating_sub(32);
    let mut size = 0u64;
    let mut kept: Vec<&String> = Vec::new();
    for item in items {
        let n = item.len() as u64;
        size += (n + match n {
            0..32 => 1,
            32..256 => 2,
            256..65_536 => 3,
            _ => 5,
        })
        .max(ITEM_OVERHEAD_BYTES);
        if size > room {
            return Err(StoreError::ReplyTooLarge {
                operation,
                key: key.to_string(),
                limit,
            });
        }
        kept.push(item);
    }
    Ok(kept.into_iter().cloned().collect())
}

/// The bytes an item (key, string value, list item, set member) counts for.
fn item_bytes(item: &str) -> u64 {
    // `usize` is at most 64 bits on every supported target.
    item.len() as u64 + ITEM_OVERHEAD_BYTES
}

/// The bytes `key` holding `value` counts for: the key and every item of
/// the value, each with [`ITEM_OVERHEAD_BYTES`].
fn entry_bytes(key: &str, value: &Value) -> u64 {
    item_bytes(key)
        + match value {
            Value::Str(s) => s.len() as u64,
            Value::List(list) => list.iter().map(|item| item_bytes(item)).sum(),
            Value::Set(set) => set.iter().map(|member| item_bytes(member)).sum(),
        }
}

/// One keyspace.
#[derive(Debug)]
pub(crate) struct Store {
    entries: HashMap<String, Entry>,
    limits: Limits,
    /// [`entry_bytes`] summed over `entries`, expired ones included until
    /// they are dropped: they still take memory.
    bytes: u64,
    /// No entry expires before this; `None` when none has an expiry. May be
    /// early (the entry was deleted since), never late.
    next_expiry: Option<Instant>,
}

impl Store {
    pub(crate) fn new(limits: Limits) -> Store {
        Store {
            entries: HashMap::new(),
            limits,
            bytes: 0,
            next_expiry: None,
        }
    }

    /// Entries held, including expired ones nobody has touched or swept yet.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held, as [`Limits::max_bytes`] counts them.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Applies new limits. Data already held stays even if it is over them;
    /// only writes that would grow the store further are refused.
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Drops every expired entry; returns how many went.
    pub(crate) fn sweep(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        let mut freed = 0;
        let mut next = None::<Instant>;
        self.entries.retain(|key, entry| match entry.expires_at {
            Some(at) if at <= now => {
                freed += entry_bytes(key, &entry.value);
                false
            }
            Some(at) => {
                next = Some(next.map_or(at, |n| n.min(at)));
                true
            }
            None => true,
        });
        self.bytes -= freed;
        self.next_expiry = next;
        before - self.entries.len()
    }

    /// Inserts or replaces `key`, keeping the byte count.
    fn put(&mut self, key: &str, entry: Entry) {
        if let Some(at) = entry.expires_at {
            self.next_expiry = Some(self.next_expiry.map_or(at, |n| n.min(at)));
        }
        self.bytes += entry_bytes(key, &entry.value);
        if let Some(old) = self.entries.insert(key.to_string(), entry) {
            self.bytes -= entry_bytes(key, &old.value);
        }
    }

    /// Removes `key`, keeping the byte count.
    fn drop_key(&mut self, key: &str) -> Option<Entry> {
        let removed = self.entries.remove(key);
        if let Some(entry) = &removed {
            self.bytes -= entry_bytes(key, &entry.value);
        }
        removed
    }

    /// The live entry under `key`, dropping it first if it has expired: this
    /// lazy check is what makes expiry exact between two sweeps.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.is_expired(now)) {
            self.drop_key(key);
        }
        self.entries.get_mut(key)
    }

    /// Checks that a write adding `new_keys` keys, and `needed` bytes while
    /// freeing `freed`, stays within the limits. When it would not, and some
    /// entry has expired since the last sweep, sweeps once and checks again:
    /// expired data must not make a store refuse writes. A sweep happens at
    /// most once per expired entry, so a writer stuck at its quota cannot
    /// make every call scan the whole store.
    fn make_room(
        &mut self,
        operation: &'static str,
        key: &str,
        new_keys: u64,
        freed: u64,
        needed: u64,
        now: Instant,
    ) -> Result<(), StoreError> {
        loop {
            let keys = self.entries.len() as u64;
            let bytes_after = self.bytes.saturating_sub(freed).saturating_add(needed);
            let over = if new_keys > 0 && keys + new_keys > self.limits.max_keys {
                Some((Quota::Keys, self.limits.max_keys, keys, new_keys, "keys"))
            } else if needed > freed && bytes_after > self.limits.max_bytes {
                Some((
                    Quota::Bytes,
                    self.limits.max_bytes,
                    self.bytes,
                    needed - freed,
                    "bytes",
                ))
            } else {
                None
            };
            let Some((quota, limit, in_use, needed, unit)) = over else {
                return Ok(());
            };
            if self.next_expiry.is_some_and(|at| at <= now) {
                self.sweep(now);
                continue;
            }
            return Err(StoreError::Quota {
                quota,
                operation,
                key: key.to_string(),
                limit,
                in_use,
                needed,
                unit,
            });
        }
    }

    fn wrong_type(operation: &'static str, key: &str, held: Kind, wanted: Kind) -> StoreError {
        StoreError::WrongType {
            operation,
            key: key.to_string(),
            held,
            wanted,
        }
    }

    /// `GET`.
    pub(crate) fn get(&mut self, key: &str, now: Instant) -> Result<Option<String>, StoreError> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Self::wrong_type("Get", key, other.kind(), Kind::String)),
        }
    }

    /// `SET` / `SET … EX`: replaces whatever the key held, including its TTL.
    pub(crate) fn set(
        &mut self,
        key: &str,
        value: String,
        expires_s: u32,
        now: Instant,
    ) -> Result<(), StoreError> {
        let expires_at = match expires_s {
            0 => None,
            // A deadline past what a `Duration` can represent is, in
            // practice, never.
            s => now.checked_add(Duration::from_secs(u64::from(s))),
        };
        let entry = Entry {
            value: Value::Str(value),
            expires_at,
        };
        let (new_keys, freed) = match self.live(key, now) {
            Some(old) => (0, entry_bytes(key, &old.value)),
            None => (1, 0),
        };
        self.make_room(
            "Set",
            key,
            new_keys,
            freed,
            entry_bytes(key, &entry.value),
            now,
        )?;
        self.put(key, entry);
        Ok(())
    }

    /// `INCRBY`: a missing key counts as 0; the TTL is kept, as in Redis.
    pub(crate) fn add(&mut self, key: &str, delta: i32, now: Instant) -> Result<i32, StoreError> {
        let current = match self.live(key, now).map(|e| &e.value) {
            None => None,
            Some(Value::Str(s)) => {
                Some(
                    parse_redis_integer(s).ok_or_else(|| StoreError::NotAnInteger {
                        key: key.to_string(),
                    })?,
                )
            }
            Some(other) => return Err(Self::wrong_type("Add", key, other.kind(), Kind::String)),
        };
        // The reply carries an i32, so a result outside it is refused rather
        // than stored and then misreported.
        let next = current
            .unwrap_or(0)
            .checked_add(i64::from(delta))
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| StoreError::Overflow {
                key: key.to_string(),
                current: current.unwrap_or(0),
                delta,
            })?;
        let text = next.to_string();
        match current {
            Some(current) => {
                // The stored text is canonical, so this is its length.
                let old_len = current.to_string().len() as u64;
                let new_len = text.len() as u64;
                self.make_room("Add", key, 0, old_len, new_len, now)?;
                if let Some(entry) = self.entries.get_mut(key) {
                    entry.value = Value::Str(text);
                    self.bytes = self.bytes - old_len + new_len;
                }
            }
            None => {
                let entry = Entry {
                    value: Value::Str(text),
                    expires_at: None,
                };
                self.make_room("Add", key, 1, 0, entry_bytes(key, &entry.value), now)?;
                self.put(key, entry);
            }
        }
        Ok(next)
    }

    /// `DEL`: any type; returns whether a live key was deleted.
    pub(crate) fn del(&mut self, key: &str, now: Instant) -> bool {
        self.drop_key(key)
            .is_some_and(|entry| !entry.is_expired(now))
    }

    /// `Clear`: deletes a list. Unlike a bare `DEL` it refuses other types,
    /// so a list helper pointed at the wrong key cannot wipe a counter.
    pub(crate) fn clear_list(&mut self, key: &str, now: Instant) -> Result<(), StoreError> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(()),
            Some(Value::List(_)) => {
                self.drop_key(key);
                Ok(())
            }
            Some(other) => Err(Self::wrong_type("Clear", key, other.kind(), Kind::List)),
        }
    }

    /// `LRANGE key start stop`: inclusive, negative indices count from the
    /// end, out-of-range indices are clamped.
    pub(crate) fn range(
        &mut self,
        key: &str,
        start: i32,
        stop: i32,
        now: Instant,
    ) -> Result<Vec<String>, StoreError> {
        let limit = self.limits.max_reply_bytes;
        let list = match self.live(key, now).map(|e| &e.value) {
            None => return Ok(Vec::new()),
            Some(Value::List(list)) => list,
            Some(other) => return Err(Self::wrong_type("Range", key, other.kind(), Kind::List)),
        };
        let len = i64::try_from(list.len()).unwrap_or(i64::MAX);
        let resolve = |i: i32| {
            let i = i64::from(i);
            if i < 0 { len + i } else { i }
        };
        let first = resolve(start).max(0);
        let last = resolve(stop).min(len - 1);
        if first > last {
            return Ok(Vec::new());
        }
        // Both bounds are now within 0..len, so the conversions cannot fail.
        let first = usize::try_from(first).unwrap_or(usize::MAX);
        let last = usize::try_from(last).unwrap_or(0);
        bounded_reply(
            "Range",
            key,
            limit,
            list.iter().skip(first).take(last + 1 - first),
        )
    }

    /// `LPUSH`: returns the new length.
    pub(crate) fn push(
        &mut self,
        key: &str,
        value: String,
        now: Instant,
    ) -> Result<usize, StoreError> {
        let new_key = match self.live(key, now).map(|e| &e.value) {
            None => true,
            Some(Value::List(_)) => false,
            Some(other) => return Err(Self::wrong_type("Push", key, other.kind(), Kind::List)),
        };
        let needed = item_bytes(&value) + if new_key { item_bytes(key) } else { 0 };
        self.make_room("Push", key, u64::from(new_key), 0, needed, now)?;
        if new_key {
            self.put(
                key,
                Entry {
                    value: Value::List(VecDeque::from([value])),
                    expires_at: None,
                },
            );
            return Ok(1);
        }
        match self.entries.get_mut(key).map(|e| &mut e.value) {
            Some(Value::List(list)) => {
                list.push_front(value);
                self.bytes += needed;
                Ok(list.len())
            }
            // Checked above, under the same lock.
            _ => Ok(0),
        }
    }

    /// `LREM key 0 value`: removes every occurrence and returns the length
    /// left, as the contract's `ListResponse::new_count` says; an emptied
    /// list disappears, as in Redis.
    pub(crate) fn list_remove(
        &mut self,
        key: &str,
        value: &str,
        now: Instant,
    ) -> Result<usize, StoreError> {
        let (left, removed) = match self.live(key, now).map(|e| &mut e.value) {
            None => return Ok(0),
            Some(Value::List(list)) => {
                let before = list.len();
                list.retain(|item| item != value);
                (list.len(), (before - list.len()) as u64)
            }
            Some(other) => {
                return Err(Self::wrong_type(
                    "ListItemDelete",
                    key,
                    other.kind(),
                    Kind::List,
                ));
            }
        };
        self.bytes -= removed * item_bytes(value);
        if left == 0 {
            self.drop_key(key);
        }
        Ok(left)
    }

    /// `SADD`: returns whether the member was new.
    pub(crate) fn set_add(
        &mut self,
        key: &str,
        value: String,
        now: Instant,
    ) -> Result<bool, StoreError> {
        let new_key = match self.live(key, now).map(|e| &e.value) {
            None => true,
            Some(Value::Set(set)) if set.contains(&value) => return Ok(false),
            Some(Value::Set(_)) => false,
            Some(other) => return Err(Self::wrong_type("SetAdd", key, other.kind(), Kind::Set)),
        };
        let needed = item_bytes(&value) + if new_key { item_bytes(key) } else { 0 };
        self.make_room("SetAdd", key, u64::from(new_key), 0, needed, now)?;
        if new_key {
            self.put(
                key,
                Entry {
                    value: Value::Set(BTreeSet::from([value])),
                    expires_at: None,
                },
            );
            return Ok(true);
        }
        match self.entries.get_mut(key).map(|e| &mut e.value) {
            Some(Value::Set(set)) => {
                set.insert(value);
                self.bytes += needed;
                Ok(true)
            }
            // Checked above, under the same lock.
            _ => Ok(false),
        }
    }

    /// `SREM`: returns whether the member was there; an emptied set
    /// disappears.
    pub(crate) fn set_remove(
        &mut self,
        key: &str,
        value: &str,
        now: Instant,
    ) -> Result<bool, StoreError> {
        let (removed, empty) = match self.live(key, now).map(|e| &mut e.value) {
            None => return Ok(false),
            Some(Value::Set(set)) => (set.remove(value), set.is_empty()),
            Some(other) => return Err(Self::wrong_type("SetRemove", key, other.kind(), Kind::Set)),
        };
        if removed {
            self.bytes -= item_bytes(value);
        }
        if empty {
            self.drop_key(key);
        }
        Ok(removed)
    }

    /// The set under `key` (empty when missing), or a type error.
    fn set_of(
        &mut self,
        operation: &'static str,
        key: &str,
        now: Instant,
    ) -> Result<Option<&BTreeSet<String>>, StoreError> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Set(set)) => Ok(Some(set)),
            Some(other) => Err(Self::wrong_type(operation, key, other.kind(), Kind::Set)),
        }
    }

    /// `SMEMBERS`.
    pub(crate) fn set_members(
        &mut self,
        key: &str,
        now: Instant,
    ) -> Result<Vec<String>, StoreError> {
        let limit = self.limits.max_reply_bytes;
        match self.set_of("SetQuery", key, now)? {
            Some(set) => bounded_reply("SetQuery", key, limit, set.iter()),
            None => Ok(Vec::new()),
        }
    }

    /// `SUNION`.
    pub(crate) fn set_union(
        &mut self,
        keys: &[String],
        now: Instant,
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Err(StoreError::NoKeys {
                operation: "SetUnion",
            });
        }
        // Every key is looked at (and type-checked) first: `live` may drop
        // an expired one, which needs the store mutably.
        for key in keys {
            self.set_of("SetUnion", key, now)?;
        }
        let mut union: BTreeSet<&String> = BTreeSet::new();
        for key in keys {
            if let Some(Entry {
                value: Value::Set(set),
                ..
            }) = self.entries.get(key.as_str())
            {
                union.extend(set.iter());
            }
        }
        let limit = self.limits.max_reply_bytes;
        bounded_reply("SetUnion", &keys[0], limit, union)
    }

    /// `SINTER`: a missing key is an empty set, so it empties the result;
    /// every key is still type-checked.
    pub(crate) fn set_intersection(
        &mut self,
        keys: &[String],
        now: Instant,
    ) -> Result<Vec<String>, StoreError> {
        let Some((first, rest)) = keys.split_first() else {
            return Err(StoreError::NoKeys {
                operation: "SetIntersection",
            });
        };
        for key in keys {
            self.set_of("SetIntersection", key, now)?;
        }
        let set = |key: &String| match self.entries.get(key.as_str()) {
            Some(Entry {
                value: Value::Set(set),
                ..
            }) => Some(set),
            _ => None,
        };
        // Members of the first set found in every other; a missing key is
        // an empty set.
        let Some(base) = set(first) else {
            return Ok(Vec::new());
        };
        let others: Option<Vec<_>> = rest.iter().map(set).collect();
        let Some(others) = others else {
            return Ok(Vec::new());
        };
        let limit = self.limits.max_reply_bytes;
        bounded_reply(
            "SetIntersection",
            first,
            limit,
            base.iter()
                .filter(|member| others.iter().all(|other| other.contains(*member))),
        )
    }

    /// How long the live `key` has left; `None` when missing or without
    /// expiry.
    pub(crate) fn ttl(&mut self, key: &str, now: Instant) -> Option<Duration> {
        self.live(key, now)?
            .expires_at
            .map(|at| at.saturating_sub(now))
    }

    /// `EXISTS`.
    pub(crate) fn exists(&mut self, key: &str, now: Instant) -> bool {
        self.live(key, now).is_some()
    }
}

/// Parses an integer the way Redis' `string2ll` does: only the canonical
/// decimal form (no `+`, no leading zeros, no spaces) of an `i64`.
fn parse_redis_integer(s: &str) -> Option<i64> {
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNLIMITED: Limits = Limits::UNLIMITED;

    /// The byte count computed from scratch, to check the running one.
    fn recount(store: &Store) -> u64 {
        store
            .entries
            .iter()
            .map(|(key, entry)| entry_bytes(key, &entry.value))
            .sum()
    }

    #[test]
    fn the_running_byte_count_matches_the_data_after_any_sequence_of_writes() {
        let mut s = Store::new(UNLIMITED);
        let t0 = Duration::ZERO;
        // xorshift: a fixed but irregular sequence of operations, keys,
        // values and clock steps.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut now = t0;
        for step in 0..20_000 {
            let key = format!("k{}", next() % 16);
            let value = "v".repeat((next() % 5) as usize);
            let _ = match next() % 10 {
                0 => s.set(&key, value, (next() % 3) as u32, now).map(drop),
                1 => s.add(&key, (next() % 2000) as i32 - 1000, now).map(drop),
                2 => s.push(&key, value, now).map(drop),
                3 => s.list_remove(&key, &value, now).map(drop),
                4 => s.set_add(&key, value, now).map(drop),
                5 => s.set_remove(&key, &value, now).map(drop),
                6 => s.clear_list(&key, now),
                7 => {
                    s.del(&key, now);
                    Ok(())
                }
                8 => {
                    s.sweep(now);
                    Ok(())
                }
                _ => s.get(&key, now).map(drop),
            };
            assert_eq!(s.bytes(), recount(&s), "after step {step}");
            now += Duration::from_millis(next() % 300);
        }
    }

    #[test]
    fn writes_over_a_limit_fail_and_change_nothing() {
        let now = Duration::ZERO;
        let mut s = Store::new(Limits {
            max_keys: 2,
            max_bytes: 1000,
            ..UNLIMITED
        });
        s.set("a", "1".into(), 0, now).unwrap();
        s.push("l", "x".into(), now).unwrap();
        let before = (s.len(), s.bytes());
        let err = s.set("c", "1".into(), 0, now).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Quota {
                    quota: Quota::Keys,
                    limit: 2,
                    in_use: 2,
                    needed: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        for result in [
            s.add("c", 1, now).map(drop),
            s.push("c", "x".into(), now).map(drop),
            s.set_add("c", "x".into(), now).map(drop),
        ] {
            assert!(
                matches!(
                    result,
                    Err(StoreError::Quota {
                        quota: Quota::Keys,
                        ..
                    })
                ),
                "{result:?}"
            );
        }
        assert_eq!((s.len(), s.bytes()), before);
        // Writes to existing keys need no new key.
        s.set("a", "22".into(), 0, now).unwrap();
        assert_eq!(s.add("a", 1, now).unwrap(), 23);
        s.push("l", "y".into(), now).unwrap();

        let big = "z".repeat(1000);
        let before = (s.len(), s.bytes(), s.range("l", 0, -1, now).unwrap());
        for result in [
            s.set("a", big.clone(), 0, now),
            s.push("l", big.clone(), now).map(drop),
        ] {
            assert!(
                matches!(
                    result,
                    Err(StoreError::Quota {
                        quota: Quota::Bytes,
                        ..
                    })
                ),
                "{result:?}"
            );
        }
        assert_eq!(
            (s.len(), s.bytes(), s.range("l", 0, -1, now).unwrap()),
            before
        );
        assert_eq!(s.get("a", now).unwrap().as_deref(), Some("23"));
    }

    #[test]
    fn expired_data_is_swept_to_make_room_instead_of_refusing() {
        let t0 = Duration::ZERO;
        let mut s = Store::new(Limits {
            max_keys: 1,
            ..UNLIMITED
        });
        s.set("old", "v".into(), 1, t0).unwrap();
        assert!(s.set("new", "v".into(), 0, t0).is_err(), "still live");
        let later = t0 + Duration::from_secs(2);
        s.set("new", "v".into(), 0, later).unwrap();
        assert_eq!(s.len(), 1);
        assert!(!s.exists("old", later));
    }

    fn range(store: &mut Store, start: i32, stop: i32) -> Vec<String> {
        store.range("l", start, stop, Duration::ZERO).unwrap()
    }

    /// A list `a b c d e`, head first.
    fn abcde() -> Store {
        let mut store = Store::new(UNLIMITED);
        for item in ["e", "d", "c", "b", "a"] {
            store.push("l", item.to_string(), Duration::ZERO).unwrap();
        }
        store
    }

    #[test]
    fn tiny_items_count_what_holding_them_costs_in_a_reply() {
        let mut s = Store::new(Limits {
            max_reply_bytes: 32 + 100 * ITEM_OVERHEAD_BYTES,
            ..UNLIMITED
        });
        for _ in 0..101 {
            s.push("l", String::new(), Duration::ZERO).unwrap();
        }
        // 101 empty items are 101 bytes as MessagePack, but a reply holds
        // each as a value: 32 bytes each, one more than the room.
        assert!(matches!(
            s.range("l", 0, -1, Duration::ZERO),
            Err(StoreError::ReplyTooLarge { .. })
        ));
        assert_eq!(s.range("l", 0, 99, Duration::ZERO).unwrap().len(), 100);
    }

    #[test]
    fn range_follows_lrange_for_positive_negative_and_clamped_indices() {
        let mut s = abcde();
        assert_eq!(range(&mut s, 0, -1), ["a", "b", "c", "d", "e"]);
        assert_eq!(range(&mut s, 0, 0), ["a"]);
        assert_eq!(range(&mut s, 1, 3), ["b", "c", "d"]);
        assert_eq!(range(&mut s, -2, -1), ["d", "e"]);
        assert_eq!(range(&mut s, -100, 1), ["a", "b"]);
        assert_eq!(range(&mut s, 3, 100), ["d", "e"]);
        assert_eq!(range(&mut s, 5, 10), Vec::<String>::new());
        assert_eq!(range(&mut s, 3, 1), Vec::<String>::new());
        assert_eq!(range(&mut s, -1, -2), Vec::<String>::new());
        assert_eq!(range(&mut s, i32::MIN, i32::MAX), ["a", "b", "c", "d", "e"]);
        assert_eq!(range(&mut s, -100, -6), Vec::<String>::new());
    }

    #[test]
    fn integers_must_be_canonical_like_redis() {
        assert_eq!(parse_redis_integer("42"), Some(42));
        assert_eq!(parse_redis_integer("-7"), Some(-7));
        assert_eq!(parse_redis_integer("0"), Some(0));
        for bad in [
            "+1",
            "007",
            " 1",
            "1 ",
            "-0",
            "",
            "1.5",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(parse_redis_integer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn add_refuses_results_outside_the_reply_range_and_keeps_the_value() {
        let mut s = Store::new(UNLIMITED);
        let now = Duration::ZERO;
        assert_eq!(s.add("n", i32::MAX, now).unwrap(), i32::MAX);
        let err = s.add("n", 1, now).unwrap_err();
        assert!(
            matches!(err, StoreError::Overflow { current, .. } if current == i64::from(i32::MAX))
        );
        assert_eq!(s.get("n", now).unwrap().as_deref(), Some("2147483647"));
        assert_eq!(s.add("n", -1, now).unwrap(), i32::MAX - 1);
    }

    #[test]
    fn add_keeps_the_ttl_and_set_replaces_it() {
        let mut s = Store::new(UNLIMITED);
        let t0 = Duration::ZERO;
        s.set("n", "1".into(), 10, t0).unwrap();
        s.add("n", 1, t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(s.get("n", t0 + Duration::from_secs(11)).unwrap(), None);

        s.set("m", "1".into(), 10, t0).unwrap();
        s.set("m", "2".into(), 0, t0).unwrap();
        assert_eq!(
            s.get("m", t0 + Duration::from_secs(11)).unwrap().as_deref(),
            Some("2")
        );
    }

    #[test]
    fn expired_entries_are_invisible_before_the_sweep_and_gone_after_it() {
        let mut s = Store::new(UNLIMITED);
        let t0 = Duration::ZERO;
        s.set("a", "1".into(), 1, t0).unwrap();
        s.set("b", "1".into(), 0, t0).unwrap();
        let later = t0 + Duration::from_secs(2);
        assert!(!s.exists("a", later));
        s.set("c", "1".into(), 1, t0).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.sweep(later), 1);
        assert_eq!(s.len(), 1);
        assert!(s.exists("b", later));
    }

    #[test]
    fn an_expired_string_no_longer_blocks_list_operations() {
        let mut s = Store::new(UNLIMITED);
        let t0 = Duration::ZERO;
        s.set("k", "x".into(), 1, t0).unwrap();
        assert_eq!(
            s.push("k", "a".into(), t0 + Duration::from_secs(2))
                .unwrap(),
            1
        );
    }
}
