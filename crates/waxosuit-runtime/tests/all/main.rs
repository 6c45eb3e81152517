//! Integration tests of `waxosuit-runtime`, one binary split by topic.

mod cache;
mod common;
mod concurrency;
mod console;
mod deadlines;
mod echo;
mod failures;
mod host_calls;
mod hot_swap;
mod inline;
mod names;
mod nesting;
mod pooling;
mod preinit;
mod sandbox;
mod spans;
