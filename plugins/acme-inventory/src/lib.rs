//! `acme:inventory`: a sample capability provider shipped as a native plugin.
//!
//! Operations (MessagePack payloads):
//!
//! * `GetStock {sku}` → `{sku, count}`; an unknown SKU fails.
//! * `Reserve {sku, qty}` → `{sku, count}` (what is left); fails without
//!   change when the stock is short or `qty` is 0.
//! * `CallActor {operation, body}` → the calling actor's reply to
//!   `operation` (exercises the host callback).
//! * `Panic` panics, to show the host survives it.
//!
//! Stock starts at `widget: 10`, `gadget: 0`; a binding may seed more with
//! values `stock.<sku>: <count>`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_plugin_sdk::level;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, ProviderCall, ProviderError, decode, encode,
};

const CAPID: &str = "acme:inventory";

#[derive(Debug, Deserialize)]
struct GetStock {
    sku: String,
}

#[derive(Debug, Deserialize)]
struct Reserve {
    sku: String,
    qty: u32,
}

#[derive(Debug, Deserialize)]
struct CallActor {
    operation: String,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

#[derive(Debug, Serialize)]
struct Stock {
    sku: String,
    count: u32,
}

/// The inventory: stock per SKU, shared by every binding.
pub struct Inventory {
    stock: Mutex<HashMap<String, u32>>,
    bound: Mutex<HashSet<(String, String)>>,
    dispatcher: Mutex<Option<Arc<dyn ActorDispatcher>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inventory {
    /// Starts with `widget: 10`, `gadget: 0`.
    pub fn new() -> Inventory {
        let stock = [("widget".to_string(), 10), ("gadget".to_string(), 0)];
        Inventory {
            stock: Mutex::new(stock.into_iter().collect()),
            bound: Mutex::new(HashSet::new()),
            dispatcher: Mutex::new(None),
        }
    }

    fn count(&self, sku: &str) -> Result<u32, ProviderError> {
        lock(&self.stock)
            .get(sku)
            .copied()
            .ok_or_else(|| ProviderError::backend(CAPID, format!("unknown sku `{sku}`")))
    }
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory::new()
    }
}

#[async_trait]
impl CapabilityProvider for Inventory {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(CAPID)
            .name("Acme inventory")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .with_operation("GetStock", OperationDirection::ToProvider, "Stock of a SKU")
            .with_operation("Reserve", OperationDirection::ToProvider, "Takes stock")
            .build()
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *lock(&self.dispatcher) = Some(dispatcher);
        Ok(())
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        for (key, value) in &request.values {
            if let Some(sku) = key.strip_prefix("stock.") {
                let count = value.parse().map_err(|_| ProviderError::Config {
                    capid: CAPID.to_string(),
                    actor: request.actor.clone(),
                    key: key.clone(),
                    reason: format!("`{value}` is not a count"),
                })?;
                lock(&self.stock).insert(sku.to_string(), count);
            }
        }
        waxosuit_plugin_sdk::log(level::INFO, &format!("bound actor {}", request.actor));
        lock(&self.bound).insert((request.actor, request.binding));
        Ok(())
    }

    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        lock(&self.bound).remove(&(actor.to_string(), binding.to_string()));
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        if !lock(&self.bound).contains(&(call.actor.clone(), call.binding.clone())) {
            return Err(ProviderError::not_bound(CAPID, &call.actor, &call.binding));
        }
        match call.operation.as_str() {
            "GetStock" => {
                let req: GetStock = decode(CAPID, &call)?;
                let count = self.count(&req.sku)?;
                encode(
                    CAPID,
                    &Stock {
                        sku: req.sku,
                        count,
                    },
                )
            }
            "Reserve" => {
                let req: Reserve = decode(CAPID, &call)?;
                if req.qty == 0 {
                    return Err(ProviderError::backend(CAPID, "qty must be at least 1"));
                }
                let mut stock = lock(&self.stock);
                let have = stock.get_mut(&req.sku).ok_or_else(|| {
                    ProviderError::backend(CAPID, format!("unknown sku `{}`", req.sku))
                })?;
                if *have < req.qty {
                    return Err(ProviderError::backend(
                        CAPID,
                        format!(
                            "insufficient stock for `{}`: {} left, {} asked",
                            req.sku, have, req.qty
                        ),
                    ));
                }
                *have -= req.qty;
                let count = *have;
                drop(stock);
                encode(
                    CAPID,
                    &Stock {
                        sku: req.sku,
                        count,
                    },
                )
            }
            "CallActor" => {
                let req: CallActor = decode(CAPID, &call)?;
                let dispatcher = lock(&self.dispatcher)
                    .clone()
                    .ok_or_else(|| ProviderError::backend(CAPID, "not started"))?;
                dispatcher
                    .dispatch(&call.actor, &req.operation, req.body)
                    .await
                    .map_err(|e| ProviderError::backend(CAPID, e))
            }
            "Panic" => panic!("acme:inventory was asked to panic"),
            other => Err(ProviderError::unknown_operation(CAPID, other)),
        }
    }
}

waxosuit_plugin_sdk::export_provider!(Inventory, Inventory::new);
