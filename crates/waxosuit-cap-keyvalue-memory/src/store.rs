//! One actor binding's keyspace, with Redis semantics.
//!
//! Everything here is synchronous and takes the current time as an argument:
//! the provider holds the store's lock for the whole of an operation (which
//! is what makes `Add` atomic), and tests can move time without sleeping.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

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
    #[error(
        "ERR invalid expire time {seconds} for key `{key}`; use 0 for none or a positive number of seconds"
    )]
    InvalidExpire { key: String, seconds: i32 },
    #[error("ERR `{operation}` needs at least one key")]
    NoKeys { operation: &'static str },
}

/// One keyspace.
#[derive(Debug, Default)]
pub(crate) struct Store {
    entries: HashMap<String, Entry>,
}

impl Store {
    /// Entries held, including expired ones nobody has touched or swept yet.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops every expired entry; returns how many went.
    pub(crate) fn sweep(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, entry| !entry.is_expired(now));
        before - self.entries.len()
    }

    /// The live entry under `key`, dropping it first if it has expired: this
    /// lazy check is what makes expiry exact between two sweeps.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.is_expired(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
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
        expires_s: i32,
        now: Instant,
    ) -> Result<(), StoreError> {
        let expires_at = match expires_s {
            0 => None,
            s if s < 0 => {
                return Err(StoreError::InvalidExpire {
                    key: key.to_string(),
                    seconds: s,
                });
            }
            // A deadline past what `Instant` can represent is, in practice,
            // never.
            s => now.checked_add(Duration::from_secs(u64::from(s.unsigned_abs()))),
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                value: Value::Str(value),
                expires_at,
            },
        );
        Ok(())
    }

    /// `INCRBY`: a missing key counts as 0; the TTL is kept, as in Redis.
    pub(crate) fn add(&mut self, key: &str, delta: i32, now: Instant) -> Result<i32, StoreError> {
        let current = match self.live(key, now).map(|e| &e.value) {
            None => 0,
            Some(Value::Str(s)) => {
                parse_redis_integer(s).ok_or_else(|| StoreError::NotAnInteger {
                    key: key.to_string(),
                })?
            }
            Some(other) => return Err(Self::wrong_type("Add", key, other.kind(), Kind::String)),
        };
        // The reply carries an i32, so a result outside it is refused rather
        // than stored and then misreported.
        let next = current
            .checked_add(i64::from(delta))
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| StoreError::Overflow {
                key: key.to_string(),
                current,
                delta,
            })?;
        match self.entries.get_mut(key) {
            Some(entry) => entry.value = Value::Str(next.to_string()),
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        value: Value::Str(next.to_string()),
                        expires_at: None,
                    },
                );
            }
        }
        Ok(next)
    }

    /// `DEL`: any type; returns whether a live key was deleted.
    pub(crate) fn del(&mut self, key: &str, now: Instant) -> bool {
        self.entries
            .remove(key)
            .is_some_and(|entry| !entry.is_expired(now))
    }

    /// `Clear`: deletes a list. Unlike a bare `DEL` it refuses other types,
    /// so a list helper pointed at the wrong key cannot wipe a counter.
    pub(crate) fn clear_list(&mut self, key: &str, now: Instant) -> Result<(), StoreError> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(()),
            Some(Value::List(_)) => {
                self.entries.remove(key);
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
        Ok(list
            .iter()
            .skip(first)
            .take(last + 1 - first)
            .cloned()
            .collect())
    }

    /// `LPUSH`: returns the new length.
    pub(crate) fn push(
        &mut self,
        key: &str,
        value: String,
        now: Instant,
    ) -> Result<usize, StoreError> {
        match self.live(key, now).map(|e| &mut e.value) {
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        value: Value::List(VecDeque::from([value])),
                        expires_at: None,
                    },
                );
                Ok(1)
            }
            Some(Value::List(list)) => {
                list.push_front(value);
                Ok(list.len())
            }
            Some(other) => Err(Self::wrong_type("Push", key, other.kind(), Kind::List)),
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
        let left = match self.live(key, now).map(|e| &mut e.value) {
            None => return Ok(0),
            Some(Value::List(list)) => {
                list.retain(|item| item != value);
                list.len()
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
        if left == 0 {
            self.entries.remove(key);
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
        match self.live(key, now).map(|e| &mut e.value) {
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        value: Value::Set(BTreeSet::from([value])),
                        expires_at: None,
                    },
                );
                Ok(true)
            }
            Some(Value::Set(set)) => Ok(set.insert(value)),
            Some(other) => Err(Self::wrong_type("SetAdd", key, other.kind(), Kind::Set)),
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
        if empty {
            self.entries.remove(key);
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
        Ok(self
            .set_of("SetQuery", key, now)?
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default())
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
        let mut union = BTreeSet::new();
        for key in keys {
            if let Some(set) = self.set_of("SetUnion", key, now)? {
                union.extend(set.iter().cloned());
            }
        }
        Ok(union.into_iter().collect())
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
        let mut result: Option<BTreeSet<String>> =
            self.set_of("SetIntersection", first, now)?.cloned();
        for key in rest {
            let other = self.set_of("SetIntersection", key, now)?;
            result = match (result, other) {
                (Some(mut acc), Some(other)) => {
                    acc.retain(|member| other.contains(member));
                    Some(acc)
                }
                _ => None,
            };
        }
        Ok(result
            .map(|set| set.into_iter().collect())
            .unwrap_or_default())
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

    fn range(store: &mut Store, start: i32, stop: i32) -> Vec<String> {
        store.range("l", start, stop, Instant::now()).unwrap()
    }

    /// A list `a b c d e`, head first.
    fn abcde() -> Store {
        let mut store = Store::default();
        for item in ["e", "d", "c", "b", "a"] {
            store.push("l", item.to_string(), Instant::now()).unwrap();
        }
        store
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
        let mut s = Store::default();
        let now = Instant::now();
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
        let mut s = Store::default();
        let t0 = Instant::now();
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
        let mut s = Store::default();
        let t0 = Instant::now();
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
        let mut s = Store::default();
        let t0 = Instant::now();
        s.set("k", "x".into(), 1, t0).unwrap();
        assert_eq!(
            s.push("k", "a".into(), t0 + Duration::from_secs(2))
                .unwrap(),
            1
        );
    }
}
