//! The HTTP server provider with an in-process dispatcher that answers every
//! request with a fixed `200 Hello`: measures what the provider itself adds
//! (request mapping, MessagePack both ways, the dispatch hop) compared with
//! `native_hello`, without any WebAssembly.
//!
//! ```text
//! cargo run --release -p waxosuit-cap-http-server --example provider_echo -- 8080
//! ```
//!
//! The port comes from the first argument, else `PORT`, else 8080; `0` picks
//! a free one. Further `KEY=VALUE` arguments are added to the binding values
//! (e.g. `HEADER_READ_TIMEOUT_MS=0`) to measure what an option costs. The
//! bound address is printed on stdout; Ctrl-C stops the server gracefully.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use waxosuit_cap_http_server::HttpServerProvider;
use waxosuit_codec::http::Response;
use waxosuit_provider::{ActorDispatcher, BindRequest, CapabilityProvider, DispatchError};

const ACTOR: &str = "MECHOACTOR";

/// Answers with a pre-encoded `Response`, the cheapest possible actor.
struct Hello {
    reply: Vec<u8>,
}

#[async_trait]
impl ActorDispatcher for Hello {
    async fn dispatch(
        &self,
        _actor: &str,
        _operation: &str,
        _payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        Ok(self.reply.clone())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .unwrap_or_else(|| "8080".to_string());
    let mut values = HashMap::from([
        ("ADDRESS".to_string(), "127.0.0.1".to_string()),
        ("PORT".to_string(), port),
    ]);
    for arg in std::env::args().skip(2) {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, got `{arg}`"))?;
        values.insert(key.to_string(), value.to_string());
    }
    let reply = waxosuit_codec::serialize(&Response {
        body: b"Hello".to_vec(),
        ..Response::ok()
    })?;
    let provider = HttpServerProvider::new();
    provider.start(Arc::new(Hello { reply })).await?;
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.to_string(),
            binding: "default".to_string(),
            values,
        })
        .await?;
    let addr = provider
        .bound_address(ACTOR)
        .ok_or("the provider reported no address for the bound actor")?;
    println!("provider_echo listening on {addr}");
    tokio::signal::ctrl_c().await?;
    provider.shutdown().await;
    Ok(())
}
