//! What a filter VM's store holds: the contexts the filter has open, the
//! buffers of the callback under way, and what the callback asked the host
//! to do once it returns.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::sync::Notify;
use wasmtime::{Memory, StoreLimits, TypedFunc};
use waxosuit_cap_http_server::filter::{FilterResponse, StreamInfo};
use waxosuit_claims::ProxyWasmAbi;

use crate::FilterLimits;
use crate::head::Head;
use crate::shared::Shared;

/// Most ended streams' boxes a VM keeps for reuse.
const MAX_SPARE_STREAMS: usize = 16;

/// What every VM of one filter shares, read-only but for [`Shared`].
pub(crate) struct FilterInfo {
    /// The name from the filter's claims.
    pub(crate) name: String,
    /// The filter's `M…` key.
    pub(crate) key: String,
    /// `proxy_on_configure`'s bytes.
    pub(crate) config: Vec<u8>,
    /// Cluster name → base URL for `proxy_http_call`.
    pub(crate) upstreams: BTreeMap<String, String>,
    pub(crate) limits: FilterLimits,
    pub(crate) abi: ProxyWasmAbi,
    pub(crate) shared: Shared,
    /// Log lines per second, for all of the filter's VMs together.
    pub(crate) log_budget: waxosuit_runtime::console::ConsoleBudget,
}

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Request,
    Response,
}

/// One HTTP context.
pub(crate) struct StreamData {
    pub(crate) info: StreamInfo,
    pub(crate) phase: Phase,
    pub(crate) request: Head,
    pub(crate) request_body: Vec<u8>,
    pub(crate) response: Head,
    pub(crate) response_body: Vec<u8>,
    /// `proxy_continue_stream` for the current phase.
    pub(crate) resumed: bool,
    /// `proxy_send_local_response`.
    pub(crate) local: Option<FilterResponse>,
    /// `proxy_close_stream`.
    pub(crate) closed: bool,
    /// Wakes the request waiting on this stream when one of the above
    /// changes from outside its own callback (a callout's answer, a tick);
    /// made only when the request has to wait.
    pub(crate) notify: Option<Arc<Notify>>,
    /// `proxy_set_property` values.
    pub(crate) properties: HashMap<String, Vec<u8>>,
}

/// An answer to `proxy_http_call`, readable during
/// `proxy_on_http_call_response`.
#[derive(Default)]
pub(crate) struct CalloutReply {
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// A `proxy_http_call` to make once the callback returns.
pub(crate) struct PendingCall {
    pub(crate) id: u32,
    pub(crate) upstream: String,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout: Duration,
}

/// The store data of one filter VM.
pub(crate) struct VmState {
    pub(crate) limits: StoreLimits,
    pub(crate) memory: Option<Memory>,
    /// `proxy_on_memory_allocate` (or `malloc`): how the host hands the
    /// filter bytes it owns.
    pub(crate) alloc: Option<TypedFunc<i32, i32>>,
    pub(crate) filter: Arc<FilterInfo>,
    /// This VM's index among the filter's VMs.
    pub(crate) slot: usize,
    pub(crate) root_id: u32,
    /// The context host calls act on.
    pub(crate) effective: u32,
    /// The open HTTP contexts. A hash map keeps its room when emptied:
    /// a VM serving one request at a time allocates nothing per stream.
    pub(crate) streams: HashMap<u32, Box<StreamData>, BuildHasherDefault<IdHasher>>,
    /// Boxes of ended streams, kept for the next ones: opening a stream
    /// then neither allocates nor copies a whole context.
    #[expect(
        clippy::vec_box,
        reason = "the boxes move into `streams` as they are; unboxed, each would be copied into a new box"
    )]
    spare: Vec<Box<StreamData>>,
    /// During `proxy_on_http_call_response`.
    pub(crate) callout: Option<CalloutReply>,
    pub(crate) pending_calls: Vec<PendingCall>,
    /// Calls of this VM's slot sent and not yet answered, shared with the
    /// VMs that slot had before: a VM rebuilt after a trap does not start
    /// from zero while its predecessor's calls still run. Calls made in the
    /// current callback (`pending_calls`) count on top.
    pub(crate) calls_in_flight: Arc<AtomicUsize>,
    pub(crate) next_call_id: u32,
    /// A new tick period asked for in this callback (`Some(None)`: stop).
    pub(crate) tick: Option<Option<Duration>>,
    /// Streams whose state changed in this callback.
    pub(crate) wake: Vec<u32>,
    /// Queues with a new item (each once).
    pub(crate) queue_ready: Vec<u32>,
    /// `proxy_set_property` outside any stream.
    pub(crate) properties: HashMap<String, Vec<u8>>,
    /// Why the filter stopped: `proc_exit`, or an ABI misuse that fails it.
    pub(crate) fault: Option<String>,
}

impl VmState {
    pub(crate) fn new(
        filter: Arc<FilterInfo>,
        slot: usize,
        calls_in_flight: Arc<AtomicUsize>,
        limits: StoreLimits,
    ) -> VmState {
        VmState {
            limits,
            memory: None,
            alloc: None,
            filter,
            slot,
            root_id: 0,
            effective: 0,
            streams: HashMap::default(),
            spare: Vec::new(),
            callout: None,
            pending_calls: Vec::new(),
            calls_in_flight,
            next_call_id: 1,
            tick: None,
            wake: Vec::new(),
            queue_ready: Vec::new(),
            properties: HashMap::new(),
            fault: None,
        }
    }

    /// Opens HTTP context `id` for a request.
    pub(crate) fn open_stream(&mut self, id: u32, info: StreamInfo, request: Head, body: Vec<u8>) {
        let stream = match self.spare.pop() {
            Some(mut stream) => {
                // Cleared when it was put aside: only the request's parts
                // are set.
                stream.info = info;
                stream.phase = Phase::Request;
                stream.request = request;
                stream.request_body = body;
                stream
            }
            None => Box::new(StreamData {
                info,
                phase: Phase::Request,
                request,
                request_body: body,
                response: Head::default(),
                response_body: Vec::new(),
                resumed: false,
                local: None,
                closed: false,
                notify: None,
                properties: HashMap::new(),
            }),
        };
        self.streams.insert(id, stream);
    }

    /// Removes HTTP context `id`, keeping its box for a later stream.
    pub(crate) fn close_stream(&mut self, id: u32) {
        let Some(mut stream) = self.streams.remove(&id) else {
            return;
        };
        if self.spare.len() < MAX_SPARE_STREAMS {
            stream.request = Head::default();
            stream.request_body = Vec::new();
            stream.response = Head::default();
            stream.response_body = Vec::new();
            stream.resumed = false;
            stream.local = None;
            stream.closed = false;
            stream.notify = None;
            stream.properties.clear();
            self.spare.push(stream);
        }
    }

    /// The stream host calls act on, if the effective context is one.
    pub(crate) fn stream(&mut self) -> Option<&mut StreamData> {
        self.streams.get_mut(&self.effective).map(|s| &mut **s)
    }
}

/// Hashes context ids, which the host hands out in sequence: one
/// multiplication spreads them over the table (the default hasher's
/// flood resistance is not needed for keys no peer chooses).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte) | (self.0 << 8));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, value: u64) {
        // Fibonacci hashing: the high bits, which the table uses, depend
        // on every bit of the id.
        self.0 = value.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
