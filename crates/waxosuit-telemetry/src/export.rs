//! The OTLP exporter's HTTP client: hyper and rustls, the stack the
//! `wascc:http_client` capability already builds, on a runtime of its own.
//!
//! The SDK's batch processor exports from its own thread and drives each
//! export with a plain executor, outside any Tokio runtime. The host's
//! runtime is no place for it either: an export must still run while the
//! host drains at shutdown, after the host's runtime stops taking work. So
//! the client keeps a one-thread runtime and hands each request to it.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// A collector's answer is a small protobuf (partial success at most); a
/// larger one is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends the exporter's requests, each within `timeout`.
pub(crate) struct ExportClient {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ExportClient {
    pub(crate) fn new(timeout: Duration) -> Result<ExportClient, std::io::Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("waxosuit-otlp")
            .enable_all()
            .build()?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(ExportClient {
            runtime: Some(runtime),
            client,
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self.runtime.as_ref().ok_or("the exporter is shut down")?;
        let (parts, body) = request.into_parts();
        let request = hyper::Request::from_parts(parts, Full::new(body));
        let client = self.client.clone();
        let timeout = self.timeout;
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        // The timer belongs to the client's runtime: it is made inside the
        // task, since this thread has no runtime of its own.
        match runtime
            .spawn(async move { tokio::time::timeout(timeout, exchange).await })
            .await?
        {
            Ok(result) => result,
            Err(_) => Err(format!("no answer from the collector within {timeout:?}").into()),
        }
    }
}

impl Drop for ExportClient {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which panics inside
        // another runtime; the exporter may be dropped from one.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
