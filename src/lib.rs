//! imbed: an embeddable instant-messaging engine.
//!
//! A host program (C, C++, Swift, Kotlin or Rust) creates a [`Server`], starts
//! it, and becomes a WebSocket IM server speaking protocol v1
//! (`docs/PROTOCOL.md`). The C ABI in [`ffi`] is a thin layer over this Rust API.
//!
//! Module map:
//! - [`config`]: the one configuration, parsed and validated from JSON.
//! - [`protocol`]: wire frames, identifiers, error codes.
//! - [`store`]: the [`store::Store`] trait and its implementations.
//! - [`router`]: who is online where, and fan-out to their sessions.
//! - [`server`]: the engine: lifecycle, accept loop, handshake, auth, sessions.
//! - [`client`]: the client role: a resilient connection to an imbed server.
//! - [`host`]: what the engine tells its host: events, logs, the auth callback.
//! - [`runtime`]: the tokio runtime each server or client owns.
//! - [`ffi`]: the C ABI.

pub mod client;
pub mod config;
pub mod error;
pub mod ffi;
pub mod host;
pub mod protocol;
pub mod router;
pub mod runtime;
pub mod server;
pub mod store;
mod tls;

pub use config::Config;
pub use error::Error;
pub use host::{Event, Host, LogLevel};
pub use server::Server;
pub use server::core::Stats;
pub use store::Placement;
