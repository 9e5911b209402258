//! The engine's configuration, parsed from the JSON the host passes: the
//! server's ([`Config`]) and the client role's ([`ClientConfig`]).
//!
//! Every key is optional unless said otherwise. Unknown keys, wrong types and
//! bad values are rejected at parse time with a message that names the
//! field, so a host learns about a typo when it creates the server, not when
//! a user connects.

mod client;
mod layers;
mod notify;
mod server;

pub use client::{ClientConfig, EventsConfig, Reconnect};
pub use layers::merge_json;
pub use notify::{PushConfig, ReceiptsConfig};
pub use server::{
    AuthConfig, ClusterConfig, Config, FilesConfig, GroupsConfig, HttpConfig, Limits, MemoryLimits, MessagesConfig,
    OriginsConfig, Retention, ServerEventsConfig, StoreConfig, TlsConfig,
};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Deserializes `text`, naming the field of any error.
fn parse_named<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Error::InvalidConfig(e.inner().to_string())
        } else {
            Error::InvalidConfig(format!("{path}: {}", e.inner()))
        }
    })?;
    de.end()
        .map_err(|e| Error::InvalidConfig(format!("trailing characters: {e}")))?;
    Ok(value)
}

/// The error for a bad value of `field`.
fn bad<T>(field: &str, why: impl std::fmt::Display) -> Result<T, Error> {
    Err(Error::InvalidConfig(format!("{field}: {why}")))
}

/// How events reach the host (`events.delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventDelivery {
    /// The listener's callbacks, on a thread the engine owns.
    #[default]
    Callback,
    /// The host takes them from the queue itself, woken by a file descriptor.
    Poll,
}

/// Log levels, most severe first. `Off` forwards nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Failures.
    Error,
    /// Trouble the engine recovered from.
    Warn,
    /// Lifecycle: started, stopped, listening.
    Info,
    /// Per-connection detail.
    Debug,
    /// Per-frame detail.
    Trace,
}
