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

#![warn(missing_docs, unreachable_pub)]

mod client;
pub mod config;
mod error;
mod ffi;
mod host;
mod protocol;
mod router;
mod runtime;
mod server;
mod store;
mod tls;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;

pub use client::{Client, Hint};
pub use config::{ClientConfig, Config};
pub use error::Error;
pub use host::{Event, Host, LogLevel};
pub use server::core::Stats;
pub use server::{GroupMembers, Server};
pub use store::{NewMessage, Placement, StoredMessage};
