//! The conformance suite of `wascc:keyvalue`: what every backend must
//! answer, checked through encoded calls as an actor makes them.
//!
//! [`run`] drives a [`Subject`] (anything that takes an operation and its
//! MessagePack payload for one of two bindings of one actor) through every
//! operation of the contract, its edge cases and its refusals, and returns
//! a [`Report`] naming each check that failed and why. Errors are compared
//! as the actor reads them: the error's text, whose Redis class (`WRONGTYPE`,
//! `ERR`) follows `backend error: `.
//!
//! ```
//! use waxosuit_cap_keyvalue::KeyValueProvider;
//! use waxosuit_cap_keyvalue::conformance::{self, ProviderSubject};
//! use waxosuit_cap_keyvalue::reference::ReferenceBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let kv = KeyValueProvider::<ReferenceBackend>::new();
//! let subject = ProviderSubject::bind(&kv, "MCONFORMANCE", &[]).await.unwrap();
//! conformance::run(&subject).await.assert_passed();
//! # }
//! ```
//!
//! The subject must start empty: both bindings bound, no keys. Each check
//! uses keys of its own, so checks do not depend on one another's order.
//! Expiry is checked only as far as it can be without waiting (a key set
//! with an expiry is readable at once); each backend's own tests check the
//! deadline with its clock.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::keyvalue::{
    AddRequest, AddResponse, DelRequest, DelResponse, GetRequest, GetResponse, KeyExistsQuery,
    ListClearRequest, ListDelItemRequest, ListPushRequest, ListRangeRequest, ListRangeResponse,
    ListResponse, OP_ADD, OP_CLEAR, OP_DEL, OP_GET, OP_KEY_EXISTS, OP_LIST_DEL, OP_PUSH, OP_RANGE,
    OP_SET, OP_SET_ADD, OP_SET_INTERSECT, OP_SET_QUERY, OP_SET_REMOVE, OP_SET_UNION, SetAddRequest,
    SetIntersectionRequest, SetOperationResponse, SetQueryRequest, SetQueryResponse,
    SetRemoveRequest, SetRequest, SetResponse, SetUnionRequest,
};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};

/// The binding every check uses.
pub const BINDING: &str = "default";
/// A second binding of the same actor, which must not see [`BINDING`]'s keys.
pub const OTHER_BINDING: &str = "other";

/// What the suite drives: one actor's two bindings ([`BINDING`] and
/// [`OTHER_BINDING`]), bound and empty.
pub trait Subject {
    /// Sends `operation` with `payload` on `binding`; an error is the text
    /// the actor would read.
    fn call(
        &self,
        binding: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, String>>;
}

/// A [`CapabilityProvider`] as a subject: calls go to its
/// [`handle_call`](CapabilityProvider::handle_call) for one actor.
#[derive(Clone, Copy)]
pub struct ProviderSubject<'a> {
    provider: &'a dyn CapabilityProvider,
    actor: &'a str,
}

impl fmt::Debug for ProviderSubject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSubject")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl<'a> ProviderSubject<'a> {
    /// Binds `actor` to `provider` under [`BINDING`] and [`OTHER_BINDING`],
    /// each with `values` (a server's URL, say).
    ///
    /// # Errors
    ///
    /// What the provider's `bind_actor` returns.
    pub async fn bind(
        provider: &'a dyn CapabilityProvider,
        actor: &'a str,
        values: &[(&str, &str)],
    ) -> Result<ProviderSubject<'a>, ProviderError> {
        let values: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for binding in [BINDING, OTHER_BINDING] {
            provider
                .bind_actor(BindRequest {
                    actor: actor.to_string(),
                    binding: binding.to_string(),
                    values: values.clone(),
                })
                .await?;
        }
        Ok(ProviderSubject { provider, actor })
    }
}

impl Subject for ProviderSubject<'_> {
    async fn call(
        &self,
        binding: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.provider
            .handle_call(ProviderCall {
                actor: self.actor.to_string(),
                binding: binding.to_string(),
                operation: operation.to_string(),
                payload,
            })
            .await
            .map_err(|e| e.to_string())
    }
}

/// One check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check's name.
    pub check: &'static str,
    /// What was expected and what came.
    pub message: String,
}

/// What [`run`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks that passed.
    pub passed: Vec<&'static str>,
    /// The checks that failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Whether every check passed.
    pub fn is_pass(&self) -> bool {
        self.failures.is_empty()
    }

    /// Whether the check named `check` failed.
    pub fn failed(&self, check: &str) -> bool {
        self.failures.iter().any(|f| f.check == check)
    }

    /// Panics, listing every failure, unless every check passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.is_pass(), "wascc:keyvalue conformance failed:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} checks passed, {} failed",
            self.passed.len(),
            self.failures.len()
        )?;
        for failure in &self.failures {
            writeln!(f, "  {}: {}", failure.check, failure.message)?;
        }
        Ok(())
    }
}

type Outcome = Result<(), String>;

/// Runs every check against `subject`.
pub async fn run(subject: &impl Subject) -> Report {
    let s = Client(subject);
    let mut report = Report::default();
    let mut record = |check: &'static str, outcome: Outcome| match outcome {
        Ok(()) => report.passed.push(check),
        Err(message) => report.failures.push(Failure { check, message }),
    };
    record("strings", strings(&s).await);
    record("set_replaces_any_type", set_replaces_any_type(&s).await);
    record("negative_expiry_is_refused", negative_expiry(&s).await);
    record("counters", counters(&s).await);
    record(
        "counter_refusals_keep_the_value",
        counter_refusals(&s).await,
    );
    record("lists_push_and_range", lists(&s).await);
    record("list_item_delete", list_item_delete(&s).await);
    record("clear_deletes_lists_only", clear(&s).await);
    record("sets", sets(&s).await);
    record("set_union_and_intersection", set_algebra(&s).await);
    record("delete_and_exists", delete_and_exists(&s).await);
    record("wrong_type_refusals", wrong_types(&s).await);
    record("bindings_are_isolated", isolation(&s).await);
    record("unknown_operation", unknown_operation(&s).await);
    record("undecodable_request", bad_payload(&s).await);
    report
}

/// Typed calls over a subject.
struct Client<'a, S>(&'a S);

impl<S: Subject> Client<'_, S> {
    async fn raw<Q: Serialize>(&self, binding: &str, op: &str, req: &Q) -> Result<Vec<u8>, String> {
        let payload = waxosuit_codec::serialize(req).map_err(|e| format!("encoding {op}: {e}"))?;
        self.0.call(binding, op, payload).await
    }

    /// `op` on [`BINDING`], which must succeed with a reply of type `R`.
    async fn ok<Q: Serialize, R: DeserializeOwned>(&self, op: &str, req: &Q) -> Result<R, String> {
        self.ok_on(BINDING, op, req).await
    }

    async fn ok_on<Q: Serialize, R: DeserializeOwned>(
        &self,
        binding: &str,
        op: &str,
        req: &Q,
    ) -> Result<R, String> {
        let reply = self
            .raw(binding, op, req)
            .await
            .map_err(|e| format!("`{op}` failed: {e}"))?;
        waxosuit_codec::deserialize(&reply).map_err(|e| format!("`{op}` replied undecodably: {e}"))
    }

    /// `op`, which must fail with a backend error of Redis class `class`.
    async fn refused<Q: Serialize>(&self, op: &str, req: &Q, class: &str) -> Outcome {
        match self.raw(BINDING, op, req).await {
            Ok(_) => Err(format!("`{op}` succeeded; expected a {class} refusal")),
            Err(text) if has_class(&text, class) => Ok(()),
            Err(text) => Err(format!(
                "`{op}` failed with {text:?}; expected a {class} refusal"
            )),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        let r: GetResponse = self.ok(OP_GET, &GetRequest { key: key.into() }).await?;
        if !r.exists && !r.value.is_empty() {
            return Err(format!(
                "`Get` of missing `{key}` carried a value {:?}",
                r.value
            ));
        }
        Ok(r.exists.then_some(r.value))
    }

    async fn set(&self, key: &str, value: &str, expires_s: i32) -> Outcome {
        let r: SetResponse = self
            .ok(
                OP_SET,
                &SetRequest {
                    key: key.into(),
                    value: value.into(),
                    expires_s,
                },
            )
            .await?;
        expect("`Set` reply", r.value.as_str(), value)
    }

    async fn add(&self, key: &str, value: i32) -> Result<i32, String> {
        let r: AddResponse = self
            .ok(
                OP_ADD,
                &AddRequest {
                    key: key.into(),
                    value,
                },
            )
            .await?;
        Ok(r.value)
    }

    async fn push(&self, key: &str, value: &str) -> Result<i32, String> {
        let r: ListResponse = self
            .ok(
                OP_PUSH,
                &ListPushRequest {
                    key: key.into(),
                    value: value.into(),
                },
            )
            .await?;
        Ok(r.new_count)
    }

    async fn range(&self, key: &str, start: i32, stop: i32) -> Result<Vec<String>, String> {
        let r: ListRangeResponse = self
            .ok(
                OP_RANGE,
                &ListRangeRequest {
                    key: key.into(),
                    start,
                    stop,
                },
            )
            .await?;
        Ok(r.values)
    }

    async fn sadd(&self, key: &str, value: &str) -> Result<i32, String> {
        let r: SetOperationResponse = self
            .ok(
                OP_SET_ADD,
                &SetAddRequest {
                    key: key.into(),
                    value: value.into(),
                },
            )
            .await?;
        Ok(r.new_count)
    }

    async fn srem(&self, key: &str, value: &str) -> Result<i32, String> {
        let r: SetOperationResponse = self
            .ok(
                OP_SET_REMOVE,
                &SetRemoveRequest {
                    key: key.into(),
                    value: value.into(),
                },
            )
            .await?;
        Ok(r.new_count)
    }

    async fn members(&self, key: &str) -> Result<Vec<String>, String> {
        let r: SetQueryResponse = self
            .ok(OP_SET_QUERY, &SetQueryRequest { key: key.into() })
            .await?;
        Ok(r.values)
    }

    async fn exists(&self, key: &str) -> Result<bool, String> {
        let r: GetResponse = self
            .ok(OP_KEY_EXISTS, &KeyExistsQuery { key: key.into() })
            .await?;
        if !r.value.is_empty() {
            return Err(format!("`KeyExists` carried a value {:?}", r.value));
        }
        Ok(r.exists)
    }
}

/// Whether an error text is a backend refusal of Redis class `class`.
fn has_class(text: &str, class: &str) -> bool {
    text.split_once("backend error: ")
        .is_some_and(|(_, message)| message.split_whitespace().next() == Some(class))
}

fn expect<T: PartialEq + fmt::Debug + ?Sized>(what: &str, got: &T, want: &T) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

fn strings_of(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn strings(s: &Client<'_, impl Subject>) -> Outcome {
    expect(
        "`Get` of a missing key",
        &s.get("str:missing").await?,
        &None,
    )?;
    s.set("str:a", "hello", 0).await?;
    expect(
        "`Get` after `Set`",
        &s.get("str:a").await?,
        &Some("hello".into()),
    )?;
    s.set("str:a", "", 0).await?;
    expect(
        "an empty string is a value",
        &s.get("str:a").await?,
        &Some(String::new()),
    )?;
    s.set("str:ttl", "soon", 3600).await?;
    expect(
        "a key with an expiry, at once",
        &s.get("str:ttl").await?,
        &Some("soon".into()),
    )?;
    let unicode = "wörld ✓";
    s.set("str:ü", unicode, 0).await?;
    expect(
        "unicode keys and values",
        &s.get("str:ü").await?,
        &Some(unicode.into()),
    )
}

async fn set_replaces_any_type(s: &Client<'_, impl Subject>) -> Outcome {
    s.push("replace:l", "x").await?;
    s.set("replace:l", "now a string", 0).await?;
    expect(
        "`Set` over a list",
        &s.get("replace:l").await?,
        &Some("now a string".into()),
    )?;
    s.sadd("replace:s", "x").await?;
    s.set("replace:s", "1", 0).await?;
    expect(
        "`Add` on what `Set` replaced a set with",
        &s.add("replace:s", 1).await?,
        &2,
    )
}

async fn negative_expiry(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("neg:a", "kept", 0).await?;
    s.refused(
        OP_SET,
        &SetRequest {
            key: "neg:a".into(),
            value: "lost".into(),
            expires_s: -1,
        },
        "ERR",
    )
    .await?;
    expect(
        "the value after a refused `Set`",
        &s.get("neg:a").await?,
        &Some("kept".into()),
    )
}

async fn counters(s: &Client<'_, impl Subject>) -> Outcome {
    expect("`Add` to a missing key", &s.add("ctr:a", 5).await?, &5)?;
    expect("`Add` again", &s.add("ctr:a", 2).await?, &7)?;
    expect("`Add` a negative amount", &s.add("ctr:a", -10).await?, &-3)?;
    expect(
        "the counter as a string",
        &s.get("ctr:a").await?,
        &Some("-3".into()),
    )?;
    s.set("ctr:b", "41", 0).await?;
    expect("`Add` to a set number", &s.add("ctr:b", 1).await?, &42)?;
    expect(
        "`Add` up to i32::MAX",
        &s.add("ctr:max", i32::MAX).await?,
        &i32::MAX,
    )?;
    expect(
        "`Add` down to i32::MIN",
        &s.add("ctr:min", i32::MIN).await?,
        &i32::MIN,
    )
}

async fn counter_refusals(s: &Client<'_, impl Subject>) -> Outcome {
    let add = |key: &str, value| AddRequest {
        key: key.into(),
        value,
    };
    for (text, why) in [
        ("abc", "text"),
        ("007", "leading zeros"),
        ("+1", "a plus sign"),
        ("1.5", "a fraction"),
    ] {
        let key = format!("ctrx:{text}");
        s.set(&key, text, 0).await?;
        s.refused(OP_ADD, &add(&key, 1), "ERR")
            .await
            .map_err(|e| format!("{why}: {e}"))?;
        expect(
            &format!("{why} after a refused `Add`"),
            &s.get(&key).await?,
            &Some(text.into()),
        )?;
    }
    s.add("ctrx:max", i32::MAX).await?;
    s.refused(OP_ADD, &add("ctrx:max", 1), "ERR")
        .await
        .map_err(|e| format!("past i32::MAX: {e}"))?;
    expect(
        "the counter after an overflow",
        &s.get("ctrx:max").await?,
        &Some(i32::MAX.to_string()),
    )?;
    s.add("ctrx:min", i32::MIN).await?;
    s.refused(OP_ADD, &add("ctrx:min", -1), "ERR")
        .await
        .map_err(|e| format!("past i32::MIN: {e}"))?;
    expect(
        "`Add` after an overflow",
        &s.add("ctrx:min", 1).await?,
        &(i32::MIN + 1),
    )
}

async fn lists(s: &Client<'_, impl Subject>) -> Outcome {
    for (i, item) in ["e", "d", "c", "b", "a"].iter().enumerate() {
        expect(
            "`Push` replies the new length",
            &s.push("lst:l", item).await?,
            &(i as i32 + 1),
        )?;
    }
    let all = strings_of(&["a", "b", "c", "d", "e"]);
    for (start, stop, want) in [
        (0, -1, all.clone()),
        (0, 0, strings_of(&["a"])),
        (1, 3, strings_of(&["b", "c", "d"])),
        (-2, -1, strings_of(&["d", "e"])),
        (-100, 1, strings_of(&["a", "b"])),
        (3, 100, strings_of(&["d", "e"])),
        (5, 10, vec![]),
        (3, 1, vec![]),
        (-1, -2, vec![]),
        (-100, -6, vec![]),
        (i32::MIN, i32::MAX, all.clone()),
    ] {
        expect(
            &format!("`Range` {start}..={stop}"),
            &s.range("lst:l", start, stop).await?,
            &want,
        )?;
    }
    expect(
        "`Range` of a missing key",
        &s.range("lst:missing", 0, -1).await?,
        &vec![],
    )?;
    s.push("lst:dup", "x").await?;
    expect(
        "`Push` keeps duplicates",
        &s.push("lst:dup", "x").await?,
        &2,
    )
}

async fn list_item_delete(s: &Client<'_, impl Subject>) -> Outcome {
    for item in ["a", "b", "a", "c", "a"] {
        s.push("ldel:l", item).await?;
    }
    let del = |key: &str, value: &str| ListDelItemRequest {
        key: key.into(),
        value: value.into(),
    };
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:l", "a")).await?;
    expect("`ListItemDelete` replies the length left", &r.new_count, &2)?;
    expect(
        "what is left",
        &s.range("ldel:l", 0, -1).await?,
        &strings_of(&["c", "b"]),
    )?;
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:l", "zzz")).await?;
    expect("deleting an absent item", &r.new_count, &2)?;
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:missing", "a")).await?;
    expect("deleting from a missing list", &r.new_count, &0)?;
    s.ok::<_, ListResponse>(OP_LIST_DEL, &del("ldel:l", "b"))
        .await?;
    let r: ListResponse = s.ok(OP_LIST_DEL, &del("ldel:l", "c")).await?;
    expect("emptying the list", &r.new_count, &0)?;
    expect(
        "an emptied list is gone",
        &s.exists("ldel:l").await?,
        &false,
    )
}

async fn clear(s: &Client<'_, impl Subject>) -> Outcome {
    s.push("clr:l", "x").await?;
    let r: DelResponse = s
        .ok(
            OP_CLEAR,
            &ListClearRequest {
                key: "clr:l".into(),
            },
        )
        .await?;
    expect("`Clear` replies the key", r.key.as_str(), "clr:l")?;
    expect("a cleared list is gone", &s.exists("clr:l").await?, &false)?;
    s.ok::<_, DelResponse>(
        OP_CLEAR,
        &ListClearRequest {
            key: "clr:missing".into(),
        },
    )
    .await?;
    s.set("clr:str", "counter", 0).await?;
    s.refused(
        OP_CLEAR,
        &ListClearRequest {
            key: "clr:str".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    expect(
        "a string `Clear` refused",
        &s.get("clr:str").await?,
        &Some("counter".into()),
    )
}

async fn sets(s: &Client<'_, impl Subject>) -> Outcome {
    expect("`SetAdd` of a new member", &s.sadd("set:s", "m").await?, &1)?;
    expect(
        "`SetAdd` of a member again",
        &s.sadd("set:s", "m").await?,
        &0,
    )?;
    for member in ["z", "a", "q"] {
        s.sadd("set:s", member).await?;
    }
    expect(
        "`SetQuery` is sorted",
        &s.members("set:s").await?,
        &strings_of(&["a", "m", "q", "z"]),
    )?;
    expect(
        "`SetQuery` of a missing key",
        &s.members("set:missing").await?,
        &vec![],
    )?;
    expect("`SetRemove` of a member", &s.srem("set:s", "m").await?, &1)?;
    expect("`SetRemove` of it again", &s.srem("set:s", "m").await?, &0)?;
    expect(
        "`SetRemove` on a missing key",
        &s.srem("set:missing", "m").await?,
        &0,
    )?;
    for member in ["a", "q", "z"] {
        s.srem("set:s", member).await?;
    }
    expect("an emptied set is gone", &s.exists("set:s").await?, &false)
}

async fn set_algebra(s: &Client<'_, impl Subject>) -> Outcome {
    for m in ["x", "m", "b"] {
        s.sadd("alg:z", m).await?;
    }
    for m in ["m", "b", "c"] {
        s.sadd("alg:w", m).await?;
    }
    let keys = |ks: &[&str]| strings_of(ks);
    let union: SetQueryResponse = s
        .ok(
            OP_SET_UNION,
            &SetUnionRequest {
                keys: keys(&["alg:z", "alg:w", "alg:missing"]),
            },
        )
        .await?;
    expect(
        "`SetUnion`",
        &union.values,
        &strings_of(&["b", "c", "m", "x"]),
    )?;
    let inter: SetQueryResponse = s
        .ok(
            OP_SET_INTERSECT,
            &SetIntersectionRequest {
                keys: keys(&["alg:z", "alg:w"]),
            },
        )
        .await?;
    expect("`SetIntersection`", &inter.values, &strings_of(&["b", "m"]))?;
    let inter: SetQueryResponse = s
        .ok(
            OP_SET_INTERSECT,
            &SetIntersectionRequest {
                keys: keys(&["alg:z", "alg:missing"]),
            },
        )
        .await?;
    expect(
        "`SetIntersection` with a missing key",
        &inter.values,
        &vec![],
    )?;
    s.refused(OP_SET_UNION, &SetUnionRequest { keys: vec![] }, "ERR")
        .await?;
    s.refused(
        OP_SET_INTERSECT,
        &SetIntersectionRequest { keys: vec![] },
        "ERR",
    )
    .await?;
    s.set("alg:str", "x", 0).await?;
    s.refused(
        OP_SET_UNION,
        &SetUnionRequest {
            keys: keys(&["alg:z", "alg:str"]),
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(
        OP_SET_INTERSECT,
        &SetIntersectionRequest {
            keys: keys(&["alg:missing", "alg:str"]),
        },
        "WRONGTYPE",
    )
    .await
    .map_err(|e| format!("every key is type-checked, even after a missing one: {e}"))
}

async fn delete_and_exists(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("del:str", "v", 0).await?;
    s.push("del:list", "v").await?;
    s.sadd("del:set", "v").await?;
    for key in ["del:str", "del:list", "del:set"] {
        expect(&format!("`KeyExists` {key}"), &s.exists(key).await?, &true)?;
        let r: DelResponse = s.ok(OP_DEL, &DelRequest { key: key.into() }).await?;
        expect("`Del` replies the key", r.key.as_str(), key)?;
        expect(
            &format!("`KeyExists` {key} after `Del`"),
            &s.exists(key).await?,
            &false,
        )?;
    }
    s.ok::<_, DelResponse>(
        OP_DEL,
        &DelRequest {
            key: "del:missing".into(),
        },
    )
    .await?;
    expect(
        "`KeyExists` of a missing key",
        &s.exists("del:missing").await?,
        &false,
    )
}

async fn wrong_types(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("wt:str", "text", 0).await?;
    s.push("wt:list", "item").await?;
    s.sadd("wt:set", "member").await?;
    let key = |k: &str| GetRequest { key: k.into() };
    let item = |k: &str| ListPushRequest {
        key: k.into(),
        value: "x".into(),
    };
    let member = |k: &str| SetAddRequest {
        key: k.into(),
        value: "x".into(),
    };
    s.refused(OP_GET, &key("wt:list"), "WRONGTYPE").await?;
    s.refused(OP_GET, &key("wt:set"), "WRONGTYPE").await?;
    s.refused(
        OP_ADD,
        &AddRequest {
            key: "wt:list".into(),
            value: 1,
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(OP_PUSH, &item("wt:str"), "WRONGTYPE").await?;
    s.refused(OP_PUSH, &item("wt:set"), "WRONGTYPE").await?;
    s.refused(
        OP_RANGE,
        &ListRangeRequest {
            key: "wt:str".into(),
            start: 0,
            stop: -1,
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(
        OP_LIST_DEL,
        &ListDelItemRequest {
            key: "wt:set".into(),
            value: "x".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(OP_SET_ADD, &member("wt:str"), "WRONGTYPE")
        .await?;
    s.refused(OP_SET_ADD, &member("wt:list"), "WRONGTYPE")
        .await?;
    s.refused(
        OP_SET_REMOVE,
        &SetRemoveRequest {
            key: "wt:list".into(),
            value: "x".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    s.refused(
        OP_SET_QUERY,
        &SetQueryRequest {
            key: "wt:str".into(),
        },
        "WRONGTYPE",
    )
    .await?;
    // Nothing the refusals touched changed.
    expect("the string", &s.get("wt:str").await?, &Some("text".into()))?;
    expect(
        "the list",
        &s.range("wt:list", 0, -1).await?,
        &strings_of(&["item"]),
    )?;
    expect(
        "the set",
        &s.members("wt:set").await?,
        &strings_of(&["member"]),
    )
}

async fn isolation(s: &Client<'_, impl Subject>) -> Outcome {
    s.set("iso:k", "mine", 0).await?;
    let there: GetResponse = s
        .ok_on(
            OTHER_BINDING,
            OP_GET,
            &GetRequest {
                key: "iso:k".into(),
            },
        )
        .await?;
    expect("the other binding's view of a key", &there.exists, &false)?;
    let _: SetResponse = s
        .ok_on(
            OTHER_BINDING,
            OP_SET,
            &SetRequest {
                key: "iso:k".into(),
                value: "theirs".into(),
                expires_s: 0,
            },
        )
        .await?;
    expect(
        "a key after the other binding set its own",
        &s.get("iso:k").await?,
        &Some("mine".into()),
    )
}

async fn unknown_operation(s: &Client<'_, impl Subject>) -> Outcome {
    match s
        .raw(BINDING, "FlushAll", &GetRequest { key: "x".into() })
        .await
    {
        Ok(_) => Err("`FlushAll` succeeded".into()),
        Err(text) if text.contains("does not support the operation `FlushAll`") => Ok(()),
        Err(text) => Err(format!(
            "`FlushAll` failed with {text:?}; expected an unknown operation"
        )),
    }
}

async fn bad_payload(s: &Client<'_, impl Subject>) -> Outcome {
    match s.0.call(BINDING, OP_GET, vec![0xc1]).await {
        Ok(_) => Err("an undecodable `Get` succeeded".into()),
        Err(text) if text.contains("bad payload") && text.contains("`Get`") => Ok(()),
        Err(text) => Err(format!(
            "an undecodable `Get` failed with {text:?}; expected a bad payload"
        )),
    }
}
