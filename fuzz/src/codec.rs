//! The contract types of `waxosuit-codec`, as a table the `codec_decode`
//! target indexes with its first byte (and the corpus generator uses to
//! file seeds under the right index).

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::{
    blobstore, capabilities, core, deserialize, eventstreams, extras, http, invocation, keyvalue,
    logging, messaging, serialize,
};

/// Decodes `payload` as `T`; what decodes must re-encode with `serialize`
/// (which the crate promises never fails for its contract types) and decode
/// back to the same value.
pub fn round_trip<T>(payload: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match deserialize::<T>(payload) {
        Ok(value) => {
            let bytes = serialize(&value).expect("a contract type always serializes");
            let back: T = deserialize(&bytes).expect("what serialize wrote decodes");
            assert_eq!(back, value, "round trip changed the value");
            Some(value)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

fn invocation(payload: &[u8]) -> bool {
    let Some(inv) = round_trip::<invocation::Invocation>(payload) else {
        return false;
    };
    let _ = (inv.origin_url(), inv.target_url());
    let _ = (inv.origin.url(), inv.target.url());
    let ok = invocation::InvocationResponse::success(&inv, Vec::new());
    let err = invocation::InvocationResponse::error(&inv, "e");
    assert_eq!(ok.invocation_id, err.invocation_id);
    true
}

macro_rules! types {
    ($($ty:ty),* $(,)?) => {
        /// One decoder per contract type: `true` when `payload` decodes.
        pub const CASES: &[crate::Case] = &[
            $((stringify!($ty), |p| round_trip::<$ty>(p).is_some()),)*
            ("invocation::Invocation", invocation),
        ];
    };
}

types![
    // http
    http::Request,
    http::Response,
    // keyvalue
    keyvalue::GetRequest,
    keyvalue::GetResponse,
    keyvalue::SetRequest,
    keyvalue::SetResponse,
    keyvalue::DelRequest,
    keyvalue::DelResponse,
    keyvalue::AddRequest,
    keyvalue::AddResponse,
    keyvalue::ListPushRequest,
    keyvalue::ListDelItemRequest,
    keyvalue::ListClearRequest,
    keyvalue::ListRangeRequest,
    keyvalue::ListRangeResponse,
    keyvalue::ListResponse,
    keyvalue::SetAddRequest,
    keyvalue::SetRemoveRequest,
    keyvalue::SetQueryRequest,
    keyvalue::SetQueryResponse,
    keyvalue::SetIntersectionRequest,
    keyvalue::SetUnionRequest,
    keyvalue::SetOperationResponse,
    keyvalue::KeyExistsQuery,
    // messaging
    messaging::BrokerMessage,
    messaging::RequestMessage,
    // logging
    logging::WriteLogRequest,
    // extras
    extras::GeneratorRequest,
    extras::GeneratorResult,
    // blobstore
    blobstore::FileChunk,
    blobstore::Container,
    blobstore::ContainerList,
    blobstore::Blob,
    blobstore::BlobList,
    blobstore::StreamRequest,
    blobstore::Transfer,
    // eventstreams
    eventstreams::Event,
    eventstreams::WriteResponse,
    eventstreams::StreamQuery,
    eventstreams::StreamResults,
    eventstreams::TimeRange,
    // core
    core::LiveUpdate,
    core::HealthRequest,
    core::CapabilityConfiguration,
    // capabilities
    capabilities::CapabilityDescriptor,
    capabilities::OperationDescriptor,
    capabilities::OperationDirection,
    // invocation
    invocation::Entity,
    invocation::InvocationResponse,
];
