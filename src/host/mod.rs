//! What the engine tells its host, and how.
//!
//! The host implements [`Host`]. Events and log records leave the network
//! threads through a bounded queue and reach the host on one thread the engine
//! owns ([`dispatcher`]), in order; `authenticate` is the one callback that runs
//! on engine worker threads, because a connection waits for its answer.

pub(crate) mod dispatcher;
pub(crate) mod gate;
pub(crate) mod log_layer;
pub(crate) mod poller;
mod wake;

use std::sync::Arc;

use serde::Serialize;

pub use crate::config::LogLevel;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A host's view of the engine. Every method has a default that does nothing.
pub trait Host: Send + Sync + 'static {
    /// An event, on the engine's dispatcher thread, in order.
    fn on_event(&self, _event: &Event) {}
    /// A log record at or above the configured level, on the dispatcher thread.
    fn on_log(&self, _level: LogLevel, _target: &str, _message: &str) {}
    /// Maps a token to a user id, or to `user/device` when the host knows
    /// the device (auth mode `callback`); `None` rejects it.
    /// Runs on engine worker threads, possibly several at once.
    fn authenticate(&self, _token: &str) -> Option<String> {
        None
    }
    /// Whether this host answers `authenticate`: a server in auth mode
    /// `callback` refuses to start with a host that does not. A Rust host
    /// overrides `authenticate` and keeps this default; the C bridge says
    /// false when the listener's `authenticate` is NULL.
    fn has_authenticate(&self) -> bool {
        true
    }
}

/// Something that happened in the engine that the host may want to know.
#[derive(Debug, Clone)]
pub enum Event {
    /// A user's session was authenticated.
    Connected {
        /// The user.
        user: Arc<str>,
        /// The new session's id.
        session: Arc<str>,
        /// The session's device.
        device: Arc<str>,
    },
    /// A session ended.
    Disconnected {
        /// The user.
        user: Arc<str>,
        /// The session's id.
        session: Arc<str>,
        /// The session's device.
        device: Arc<str>,
        /// Why it ended, in a few words.
        reason: Arc<str>,
    },
    /// A message was stored.
    Message {
        /// The sender.
        from: Arc<str>,
        /// The protocol `msg` frame.
        frame: Utf8Bytes,
    },
    /// A group's membership changed.
    Member {
        /// The group.
        group: Arc<str>,
        /// The user who joined or left.
        user: Arc<str>,
        /// Joined (true) or left (false).
        joined: bool,
    },
    /// The host fell behind and this many events were dropped.
    Overflow {
        /// How many.
        dropped: u64,
    },
    /// Client role: the connection's state changed.
    State {
        /// `connecting`, `connected`, `disconnected`, `paused` or `stopped`.
        state: &'static str,
        /// Why, when it went down.
        reason: Option<String>,
        /// Which connection attempt (from 1) this is, when connecting.
        attempt: Option<u32>,
        /// The server being connected to, when connecting or connected.
        server: Option<String>,
    },
    /// Client role: the server stored a queued message.
    Ack {
        /// The client message id.
        id: String,
        /// Its conversation.
        conv: String,
        /// Its seq.
        seq: u64,
        /// When it was stored.
        ts: i64,
    },
    /// Client role: the server refused a queued message for good.
    SendFailed {
        /// The client message id.
        id: String,
        /// The error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// Client role: any other server frame (presence, typing, read, member, replies).
    Frame {
        /// The frame as received.
        frame: Utf8Bytes,
    },
    /// A push request for a user who is not looking (config `push`): answer
    /// it with `push_done` once the push gateway's call ends.
    Push {
        /// The request's id, the same when it is offered again.
        push_id: u64,
        /// Whom to notify.
        user: Arc<str>,
        /// The whole event as JSON (docs/C-API.md, "Push notifications").
        json: String,
    },
    /// Poll delivery only: a log record, which a callback host gets through
    /// [`Host::on_log`] instead.
    Log {
        /// How severe.
        level: LogLevel,
        /// The engine module that logged it.
        target: String,
        /// What happened; never a token or a message body.
        message: String,
    },
}

impl Event {
    /// The event as one JSON object: `{"event":"connected",...}`.
    pub fn to_json(&self) -> String {
        let shape = match self {
            // The frame is already JSON; embedding it verbatim avoids a parse.
            Event::Message { frame, .. } => return format!(r#"{{"event":"message","message":{}}}"#, frame.as_str()),
            Event::Frame { frame } => return format!(r#"{{"event":"frame","frame":{}}}"#, frame.as_str()),
            Event::Push { json, .. } => return json.clone(),
            Event::State {
                state,
                reason,
                attempt,
                server,
            } => EventJson::State {
                state,
                reason: reason.as_deref(),
                attempt: *attempt,
                server: server.as_deref(),
            },
            Event::Ack { id, conv, seq, ts } => EventJson::Ack {
                id,
                conv,
                seq: *seq,
                ts: *ts,
            },
            Event::SendFailed { id, code, message } => EventJson::SendFailed { id, code, message },
            Event::Connected { user, session, device } => EventJson::Connected { user, session, device },
            Event::Disconnected {
                user,
                session,
                device,
                reason,
            } => EventJson::Disconnected {
                user,
                session,
                device,
                reason,
            },
            Event::Member { group, user, joined } => EventJson::Member {
                group,
                user,
                joined: *joined,
            },
            Event::Overflow { dropped } => EventJson::Overflow { dropped: *dropped },
            Event::Log { level, target, message } => EventJson::Log {
                level: *level,
                target,
                message,
            },
        };
        serde_json::to_string(&shape).expect("events always serialize")
    }
}

/// The JSON shapes of events, fields in the documented order.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum EventJson<'a> {
    Connected {
        user: &'a str,
        session: &'a str,
        device: &'a str,
    },
    Disconnected {
        user: &'a str,
        session: &'a str,
        device: &'a str,
        reason: &'a str,
    },
    Member {
        group: &'a str,
        user: &'a str,
        joined: bool,
    },
    Overflow {
        dropped: u64,
    },
    State {
        state: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        server: Option<&'a str>,
    },
    Ack {
        id: &'a str,
        conv: &'a str,
        seq: u64,
        ts: i64,
    },
    SendFailed {
        id: &'a str,
        code: &'a str,
        message: &'a str,
    },
    Log {
        level: LogLevel,
        target: &'a str,
        message: &'a str,
    },
}
