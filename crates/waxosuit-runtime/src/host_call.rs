//! `__host_call`: reading the guest's arguments, handing the call to the
//! embedder's [`HostCallHandler`], waiting for it within the deadline, and
//! storing its answer where the guest reads it.
//!
//! Inline instances (no fiber) drive the handler's future on the calling
//! thread: at once when it is ready on the first poll, which is the common
//! case and the point of inline instances, otherwise through Tokio's
//! documented `block_in_place` and `Handle::block_on`. Fiber instances
//! await it, suspending the guest.

use std::cell::Cell;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use wasmtime::Caller;

use crate::abi::guest_range;
use crate::clock::EpochClock;
use crate::state::{Fault, HostState, Identity};
use crate::{
    HostCall, HostCallHandler, MAX_BINDING_NAME_LEN, MAX_NAMESPACE_LEN, MAX_OPERATION_NAME_LEN,
    Name, PendingHostCall,
};

pub(crate) struct HostCallArgs {
    pub(crate) binding: Option<(i32, i32)>,
    pub(crate) namespace: Option<(i32, i32)>,
    pub(crate) operation: (i32, i32),
    pub(crate) payload: (i32, i32),
}

/// Reads and validates the arguments of `__host_call`, or explains why not.
pub(crate) fn read_host_call<H>(
    caller: &mut Caller<'_, HostState<H>>,
    args: &HostCallArgs,
) -> Result<HostCall, Fault> {
    let Some(memory) = caller.data().memory else {
        return Err(Fault::Protocol(
            "__host_call before memory is available".into(),
        ));
    };
    let (mem, state) = memory.data_and_store_mut(caller);
    let max_payload = state.max_payload;
    let names = &mut state.names;
    let name = |(ptr, len): (i32, i32), what: &'static str, limit: usize| -> Result<&[u8], Fault> {
        let size = len.cast_unsigned() as usize;
        // Checked before anything is read: a name is a short label, and a
        // guest must not make the host copy, compare or hash megabytes of it.
        if size > limit {
            return Err(Fault::NameTooLong { what, size, limit });
        }
        let range = guest_range(mem.len(), ptr, len).ok_or_else(|| {
            Fault::Protocol(format!(
                "__host_call {what} range {ptr:#x}+{size} is outside linear memory"
            ))
        })?;
        Ok(&mem[range])
    };
    let (binding, namespace, operation) = match (args.binding, args.namespace) {
        (Some(bd), Some(ns)) => (
            names
                .binding
                .get(name(bd, "binding", MAX_BINDING_NAME_LEN)?, "binding")?,
            names
                .namespace
                .get(name(ns, "namespace", MAX_NAMESPACE_LEN)?, "namespace")?,
            names.operation.get(
                name(args.operation, "operation", MAX_OPERATION_NAME_LEN)?,
                "operation",
            )?,
        ),
        (None, Some(ns)) => (
            names.binding.get(b"default", "binding")?,
            names
                .namespace
                .get(name(ns, "namespace", MAX_NAMESPACE_LEN)?, "namespace")?,
            names.operation.get(
                name(args.operation, "operation", MAX_OPERATION_NAME_LEN)?,
                "operation",
            )?,
        ),
        (_, None) => {
            // waPC v0 routes with "capid!Op" in the operation: bounded as a
            // whole first, then each part by its own limit.
            let route = name(
                args.operation,
                "operation",
                MAX_NAMESPACE_LEN + 1 + MAX_OPERATION_NAME_LEN,
            )?;
            let Some(split) = route.iter().position(|&b| b == b'!') else {
                return Err(Fault::Protocol(format!(
                    "legacy __host_call operation {:?} is not of the form \"capid!Operation\"",
                    String::from_utf8_lossy(route)
                )));
            };
            let (namespace, op) = (&route[..split], &route[split + 1..]);
            for (what, part, limit) in [
                ("namespace", namespace, MAX_NAMESPACE_LEN),
                ("operation", op, MAX_OPERATION_NAME_LEN),
            ] {
                if part.len() > limit {
                    return Err(Fault::NameTooLong {
                        what,
                        size: part.len(),
                        limit,
                    });
                }
            }
            (
                names.binding.get(b"default", "binding")?,
                names.namespace.get(namespace, "namespace")?,
                names.operation.get(op, "operation")?,
            )
        }
    };
    let (ptr, len) = args.payload;
    let size = len.cast_unsigned() as usize;
    if size > max_payload {
        return Err(Fault::PayloadTooLarge {
            what: "host call payload",
            size,
        });
    }
    let range = guest_range(mem.len(), ptr, len).ok_or_else(|| {
        Fault::Protocol(format!(
            "__host_call payload range {ptr:#x}+{size} is outside linear memory"
        ))
    })?;
    Ok(HostCall {
        binding,
        namespace,
        operation,
        payload: mem[range].to_vec(),
    })
}

/// The last binding, namespace and operation names this instance used.
///
/// Guests call the same few routes over and over; reusing the shared string
/// saves three allocations per host call.
#[derive(Default)]
pub(crate) struct NameCache {
    binding: CachedName,
    namespace: CachedName,
    operation: CachedName,
}

impl NameCache {
    /// The names of the host call being made (the last ones read).
    pub(crate) fn pending(&self) -> PendingHostCall {
        let name = |cached: &CachedName| cached.0.clone().unwrap_or_else(|| Name::new(""));
        PendingHostCall {
            binding: name(&self.binding),
            namespace: name(&self.namespace),
            operation: name(&self.operation),
        }
    }
}

#[derive(Default)]
struct CachedName(Option<Name>);

impl CachedName {
    // Inlined: returned through memory, the result was reread with wider
    // loads than it was written with, which stalls (store forwarding).
    #[inline(always)]
    fn get(&mut self, bytes: &[u8], what: &str) -> Result<Name, Fault> {
        if let Some(name) = &self.0
            && name.as_bytes() == bytes
        {
            return Ok(name.clone());
        }
        let name =
            Name::new(std::str::from_utf8(bytes).map_err(|e| {
                Fault::Protocol(format!("__host_call {what} is not valid UTF-8: {e}"))
            })?);
        self.0 = Some(name.clone());
        Ok(name)
    }
}

/// The host error a guest sees for a refused host call.
fn fault_text(fault: &Fault) -> String {
    match fault {
        Fault::Protocol(message) => message.clone(),
        Fault::PayloadTooLarge { what, size } => {
            format!("{what} of {size} bytes exceeds the payload limit")
        }
        Fault::NameTooLong { what, size, limit } => format!(
            "__host_call {what} name of {size} bytes exceeds the {limit}-byte limit for {what} \
             names (binding {MAX_BINDING_NAME_LEN}, namespace {MAX_NAMESPACE_LEN}, operation \
             {MAX_OPERATION_NAME_LEN} bytes)"
        ),
        Fault::HostCallDeadline(pending) => {
            format!("the call's deadline passed while waiting on host call {pending}")
        }
    }
}

/// Why the runtime answered a host call itself rather than the handler.
pub(crate) enum Unanswered {
    /// The guest broke the contract or a limit: the guest reads the fault
    /// as its host error, and the call fails with it.
    Fault(Fault),
    /// The call had to wait where waiting would deadlock: the guest reads
    /// this as its host error and may go on.
    CannotWait,
}

/// What the guest reads when its inline instance cannot wait.
const CANNOT_WAIT: &str = "the host call had to wait, but the actor runs inline on a \
                           current-thread Tokio runtime, where waiting would deadlock; load and \
                           call it on a multi-threaded runtime, or turn \
                           RuntimeConfig::inline_calls off";

/// Stores the outcome of a host call in the state and returns the
/// `__host_call` result code (1 = response, 0 = error).
pub(crate) fn finish_host_call<H: HostCallHandler>(
    state: &mut HostState<H>,
    outcome: Result<Result<Vec<u8>, H::Error>, Unanswered>,
) -> i32 {
    state.wapc.host_response.clear();
    state.wapc.host_error.clear();
    match outcome {
        Ok(Ok(response)) if response.len() > state.max_payload => {
            let fault = Fault::PayloadTooLarge {
                what: "host response",
                size: response.len(),
            };
            state.wapc.host_error = fault_text(&fault).into_bytes();
            state.fault(fault);
            0
        }
        Ok(Ok(response)) => {
            state.wapc.host_response = response;
            1
        }
        Ok(Err(refused)) => {
            // Only the text crosses into the guest; the typed error stays
            // with the embedder, which logged it if it cared.
            state.wapc.host_error = refused.to_string().into_bytes();
            0
        }
        Err(Unanswered::CannotWait) => {
            state.wapc.host_error = CANNOT_WAIT.as_bytes().to_vec();
            0
        }
        Err(Unanswered::Fault(fault)) => {
            state.wapc.host_error = fault_text(&fault).into_bytes();
            state.fault(fault);
            0
        }
    }
}

/// The flavour of the Tokio runtime this thread runs in, if any.
pub(crate) fn current_flavor() -> Option<tokio::runtime::RuntimeFlavor> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.runtime_flavor())
}

thread_local! {
    /// Host calls this thread is polling for a guest right now. While one
    /// is, that guest's frames are below on this very stack (the thread's
    /// own, or the fiber's the guest runs on).
    static IN_HOST_CALL: Cell<u32> = const { Cell::new(0) };
}

/// Whether this code runs inside a guest's host call, on that guest's
/// stack. An actor called from here must not run inline: wasmtime measures
/// each store's `max_wasm_stack` from where it is entered, so guests nested
/// on one stack add up, and a chain of them passes the end of the thread's
/// stack (or a fiber's), which kills the process rather than trapping.
pub(crate) fn inside_host_call() -> bool {
    IN_HOST_CALL.with(|n| n.get() > 0)
}

/// Marks this thread as inside a guest's host call until dropped.
struct Mark;

impl Mark {
    fn set() -> Mark {
        IN_HOST_CALL.with(|n| n.set(n.get() + 1));
        Mark
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        IN_HOST_CALL.with(|n| n.set(n.get() - 1));
    }
}

/// A fiber guest's host call, marked (see [`inside_host_call`]) while it
/// is polled, and only then: between polls the fiber is suspended and the
/// thread runs other tasks.
pub(crate) async fn on_guest_stack<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let _mark = Mark::set();
        future.as_mut().poll(cx)
    })
    .await
}

/// How an inline host call ended.
pub(crate) enum Driven<T> {
    /// The handler answered.
    Done(T),
    /// The deadline passed first; the host call was abandoned.
    Deadline,
    /// It had to wait on a current-thread runtime (see [`CANNOT_WAIT`]).
    CannotWait,
}

/// Drives a host call's future in place for an inline instance: at once if
/// it is ready on the first poll (the point of inline instances), otherwise
/// by blocking this thread, through `block_in_place` so that a Tokio worker
/// hands its other tasks to another thread first. Also says whether it had
/// to wait.
///
/// Waiting switches the actor to fiber instances at once, and lasts at most
/// until tick `end` (the call's deadline).
pub(crate) fn drive_inline<H, F: Future>(
    ident: &Identity<H>,
    make: impl FnOnce() -> F,
    end: u64,
) -> (Driven<F::Output>, bool) {
    // Marked throughout, the future's making included: the thread polls
    // nothing else meanwhile (waiting blocks it, see `wait_inline`), and
    // the guest is below on its stack.
    let _mark = Mark::set();
    let future = make();
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
        return (Driven::Done(output), false);
    }
    (wait_inline(ident, future, end), true)
}

/// The slow path of [`drive_inline`]: the host call has to wait. Kept out
/// of line so the fast path above stays as small as it is hot.
#[cold]
#[inline(never)]
fn wait_inline<H, F: Future>(
    ident: &Identity<H>,
    future: std::pin::Pin<&mut F>,
    end: u64,
) -> Driven<F::Output> {
    ident.leave_inline("a host call had to wait");
    if current_flavor() == Some(tokio::runtime::RuntimeFlavor::CurrentThread) {
        // Parking the only thread of this runtime would stop the very I/O
        // the future waits for. Inline instances are only made on
        // multi-threaded runtimes; this is an actor moved to another one.
        return Driven::CannotWait;
    }
    // Tokio's documented way to wait for a future from synchronous code on
    // a worker: `block_in_place` hands the worker's other tasks to another
    // thread, and `Handle::block_on` drives the future (its I/O and timers
    // run on the runtime's drivers as usual). Bounded as on a fiber, the
    // deadline checked first: `tokio::time::timeout` polls the future
    // first, so a host call that ends as the deadline passes (an actor's
    // call to itself that gave up at the same tick) would hand its error
    // back to a guest that the epoch then stops, with no word of the host
    // call that held it.
    let handle = tokio::runtime::Handle::current();
    match tokio::task::block_in_place(|| handle.block_on(within(future, &ident.clock, end))) {
        Some(output) => Driven::Done(output),
        None => Driven::Deadline,
    }
}

/// Awaits a host call's future on a fiber for at most until tick `end` (the
/// call's deadline); `None` if it is still pending then (the future is
/// dropped, which abandons the host call).
///
/// The timer is created only if the future is pending on its first poll:
/// host calls answered at once (in-memory capabilities) pay for no timer.
pub(crate) async fn within<F: Future>(
    future: F,
    clock: &EpochClock,
    end: u64,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    std::future::poll_fn(|cx| {
        // The deadline first: a host call that completes only as the
        // deadline passes (say, an actor's call to itself that gave up at
        // the same tick) is abandoned, as it would be a moment later.
        if let Some(Poll::Ready(())) = timer.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if timer.is_none() {
            timer.set(Some(tokio::time::sleep(clock.until(end))));
            if let Some(Poll::Ready(())) = timer.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}
