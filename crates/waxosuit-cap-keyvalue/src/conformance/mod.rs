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

mod checks;

pub use waxosuit_provider::conformance::{Failure, Report};

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::keyvalue::{
    AddRequest, AddResponse, GetRequest, GetResponse, KeyExistsQuery, ListPushRequest,
    ListRangeRequest, ListRangeResponse, ListResponse, OP_ADD, OP_GET, OP_KEY_EXISTS, OP_PUSH,
    OP_RANGE, OP_SET, OP_SET_ADD, OP_SET_QUERY, OP_SET_REMOVE, SetAddRequest, SetOperationResponse,
    SetQueryRequest, SetQueryResponse, SetRemoveRequest, SetRequest, SetResponse,
};

pub use waxosuit_provider::conformance::{BINDING, OTHER_BINDING, ProviderSubject, Subject};
use waxosuit_provider::conformance::{Calls, expect};

type Outcome = Result<(), String>;

/// Runs every check against `subject`.
pub async fn run(subject: &impl Subject) -> Report {
    let s = Client(Calls(subject));
    let mut report = Report::default();
    report.record("strings", checks::strings(&s).await);
    report.record(
        "set_replaces_any_type",
        checks::set_replaces_any_type(&s).await,
    );
    report.record(
        "negative_expiry_is_refused",
        checks::negative_expiry(&s).await,
    );
    report.record("counters", checks::counters(&s).await);
    report.record(
        "counter_refusals_keep_the_value",
        checks::counter_refusals(&s).await,
    );
    report.record("lists_push_and_range", checks::lists(&s).await);
    report.record("list_item_delete", checks::list_item_delete(&s).await);
    report.record("clear_deletes_lists_only", checks::clear(&s).await);
    report.record("sets", checks::sets(&s).await);
    report.record("set_union_and_intersection", checks::set_algebra(&s).await);
    report.record("delete_and_exists", checks::delete_and_exists(&s).await);
    report.record("wrong_type_refusals", checks::wrong_types(&s).await);
    report.record("bindings_are_isolated", checks::isolation(&s).await);
    report.record("unknown_operation", checks::unknown_operation(&s).await);
    report.record("undecodable_request", checks::bad_payload(&s).await);
    report
}

/// Typed calls over a subject.
struct Client<'a, S>(Calls<'a, S>);

// The shared calls (`raw`, `ok_on`, `refused`) and this capability's own.
impl<'a, S> std::ops::Deref for Client<'a, S> {
    type Target = Calls<'a, S>;

    fn deref(&self) -> &Calls<'a, S> {
        &self.0
    }
}

impl<S: Subject> Client<'_, S> {
    /// `op` on [`BINDING`], which must succeed with a reply of type `R`.
    async fn ok<Q: Serialize, R: DeserializeOwned>(&self, op: &str, req: &Q) -> Result<R, String> {
        self.ok_on(BINDING, op, req).await
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

fn strings_of(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
