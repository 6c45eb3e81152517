//! The conformance suite of `wascc:blobstore`: what every backend must
//! answer, checked through encoded calls as an actor makes them and the
//! `ReceiveChunk` calls its downloads make.
//!
//! [`run`] drives a [`Subject`] (anything that takes an operation and its
//! MessagePack payload for one of two bindings of one actor, and shows the
//! chunks its downloads sent) through every operation of the contract, its
//! edge cases and its refusals, and returns a [`Report`] naming each check
//! that failed and why. Errors are compared as the actor reads them: the
//! error's text, whose kind (`bad payload for wascc:blobstore …`,
//! `wascc:blobstore backend error: …`) comes first.
//!
//! Three kinds of subject:
//!
//! * [`ProviderSubject`]: a [`CapabilityProvider`], started with a
//!   [`Recorder`] as its dispatcher (how a backend crate runs the suite);
//! * [`LocalSubject`]: two [`Binding`]s over any [`Store`], in process,
//!   downloads sent when the suite asks for their chunks (how the reference
//!   store and deliberately wrong stores are checked);
//! * the SDK's fake host, in `waxosuit-actor`'s tests.
//!
//! ```
//! use waxosuit_cap_blobstore::conformance::{self, LocalSubject};
//! use waxosuit_cap_blobstore::reference::MemoryStore;
//! use waxosuit_cap_blobstore::{Binding, Limits};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let subject = LocalSubject::new(|binding| {
//!     Binding::new("MCONFORMANCE", binding, MemoryStore::new(), Limits::default())
//! });
//! conformance::run(&subject).await.assert_passed();
//! # }
//! ```
//!
//! The subject must start empty: both bindings bound, no containers, each
//! binding with its own storage and the default
//! [`Limits`](crate::Limits) or looser. Each check uses containers of its
//! own, so checks do not depend on one another's order.

mod checks;
mod recorder;

pub use recorder::Recorder;
pub use waxosuit_provider::conformance::{Failure, Report};

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::blobstore::{
    Blob, BlobList, Container, FileChunk, OP_CREATE_CONTAINER, OP_GET_OBJECT_INFO, OP_LIST_OBJECTS,
    OP_START_DOWNLOAD, OP_START_UPLOAD, OP_UPLOAD_CHUNK, StreamRequest, Transfer,
};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};

use crate::{Binding, CAPABILITY_ID, Delivery, Download, Store};

pub use waxosuit_provider::conformance::{BINDING, OTHER_BINDING};

/// The actor the subjects here act for.
pub const ACTOR: &str = "MCONFORMANCE";

/// How long a check waits for chunks that must come.
const ARRIVAL: Duration = Duration::from_secs(5);

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

    /// The `ReceiveChunk` payloads the actor has been sent for downloads
    /// whose context is `context`, in the order sent, once `count` have
    /// come (a subject that waits gives up after a few seconds and returns
    /// what it has).
    fn received(&self, context: &str, count: usize) -> impl Future<Output = Vec<FileChunk>>;
}

/// A [`CapabilityProvider`] as a subject: calls go to its
/// [`handle_call`](CapabilityProvider::handle_call) for [`ACTOR`], chunks
/// to its [`Recorder`].
pub struct ProviderSubject<'a> {
    provider: &'a dyn CapabilityProvider,
    recorder: Recorder,
}

impl fmt::Debug for ProviderSubject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSubject")
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}

impl<'a> ProviderSubject<'a> {
    /// Starts `provider` with a new [`Recorder`] as its dispatcher and
    /// binds [`ACTOR`] under [`BINDING`] and [`OTHER_BINDING`], each with
    /// the values `values` gives for its name (its own storage: a
    /// directory, a bucket).
    ///
    /// # Errors
    ///
    /// What the provider's `start` or `bind_actor` returns.
    pub async fn start(
        provider: &'a dyn CapabilityProvider,
        values: impl Fn(&str) -> Vec<(String, String)>,
    ) -> Result<ProviderSubject<'a>, ProviderError> {
        let recorder = Recorder::new();
        provider.start(recorder.dispatcher()).await?;
        for binding in [BINDING, OTHER_BINDING] {
            provider
                .bind_actor(BindRequest {
                    actor: ACTOR.to_string(),
                    binding: binding.to_string(),
                    values: values(binding).into_iter().collect::<HashMap<_, _>>(),
                })
                .await?;
        }
        Ok(ProviderSubject { provider, recorder })
    }

    /// The recorder the provider sends chunks to.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
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
                actor: ACTOR.to_string(),
                binding: binding.to_string(),
                operation: operation.to_string(),
                payload,
            })
            .await
            .map_err(|e| e.to_string())
    }

    async fn received(&self, context: &str, count: usize) -> Vec<FileChunk> {
        self.recorder.wait_for(context, count, ARRIVAL).await
    }
}

/// Two [`Binding`]s over any [`Store`], answered in process through the
/// [operation table](crate::dispatch). Downloads wait until the suite asks
/// for their chunks, then are sent to a [`Recorder`] with
/// [`Download::send`].
pub struct LocalSubject<S: Store> {
    bindings: HashMap<&'static str, Binding<S>>,
    pending: Pending<S::Reader>,
    recorder: Recorder,
}

impl<S: Store> fmt::Debug for LocalSubject<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSubject")
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}

/// Downloads started and not yet sent.
struct Pending<R>(Mutex<Vec<Download<R>>>);

impl<R> Delivery<R> for Pending<R> {
    fn deliver(&self, download: Download<R>) {
        self.0.lock().push(download);
    }
}

impl<S: Store> LocalSubject<S> {
    /// [`BINDING`] and [`OTHER_BINDING`], each the binding `open` makes
    /// for its name.
    pub fn new(mut open: impl FnMut(&str) -> Binding<S>) -> LocalSubject<S> {
        LocalSubject {
            bindings: [BINDING, OTHER_BINDING]
                .into_iter()
                .map(|name| (name, open(name)))
                .collect(),
            pending: Pending(Mutex::new(Vec::new())),
            recorder: Recorder::new(),
        }
    }
}

impl<S: Store> Subject for LocalSubject<S> {
    async fn call(
        &self,
        binding: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let bound = self
            .bindings
            .get(binding)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, ACTOR, binding).to_string())?;
        crate::dispatch(bound, operation, &payload, &self.pending)
            .await
            .map_err(|e| e.to_string())
    }

    async fn received(&self, context: &str, count: usize) -> Vec<FileChunk> {
        let pending = std::mem::take(&mut *self.pending.0.lock());
        for download in pending {
            // A download that stops sends fewer chunks, which the check
            // reports.
            let _ = download.send(&self.recorder, ACTOR).await;
        }
        self.recorder.wait_for(context, count, Duration::ZERO).await
    }
}

type Outcome = Result<(), String>;

/// Runs every check against `subject`.
pub async fn run(subject: &impl Subject) -> Report {
    let s = Client(subject);
    let mut report = Report::default();
    report.record("containers", checks::containers(&s).await);
    report.record("upload_in_chunks", checks::upload_in_chunks(&s).await);
    report.record("listing_is_sorted", checks::listing(&s).await);
    report.record("remove_object", checks::remove_object(&s).await);
    report.record("empty_object", checks::empty_object(&s).await);
    report.record("restarted_upload_replaces", checks::restart(&s).await);
    report.record("upload_refusals", checks::upload_refusals(&s).await);
    report.record(
        "removing_a_container_abandons_its_uploads",
        checks::remove_abandons(&s).await,
    );
    report.record("download_chunks", checks::download_chunks(&s).await);
    report.record("download_chunk_sizes", checks::download_sizes(&s).await);
    report.record("download_refusals", checks::download_refusals(&s).await);
    report.record("names_are_checked", checks::names(&s).await);
    report.record("bindings_are_isolated", checks::isolation(&s).await);
    report.record("unknown_operation", checks::unknown_operation(&s).await);
    report.record("undecodable_request", checks::bad_payload(&s).await);
    report
}

/// How a refusal reads to the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `bad payload for wascc:blobstore `Op`: …`
    BadPayload,
    /// `wascc:blobstore backend error: …`
    Backend,
}

impl Refusal {
    fn prefix(self, operation: &str) -> String {
        match self {
            Refusal::BadPayload => ProviderError::BadPayload {
                capid: CAPABILITY_ID.to_string(),
                operation: operation.to_string(),
                reason: String::new(),
            },
            Refusal::Backend => ProviderError::backend(CAPABILITY_ID, ""),
        }
        .to_string()
    }
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

    /// `op` on `binding`, which must succeed with an empty reply.
    async fn done_on<Q: Serialize>(&self, binding: &str, op: &str, req: &Q) -> Outcome {
        let reply = self
            .raw(binding, op, req)
            .await
            .map_err(|e| format!("`{op}` failed: {e}"))?;
        expect(&format!("`{op}` reply"), reply.as_slice(), &[])
    }

    async fn done<Q: Serialize>(&self, op: &str, req: &Q) -> Outcome {
        self.done_on(BINDING, op, req).await
    }

    /// `op` on `binding`, which must fail as `kind` with a text containing
    /// `needle`.
    async fn refused_on<Q: Serialize>(
        &self,
        binding: &str,
        op: &str,
        req: &Q,
        kind: Refusal,
        needle: &str,
    ) -> Outcome {
        let prefix = kind.prefix(op);
        match self.raw(binding, op, req).await {
            Ok(_) => Err(format!("`{op}` succeeded; expected `{prefix}…{needle}…`")),
            Err(text) if text.starts_with(&prefix) && text.contains(needle) => Ok(()),
            Err(text) => Err(format!(
                "`{op}` failed with {text:?}; expected `{prefix}…{needle}…`"
            )),
        }
    }

    async fn refused<Q: Serialize>(
        &self,
        op: &str,
        req: &Q,
        kind: Refusal,
        needle: &str,
    ) -> Outcome {
        self.refused_on(BINDING, op, req, kind, needle).await
    }

    async fn create(&self, container: &str) -> Outcome {
        let reply: Container = self.ok(OP_CREATE_CONTAINER, &container_(container)).await?;
        expect("`CreateContainer` reply", reply.id.as_str(), container)
    }

    async fn list_on(&self, binding: &str, container: &str) -> Result<Vec<(String, u64)>, String> {
        let list: BlobList = self
            .ok_on(binding, OP_LIST_OBJECTS, &container_(container))
            .await?;
        list.blobs
            .into_iter()
            .map(|b| {
                expect(
                    "a listed object's container",
                    b.container.as_str(),
                    container,
                )?;
                Ok((b.id, b.byte_size))
            })
            .collect()
    }

    async fn list(&self, container: &str) -> Result<Vec<(String, u64)>, String> {
        self.list_on(BINDING, container).await
    }

    async fn info(&self, container: &str, id: &str) -> Result<u64, String> {
        let reply: Blob = self.ok(OP_GET_OBJECT_INFO, &blob(container, id)).await?;
        expect(
            "`GetObjectInfo` reply",
            &(reply.container.as_str(), reply.id.as_str()),
            &(container, id),
        )?;
        Ok(reply.byte_size)
    }

    async fn start_upload(
        &self,
        container: &str,
        id: &str,
        total: u64,
        chunk_size: u64,
    ) -> Outcome {
        self.done(OP_START_UPLOAD, &header(container, id, total, chunk_size))
            .await
    }

    /// Chunk `sequence_no` of `data` cut into `chunk_size` pieces.
    async fn chunk(
        &self,
        container: &str,
        id: &str,
        data: &[u8],
        chunk_size: usize,
        sequence_no: usize,
    ) -> Outcome {
        self.done(
            OP_UPLOAD_CHUNK,
            &piece(container, id, data, chunk_size, sequence_no),
        )
        .await
    }

    async fn upload_on(
        &self,
        binding: &str,
        container: &str,
        id: &str,
        data: &[u8],
        chunk_size: usize,
    ) -> Outcome {
        let head = header(container, id, data.len() as u64, chunk_size as u64);
        self.done_on(binding, OP_START_UPLOAD, &head).await?;
        for seq in 0..data.len().div_ceil(chunk_size) {
            let chunk = piece(container, id, data, chunk_size, seq);
            self.done_on(binding, OP_UPLOAD_CHUNK, &chunk).await?;
        }
        Ok(())
    }

    async fn upload(&self, container: &str, id: &str, data: &[u8], chunk_size: usize) -> Outcome {
        self.upload_on(BINDING, container, id, data, chunk_size)
            .await
    }

    /// Starts a download with `context` and collects its chunks.
    async fn download(
        &self,
        container: &str,
        id: &str,
        chunk_size: u64,
        context: &str,
    ) -> Result<(Transfer, Vec<FileChunk>), String> {
        let request = StreamRequest {
            id: id.into(),
            container: container.into(),
            chunk_size,
            context: Some(context.into()),
        };
        let transfer: Transfer = self.ok(OP_START_DOWNLOAD, &request).await?;
        let count = usize::try_from(transfer.total_chunks)
            .map_err(|_| format!("{} chunks announced", transfer.total_chunks))?;
        let chunks = self.0.received(context, count).await;
        if chunks.len() != count {
            return Err(format!(
                "download `{context}` announced {count} chunks, {} came",
                chunks.len()
            ));
        }
        Ok((transfer, chunks))
    }
}

fn container_(id: &str) -> Container {
    Container { id: id.into() }
}

fn blob(container: &str, id: &str) -> Blob {
    Blob {
        id: id.into(),
        container: container.into(),
        byte_size: 0,
    }
}

fn header(container: &str, id: &str, total: u64, chunk_size: u64) -> FileChunk {
    FileChunk {
        sequence_no: 0,
        container: container.into(),
        id: id.into(),
        total_bytes: total,
        chunk_size,
        context: None,
        chunk_bytes: Vec::new(),
    }
}

fn piece(
    container: &str,
    id: &str,
    data: &[u8],
    chunk_size: usize,
    sequence_no: usize,
) -> FileChunk {
    let start = (sequence_no * chunk_size).min(data.len());
    let end = (start + chunk_size).min(data.len());
    FileChunk {
        sequence_no: sequence_no as u64,
        container: container.into(),
        id: id.into(),
        total_bytes: data.len() as u64,
        chunk_size: chunk_size as u64,
        context: None,
        chunk_bytes: data[start..end].to_vec(),
    }
}

fn expect<T: PartialEq + fmt::Debug + ?Sized>(what: &str, got: &T, want: &T) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}
