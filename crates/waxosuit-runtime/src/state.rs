//! What one instance carries between host functions (the wasmtime `Store`
//! data), and the identity its actor's instances share.
//!
//! Host functions are plain closures over `Caller<'_, HostState<H>>`, so
//! everything a waPC conversation needs between them lives here: the
//! request, the replies in both directions, the first fault noticed, the
//! memory limiter, and where the call stands against its deadline.

use std::sync::Arc;

use wasmtime::{Memory, ResourceLimiter};

use crate::ActorKey;
use crate::PendingHostCall;
use crate::clock::EpochClock;
use crate::host_call::NameCache;

/// Identity shared by all instances of one actor.
pub(crate) struct Identity<H> {
    pub(crate) key: ActorKey,
    pub(crate) handler: Arc<H>,
    /// New instances are inline (no fiber; see
    /// [`RuntimeConfig::inline_calls`](crate::RuntimeConfig::inline_calls)).
    /// Here, not on the actor, so that the host function that finds it has
    /// to wait switches the actor at once, before other calls pick inline
    /// instances and block threads too.
    pub(crate) inline: std::sync::atomic::AtomicBool,
    /// The runtime's view of the engine epoch: a call's deadline is the
    /// tick it ends at, and a host call that has to wait may wait until then.
    pub(crate) clock: Arc<EpochClock>,
    /// Shared by every instance, so more instances do not mean more lines.
    pub(crate) console: crate::console::ConsoleBudget,
}

impl<H> Identity<H> {
    /// Makes new instances fiber instances from now on; idle inline ones
    /// are replaced as they come out of the pool.
    pub(crate) fn leave_inline(&self, why: &str) {
        if self
            .inline
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::debug!(actor = %self.key, why, "actor switches to fiber instances");
        }
    }
}

/// A contract violation or limit breach noticed inside a host function.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    Protocol(String),
    PayloadTooLarge {
        what: &'static str,
        size: usize,
    },
    /// A `__host_call` name longer than the ABI allows.
    NameTooLong {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// The call's deadline passed while this host call was pending; the
    /// host function trapped to stop the guest.
    HostCallDeadline(PendingHostCall),
}

/// Denies memory growth past the actor's limit and remembers that it did,
/// so the resulting trap is reported as `MemoryLimit`.
pub(crate) struct MemoryLimiter {
    pub(crate) max_memory: usize,
    pub(crate) denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= crate::MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// Per-instance waPC state (the wasmtime `Store` data).
pub(crate) struct HostState<H> {
    pub(crate) ident: Arc<Identity<H>>,
    /// The guest's exported memory, cached so host functions skip the export lookup.
    pub(crate) memory: Option<Memory>,
    pub(crate) max_payload: usize,
    pub(crate) wapc: Conversation,
    pub(crate) fault: Option<Fault>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) progress: Progress,
    pub(crate) names: NameCache,
}

/// The current call's waPC conversation: the request the guest reads and
/// the replies in both directions. The buffers are reused across calls.
#[derive(Default)]
pub(crate) struct Conversation {
    pub(crate) op: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) guest_response: Option<Vec<u8>>,
    pub(crate) guest_error: Option<String>,
    pub(crate) host_response: Vec<u8>,
    pub(crate) host_error: Vec<u8>,
}

/// Where the current call stands against its deadline, and what it did
/// that decides how an inline instance may give way.
#[derive(Default)]
pub(crate) struct Progress {
    /// Epoch tick at which the guest started running the current call
    /// (how long an inline call has computed is counted from it).
    pub(crate) started: u64,
    /// Epoch tick at which the current call's deadline ends. Guest code is
    /// stopped there by epoch interruption; a pending host call is
    /// abandoned there.
    pub(crate) end: u64,
    /// An inline store had to wait: a host call was pending, or the guest
    /// ran for long. The actor then switches to fiber instances.
    pub(crate) waited: bool,
    /// The call has handed a host call to the embedder: it may have had
    /// effects, so it must not be run a second time.
    pub(crate) called_host: bool,
}

impl<H> HostState<H> {
    /// The next slice (at most `max` ticks) the guest may run before the
    /// epoch callback runs again; `None` once the deadline has passed.
    ///
    /// Measured against the clock, not by adding up slices: time a fiber
    /// spent suspended in a host call counts against the deadline too.
    pub(crate) fn next_slice(&self, max: u64) -> Option<u64> {
        let now = self.ident.clock.now();
        let end = self.progress.end;
        (now < end).then(|| (end - now).min(max))
    }

    /// Records that the deadline passed while a host call was pending
    /// (the host call whose names the instance saw last) and returns the
    /// error that makes the host function trap, which stops the guest.
    pub(crate) fn deadline_in_host_call(&mut self) -> wasmtime::Error {
        let pending = self.names.pending();
        let text = format!("the call's deadline passed while waiting on host call {pending}");
        self.fault(Fault::HostCallDeadline(pending));
        wasmtime::Error::msg(text)
    }

    pub(crate) fn new(ident: Arc<Identity<H>>, max_payload: usize, max_memory: usize) -> Self {
        Self {
            ident,
            memory: None,
            max_payload,
            wapc: Conversation::default(),
            fault: None,
            progress: Progress::default(),
            limiter: MemoryLimiter {
                max_memory,
                denied: false,
            },
            names: NameCache::default(),
        }
    }

    /// Resets the per-call state and stores the request (step 1 of §1.4).
    pub(crate) fn begin_call(&mut self, op: &str, payload: &[u8]) {
        let wapc = &mut self.wapc;
        wapc.op.clear();
        wapc.op.extend_from_slice(op.as_bytes());
        wapc.payload.clear();
        wapc.payload.extend_from_slice(payload);
        wapc.guest_response = None;
        wapc.guest_error = None;
        wapc.host_response.clear();
        wapc.host_error.clear();
        self.fault = None;
        self.progress.called_host = false;
    }

    /// Drops large buffers so an idle instance does not pin a big payload.
    pub(crate) fn end_call(&mut self) {
        const KEEP: usize = 64 << 10;
        for buf in [
            &mut self.wapc.op,
            &mut self.wapc.payload,
            &mut self.wapc.host_response,
            &mut self.wapc.host_error,
        ] {
            buf.clear();
            if buf.capacity() > KEEP {
                buf.shrink_to(KEEP);
            }
        }
        // A guest that set a response (up to `max_payload`) and then
        // reported failure, or an error it never reported, leaves them
        // here: gone with the call, not pinned by the idle instance.
        self.wapc.guest_response = None;
        self.wapc.guest_error = None;
    }

    pub(crate) fn fault(&mut self, fault: Fault) {
        // The first fault is the cause; later ones are usually consequences.
        if self.fault.is_none() {
            self.fault = Some(fault);
        }
    }

    pub(crate) fn protocol_fault(&mut self, message: String) {
        self.fault(Fault::Protocol(message));
    }
}
