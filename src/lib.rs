//! imbed: an embeddable instant-messaging engine.
//!
//! A host program (C, C++, Swift, Kotlin or Rust) creates a [`Server`], starts
//! it, and becomes a WebSocket IM server speaking protocol v1
//! (`docs/PROTOCOL.md`); or creates a [`Client`], a resilient connection to
//! such a server for apps. The C ABI (`include/imbed.h`) is a thin layer over
//! this Rust API, which is all that is public here.
//!
//! Module map, in the direction the layers call each other:
//! - `ffi`: the C ABI: handles, status codes, the panic boundary.
//! - `server`: the engine: lifecycle, accept loop, handshake, auth, sessions.
//! - `client`: the client role: reconnect, outbox, cursors, sync.
//! - `router`: who is online where, groups, presence, fan-out.
//! - `store`: where messages live: memory and SQLite.
//! - `host`: what the engine tells its host: events, logs, the auth callback.
//! - leaves: [`config`] (the configuration), `protocol` (wire frames, ids,
//!   error and close codes), `runtime`, `tls`.
//!
//! Cargo features `server` and `client` (both default) choose the roles; a
//! build with one of them leaves the other's code and dependencies out.

#![warn(missing_docs, unreachable_pub)]
// A one-role build leaves the other role's helpers in the shared modules
// (protocol, host, ffi) unused; the full build, which CI lints, still
// catches dead code.
#![cfg_attr(not(all(feature = "server", feature = "client")), allow(dead_code, unused_imports))]

#[cfg(feature = "jemalloc")]
mod allocator;
#[cfg(feature = "client")]
mod client;
pub mod config;
mod error;
mod ffi;
mod host;
mod protocol;
#[cfg(feature = "server")]
mod router;
mod runtime;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod store;
mod tls;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;

#[cfg(feature = "client")]
pub use client::{Client, Hint};
pub use config::{ClientConfig, Config};
pub use error::Error;
pub use host::{Event, Host, LogLevel};
#[cfg(feature = "server")]
pub use server::core::Stats;
#[cfg(feature = "server")]
pub use server::push::PendingPush;
#[cfg(feature = "server")]
pub use server::{GroupMembers, OnlineDevice, SearchResults, Server, StoredFile};
#[cfg(feature = "server")]
pub use store::{MessageKind, MessageState, NewMessage, Placement, StoredMessage, amend::Reactions};
