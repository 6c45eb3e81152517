//! Handler registration and dispatch by operation name.

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::blobstore::{self, FileChunk};
use waxosuit_codec::core::{self, HealthRequest};
use waxosuit_codec::eventstreams::{self, Event};
use waxosuit_codec::http;
use waxosuit_codec::messaging::{self, BrokerMessage};

use crate::context::Ctx;
use crate::error::{Error, Result};

type RawHandler = Box<dyn Fn(&Ctx, &[u8]) -> Result<Vec<u8>>>;

/// The actor's operation table: which handler answers which operation.
///
/// Fill it in the function given to [`actor!`](crate::actor); the host then
/// dispatches every incoming call through it. Registering an operation twice
/// replaces the earlier handler. `HealthRequest` is answered (with an empty,
/// successful reply) unless you register your own with
/// [`on_health`](Self::on_health).
///
/// Natively, build one with [`Registry::from_init`] and drive it with
/// [`dispatch`](Self::dispatch) or [`invoke`](Self::invoke) to unit-test
/// handlers without compiling to wasm.
pub struct Registry {
    // A short list searched linearly: actors register a handful of
    // operations, and comparing a few short strings in wasm is cheaper than
    // hashing the name on every call.
    handlers: Vec<(String, RawHandler)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ops: Vec<&str> = self.operations().collect();
        ops.sort_unstable();
        f.debug_struct("Registry")
            .field("operations", &ops)
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry that only answers `HealthRequest`.
    pub fn new() -> Self {
        let mut registry = Self {
            handlers: Vec::new(),
        };
        registry.on_health(|_, _| Ok(()));
        registry
    }

    /// A registry filled by `init`, the same function given to
    /// [`actor!`](crate::actor): how tests get the registry the host would
    /// see.
    pub fn from_init(init: impl FnOnce(&mut Self)) -> Self {
        let mut registry = Self::new();
        init(&mut registry);
        registry
    }

    /// Registers `handler` for `operation`, with bytes in and bytes out: no
    /// decoding happens.
    pub fn on_raw<F>(&mut self, operation: &str, handler: F) -> &mut Self
    where
        F: Fn(&Ctx, &[u8]) -> Result<Vec<u8>> + 'static,
    {
        let handler: RawHandler = Box::new(handler);
        match self.handlers.iter_mut().find(|(op, _)| op == operation) {
            // Registering an operation again replaces its handler.
            Some(slot) => slot.1 = handler,
            None => self.handlers.push((operation.to_string(), handler)),
        }
        self
    }

    /// Registers `handler` for `operation`, decoding the payload as `Req` and
    /// encoding the returned `Resp` with the waSCC MessagePack codec.
    ///
    /// A payload that does not decode never reaches the handler; the call
    /// fails with [`Error::InvalidPayload`]. The types can usually be
    /// inferred from `handler`; otherwise name them:
    /// `registry.on::<MyRequest, MyResponse>("Custom", handler)`.
    pub fn on<Req, Resp>(
        &mut self,
        operation: &str,
        handler: impl Fn(&Ctx, Req) -> Result<Resp> + 'static,
    ) -> &mut Self
    where
        Req: DeserializeOwned,
        Resp: Serialize,
    {
        let name = operation.to_string();
        self.on_raw(operation, move |ctx, payload| {
            let request = decode::<Req>(&name, payload)?;
            let response = handler(ctx, request)?;
            Ok(waxosuit_codec::serialize(&response)?)
        })
    }

    /// Like [`on`](Self::on) for a handler with nothing to return: the
    /// reply is empty, which is what waSCC providers expect for
    /// notifications.
    pub fn on_notification<Req>(
        &mut self,
        operation: &str,
        handler: impl Fn(&Ctx, Req) -> Result<()> + 'static,
    ) -> &mut Self
    where
        Req: DeserializeOwned,
    {
        let name = operation.to_string();
        self.on_raw(operation, move |ctx, payload| {
            handler(ctx, decode::<Req>(&name, payload)?)?;
            Ok(Vec::new())
        })
    }

    /// Handles `HandleRequest` from `wascc:http_server`.
    pub fn on_http_request<F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&Ctx, http::Request) -> Result<http::Response> + 'static,
    {
        self.on(http::OP_HANDLE_REQUEST, handler)
    }

    /// Handles `DeliverMessage` from `wascc:messaging` (a message on a
    /// subscribed subject).
    pub fn on_message<F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&Ctx, BrokerMessage) -> Result<()> + 'static,
    {
        self.on_notification(messaging::OP_DELIVER_MESSAGE, handler)
    }

    /// Handles `ReceiveChunk` from `wascc:blobstore` (one chunk of a
    /// download started with
    /// [`Blobstore::start_download`](crate::clients::Blobstore::start_download)).
    pub fn on_receive_chunk<F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&Ctx, FileChunk) -> Result<()> + 'static,
    {
        self.on_notification(blobstore::OP_RECEIVE_CHUNK, handler)
    }

    /// Handles `DeliverEvent` from `wascc:eventstreams`.
    pub fn on_event<F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&Ctx, Event) -> Result<()> + 'static,
    {
        self.on_notification(eventstreams::OP_DELIVER_EVENT, handler)
    }

    /// Replaces the default `HealthRequest` handler; return an error to
    /// report the actor unhealthy.
    pub fn on_health<F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&Ctx, HealthRequest) -> Result<()> + 'static,
    {
        self.on_notification(core::OP_HEALTH_REQUEST, handler)
    }

    /// The operations this registry answers, in no particular order.
    pub fn operations(&self) -> impl Iterator<Item = &str> {
        self.handlers.iter().map(|(op, _)| op.as_str())
    }

    /// Whether a handler is registered for `operation`.
    pub fn handles(&self, operation: &str) -> bool {
        self.handlers.iter().any(|(op, _)| op == operation)
    }

    /// Runs the handler for `operation` on `payload`, exactly as an incoming
    /// `__guest_call` does, and returns the reply bytes.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOperation`] if nothing handles `operation`,
    /// [`Error::InvalidPayload`] if a typed handler's payload does not
    /// decode, or whatever the handler returned.
    pub fn dispatch(&self, ctx: &Ctx, operation: &str, payload: &[u8]) -> Result<Vec<u8>> {
        let handler = self
            .handlers
            .iter()
            .find(|(op, _)| op == operation)
            .map(|(_, handler)| handler)
            .ok_or_else(|| Error::UnknownOperation {
                operation: operation.to_string(),
            })?;
        handler(ctx, payload)
    }

    /// [`dispatch`](Self::dispatch) with MessagePack on both sides: encodes
    /// `request`, dispatches it and decodes the reply as `Resp`. Meant for
    /// tests (`registry.invoke::<_, http::Response>(&ctx, "HandleRequest",
    /// &request)`).
    ///
    /// # Errors
    ///
    /// As for [`dispatch`](Self::dispatch), plus codec errors on either
    /// side.
    pub fn invoke<Req, Resp>(&self, ctx: &Ctx, operation: &str, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let payload = waxosuit_codec::serialize(request)?;
        let reply = self.dispatch(ctx, operation, &payload)?;
        Ok(waxosuit_codec::deserialize(&reply)?)
    }
}

fn decode<T: DeserializeOwned>(operation: &str, payload: &[u8]) -> Result<T> {
    waxosuit_codec::deserialize(payload).map_err(|source| Error::InvalidPayload {
        operation: operation.to_string(),
        source,
    })
}
