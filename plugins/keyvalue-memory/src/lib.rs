//! The in-memory `wascc:keyvalue` provider as a plugin: the very type the
//! host embeds, exported through the SDK, so both paths run the same code.

use waxosuit_cap_keyvalue_memory::MemoryKeyValue;

waxosuit_plugin_sdk::export_provider!(MemoryKeyValue, MemoryKeyValue::new);
