//! The error type of the Rust API.

use std::fmt;

/// Why an engine call failed. Each variant maps to one C status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration is not valid; the message names the field.
    InvalidConfig(String),
    /// An argument is not valid (an id, a JSON body); the message says which.
    InvalidArgument(String),
    /// `start` was called on a running server.
    AlreadyStarted,
    /// The call needs a running server.
    NotStarted,
    /// The server was stopped; it cannot be used again.
    Stopped,
    /// The call would deadlock because it was made from inside a callback of the same server.
    InCallback,
    /// A request needs a live connection and the client has none.
    NotConnected,
    /// The thing named (a group) does not exist.
    NotFound(String),
    /// A socket operation failed (binding the listen address, for example).
    Io(String),
    /// The message store failed; nothing was acknowledged.
    Store(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::AlreadyStarted => f.write_str("the server is already started"),
            Error::NotStarted => f.write_str("the server is not started"),
            Error::Stopped => f.write_str("the server is stopped"),
            Error::InCallback => f.write_str("not allowed from inside a callback of this server"),
            Error::Io(m) => write!(f, "i/o error: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::NotConnected => f.write_str("not connected"),
            Error::Store(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The message without the category prefix of `Display`, for callers
    /// that already name the category (as a C status code does).
    pub fn detail(&self) -> String {
        match self {
            Error::InvalidConfig(m)
            | Error::InvalidArgument(m)
            | Error::Io(m)
            | Error::Store(m)
            | Error::NotFound(m) => m.clone(),
            Error::NotConnected => "requests are not queued; send it again once connected".into(),
            other => other.to_string(),
        }
    }
}
