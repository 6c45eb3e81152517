//! `blob-notes`: notes kept as blobs in `wascc:blobstore`, moved in chunks.
//!
//! | Route | Answer |
//! |---|---|
//! | `PUT /notes/<id>` (body) | `201` `{"id", "bytes", "chunks"}`: uploaded in 64 KiB chunks |
//! | `GET /notes` | `200` `{"notes": [{"id", "bytes"}]}` |
//! | `GET /notes/<id>` | `200` `{"id", "bytes"}` (the blob's info) |
//! | `POST /notes/<id>/download` | `202` `{"chunks"}`: the store streams the note back as `ReceiveChunk`s |
//! | `DELETE /notes/<id>` | `204` |
//!
//! Chunks received from a download are counted in `wascc:keyvalue` under
//! `received:<id>` (bytes), so a test or an operator can see them arrive.

use serde_json::json;
use waxosuit_actor::codec::blobstore::{Blob, FileChunk};
use waxosuit_actor::{Ctx, Registry, Result, actor, http};

actor! { on_init }

/// The container notes live in.
pub const CONTAINER: &str = "notes";
/// Chunk size for uploads and downloads.
pub const CHUNK: u64 = 64 * 1024;

/// Registers the HTTP and chunk handlers.
pub fn on_init(actor: &mut Registry) {
    actor.on_http_request(on_http);
    actor.on_receive_chunk(on_chunk);
}

fn reply(code: u32, status: &str, value: serde_json::Value) -> http::Response {
    http::Response {
        status_code: code,
        status: status.into(),
        header: [("content-type".to_string(), "application/json".to_string())].into(),
        body: value.to_string().into_bytes(),
    }
}

/// Counts a downloaded chunk's bytes.
pub fn on_chunk(ctx: &Ctx, chunk: FileChunk) -> Result<()> {
    let n = i32::try_from(chunk.chunk_bytes.len()).unwrap_or(i32::MAX);
    ctx.kv().add(&format!("received:{}", chunk.id), n)?;
    Ok(())
}

/// The HTTP routes of the table above.
pub fn on_http(ctx: &Ctx, req: http::Request) -> Result<http::Response> {
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let blob = ctx.blob();
    match (req.method.as_str(), parts.as_slice()) {
        ("PUT", ["notes", id]) => {
            // Creating an existing container is harmless for this example.
            let _ = blob.create_container(CONTAINER);
            let info = Blob {
                id: (*id).to_string(),
                container: CONTAINER.to_string(),
                byte_size: req.body.len() as u64,
            };
            let transfer = blob.start_upload(&info, CHUNK)?;
            for (seq, chunk) in req.body.chunks(CHUNK as usize).enumerate() {
                blob.upload_chunk(&transfer, seq as u64, chunk)?;
            }
            Ok(reply(
                201,
                "Created",
                json!({"id": id, "bytes": req.body.len(), "chunks": transfer.total_chunks}),
            ))
        }
        ("GET", ["notes"]) => {
            let notes: Vec<_> = blob
                .list_objects(CONTAINER)?
                .into_iter()
                .map(|b| json!({"id": b.id, "bytes": b.byte_size}))
                .collect();
            Ok(reply(200, "OK", json!({ "notes": notes })))
        }
        ("GET", ["notes", id]) => {
            let info = blob.get_object_info(CONTAINER, id)?;
            Ok(reply(
                200,
                "OK",
                json!({"id": info.id, "bytes": info.byte_size}),
            ))
        }
        ("POST", ["notes", id, "download"]) => {
            let info = blob.get_object_info(CONTAINER, id)?;
            let transfer = blob.start_download(&info, CHUNK, None)?;
            Ok(reply(
                202,
                "Accepted",
                json!({"chunks": transfer.total_chunks}),
            ))
        }
        ("DELETE", ["notes", id]) => {
            blob.remove_object(CONTAINER, id)?;
            Ok(http::Response {
                status_code: 204,
                status: "No Content".into(),
                ..http::Response::ok()
            })
        }
        _ => Ok(http::Response::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use waxosuit_actor::testing::{FakeHost, http_request};

    use super::*;

    #[test]
    fn upload_info_list_download_delete() {
        let fake = FakeHost::new();
        let body = vec![7u8; 150 * 1024];
        let r = on_http(&fake.ctx(), http_request("PUT", "/notes/a", body.clone())).unwrap();
        assert_eq!(r.status_code, 201);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["chunks"], 3);
        assert_eq!(fake.blob(CONTAINER, "a"), Some(body));

        let r = on_http(&fake.ctx(), http_request("GET", "/notes", "")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["notes"][0]["bytes"], 150 * 1024);

        let r = on_http(&fake.ctx(), http_request("POST", "/notes/a/download", "")).unwrap();
        assert_eq!(r.status_code, 202);
        assert_eq!(fake.downloads().len(), 1);

        on_chunk(
            &fake.ctx(),
            FileChunk {
                id: "a".into(),
                chunk_bytes: vec![1; 10],
                ..FileChunk::default()
            },
        )
        .unwrap();
        assert_eq!(fake.kv_string("received:a").as_deref(), Some("10"));

        let r = on_http(&fake.ctx(), http_request("DELETE", "/notes/a", "")).unwrap();
        assert_eq!(r.status_code, 204);
        assert_eq!(fake.blob(CONTAINER, "a"), None);
    }
}
