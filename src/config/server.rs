//! The server's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{EventDelivery, LogLevel};
use super::{EventsConfig, PushConfig, ReceiptsConfig, bad, parse_named};
use crate::error::Error;

/// The whole configuration. See `docs/C-API.md` for the table of keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on; port 0 lets the system pick one.
    pub listen: String,
    /// Number of tokio worker threads.
    pub workers: usize,
    /// How tokens become user ids.
    pub auth: AuthConfig,
    /// Where messages are kept.
    pub store: StoreConfig,
    /// Timeouts and size limits.
    pub limits: Limits,
    /// Cross-site protection for browser clients.
    pub origins: OriginsConfig,
    /// The queue of events waiting for the host, and which events go into it.
    pub events: ServerEventsConfig,
    /// The most detailed log level forwarded to the host.
    pub log_level: LogLevel,
    /// Serve `wss://` with this certificate and key instead of `ws://`.
    pub tls: Option<TlsConfig>,
    /// A directory whose files are served to plain HTTP `GET`s on the same
    /// port as `/ws` (such as a web client); none serves no files.
    pub web_root: Option<String>,
    /// The ids the host sends as: no user can authenticate as one of them.
    pub host_ids: Vec<String>,
    /// Plain HTTP on the server's port.
    pub http: HttpConfig,
    /// Push requests for recipients without a foreground session.
    pub push: PushConfig,
    /// Read receipts between members.
    pub receipts: ReceiptsConfig,
    /// What may be done to a message after it is sent.
    pub messages: MessagesConfig,
    /// How groups tell their members of changes.
    pub groups: GroupsConfig,
    /// Uploads and downloads of files beside the WebSocket.
    pub files: FilesConfig,
    /// Several nodes on one PostgreSQL database, with Redis between them.
    pub cluster: ClusterConfig,
}

/// Several nodes sharing one PostgreSQL database (`store.postgres`): Redis
/// carries live messages, presence and group changes between them, never
/// the messages' truth (docs/CLUSTER.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// A Redis URL (`redis://host:port`, `redis://:password@host:port/db`);
    /// unset, the node runs alone (which also works on a shared database:
    /// its sessions then see other nodes' messages when they sync).
    pub redis: Option<String>,
    /// This node's name among the nodes, unique; by default a random one
    /// at each start.
    pub node_id: Option<String>,
    /// How often the node tells Redis it is alive and checks that its own
    /// subscription still receives (ms).
    pub heartbeat_ms: u64,
    /// How long after a node's last heartbeat its users count as offline
    /// everywhere else (ms): a killed node's users go offline within it.
    pub presence_ttl_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            node_id: None,
            heartbeat_ms: 1000,
            presence_ttl_ms: 5000,
        }
    }
}

/// How groups tell their members of changes (`groups`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupsConfig {
    /// Groups up to this many members (counted after the change) announce
    /// each join and leave to every member; in larger ones only the user's
    /// own sessions get the `member` frame, and members ask with `members`.
    pub announce_max_size: usize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            announce_max_size: 1000,
        }
    }
}

/// What may be done to a message after it is sent (`messages`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// How long after a message its sender may edit it.
    pub edit_window_ms: u64,
    /// The most different emojis one user puts on one message.
    pub max_reactions_per_user: usize,
    /// The most reactions (one user's one emoji each) one message carries,
    /// so that its frame stays well within a reply's budget.
    pub max_reactions_per_message: usize,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            edit_window_ms: 24 * 60 * 60 * 1000,
            max_reactions_per_user: 20,
            max_reactions_per_message: 1000,
        }
    }
}

/// Files uploaded with `POST /files` (`files`); off without `dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Where the files are kept, created if missing; none turns files off.
    pub dir: Option<String>,
    /// The largest upload, in bytes.
    pub max_bytes: u64,
    /// The most bytes one user's uploads take.
    pub quota_bytes: u64,
    /// How long an upload no message refers to is kept.
    pub unreferenced_ms: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            dir: None,
            max_bytes: 25 * 1024 * 1024,
            quota_bytes: 1024 * 1024 * 1024,
            unreferenced_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Plain HTTP on the server's port (the web root, `/healthz`, `/metrics`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// When not empty, a request whose `Host` header (without port) is not
    /// listed is answered 421, so a DNS-rebinding page cannot reach the
    /// server through a name of its own.
    pub allowed_hosts: Vec<String>,
}

/// The server's TLS identity, as PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert_path: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: String,
}

/// Authentication mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// The host's `authenticate` callback maps a token to a user id.
    // Empty struct variants, not unit ones: serde enforces deny_unknown_fields only on these.
    Callback {},
    /// HS256 JSON Web Tokens: `sub` is the user id, `exp` is required.
    Jwt {
        /// The shared HMAC secret.
        secret: String,
        /// When set, the token's `iss` must equal it.
        #[serde(default)]
        issuer: Option<String>,
        /// When set, the token's `aud` must contain it.
        #[serde(default)]
        audience: Option<String>,
    },
    /// The token is the user id. For demos and tests only.
    Dev {},
}

/// Store settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A SQLite database file, created if missing; `":memory:"` keeps
    /// messages in memory only.
    pub path: String,
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/db`).
    /// When set, messages live in that database (in its schema `imbed`,
    /// created on first start) and `path` is not used. Several nodes that
    /// name one database share every conversation (docs/CLUSTER.md).
    pub postgres: Option<String>,
    /// How much history to keep; by default everything.
    pub retention: Retention,
    /// Bounds of the in-memory store, which has no disk to spill to.
    pub memory: MemoryLimits,
}

/// Bounds of the in-memory store (`store.path` `":memory:"`), so that a
/// server left running keeps a bounded heap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimits {
    /// Memory of the messages kept over all conversations: their bodies and
    /// names plus 256 bytes each of bookkeeping.
    /// Beyond it a conversation that grows gives up its oldest messages
    /// (each keeps at least its newest), so the bound may be passed by one
    /// message per conversation.
    pub max_bytes: u64,
    /// Idempotency keys kept, the most recent: a send retried after this
    /// many newer sends is stored again.
    pub max_keys: u64,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            max_bytes: 256 * 1024 * 1024,
            max_keys: 500_000,
        }
    }
}

/// Timeouts and size limits; every value must be positive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest text frame or message a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Bytes waiting to be written to one session before it is closed with 1013.
    pub outbound_queue_bytes: usize,
    /// WebSocket upgrade plus authentication must finish within this.
    pub handshake_timeout_ms: u64,
    /// How often the server pings each connection.
    pub ping_interval_ms: u64,
    /// A connection that sends nothing for this long is closed (at the
    /// latest a quarter of the shorter of this and the ping interval later).
    pub idle_timeout_ms: u64,
    /// Open connections (in their handshake or in a session) beyond which
    /// new ones are refused with HTTP 503.
    pub max_connections: usize,
    /// Frames per second a session may send, sustained.
    pub messages_per_second: u32,
    /// Frames a session may send at once above that rate. A frame beyond it
    /// gets `rate_limited`; a session that keeps sending through as many
    /// refusals again is closed with 1008.
    pub message_burst: u32,
    /// Distinct users one session may watch for presence.
    pub max_watches: usize,
    /// Sessions one user may have open at once; the next is refused.
    pub max_connections_per_user: usize,
}

/// Which browser origins may connect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginsConfig {
    /// When not empty, a request whose `Origin` is not listed is refused
    /// with HTTP 403 (exact match, such as `https://chat.example.com`).
    pub allowed: Vec<String>,
    /// Refuse requests without an `Origin` header too. Native clients send
    /// none, so this is off by default.
    pub required: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            workers: 2,
            auth: AuthConfig::Callback {},
            store: StoreConfig::default(),
            limits: Limits::default(),
            origins: OriginsConfig::default(),
            events: ServerEventsConfig::default(),
            log_level: LogLevel::Info,
            tls: None,
            host_ids: vec!["host".into()],
            http: HttpConfig::default(),
            web_root: None,
            push: PushConfig::default(),
            receipts: ReceiptsConfig::default(),
            messages: MessagesConfig::default(),
            groups: GroupsConfig::default(),
            files: FilesConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: ":memory:".into(),
            postgres: None,
            retention: Retention::default(),
            memory: MemoryLimits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            outbound_queue_bytes: 1024 * 1024,
            handshake_timeout_ms: 10_000,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            messages_per_second: 1000,
            message_burst: 2000,
            max_watches: 1000,
            max_connections_per_user: 16,
        }
    }
}

/// The server's queue of events for the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerEventsConfig {
    /// Events that may wait for the host before newer ones are dropped and counted.
    pub queue_capacity: usize,
    /// Tell the host about every stored message. A host that only relays
    /// turns this off and saves a wake-up of its event thread per message.
    pub messages: bool,
    /// Callbacks (the default) or events the host polls for.
    pub delivery: EventDelivery,
}

impl Default for ServerEventsConfig {
    fn default() -> Self {
        ServerEventsConfig {
            queue_capacity: EventsConfig::default().queue_capacity,
            messages: true,
            delivery: EventDelivery::Callback,
        }
    }
}

impl Config {
    /// Parses and validates a configuration from JSON text.
    pub fn from_json(text: &str) -> Result<Config, Error> {
        let config: Config = parse_named(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that types alone cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad("listen", "expected IP:PORT, such as 127.0.0.1:8080");
        }
        if !(1..=64).contains(&self.workers) {
            return bad("workers", "must be between 1 and 64");
        }
        // HS256 is only as strong as its key: RFC 7518 §3.2 asks for at least
        // the hash's size, 256 bits.
        if let AuthConfig::Jwt { secret, .. } = &self.auth
            && secret.len() < MIN_JWT_SECRET_BYTES
        {
            return bad("auth.secret", format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"));
        }
        if self.cluster.redis.is_some() && self.store.postgres.is_none() {
            return bad(
                "cluster.redis",
                "needs store.postgres: the nodes of a cluster share one database",
            );
        }
        if self.cluster.heartbeat_ms == 0 || self.cluster.presence_ttl_ms < 2 * self.cluster.heartbeat_ms {
            return bad(
                "cluster.presence_ttl_ms",
                "must be at least twice cluster.heartbeat_ms, which must not be 0",
            );
        }
        if let Some(id) = self.host_ids.iter().find(|id| !crate::protocol::is_valid_id(id)) {
            return bad("host_ids", format!("{id:?} is not a valid user id"));
        }
        if self.store.path.is_empty() {
            return bad("store.path", "must not be empty (\":memory:\" keeps nothing on disk)");
        }
        let l = &self.limits;
        let positive = [
            ("limits.max_frame_bytes", l.max_frame_bytes as u64),
            ("limits.outbound_queue_bytes", l.outbound_queue_bytes as u64),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.ping_interval_ms", l.ping_interval_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("limits.max_connections", l.max_connections as u64),
            ("limits.messages_per_second", u64::from(l.messages_per_second)),
            ("limits.message_burst", u64::from(l.message_burst)),
            ("limits.max_watches", l.max_watches as u64),
            ("limits.max_connections_per_user", l.max_connections_per_user as u64),
            ("events.queue_capacity", self.events.queue_capacity as u64),
            ("push.retry_after_ms", self.push.retry_after_ms),
            ("store.memory.max_bytes", self.store.memory.max_bytes),
            ("store.memory.max_keys", self.store.memory.max_keys),
            (
                "messages.max_reactions_per_user",
                self.messages.max_reactions_per_user as u64,
            ),
            (
                "messages.max_reactions_per_message",
                self.messages.max_reactions_per_message as u64,
            ),
            ("files.max_bytes", self.files.max_bytes),
            ("files.quota_bytes", self.files.quota_bytes),
            ("files.unreferenced_ms", self.files.unreferenced_ms),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return bad(field, "must be greater than 0");
        }
        if self.push.retry_after_ms < 100 {
            return bad("push.retry_after_ms", "must be at least 100");
        }
        if let Some(group) = self
            .push
            .group_overrides
            .keys()
            .find(|g| !crate::protocol::is_valid_id(g))
        {
            return bad("push.group_overrides", format!("{group:?} is not a valid group id"));
        }
        if self.files.dir.as_deref() == Some("") {
            return bad("files.dir", "must not be empty (leave it out to turn files off)");
        }
        if self.origins.allowed.iter().any(|o| o.is_empty()) {
            return bad("origins.allowed", "entries must not be empty");
        }
        if l.max_frame_bytes > 16 * 1024 * 1024 {
            return bad("limits.max_frame_bytes", "must be at most 16 MiB");
        }
        // A sync or history reply may use half the queue, and must carry at
        // least one message as large as a frame may make it.
        if l.outbound_queue_bytes / 2 < l.max_frame_bytes + MSG_ENVELOPE_BYTES {
            let least = 2 * (l.max_frame_bytes + MSG_ENVELOPE_BYTES);
            return bad(
                "limits.outbound_queue_bytes",
                format!("must be at least twice limits.max_frame_bytes + {MSG_ENVELOPE_BYTES} ({least})"),
            );
        }
        Ok(())
    }

    /// The listen address; valid after [`Config::validate`].
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at parse time")
    }
}

/// The shortest JWT secret accepted.
const MIN_JWT_SECRET_BYTES: usize = 32;

/// What a stored message's `msg` frame may add to the body the client sent:
/// conversation, sender, seq and time.
const MSG_ENVELOPE_BYTES: usize = 1024;

impl Limits {
    /// [`Limits::handshake_timeout_ms`] as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// [`Limits::ping_interval_ms`] as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// [`Limits::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> String {
        match Config::from_json(json) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn empty_object_gives_defaults() {
        let c = Config::from_json("{}").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.workers, 2);
        assert!(matches!(c.auth, AuthConfig::Callback {}));
        assert_eq!(c.limits.max_frame_bytes, 65536);
    }

    #[test]
    fn every_error_names_its_field() {
        assert!(error_of(r#"{"nope":1}"#).contains("nope"));
        assert!(error_of(r#"{"workers":"two"}"#).starts_with("workers:"));
        assert!(error_of(r#"{"workers":0}"#).starts_with("workers:"));
        assert!(error_of(r#"{"auth":{"mode":"jwt"}}"#).contains("secret"));
        assert!(
            error_of(r#"{"auth":{"mode":"jwt","secret":"31 bytes 31 bytes 31 bytes 31 "}}"#)
                .starts_with("auth.secret:")
        );
        assert!(error_of(r#"{"host_ids":["ho st"]}"#).starts_with("host_ids:"));
        assert!(error_of(r#"{"auth":{"mode":"magic"}}"#).contains("magic"));
        assert!(error_of(r#"{"auth":{"mode":"dev","x":1}}"#).contains("x"));
        assert!(error_of(r#"{"limits":{"idle_timeout_ms":0}}"#).contains("limits.idle_timeout_ms"));
        assert!(error_of(r#"{"limits":{"max_frame_bytes":-1}}"#).contains("limits.max_frame_bytes"));
        assert!(error_of(r#"{"listen":"localhost"}"#).starts_with("listen:"));
        assert!(error_of(r#"{"log_level":"loud"}"#).starts_with("log_level:"));
        assert!(error_of(r#"{"store":{"path":""}}"#).starts_with("store.path:"));
        assert!(error_of(r#"{"cluster":{"redis":"redis://127.0.0.1:6379"}}"#).starts_with("cluster.redis:"));
        let too_short = r#"{"cluster":{"heartbeat_ms":1000,"presence_ttl_ms":1500}}"#;
        assert!(error_of(too_short).starts_with("cluster.presence_ttl_ms:"));
        assert!(error_of(r#"{"store":{"retention":{"days":1}}}"#).contains("days"));
        assert!(error_of(r#"{} x"#).contains("trailing"));
        assert!(!error_of("not json").is_empty());
    }

    #[test]
    fn jwt_options_parse() {
        let c = Config::from_json(
            r#"{"auth":{"mode":"jwt","secret":"0123456789abcdef0123456789abcdef","issuer":"me","audience":"app"}}"#,
        )
        .unwrap();
        match c.auth {
            AuthConfig::Jwt {
                secret,
                issuer,
                audience,
            } => {
                assert_eq!(
                    (secret.as_str(), issuer.as_deref(), audience.as_deref()),
                    ("0123456789abcdef0123456789abcdef", Some("me"), Some("app"))
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Retention: how much history a store keeps. Zero means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Keep at most this many of the newest messages per conversation.
    pub max_messages_per_conversation: u64,
    /// Drop messages older than this many seconds.
    pub max_age_seconds: u64,
}

impl Retention {
    /// The oldest timestamp (ms) to keep at `now_ms`, if an age limit is set.
    pub fn oldest_kept_ts(&self, now_ms: i64) -> Option<i64> {
        (self.max_age_seconds > 0).then(|| now_ms - (self.max_age_seconds as i64).saturating_mul(1000))
    }
}
