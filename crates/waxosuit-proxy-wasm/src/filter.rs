//! [`ProxyFilter`]: a loaded filter, one VM per connection thread, and the
//! stream driver that takes a request through the Proxy-Wasm callbacks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use waxosuit_cap_http_server::filter::{
    FilterError, FilterRequest, FilterResponse, FilterStream, HeaderMap, HeaderValue, HttpFilter,
    StreamInfo, Verdict,
};

use crate::callout::Callouts;
use crate::head::Head;
use crate::state::{PendingCall, Phase, StreamData};
use crate::vm::{Callback, Failed, Vm, VmTemplate};

/// Most VMs one filter runs (one per connection thread).
const MAX_SLOTS: usize = 256;

/// A loaded Proxy-Wasm filter: what a chain holds.
pub struct ProxyFilter {
    pub(crate) inner: Arc<FilterInner>,
}

pub(crate) struct FilterInner {
    pub(crate) template: VmTemplate,
    pub(crate) callouts: Callouts,
    slots: RwLock<Vec<Arc<Slot>>>,
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
}

/// What a callback asked for, done once the VM is unlocked.
#[derive(Default)]
struct Effects {
    calls: Vec<PendingCall>,
    tick: Option<Option<Duration>>,
    wake: Vec<Arc<Notify>>,
    queues: Vec<u32>,
}

fn take_effects(vm: &mut Vm) -> Effects {
    let state = vm.state();
    let wake = std::mem::take(&mut state.wake)
        .into_iter()
        .filter_map(|id| state.streams.get(&id).and_then(|s| s.notify.clone()))
        .collect();
    Effects {
        calls: std::mem::take(&mut state.pending_calls),
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
        let slot = inner.slot(0);
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
        for slot in self.inner.slots.read().iter() {
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
            slots: RwLock::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn name(&self) -> &str {
        &self.template.info.name
    }

    fn slot(&self, index: usize) -> Arc<Slot> {
        let index = index.min(MAX_SLOTS - 1);
        if let Some(slot) = self.slots.read().get(index) {
            return Arc::clone(slot);
        }
        let mut slots = self.slots.write();
        while slots.len() <= index {
            let next = slots.len();
            slots.push(Arc::new(Slot {
                index: next,
                vm: Mutex::new(None),
                generation: AtomicU64::new(0),
                ticker: Mutex::new(None),
            }));
        }
        Arc::clone(&slots[index])
    }

    /// A new VM for `slot` (the caller holds its lock).
    fn build(&self, slot: &Slot) -> Result<(Vm, Effects), Failed> {
        slot.generation.fetch_add(1, Ordering::AcqRel);
        let mut vm = Vm::start(&self.template, slot.index)?;
        let effects = take_effects(&mut vm);
        Ok((vm, effects))
    }

    /// Does what a callback asked for: callouts, timers, wake-ups, queues.
    fn apply(self: &Arc<Self>, slot: &Arc<Slot>, generation: u64, effects: Effects) {
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
        for call in effects.calls {
            let inner = Arc::clone(self);
            let slot = Arc::clone(slot);
            runtime.spawn(async move { inner.callout(slot, generation, call).await });
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
                let weak = Arc::downgrade(self);
                runtime.spawn(async move {
                    let Some(inner) = weak.upgrade() else { return };
                    let slot = inner.slot(index);
                    let generation = slot.generation.load(Ordering::Acquire);
                    inner.on_root(&slot, generation, |vm, t| vm.queue_ready(t, queue));
                });
            }
        }
    }

    /// Runs a root-context callback on `slot`'s VM if it is still the one of
    /// `generation`; false if that VM is gone or failed now.
    fn on_root(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        generation: u64,
        call: impl FnOnce(&mut Vm, &VmTemplate) -> Result<(), Failed>,
    ) -> bool {
        let mut guard = slot.vm.lock();
        let Some(vm) = guard.as_mut() else {
            return false;
        };
        if vm.poisoned || slot.generation.load(Ordering::Acquire) != generation {
            return false;
        }
        match call(vm, &self.template) {
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

    async fn callout(self: Arc<Self>, slot: Arc<Slot>, generation: u64, call: PendingCall) {
        let id = call.id;
        // `proxy_http_call` only queues calls to named upstreams.
        let reply = match self.template.info.upstreams.get(&call.upstream) {
            Some(base) => self.callouts.perform(self.name(), base, call).await,
            None => None,
        };
        self.on_root(&slot, generation, |vm, t| {
            let reply = reply.unwrap_or_default();
            let (headers, body) = (reply.headers.len(), reply.body.len());
            let state = vm.state();
            state.calls_in_flight = state.calls_in_flight.saturating_sub(1);
            state.callout = Some(reply);
            let result = vm.http_call_response(t, id, headers, body);
            vm.state().callout = None;
            result
        });
    }
}

async fn tick(weak: Weak<FilterInner>, slot: Arc<Slot>, generation: u64, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire)
            || !inner.on_root(&slot, generation, |vm, t| vm.tick(t))
        {
            return;
        }
    }
}

impl HttpFilter for ProxyFilter {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn open(&self, info: &StreamInfo) -> Box<dyn FilterStream> {
        Box::new(ProxyStream {
            slot: self.inner.slot(info.thread),
            inner: Arc::clone(&self.inner),
            generation: 0,
            id: None,
            info: info.clone(),
        })
    }
}

/// One request through one filter.
struct ProxyStream {
    inner: Arc<FilterInner>,
    slot: Arc<Slot>,
    /// The VM generation the context lives in.
    generation: u64,
    /// The HTTP context, once created.
    id: Option<u32>,
    info: StreamInfo,
}

impl ProxyStream {
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
        let slot = Arc::clone(&self.slot);
        let mut guard = slot.vm.lock();
        let mut built = Effects::default();
        if self.id.is_none() && guard.as_ref().is_none_or(|vm| vm.poisoned) {
            // The old VM's streams are already failing: it trapped.
            *guard = None;
            match self.inner.build(&slot) {
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
        self.inner.apply(&slot, generation, built);
        self.inner.apply(&slot, generation, effects);
        for notify in waiters {
            notify.notify_one();
        }
        result.map_err(|Failed(reason)| self.failed(reason))
    }

    /// After a callback whose verdict is `first`: continue, answer locally,
    /// or wait for the filter to decide (a callout, a timer) until the
    /// request's deadline.
    async fn settle(&mut self, first: Decision) -> Result<Option<FilterResponse>, FilterError> {
        if let Some(decision) = first {
            return Ok(decision);
        }
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
            if tokio::time::timeout_at(self.info.deadline, notify.notified())
                .await
                .is_err()
            {
                return Err(FilterError::Stalled {
                    filter: self.inner.name().to_string(),
                });
            }
        }
    }

    /// The head and body of `phase` as the filter left them, moved out of
    /// its VM.
    fn take(&mut self, phase: Phase) -> Result<(Head, Vec<u8>), FilterError> {
        self.with_vm(|vm, _, id| {
            let stream = vm
                .state()
                .streams
                .get_mut(&id.unwrap_or_default())
                .ok_or_else(|| Failed("the stream's context is gone".into()))?;
            Ok(match phase {
                // The request's head stays readable in the response
                // phase and `on_log`, as in Envoy; its values are shared,
                // not copied.
                Phase::Request => (
                    stream.request.clone(),
                    std::mem::take(&mut stream.request_body),
                ),
                Phase::Response => (
                    std::mem::take(&mut stream.response),
                    std::mem::take(&mut stream.response_body),
                ),
            })
        })
    }

    /// Runs a callback and reads what the filter decided in it.
    fn phase(&mut self, which: Callback, size: usize, end: bool) -> Result<Decision, FilterError> {
        self.with_vm(|vm, t, id| {
            let id = id.unwrap_or_default();
            let continued = vm.phase(t, id, which, size, end)?;
            decide(vm, id, continued)
        })
    }
}

/// What a callback left: `None` to wait, `Some(None)` to go on,
/// `Some(Some(response))` to answer locally.
type Decision = Option<Option<FilterResponse>>;

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

#[async_trait]
impl FilterStream for ProxyStream {
    async fn request(&mut self, request: &mut FilterRequest) -> Result<Verdict, FilterError> {
        let max_body = self.inner.template.info.limits.max_body;
        if request.body.len() > max_body {
            let mut headers = HeaderMap::new();
            headers.insert(
                waxosuit_cap_http_server::filter::HeaderName::from_static("content-type"),
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(Verdict::Respond(FilterResponse {
                status: 413,
                headers,
                body: b"Request body too large for a filter".to_vec(),
            }));
        }
        // Moved in and back out: nothing is copied for a filter that only
        // looks.
        let head = Head {
            pseudo: vec![
                (":method", std::mem::take(&mut request.method).into_bytes()),
                (":path", std::mem::take(&mut request.path).into_bytes()),
                (
                    ":authority",
                    std::mem::take(&mut request.authority).into_bytes(),
                ),
                (":scheme", request.scheme.as_bytes().to_vec()),
            ],
            headers: std::mem::take(&mut request.headers),
        };
        let count = head.len();
        let body = std::mem::take(&mut request.body);
        let has_body = !body.is_empty();
        let body_len = body.len();
        let info = self.info.clone();
        let first = self.with_vm(move |vm, t, id| {
            let new = vm.next_context_id();
            vm.state().streams.insert(
                new,
                StreamData {
                    info,
                    phase: Phase::Request,
                    request: head,
                    request_body: body,
                    response: Head::default(),
                    response_body: Vec::new(),
                    resumed: false,
                    local: None,
                    closed: false,
                    notify: None,
                    properties: Default::default(),
                },
            );
            *id = Some(new);
            vm.context_create(t, new)?;
            let continued = vm.phase(t, new, Callback::RequestHeaders, count, !has_body)?;
            decide(vm, new, continued)
        })?;
        if let Some(local) = self.settle(first).await? {
            return Ok(Verdict::Respond(local));
        }
        if has_body {
            let decision = self.phase(Callback::RequestBody, body_len, true)?;
            if let Some(local) = self.settle(decision).await? {
                return Ok(Verdict::Respond(local));
            }
        }
        let (mut head, body) = self.take(Phase::Request)?;
        // The buffers move back into the request: no copy unless a filter
        // wrote bytes that are not UTF-8.
        let mut text = |name: &str| {
            head.pseudo
                .iter_mut()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| {
                    String::from_utf8(std::mem::take(v))
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                })
                .unwrap_or_default()
        };
        let method = text(":method");
        request.method = if method.is_empty() {
            "GET".into()
        } else {
            method
        };
        let path = text(":path");
        request.path = if path.starts_with('/') {
            path
        } else {
            "/".into()
        };
        request.authority = text(":authority");
        request.headers = head.headers;
        request.body = body;
        Ok(Verdict::Continue)
    }

    async fn response(&mut self, response: &mut FilterResponse) -> Result<(), FilterError> {
        if self.id.is_none() {
            return Ok(());
        }
        let max_body = self.inner.template.info.limits.max_body;
        if response.body.len() > max_body {
            return Err(self.failed(format!(
                "the response body ({} bytes) is larger than the filter may buffer \
                 (limits.max_body_kib = {} KiB)",
                response.body.len(),
                max_body >> 10
            )));
        }
        let head = Head {
            pseudo: vec![(":status", response.status.to_string().into_bytes())],
            headers: std::mem::take(&mut response.headers),
        };
        let count = head.len();
        let body = std::mem::take(&mut response.body);
        let has_body = !body.is_empty();
        let body_len = body.len();
        let first = self.with_vm(move |vm, t, id| {
            let id = id.unwrap_or_default();
            let stream = vm
                .state()
                .streams
                .get_mut(&id)
                .ok_or_else(|| Failed("the stream's context is gone".into()))?;
            stream.phase = Phase::Response;
            stream.resumed = false;
            stream.response = head;
            stream.response_body = body;
            let continued = vm.phase(t, id, Callback::ResponseHeaders, count, !has_body)?;
            decide(vm, id, continued)
        })?;
        if let Some(local) = self.settle(first).await? {
            *response = local;
            return Ok(());
        }
        if has_body {
            let decision = self.phase(Callback::ResponseBody, body_len, true)?;
            if let Some(local) = self.settle(decision).await? {
                *response = local;
                return Ok(());
            }
        }
        let (head, body) = self.take(Phase::Response)?;
        if let Some(status) = head
            .pseudo(":status")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|s| (100..=999).contains(s))
        {
            response.status = status;
        }
        response.headers = head.headers;
        response.body = body;
        Ok(())
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let slot = Arc::clone(&self.slot);
        let mut guard = slot.vm.lock();
        let Some(vm) = guard.as_mut() else { return };
        if vm.poisoned || slot.generation.load(Ordering::Acquire) != self.generation {
            return;
        }
        match vm.finish(&self.inner.template, id) {
            Ok(()) => {
                let effects = take_effects(vm);
                drop(guard);
                self.inner.apply(&slot, self.generation, effects);
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
