//! `proxy_http_call` through the host's HTTP client (`wascc:http_client`'s
//! provider), so callouts obey the same egress rules as actors: the
//! manifest's `upstreams:` are the filter's allowlist, each URL's host named
//! exactly, every other destination refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use waxosuit_cap_http_client::{ALLOWED_HOSTS, HttpClientProvider, MAX_RESPONSE_BYTES, TIMEOUT_MS};
use waxosuit_codec::http::{OP_PERFORM_REQUEST, Request, Response};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall,
};

use crate::LoadError;
use crate::clip::{Clipped, ShownUrl};
use crate::hostcalls::{MAX_CALLOUT_TIMEOUT, may_log};
use crate::state::{CalloutReply, FilterInfo, PendingCall};

/// Most bytes of a callout's answer body.
pub const MAX_CALLOUT_RESPONSE_BYTES: usize = 1 << 20;

/// The binding name callouts use in the client provider.
const BINDING: &str = "proxy-wasm";

/// One filter's callout client.
pub(crate) struct Callouts {
    client: HttpClientProvider,
    key: String,
}

/// The client provider never calls anything back.
struct NoActors;

#[async_trait]
impl ActorDispatcher for NoActors {
    async fn dispatch(&self, actor: &str, _: &str, _: Vec<u8>) -> Result<Vec<u8>, DispatchError> {
        Err(DispatchError::ActorNotFound {
            actor: actor.to_string(),
        })
    }
}

/// The host of `url`, as the egress allowlist names it.
pub(crate) fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

impl Callouts {
    pub(crate) async fn new(
        filter: &str,
        key: &str,
        upstreams: &BTreeMap<String, String>,
    ) -> Result<Callouts, LoadError> {
        let mut hosts = Vec::new();
        for (name, url) in upstreams {
            let Some(host) = host_of(url) else {
                return Err(LoadError::Upstream {
                    filter: filter.to_string(),
                    upstream: name.clone(),
                    reason: format!("`{url}` is not an http:// or https:// URL with a host"),
                });
            };
            if !hosts.iter().any(|h| h == host) {
                hosts.push(host.to_string());
            }
        }
        let client = HttpClientProvider::new();
        let upstream_error = |reason: String| LoadError::Upstream {
            filter: filter.to_string(),
            upstream: upstreams.keys().cloned().collect::<Vec<_>>().join(", "),
            reason,
        };
        client
            .start(Arc::new(NoActors))
            .await
            .map_err(|e| upstream_error(e.to_string()))?;
        if !hosts.is_empty() {
            client
                .bind_actor(BindRequest {
                    actor: key.to_string(),
                    binding: BINDING.to_string(),
                    values: HashMap::from([
                        (ALLOWED_HOSTS.to_string(), hosts.join(",")),
                        (
                            TIMEOUT_MS.to_string(),
                            MAX_CALLOUT_TIMEOUT.as_millis().to_string(),
                        ),
                        (
                            MAX_RESPONSE_BYTES.to_string(),
                            MAX_CALLOUT_RESPONSE_BYTES.to_string(),
                        ),
                    ]),
                })
                .await
                .map_err(|e| upstream_error(e.to_string()))?;
        }
        Ok(Callouts {
            client,
            key: key.to_string(),
        })
    }

    /// Makes the call; the answer with `:status` first, or `None` when there
    /// is none (refused, unreachable, timed out: the filter sees a response
    /// without headers, as in Envoy). The reason is logged within the
    /// filter's log budget (a filter can fail callouts in a loop), without
    /// the URL's query. `base` is the URL of the upstream the call names.
    pub(crate) async fn perform(
        &self,
        info: &FilterInfo,
        base: &str,
        call: PendingCall,
    ) -> Option<CalloutReply> {
        let filter = info.name.as_str();
        let mut method = String::new();
        let mut path = String::new();
        let mut header = HashMap::new();
        for (name, value) in call.headers {
            let value = String::from_utf8_lossy(&value).into_owned();
            match name.as_str() {
                ":method" => method = value,
                ":path" => path = value,
                // The URL names the destination; `Host` follows from it.
                ":authority" | ":scheme" | "host" => {}
                _ if name.starts_with(':') => {}
                _ => {
                    header.insert(name, value);
                }
            }
        }
        // `proxy_http_call` let through one `:path`, absolute; checked again
        // here, where it is joined to the upstream's URL.
        if !path.starts_with('/') {
            if may_log(info) {
                tracing::warn!(filter, upstream = %call.upstream, "Proxy-Wasm callout without an absolute path refused");
            }
            return None;
        }
        let url = format!("{}{}", base.trim_end_matches('/'), path);
        let request = Request {
            method,
            path: url.clone(),
            query_string: String::new(),
            header,
            body: call.body,
        };
        let payload = waxosuit_codec::serialize(&request).ok()?;
        let made = self.client.handle_call(ProviderCall {
            actor: self.key.clone(),
            binding: BINDING.to_string(),
            operation: OP_PERFORM_REQUEST.to_string(),
            payload,
        });
        let reply = match tokio::time::timeout(call.timeout, made).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                if may_log(info) {
                    let error = e.to_string();
                    tracing::warn!(filter, upstream = %call.upstream, url = %ShownUrl(&url), error = %Clipped(&error), "Proxy-Wasm callout failed");
                }
                return None;
            }
            Err(_) => {
                if may_log(info) {
                    tracing::warn!(filter, upstream = %call.upstream, url = %ShownUrl(&url), timeout = ?call.timeout, "Proxy-Wasm callout timed out");
                }
                return None;
            }
        };
        let response: Response = match waxosuit_codec::deserialize(&reply) {
            Ok(response) => response,
            Err(e) => {
                if may_log(info) {
                    tracing::warn!(filter, upstream = %call.upstream, error = %e, "Proxy-Wasm callout answer unreadable");
                }
                return None;
            }
        };
        let mut headers = vec![(
            ":status".to_string(),
            response.status_code.to_string().into_bytes(),
        )];
        let mut names: Vec<_> = response.header.into_iter().collect();
        names.sort();
        headers.extend(
            names
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes())),
        );
        Some(CalloutReply {
            headers,
            body: response.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts_of_upstream_urls() {
        assert_eq!(host_of("http://127.0.0.1:9000"), Some("127.0.0.1"));
        assert_eq!(
            host_of("https://auth.example.com/v1"),
            Some("auth.example.com")
        );
        assert_eq!(host_of("http://user@h:1/x"), Some("h"));
        assert_eq!(host_of("http://[::1]:8080/"), Some("::1"));
        assert_eq!(host_of("ftp://h/"), None);
        assert_eq!(host_of("http:///x"), None);
    }
}
