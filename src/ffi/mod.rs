//! The C ABI, and nothing else: handles, status codes, the panic boundary,
//! and the bridge from [`crate::Host`] to C callbacks.
//!
//! Every export converts its arguments, checks them, calls the Rust API and
//! converts the result; behaviour lives in the Rust API, which is tested on
//! its own. Conventions are in `docs/C-API.md`; `include/imbed.h` is generated
//! from this module by cbindgen.

// The exports are `pub` in a private module: C reaches them by symbol
// (`#[no_mangle]`), Rust embedders use the Rust API instead.
#![allow(unreachable_pub)]

mod boundary;
#[cfg(feature = "client")]
mod client;
mod config;
mod engine;
mod event;
mod handles;
mod listener;
#[cfg(feature = "server")]
mod notices;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod server_messages;
mod status;
mod version;
