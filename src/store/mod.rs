//! Where messages live: the [`Store`] trait and its implementations.
//!
//! A store assigns each message its conversation's next `seq` and enforces
//! idempotency per `(sender, client id)` in the same step. It reports each
//! outcome through a completion callback, called in commit order within a
//! conversation: the engine fans messages out from that callback, so every
//! session sees a conversation in `seq` order without any further locking.

pub mod memory;

use std::fmt;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::protocol::MsgFrame;

pub use memory::MemoryStore;

/// A message to store.
#[derive(Debug)]
pub struct NewMessage {
    /// The conversation, such as `dm:alice:bob`.
    pub conv: String,
    /// The sender.
    pub from: Arc<str>,
    /// The recipient of a direct message.
    pub to: Option<String>,
    /// The group of a group message.
    pub group: Option<String>,
    /// The sender's message id: the idempotency key.
    pub client_id: String,
    /// The body, as the sender wrote it.
    pub body: Box<RawValue>,
    /// When the server received it.
    pub ts: i64,
}

/// A stored message.
#[derive(Debug)]
pub struct StoredMessage {
    /// What was stored.
    pub message: NewMessage,
    /// Its place in the conversation, from 1, gapless.
    pub seq: u64,
}

impl StoredMessage {
    /// The protocol `msg` frame of this message, as JSON text.
    pub fn frame(&self) -> String {
        let m = &self.message;
        MsgFrame {
            kind: "msg",
            conv: &m.conv,
            seq: self.seq,
            from: &m.from,
            to: m.to.as_deref(),
            group: m.group.as_deref(),
            id: &m.client_id,
            body: &m.body,
            ts: m.ts,
        }
        .encode()
    }
}

/// Where a message was stored: what an `ack` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The conversation.
    pub conv: String,
    /// The message's sequence number.
    pub seq: u64,
    /// When it was stored.
    pub ts: i64,
}

/// The outcome of [`Store::append`].
#[derive(Debug)]
pub enum Appended {
    /// The message is new and now stored.
    New(Arc<StoredMessage>),
    /// The sender already sent a message with this client id; nothing was stored.
    Duplicate(Placement),
}

impl Appended {
    /// Where the message is, new or not.
    pub fn placement(&self) -> Placement {
        match self {
            Appended::New(m) => Placement {
                conv: m.message.conv.clone(),
                seq: m.seq,
                ts: m.message.ts,
            },
            Appended::Duplicate(p) => p.clone(),
        }
    }
}

/// A store failure. Nothing it reports was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Called once with the outcome of an append.
pub type AppendDone = Box<dyn FnOnce(Result<Appended, StoreError>) + Send>;

/// A message store.
pub trait Store: Send + Sync + 'static {
    /// Stores `message` unless its `(from, client_id)` is already stored, and
    /// calls `done` exactly once with the outcome. Within a conversation,
    /// `done` is called in `seq` order, and never concurrently.
    fn append(&self, message: NewMessage, done: AppendDone);

    /// Up to `limit` messages of `conv` with `seq` below `before` (all, when
    /// `None`), oldest first.
    fn history(&self, conv: &str, before: Option<u64>, limit: usize) -> Result<Vec<Arc<StoredMessage>>, StoreError>;
}
