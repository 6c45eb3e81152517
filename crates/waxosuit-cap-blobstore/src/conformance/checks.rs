//! The checks of the suite, one function each; [`run`](super::run) lists
//! them.

use waxosuit_codec::blobstore::{
    Container, FileChunk, OP_CREATE_CONTAINER, OP_GET_OBJECT_INFO, OP_LIST_OBJECTS,
    OP_REMOVE_CONTAINER, OP_REMOVE_OBJECT, OP_START_DOWNLOAD, OP_START_UPLOAD, OP_UPLOAD_CHUNK,
    StreamRequest, Transfer,
};

use super::{
    BINDING, Client, OTHER_BINDING, Outcome, Refusal, Subject, blob, container_, expect, header,
    piece,
};
use crate::{DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES};

/// Ten bytes that differ from one another, so a chunk read from the wrong
/// place shows.
const DATA: &[u8] = b"0123456789";

pub(super) async fn containers(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-life").await?;
    s.create("c-life")
        .await
        .map_err(|e| format!("creating an existing container: {e}"))?;
    expect(
        "a new container's objects",
        &s.list("c-life").await?,
        &vec![],
    )?;
    s.done(OP_REMOVE_CONTAINER, &container_("c-life")).await?;
    for op in [OP_LIST_OBJECTS, OP_REMOVE_CONTAINER] {
        s.refused(
            op,
            &container_("c-life"),
            Refusal::Backend,
            "container `c-life` does not exist",
        )
        .await?;
    }
    s.refused(
        OP_GET_OBJECT_INFO,
        &blob("c-never", "o"),
        Refusal::Backend,
        "container `c-never` does not exist",
    )
    .await
}

pub(super) async fn upload_in_chunks(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-up").await?;
    s.start_upload("c-up", "obj", 10, 4).await?;
    // Out of order, one chunk retried; the last one sent completes it.
    for seq in [2, 0, 0] {
        s.chunk("c-up", "obj", DATA, 4, seq).await?;
        s.refused(
            OP_GET_OBJECT_INFO,
            &blob("c-up", "obj"),
            Refusal::Backend,
            "object `obj` does not exist in container `c-up`",
        )
        .await
        .map_err(|e| format!("an upload in progress is visible: {e}"))?;
        expect("listing during an upload", &s.list("c-up").await?, &vec![])?;
    }
    s.chunk("c-up", "obj", DATA, 4, 1).await?;
    expect(
        "the uploaded object's size",
        &s.info("c-up", "obj").await?,
        &10,
    )?;
    expect(
        "the listing after the upload",
        &s.list("c-up").await?,
        &vec![("obj".to_string(), 10)],
    )?;
    let (_, chunks) = s.download("c-up", "obj", 10, "up-1").await?;
    expect("the bytes read back", joined(&chunks).as_slice(), DATA)?;
    // A completed upload takes no more chunks.
    s.refused(
        OP_UPLOAD_CHUNK,
        &piece("c-up", "obj", DATA, 4, 1),
        Refusal::Backend,
        "send StartUpload first",
    )
    .await?;
    // Uploading again replaces the object whole.
    s.upload("c-up", "obj", b"bye", 2).await?;
    expect(
        "the replaced object's size",
        &s.info("c-up", "obj").await?,
        &3,
    )?;
    let (_, chunks) = s.download("c-up", "obj", 10, "up-2").await?;
    expect(
        "the replaced object's bytes",
        joined(&chunks).as_slice(),
        b"bye",
    )
}

pub(super) async fn listing(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-list").await?;
    for (id, data) in [("b.bin", &DATA[..7]), ("a.txt", &DATA[..2]), ("c", DATA)] {
        s.upload("c-list", id, data, 3).await?;
    }
    expect(
        "the listing",
        &s.list("c-list").await?,
        &vec![
            ("a.txt".to_string(), 2),
            ("b.bin".to_string(), 7),
            ("c".to_string(), 10),
        ],
    )
}

pub(super) async fn remove_object(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-rm").await?;
    s.upload("c-rm", "gone", DATA, 5).await?;
    s.upload("c-rm", "kept", DATA, 5).await?;
    s.done(OP_REMOVE_OBJECT, &blob("c-rm", "gone")).await?;
    let missing = "object `gone` does not exist in container `c-rm`";
    s.refused(
        OP_GET_OBJECT_INFO,
        &blob("c-rm", "gone"),
        Refusal::Backend,
        missing,
    )
    .await?;
    s.refused(
        OP_REMOVE_OBJECT,
        &blob("c-rm", "gone"),
        Refusal::Backend,
        missing,
    )
    .await?;
    expect(
        "the listing after a removal",
        &s.list("c-rm").await?,
        &vec![("kept".to_string(), 10)],
    )
}

pub(super) async fn empty_object(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-empty").await?;
    s.start_upload("c-empty", "nothing", 0, 0).await?;
    expect(
        "an empty object, complete at StartUpload",
        &s.info("c-empty", "nothing").await?,
        &0,
    )?;
    let (transfer, chunks) = s.download("c-empty", "nothing", 10, "empty").await?;
    expect(
        "an empty object's transfer (total size, chunks)",
        &(transfer.total_size, transfer.total_chunks),
        &(0, 0),
    )?;
    expect("an empty object's chunks", &chunks.len(), &0)
}

pub(super) async fn restart(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-restart").await?;
    s.start_upload("c-restart", "obj", 10, 4).await?;
    s.chunk("c-restart", "obj", b"abcdefghij", 4, 0).await?;
    s.start_upload("c-restart", "obj", 10, 5).await?;
    // The abandoned upload's chunk size no longer applies.
    s.refused(
        OP_UPLOAD_CHUNK,
        &piece("c-restart", "obj", DATA, 4, 0),
        Refusal::BadPayload,
        "must hold 5",
    )
    .await?;
    s.chunk("c-restart", "obj", DATA, 5, 1).await?;
    s.chunk("c-restart", "obj", DATA, 5, 0).await?;
    let (_, chunks) = s.download("c-restart", "obj", 0, "restart").await?;
    expect(
        "the restarted upload's bytes",
        joined(&chunks).as_slice(),
        DATA,
    )
}

pub(super) async fn upload_refusals(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-refuse").await?;
    let start = |total, chunk_size| header("c-refuse", "obj", total, chunk_size);
    s.refused(
        OP_START_UPLOAD,
        &start(10, MAX_CHUNK_BYTES + 1),
        Refusal::BadPayload,
        "chunkSize",
    )
    .await?;
    s.refused(
        OP_START_UPLOAD,
        &start(10, 0),
        Refusal::BadPayload,
        "chunkSize must not be 0",
    )
    .await?;
    s.refused(
        OP_START_UPLOAD,
        &header("c-missing", "obj", 10, 4),
        Refusal::Backend,
        "container `c-missing` does not exist",
    )
    .await?;
    s.refused(
        OP_UPLOAD_CHUNK,
        &piece("c-refuse", "never", DATA, 4, 0),
        Refusal::Backend,
        "no upload of `never` in container `c-refuse` is in progress; send StartUpload first",
    )
    .await?;
    s.start_upload("c-refuse", "obj", 10, 4).await?;
    let past_end = FileChunk {
        sequence_no: 3,
        ..piece("c-refuse", "obj", DATA, 4, 2)
    };
    s.refused(
        OP_UPLOAD_CHUNK,
        &past_end,
        Refusal::BadPayload,
        "past the end",
    )
    .await?;
    let overflow = FileChunk {
        sequence_no: u64::MAX,
        ..past_end
    };
    s.refused(
        OP_UPLOAD_CHUNK,
        &overflow,
        Refusal::BadPayload,
        "past the end",
    )
    .await?;
    let short = FileChunk {
        chunk_bytes: DATA[..3].to_vec(),
        ..piece("c-refuse", "obj", DATA, 4, 0)
    };
    s.refused(OP_UPLOAD_CHUNK, &short, Refusal::BadPayload, "must hold 4")
        .await?;
    let long_last = FileChunk {
        chunk_bytes: DATA[..4].to_vec(),
        ..piece("c-refuse", "obj", DATA, 4, 2)
    };
    s.refused(
        OP_UPLOAD_CHUNK,
        &long_last,
        Refusal::BadPayload,
        "must hold 2",
    )
    .await?;
    // The refusals changed nothing: the upload still completes.
    for seq in 0..3 {
        s.chunk("c-refuse", "obj", DATA, 4, seq).await?;
    }
    expect(
        "the object after refusals",
        &s.info("c-refuse", "obj").await?,
        &10,
    )
}

pub(super) async fn remove_abandons(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-drop").await?;
    s.start_upload("c-drop", "obj", 10, 5).await?;
    s.chunk("c-drop", "obj", DATA, 5, 0).await?;
    s.done(OP_REMOVE_CONTAINER, &container_("c-drop")).await?;
    s.create("c-drop").await?;
    s.refused(
        OP_UPLOAD_CHUNK,
        &piece("c-drop", "obj", DATA, 5, 1),
        Refusal::Backend,
        "send StartUpload first",
    )
    .await?;
    expect("the recreated container", &s.list("c-drop").await?, &vec![])
}

pub(super) async fn download_chunks(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-down").await?;
    s.upload("c-down", "obj", DATA, 10).await?;
    let (transfer, chunks) = s.download("c-down", "obj", 4, "ctx-42").await?;
    expect(
        "the StartDownload reply",
        &transfer,
        &Transfer {
            blob_id: "obj".into(),
            container: "c-down".into(),
            chunk_size: 4,
            total_size: 10,
            total_chunks: 3,
            context: Some("ctx-42".into()),
        },
    )?;
    for (i, chunk) in chunks.iter().enumerate() {
        let want = FileChunk {
            sequence_no: i as u64,
            container: "c-down".into(),
            id: "obj".into(),
            total_bytes: 10,
            chunk_size: 4,
            context: Some("ctx-42".into()),
            chunk_bytes: DATA[i * 4..(i * 4 + 4).min(10)].to_vec(),
        };
        expect(&format!("chunk {i}"), chunk, &want)?;
    }
    let request = StreamRequest {
        id: "obj".into(),
        container: "c-down".into(),
        chunk_size: 4,
        context: None,
    };
    let transfer: Transfer = s.ok(OP_START_DOWNLOAD, &request).await?;
    expect("a download without context", &transfer.context, &None)
}

pub(super) async fn download_sizes(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-sizes").await?;
    s.upload("c-sizes", "obj", DATA, 10).await?;
    let (transfer, chunks) = s.download("c-sizes", "obj", 0, "size-0").await?;
    expect(
        "chunk size 0 asks for the default (chunk size, chunks)",
        &(transfer.chunk_size, transfer.total_chunks),
        &(DEFAULT_CHUNK_BYTES, 1),
    )?;
    expect("the one chunk", joined(&chunks).as_slice(), DATA)?;
    let (transfer, _) = s.download("c-sizes", "obj", u64::MAX, "size-max").await?;
    expect(
        "a chunk size over the maximum is lowered to it",
        &transfer.chunk_size,
        &MAX_CHUNK_BYTES,
    )
}

pub(super) async fn download_refusals(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-nodown").await?;
    let request = |container: &str, id: &str| StreamRequest {
        id: id.into(),
        container: container.into(),
        chunk_size: 4,
        context: None,
    };
    s.refused(
        OP_START_DOWNLOAD,
        &request("c-nodown", "missing"),
        Refusal::Backend,
        "object `missing` does not exist in container `c-nodown`",
    )
    .await?;
    s.refused(
        OP_START_DOWNLOAD,
        &request("c-nowhere", "x"),
        Refusal::Backend,
        "container `c-nowhere` does not exist",
    )
    .await?;
    // An upload in progress cannot be downloaded.
    s.start_upload("c-nodown", "partial", 10, 5).await?;
    s.refused(
        OP_START_DOWNLOAD,
        &request("c-nodown", "partial"),
        Refusal::Backend,
        "does not exist",
    )
    .await
}

pub(super) async fn names(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-names").await?;
    for name in [
        "../x",
        "/abs",
        "a/b",
        "..",
        ".",
        "",
        "a\\b",
        "x\0",
        ".waxosuit-upload-x",
    ] {
        let container = format!("container id `{name}`");
        let object = format!("object id `{name}`");
        s.refused(
            OP_CREATE_CONTAINER,
            &container_(name),
            Refusal::BadPayload,
            &container,
        )
        .await?;
        for op in [OP_LIST_OBJECTS, OP_REMOVE_CONTAINER] {
            s.refused(op, &container_(name), Refusal::BadPayload, &container)
                .await?;
        }
        for op in [OP_GET_OBJECT_INFO, OP_REMOVE_OBJECT] {
            s.refused(op, &blob(name, "ok"), Refusal::BadPayload, &container)
                .await?;
            s.refused(op, &blob("c-names", name), Refusal::BadPayload, &object)
                .await?;
        }
        s.refused(
            OP_START_UPLOAD,
            &header("c-names", name, 1, 1),
            Refusal::BadPayload,
            &object,
        )
        .await?;
        s.refused(
            OP_START_UPLOAD,
            &header(name, "ok", 1, 1),
            Refusal::BadPayload,
            &container,
        )
        .await?;
        let download = StreamRequest {
            id: name.into(),
            container: "c-names".into(),
            chunk_size: 1,
            context: None,
        };
        s.refused(OP_START_DOWNLOAD, &download, Refusal::BadPayload, &object)
            .await?;
    }
    s.create(&"x".repeat(255)).await?;
    s.refused(
        OP_CREATE_CONTAINER,
        &container_(&"x".repeat(256)),
        Refusal::BadPayload,
        "is longer than 255 bytes",
    )
    .await?;
    expect(
        "the container after refusals",
        &s.list("c-names").await?,
        &vec![],
    )
}

pub(super) async fn isolation(s: &Client<'_, impl Subject>) -> Outcome {
    s.create("c-iso").await?;
    s.upload("c-iso", "mine", DATA, 4).await?;
    s.refused_on(
        OTHER_BINDING,
        OP_LIST_OBJECTS,
        &container_("c-iso"),
        Refusal::Backend,
        "container `c-iso` does not exist",
    )
    .await
    .map_err(|e| format!("the other binding sees this one's container: {e}"))?;
    let other: Container = s
        .ok_on(OTHER_BINDING, OP_CREATE_CONTAINER, &container_("c-iso"))
        .await?;
    expect("the other binding's container", other.id.as_str(), "c-iso")?;
    s.upload_on(OTHER_BINDING, "c-iso", "theirs", b"xy", 2)
        .await?;
    expect(
        "the other binding's objects",
        &s.list_on(OTHER_BINDING, "c-iso").await?,
        &vec![("theirs".to_string(), 2)],
    )?;
    s.done_on(OTHER_BINDING, OP_REMOVE_CONTAINER, &container_("c-iso"))
        .await?;
    expect(
        "this binding's objects after the other removed its container",
        &s.list_on(BINDING, "c-iso").await?,
        &vec![("mine".to_string(), 10)],
    )
}

pub(super) async fn unknown_operation(s: &Client<'_, impl Subject>) -> Outcome {
    match s.raw(BINDING, "Teleport", &container_("x")).await {
        Ok(_) => Err("`Teleport` succeeded".into()),
        Err(text) if text == "wascc:blobstore does not support the operation `Teleport`" => Ok(()),
        Err(text) => Err(format!("`Teleport` failed with {text:?}")),
    }
}

pub(super) async fn bad_payload(s: &Client<'_, impl Subject>) -> Outcome {
    for op in [
        OP_CREATE_CONTAINER,
        OP_REMOVE_CONTAINER,
        OP_REMOVE_OBJECT,
        OP_LIST_OBJECTS,
        OP_GET_OBJECT_INFO,
        OP_START_UPLOAD,
        OP_UPLOAD_CHUNK,
        OP_START_DOWNLOAD,
    ] {
        // A string where a map is expected.
        s.refused(op, &"not a request", Refusal::BadPayload, "")
            .await?;
    }
    Ok(())
}

fn joined(chunks: &[FileChunk]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.chunk_bytes.clone()).collect()
}
