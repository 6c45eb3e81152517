//! The suite against the reference backend, and against deliberately wrong
//! backends: each flaw must fail the check that covers it, or the suite
//! could not catch a wrong backend.

use std::sync::Arc;

use async_trait::async_trait;
use waxosuit_cap_keyvalue::conformance::{self, ProviderSubject};
use waxosuit_cap_keyvalue::reference::{ManualClock, ReferenceBackend};
use waxosuit_cap_keyvalue::{Backend, Description, KeyValueProvider, Keyspace, MemoryKeyspace};
use waxosuit_provider::{BindRequest, ProviderError};

#[tokio::test]
async fn the_reference_backend_passes() {
    let kv = KeyValueProvider::<ReferenceBackend>::new();
    let subject = ProviderSubject::bind(&kv, "MREFERENCE", &[]).await.unwrap();
    let report = conformance::run(&subject).await;
    report.assert_passed();
    assert!(report.passed.len() >= 15, "{report}");
}

/// One way a backend can get the contract wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// `Push` appends instead of prepending.
    Appends,
    /// `SetAdd` says every member is new.
    AlwaysAdded,
    /// `Add` wraps past `i32::MAX` instead of refusing.
    Wraps,
    /// `Clear` deletes whatever the key holds.
    ClearsAnything,
    /// An emptied set stays behind.
    KeepsEmptySets,
    /// Every binding of an actor shares one keyspace.
    Shared,
}

/// The reference keyspace with one flaw.
struct Flawed {
    inner: Arc<MemoryKeyspace>,
    flaw: Flaw,
}

#[async_trait]
impl Keyspace for Flawed {
    async fn get(&self, key: &str) -> Result<Option<String>, ProviderError> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: String, expires_s: u32) -> Result<(), ProviderError> {
        self.inner.set(key, value, expires_s).await
    }
    async fn add(&self, key: &str, delta: i32) -> Result<i32, ProviderError> {
        if self.flaw == Flaw::Wraps {
            let current: i32 = self
                .inner
                .get(key)
                .await?
                .map_or(0, |v| v.parse().unwrap_or(0));
            let next = current.wrapping_add(delta);
            self.inner.set(key, next.to_string(), 0).await?;
            return Ok(next);
        }
        self.inner.add(key, delta).await
    }
    async fn del(&self, key: &str) -> Result<(), ProviderError> {
        self.inner.del(key).await
    }
    async fn clear_list(&self, key: &str) -> Result<(), ProviderError> {
        if self.flaw == Flaw::ClearsAnything {
            return self.inner.del(key).await;
        }
        self.inner.clear_list(key).await
    }
    async fn range(&self, key: &str, start: i32, stop: i32) -> Result<Vec<String>, ProviderError> {
        let mut items = self.inner.range(key, start, stop).await?;
        if self.flaw == Flaw::Appends {
            items.reverse();
        }
        Ok(items)
    }
    async fn push(&self, key: &str, value: String) -> Result<u64, ProviderError> {
        self.inner.push(key, value).await
    }
    async fn list_remove(&self, key: &str, value: &str) -> Result<u64, ProviderError> {
        self.inner.list_remove(key, value).await
    }
    async fn set_add(&self, key: &str, member: String) -> Result<bool, ProviderError> {
        let added = self.inner.set_add(key, member).await?;
        Ok(added || self.flaw == Flaw::AlwaysAdded)
    }
    async fn set_remove(&self, key: &str, member: &str) -> Result<bool, ProviderError> {
        if self.flaw == Flaw::KeepsEmptySets && self.inner.members(key) == [member] {
            // Leave a placeholder behind, as a backend that forgets to
            // delete the emptied key would.
            self.inner.set_add(key, String::new()).await?;
        }
        self.inner.set_remove(key, member).await
    }
    async fn set_members(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        self.inner.set_members(key).await
    }
    async fn set_union(&self, keys: &[String]) -> Result<Vec<String>, ProviderError> {
        self.inner.set_union(keys).await
    }
    async fn set_intersection(&self, keys: &[String]) -> Result<Vec<String>, ProviderError> {
        self.inner.set_intersection(keys).await
    }
    async fn exists(&self, key: &str) -> Result<bool, ProviderError> {
        self.inner.exists(key).await
    }
}

struct FlawedBackend {
    reference: ReferenceBackend,
    shared: Arc<MemoryKeyspace>,
    flaw: Flaw,
}

#[async_trait]
impl Backend for FlawedBackend {
    type Keyspace = Flawed;

    fn description(&self) -> Description {
        Description {
            name: "flawed",
            long_description: "a reference keyspace with one flaw",
        }
    }

    fn open(
        &self,
        request: &BindRequest,
        _current: Option<&Arc<Flawed>>,
    ) -> Result<Arc<Flawed>, ProviderError> {
        let inner = if self.flaw == Flaw::Shared {
            Arc::clone(&self.shared)
        } else {
            self.reference.open(request, None)?
        };
        Ok(Arc::new(Flawed {
            inner,
            flaw: self.flaw,
        }))
    }
}

#[tokio::test]
async fn each_flaw_fails_the_check_that_covers_it() {
    for (flaw, check) in [
        (Flaw::Appends, "lists_push_and_range"),
        (Flaw::AlwaysAdded, "sets"),
        (Flaw::Wraps, "counter_refusals_keep_the_value"),
        (Flaw::ClearsAnything, "clear_deletes_lists_only"),
        (Flaw::KeepsEmptySets, "sets"),
        (Flaw::Shared, "bindings_are_isolated"),
    ] {
        let clock = Arc::new(ManualClock::new());
        let kv = KeyValueProvider::with_backend(FlawedBackend {
            reference: ReferenceBackend::with_clock(clock.clone()),
            shared: Arc::new(MemoryKeyspace::new(
                "MFLAWED",
                "shared",
                Default::default(),
                clock,
            )),
            flaw,
        });
        let subject = ProviderSubject::bind(&kv, "MFLAWED", &[]).await.unwrap();
        let report = conformance::run(&subject).await;
        assert!(
            report.failed(check),
            "{flaw:?} was not caught by {check}:\n{report}"
        );
    }
}
