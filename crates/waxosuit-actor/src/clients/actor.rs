use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{DEFAULT_BINDING, call_typed};
use crate::{HostCalls, Result};

/// Client for calling another actor's operations.
pub struct ActorClient<'a> {
    host: &'a dyn HostCalls,
    target: String,
}

impl std::fmt::Debug for ActorClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorClient")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<'a> ActorClient<'a> {
    pub(crate) fn new(host: &'a dyn HostCalls, target: &str) -> Self {
        Self {
            host,
            target: target.to_string(),
        }
    }

    /// The public key or alias this client calls.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Calls `operation` on the target actor with `payload` as is and
    /// returns its reply as is.
    ///
    /// # Errors
    ///
    /// The host call failed: the target is unknown, the caller's claims do
    /// not allow the call, or the target's handler failed.
    pub fn call(&self, operation: &str, payload: &[u8]) -> Result<Vec<u8>> {
        // waSCC routes on the namespace alone for actor targets; the binding
        // is sent only because the ABI has the slot.
        self.host
            .host_call(DEFAULT_BINDING, &self.target, operation, payload)
    }

    /// Like [`call`](Self::call), encoding `request` and decoding the reply
    /// with the waSCC MessagePack codec.
    ///
    /// # Errors
    ///
    /// Encoding failed, the host call failed, or the reply did not decode
    /// as `Resp`.
    pub fn invoke<Req, Resp>(&self, operation: &str, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        call_typed(self.host, DEFAULT_BINDING, &self.target, operation, request)
    }
}
