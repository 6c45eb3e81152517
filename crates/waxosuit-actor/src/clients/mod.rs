//! Typed clients for the well-known capabilities, obtained from
//! [`Ctx`](crate::Ctx).
//!
//! Each client is a borrowed view (host + binding name) that encodes its
//! arguments with the waSCC codec, makes one host call and decodes the
//! reply. `.binding(name)` re-targets a client at a named binding.

mod actor;
mod blobstore;
mod eventstreams;
mod extras;
mod http_client;
mod keyvalue;
mod logging;
mod messaging;
mod raw;

pub use actor::ActorClient;
pub use blobstore::Blobstore;
pub use eventstreams::EventStreams;
pub use extras::Extras;
pub use http_client::HttpClient;
pub use keyvalue::KeyValue;
pub use logging::Logger;
pub use messaging::Messaging;
pub use raw::Raw;

/// Generates the constructor and `binding` re-targeting shared by every
/// client, so they cannot drift apart.
macro_rules! bound_client {
    ($client:ident) => {
        impl<'a> $client<'a> {
            pub(crate) fn new(host: &'a dyn $crate::HostCalls, binding: &str) -> Self {
                Self {
                    host,
                    binding: binding.to_string(),
                }
            }

            /// The same client on the named binding instead.
            #[must_use]
            pub fn binding(mut self, name: &str) -> Self {
                self.binding = name.to_string();
                self
            }

            /// The binding this client calls.
            pub fn binding_name(&self) -> &str {
                &self.binding
            }
        }

        impl std::fmt::Debug for $client<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($client))
                    .field("binding", &self.binding)
                    .finish_non_exhaustive()
            }
        }
    };
}
use bound_client;
