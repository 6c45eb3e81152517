//! One instance of a filter module with its root context: a "VM" in
//! Proxy-Wasm terms. Callbacks run synchronously, each under the filter's
//! deadline (epoch interruption) and fuel; a callback that fails poisons
//! the VM, which is then rebuilt for the next request.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use wasmtime::{InstancePre, Store, StoreLimitsBuilder, Trap, TypedFunc};
use waxosuit_runtime::Runtime;

use crate::state::{FilterInfo, VmState};

type Cb1 = TypedFunc<i32, ()>;
type Cb2 = TypedFunc<(i32, i32), ()>;
type Cb2R = TypedFunc<(i32, i32), i32>;
type Cb3R = TypedFunc<(i32, i32, i32), i32>;
type Cb5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The callbacks a filter exports; missing ones are skipped (an SDK filter
/// exports all of them).
struct Callbacks {
    context_create: Option<Cb2>,
    vm_start: Option<Cb2R>,
    configure: Option<Cb2R>,
    request_headers: Option<Cb3R>,
    request_body: Option<Cb3R>,
    response_headers: Option<Cb3R>,
    response_body: Option<Cb3R>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<Cb1>,
    delete: Option<Cb1>,
    tick: Option<Cb1>,
    http_call_response: Option<Cb5>,
    queue_ready: Option<Cb2>,
}

/// Settings every VM of a filter shares.
pub(crate) struct VmTemplate {
    /// Kept so its epoch ticker, which enforces the deadline, lives as long
    /// as the filter does.
    pub(crate) runtime: Runtime,
    pub(crate) pre: InstancePre<VmState>,
    pub(crate) info: Arc<FilterInfo>,
    /// Epoch ticks per callback.
    pub(crate) deadline_ticks: u64,
    pub(crate) fuel: Option<u64>,
    pub(crate) fuel_metering: bool,
}

/// A running VM.
pub(crate) struct Vm {
    store: Store<VmState>,
    /// Shared, not cloned per call: cloning a `TypedFunc` takes a lock in
    /// the engine's type registry.
    cb: Arc<Callbacks>,
    next_id: u32,
    /// Set when a callback failed: the instance may be inconsistent.
    pub(crate) poisoned: bool,
}

/// A callback that failed, with the reason for the log.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

/// The id of the root context of every VM.
pub(crate) const ROOT_ID: u32 = 1;

impl Vm {
    /// Instantiates the module, runs its initialisation, creates the root
    /// context and starts and configures it. `Err` is a failed deploy.
    pub(crate) fn start(
        template: &VmTemplate,
        slot: usize,
        calls_in_flight: Arc<AtomicUsize>,
    ) -> Result<Vm, Failed> {
        let info = &template.info;
        let limits = StoreLimitsBuilder::new()
            .memory_size(info.limits.max_memory)
            .table_elements(waxosuit_runtime::MAX_TABLE_ELEMENTS)
            .instances(1)
            .tables(4)
            .memories(1)
            .build();
        let mut store = Store::new(
            template.runtime.engine(),
            VmState::new(Arc::clone(info), slot, calls_in_flight, limits),
        );
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        let mut vm = Vm {
            store,
            cb: Arc::new(Callbacks::none()),
            next_id: ROOT_ID + 1,
            poisoned: false,
        };
        vm.arm(template)?;
        let instance = template
            .pre
            .instantiate(&mut vm.store)
            .map_err(|e| vm.failed(template, &e))?;
        let memory = instance.get_memory(&mut vm.store, "memory");
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut vm.store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut vm.store, "malloc"))
            .ok();
        let (Some(memory), Some(alloc)) = (memory, alloc) else {
            return Err(Failed(
                "the module exports no `memory` or no `proxy_on_memory_allocate`/`malloc`; \
                 build it with a Proxy-Wasm SDK"
                    .into(),
            ));
        };
        vm.store.data_mut().memory = Some(memory);
        vm.store.data_mut().alloc = Some(alloc);
        vm.store.data_mut().root_id = ROOT_ID;
        let store = &mut vm.store;
        vm.cb = Arc::new(Callbacks {
            context_create: instance
                .get_typed_func(&mut *store, "proxy_on_context_create")
                .ok(),
            vm_start: instance
                .get_typed_func(&mut *store, "proxy_on_vm_start")
                .ok(),
            configure: instance
                .get_typed_func(&mut *store, "proxy_on_configure")
                .ok(),
            request_headers: instance
                .get_typed_func(&mut *store, "proxy_on_request_headers")
                .ok(),
            request_body: instance
                .get_typed_func(&mut *store, "proxy_on_request_body")
                .ok(),
            response_headers: instance
                .get_typed_func(&mut *store, "proxy_on_response_headers")
                .ok(),
            response_body: instance
                .get_typed_func(&mut *store, "proxy_on_response_body")
                .ok(),
            done: instance.get_typed_func(&mut *store, "proxy_on_done").ok(),
            log: instance.get_typed_func(&mut *store, "proxy_on_log").ok(),
            delete: instance.get_typed_func(&mut *store, "proxy_on_delete").ok(),
            tick: instance.get_typed_func(&mut *store, "proxy_on_tick").ok(),
            http_call_response: instance
                .get_typed_func(&mut *store, "proxy_on_http_call_response")
                .ok(),
            queue_ready: instance
                .get_typed_func(&mut *store, "proxy_on_queue_ready")
                .ok(),
        });
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut vm.store, "_initialize") {
            vm.arm(template)?;
            init.call(&mut vm.store, ())
                .map_err(|e| vm.failed(template, &e))?;
        }
        vm.store.data_mut().effective = ROOT_ID;
        if let Some(f) = Arc::clone(&vm.cb).context_create.as_ref() {
            vm.run(template, |s| f.call(s, (ROOT_ID as i32, 0)))?;
        }
        if let Some(f) = Arc::clone(&vm.cb).vm_start.as_ref() {
            // The SDKs expect the root context's id here, not the unused 0
            // the spec describes.
            let ok = vm.run(template, |s| f.call(s, (ROOT_ID as i32, 0)))?;
            if ok == 0 {
                return Err(Failed("proxy_on_vm_start returned false".into()));
            }
        }
        if let Some(f) = Arc::clone(&vm.cb).configure.as_ref() {
            let size = i32::try_from(info.config.len()).unwrap_or(i32::MAX);
            let ok = vm.run(template, |s| f.call(s, (ROOT_ID as i32, size)))?;
            if ok == 0 {
                return Err(Failed(
                    "proxy_on_configure returned false: the filter refused its configuration \
                     (`config:` in the manifest); its log lines above may say why"
                        .into(),
                ));
            }
        }
        Ok(vm)
    }

    pub(crate) fn state(&mut self) -> &mut VmState {
        self.store.data_mut()
    }

    /// A fresh context id: unique in this VM, never reused.
    pub(crate) fn next_context_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(ROOT_ID + 1);
        id
    }

    fn arm(&mut self, template: &VmTemplate) -> Result<(), Failed> {
        self.store.set_epoch_deadline(template.deadline_ticks);
        if template.fuel_metering {
            self.store
                .set_fuel(template.fuel.unwrap_or(u64::MAX))
                .map_err(|e| Failed(format!("cannot set fuel: {e}")))?;
        }
        Ok(())
    }

    /// Runs one callback under the deadline and fuel.
    fn run<T>(
        &mut self,
        template: &VmTemplate,
        call: impl FnOnce(&mut Store<VmState>) -> wasmtime::Result<T>,
    ) -> Result<T, Failed> {
        self.arm(template)?;
        match call(&mut self.store) {
            Ok(value) => match self.store.data_mut().fault.take() {
                Some(fault) => {
                    self.poisoned = true;
                    Err(Failed(fault))
                }
                None => Ok(value),
            },
            Err(e) => Err(self.failed(template, &e)),
        }
    }

    fn failed(&mut self, template: &VmTemplate, error: &wasmtime::Error) -> Failed {
        self.poisoned = true;
        if let Some(fault) = self.store.data_mut().fault.take() {
            return Failed(fault);
        }
        let limits = &template.info.limits;
        Failed(match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!(
                "a callback ran past the filter's deadline of {} ms (limits.deadline_ms)",
                limits.deadline.as_millis()
            ),
            Some(Trap::OutOfFuel) => "a callback ran out of fuel (limits.fuel)".to_string(),
            // Bounded: a backtrace names functions of any length.
            _ => format!(
                "the filter trapped: {}",
                waxosuit_runtime::engine_text(error)
            ),
        })
    }

    pub(crate) fn context_create(&mut self, t: &VmTemplate, id: u32) -> Result<(), Failed> {
        self.store.data_mut().effective = id;
        let cb = Arc::clone(&self.cb);
        match cb.context_create.as_ref() {
            Some(f) => self.run(t, |s| f.call(s, (id as i32, ROOT_ID as i32))),
            None => Ok(()),
        }
    }

    /// A header or body callback; `Ok(true)` to continue, `Ok(false)` to pause.
    pub(crate) fn phase(
        &mut self,
        t: &VmTemplate,
        id: u32,
        which: Callback,
        size: usize,
        end_of_stream: bool,
    ) -> Result<bool, Failed> {
        self.store.data_mut().effective = id;
        let cb = Arc::clone(&self.cb);
        let f = match which {
            Callback::RequestHeaders => cb.request_headers.as_ref(),
            Callback::RequestBody => cb.request_body.as_ref(),
            Callback::ResponseHeaders => cb.response_headers.as_ref(),
            Callback::ResponseBody => cb.response_body.as_ref(),
        };
        let Some(f) = f else {
            return Ok(true);
        };
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        let action = self.run(t, |s| {
            f.call(s, (id as i32, size, i32::from(end_of_stream)))
        })?;
        Ok(action == crate::abi::ACTION_CONTINUE)
    }

    /// `on_done`, `on_log`, `on_delete`: the end of a stream. The context's
    /// data stays for the caller to read and remove, whatever the
    /// callbacks did.
    pub(crate) fn finish(&mut self, t: &VmTemplate, id: u32) -> Result<(), Failed> {
        self.store.data_mut().effective = id;
        let cb = Arc::clone(&self.cb);
        if let Some(f) = cb.done.as_ref() {
            self.run(t, |s| f.call(s, id as i32))?;
        }
        if let Some(f) = cb.log.as_ref() {
            self.run(t, |s| f.call(s, id as i32))?;
        }
        if let Some(f) = cb.delete.as_ref() {
            self.run(t, |s| f.call(s, id as i32))?;
        }
        Ok(())
    }

    pub(crate) fn tick(&mut self, t: &VmTemplate) -> Result<(), Failed> {
        self.store.data_mut().effective = ROOT_ID;
        let cb = Arc::clone(&self.cb);
        match cb.tick.as_ref() {
            Some(f) => self.run(t, |s| f.call(s, ROOT_ID as i32)),
            None => Ok(()),
        }
    }

    pub(crate) fn queue_ready(&mut self, t: &VmTemplate, queue: u32) -> Result<(), Failed> {
        self.store.data_mut().effective = ROOT_ID;
        let cb = Arc::clone(&self.cb);
        match cb.queue_ready.as_ref() {
            Some(f) => self.run(t, |s| f.call(s, (ROOT_ID as i32, queue as i32))),
            None => Ok(()),
        }
    }

    pub(crate) fn http_call_response(
        &mut self,
        t: &VmTemplate,
        call: u32,
        headers: usize,
        body: usize,
    ) -> Result<(), Failed> {
        self.store.data_mut().effective = ROOT_ID;
        let cb = Arc::clone(&self.cb);
        let Some(f) = cb.http_call_response.as_ref() else {
            return Ok(());
        };
        let headers = i32::try_from(headers).unwrap_or(i32::MAX);
        let body = i32::try_from(body).unwrap_or(i32::MAX);
        self.run(t, |s| {
            f.call(s, (ROOT_ID as i32, call as i32, headers, body, 0))
        })
    }
}

/// The per-stream callbacks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Callback {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
}

impl Callbacks {
    fn none() -> Callbacks {
        Callbacks {
            context_create: None,
            vm_start: None,
            configure: None,
            request_headers: None,
            request_body: None,
            response_headers: None,
            response_body: None,
            done: None,
            log: None,
            delete: None,
            tick: None,
            http_call_response: None,
            queue_ready: None,
        }
    }
}

/// Epoch ticks that cover `deadline` with ticks of `tick` (plus one for
/// the tick under way).
pub(crate) fn ticks(deadline: Duration, tick: Duration) -> u64 {
    let per = tick.as_nanos().max(1);
    u64::try_from(deadline.as_nanos().div_ceil(per))
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}
