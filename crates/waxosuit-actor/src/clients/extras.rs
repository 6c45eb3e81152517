use waxosuit_codec::extras::{self, GeneratorRequest, GeneratorResult};

use super::bound_client;
use crate::context::call_typed;
use crate::{Error, HostCalls, Result};

/// Client for `wascc:extras`, the host's built-in source of GUIDs, random
/// numbers and sequence numbers (an actor has no entropy or shared state of
/// its own).
pub struct Extras<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(Extras);

impl Extras<'_> {
    fn generate(&self, operation: &str, request: &GeneratorRequest) -> Result<GeneratorResult> {
        call_typed(
            self.host,
            &self.binding,
            extras::CAPABILITY_ID,
            operation,
            request,
        )
    }

    /// A fresh UUID v4 string.
    ///
    /// # Errors
    ///
    /// The host call failed, or the reply carried no GUID.
    pub fn guid(&self) -> Result<String> {
        let request = GeneratorRequest {
            guid: true,
            ..GeneratorRequest::default()
        };
        self.generate(extras::OP_REQUEST_GUID, &request)?
            .guid
            .ok_or_else(|| Error::InvalidReply {
                namespace: extras::CAPABILITY_ID.to_string(),
                operation: extras::OP_REQUEST_GUID.to_string(),
                reason: "no guid in the reply".to_string(),
            })
    }

    /// A random number in `[min, max)`.
    ///
    /// # Errors
    ///
    /// The host call failed (an empty range is refused by the host).
    pub fn random(&self, min: u32, max: u32) -> Result<u32> {
        let request = GeneratorRequest {
            random: true,
            min,
            max,
            ..GeneratorRequest::default()
        };
        Ok(self
            .generate(extras::OP_REQUEST_RANDOM, &request)?
            .random_number)
    }

    /// The next number of this actor's own sequence, starting at 0.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn sequence(&self) -> Result<u64> {
        let request = GeneratorRequest {
            sequence: true,
            ..GeneratorRequest::default()
        };
        Ok(self
            .generate(extras::OP_REQUEST_SEQUENCE, &request)?
            .sequence_number)
    }
}
