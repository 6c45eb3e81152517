//! The `env.proxy_*` host functions. Each one reads the guest's arguments
//! with bounds checks, acts on the effective context, and answers a
//! `proxy_status_t`; a pointer outside memory is `BadArgument`, never a
//! host panic. Functions with no meaning here answer the status the SDKs
//! tolerate (the table is in `docs/proxy-wasm.md`).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker, Result};
use waxosuit_cap_http_server::filter::FilterResponse;

use crate::abi::{self, MetricKind, Status, buffer, map, serialize_map, stream};
use crate::clip::Clipped;
use crate::head::Head;
use crate::state::{FilterInfo, PendingCall, Phase, VmState};

/// Longest log line kept; the rest is cut.
pub const MAX_LOG_BYTES: usize = 16 << 10;
/// Most pairs in a header map a filter sets.
pub const MAX_MAP_PAIRS: usize = 1024;
/// Most bytes a header map a filter sets may serialize to.
pub const MAX_MAP_BYTES: usize = 256 << 10;
/// Most `proxy_http_call`s of one VM waiting for their answer, counting
/// those its predecessors in the same slot sent and still wait for.
pub const MAX_CALLS_IN_FLIGHT: usize = 64;
/// Longest callout timeout; a filter asking for more gets this.
pub const MAX_CALLOUT_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest tick period: a filter asking for less gets this.
pub const MIN_TICK: Duration = Duration::from_millis(10);
/// Most properties a context may set.
const MAX_PROPERTIES: usize = 64;
/// Most bytes (paths and values) of the properties a context sets: held
/// by the host for each request in flight, outside the VM's memory limit,
/// so 64 of 64 KiB each (4 MiB per request) was too much.
pub const MAX_PROPERTY_BYTES: usize = 64 << 10;

type C<'a> = Caller<'a, VmState>;

fn status(s: Status) -> Result<i32> {
    Ok(s.code())
}

fn offset(ptr: i32) -> usize {
    // Guest pointers are u32 in wasm32.
    ptr as u32 as usize
}

/// Longest name, key or path a host call reads (header names included).
const MAX_NAME_READ: usize = 8 << 10;

/// Copies `len` bytes at `ptr` out of guest memory. Nothing is copied past
/// what any host call accepts (the filter's body limit, or a header map's):
/// a guest cannot make the host copy its whole memory to be refused.
pub(crate) fn read(caller: &C<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    if offset(len) > caller.data().filter.limits.max_body.max(MAX_MAP_BYTES) {
        return None;
    }
    let memory = caller.data().memory?;
    let data = memory.data(caller);
    let start = offset(ptr);
    let end = start.checked_add(offset(len))?;
    data.get(start..end).map(<[u8]>::to_vec)
}

fn read_str(caller: &C<'_>, ptr: i32, len: i32) -> Option<String> {
    if offset(len) > MAX_NAME_READ {
        return None;
    }
    String::from_utf8(read(caller, ptr, len)?).ok()
}

pub(crate) fn write(caller: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Option<()> {
    let memory = caller.data().memory?;
    let data = memory.data_mut(caller);
    let start = offset(ptr);
    let end = start.checked_add(bytes.len())?;
    data.get_mut(start..end)?.copy_from_slice(bytes);
    Some(())
}

/// The status of a write of a result into guest memory.
fn written(result: Option<()>) -> Status {
    match result {
        Some(()) => Status::Ok,
        None => Status::BadArgument,
    }
}

fn write_u32(caller: &mut C<'_>, ptr: i32, value: u32) -> Option<()> {
    write(caller, ptr, &value.to_le_bytes())
}

fn write_u64(caller: &mut C<'_>, ptr: i32, value: u64) -> Option<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest: memory from its allocator, then the pointer
/// and length at `ret_ptr` and `ret_len`. A trap in the allocator is the
/// guest's and fails the callback.
fn give(caller: &mut C<'_>, bytes: &[u8], ret_ptr: i32, ret_len: i32) -> Result<Status> {
    let Some(alloc) = caller.data().alloc.clone() else {
        return Ok(Status::InternalFailure);
    };
    let Ok(len) = i32::try_from(bytes.len()) else {
        return Ok(Status::BadArgument);
    };
    let at = alloc.call(&mut *caller, len)?;
    if at == 0 && !bytes.is_empty() {
        return Ok(Status::InternalFailure);
    }
    let written = write(caller, at, bytes)
        .and_then(|()| write_u32(caller, ret_ptr, at as u32))
        .and_then(|()| write_u32(caller, ret_len, len as u32));
    Ok(if written.is_some() {
        Status::Ok
    } else {
        Status::BadArgument
    })
}

/// Hands over `bytes`, or a null pointer and zero length when there are
/// none (the SDKs read that as "no value").
fn give_or_null(caller: &mut C<'_>, bytes: &[u8], ret_ptr: i32, ret_len: i32) -> Result<Status> {
    if bytes.is_empty() {
        let ok = write_u32(caller, ret_ptr, 0).and_then(|()| write_u32(caller, ret_len, 0));
        return Ok(if ok.is_some() {
            Status::Ok
        } else {
            Status::BadArgument
        });
    }
    give(caller, bytes, ret_ptr, ret_len)
}

/// Registers every host function of the ABI.
pub(crate) fn link(linker: &mut Linker<VmState>) -> Result<()> {
    let env = "env";
    linker.func_wrap(env, "proxy_log", proxy_log)?;
    linker.func_wrap(env, "proxy_get_log_level", |mut c: C<'_>, ret: i32| {
        status(written(write_u32(&mut c, ret, current_log_level())))
    })?;
    linker.func_wrap(
        env,
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| status(written(write_u64(&mut c, ret, now_nanos()))),
    )?;
    linker.func_wrap(
        env,
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, millis: i32| {
            let millis = millis as u32;
            let period = (millis > 0).then(|| Duration::from_millis(millis.into()).max(MIN_TICK));
            c.data_mut().tick = Some(period);
            status(Status::Ok)
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| {
            let id = id as u32;
            let state = c.data_mut();
            if id == state.root_id || state.streams.contains_key(&id) {
                state.effective = id;
                status(Status::Ok)
            } else {
                status(Status::BadArgument)
            }
        },
    )?;
    // `on_done` is answered at once; a filter that would finish later gets
    // no wait, so there is nothing to be done.
    linker.func_wrap(env, "proxy_done", |_: C<'_>| status(Status::Ok))?;
    linker.func_wrap(env, "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap(env, "proxy_get_buffer_status", proxy_get_buffer_status)?;
    linker.func_wrap(env, "proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    linker.func_wrap(
        env,
        "proxy_get_header_map_pairs",
        proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        env,
        "proxy_set_header_map_pairs",
        proxy_set_header_map_pairs,
    )?;
    linker.func_wrap(env, "proxy_get_header_map_size", proxy_get_header_map_size)?;
    linker.func_wrap(
        env,
        "proxy_get_header_map_value",
        proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        env,
        "proxy_add_header_map_value",
        |c: C<'_>, m: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            edit_map(c, m, kp, kl, Some((vp, vl)), Edit::Add)
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_replace_header_map_value",
        |c: C<'_>, m: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            edit_map(c, m, kp, kl, Some((vp, vl)), Edit::Replace)
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_remove_header_map_value",
        |c: C<'_>, m: i32, kp: i32, kl: i32| edit_map(c, m, kp, kl, None, Edit::Remove),
    )?;
    linker.func_wrap(env, "proxy_continue_stream", |mut c: C<'_>, kind: i32| {
        let state = c.data_mut();
        let id = state.effective;
        let Some(stream) = state.streams.get_mut(&id) else {
            return status(Status::NotFound);
        };
        let wanted = match stream.phase {
            Phase::Request => stream::HTTP_REQUEST,
            Phase::Response => stream::HTTP_RESPONSE,
        };
        if kind != stream::HTTP_REQUEST && kind != stream::HTTP_RESPONSE {
            // TCP streams: there are none here.
            return status(Status::BadArgument);
        }
        if kind != wanted {
            // The other direction is not paused: nothing to resume, which
            // the SDKs expect to be fine (a late callout answer resuming a
            // request already on its way).
            return status(Status::Ok);
        }
        stream.resumed = true;
        wake(state, id);
        status(Status::Ok)
    })?;
    linker.func_wrap(env, "proxy_close_stream", |mut c: C<'_>, _kind: i32| {
        let state = c.data_mut();
        let id = state.effective;
        let Some(stream) = state.streams.get_mut(&id) else {
            return status(Status::NotFound);
        };
        stream.closed = true;
        wake(state, id);
        status(Status::Ok)
    })?;
    // ABI 0.1.0 spellings: resume the request or the response.
    linker.func_wrap(env, "proxy_continue_request", |mut c: C<'_>| {
        resume(&mut c, Phase::Request)
    })?;
    linker.func_wrap(env, "proxy_continue_response", |mut c: C<'_>| {
        resume(&mut c, Phase::Response)
    })?;
    linker.func_wrap(env, "proxy_clear_route_cache", |_: C<'_>| {
        status(Status::Ok)
    })?;
    linker.func_wrap(
        env,
        "proxy_get_configuration",
        |_: C<'_>, _: i32, _: i32| status(Status::Unimplemented),
    )?;
    // gRPC status of a gRPC call: there are none.
    linker.func_wrap(
        env,
        "proxy_get_status",
        |_: C<'_>, _: i32, _: i32, _: i32| status(Status::NotFound),
    )?;
    linker.func_wrap(env, "proxy_send_local_response", proxy_send_local_response)?;
    linker.func_wrap(env, "proxy_http_call", proxy_http_call)?;
    linker.func_wrap(
        env,
        "proxy_grpc_call",
        |_: C<'_>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32| { status(Status::InternalFailure) },
    )?;
    linker.func_wrap(
        env,
        "proxy_grpc_stream",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            status(Status::InternalFailure)
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_grpc_send",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32| status(Status::NotFound),
    )?;
    linker.func_wrap(env, "proxy_grpc_cancel", |_: C<'_>, _: i32| {
        status(Status::NotFound)
    })?;
    linker.func_wrap(env, "proxy_grpc_close", |_: C<'_>, _: i32| {
        status(Status::NotFound)
    })?;
    linker.func_wrap(
        env,
        "proxy_set_shared_data",
        |c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| {
            let (Some(key), Some(value)) = (read_str(&c, kp, kl), read(&c, vp, vl)) else {
                return status(Status::BadArgument);
            };
            status(c.data().filter.shared.set(&key, &value, cas as u32))
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, rp: i32, rl: i32, rc: i32| {
            let Some(key) = read_str(&c, kp, kl) else {
                return status(Status::BadArgument);
            };
            let Some((value, cas)) = c.data().filter.shared.get(&key) else {
                return status(Status::NotFound);
            };
            let given = give_or_null(&mut c, &value, rp, rl)?;
            if given != Status::Ok {
                return status(given);
            }
            status(written(write_u32(&mut c, rc, cas)))
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, ret: i32| {
            let Some(name) = read_str(&c, np, nl) else {
                return status(Status::BadArgument);
            };
            let slot = c.data().slot;
            match c.data().filter.shared.register_queue(&name, slot) {
                Ok(id) => status(written(write_u32(&mut c, ret, id))),
                Err(s) => status(s),
            }
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, _vp: i32, _vl: i32, np: i32, nl: i32, ret: i32| {
            // One VM id per filter: the vm_id argument names nothing else.
            let Some(name) = read_str(&c, np, nl) else {
                return status(Status::BadArgument);
            };
            match c.data().filter.shared.resolve_queue(&name) {
                Some(id) => status(written(write_u32(&mut c, ret, id))),
                None => status(Status::NotFound),
            }
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: i32, vp: i32, vl: i32| {
            let Some(value) = read(&c, vp, vl) else {
                return status(Status::BadArgument);
            };
            match c.data().filter.shared.enqueue(id as u32, &value) {
                Ok(()) => {
                    let ready = &mut c.data_mut().queue_ready;
                    if !ready.contains(&(id as u32)) {
                        ready.push(id as u32);
                    }
                    status(Status::Ok)
                }
                Err(s) => status(s),
            }
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: i32, rp: i32, rl: i32| match c.data().filter.shared.dequeue(id as u32) {
            Ok(value) => status(give(&mut c, &value, rp, rl)?),
            Err(s) => status(s),
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, np: i32, nl: i32, ret: i32| {
            let (Some(kind), Some(name)) = (MetricKind::from_abi(kind), read_str(&c, np, nl))
            else {
                return status(Status::BadArgument);
            };
            match c.data().filter.shared.metrics.define(kind, &name) {
                Ok(id) => status(written(write_u32(&mut c, ret, id))),
                Err(s) => status(s),
            }
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_increment_metric",
        |c: C<'_>, id: i32, delta: i64| {
            status(c.data().filter.shared.metrics.increment(id as u32, delta))
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_record_metric",
        |c: C<'_>, id: i32, value: i64| {
            status(
                c.data()
                    .filter
                    .shared
                    .metrics
                    .record(id as u32, value as u64),
            )
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ret: i32| {
            let Some(value) = c.data().filter.shared.metrics.value(id as u32) else {
                return status(Status::NotFound);
            };
            status(written(write_u64(&mut c, ret, value)))
        },
    )?;
    linker.func_wrap(env, "proxy_get_property", proxy_get_property)?;
    linker.func_wrap(
        env,
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| {
            let (Some(path), Some(value)) = (read(&c, pp, pl), read(&c, vp, vl)) else {
                return status(Status::BadArgument);
            };
            if path.len() > crate::shared::MAX_NAME_BYTES
                || value.len() > crate::shared::MAX_VALUE_BYTES
            {
                return status(Status::BadArgument);
            }
            let path = property_path(&path);
            let state = c.data_mut();
            let properties = match state.streams.get_mut(&state.effective) {
                Some(stream) => &mut stream.properties,
                None => &mut state.properties,
            };
            if !properties.contains_key(&path) && properties.len() >= MAX_PROPERTIES {
                return status(Status::BadArgument);
            }
            let held: usize = properties
                .iter()
                .filter(|(k, _)| **k != path)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            if held + path.len() + value.len() > MAX_PROPERTY_BYTES {
                return status(Status::BadArgument);
            }
            properties.insert(path, value);
            status(Status::Ok)
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_call_foreign_function",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| status(Status::NotFound),
    )?;
    crate::wasi::link(linker)?;
    Ok(())
}

/// Marks stream `id` to be woken once the callback returns (once, however
/// often the filter asks).
fn wake(state: &mut VmState, id: u32) {
    if !state.wake.contains(&id) {
        state.wake.push(id);
    }
}

fn resume(c: &mut C<'_>, phase: Phase) -> Result<i32> {
    let state = c.data_mut();
    let id = state.effective;
    match state.streams.get_mut(&id) {
        Some(stream) if stream.phase == phase => {
            stream.resumed = true;
            wake(state, id);
            status(Status::Ok)
        }
        Some(_) => status(Status::Ok),
        None => status(Status::NotFound),
    }
}

/// The host's log level in the ABI's numbering.
fn current_log_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        _ => 4,
    }
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn proxy_log(c: C<'_>, level: i32, ptr: i32, len: i32) -> Result<i32> {
    if !may_log(&c.data().filter) {
        // Over the budget: not even read. `Ok`, as the line was taken.
        return status(Status::Ok);
    }
    let len = offset(len).min(MAX_LOG_BYTES);
    let Some(bytes) = read(&c, ptr, len as i32) else {
        return status(Status::BadArgument);
    };
    let message = String::from_utf8_lossy(&bytes);
    log_line(c.data(), level, &message);
    status(Status::Ok)
}

/// Whether the filter may write one more log line now: at most
/// `waxosuit_runtime::console::MAX_LINES_PER_SECOND` a second for all its
/// VMs (a filter logging in a loop would otherwise fill the host's log,
/// and disk, at memory speed). The lines dropped in a second are counted
/// and said once the next second's first line is written.
///
/// The host's own warnings about what a filter did (a callout refused or
/// failed, an unknown upstream) draw on the same budget: a filter can
/// cause them in a loop as easily as it can log.
pub(crate) fn may_log(filter: &FilterInfo) -> bool {
    use waxosuit_runtime::console::{MAX_LINES_PER_SECOND, Verdict};
    match filter.log_budget.take(std::time::Instant::now()) {
        Verdict::Drop => false,
        Verdict::Write { dropped_before } => {
            if dropped_before > 0 {
                tracing::warn!(
                    target: "waxosuit::filter",
                    filter = filter.name.as_str(),
                    filter_key = filter.key.as_str(),
                    dropped = dropped_before,
                    "filter wrote more than {MAX_LINES_PER_SECOND} log lines in a second; the rest were dropped"
                );
            }
            true
        }
    }
}

/// One line of a filter's log in the host's, at the filter's level; the
/// caller asked [`may_log`] first.
pub(crate) fn log_line(state: &VmState, level: i32, message: &str) {
    let filter = state.filter.name.as_str();
    let key = state.filter.key.as_str();
    match level {
        0 => tracing::trace!(target: "waxosuit::filter", filter, filter_key = key, "{message}"),
        1 => tracing::debug!(target: "waxosuit::filter", filter, filter_key = key, "{message}"),
        2 => tracing::info!(target: "waxosuit::filter", filter, filter_key = key, "{message}"),
        3 => tracing::warn!(target: "waxosuit::filter", filter, filter_key = key, "{message}"),
        _ => tracing::error!(target: "waxosuit::filter", filter, filter_key = key, "{message}"),
    }
}

/// A buffer's bytes, read-only view.
fn buffer_of(state: &VmState, kind: i32) -> Option<&[u8]> {
    match kind {
        buffer::HTTP_REQUEST_BODY => state
            .streams
            .get(&state.effective)
            .map(|s| s.request_body.as_slice()),
        buffer::HTTP_RESPONSE_BODY => state
            .streams
            .get(&state.effective)
            .map(|s| s.response_body.as_slice()),
        buffer::HTTP_CALL_RESPONSE_BODY => state.callout.as_ref().map(|c| c.body.as_slice()),
        buffer::PLUGIN_CONFIGURATION => Some(state.filter.config.as_slice()),
        buffer::VM_CONFIGURATION => Some(&[]),
        _ => None,
    }
}

fn proxy_get_buffer_bytes(
    mut c: C<'_>,
    kind: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    let Some(bytes) = buffer_of(c.data(), kind) else {
        return status(Status::NotFound);
    };
    // Past the end is nothing, which the SDKs read as no bytes.
    let start = offset(start).min(bytes.len());
    let end = start.saturating_add(offset(max)).min(bytes.len());
    let slice = bytes[start..end].to_vec();
    status(give_or_null(&mut c, &slice, ret_ptr, ret_len)?)
}

fn proxy_get_buffer_status(mut c: C<'_>, kind: i32, ret_len: i32, ret_flags: i32) -> Result<i32> {
    let Some(len) = buffer_of(c.data(), kind).map(<[u8]>::len) else {
        return status(Status::NotFound);
    };
    let ok = write_u32(&mut c, ret_len, u32::try_from(len).unwrap_or(u32::MAX))
        .and_then(|()| write_u32(&mut c, ret_flags, 0));
    status(if ok.is_some() {
        Status::Ok
    } else {
        Status::BadArgument
    })
}

fn proxy_set_buffer_bytes(
    mut c: C<'_>,
    kind: i32,
    start: i32,
    size: i32,
    data_ptr: i32,
    data_len: i32,
) -> Result<i32> {
    let Some(data) = read(&c, data_ptr, data_len) else {
        return status(Status::BadArgument);
    };
    let max_body = c.data().filter.limits.max_body;
    let Some(stream) = c.data_mut().stream() else {
        return status(Status::NotFound);
    };
    let body = match kind {
        buffer::HTTP_REQUEST_BODY => &mut stream.request_body,
        buffer::HTTP_RESPONSE_BODY => &mut stream.response_body,
        _ => return status(Status::BadArgument),
    };
    let start = offset(start).min(body.len());
    let end = start.saturating_add(offset(size)).min(body.len());
    if body.len() - (end - start) + data.len() > max_body {
        return status(Status::BadArgument);
    }
    body.splice(start..end, data);
    status(Status::Ok)
}

/// A header map, read-only.
enum MapRef<'a> {
    Head(&'a Head),
    Pairs(&'a [(String, Vec<u8>)]),
}

impl MapRef<'_> {
    fn serialize(&self) -> Vec<u8> {
        match self {
            MapRef::Head(head) => head.serialize(),
            MapRef::Pairs(pairs) => serialize_map(pairs),
        }
    }

    fn size(&self) -> usize {
        match self {
            MapRef::Head(head) => head.serialized_size(),
            MapRef::Pairs(pairs) => abi::serialized_map_size(pairs),
        }
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            MapRef::Head(head) => head.get(key).map(<[u8]>::to_vec),
            MapRef::Pairs(pairs) => pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone()),
        }
    }
}

fn map_of(state: &VmState, kind: i32) -> Option<MapRef<'_>> {
    let stream = state.streams.get(&state.effective);
    match kind {
        map::HTTP_REQUEST_HEADERS => stream.map(|s| MapRef::Head(&s.request)),
        map::HTTP_RESPONSE_HEADERS => stream.map(|s| MapRef::Head(&s.response)),
        map::HTTP_REQUEST_TRAILERS | map::HTTP_RESPONSE_TRAILERS => {
            stream.map(|_| MapRef::Pairs(&[]))
        }
        map::HTTP_CALL_RESPONSE_HEADERS => state
            .callout
            .as_ref()
            .map(|c| MapRef::Pairs(c.headers.as_slice())),
        map::HTTP_CALL_RESPONSE_TRAILERS => state.callout.as_ref().map(|_| MapRef::Pairs(&[])),
        _ => None,
    }
}

fn map_of_mut(state: &mut VmState, kind: i32) -> Option<&mut Head> {
    let stream = state.streams.get_mut(&state.effective)?;
    match kind {
        map::HTTP_REQUEST_HEADERS => Some(&mut stream.request),
        map::HTTP_RESPONSE_HEADERS => Some(&mut stream.response),
        _ => None,
    }
}

fn proxy_get_header_map_pairs(mut c: C<'_>, kind: i32, ret_ptr: i32, ret_len: i32) -> Result<i32> {
    let Some(map) = map_of(c.data(), kind) else {
        return status(Status::NotFound);
    };
    let bytes = map.serialize();
    status(give(&mut c, &bytes, ret_ptr, ret_len)?)
}

fn proxy_get_header_map_size(mut c: C<'_>, kind: i32, ret: i32) -> Result<i32> {
    let Some(map) = map_of(c.data(), kind) else {
        return status(Status::NotFound);
    };
    let size = map.size();
    status(written(write_u32(
        &mut c,
        ret,
        u32::try_from(size).unwrap_or(u32::MAX),
    )))
}

fn proxy_set_header_map_pairs(mut c: C<'_>, kind: i32, ptr: i32, len: i32) -> Result<i32> {
    if offset(len) > MAX_MAP_BYTES {
        return status(Status::BadArgument);
    }
    let Some(bytes) = read(&c, ptr, len) else {
        return status(Status::BadArgument);
    };
    let Some(pairs) = abi::parse_map(&bytes, MAX_MAP_PAIRS) else {
        return status(Status::BadArgument);
    };
    let Some(map) = map_of_mut(c.data_mut(), kind) else {
        return status(Status::NotFound);
    };
    status(map.set_all(pairs))
}

fn proxy_get_header_map_value(
    mut c: C<'_>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    let Some(key) = read_str(&c, key_ptr, key_len) else {
        return status(Status::BadArgument);
    };
    let Some(map) = map_of(c.data(), kind) else {
        return status(Status::NotFound);
    };
    let Some(value) = map.get(&key) else {
        return status(Status::NotFound);
    };
    status(give(&mut c, &value, ret_ptr, ret_len)?)
}

enum Edit {
    Add,
    Replace,
    Remove,
}

fn edit_map(
    mut c: C<'_>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    value: Option<(i32, i32)>,
    edit: Edit,
) -> Result<i32> {
    let Some(key) = read_str(&c, key_ptr, key_len) else {
        return status(Status::BadArgument);
    };
    let value = match value {
        Some((ptr, len)) => match read(&c, ptr, len) {
            Some(v) => v,
            None => return status(Status::BadArgument),
        },
        None => Vec::new(),
    };
    let Some(map) = map_of_mut(c.data_mut(), kind) else {
        return status(Status::NotFound);
    };
    let grows = !matches!(edit, Edit::Remove);
    if grows
        && (map.len() >= MAX_MAP_PAIRS
            || map.serialized_size() + key.len() + value.len() + 10 > MAX_MAP_BYTES)
    {
        return status(Status::BadArgument);
    }
    status(match edit {
        Edit::Add => map.add(&key, value, false),
        Edit::Replace => map.add(&key, value, true),
        Edit::Remove => map.remove(&key),
    })
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut c: C<'_>,
    code: i32,
    _details_ptr: i32,
    _details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    _grpc_status: i32,
) -> Result<i32> {
    if offset(headers_len) > MAX_MAP_BYTES || offset(body_len) > c.data().filter.limits.max_body {
        return status(Status::BadArgument);
    }
    let (Some(body), Some(headers)) = (
        read(&c, body_ptr, body_len),
        read(&c, headers_ptr, headers_len),
    ) else {
        return status(Status::BadArgument);
    };
    let Some(pairs) = abi::parse_map(&headers, MAX_MAP_PAIRS) else {
        return status(Status::BadArgument);
    };
    let mut head = Head::default();
    if head.set_all(pairs) != Status::Ok {
        return status(Status::BadArgument);
    }
    let headers = head.headers;
    let Ok(code) = u16::try_from(code) else {
        return status(Status::BadArgument);
    };
    if !(100..=999).contains(&code) {
        return status(Status::BadArgument);
    }
    let state = c.data_mut();
    let id = state.effective;
    let Some(stream) = state.streams.get_mut(&id) else {
        return status(Status::NotFound);
    };
    if stream.local.is_some() {
        // Exactly once per stream.
        return status(Status::BadArgument);
    }
    stream.local = Some(FilterResponse {
        status: code,
        headers,
        body,
    });
    wake(state, id);
    status(Status::Ok)
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut c: C<'_>,
    upstream_ptr: i32,
    upstream_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    body_ptr: i32,
    body_len: i32,
    _trailers_ptr: i32,
    _trailers_len: i32,
    timeout_ms: i32,
    ret_id: i32,
) -> Result<i32> {
    if offset(headers_len) > MAX_MAP_BYTES || offset(body_len) > c.data().filter.limits.max_body {
        return status(Status::BadArgument);
    }
    let (Some(upstream), Some(headers), Some(body)) = (
        read_str(&c, upstream_ptr, upstream_len),
        read(&c, headers_ptr, headers_len),
        read(&c, body_ptr, body_len),
    ) else {
        return status(Status::BadArgument);
    };
    if !c.data().filter.upstreams.contains_key(&upstream) {
        if may_log(&c.data().filter) {
            tracing::warn!(
                filter = %c.data().filter.name,
                upstream = %Clipped(&upstream),
                "Proxy-Wasm filter called an upstream its manifest entry does not name; add it \
                 under the filter's `upstreams:`"
            );
        }
        return status(Status::BadArgument);
    }
    let Some(headers) = abi::parse_map(&headers, MAX_MAP_PAIRS) else {
        return status(Status::BadArgument);
    };
    let only = |name: &str| {
        let mut values = headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        values.next().filter(|_| values.next().is_none())
    };
    // The path is appended to the upstream's URL: anything but an absolute
    // path (`:1234/…`, `@host/…`) would change where the call goes. One of
    // each: a second `:path` was the one used, unchecked.
    let path_ok = only(":path").is_some_and(|v| v.first() == Some(&b'/'));
    if only(":method").is_none() || !path_ok {
        return status(Status::BadArgument);
    }
    let state = c.data_mut();
    let sent = state.calls_in_flight.load(Ordering::Acquire);
    if sent + state.pending_calls.len() >= MAX_CALLS_IN_FLIGHT {
        return status(Status::InternalFailure);
    }
    let id = state.next_call_id;
    state.next_call_id = state.next_call_id.wrapping_add(1).max(1);
    // 0 means no timeout of its own: the longest allowed.
    let timeout = match timeout_ms as u32 {
        0 => MAX_CALLOUT_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)).min(MAX_CALLOUT_TIMEOUT),
    };
    state.pending_calls.push(PendingCall {
        id,
        upstream,
        headers,
        body,
        timeout,
    });
    status(written(write_u32(&mut c, ret_id, id)))
}

/// `a\0b\0c` → `a.b.c`: the key properties are stored and looked up under.
fn property_path(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches('\0')
        .replace('\0', ".")
}

fn proxy_get_property(
    mut c: C<'_>,
    path_ptr: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    if offset(path_len) > crate::shared::MAX_NAME_BYTES {
        return status(Status::BadArgument);
    }
    let Some(raw) = read(&c, path_ptr, path_len) else {
        return status(Status::BadArgument);
    };
    let path = property_path(&raw);
    let Some(value) = crate::properties::lookup(c.data(), &path) else {
        return status(Status::NotFound);
    };
    status(give_or_null(&mut c, &value, ret_ptr, ret_len)?)
}
