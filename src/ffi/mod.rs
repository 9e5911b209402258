//! The C ABI, and nothing else: handles, status codes, the panic boundary,
//! and the bridge from [`crate::Host`] to C callbacks.
//!
//! Every export converts its arguments, checks them, calls the Rust API and
//! converts the result; behaviour lives in the Rust API, which is tested on
//! its own. Conventions are in `docs/C-API.md`; `include/imbed.h` is generated
//! from this module by cbindgen.

mod boundary;
mod client;
mod engine;
mod handles;
mod listener;
mod server;
mod status;
mod version;

pub use boundary::imbed_last_error;
pub use client::*;
pub use listener::{imbed_event, imbed_event_kind, imbed_listener, imbed_log_level};
pub use server::*;
pub use status::{imbed_status, imbed_status_str};
pub use version::{IMBED_MAX_ID_LEN, imbed_version};
