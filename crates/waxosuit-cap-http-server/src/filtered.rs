//! The request path of a binding with a filter chain (see [`crate::filter`]):
//! the request is read whole, passed through the filters, sent to the
//! actor, and the reply passed back through them.

use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Body;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use tokio::time::Instant;
use tracing::Span;
use waxosuit_codec::http::{OP_HANDLE_REQUEST, RequestHead, RequestWriter};

use crate::filter::{
    FilterError, FilterRequest, FilterResponse, FilterStream, StreamInfo, Verdict,
};
use crate::serve::{self, ConnService, HttpResponse};
use crate::spans;

/// Body of the 500 sent when a filter fails; the reason goes to the log.
const FILTER_FAILED: &[u8] = b"Filter failed";
/// Body of the 504 sent when a filter paused a request for too long.
const FILTER_STALLED: &[u8] = b"Filter did not resume the request in time";

impl ConnService {
    /// [`respond`](ConnService::respond) for a binding with filters.
    pub(crate) async fn respond_filtered(
        &self,
        req: hyper::Request<Incoming>,
        span: &Span,
    ) -> HttpResponse {
        let s = &self.service;
        let deadline = Instant::now() + s.request_timeout;
        let (parts, body) = req.into_parts();
        if serve::declared_length(&parts.headers).is_some_and(|len| len > s.max_body_bytes as u64) {
            return serve::plain(StatusCode::PAYLOAD_TOO_LARGE, b"Request body too large");
        }
        // Filters read header values as text (the Rust SDK unwraps the
        // conversion): bytes that are not UTF-8 would make any of them trap.
        if parts
            .headers
            .values()
            .any(|v| std::str::from_utf8(v.as_bytes()).is_err())
        {
            return serve::plain(
                StatusCode::BAD_REQUEST,
                b"Request header value is not valid UTF-8",
            );
        }
        let authority = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_string();
        let mut request = FilterRequest {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path_and_query().map_or_else(
                || parts.uri.path().to_string(),
                |pq| pq.as_str().to_string(),
            ),
            authority,
            scheme: "http",
            headers: parts.headers,
            body: Vec::new(),
        };
        // Most requests (GET, HEAD, …) have no body: nothing to read.
        request.body = if body.is_end_stream() {
            Vec::new()
        } else {
            // Only a body that has to be waited for arms a timer.
            match self
                .bounded(&mut Some(deadline), read_whole(body, s.max_body_bytes))
                .await
            {
                Some(Ok(body)) => body,
                Some(Err(refusal)) => return refusal,
                None => {
                    return serve::plain(
                        StatusCode::REQUEST_TIMEOUT,
                        b"Request body not received in time",
                    );
                }
            }
        };
        spans::record_body_size(span, request.body.len());

        let info = StreamInfo {
            target: Arc::clone(&self.target),
            source: self.source,
            thread: self.thread,
            deadline,
        };
        let mut streams: Vec<Box<dyn FilterStream + '_>> = Vec::with_capacity(s.filters.len());
        let mut local = None;
        for filter in s.filters.iter() {
            let mut stream = filter.open(&info);
            match stream.request(&mut request).outcome().await {
                Ok(Verdict::Continue) => streams.push(stream),
                Ok(Verdict::Respond(response)) => {
                    local = Some(response);
                    break;
                }
                Err(e) => return self.filter_failed(&e, span),
            }
        }
        let mut response = match local {
            Some(response) => response,
            // The actor's failures (500, 504, 413) pass back through the
            // filters like its answers.
            None => {
                let http = match self.call_actor(&request, deadline, span).await {
                    Ok(http) | Err(http) => http,
                };
                from_http(http)
            }
        };
        for stream in streams.iter_mut().rev() {
            if let Err(e) = stream.response(&mut request, &mut response).outcome().await {
                return self.filter_failed(&e, span);
            }
        }
        drop(streams);
        let response = self.to_http(response);
        spans::fail_on_server_error(span, &response);
        response
    }

    /// Sends the filtered request to the actor; its reply, or the response
    /// that replaces it, in filter form.
    async fn call_actor(
        &self,
        request: &FilterRequest,
        deadline: Instant,
        span: &Span,
    ) -> Result<HttpResponse, HttpResponse> {
        let s = &self.service;
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        let head = RequestHead {
            method: &request.method,
            path,
            query_string: query,
            body_capacity: request.body.len(),
        };
        // A filter that changed the body may have left its old length: the
        // actor sees the length of the body it gets.
        let length = request.body.len().to_string();
        let fields = request.headers.iter().map(|(name, value)| {
            if *name == CONTENT_LENGTH {
                (name.as_str(), length.as_bytes())
            } else {
                (name.as_str(), value.as_bytes())
            }
        });
        let payload = RequestWriter::new(&head, request.headers.keys_len(), fields)
            .and_then(|writer| writer.finish(&request.body));
        let payload = match payload {
            Ok(payload) => payload,
            Err(e) => return Err(serve::unencodable(s, &e)),
        };
        if let Some(max) = s.max_payload
            && payload.len() > max
        {
            return Err(serve::too_large_for_actor(s, payload.len(), max));
        }
        let dispatch = s.dispatcher.dispatch(&s.actor, OP_HANDLE_REQUEST, payload);
        let reply = match self.bounded(&mut Some(deadline), dispatch).await {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => {
                if let Some(not_logged) = s.log_failure() {
                    tracing::error!(actor = %s.actor, error = %e, not_logged, "actor failed to handle an HTTP request");
                }
                spans::fail(span, &e);
                return Err(serve::plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serve::FAILED,
                ));
            }
            None => {
                if let Some(not_logged) = s.log_failure() {
                    tracing::error!(
                        actor = %s.actor,
                        timeout = ?s.request_timeout,
                        not_logged,
                        "actor did not answer an HTTP request in time"
                    );
                }
                spans::fail(span, "the actor did not answer within the request timeout");
                return Err(serve::plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    b"Actor did not respond in time",
                ));
            }
        };
        Ok(serve::reply_to_http(
            &s.actor,
            &s.name,
            reply,
            &s.reply,
            &s.failures,
        ))
    }

    fn filter_failed(&self, error: &FilterError, span: &Span) -> HttpResponse {
        let s = &self.service;
        if let Some(not_logged) = s.log_failure() {
            tracing::error!(actor = %s.actor, actor_name = %s.name, %error, not_logged, "HTTP filter failed a request");
        }
        spans::fail(span, error);
        match error {
            FilterError::Stalled { .. } => {
                serve::plain(StatusCode::GATEWAY_TIMEOUT, FILTER_STALLED)
            }
            FilterError::Failed { .. } => {
                serve::plain(StatusCode::INTERNAL_SERVER_ERROR, FILTER_FAILED)
            }
        }
    }

    /// The filtered response as hyper's. A header a filter made that HTTP
    /// cannot carry is dropped with a warning naming it: the rest of the
    /// answer is still the filter's.
    fn to_http(&self, response: FilterResponse) -> HttpResponse {
        let s = &self.service;
        let Ok(status) = StatusCode::from_u16(response.status) else {
            if let Some(not_logged) = s.log_failure() {
                tracing::error!(
                    actor = %s.actor,
                    status = response.status,
                    not_logged,
                    "an HTTP filter set an invalid status code"
                );
            }
            return serve::plain(StatusCode::INTERNAL_SERVER_ERROR, FILTER_FAILED);
        };
        let mut out = hyper::Response::new(Bytes::from(response.body));
        *out.status_mut() = status;
        let mut headers = response.headers;
        headers.remove(CONTENT_LENGTH);
        headers.remove(TRANSFER_ENCODING);
        *out.headers_mut() = headers;
        out
    }
}

/// A response in the form filters see.
fn from_http(http: HttpResponse) -> FilterResponse {
    let (parts, body) = http.into_parts();
    FilterResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        // No copy when the reply's buffer is not shared.
        body: Vec::from(body),
    }
}

/// Reads a whole request body, up to `limit` bytes.
async fn read_whole(body: Incoming, limit: usize) -> Result<Vec<u8>, HttpResponse> {
    let mut body = pin!(body);
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(serve::plain(
                StatusCode::BAD_REQUEST,
                b"Cannot read request body",
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if out.len() + data.len() > limit {
            return Err(serve::plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                b"Request body too large",
            ));
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}
