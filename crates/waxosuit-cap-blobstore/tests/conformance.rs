//! The suite against the reference store, and against deliberately wrong
//! stores: each flaw must fail the check that covers it, or the suite could
//! not catch a wrong backend.

use std::sync::Arc;

use async_trait::async_trait;
use waxosuit_cap_blobstore::conformance::{self, LocalSubject};
use waxosuit_cap_blobstore::reference::{MemoryReader, MemoryStaged, MemoryStore};
use waxosuit_cap_blobstore::{
    Binding, BlobError, Limits, ListBudget, Reader, Staged, Store, Stored,
};

#[tokio::test]
async fn the_reference_store_passes() {
    let subject = LocalSubject::new(|binding| {
        Binding::new("MREFERENCE", binding, MemoryStore::new(), Limits::default())
    });
    let report = conformance::run(&subject).await;
    report.assert_passed();
    assert!(report.passed.len() >= 15, "{report}");
}

#[tokio::test]
async fn the_reference_store_passes_without_limits() {
    let subject = LocalSubject::new(|binding| {
        Binding::new("MFAKE", binding, MemoryStore::new(), Limits::UNLIMITED)
    });
    conformance::run(&subject).await.assert_passed();
}

/// One way a backend can get the contract wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Creating a container that exists fails.
    RefusesExistingContainers,
    /// Every chunk written is published at once, so partial uploads show.
    PublishesEveryChunk,
    /// Reads ignore the offset: every chunk is the object's start.
    ReadsFromTheStart,
    /// Sizes count one byte too many.
    SizesOffByOne,
    /// Removing an object does nothing.
    KeepsRemovedObjects,
    /// Every binding shares one store.
    Shared,
}

/// The reference store with one flaw.
struct Flawed {
    inner: Arc<MemoryStore>,
    flaw: Flaw,
}

struct FlawedStaged {
    inner: MemoryStaged,
    flaw: Flaw,
}

struct FlawedReader {
    inner: MemoryReader,
    flaw: Flaw,
}

#[async_trait]
impl Store for Flawed {
    type Staged = FlawedStaged;
    type Reader = FlawedReader;

    async fn usage(&self) -> Result<Stored, BlobError> {
        self.inner.usage().await
    }
    async fn create_container(&self, container: &str, may_create: bool) -> Result<bool, BlobError> {
        if self.flaw == Flaw::RefusesExistingContainers
            && self
                .inner
                .list_objects(container, ListBudget::new(container, u64::MAX))
                .await
                .is_ok()
        {
            return Err(BlobError::Internal(format!("`{container}` exists")));
        }
        self.inner.create_container(container, may_create).await
    }
    async fn remove_container(&self, container: &str) -> Result<Stored, BlobError> {
        self.inner.remove_container(container).await
    }
    async fn remove_object(&self, container: &str, id: &str) -> Result<u64, BlobError> {
        if self.flaw == Flaw::KeepsRemovedObjects {
            return self.inner.object_size(container, id).await;
        }
        self.inner.remove_object(container, id).await
    }
    async fn list_objects(
        &self,
        container: &str,
        budget: ListBudget,
    ) -> Result<Vec<(String, u64)>, BlobError> {
        let mut list = self.inner.list_objects(container, budget).await?;
        if self.flaw == Flaw::SizesOffByOne {
            list.iter_mut().for_each(|(_, size)| *size += 1);
        }
        Ok(list)
    }
    async fn object_size(&self, container: &str, id: &str) -> Result<u64, BlobError> {
        let size = self.inner.object_size(container, id).await?;
        Ok(size + u64::from(self.flaw == Flaw::SizesOffByOne))
    }
    async fn stage(&self, container: &str, id: &str) -> Result<FlawedStaged, BlobError> {
        Ok(FlawedStaged {
            inner: self.inner.stage(container, id).await?,
            flaw: self.flaw,
        })
    }
    async fn open(&self, container: &str, id: &str) -> Result<FlawedReader, BlobError> {
        Ok(FlawedReader {
            inner: self.inner.open(container, id).await?,
            flaw: self.flaw,
        })
    }
}

#[async_trait]
impl Staged for FlawedStaged {
    async fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.inner.write(offset, bytes).await?;
        if self.flaw == Flaw::PublishesEveryChunk {
            // What a backend writing into the object in place would show.
            return self.inner.publish().await.map(drop);
        }
        Ok(())
    }
    async fn publish(&self) -> Result<Option<u64>, BlobError> {
        match self.inner.publish().await {
            Err(BlobError::NoUpload { .. }) if self.flaw == Flaw::PublishesEveryChunk => Ok(None),
            other => other,
        }
    }
}

#[async_trait]
impl Reader for FlawedReader {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, BlobError> {
        let offset = if self.flaw == Flaw::ReadsFromTheStart {
            0
        } else {
            offset
        };
        self.inner.read(offset, len).await
    }
}

#[tokio::test]
async fn each_flaw_fails_the_check_that_covers_it() {
    for (flaw, check) in [
        (Flaw::RefusesExistingContainers, "containers"),
        (Flaw::PublishesEveryChunk, "upload_in_chunks"),
        (Flaw::ReadsFromTheStart, "download_chunks"),
        (Flaw::SizesOffByOne, "listing_is_sorted"),
        (Flaw::KeepsRemovedObjects, "remove_object"),
        (Flaw::Shared, "bindings_are_isolated"),
    ] {
        let shared = Arc::new(MemoryStore::new());
        let subject = LocalSubject::new(|binding| {
            let inner = if flaw == Flaw::Shared {
                Arc::clone(&shared)
            } else {
                Arc::new(MemoryStore::new())
            };
            Binding::new(
                "MFLAWED",
                binding,
                Flawed { inner, flaw },
                Limits::default(),
            )
        });
        let report = conformance::run(&subject).await;
        assert!(
            report.failed(check),
            "{flaw:?} was not caught by {check}:\n{report}"
        );
    }
}
