//! The handler context and the one seam to the host, [`HostCalls`].

use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clients::{
    ActorClient, Blobstore, EventStreams, Extras, HttpClient, KeyValue, Logger, Messaging, Raw,
};
use crate::error::{Error, Result};

/// The binding a client uses unless told otherwise, as in waSCC.
pub const DEFAULT_BINDING: &str = "default";

/// The host side of an actor: every capability client ends up here.
///
/// On `wasm32` the SDK implements it with the waPC imports
/// (`wapc.__host_call`, `wapc.__console_log`); natively
/// [`FakeHost`](crate::testing::FakeHost) implements it in memory. Implement
/// it yourself to put any other fake behind a [`Ctx`].
pub trait HostCalls {
    /// Performs one waPC host call and returns the reply bytes.
    ///
    /// `binding` is the named binding (`"default"` unless chosen),
    /// `namespace` a capability id such as `wascc:keyvalue` or a 56-character
    /// actor public key (`M…`), `operation` the contract's operation name and
    /// `payload` its MessagePack request.
    ///
    /// # Errors
    ///
    /// [`Error::HostCall`] carrying the host's error text when the host
    /// reports failure.
    fn host_call(
        &self,
        binding: &str,
        namespace: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>>;

    /// Writes a line to the host's console log (`wapc.__console_log`). The
    /// ABI has no way to report failure, so neither does this.
    fn console_log(&self, message: &str);
}

/// What a handler gets besides its payload: access to the host.
///
/// Each accessor returns a small typed client bound to the `"default"`
/// binding; call `.binding(name)` on a client (or use a `*_named`
/// shortcut) to reach a named binding instead. Clients borrow the context,
/// so they are meant to be created where they are used:
///
/// ```
/// # use waxosuit_actor::{Ctx, Result};
/// fn bump(ctx: &Ctx) -> Result<i32> {
///     ctx.kv().add("hits", 1)
/// }
/// # let fake = waxosuit_actor::testing::FakeHost::new();
/// # assert_eq!(bump(&fake.ctx()).unwrap(), 1);
/// ```
#[derive(Clone)]
pub struct Ctx {
    host: Rc<dyn HostCalls>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

impl Ctx {
    /// A context whose clients all go through `host`.
    pub fn new(host: Rc<dyn HostCalls>) -> Self {
        Self { host }
    }

    /// The host behind this context, for calls no client covers.
    pub fn host(&self) -> &dyn HostCalls {
        &*self.host
    }

    /// `wascc:keyvalue` on the default binding.
    pub fn kv(&self) -> KeyValue<'_> {
        KeyValue::new(self.host(), DEFAULT_BINDING)
    }

    /// `wascc:keyvalue` on the named binding, e.g. a second store used as a
    /// cache.
    pub fn kv_named(&self, binding: &str) -> KeyValue<'_> {
        KeyValue::new(self.host(), binding)
    }

    /// `wascc:messaging` on the default binding.
    pub fn msg(&self) -> Messaging<'_> {
        Messaging::new(self.host(), DEFAULT_BINDING)
    }

    /// `wascc:http_client` on the default binding.
    pub fn http_client(&self) -> HttpClient<'_> {
        HttpClient::new(self.host(), DEFAULT_BINDING)
    }

    /// `wascc:logging` on the default binding.
    pub fn log(&self) -> Logger<'_> {
        Logger::new(self.host(), DEFAULT_BINDING)
    }

    /// `wascc:extras` (GUIDs, random numbers, sequence numbers).
    pub fn extras(&self) -> Extras<'_> {
        Extras::new(self.host(), DEFAULT_BINDING)
    }

    /// `wascc:blobstore` on the default binding.
    pub fn blob(&self) -> Blobstore<'_> {
        Blobstore::new(self.host(), DEFAULT_BINDING)
    }

    /// `wascc:eventstreams` on the default binding.
    pub fn events(&self) -> EventStreams<'_> {
        EventStreams::new(self.host(), DEFAULT_BINDING)
    }

    /// Untyped calls to any capability, e.g. a custom `acme:inventory`.
    pub fn raw(&self) -> Raw<'_> {
        Raw::new(self.host(), DEFAULT_BINDING)
    }

    /// Calls to another actor, named by its 56-character public key (`M…`)
    /// or by an alias the host resolves. The caller's claims must list the
    /// callee, as in waSCC.
    pub fn actor<'a>(&'a self, public_key_or_alias: &str) -> ActorClient<'a> {
        ActorClient::new(self.host(), public_key_or_alias)
    }

    /// Writes `message` to the host's console log, bypassing any logging
    /// capability (no claim needed, no failure possible).
    pub fn console_log(&self, message: &str) {
        self.host.console_log(message);
    }
}

/// Encodes `request`, performs the call and decodes the reply as `Resp`.
pub(crate) fn call_typed<Req, Resp>(
    host: &dyn HostCalls,
    binding: &str,
    namespace: &str,
    operation: &str,
    request: &Req,
) -> Result<Resp>
where
    Req: Serialize + ?Sized,
    Resp: DeserializeOwned,
{
    let reply = call_encoded(host, binding, namespace, operation, request)?;
    waxosuit_codec::deserialize(&reply).map_err(|e| Error::InvalidReply {
        namespace: namespace.to_string(),
        operation: operation.to_string(),
        reason: e.to_string(),
    })
}

/// Encodes `request` and performs the call, returning the raw reply.
///
/// Operations whose reply carries nothing the caller needs (`Set`, `Del`,
/// `Publish`, …) use this directly and ignore the bytes, so a provider that
/// answers them with an empty payload instead of the documented struct
/// still works.
pub(crate) fn call_encoded<Req>(
    host: &dyn HostCalls,
    binding: &str,
    namespace: &str,
    operation: &str,
    request: &Req,
) -> Result<Vec<u8>>
where
    Req: Serialize + ?Sized,
{
    let payload = waxosuit_codec::serialize(request)?;
    host.host_call(binding, namespace, operation, &payload)
}
