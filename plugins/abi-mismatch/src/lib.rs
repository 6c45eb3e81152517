//! A plugin from the future: it exports the entry point but answers with a
//! table whose `abi_version` the host does not speak. Only the version field
//! is defined, because a host must read nothing else from a table of an
//! unknown version.

use waxosuit_plugin_abi::{HostTable, PluginTable};

/// An ABI version no host speaks.
pub const FUTURE_VERSION: u32 = 999;

#[repr(C)]
struct FutureTable {
    abi_version: u32,
}

static TABLE: FutureTable = FutureTable {
    abi_version: FUTURE_VERSION,
};

/// The entry point, answering with a table of [`FUTURE_VERSION`].
///
/// # Safety
///
/// Callable with any pointer: it is never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn waxosuit_provider_v1(_host: *const HostTable) -> *const PluginTable {
    (&raw const TABLE).cast()
}
