//! The admin endpoints of `waxosuit up --admin`: `/livez`, `/readyz`, `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::up::Status;

/// Binds `addr` and serves the admin endpoints until the task is aborted.
pub async fn serve(addr: SocketAddr, status: Arc<Status>) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the admin address {addr}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let status = Arc::clone(&status);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let status = Arc::clone(&status);
                    async move { Ok::<_, Infallible>(route(&status, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

fn route(status: &Status, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let (ready, detail) = readiness(status);
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(code, "text/plain", detail)
        }
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            status.host.metrics_text(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /livez, /readyz or /metrics\n".to_string(),
        ),
    }
}

/// Ready once the manifest is fully applied and, after the first health
/// round, while every actor and provider reports healthy.
fn readiness(status: &Status) -> (bool, String) {
    if !status.started.load(Ordering::Acquire) {
        return (
            false,
            "starting: actors and bindings are not all up yet\n".to_string(),
        );
    }
    let report = status.host.last_health();
    if !report.checked || report.all_healthy() {
        return (true, "ready\n".to_string());
    }
    let mut detail = String::from("not ready:\n");
    for (key, name, ok, message) in &report.actors {
        if !ok {
            detail.push_str(&format!("  actor {name} ({key}): {message}\n"));
        }
    }
    for (route, ok, message) in &report.providers {
        if !ok {
            detail.push_str(&format!(
                "  provider {} (binding `{}`): {message}\n",
                route.capid, route.binding
            ));
        }
    }
    (false, detail)
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
