//! The WASI subset filters get (`wasi_snapshot_preview1`): enough for a
//! `wasm32-wasip1` build of an SDK filter to start and print, nothing that
//! reaches files, sockets, the host's environment or its arguments. Actors
//! get no WASI at all.

use std::sync::OnceLock;
use std::time::Instant;

use wasmtime::{Caller, Linker, Result};

use crate::abi::WASI;
use crate::hostcalls::{MAX_LOG_BYTES, log_line, may_log, now_nanos, read, write};
use crate::state::VmState;

type C<'a> = Caller<'a, VmState>;

/// WASI errno values used here.
const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;

/// Most bytes one `random_get` fills.
pub const MAX_RANDOM_BYTES: usize = 64 << 10;

fn monotonic_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn put_u32(c: &mut C<'_>, ptr: i32, value: u32) -> i32 {
    match write(c, ptr, &value.to_le_bytes()) {
        Some(()) => SUCCESS,
        None => EFAULT,
    }
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(WASI, "fd_write", fd_write)?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: C<'_>, id: i32, _precision: i64, ret: i32| {
            let now = match id {
                0 => now_nanos(),
                1 => u64::try_from(monotonic_base().elapsed().as_nanos()).unwrap_or(u64::MAX),
                _ => return Ok(EINVAL),
            };
            Ok(match write(&mut c, ret, &now.to_le_bytes()) {
                Some(()) => SUCCESS,
                None => EFAULT,
            })
        },
    )?;
    linker.func_wrap(WASI, "random_get", |mut c: C<'_>, ptr: i32, len: i32| {
        let len = len as u32 as usize;
        if len > MAX_RANDOM_BYTES {
            return Ok(EINVAL);
        }
        let mut bytes = vec![0u8; len];
        rand::fill(&mut bytes[..]);
        Ok(match write(&mut c, ptr, &bytes) {
            Some(()) => SUCCESS,
            None => EFAULT,
        })
    })?;
    // An empty environment and no arguments: never the host's.
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(WASI, name, |mut c: C<'_>, count: i32, size: i32| {
            let first = put_u32(&mut c, count, 0);
            if first != SUCCESS {
                return Ok(first);
            }
            Ok(put_u32(&mut c, size, 0))
        })?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(WASI, name, |_: C<'_>, _: i32, _: i32| Ok(SUCCESS))?;
    }
    linker.func_wrap(WASI, "proc_exit", |mut c: C<'_>, code: i32| -> Result<()> {
        let message = format!("the filter called proc_exit({code})");
        c.data_mut().fault = Some(message.clone());
        Err(wasmtime::Error::msg(message))
    })?;
    Ok(())
}

/// stdout → the host log at INFO, stderr at ERROR, one line per call, cut
/// at [`MAX_LOG_BYTES`]; every byte is reported written so a filter does
/// not retry.
fn fd_write(mut c: C<'_>, fd: i32, iovs: i32, count: i32, ret: i32) -> Result<i32> {
    let level = match fd {
        1 => 2,
        2 => 4,
        _ => return Ok(EBADF),
    };
    let count = count as u32 as usize;
    if count > 1024 {
        return Ok(EINVAL);
    }
    let Some(table) = read(&c, iovs, (count * 8) as i32) else {
        return Ok(EFAULT);
    };
    // Over the log budget, the bytes are reported written, not read.
    let write = may_log(&c.data().filter);
    let mut text = Vec::new();
    let mut total: u32 = 0;
    for iov in table.chunks_exact(8) {
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        total = total.saturating_add(len);
        let room = MAX_LOG_BYTES.saturating_sub(text.len());
        let take = (len as usize).min(room);
        if write && take > 0 {
            let Some(bytes) = read(&c, ptr, take as i32) else {
                return Ok(EFAULT);
            };
            text.extend_from_slice(&bytes);
        }
    }
    let line = String::from_utf8_lossy(&text);
    let line = line.trim_end_matches('\n');
    if !line.is_empty() {
        log_line(c.data(), level, line);
    }
    Ok(put_u32(&mut c, ret, total))
}
