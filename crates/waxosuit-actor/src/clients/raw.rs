use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bound_client;
use crate::context::call_typed;
use crate::{HostCalls, Result};

/// Untyped client for any capability, such as a custom `acme:inventory`
/// provider: you choose the capability id, the operation and the payload.
pub struct Raw<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(Raw);

impl Raw<'_> {
    /// Calls `operation` on capability `capid` with `payload` as is and
    /// returns the reply bytes as is.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn call(&self, capid: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.host
            .host_call(&self.binding, capid, operation, payload)
    }

    /// Like [`call`](Self::call), but encodes `request` and decodes the
    /// reply with the waSCC MessagePack codec.
    ///
    /// # Errors
    ///
    /// Encoding failed, the host call failed, or the reply did not decode
    /// as `Resp`.
    pub fn invoke<Req, Resp>(&self, capid: &str, operation: &str, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        call_typed(self.host, &self.binding, capid, operation, request)
    }
}
