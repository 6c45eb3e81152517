//! Running the guest: making an instance (store, instantiation,
//! initialisation), one waPC call on it under its deadline, and telling
//! what stopped it. The pool and the call's choice of instance are in the
//! parent module.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use wasmtime::{Store, Trap, UpdateDeadline};

use super::{ActorInner, Generation, Instance};
use crate::error::engine_text;
use crate::host_call::inside_host_call;
use crate::snapshot::INIT_EXPORTS;
use crate::state::{Fault, HostState};
use crate::{HostCallHandler, RuntimeError};

/// Epoch ticks an async guest runs before it yields to the executor (10 ms
/// at the default 5 ms tick): long enough that yielding costs nothing
/// measurable, short enough that a busy guest delays no timer noticeably.
const YIELD_TICKS: u64 = 2;

/// Epoch ticks an inline call may run before its actor switches to fiber
/// instances (50 ms at the default tick). Deadlines count wall time, and a
/// busy machine can deschedule a thread for a few ticks mid-call; a guest
/// that is really computing for this long is rare, and the switch is
/// then worth it.
const INLINE_PATIENCE_TICKS: u64 = 10;

/// Stops an inline call that has computed for [`INLINE_PATIENCE_TICKS`]
/// before making any host call, so that it runs again from the start on a
/// fiber instance, where it yields between slices.
///
/// An inline guest cannot yield: left to run, it would hold its Tokio
/// worker, and the task in that worker's LIFO slot (which no other worker
/// may steal), until it ends. Running it again is safe because nothing of
/// it was seen outside its instance: it made no host call, and the
/// instance, stopped mid-call, is dropped. A call that did make a host
/// call is not run twice; it finishes inline.
#[derive(Debug)]
pub(super) struct GiveWay;

impl std::fmt::Display for GiveWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an inline call computed for long and runs again on a fiber instance")
    }
}

impl std::error::Error for GiveWay {}

/// How one run of a call on one instance ended.
pub(super) enum Invoked {
    Replied(Vec<u8>),
    /// Failed; the instance may be reused only after a clean guest-reported
    /// error.
    Failed {
        error: RuntimeError,
        reusable: bool,
    },
    /// See [`GiveWay`]: the instance is dropped and the call runs again.
    GaveWay,
}

/// Whether a guest run stopped because an inline call gave way.
fn gave_way(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<GiveWay>().is_some()
}

impl<H: HostCallHandler> ActorInner<H> {
    pub(super) async fn instantiate_many(
        &self,
        generation: &Generation<H>,
        count: usize,
    ) -> Result<Vec<Box<Instance<H>>>, RuntimeError> {
        let mut instances = Vec::with_capacity(count);
        for _ in 0..count {
            instances.push(self.instantiate(generation, None).await?);
        }
        Ok(instances)
    }

    /// Creates a ready instance: store, instantiation, and `_start`,
    /// `wapc_init` unless the generation is pre-initialised. Initialisation
    /// runs until tick `end` when the instance is made for a call (it
    /// spends that call's deadline), under a deadline of its own otherwise.
    pub(super) async fn instantiate(
        &self,
        generation: &Generation<H>,
        end: Option<u64>,
    ) -> Result<Box<Instance<H>>, RuntimeError> {
        loop {
            if let Some(instance) = self.instantiate_once(generation, end).await? {
                return Ok(instance);
            }
            // An inline initialisation gave way (`GiveWay`); the actor now
            // makes fiber instances, so this runs once more at most.
        }
    }

    /// [`Self::instantiate`], once: `None` when an inline initialisation
    /// gave way.
    pub(super) async fn instantiate_once(
        &self,
        generation: &Generation<H>,
        end: Option<u64>,
    ) -> Result<Option<Box<Instance<H>>>, RuntimeError> {
        let state = HostState::new(
            Arc::clone(&self.ident),
            self.limits.max_payload,
            self.limits.max_memory,
        );
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Never inline inside another guest's host call: it would run on
        // that guest's stack (see `inside_host_call`).
        let inline_pre = generation
            .pre_inline
            .as_ref()
            .filter(|_| self.ident.inline.load(Ordering::Relaxed) && !inside_host_call());
        let inline = inline_pre.is_some();
        if inline {
            // Sliced like the fiber store below, but an inline guest cannot
            // yield: its running for long moves the actor to fiber
            // instances, and the call itself gives way to one (`GiveWay`)
            // when that is safe.
            store.epoch_deadline_callback(|mut ctx| {
                let state = ctx.data_mut();
                let Some(slice) = state.next_slice(YIELD_TICKS) else {
                    return Ok(UpdateDeadline::Interrupt);
                };
                let ran = state
                    .ident
                    .clock
                    .now()
                    .saturating_sub(state.progress.started);
                if ran >= INLINE_PATIENCE_TICKS && !state.progress.waited {
                    state.progress.waited = true;
                    state.ident.leave_inline("a call computed for long");
                    if !state.progress.called_host {
                        return Err(wasmtime::Error::new(GiveWay));
                    }
                }
                Ok(UpdateDeadline::Continue(slice))
            });
        } else {
            // A guest that computes for long must not hold an executor
            // thread for its whole deadline: timers, I/O and other calls
            // queued behind it on that worker would stall (and tokio cannot
            // steal a worker's LIFO task). So it runs in slices of the
            // deadline and yields between them, until the deadline's tick.
            store.epoch_deadline_callback(|ctx| {
                let Some(slice) = ctx.data().next_slice(YIELD_TICKS) else {
                    return Ok(UpdateDeadline::Interrupt);
                };
                Ok(UpdateDeadline::YieldCustom(
                    slice,
                    Box::pin(tokio::task::yield_now()),
                ))
            });
        }
        let end = end.unwrap_or_else(|| self.clock.now().saturating_add(self.deadline_ticks));
        self.arm_deadline(&mut store, end);
        self.refuel(&mut store)?;
        let instantiated = if let Some(pre) = inline_pre {
            pre.instantiate(&mut store)
        } else {
            generation.pre.instantiate_async(&mut store).await
        };
        let instance = match instantiated {
            Ok(instance) => instance,
            Err(e) if gave_way(&e) => return Ok(None),
            Err(e) if store.data().limiter.denied => {
                return Err(self.classify(&e, store.data_mut()));
            }
            Err(e) => {
                return Err(RuntimeError::Instantiate {
                    actor: self.ident.key.clone(),
                    message: engine_text(&e),
                });
            }
        };
        let memory = instance.get_memory(&mut store, "memory");
        let guest_call = instance.get_typed_func::<(i32, i32), i32>(&mut store, "__guest_call");
        let (Some(memory), Ok(guest_call)) = (memory, guest_call) else {
            // `abi::check_module` verified both exports before linking.
            return Err(RuntimeError::Load {
                actor: self.ident.key.clone(),
                message: "the instance lacks \"memory\" or \"__guest_call\"".into(),
            });
        };
        store.data_mut().memory = Some(memory);
        let init = if generation.preinitialized {
            &[][..]
        } else {
            &INIT_EXPORTS[..]
        };
        for start in init {
            let Ok(func) = instance.get_typed_func::<(), ()>(&mut store, start) else {
                continue;
            };
            let result = if inline {
                func.call(&mut store, ())
            } else {
                func.call_async(&mut store, ()).await
            };
            let state = store.data_mut();
            let fault = state.fault.take();
            match (result, fault) {
                (Err(e), _) if gave_way(&e) => return Ok(None),
                (Err(e), _) => return Err(self.classify(&e, store.data_mut())),
                (Ok(()), Some(fault)) => return Err(self.fault_error(fault)),
                (Ok(()), None) => {}
            }
        }
        let state = store.data_mut();
        state.end_call();
        if std::mem::take(&mut state.progress.waited) {
            self.ident.leave_inline("its initialisation had to wait");
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Box::new(Instance {
            store,
            guest_call,
            generation: generation.id,
            inline,
        })))
    }

    /// Starts the guest's run under the deadline ending at tick `end`, with
    /// its first slice. Host calls read `end` from the state.
    pub(super) fn arm_deadline(&self, store: &mut Store<HostState<H>>, end: u64) {
        let now = self.clock.now();
        let left = end.saturating_sub(now);
        let state = store.data_mut();
        state.progress.started = now;
        state.progress.end = end;
        store.set_epoch_deadline(left.min(YIELD_TICKS));
    }

    pub(super) fn refuel(&self, store: &mut Store<HostState<H>>) -> Result<(), RuntimeError> {
        if self.runtime.config.fuel_metering {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| RuntimeError::Config(format!("cannot set fuel: {e:#}")))?;
        }
        Ok(())
    }

    /// Runs one waPC conversation on `instance`, under the deadline ending
    /// at tick `end`.
    pub(super) async fn invoke(
        &self,
        instance: &mut Instance<H>,
        op: &str,
        payload: &[u8],
        end: u64,
    ) -> Invoked {
        let store = &mut instance.store;
        store.data_mut().begin_call(op, payload);
        store.data_mut().limiter.denied = false;
        self.arm_deadline(store, end);
        if let Err(error) = self.refuel(store) {
            return Invoked::Failed {
                error,
                reusable: true,
            };
        }
        // Both lengths are bounded by `max_payload`, which is below i32::MAX.
        let lengths = (
            i32::try_from(op.len()).unwrap_or(i32::MAX),
            i32::try_from(payload.len()).unwrap_or(i32::MAX),
        );
        // Without async host functions the store needs no fiber: a plain
        // call is markedly cheaper (see `RuntimeConfig::inline_calls`).
        let result = if instance.inline {
            instance.guest_call.call(&mut *store, lengths)
        } else {
            instance.guest_call.call_async(&mut *store, lengths).await
        };
        let state = store.data_mut();
        if std::mem::take(&mut state.progress.waited) {
            self.ident.leave_inline("a call had to wait");
        }
        let failed = |error, reusable| Invoked::Failed { error, reusable };
        let outcome = match result {
            Err(e) if gave_way(&e) => Invoked::GaveWay,
            Err(e) => failed(self.classify(&e, state), false),
            Ok(code) => {
                if let Some(fault) = state.fault.take() {
                    failed(self.fault_error(fault), false)
                } else if code == 0 {
                    let message = state
                        .wapc
                        .guest_error
                        .take()
                        .unwrap_or_else(|| "No error message set for call failure".to_owned());
                    failed(self.guest_error(message), true)
                } else if let Some(response) = state.wapc.guest_response.take() {
                    Invoked::Replied(response)
                } else {
                    let message = state.wapc.guest_error.take().unwrap_or_else(|| {
                        "No error message OR response set for call success".to_owned()
                    });
                    failed(self.guest_error(message), true)
                }
            }
        };
        state.end_call();
        outcome
    }

    pub(super) fn guest_error(&self, message: String) -> RuntimeError {
        RuntimeError::GuestError {
            actor: self.ident.key.clone(),
            message,
        }
    }

    pub(super) fn fault_error(&self, fault: Fault) -> RuntimeError {
        match fault {
            Fault::Protocol(message) => self.guest_error(message),
            Fault::PayloadTooLarge { what, size } => RuntimeError::PayloadTooLarge {
                actor: self.ident.key.clone(),
                what,
                size,
                limit: self.limits.max_payload,
            },
            Fault::NameTooLong { what, size, limit } => RuntimeError::NameTooLong {
                actor: self.ident.key.clone(),
                what,
                size,
                limit,
            },
            Fault::HostCallDeadline(pending) => RuntimeError::Deadline {
                actor: self.ident.key.clone(),
                limit: self.limits.deadline,
                waiting_on: Some(pending),
            },
        }
    }

    /// Maps an engine error to the limit or trap that caused it.
    pub(super) fn classify(
        &self,
        error: &wasmtime::Error,
        state: &mut HostState<H>,
    ) -> RuntimeError {
        let actor = self.ident.key.clone();
        // A host call abandoned at the deadline is the cause of the stop,
        // even if a `memory.grow` was refused (and handled) earlier.
        if matches!(state.fault, Some(Fault::HostCallDeadline(_)))
            && let Some(fault) = state.fault.take()
        {
            return self.fault_error(fault);
        }
        if state.limiter.denied {
            return RuntimeError::MemoryLimit {
                actor,
                limit: self.limits.max_memory,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                return RuntimeError::Deadline {
                    actor,
                    limit: self.limits.deadline,
                    waiting_on: None,
                };
            }
            Some(Trap::OutOfFuel) => {
                return RuntimeError::FuelExhausted {
                    actor,
                    limit: self.limits.fuel.unwrap_or(u64::MAX),
                };
            }
            _ => {}
        }
        if let Some(fault) = state.fault.take() {
            // The guest trapped after a host-detected violation (e.g. it
            // aborted on a refused payload): the violation is the cause.
            return self.fault_error(fault);
        }
        RuntimeError::Trap {
            actor,
            message: engine_text(error),
        }
    }
}
