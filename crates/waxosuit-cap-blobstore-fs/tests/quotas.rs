//! Hostile use of `wascc:blobstore` against the per-binding quotas: floods
//! of concurrent uploads and downloads from one actor, measured in open
//! file descriptors, while another actor keeps working. A test binary of
//! its own, so that descriptor counts are not disturbed by other tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use waxosuit_cap_blobstore_fs::{
    DEFAULT_MAX_CONCURRENT_DOWNLOADS, DEFAULT_MAX_CONCURRENT_UPLOADS, FsBlobstore,
};
use waxosuit_codec::blobstore::*;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
    encode,
};

const ALICE: &str = "MALICE";
const BOB: &str = "MBOB";
/// Descriptors the runtime, the blocking pool and the test harness may
/// open or close while a test runs, on top of what the provider holds.
const FD_SLACK: usize = 32;

/// Held by every test here: tests run in parallel threads of one process,
/// and one test's files would count against another's descriptor bound.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Stands in for the actors: ALICE's chunks wait at a gate, BOB's pass.
struct Actors {
    gate: Semaphore,
    chunks: mpsc::UnboundedSender<(String, FileChunk)>,
}

#[async_trait]
impl ActorDispatcher for Actors {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        assert_eq!(operation, OP_RECEIVE_CHUNK);
        if actor == ALICE {
            let _permit = self.gate.acquire().await.unwrap();
        }
        let chunk: FileChunk = waxosuit_codec::deserialize(&payload).unwrap();
        let _ = self.chunks.send((actor.to_string(), chunk));
        Ok(Vec::new())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<FsBlobstore>,
    actors: Arc<Actors>,
    chunks: mpsc::UnboundedReceiver<(String, FileChunk)>,
}

impl Fixture {
    /// ALICE bound with `values` (plus her ROOT), BOB with the defaults.
    async fn new(values: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (tx, chunks) = mpsc::unbounded_channel();
        let actors = Arc::new(Actors {
            gate: Semaphore::new(0),
            chunks: tx,
        });
        let store = Arc::new(FsBlobstore::new());
        store.start(actors.clone()).await.unwrap();
        let fx = Fixture {
            dir,
            store,
            actors,
            chunks,
        };
        fx.bind(ALICE, values).await.unwrap();
        fx.bind(BOB, &[]).await.unwrap();
        for actor in [ALICE, BOB] {
            call(
                &fx.store,
                actor,
                OP_CREATE_CONTAINER,
                &Container { id: "c".into() },
            )
            .await
            .unwrap();
        }
        fx
    }

    fn root(&self, actor: &str) -> PathBuf {
        self.dir.path().join(actor)
    }

    async fn bind(&self, actor: &str, values: &[(&str, &str)]) -> Result<(), ProviderError> {
        let mut map: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("ROOT".into(), self.root(actor).display().to_string());
        self.store
            .bind_actor(BindRequest {
                actor: actor.into(),
                binding: "default".into(),
                values: map,
            })
            .await
    }
}

async fn call<T: Serialize>(
    store: &FsBlobstore,
    actor: &str,
    operation: &str,
    payload: &T,
) -> Result<Vec<u8>, ProviderError> {
    store
        .handle_call(ProviderCall {
            actor: actor.into(),
            binding: "default".into(),
            operation: operation.into(),
            payload: encode(CAPABILITY_ID, payload).unwrap(),
        })
        .await
}

async fn start_upload(
    store: &FsBlobstore,
    actor: &str,
    id: &str,
    total: u64,
) -> Result<Vec<u8>, ProviderError> {
    let header = FileChunk {
        container: "c".into(),
        id: id.into(),
        total_bytes: total,
        chunk_size: total.max(1),
        ..FileChunk::default()
    };
    call(store, actor, OP_START_UPLOAD, &header).await
}

/// Sends the one chunk of an upload started with [`start_upload`].
async fn finish_upload(
    store: &FsBlobstore,
    actor: &str,
    id: &str,
    data: &[u8],
) -> Result<Vec<u8>, ProviderError> {
    let chunk = FileChunk {
        container: "c".into(),
        id: id.into(),
        total_bytes: data.len() as u64,
        chunk_size: data.len() as u64,
        chunk_bytes: data.to_vec(),
        ..FileChunk::default()
    };
    call(store, actor, OP_UPLOAD_CHUNK, &chunk).await
}

async fn upload(store: &FsBlobstore, actor: &str, id: &str, data: &[u8]) {
    start_upload(store, actor, id, data.len() as u64)
        .await
        .unwrap();
    finish_upload(store, actor, id, data).await.unwrap();
}

async fn start_download(
    store: &FsBlobstore,
    actor: &str,
    id: &str,
) -> Result<Vec<u8>, ProviderError> {
    let request = StreamRequest {
        id: id.into(),
        container: "c".into(),
        chunk_size: 0,
        context: None,
    };
    call(store, actor, OP_START_DOWNLOAD, &request).await
}

/// Open descriptors of this process (Linux), or `None` elsewhere.
fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

fn temp_files(container: &Path) -> usize {
    std::fs::read_dir(container)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".waxosuit-upload-")
        })
        .count()
}

/// Asserts the error of a quota: it names the quota, the actor, the binding
/// and the value to raise.
#[track_caller]
fn assert_quota(result: Result<Vec<u8>, ProviderError>, quota: &str) {
    match result {
        Err(ProviderError::Backend { capid, message }) => {
            assert_eq!(capid, CAPABILITY_ID);
            for needle in [
                &format!("quota {quota} reached for actor {ALICE} (binding `default`)"),
                &format!("raise {quota} in this wascc:blobstore binding's values"),
            ] {
                assert!(message.contains(needle), "`{needle}` not in: {message}");
            }
        }
        other => panic!("expected the {quota} quota error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_uploads_stop_at_the_quota_and_hold_no_more_files() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[]).await;
    upload(&fx.store, ALICE, "kept", b"stored before the flood").await;
    let baseline = open_fds();

    let tasks: Vec<_> = (0..10_000)
        .map(|i| {
            let store = Arc::clone(&fx.store);
            tokio::spawn(async move { start_upload(&store, ALICE, &format!("obj-{i}"), 10).await })
        })
        .collect();
    let mut started = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => started.push(format!("obj-{i}")),
            refused => assert_quota(refused, "MAX_CONCURRENT_UPLOADS"),
        }
    }
    assert_eq!(started.len(), DEFAULT_MAX_CONCURRENT_UPLOADS);
    let container = fx.root(ALICE).join("c");
    assert_eq!(temp_files(&container), DEFAULT_MAX_CONCURRENT_UPLOADS);
    if let (Some(before), Some(now)) = (baseline, open_fds()) {
        println!(
            "10,000 concurrent uploads: {} accepted, {before} -> {now} descriptors open",
            started.len()
        );
        assert!(
            now <= before + DEFAULT_MAX_CONCURRENT_UPLOADS + FD_SLACK,
            "{now} descriptors open, {before} before the flood"
        );
    }

    // The other actor's binding is not affected.
    upload(&fx.store, BOB, "bobs", b"bob's data").await;
    assert_eq!(
        std::fs::read(fx.root(BOB).join("c/bobs")).unwrap(),
        b"bob's data"
    );
    // At the quota, one more fails; restarting one in progress does not
    // need a second place.
    assert_quota(
        start_upload(&fx.store, ALICE, "one-more", 10).await,
        "MAX_CONCURRENT_UPLOADS",
    );
    start_upload(&fx.store, ALICE, &started[0], 10)
        .await
        .unwrap();
    assert_eq!(temp_files(&container), DEFAULT_MAX_CONCURRENT_UPLOADS);
    // Completing one frees its place.
    finish_upload(&fx.store, ALICE, &started[1], b"0123456789")
        .await
        .unwrap();
    start_upload(&fx.store, ALICE, "one-more", 10)
        .await
        .unwrap();

    // Nothing stored was lost.
    assert_eq!(
        std::fs::read(container.join("kept")).unwrap(),
        b"stored before the flood"
    );
    assert_eq!(
        std::fs::read(container.join(&started[1])).unwrap(),
        b"0123456789"
    );
    // Removing the binding abandons the rest and frees every place.
    fx.store.remove_actor(ALICE, "default").await.unwrap();
    assert_eq!(temp_files(&container), 0);
    fx.bind(ALICE, &[]).await.unwrap();
    start_upload(&fx.store, ALICE, "after", 10).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_downloads_stop_at_the_quota_and_hold_no_more_files() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut fx = Fixture::new(&[]).await;
    upload(&fx.store, ALICE, "obj", b"abc").await;
    upload(&fx.store, BOB, "obj", b"bob").await;
    let baseline = open_fds();

    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let store = Arc::clone(&fx.store);
            tokio::spawn(async move { start_download(&store, ALICE, "obj").await })
        })
        .collect();
    let mut sending = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => sending += 1,
            refused => assert_quota(refused, "MAX_CONCURRENT_DOWNLOADS"),
        }
    }
    assert_eq!(sending, DEFAULT_MAX_CONCURRENT_DOWNLOADS);
    if let (Some(before), Some(now)) = (baseline, open_fds()) {
        println!(
            "10,000 concurrent downloads: {sending} accepted, {before} -> {now} descriptors open"
        );
        assert!(
            now <= before + DEFAULT_MAX_CONCURRENT_DOWNLOADS + FD_SLACK,
            "{now} descriptors open, {before} before the flood"
        );
    }

    // BOB downloads while ALICE's are stuck in her handler.
    start_download(&fx.store, BOB, "obj").await.unwrap();
    let (actor, chunk) = tokio::time::timeout(Duration::from_secs(30), fx.chunks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((actor.as_str(), &chunk.chunk_bytes[..]), (BOB, &b"bob"[..]));

    // Let ALICE's through: every accepted download arrives whole, and the
    // places come back.
    fx.actors.gate.add_permits(1_000_000);
    for _ in 0..sending {
        let (actor, chunk) = tokio::time::timeout(Duration::from_secs(30), fx.chunks.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (actor.as_str(), &chunk.chunk_bytes[..]),
            (ALICE, &b"abc"[..])
        );
    }
    let mut again = Err(ProviderError::backend(CAPABILITY_ID, "not tried"));
    for _ in 0..100 {
        // A task's place is given back as it ends, just after its last chunk.
        again = start_download(&fx.store, ALICE, "obj").await;
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    again.unwrap();
}

#[tokio::test]
async fn a_small_upload_quota_refuses_exactly_the_next_upload() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[("MAX_CONCURRENT_UPLOADS", "3")]).await;
    for id in ["a", "b", "c"] {
        start_upload(&fx.store, ALICE, id, 10).await.unwrap();
    }
    let err = start_upload(&fx.store, ALICE, "d", 10).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "wascc:blobstore backend error: quota MAX_CONCURRENT_UPLOADS reached for actor MALICE \
         (binding `default`): 3 uploads are in progress, the most it allows; wait for a transfer \
         in progress to finish, or raise MAX_CONCURRENT_UPLOADS in this wascc:blobstore \
         binding's values"
    );
    // No file was created for the refused upload.
    assert_eq!(temp_files(&fx.root(ALICE).join("c")), 3);
    // Raising the value (re-binding) applies at once.
    fx.bind(ALICE, &[("MAX_CONCURRENT_UPLOADS", "4")])
        .await
        .unwrap();
    for id in ["a", "b", "c", "d"] {
        start_upload(&fx.store, ALICE, id, 10).await.unwrap();
    }
}

#[tokio::test]
async fn bytes_in_flight_count_uploads_and_downloads() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[("MAX_BYTES_IN_FLIGHT", "1000")]).await;
    upload(&fx.store, ALICE, "small", &[1; 500]).await;

    start_upload(&fx.store, ALICE, "u1", 600).await.unwrap();
    assert_quota(
        start_upload(&fx.store, ALICE, "u2", 600).await,
        "MAX_BYTES_IN_FLIGHT",
    );
    let err = start_download(&fx.store, ALICE, "small").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("600 bytes are in flight and this transfer needs 500 more"),
        "{err}"
    );
    start_upload(&fx.store, ALICE, "u3", 400).await.unwrap();
    // An object larger than the whole allowance can never be sent.
    assert_quota(
        start_upload(&fx.store, ALICE, "huge", 1001).await,
        "MAX_BYTES_IN_FLIGHT",
    );
    // Completing an upload gives its bytes back.
    finish_upload(&fx.store, ALICE, "u1", &[2; 600])
        .await
        .unwrap();
    start_upload(&fx.store, ALICE, "u2", 600).await.unwrap();
    assert_eq!(
        std::fs::read(fx.root(ALICE).join("c/small")).unwrap(),
        vec![1; 500]
    );
}

#[tokio::test]
async fn quota_values_must_be_positive_whole_numbers() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[]).await;
    for (key, bad) in [
        ("MAX_CONCURRENT_UPLOADS", "0"),
        ("MAX_CONCURRENT_UPLOADS", "lots"),
        ("MAX_CONCURRENT_DOWNLOADS", "-1"),
        ("MAX_BYTES_IN_FLIGHT", "4GiB"),
        ("MAX_BYTES_IN_FLIGHT", "0"),
        ("MAX_CONTAINERS", "0"),
        ("MAX_OBJECTS", "many"),
        ("MAX_STORED_BYTES", "-5"),
    ] {
        let err = fx.bind("MCAROL", &[(key, bad)]).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Config { key: k, reason, .. }
                if k == key && reason.contains(&format!("`{bad}`")) && reason.contains("at least 1")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn an_upload_in_tiny_chunks_is_refused_before_anything_is_held() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[]).await;
    // 1 GiB in 1-byte chunks: which chunks arrived was a set growing by an
    // entry per chunk, outside every quota.
    let header = |chunk_size: u64| FileChunk {
        container: "c".into(),
        id: "tiny".into(),
        total_bytes: 1 << 30,
        chunk_size,
        ..FileChunk::default()
    };
    let err = call(&fx.store, ALICE, OP_START_UPLOAD, &header(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "1073741824 bytes in chunks of 1 is 1073741824 chunks, more than the 1048576 an \
             upload may have; use chunks of at least 1024 bytes"
        ),
        "{err}"
    );
    assert_eq!(temp_files(&fx.root(ALICE).join("c")), 0);
    // The size it names is accepted, and a small object in small chunks too.
    call(&fx.store, ALICE, OP_START_UPLOAD, &header(1024))
        .await
        .unwrap();
    let small = FileChunk {
        container: "c".into(),
        id: "small".into(),
        total_bytes: 3,
        chunk_size: 1,
        ..FileChunk::default()
    };
    call(&fx.store, ALICE, OP_START_UPLOAD, &small)
        .await
        .unwrap();
    for (i, byte) in b"abc".iter().enumerate() {
        let chunk = FileChunk {
            sequence_no: i as u64,
            chunk_bytes: vec![*byte],
            ..small.clone()
        };
        // The first chunk twice: counted once (the upload completes with
        // the last chunk, not early).
        for _ in 0..if i == 0 { 2 } else { 1 } {
            call(&fx.store, ALICE, OP_UPLOAD_CHUNK, &chunk)
                .await
                .unwrap();
        }
    }
    assert_eq!(
        std::fs::read(fx.root(ALICE).join("c").join("small")).unwrap(),
        b"abc"
    );
}

/// Files in ALICE's container `c` that are objects (not uploads).
fn objects_on_disk(fx: &Fixture) -> usize {
    std::fs::read_dir(fx.root(ALICE).join("c"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count()
}

#[tokio::test]
async fn a_flood_of_empty_objects_stops_at_max_objects_and_removing_one_frees_its_place() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[("MAX_OBJECTS", "5")]).await;
    // An empty object is complete at its StartUpload: one call, one file.
    let mut refused = 0;
    for n in 0..2_000 {
        match start_upload(&fx.store, ALICE, &format!("e{n}"), 0).await {
            Ok(_) => {}
            Err(err) => {
                refused += 1;
                if refused == 1 {
                    assert_quota(Err(err), "MAX_OBJECTS");
                }
            }
        }
    }
    assert_eq!(refused, 2_000 - 5);
    assert_eq!(objects_on_disk(&fx), 5, "files on disk: the quota, no more");
    assert_eq!(temp_files(&fx.root(ALICE).join("c")), 0);

    // Replacing an object at the quota works: it frees its own place.
    upload(&fx.store, ALICE, "e0", b"new bytes").await;
    assert_eq!(
        std::fs::read(fx.root(ALICE).join("c/e0")).unwrap(),
        b"new bytes"
    );
    // A sixth object cannot start; a removed object gives its place back,
    // and an upload in progress holds it from its StartUpload.
    assert_quota(start_upload(&fx.store, ALICE, "x", 3).await, "MAX_OBJECTS");
    call(&fx.store, ALICE, OP_REMOVE_OBJECT, &blob("e1"))
        .await
        .unwrap();
    start_upload(&fx.store, ALICE, "x", 3).await.unwrap();
    assert_quota(start_upload(&fx.store, ALICE, "y", 0).await, "MAX_OBJECTS");
    // An abandoned upload gives its place back too (restarting it as empty
    // publishes it, replacing the abandoned one).
    start_upload(&fx.store, ALICE, "x", 0).await.unwrap();
    assert_eq!(objects_on_disk(&fx), 5);

    // BOB's binding has its own count, at the default.
    for n in 0..20 {
        start_upload(&fx.store, BOB, &format!("b{n}"), 0)
            .await
            .unwrap();
    }
}

fn blob(id: &str) -> Blob {
    Blob {
        id: id.into(),
        container: "c".into(),
        byte_size: 0,
    }
}

#[tokio::test]
async fn stored_bytes_stop_at_max_stored_bytes_counting_replacements_and_removals() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[("MAX_STORED_BYTES", "100")]).await;
    upload(&fx.store, ALICE, "a", &[1; 60]).await;
    let err = start_upload(&fx.store, ALICE, "b", 50).await.unwrap_err();
    assert!(
        err.to_string().contains(
            "the binding's objects hold 60 bytes and this upload needs 50 more, over the 100 it \
             allows"
        ),
        "{err}"
    );
    assert_quota(Err(err), "MAX_STORED_BYTES");
    // Replacing `a` with 90 bytes fits: its 60 are freed.
    upload(&fx.store, ALICE, "a", &[2; 90]).await;
    assert_quota(
        start_upload(&fx.store, ALICE, "b", 11).await,
        "MAX_STORED_BYTES",
    );
    upload(&fx.store, ALICE, "b", &[3; 10]).await;
    // Removing the container frees what it held.
    call(
        &fx.store,
        ALICE,
        OP_REMOVE_CONTAINER,
        &Container { id: "c".into() },
    )
    .await
    .unwrap();
    call(
        &fx.store,
        ALICE,
        OP_CREATE_CONTAINER,
        &Container { id: "c".into() },
    )
    .await
    .unwrap();
    upload(&fx.store, ALICE, "c", &[4; 100]).await;
}

#[tokio::test]
async fn containers_stop_at_max_containers_and_existing_ones_still_answer() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The fixture made `c` already.
    let fx = Fixture::new(&[("MAX_CONTAINERS", "3")]).await;
    let create = |id: &str| Container { id: id.into() };
    for id in ["d", "e"] {
        call(&fx.store, ALICE, OP_CREATE_CONTAINER, &create(id))
            .await
            .unwrap();
    }
    let mut refused = 0;
    for n in 0..500 {
        if let Err(err) = call(
            &fx.store,
            ALICE,
            OP_CREATE_CONTAINER,
            &create(&format!("f{n}")),
        )
        .await
        {
            refused += 1;
            if refused == 1 {
                assert_quota(Err(err), "MAX_CONTAINERS");
            }
        }
    }
    assert_eq!(refused, 500);
    assert_eq!(std::fs::read_dir(fx.root(ALICE)).unwrap().count(), 3);
    // Creating one that exists is still no error at the quota.
    call(&fx.store, ALICE, OP_CREATE_CONTAINER, &create("c"))
        .await
        .unwrap();
    call(&fx.store, ALICE, OP_REMOVE_CONTAINER, &create("d"))
        .await
        .unwrap();
    call(&fx.store, ALICE, OP_CREATE_CONTAINER, &create("f"))
        .await
        .unwrap();
}

#[tokio::test]
async fn what_root_holds_already_counts_when_the_binding_is_made() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[]).await;
    // Objects left by an earlier run (or put there by the operator).
    for n in 0..4 {
        std::fs::write(fx.root(ALICE).join(format!("c/old{n}")), [0; 10]).unwrap();
    }
    fx.bind(ALICE, &[("MAX_OBJECTS", "5"), ("MAX_STORED_BYTES", "45")])
        .await
        .unwrap();
    assert_quota(
        start_upload(&fx.store, ALICE, "new", 6).await,
        "MAX_STORED_BYTES",
    );
    upload(&fx.store, ALICE, "new", &[1; 5]).await;
    assert_quota(
        start_upload(&fx.store, ALICE, "more", 0).await,
        "MAX_OBJECTS",
    );
}

#[tokio::test]
async fn a_listing_longer_than_the_actor_takes_is_refused_while_it_is_read() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(&[("__waxosuit_max_payload", "4096")]).await;
    // More objects than a 4 KiB reply can name (the operator's, say).
    let container = fx.root(ALICE).join("c");
    for n in 0..5_000 {
        std::fs::write(container.join(format!("object-{n:05}")), b"").unwrap();
    }
    let err = call(
        &fx.store,
        ALICE,
        OP_LIST_OBJECTS,
        &Container { id: "c".into() },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "wascc:blobstore backend error: the listing of container `c` would be more than 4096 \
         bytes, the most the actor takes in one reply; it holds more objects than one reply can \
         carry: spread them over more containers, or raise the actor's max payload"
    );
    // A listing that fits is whole, and within the limit once encoded.
    for n in 0..5_000 {
        if n >= 20 {
            std::fs::remove_file(container.join(format!("object-{n:05}"))).unwrap();
        }
    }
    let reply = call(
        &fx.store,
        ALICE,
        OP_LIST_OBJECTS,
        &Container { id: "c".into() },
    )
    .await
    .unwrap();
    let list: BlobList = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(list.blobs.len(), 20);
    assert!(reply.len() <= 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replacements_and_removals_of_one_object_keep_the_count_exact() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = Arc::new(Fixture::new(&[("MAX_OBJECTS", "3"), ("MAX_STORED_BYTES", "100")]).await);
    // Rounds of four empty uploads of one id and two removals of it, all at
    // once: each replacement and removal reads the size it frees, and two
    // of them must never both free the same object.
    for _ in 0..100 {
        let mut round = tokio::task::JoinSet::new();
        for n in 0..6 {
            let fx = Arc::clone(&fx);
            round.spawn(async move {
                if n % 3 == 2 {
                    let _ = call(&fx.store, ALICE, OP_REMOVE_OBJECT, &blob("same")).await;
                } else {
                    let _ = start_upload(&fx.store, ALICE, "same", 0).await;
                }
            });
        }
        while round.join_next().await.is_some() {}
    }
    let _ = call(&fx.store, ALICE, OP_REMOVE_OBJECT, &blob("same")).await;
    assert_eq!(objects_on_disk(&fx), 0);
    // Nothing is stored: exactly three objects and 100 bytes fit, no more.
    for id in ["a", "b"] {
        upload(&fx.store, ALICE, id, &[1; 30]).await;
    }
    upload(&fx.store, ALICE, "c", &[1; 40]).await;
    assert_quota(start_upload(&fx.store, ALICE, "d", 0).await, "MAX_OBJECTS");
    assert_quota(
        start_upload(&fx.store, ALICE, "a", 31).await,
        "MAX_STORED_BYTES",
    );
}
