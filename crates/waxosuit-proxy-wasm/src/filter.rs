//! [`ProxyFilter`]: a loaded filter, one VM per connection thread, and the
//! stream driver that takes a request through the Proxy-Wasm callbacks.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use waxosuit_cap_http_server::filter::{
    FilterError, FilterRequest, FilterResponse, FilterStream, HeaderMap, HeaderValue, HttpFilter,
    Step, StreamInfo, Verdict,
};

use crate::callout::Callouts;
use crate::head::{self, Head, Value};
use crate::shared::MAX_QUEUE_ITEMS;
use crate::state::{PendingCall, Phase};
use crate::vm::{Callback, Failed, Vm, VmTemplate};

/// Most VMs one filter runs (one per connection thread).
const MAX_SLOTS: usize = 256;

/// Callbacks a filter's VM runs by itself (ticks, queue deliveries, callout
/// answers) are followed, once one runs for [`PACE_FROM`] or more, by a
/// pause nine times as long in which none of that VM's own callbacks run:
/// at most a tenth of a connection thread then goes to them, however many
/// timers, queues and callouts the filter keeps busy. Without it a tick
/// that ran longer than its period was due again at once, and the thread
/// (shared by every binding's connections) served nothing else for as long
/// as tokio let the task run.
const PACE_FACTOR: u32 = 9;

/// Shorter callbacks add up until they reach it: a pause of microseconds
/// would round up to the timer's millisecond, so many short callbacks owe
/// one pause together (callbacks of 0.9 ms each once escaped pacing
/// altogether and kept their thread busy).
const PACE_FROM: Duration = Duration::from_millis(1);

/// A loaded Proxy-Wasm filter: what a chain holds.
pub struct ProxyFilter {
    pub(crate) inner: Arc<FilterInner>,
}

pub(crate) struct FilterInner {
    pub(crate) template: VmTemplate,
    pub(crate) callouts: Callouts,
    /// Made on first use; read without a lock, as every request looks its
    /// thread's slot up.
    slots: Box<[OnceLock<Arc<Slot>>]>,
    /// Set when the last chain holding the filter let go.
    closed: AtomicBool,
}

/// One VM's place: rebuilt in place after a failure.
struct Slot {
    index: usize,
    vm: Mutex<Option<Vm>>,
    /// Bumped each time the VM is (re)built: streams and tasks of an older
    /// VM find out they are orphans.
    generation: AtomicU64,
    ticker: Mutex<Option<JoinHandle<()>>>,
    /// Callouts sent from this slot's VMs and not yet answered (see
    /// `VmState::calls_in_flight`).
    calls_in_flight: Arc<AtomicUsize>,
    /// Per queue (at most `MAX_QUEUES`), the `proxy_on_queue_ready` calls
    /// owed to this slot's VM: one per callback that enqueued, made by one
    /// task per queue, which exists while some are owed (`Owed`). A filter
    /// that enqueues to several queues from its own queue callbacks would
    /// otherwise multiply the tasks with each round.
    queues_owed: Box<[AtomicU32]>,
    /// Until when this slot's own callbacks wait ([`PACE_FACTOR`]), and the
    /// time of its own callbacks not yet paid for by a pause.
    pace: Mutex<Pace>,
}

/// Which of a VM's own callbacks owe pauses ([`PACE_FACTOR`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pacing {
    /// Every one, short ones adding up (ticks and queue deliveries, which
    /// the filter can make run again at once).
    Summed,
    /// Only one that runs [`PACE_FROM`] or more by itself (callout answers,
    /// each waiting on a request to its upstream).
    Long,
}

#[derive(Default)]
struct Pace {
    until: Option<Instant>,
    owed: Duration,
}

impl Slot {
    /// Waits until this slot's VM may run a callback of its own again.
    async fn wait_turn(&self) {
        loop {
            let until = self.pace.lock().until;
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Owes a pause for a callback of its own that ran for `spent`: once
    /// such callbacks add up to [`PACE_FROM`] (or, for [`Pacing::Long`],
    /// when this one alone did).
    fn ran(&self, spent: Duration, pacing: Pacing) {
        if pacing == Pacing::Long && spent < PACE_FROM {
            return;
        }
        let mut pace = self.pace.lock();
        pace.owed = pace.owed.saturating_add(spent);
        if pace.owed >= PACE_FROM {
            let until = Instant::now() + pace.owed.saturating_mul(PACE_FACTOR);
            pace.owed = Duration::ZERO;
            pace.until = Some(pace.until.map_or(until, |p| p.max(until)));
        }
    }
}

/// One callout counted in its slot's `calls_in_flight` from the callback
/// that made it until its answer, or until it is dropped unsent (the filter
/// closed, a task that panicked or never ran): the count cannot leak.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The task making a queue's owed calls for one slot, which exists exactly
/// while some are owed. Dropped before it is done (its runtime shut down,
/// or the VM failed), it clears what is owed, so that the next enqueue
/// schedules a task again instead of counting on this one.
struct Owed {
    slot: Arc<Slot>,
    queue: usize,
    armed: bool,
}

impl Owed {
    fn counter(&self) -> Option<&AtomicU32> {
        self.slot.queues_owed.get(self.queue)
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if self.armed
            && let Some(owed) = self.counter()
        {
            owed.store(0, Ordering::Release);
        }
    }
}

/// What a callback asked for, done once the VM is unlocked.
#[derive(Default)]
struct Effects {
    calls: Vec<(PendingCall, InFlight)>,
    tick: Option<Option<Duration>>,
    wake: Vec<Arc<Notify>>,
    queues: Vec<u32>,
}

impl Effects {
    fn is_empty(&self) -> bool {
        self.wake.is_empty()
            && self.calls.is_empty()
            && self.tick.is_none()
            && self.queues.is_empty()
    }
}

fn take_effects(vm: &mut Vm) -> Effects {
    let state = vm.state();
    if state.wake.is_empty()
        && state.pending_calls.is_empty()
        && state.tick.is_none()
        && state.queue_ready.is_empty()
    {
        // What almost every callback leaves: nothing to do afterwards.
        return Effects::default();
    }
    let wake = std::mem::take(&mut state.wake)
        .into_iter()
        .filter_map(|id| state.streams.get(&id).and_then(|s| s.notify.clone()))
        .collect();
    // Counted while the VM is locked: a callback of this slot on another
    // thread cannot see them missing and send its own past the bound.
    let calls = std::mem::take(&mut state.pending_calls)
        .into_iter()
        .map(|call| (call, InFlight::new(&state.calls_in_flight)))
        .collect();
    Effects {
        calls,
        tick: state.tick.take(),
        wake,
        queues: std::mem::take(&mut state.queue_ready),
    }
}

/// Every stream waiting in `vm`: to wake when it fails.
fn all_waiters(vm: &mut Vm) -> Vec<Arc<Notify>> {
    vm.state()
        .streams
        .values()
        .filter_map(|s| s.notify.clone())
        .collect()
}

impl std::fmt::Debug for ProxyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyFilter")
            .field("name", &self.inner.template.info.name)
            .field("key", &self.inner.template.info.key)
            .finish_non_exhaustive()
    }
}

impl ProxyFilter {
    /// Builds the first VM, so a filter that cannot start fails its load.
    pub(crate) fn start(inner: FilterInner) -> Result<ProxyFilter, Failed> {
        let inner = Arc::new(inner);
        let slot = Arc::clone(inner.slot(0));
        let mut guard = slot.vm.lock();
        let (vm, effects) = inner.build(&slot)?;
        let generation = slot.generation.load(Ordering::Acquire);
        *guard = Some(vm);
        drop(guard);
        inner.apply(&slot, generation, effects);
        Ok(ProxyFilter { inner })
    }

    /// The name from the filter's claims.
    pub fn name(&self) -> &str {
        &self.inner.template.info.name
    }

    /// The filter's `M…` key.
    pub fn key(&self) -> &str {
        &self.inner.template.info.key
    }

    /// The Proxy-Wasm ABI the module was built for.
    pub fn abi(&self) -> waxosuit_claims::ProxyWasmAbi {
        self.inner.template.info.abi
    }
}

impl Drop for ProxyFilter {
    fn drop(&mut self) {
        // Tasks still holding the filter (a callout under way) start
        // nothing new from here on.
        self.inner.closed.store(true, Ordering::Release);
        for slot in self.inner.slots.iter().filter_map(OnceLock::get) {
            if let Some(ticker) = slot.ticker.lock().take() {
                ticker.abort();
            }
        }
    }
}

impl FilterInner {
    pub(crate) fn new(template: VmTemplate, callouts: Callouts) -> FilterInner {
        FilterInner {
            template,
            callouts,
            slots: (0..MAX_SLOTS).map(|_| OnceLock::new()).collect(),
            closed: AtomicBool::new(false),
        }
    }

    fn name(&self) -> &str {
        &self.template.info.name
    }

    fn slot(&self, index: usize) -> &Arc<Slot> {
        let index = index.min(MAX_SLOTS - 1);
        self.slots[index].get_or_init(|| {
            Arc::new(Slot {
                index,
                vm: Mutex::new(None),
                generation: AtomicU64::new(0),
                ticker: Mutex::new(None),
                calls_in_flight: Arc::default(),
                queues_owed: (0..crate::shared::MAX_QUEUES)
                    .map(|_| AtomicU32::new(0))
                    .collect(),
                pace: Mutex::new(Pace::default()),
            })
        })
    }

    /// A new VM for `slot` (the caller holds its lock).
    fn build(&self, slot: &Slot) -> Result<(Vm, Effects), Failed> {
        slot.generation.fetch_add(1, Ordering::AcqRel);
        let mut vm = Vm::start(
            &self.template,
            slot.index,
            Arc::clone(&slot.calls_in_flight),
        )?;
        let effects = take_effects(&mut vm);
        Ok((vm, effects))
    }

    /// Does what a callback asked for: callouts, timers, wake-ups, queues.
    fn apply(self: &Arc<Self>, slot: &Arc<Slot>, generation: u64, effects: Effects) {
        if effects.is_empty() {
            return;
        }
        for notify in effects.wake {
            notify.notify_one();
        }
        if effects.calls.is_empty() && effects.tick.is_none() && effects.queues.is_empty() {
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                filter = self.name(),
                "no async runtime to run the filter's callouts and timers on"
            );
            return;
        };
        for (call, in_flight) in effects.calls {
            let inner = Arc::clone(self);
            let slot = Arc::clone(slot);
            runtime.spawn(async move { inner.callout(slot, generation, call, in_flight).await });
        }
        if let Some(period) = effects.tick {
            let mut ticker = slot.ticker.lock();
            if slot.generation.load(Ordering::Acquire) != generation {
                // The VM that asked is gone: its successor's ticker stays.
                return;
            }
            if let Some(old) = ticker.take() {
                old.abort();
            }
            if let Some(period) = period {
                let weak = Arc::downgrade(self);
                let slot = Arc::clone(slot);
                *ticker = Some(runtime.spawn(tick(weak, slot, generation, period)));
            }
        }
        for queue in effects.queues {
            for index in self.template.info.shared.listeners(queue) {
                let listener = self.slot(index);
                let Some(owed) = listener.queues_owed.get(queue as usize) else {
                    continue;
                };
                if owed.fetch_add(1, Ordering::AcqRel) != 0 {
                    // The slot's task for this queue exists: it makes this
                    // call too.
                    continue;
                }
                let weak = Arc::downgrade(self);
                let listener = Arc::clone(listener);
                let mut task = Owed {
                    slot: Arc::clone(&listener),
                    queue: queue as usize,
                    armed: true,
                };
                runtime.spawn(async move {
                    let Some(inner) = weak.upgrade() else { return };
                    loop {
                        let owed = task.counter().map_or(0, |c| c.load(Ordering::Acquire));
                        for _ in 0..owed.min(MAX_QUEUE_ITEMS as u32) {
                            let generation = listener.generation.load(Ordering::Acquire);
                            listener.wait_turn().await;
                            if !inner
                                .on_root(&listener, generation, Pacing::Summed, |vm, t| {
                                    vm.queue_ready(t, queue)
                                })
                                .await
                            {
                                // The VM failed or is gone; `task` clears.
                                return;
                            }
                            // One callback at a time: the worker serves
                            // others (requests among them) between them.
                            tokio::task::yield_now().await;
                        }
                        // Those made (calls past the cap dropped): if none
                        // came meanwhile, the task ends and the next enqueue
                        // schedules another; else it goes on with those.
                        task.armed = false;
                        let before = task
                            .counter()
                            .map_or(owed, |c| c.fetch_sub(owed, Ordering::AcqRel));
                        if before == owed {
                            return;
                        }
                        task.armed = true;
                    }
                });
            }
        }
    }

    /// Runs a root-context callback on `slot`'s VM if it is still the one of
    /// `generation`; false if that VM is gone or failed now. While the VM
    /// serves a request on its own thread this waits asleep, a millisecond
    /// at a time: a blocking lock would stall whichever runtime this task
    /// is on (slot 0's first timer runs on `up`'s main runtime) for as long
    /// as the request's callback runs.
    async fn on_root(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        generation: u64,
        pacing: Pacing,
        call: impl FnOnce(&mut Vm, &VmTemplate) -> Result<(), Failed>,
    ) -> bool {
        let mut guard = loop {
            if let Some(guard) = slot.vm.try_lock() {
                break guard;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let Some(vm) = guard.as_mut() else {
            return false;
        };
        if vm.poisoned || slot.generation.load(Ordering::Acquire) != generation {
            return false;
        }
        // Timed once the VM is held: waiting for it is not the filter's.
        let started = Instant::now();
        let outcome = call(vm, &self.template);
        slot.ran(started.elapsed(), pacing);
        match outcome {
            Ok(()) => {
                let effects = take_effects(vm);
                drop(guard);
                self.apply(slot, generation, effects);
                true
            }
            Err(Failed(reason)) => {
                tracing::error!(filter = self.name(), %reason, "Proxy-Wasm filter failed outside a request; its VM is rebuilt for the next request");
                let waiters = all_waiters(vm);
                drop(guard);
                for notify in waiters {
                    notify.notify_one();
                }
                false
            }
        }
    }

    async fn callout(
        self: Arc<Self>,
        slot: Arc<Slot>,
        generation: u64,
        call: PendingCall,
        in_flight: InFlight,
    ) {
        let id = call.id;
        // `proxy_http_call` only queues calls to named upstreams.
        let reply = match self.template.info.upstreams.get(&call.upstream) {
            Some(base) => self.callouts.perform(&self.template.info, base, call).await,
            None => None,
        };
        // Counted until the filter is handed the answer: an answer waiting
        // for its turn holds up to a megabyte and a task, and the filter
        // could otherwise send a new call for each one it has not yet read.
        slot.wait_turn().await;
        // An answer's callback is paced only when long by itself: a filter
        // calling out once per request (an auth check) is kept to the
        // rate of its requests and its upstream, not to a tenth of the
        // thread.
        self.on_root(&slot, generation, Pacing::Long, |vm, t| {
            // Handed over: no longer in flight, also for the calls this
            // callback makes.
            drop(in_flight);
            let reply = reply.unwrap_or_default();
            let (headers, body) = (reply.headers.len(), reply.body.len());
            let state = vm.state();
            state.callout = Some(reply);
            let result = vm.http_call_response(t, id, headers, body);
            vm.state().callout = None;
            result
        })
        .await;
    }
}

/// Calls `proxy_on_tick` every `period` after the last call ended (as
/// Envoy re-arms its timer), and not while the slot owes a pause after a
/// long callback ([`PACE_FACTOR`]). Every wait is a real sleep, so the
/// thread serves others between ticks.
async fn tick(weak: Weak<FilterInner>, slot: Arc<Slot>, generation: u64, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        slot.wait_turn().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire)
            || !inner
                .on_root(&slot, generation, Pacing::Summed, |vm, t| vm.tick(t))
                .await
        {
            return;
        }
    }
}

impl HttpFilter for ProxyFilter {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn open<'a>(&'a self, info: &StreamInfo) -> Box<dyn FilterStream + 'a> {
        Box::new(ProxyStream {
            slot: self.inner.slot(info.thread),
            inner: &self.inner,
            generation: 0,
            id: None,
            info: Some(info.clone()),
            deadline: info.deadline,
            phase: Phase::Request,
            stage: Stage::Headers,
            body: None,
            finished: false,
        })
    }
}

/// One request through one filter. It borrows the filter: the server
/// holds the chain while the request lasts, and nothing per request
/// touches the reference counts every thread shares.
struct ProxyStream<'a> {
    inner: &'a Arc<FilterInner>,
    slot: &'a Arc<Slot>,
    /// The VM generation the context lives in.
    generation: u64,
    /// The HTTP context, once created.
    id: Option<u32>,
    /// Moved into the context when it is created.
    info: Option<StreamInfo>,
    deadline: Instant,
    /// The phase under way.
    phase: Phase,
    /// The callback of the current phase the filter was last given.
    stage: Stage,
    /// The current phase's body callback and the body's size, if it has a
    /// body.
    body: Option<(Callback, usize)>,
    /// `on_done`, `on_log` and `on_delete` have run.
    finished: bool,
}

/// Where a phase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Headers,
    Body,
}

/// What a callback left: `None` to wait, `Some(None)` to go on,
/// `Some(Some(response))` to answer locally.
type Decision = Option<Option<FilterResponse>>;

impl ProxyStream<'_> {
    fn failed(&self, reason: impl Into<String>) -> FilterError {
        FilterError::Failed {
            filter: self.inner.name().to_string(),
            reason: reason.into(),
        }
    }

    /// Runs `call` on this stream's VM: builds the VM first if need be (for
    /// the first callback only), refuses if the VM was rebuilt since.
    fn with_vm<T>(
        &mut self,
        call: impl FnOnce(&mut Vm, &VmTemplate, &mut Option<u32>) -> Result<T, Failed>,
    ) -> Result<T, FilterError> {
        let slot = self.slot;
        let mut guard = slot.vm.lock();
        let mut built = Effects::default();
        if self.id.is_none() && guard.as_ref().is_none_or(|vm| vm.poisoned) {
            // The old VM's streams are already failing: it trapped.
            *guard = None;
            match self.inner.build(slot) {
                Ok((vm, effects)) => {
                    *guard = Some(vm);
                    built = effects;
                }
                Err(Failed(reason)) => {
                    return Err(self.failed(format!("cannot restart the filter: {reason}")));
                }
            }
        }
        let generation = slot.generation.load(Ordering::Acquire);
        if self.id.is_some() && generation != self.generation {
            return Err(self.failed(
                "the filter's VM failed while this request waited (another request or a timer \
                 made it trap)",
            ));
        }
        let Some(vm) = guard.as_mut().filter(|vm| !vm.poisoned) else {
            return Err(self.failed("the filter's VM failed while this request waited"));
        };
        self.generation = generation;
        let result = call(vm, &self.inner.template, &mut self.id);
        // A failed decision (a closed stream) is no failed VM: what the
        // callback asked for still happens.
        let (effects, waiters) = if vm.poisoned {
            (Effects::default(), all_waiters(vm))
        } else {
            (take_effects(vm), Vec::new())
        };
        drop(guard);
        self.inner.apply(slot, generation, built);
        self.inner.apply(slot, generation, effects);
        for notify in waiters {
            notify.notify_one();
        }
        result.map_err(|Failed(reason)| self.failed(reason))
    }

    /// Waits until the filter decides about the paused phase (a callout's
    /// answer, a timer, a queue), at most until the request's deadline.
    async fn wait_decision(&mut self) -> Result<Option<FilterResponse>, FilterError> {
        loop {
            // The waker is registered under the VM's lock, in the same
            // critical section that finds nothing decided yet, so a wake-up
            // cannot slip in between.
            let (decided, notify) = self.with_vm(|vm, _, id| {
                let id = id.unwrap_or_default();
                let decided = decide(vm, id, false)?;
                let notify = vm
                    .state()
                    .streams
                    .get_mut(&id)
                    .map(|s| Arc::clone(s.notify.get_or_insert_with(Default::default)));
                Ok((decided, notify))
            })?;
            if let Some(decision) = decided {
                return Ok(decision);
            }
            let Some(notify) = notify else {
                return Err(self.failed("the stream's context is gone"));
            };
            if tokio::time::timeout_at(self.deadline, notify.notified())
                .await
                .is_err()
            {
                return Err(FilterError::Stalled {
                    filter: self.inner.name().to_string(),
                });
            }
        }
    }

    /// Runs `start` (a callback, giving the context and what the filter
    /// decided) and the current phase on from there as far as it goes
    /// without waiting, in one critical section.
    fn drive(
        &mut self,
        out: Out<'_>,
        start: impl FnOnce(&mut Vm, &VmTemplate, &mut Option<u32>) -> Result<(u32, Decision), Failed>,
    ) -> Result<Decision, FilterError> {
        let (phase, mut stage, body) = (self.phase, self.stage, self.body);
        let mut finished = false;
        let settled = self.with_vm(|vm, t, id| {
            let (id, decision) = start(vm, t, id)?;
            settle(
                vm,
                t,
                id,
                (phase, &mut stage, body),
                decision,
                &mut finished,
                out,
            )
        });
        self.stage = stage;
        self.finished |= finished;
        settled
    }

    /// The current phase as a [`Step`], from what its first critical
    /// section came to: ended (`end` makes the outcome of a local answer
    /// or none), or paused until the filter decides.
    fn step<'s, T: 's>(
        &'s mut self,
        first: Result<Decision, FilterError>,
        mut out: Out<'s>,
        end: fn(Option<FilterResponse>) -> T,
    ) -> Step<'s, T> {
        match first {
            Err(e) => Step::Ready(Err(e)),
            Ok(Some(local)) => Step::Ready(Ok(end(local))),
            Ok(None) => Step::Wait(Box::pin(async move {
                loop {
                    let decided = Some(self.wait_decision().await?);
                    let settled = self.drive(out.reborrow(), |_, _, id| {
                        Ok((id.unwrap_or_default(), decided))
                    })?;
                    if let Some(local) = settled {
                        return Ok(end(local));
                    }
                }
            })),
        }
    }

    /// Ends a stream its phases did not end (a failure elsewhere, a
    /// deadline): `on_done`, `on_log` and `on_delete`, once.
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let Some(id) = self.id else { return };
        let slot = self.slot;
        let mut guard = slot.vm.lock();
        let Some(vm) = guard.as_mut() else { return };
        if slot.generation.load(Ordering::Acquire) != self.generation {
            // The context went with the VM that held it.
            return;
        }
        if vm.poisoned {
            vm.state().close_stream(id);
            return;
        }
        let result = vm.finish(&self.inner.template, id);
        vm.state().close_stream(id);
        match result {
            Ok(()) => {
                let effects = take_effects(vm);
                drop(guard);
                self.inner.apply(slot, self.generation, effects);
            }
            Err(Failed(reason)) => {
                let waiters = all_waiters(vm);
                drop(guard);
                tracing::error!(filter = self.inner.name(), %reason, "Proxy-Wasm filter failed ending a stream; its VM is rebuilt for the next request");
                for notify in waiters {
                    notify.notify_one();
                }
            }
        }
    }
}

/// Where a phase's end goes: the request (the request phase), or the
/// response and the request lent to it (the response phase).
enum Out<'r> {
    Request(&'r mut FilterRequest),
    Response(&'r mut FilterRequest, &'r mut FilterResponse),
}

impl Out<'_> {
    fn reborrow(&mut self) -> Out<'_> {
        match self {
            Out::Request(request) => Out::Request(request),
            Out::Response(request, response) => Out::Response(request, response),
        }
    }
}

/// In the VM's critical section: takes the current phase on from
/// `decision` as far as it goes without waiting. `None` if the filter
/// paused; else the phase's end, moved straight into `out` (`Some(local)`
/// for a local answer in the request phase; a local answer in the response
/// phase replaces the response). A local answer or the end of the
/// response phase ends the stream too (`on_done`, `on_log`, `on_delete`,
/// with the request head still readable), setting `finished`.
fn settle(
    vm: &mut Vm,
    t: &VmTemplate,
    id: u32,
    (phase, stage, body): (Phase, &mut Stage, Option<(Callback, usize)>),
    mut decision: Decision,
    finished: &mut bool,
    out: Out<'_>,
) -> Result<Decision, Failed> {
    let local = loop {
        match decision {
            None => return Ok(None),
            Some(Some(local)) => break Some(local),
            Some(None) => match (*stage, body) {
                (Stage::Headers, Some((which, size))) => {
                    *stage = Stage::Body;
                    let continued = vm.phase(t, id, which, size, true)?;
                    decision = decide(vm, id, continued)?;
                }
                _ => break None,
            },
        }
    };
    let ends = local.is_some() || phase == Phase::Response;
    if ends {
        *finished = true;
        if let Err(Failed(reason)) = vm.finish(t, id) {
            // The answer stands; the VM is rebuilt for the next request.
            tracing::error!(filter = %t.info.name, %reason, "Proxy-Wasm filter failed ending a stream; its VM is rebuilt for the next request");
        }
    }
    let stream = vm
        .state()
        .streams
        .get_mut(&id)
        .ok_or_else(|| Failed("the stream's context is gone".into()))?;
    let decided = match out {
        Out::Request(request) => {
            restore(
                request,
                std::mem::take(&mut stream.request),
                Some(std::mem::take(&mut stream.request_body)),
            );
            Some(local)
        }
        Out::Response(request, response) => {
            match local {
                Some(local) => *response = local,
                None => {
                    let head = std::mem::take(&mut stream.response);
                    if let Some(status) = head
                        .pseudo(head::STATUS)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<u16>().ok())
                        .filter(|s| (100..=999).contains(s))
                    {
                        response.status = status;
                    }
                    response.headers = head.headers;
                    response.body = std::mem::take(&mut stream.response_body);
                }
            }
            restore(request, std::mem::take(&mut stream.request), None);
            Some(None)
        }
    };
    if ends {
        vm.state().close_stream(id);
    }
    Ok(decided)
}

fn verdict(local: Option<FilterResponse>) -> Verdict {
    match local {
        Some(local) => Verdict::Respond(local),
        None => Verdict::Continue,
    }
}

/// A request's head in the ABI's form, its parts moved, not copied.
fn head_of(request: &mut FilterRequest) -> Head {
    let mut head = Head {
        pseudo: Default::default(),
        headers: std::mem::take(&mut request.headers),
    };
    let take = |text: &mut String| Some(Value::Text(std::mem::take(text)));
    head.pseudo[head::METHOD] = take(&mut request.method);
    head.pseudo[head::PATH] = take(&mut request.path);
    head.pseudo[head::AUTHORITY] = take(&mut request.authority);
    head.pseudo[head::SCHEME] = Some(Value::Static(request.scheme.as_bytes()));
    head
}

/// Moves a head (and a body) back into `request`. The method and the
/// path the server needs are kept valid: an empty method is `GET`, a path
/// that does not start with `/` is `/`.
fn restore(request: &mut FilterRequest, mut head: Head, body: Option<Vec<u8>>) {
    let method = head.take_text(head::METHOD);
    request.method = if method.is_empty() {
        "GET".into()
    } else {
        method
    };
    let path = head.take_text(head::PATH);
    request.path = if path.starts_with('/') {
        path
    } else {
        "/".into()
    };
    request.authority = head.take_text(head::AUTHORITY);
    request.headers = head.headers;
    if let Some(body) = body {
        request.body = body;
    }
}

impl FilterStream for ProxyStream<'_> {
    fn request<'a>(&'a mut self, request: &'a mut FilterRequest) -> Step<'a, Verdict> {
        let max_body = self.inner.template.info.limits.max_body;
        if request.body.len() > max_body {
            let mut headers = HeaderMap::new();
            headers.insert(
                waxosuit_cap_http_server::filter::HeaderName::from_static("content-type"),
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Step::Ready(Ok(Verdict::Respond(FilterResponse {
                status: 413,
                headers,
                body: b"Request body too large for a filter".to_vec(),
            })));
        }
        let Some(info) = self.info.take() else {
            return Step::Ready(Err(self.failed("the stream was already used")));
        };
        // Moved in and back out: nothing is copied for a filter that only
        // looks.
        let head = head_of(request);
        let count = head.len();
        let body = std::mem::take(&mut request.body);
        let has_body = !body.is_empty();
        self.phase = Phase::Request;
        self.stage = Stage::Headers;
        self.body = has_body.then_some((Callback::RequestBody, body.len()));
        // The whole phase in one critical section when the filter decides
        // without waiting.
        let first = self.drive(Out::Request(&mut *request), |vm, t, id| {
            let new = vm.next_context_id();
            vm.state().open_stream(new, info, head, body);
            *id = Some(new);
            vm.context_create(t, new)?;
            let continued = vm.phase(t, new, Callback::RequestHeaders, count, !has_body)?;
            Ok((new, decide(vm, new, continued)?))
        });
        self.step(first, Out::Request(request), verdict)
    }

    fn response<'a>(
        &'a mut self,
        request: &'a mut FilterRequest,
        response: &'a mut FilterResponse,
    ) -> Step<'a, ()> {
        if self.id.is_none() || self.finished {
            return Step::Ready(Ok(()));
        }
        let max_body = self.inner.template.info.limits.max_body;
        if response.body.len() > max_body {
            return Step::Ready(Err(self.failed(format!(
                "the response body ({} bytes) is larger than the filter may buffer \
                 (limits.max_body_kib = {} KiB)",
                response.body.len(),
                max_body >> 10
            ))));
        }
        // The request as the actor got it is readable again, in the
        // response phase and `on_log`, as in Envoy; lent, not copied.
        let request_head = head_of(request);
        let mut head = Head {
            pseudo: Default::default(),
            headers: std::mem::take(&mut response.headers),
        };
        head.pseudo[head::STATUS] = Some(head::status_digits(response.status));
        let count = head.len();
        let body = std::mem::take(&mut response.body);
        let has_body = !body.is_empty();
        self.phase = Phase::Response;
        self.stage = Stage::Headers;
        self.body = has_body.then_some((Callback::ResponseBody, body.len()));
        let first = self.drive(Out::Response(&mut *request, &mut *response), |vm, t, id| {
            let id = id.unwrap_or_default();
            let stream = vm
                .state()
                .streams
                .get_mut(&id)
                .ok_or_else(|| Failed("the stream's context is gone".into()))?;
            stream.phase = Phase::Response;
            stream.resumed = false;
            stream.request = request_head;
            stream.response = head;
            stream.response_body = body;
            let continued = vm.phase(t, id, Callback::ResponseHeaders, count, !has_body)?;
            Ok((id, decide(vm, id, continued)?))
        });
        // A local answer in the response phase has replaced the response.
        self.step(first, Out::Response(request, response), drop)
    }
}

impl Drop for ProxyStream<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Reads the stream's state after a callback that returned `continued`.
fn decide(vm: &mut Vm, id: u32, continued: bool) -> Result<Decision, Failed> {
    let Some(stream) = vm.state().streams.get_mut(&id) else {
        return Err(Failed("the stream's context is gone".into()));
    };
    if stream.closed {
        return Err(Failed("the filter closed the stream".into()));
    }
    if let Some(local) = stream.local.take() {
        return Ok(Some(Some(local)));
    }
    if continued || stream.resumed {
        stream.resumed = false;
        return Ok(Some(None));
    }
    Ok(None)
}
