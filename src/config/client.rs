//! The client role's configuration.

use serde::Deserialize;

use super::{EventDelivery, LogLevel};
use super::{bad, parse_named};
use crate::error::Error;

/// The configuration of a client (the client role), parsed from JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The server: `ws://host:port/ws` or `wss://…`. Optional when `urls` is given.
    #[serde(default)]
    pub url: String,
    /// More servers (nodes of one service) to try, in order, after `url`:
    /// an attempt that fails to come up moves to the next, round and round.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// A PEM file of root certificates trusted for `wss://` besides the
    /// public web's: a private CA, or a server's self-signed certificate.
    #[serde(default)]
    pub ca_path: Option<String>,
    /// A SQLite file keeping the outbox and cursors across restarts; `":memory:"` keeps nothing.
    #[serde(default = "memory_path")]
    pub state_path: String,
    /// Reconnection backoff.
    #[serde(default)]
    pub reconnect: Reconnect,
    /// WebSocket ping interval, in milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A connection that receives nothing for this long is replaced.
    #[serde(default = "default_dead_after_ms")]
    pub dead_after_ms: u64,
    /// Per-conversation page size of the sync after each connect.
    #[serde(default = "default_sync_limit")]
    pub sync_limit: u64,
    /// The event queue to the host.
    #[serde(default)]
    pub events: EventsConfig,
    /// The most detailed log level forwarded to the host.
    #[serde(default = "default_log_level")]
    pub log_level: LogLevel,
    /// This device's id, sent with every connection (`?device=`); by
    /// default one made up once and kept in the state file. A device named
    /// by the token wins.
    #[serde(default)]
    pub device: Option<String>,
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconnect {
    /// The first delay, doubled after each failure.
    pub initial_ms: u64,
    /// The largest delay.
    pub max_ms: u64,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_ms: 250,
            max_ms: 30_000,
        }
    }
}

fn memory_path() -> String {
    ":memory:".into()
}
fn default_heartbeat_ms() -> u64 {
    15_000
}
fn default_dead_after_ms() -> u64 {
    45_000
}
fn default_sync_limit() -> u64 {
    100
}
fn default_log_level() -> LogLevel {
    LogLevel::Info
}

impl ClientConfig {
    /// Parses and validates a client configuration from JSON text.
    pub fn from_json(text: &str) -> Result<ClientConfig, Error> {
        let config: ClientConfig = parse_named(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that types alone cannot, and fields against each other.
    pub fn validate(&self) -> Result<(), Error> {
        if self.servers().is_empty() {
            return bad("url", "a server is required (url, or urls)");
        }
        if let Some(url) = self
            .servers()
            .iter()
            .find(|u| !(u.starts_with("ws://") || u.starts_with("wss://")))
        {
            let field = if *url == self.url { "url" } else { "urls" };
            return bad(field, format!("{url:?} must start with ws:// or wss://"));
        }
        if self.token.is_empty() {
            return bad("token", "must not be empty");
        }
        if self.state_path.is_empty() {
            return bad("state_path", "must not be empty (\":memory:\" keeps nothing)");
        }
        if self.device.as_deref().is_some_and(|d| !crate::protocol::is_valid_id(d)) {
            return bad("device", "must be 1 to 64 characters of [A-Za-z0-9_.@-]");
        }
        let positive = [
            ("reconnect.initial_ms", self.reconnect.initial_ms),
            ("reconnect.max_ms", self.reconnect.max_ms),
            ("heartbeat_ms", self.heartbeat_ms),
            ("dead_after_ms", self.dead_after_ms),
            ("events.queue_capacity", self.events.queue_capacity as u64),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return bad(field, "must be greater than 0");
        }
        if !(1..=1000).contains(&self.sync_limit) {
            return bad("sync_limit", "must be between 1 and 1000");
        }
        if self.reconnect.initial_ms > self.reconnect.max_ms {
            return bad("reconnect.initial_ms", "must not exceed reconnect.max_ms");
        }
        // A connection is declared dead after dead_after_ms without a frame;
        // heartbeats must come sooner or every quiet connection dies.
        if self.heartbeat_ms >= self.dead_after_ms {
            return bad("heartbeat_ms", "must be less than dead_after_ms");
        }
        Ok(())
    }
}

/// The event queue between the network and the host's dispatcher thread.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events that may wait for the host; when it is full, the client stops
    /// reading from the server until the host catches up.
    pub queue_capacity: usize,
    /// Callbacks (the default) or events the host polls for.
    pub delivery: EventDelivery,
}

impl ClientConfig {
    /// The servers to connect to, in the order they are tried: `url`, then `urls`.
    pub fn servers(&self) -> Vec<&str> {
        std::iter::once(self.url.as_str())
            .filter(|u| !u.is_empty())
            .chain(self.urls.iter().map(String::as_str))
            .collect()
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue_capacity: 65_536,
            delivery: EventDelivery::Callback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> String {
        match ClientConfig::from_json(json) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn fields_are_checked_against_each_other() {
        let base = r#""url":"ws://127.0.0.1:1/ws","token":"t""#;
        assert!(ClientConfig::from_json(&format!("{{{base}}}")).is_ok());
        let backoff = error_of(&format!(r#"{{{base},"reconnect":{{"initial_ms":900,"max_ms":100}}}}"#));
        assert!(backoff.starts_with("reconnect.initial_ms"), "{backoff}");
        let heartbeat = error_of(&format!(r#"{{{base},"heartbeat_ms":5000,"dead_after_ms":5000}}"#));
        assert!(heartbeat.starts_with("heartbeat_ms"), "{heartbeat}");
    }
}
