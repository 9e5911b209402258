//! Doors into the engine for the project's own micro-benchmarks, fuzz
//! targets and load generator (cargo feature `internals`). Not API: nothing
//! here is stable, and the documentation hides it.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::{Conversation, ServerFrame, is_valid_request_id, parse_client_frame};
use crate::router::{Audience, LocalRouter, Members, Router, SessionHandle};
use crate::store::StoredMessage;

/// Whether `text` parses as a client frame.
pub fn parses_as_client_frame(text: &str) -> bool {
    parse_client_frame(text).is_ok()
}

/// Parses `text` as a client frame and asserts what the handlers rely on:
/// ids were checked, bodies are JSON, conversation names, file references
/// and search queries parse or not without panicking, and what a body's
/// `files` names are file ids.
pub fn check_client_frame(text: &str) {
    let Ok(frame) = parse_client_frame(text) else {
        return;
    };
    if let Some(id) = &frame.id {
        assert!(is_valid_request_id(id));
    }
    if let Some(body) = frame.body {
        assert!(serde_json::from_str::<serde_json::Value>(body.get()).is_ok());
        for id in crate::server::files::referenced(body).unwrap_or_default() {
            assert!(crate::server::files::is_file_id(&id));
        }
        let _ = crate::store::amend::searchable_text(body);
    }
    if let Some(query) = frame.query.as_deref()
        && let Ok(terms) = crate::server::search::query_terms(query)
    {
        assert!(!terms.is_empty() && terms.iter().all(|t| !crate::store::words::words(t).is_empty()));
    }
    if let Some(conv) = frame.conv.as_deref() {
        let _ = Conversation::parse(conv);
    }
}

/// A client's frame as the server's read side decodes it: a whole
/// message or a control frame, or the refusal that ends the connection.
#[derive(Debug, PartialEq)]
pub enum ClientFrameRead {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame.
    Close,
    /// The bytes broke a rule, or ended before a close frame.
    Refused,
}

/// What the server's read side makes of a client's bytes arriving in
/// `pieces` (one read each), refusing messages over `max_message` bytes:
/// everything up to the first close or refusal.
pub fn read_client_frames(pieces: Vec<Vec<u8>>, max_message: usize) -> Vec<ClientFrameRead> {
    use crate::server::frames::Incoming;
    crate::server::reader::read_all(pieces, max_message)
        .into_iter()
        .map(|read| match read {
            Ok(Incoming::Text(text)) => ClientFrameRead::Text(text.to_string()),
            Ok(Incoming::Binary(bytes)) => ClientFrameRead::Binary(bytes.to_vec()),
            Ok(Incoming::Ping(bytes)) => ClientFrameRead::Ping(bytes.to_vec()),
            Ok(Incoming::Pong) => ClientFrameRead::Pong,
            Ok(Incoming::Close) => ClientFrameRead::Close,
            Err(_) => ClientFrameRead::Refused,
        })
        .collect()
}

/// Creates or migrates the SQLite schema in `conn`.
pub fn migrate_sqlite(conn: &mut rusqlite::Connection, path: &str) -> Result<(), String> {
    crate::store::sqlite::schema::migrate(conn, path).map_err(|e| e.0)
}

/// How the SQLite store's writer stores a plain message, in the columns a
/// tool needs to fill a file in imbed's schema (`?1`..`?7`: conv, seq,
/// sender, recipient, client id, body, ts).
pub const SQLITE_INSERT_MESSAGE: &str = "INSERT INTO messages (conv, seq, sender, recipient, client_id, body, ts)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Indexes that message's words for search, right after
/// [`SQLITE_INSERT_MESSAGE`] (`?1`: the body, `?2`: the conversation): the
/// rows the writer makes, which computes the same text in Rust that
/// `imbed_search_text` computes in SQL.
pub const SQLITE_INDEX_MESSAGE: &str =
    "INSERT INTO message_text (rowid, text, conv) VALUES (last_insert_rowid(), imbed_search_text(?1), ?2)";

/// The `msg` frame of `message`.
pub fn msg_frame(message: &StoredMessage) -> String {
    crate::server::msg_frames::msg_frame(message)
}

/// An `ack` frame.
pub fn ack_frame(id: &str, conv: &str, seq: u64, ts: i64) -> String {
    ServerFrame::Ack { id, conv, seq, ts }.encode()
}

/// A group whose members are all online, one session each, for fan-out.
pub struct Room {
    router: LocalRouter,
    members: Members,
    online: Vec<Arc<SessionHandle>>,
}

impl Room {
    /// A room of `members` members, `m0`, `m1`, …, each with a 1 MiB outbox.
    pub fn new(members: usize) -> Room {
        let mut room = Room {
            router: LocalRouter::new(),
            members: Arc::default(),
            online: Vec::new(),
        };
        let mut names = Vec::new();
        for n in 0..members {
            let user: Arc<str> = Arc::from(format!("m{n}"));
            let session = Arc::new(SessionHandle::new(n as u64, user.clone(), user.clone(), 1 << 20));
            room.router.attach(session.clone(), usize::MAX);
            names.push(user);
            room.online.push(session);
        }
        names.sort();
        room.members = Arc::new(names);
        room
    }

    /// Queues `frame` (message `seq` of `g:room`) to every member but
    /// session 0, as a group message's fan-out does.
    pub fn deliver(&self, frame: &Utf8Bytes, seq: u64) {
        let audience = Audience::Group("room", &self.members);
        self.router.fanout("g:room", seq, frame, audience, Some(0));
    }

    /// Empties every outbox, as the writers would.
    pub fn write_all(&mut self) {
        for session in &self.online {
            let bytes = session
                .outbox
                .take_ready(Default::default())
                .frames
                .iter()
                .flat_map(|entry| entry.frames())
                .map(|(frame, _)| frame.len())
                .sum();
            session.outbox.written(bytes);
        }
    }
}

/// The in-memory store under the direct benchmark's load: one message after
/// another, each from the next of `senders` users to its partner (0↔1,
/// 2↔3, …), each with a fresh idempotency key, as `bench direct` sends them.
pub struct MemoryAppends {
    store: crate::store::memory::MemoryStore,
    senders: Vec<Arc<str>>,
    body: Box<serde_json::value::RawValue>,
    sent: u64,
}

impl MemoryAppends {
    /// An empty store with the default bounds, and `senders` users (even).
    pub fn new(senders: usize) -> MemoryAppends {
        MemoryAppends {
            store: crate::store::memory::MemoryStore::default(),
            senders: (0..senders).map(|n| Arc::from(format!("u{n}"))).collect(),
            body: serde_json::value::to_raw_value(&"x".repeat(64)).expect("a string is JSON"),
            sent: 0,
        }
    }

    /// Stores the next message; whether the store took it as new.
    pub fn append(&mut self) -> bool {
        use crate::store::{Appended, MessageKind, NewMessage, Store};
        let n = self.sent as usize;
        self.sent += 1;
        let (from, to) = (
            &self.senders[n % self.senders.len()],
            &self.senders[(n % self.senders.len()) ^ 1],
        );
        let (a, b) = if from < to { (from, to) } else { (to, from) };
        let message = NewMessage {
            conv: format!("dm:{a}:{b}"),
            from: from.clone(),
            to: Some(to.to_string()),
            group: None,
            client_id: self.sent.to_string(),
            body: self.body.clone(),
            ts: crate::protocol::now_ms(),
            kind: MessageKind::Message,
            target: None,
            files: Vec::new(),
            by_host: false,
        };
        let stored = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stored.clone();
        self.store.append(
            message,
            Vec::new(),
            Box::new(move |result| {
                let new = matches!(result, Ok(Appended::New(_)));
                done.store(new, std::sync::atomic::Ordering::Relaxed);
            }),
        );
        stored.load(std::sync::atomic::Ordering::Relaxed)
    }
}
