//! `wascc:blobstore` on a temporary directory, downloads collected by a
//! test dispatcher standing in for the actor.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use waxosuit_cap_blobstore_fs::{FsBlobstore, MAX_CHUNK_BYTES};
use waxosuit_codec::blobstore::*;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
    encode,
};

const ACTOR: &str = "MACTOR";

/// Stands in for the actor: decodes every `ReceiveChunk` and forwards it,
/// recording how many calls were ever in flight at once.
struct Collector {
    chunks: mpsc::UnboundedSender<FileChunk>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[async_trait]
impl ActorDispatcher for Collector {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        assert_eq!(actor, ACTOR);
        assert_eq!(operation, OP_RECEIVE_CHUNK);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Give a provider that did not wait for us the chance to overlap.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let chunk: FileChunk = waxosuit_codec::deserialize(&payload).unwrap();
        self.chunks.send(chunk).unwrap();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(Vec::new())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    store: FsBlobstore,
    collector: Arc<Collector>,
    chunks: mpsc::UnboundedReceiver<FileChunk>,
}

impl Fixture {
    async fn new(values: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let collector = Arc::new(Collector {
            chunks: tx,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let store = FsBlobstore::new();
        store.start(collector.clone()).await.unwrap();
        let fixture = Fixture {
            dir,
            store,
            collector,
            chunks: rx,
        };
        let root = fixture.root();
        let mut all = vec![("ROOT", root.to_str().unwrap())];
        all.extend_from_slice(values);
        fixture.bind(ACTOR, &all).await.unwrap();
        fixture
    }

    fn root(&self) -> PathBuf {
        // Not created yet: binding must create it.
        self.dir.path().join("root")
    }

    async fn bind(&self, actor: &str, values: &[(&str, &str)]) -> Result<(), ProviderError> {
        self.store
            .bind_actor(BindRequest {
                actor: actor.into(),
                binding: "default".into(),
                values: values
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await
    }

    async fn call_as<T: Serialize>(
        &self,
        actor: &str,
        operation: &str,
        payload: &T,
    ) -> Result<Vec<u8>, ProviderError> {
        self.store
            .handle_call(ProviderCall {
                actor: actor.into(),
                binding: "default".into(),
                operation: operation.into(),
                payload: encode(CAPABILITY_ID, payload).unwrap(),
            })
            .await
    }

    async fn call<T: Serialize>(
        &self,
        operation: &str,
        payload: &T,
    ) -> Result<Vec<u8>, ProviderError> {
        self.call_as(ACTOR, operation, payload).await
    }

    async fn create(&self, container: &str) -> Result<Vec<u8>, ProviderError> {
        self.call(OP_CREATE_CONTAINER, &container_(container)).await
    }

    async fn list(&self, container: &str) -> Result<Vec<(String, u64)>, ProviderError> {
        let reply = self.call(OP_LIST_OBJECTS, &container_(container)).await?;
        let list: BlobList = waxosuit_codec::deserialize(&reply).unwrap();
        Ok(list
            .blobs
            .into_iter()
            .map(|b| {
                assert_eq!(b.container, container);
                (b.id, b.byte_size)
            })
            .collect())
    }

    async fn info(&self, container: &str, id: &str) -> Result<u64, ProviderError> {
        let reply = self.call(OP_GET_OBJECT_INFO, &blob(container, id)).await?;
        let blob: Blob = waxosuit_codec::deserialize(&reply).unwrap();
        assert_eq!((blob.container.as_str(), blob.id.as_str()), (container, id));
        Ok(blob.byte_size)
    }

    async fn start_upload(
        &self,
        container: &str,
        id: &str,
        total: u64,
        chunk_size: u64,
    ) -> Result<Vec<u8>, ProviderError> {
        let header = FileChunk {
            sequence_no: 0,
            container: container.into(),
            id: id.into(),
            total_bytes: total,
            chunk_size,
            context: None,
            chunk_bytes: Vec::new(),
        };
        self.call(OP_START_UPLOAD, &header).await
    }

    async fn chunk(
        &self,
        container: &str,
        id: &str,
        data: &[u8],
        chunk_size: usize,
        sequence_no: usize,
    ) -> Result<Vec<u8>, ProviderError> {
        let start = sequence_no * chunk_size;
        let end = (start + chunk_size).min(data.len());
        let chunk = FileChunk {
            sequence_no: sequence_no as u64,
            container: container.into(),
            id: id.into(),
            total_bytes: data.len() as u64,
            chunk_size: chunk_size as u64,
            context: None,
            chunk_bytes: data[start..end].to_vec(),
        };
        self.call(OP_UPLOAD_CHUNK, &chunk).await
    }

    async fn upload(&self, container: &str, id: &str, data: &[u8], chunk_size: usize) {
        self.start_upload(container, id, data.len() as u64, chunk_size as u64)
            .await
            .unwrap();
        for seq in 0..data.len().div_ceil(chunk_size) {
            self.chunk(container, id, data, chunk_size, seq)
                .await
                .unwrap();
        }
    }

    /// Starts a download and collects its chunks, with a bounded wait.
    async fn download(
        &mut self,
        container: &str,
        id: &str,
        chunk_size: u64,
    ) -> (Transfer, Vec<FileChunk>) {
        let request = StreamRequest {
            id: id.into(),
            container: container.into(),
            chunk_size,
            context: Some("ctx-42".into()),
        };
        let reply = self.call(OP_START_DOWNLOAD, &request).await.unwrap();
        let transfer: Transfer = waxosuit_codec::deserialize(&reply).unwrap();
        let mut chunks = Vec::new();
        for _ in 0..transfer.total_chunks {
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.chunks.recv())
                .await
                .expect("a chunk within 30 s")
                .expect("the collector is alive");
            chunks.push(chunk);
        }
        (transfer, chunks)
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

/// Pseudo-random bytes (xorshift64*), seeded from the clock so every run
/// uses different data.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every path under `dir`, relative to it, without following links.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.insert(path.strip_prefix(base).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn backend(err: &ProviderError) -> &str {
    match err {
        ProviderError::Backend { message, .. } => message,
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

fn bad_payload(err: &ProviderError) -> &str {
    match err {
        ProviderError::BadPayload { reason, .. } => reason,
        other => panic!("expected a BadPayload error, got {other:?}"),
    }
}

#[tokio::test]
async fn containers_and_objects_lifecycle() {
    let fx = Fixture::new(&[]).await;
    assert!(fx.root().is_dir(), "binding creates ROOT");

    let reply = fx.create("docs").await.unwrap();
    let created: Container = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(created.id, "docs");
    assert!(fx.root().join("docs").is_dir());
    fx.create("docs").await.unwrap();
    assert_eq!(fx.list("docs").await.unwrap(), vec![]);

    fx.upload("docs", "b.bin", &[7; 10], 4).await;
    fx.upload("docs", "a.txt", b"hello", 2).await;
    assert_eq!(
        fx.list("docs").await.unwrap(),
        vec![("a.txt".to_string(), 5), ("b.bin".to_string(), 10)]
    );
    assert_eq!(fx.info("docs", "b.bin").await.unwrap(), 10);
    assert_eq!(
        std::fs::read(fx.root().join("docs/a.txt")).unwrap(),
        b"hello"
    );

    // Uploading again replaces the object whole.
    fx.upload("docs", "a.txt", b"bye", 2).await;
    assert_eq!(fx.info("docs", "a.txt").await.unwrap(), 3);

    fx.call(OP_REMOVE_OBJECT, &blob("docs", "a.txt"))
        .await
        .unwrap();
    assert_eq!(
        fx.list("docs").await.unwrap(),
        vec![("b.bin".to_string(), 10)]
    );
    let err = fx.info("docs", "a.txt").await.unwrap_err();
    assert!(backend(&err).contains("`a.txt` does not exist"), "{err}");

    // Subdirectories made by someone else are not objects.
    std::fs::create_dir(fx.root().join("docs/sub")).unwrap();
    assert_eq!(fx.list("docs").await.unwrap().len(), 1);

    fx.call(OP_REMOVE_CONTAINER, &container_("docs"))
        .await
        .unwrap();
    assert!(!fx.root().join("docs").exists());
    let err = fx.list("docs").await.unwrap_err();
    assert!(
        backend(&err).contains("container `docs` does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn ten_mib_round_trip_in_chunks_is_byte_exact() {
    let mut fx = Fixture::new(&[]).await;
    fx.create("big").await.unwrap();
    let data = random_bytes(10 * 1024 * 1024);
    let chunk_size = 1_000_000; // 11 chunks, the last one partial
    let chunks = data.len().div_ceil(chunk_size);
    fx.start_upload("big", "blob", data.len() as u64, chunk_size as u64)
        .await
        .unwrap();
    // Out of order, with one chunk retried; the last one sent completes it.
    let mut order: Vec<usize> = (0..chunks).rev().collect();
    order.insert(3, order[1]);
    let (last, rest) = order.split_last().unwrap();
    for seq in rest {
        fx.chunk("big", "blob", &data, chunk_size, *seq)
            .await
            .unwrap();
        // Readers never see the partial object.
        assert!(fx.info("big", "blob").await.is_err());
        assert_eq!(fx.list("big").await.unwrap(), vec![]);
    }
    fx.chunk("big", "blob", &data, chunk_size, *last)
        .await
        .unwrap();
    assert_eq!(fx.info("big", "blob").await.unwrap(), data.len() as u64);
    assert_eq!(tree(&fx.root()), set(&["big", "big/blob"]), "no temp left");

    let (transfer, received) = fx.download("big", "blob", 3 * 1024 * 1024).await;
    assert_eq!(
        transfer,
        Transfer {
            blob_id: "blob".into(),
            container: "big".into(),
            chunk_size: 3 * 1024 * 1024,
            total_size: data.len() as u64,
            total_chunks: 4,
            context: Some("ctx-42".into()),
        }
    );
    let mut joined = Vec::with_capacity(data.len());
    for (i, chunk) in received.iter().enumerate() {
        assert_eq!(chunk.sequence_no, i as u64, "in order");
        assert_eq!(chunk.context.as_deref(), Some("ctx-42"));
        assert_eq!(chunk.total_bytes, data.len() as u64);
        joined.extend_from_slice(&chunk.chunk_bytes);
    }
    assert_eq!(Sha256::digest(&joined), Sha256::digest(&data));
    assert!(joined == data);
    assert_eq!(fx.collector.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn traversal_names_are_refused_and_nothing_is_written_outside_root() {
    let fx = Fixture::new(&[]).await;
    fx.create("docs").await.unwrap();
    let bad = [
        "../x",
        "../../etc",
        "/abs",
        "/tmp/x",
        "a/b",
        "..",
        ".",
        "",
        "a\\b",
        "x\0",
    ];
    for name in bad {
        let err = fx.create(name).await.unwrap_err();
        assert!(
            bad_payload(&err).starts_with(&format!("container id `{name}`")),
            "{name:?}: {err}"
        );
        for op in [OP_LIST_OBJECTS, OP_REMOVE_CONTAINER] {
            let err = fx.call(op, &container_(name)).await.unwrap_err();
            bad_payload(&err);
        }
        let err = fx.start_upload("docs", name, 1, 1).await.unwrap_err();
        assert!(
            bad_payload(&err).starts_with(&format!("object id `{name}`")),
            "{name:?}: {err}"
        );
        let err = fx.start_upload(name, "ok", 1, 1).await.unwrap_err();
        bad_payload(&err);
        for op in [OP_GET_OBJECT_INFO, OP_REMOVE_OBJECT] {
            let err = fx.call(op, &blob("docs", name)).await.unwrap_err();
            bad_payload(&err);
            let err = fx.call(op, &blob(name, "ok")).await.unwrap_err();
            bad_payload(&err);
        }
        let request = StreamRequest {
            id: name.into(),
            container: "docs".into(),
            chunk_size: 1,
            context: None,
        };
        bad_payload(&fx.call(OP_START_DOWNLOAD, &request).await.unwrap_err());
        let chunk = FileChunk {
            container: "docs".into(),
            id: name.into(),
            total_bytes: 1,
            chunk_size: 1,
            chunk_bytes: vec![1],
            ..FileChunk::default()
        };
        // Never started, so there is nothing to write to.
        fx.call(OP_UPLOAD_CHUNK, &chunk).await.unwrap_err();
    }
    // The reserved prefix cannot be used to reach temporary files.
    bad_payload(&fx.create(".waxosuit-upload-x").await.unwrap_err());

    assert_eq!(tree(fx.dir.path()), set(&["root", "root/docs"]));
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_leaving_root_are_refused() {
    let mut fx = Fixture::new(&[]).await;
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"top secret").unwrap();
    fx.create("docs").await.unwrap();
    std::os::unix::fs::symlink(&outside, fx.root().join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), fx.root().join("docs/secret")).unwrap();

    // A container that is a link out of ROOT.
    let err = fx.list("escape").await.unwrap_err();
    assert!(
        backend(&err).contains("resolves outside this binding's ROOT"),
        "{err}"
    );
    backend(&fx.create("escape").await.unwrap_err());
    backend(
        &fx.call(OP_REMOVE_CONTAINER, &container_("escape"))
            .await
            .unwrap_err(),
    );
    backend(&fx.start_upload("escape", "new", 1, 1).await.unwrap_err());
    backend(&fx.info("escape", "secret.txt").await.unwrap_err());

    // An object that is a link out of ROOT.
    let err = fx.info("docs", "secret").await.unwrap_err();
    assert!(
        backend(&err).contains("`docs/secret` resolves outside"),
        "{err}"
    );
    backend(
        &fx.call(OP_REMOVE_OBJECT, &blob("docs", "secret"))
            .await
            .unwrap_err(),
    );
    backend(&fx.start_upload("docs", "secret", 1, 1).await.unwrap_err());
    let request = StreamRequest {
        id: "secret".into(),
        container: "docs".into(),
        chunk_size: 1024,
        context: None,
    };
    backend(&fx.call(OP_START_DOWNLOAD, &request).await.unwrap_err());
    assert_eq!(
        fx.list("docs").await.unwrap(),
        vec![],
        "hidden from listings"
    );

    // Nothing outside was touched.
    assert_eq!(
        std::fs::read(outside.join("secret.txt")).unwrap(),
        b"top secret"
    );
    assert_eq!(tree(&outside), set(&["secret.txt"]));

    // Links that stay inside ROOT are followed.
    fx.upload("docs", "real", b"inside", 3).await;
    std::os::unix::fs::symlink(fx.root().join("docs/real"), fx.root().join("docs/alias")).unwrap();
    assert_eq!(fx.info("docs", "alias").await.unwrap(), 6);
    let (_, chunks) = fx.download("docs", "alias", 4).await;
    assert_eq!(chunks.len(), 2);
}

#[tokio::test]
async fn interrupted_uploads_leave_no_visible_object() {
    let fx = Fixture::new(&[]).await;
    fx.create("docs").await.unwrap();
    let data = b"abcdefghij";
    fx.start_upload("docs", "obj", 10, 4).await.unwrap();
    fx.chunk("docs", "obj", data, 4, 0).await.unwrap();
    fx.chunk("docs", "obj", data, 4, 2).await.unwrap();
    assert_eq!(fx.list("docs").await.unwrap(), vec![]);
    backend(&fx.info("docs", "obj").await.unwrap_err());
    let files = tree(&fx.root().join("docs"));
    assert_eq!(files.len(), 1);
    assert!(
        files.iter().all(|f| f.starts_with(".waxosuit-upload-")),
        "{files:?}"
    );

    // A new StartUpload abandons the old one and deletes its temporary file.
    fx.start_upload("docs", "obj", 10, 5).await.unwrap();
    let replaced = tree(&fx.root().join("docs"));
    assert_eq!(replaced.len(), 1);
    assert_ne!(replaced, files);
    // The abandoned upload's chunk size no longer applies.
    bad_payload(&fx.chunk("docs", "obj", data, 4, 0).await.unwrap_err());

    // Removing the binding deletes incomplete uploads too.
    fx.store.remove_actor(ACTOR, "default").await.unwrap();
    assert_eq!(tree(&fx.root()), set(&["docs"]));
    let err = fx.list("docs").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err}");
}

#[tokio::test]
async fn chunks_must_fit_the_announced_upload() {
    let fx = Fixture::new(&[("MAX_OBJECT_BYTES", "1000")]).await;
    fx.create("docs").await.unwrap();

    let err = fx.start_upload("docs", "big", 1001, 100).await.unwrap_err();
    assert!(bad_payload(&err).contains("MAX_OBJECT_BYTES"), "{err}");
    let err = fx
        .start_upload("docs", "big", 10, MAX_CHUNK_BYTES + 1)
        .await
        .unwrap_err();
    assert!(bad_payload(&err).contains("chunkSize"), "{err}");
    bad_payload(&fx.start_upload("docs", "zero", 10, 0).await.unwrap_err());

    let err = fx.chunk("docs", "never", b"x", 1, 0).await.unwrap_err();
    assert!(backend(&err).contains("send StartUpload first"), "{err}");

    let data = [1u8; 10];
    fx.start_upload("docs", "obj", 10, 4).await.unwrap();
    let past_end = FileChunk {
        sequence_no: 3,
        container: "docs".into(),
        id: "obj".into(),
        total_bytes: 10,
        chunk_size: 4,
        context: None,
        chunk_bytes: vec![1; 2],
    };
    let err = fx.call(OP_UPLOAD_CHUNK, &past_end).await.unwrap_err();
    assert!(bad_payload(&err).contains("past the end"), "{err}");
    let short = FileChunk {
        sequence_no: 0,
        container: "docs".into(),
        id: "obj".into(),
        total_bytes: 10,
        chunk_size: 4,
        context: None,
        chunk_bytes: vec![1; 3],
    };
    let err = fx.call(OP_UPLOAD_CHUNK, &short).await.unwrap_err();
    assert!(bad_payload(&err).contains("must hold 4"), "{err}");
    for seq in 0..3 {
        fx.chunk("docs", "obj", &data, 4, seq).await.unwrap();
    }
    assert_eq!(fx.info("docs", "obj").await.unwrap(), 10);

    // An empty object completes at StartUpload and downloads as no chunks.
    fx.start_upload("docs", "empty", 0, 0).await.unwrap();
    assert_eq!(fx.info("docs", "empty").await.unwrap(), 0);
}

#[tokio::test]
async fn download_chunk_sizes_are_chosen_within_limits() {
    let mut fx = Fixture::new(&[]).await;
    fx.create("docs").await.unwrap();
    fx.upload("docs", "obj", &[9; 100], 100).await;
    fx.start_upload("docs", "empty", 0, 0).await.unwrap();

    let (transfer, chunks) = fx.download("docs", "obj", 0).await;
    assert_eq!(
        (transfer.chunk_size, transfer.total_chunks),
        (1024 * 1024, 1)
    );
    assert_eq!(chunks[0].chunk_bytes, vec![9; 100]);
    let (transfer, _) = fx.download("docs", "obj", u64::MAX).await;
    assert_eq!(transfer.chunk_size, MAX_CHUNK_BYTES);
    let (transfer, chunks) = fx.download("docs", "empty", 10).await;
    assert_eq!((transfer.total_size, transfer.total_chunks), (0, 0));
    assert!(chunks.is_empty());

    // An actor taking 4 MiB: a 4 MiB chunk with its names and numbers
    // would not fit in its ReceiveChunk call, so the chunk is lowered until
    // each call fits.
    let mut small = Fixture::new(&[("__waxosuit_max_payload", "4194304")]).await;
    small.create("docs").await.unwrap();
    let big = random_bytes(5 * 1024 * 1024);
    small.upload("docs", "big", &big, 1024 * 1024).await;
    let (transfer, chunks) = small.download("docs", "big", u64::MAX).await;
    assert!(transfer.chunk_size < MAX_CHUNK_BYTES, "{transfer:?}");
    assert_eq!(chunks.len() as u64, transfer.total_chunks);
    for chunk in &chunks {
        let encoded = waxosuit_codec::serialize(chunk).unwrap();
        assert!(encoded.len() <= 4 * 1024 * 1024, "{} bytes", encoded.len());
    }
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.chunk_bytes.clone()).collect();
    assert_eq!(joined, big);

    let request = StreamRequest {
        id: "missing".into(),
        container: "docs".into(),
        chunk_size: 10,
        context: None,
    };
    let err = fx.call(OP_START_DOWNLOAD, &request).await.unwrap_err();
    assert!(backend(&err).contains("does not exist"), "{err}");
}

#[tokio::test]
async fn bindings_are_isolated_by_root() {
    let fx = Fixture::new(&[]).await;
    let other_root = fx.dir.path().join("other");
    fx.bind("MOTHER", &[("ROOT", other_root.to_str().unwrap())])
        .await
        .unwrap();
    fx.create("shared-name").await.unwrap();
    fx.upload("shared-name", "mine", b"data", 4).await;

    let err = fx
        .call_as("MOTHER", OP_LIST_OBJECTS, &container_("shared-name"))
        .await
        .unwrap_err();
    assert!(backend(&err).contains("does not exist"), "{err}");
    assert_eq!(tree(&other_root), BTreeSet::new());

    fx.call_as("MOTHER", OP_CREATE_CONTAINER, &container_("shared-name"))
        .await
        .unwrap();
    fx.call_as("MOTHER", OP_REMOVE_CONTAINER, &container_("shared-name"))
        .await
        .unwrap();
    assert_eq!(fx.list("shared-name").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_root_inside_or_around_another_bindings_root_is_refused() {
    let fx = Fixture::new(&[]).await;
    fx.create("photos").await.unwrap();
    fx.upload("photos", "mine", b"data", 4).await;
    // Inside: ACTOR's container `photos` would be this binding's store.
    let inside = fx.root().join("photos");
    // Around: this binding's container `root` would be ACTOR's store.
    let around = fx.dir.path().to_path_buf();
    for root in [&inside, &around] {
        let err = fx
            .bind("MOTHER", &[("ROOT", root.to_str().unwrap())])
            .await
            .unwrap_err();
        match &err {
            ProviderError::Config { key, reason, .. } => {
                assert_eq!(key, "ROOT");
                assert!(
                    reason.contains(&format!("actor {ACTOR}'s ROOT")),
                    "{reason}"
                );
                assert!(reason.contains("a directory of its own"), "{reason}");
            }
            other => panic!("expected a Config error, got {other:?}"),
        }
    }
    // The very same ROOT is sharing, and allowed.
    fx.bind("MOTHER", &[("ROOT", fx.root().to_str().unwrap())])
        .await
        .unwrap();
    let shared = fx
        .call_as("MOTHER", OP_LIST_OBJECTS, &container_("photos"))
        .await
        .unwrap();
    assert!(!shared.is_empty());
    // Nothing of ACTOR's was touched by the refusals.
    assert_eq!(fx.list("photos").await.unwrap().len(), 1);
}

#[tokio::test]
async fn configuration_and_binding_errors() {
    let store = FsBlobstore::new();
    let bind = |values: HashMap<String, String>| {
        store.bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: "default".into(),
            values,
        })
    };
    let err = bind(HashMap::new()).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "ROOT"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = bind(HashMap::from([("ROOT".into(), file.display().to_string())]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "ROOT"),
        "{err}"
    );
    let err = bind(HashMap::from([
        ("ROOT".into(), dir.path().display().to_string()),
        ("MAX_OBJECT_BYTES".into(), "huge".into()),
    ]))
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "MAX_OBJECT_BYTES"),
        "{err}"
    );

    let unbound = ProviderCall {
        actor: ACTOR.into(),
        binding: "default".into(),
        operation: OP_LIST_OBJECTS.into(),
        payload: encode(CAPABILITY_ID, &container_("x")).unwrap(),
    };
    let err = store.handle_call(unbound.clone()).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err}");

    // Bound but never started: downloads have no way to reach the actor.
    bind(HashMap::from([(
        "ROOT".into(),
        dir.path().display().to_string(),
    )]))
    .await
    .unwrap();
    std::fs::create_dir(dir.path().join("c")).unwrap();
    std::fs::write(dir.path().join("c/o"), b"x").unwrap();
    let download = ProviderCall {
        operation: OP_START_DOWNLOAD.into(),
        payload: encode(
            CAPABILITY_ID,
            &StreamRequest {
                id: "o".into(),
                container: "c".into(),
                chunk_size: 1,
                context: None,
            },
        )
        .unwrap(),
        ..unbound.clone()
    };
    let err = store.handle_call(download).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err}");

    let bogus = ProviderCall {
        operation: "Teleport".into(),
        ..unbound
    };
    let err = store.handle_call(bogus).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::UnknownOperation { .. }),
        "{err}"
    );
}

/// The contract's suite, each binding on a `ROOT` of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    use waxosuit_cap_blobstore::conformance::{self, ProviderSubject};

    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobstore::new();
    let subject = ProviderSubject::start(&store, |binding| {
        let root = dir.path().join(binding);
        vec![("ROOT".to_string(), root.display().to_string())]
    })
    .await
    .unwrap();
    let report = conformance::run(&subject).await;
    report.assert_passed();
    assert!(report.passed.len() >= 15, "{report}");
    // Downloads were sent one chunk at a time.
    assert!(!subject.recorder().chunks().is_empty());
    assert_eq!(subject.recorder().most_in_progress(), 1);
    // Removing the bindings deletes the uploads the suite left unfinished.
    for binding in [conformance::BINDING, conformance::OTHER_BINDING] {
        store
            .remove_actor(conformance::ACTOR, binding)
            .await
            .unwrap();
    }
    assert!(
        tree(dir.path())
            .iter()
            .all(|path| !path.contains(".waxosuit-upload-")),
        "{:?}",
        tree(dir.path())
    );
}

/// Two bindings made at once, one ROOT inside the other: the check and the
/// binding it allows are one step, so one of them is refused, whichever
/// counts its ROOT first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_roots_bound_at_the_same_time_are_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("data");
    let inner = outer.join("x");
    // Something to count, so that binding takes a while.
    for c in 0..20 {
        let container = outer.join(format!("c{c}"));
        std::fs::create_dir_all(&container).unwrap();
        for o in 0..100 {
            std::fs::write(container.join(format!("o{o}")), b"x").unwrap();
        }
    }
    std::fs::create_dir_all(&inner).unwrap();
    for round in 0..5 {
        let store = FsBlobstore::new();
        let bind = |actor: &str, root: &Path| {
            store.bind_actor(BindRequest {
                actor: actor.into(),
                binding: "default".into(),
                values: [("ROOT".to_string(), root.display().to_string())].into(),
            })
        };
        let (a, b) = tokio::join!(bind("MA", &outer), bind("MB", &inner));
        assert!(
            a.is_ok() != b.is_ok(),
            "round {round}: exactly one of the two may be bound: {a:?}, {b:?}"
        );
    }
}
