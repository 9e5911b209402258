//! Where messages live: the [`Store`] trait and its implementations.
//!
//! A store assigns each message its conversation's next `seq` and enforces
//! idempotency per `(sender, client id)` in the same step. It reports each
//! outcome through a completion callback, called in commit order within a
//! conversation: the engine fans messages out from that callback, so every
//! session sees a conversation in `seq` order without any further locking.

pub(crate) mod amend;
mod jobs;
pub(crate) mod memory;
mod memory_files;
mod memory_notices;
mod postgres;
pub(crate) mod sqlite;
pub(crate) mod words;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::value::RawValue;

pub use amend::{MessageKind, MessageState};
pub(crate) use memory::MemoryStore;
pub(crate) use sqlite::SqliteStore;

use crate::config::{Retention, StoreConfig};
use amend::{Refused, Rules};

/// Opens the store `config` names: PostgreSQL when it names a database,
/// else memory for `":memory:"`, else SQLite; events are held to `rules`.
pub(crate) fn open(config: &StoreConfig, rules: Rules, commits: CommitObserver) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(url) = &config.postgres {
        Ok(Arc::new(postgres::PostgresStore::open(
            url,
            config.retention.clone(),
            rules,
            commits,
        )?))
    } else if config.path == ":memory:" {
        Ok(Arc::new(MemoryStore::with_retention(
            config.retention.clone(),
            config.memory.clone(),
            rules,
        )))
    } else {
        Ok(Arc::new(SqliteStore::open(
            &config.path,
            config.retention.clone(),
            rules,
            commits,
        )?))
    }
}

/// Told how long each commit to disk took; the in-memory store has none.
pub(crate) type CommitObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// A message, or an event of its conversation, to store.
#[derive(Debug, Clone)]
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
    /// A message, or which event.
    pub kind: MessageKind,
    /// The seq of the message an event changes, or a message replies to.
    pub target: Option<u64>,
    /// The files the body refers to (`body.files`).
    pub files: Vec<String>,
    /// Sent by the host, which may delete any message.
    pub by_host: bool,
}

/// A stored message.
#[derive(Debug)]
pub struct StoredMessage {
    /// What was stored.
    pub message: NewMessage,
    /// Its place in the conversation, from 1, gapless.
    pub seq: u64,
    /// What events did to it so far.
    pub state: MessageState,
}

impl StoredMessage {
    /// About how many bytes the message takes: its body, its names and its
    /// reactions. Reads count these against their `max_bytes`.
    pub(crate) fn size_bytes(&self) -> usize {
        let m = &self.message;
        let names = m.conv.len() + m.from.len() + m.client_id.len();
        let target = m.to.as_deref().or(m.group.as_deref()).map_or(0, str::len);
        let reactions: usize = (self.state.reactions.iter())
            .map(|(emoji, users)| emoji.len() + users.iter().map(|u| u.len() + 3).sum::<usize>())
            .sum();
        m.body.get().len() + names + target + reactions
    }
}

/// Takes messages from `candidates` up to `limit`, while `budget` (bytes)
/// lasts; a message is taken whenever some budget is left, so a read with
/// any budget at all makes progress.
pub(crate) fn take_within<E>(
    candidates: impl Iterator<Item = Result<Arc<StoredMessage>, E>>,
    limit: usize,
    budget: &mut usize,
) -> Result<Vec<Arc<StoredMessage>>, E> {
    let mut taken = Vec::new();
    for message in candidates.take(limit) {
        if *budget == 0 {
            break;
        }
        let message = message?;
        *budget = budget.saturating_sub(message.size_bytes());
        taken.push(message);
    }
    Ok(taken)
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
pub(crate) enum Appended {
    /// The message is new and now stored.
    New(Arc<StoredMessage>),
    /// The sender already sent a message with this client id; nothing was stored.
    Duplicate(Placement),
    /// Its target or its files do not allow it ([`amend::apply`]); nothing was stored.
    Refused(Refused),
}

impl Appended {
    /// Where the message is, new or not; or why it was refused.
    pub(crate) fn placement(&self) -> Result<Placement, Refused> {
        match self {
            Appended::New(m) => Ok(Placement {
                conv: m.message.conv.clone(),
                seq: m.seq,
                ts: m.message.ts,
            }),
            Appended::Duplicate(p) => Ok(p.clone()),
            Appended::Refused(why) => Err(why.clone()),
        }
    }
}

/// What a search looks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchScope<'a> {
    /// The conversations of this user.
    User(&'a str),
    /// One conversation.
    Conv(&'a str),
    /// Every conversation.
    All,
}

/// A page of search results.
#[derive(Debug, Default)]
pub(crate) struct SearchPage {
    /// The messages found, newest first, in their current state.
    pub(crate) results: Vec<Arc<StoredMessage>>,
    /// Beside each result, the cursor of a page that starts after it: a
    /// reply that carries fewer results than found continues from there.
    pub(crate) cursors: Vec<String>,
    /// When more match: where the next page starts (an opaque cursor).
    pub(crate) next: Option<String>,
}

impl SearchPage {
    /// The first `limit` of `found` (one more was asked for, to learn
    /// whether more match), each with its cursor from `positions` (the
    /// store's order of the rows, such as a rowid); `next` is the cursor
    /// after them when more may follow: one more was found, or the byte
    /// budget ran out (`starved`).
    pub(crate) fn cut(
        mut found: Vec<Arc<StoredMessage>>,
        positions: &[i64],
        limit: usize,
        starved: bool,
    ) -> SearchPage {
        let more = found.len() > limit || (starved && !found.is_empty());
        found.truncate(limit);
        let cursors: Vec<String> = positions[..found.len()].iter().map(i64::to_string).collect();
        let next = more.then(|| cursors[found.len() - 1].clone());
        SearchPage {
            results: found,
            cursors,
            next,
        }
    }

    /// The page cut to its first `carried` results: `next` is then the
    /// cursor after the last of them, when any were left out.
    pub(crate) fn carried(&self, carried: usize) -> Option<&str> {
        match carried {
            n if n < self.results.len() && n > 0 => Some(&self.cursors[n - 1]),
            _ => self.next.as_deref(),
        }
    }
}

/// An uploaded file, as the store knows it (its bytes are in `files.dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRecord {
    /// The SHA-256 of its bytes, in hex.
    pub(crate) file_id: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Its content type, as taken from its bytes.
    pub(crate) content_type: String,
}

/// Called once with the file an upload recorded, or `None` over the quota.
pub(crate) type UploadDone = Box<dyn FnOnce(Result<Option<FileRecord>, StoreError>) + Send>;

/// Called once with the files nobody needs any more.
pub(crate) type CollectedDone = Box<dyn FnOnce(Result<Vec<String>, StoreError>) + Send>;

/// A store failure. Nothing it reports was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Called once with the outcome of an append.
pub(crate) type AppendDone = Box<dyn FnOnce(Result<Appended, StoreError>) + Send>;

/// The outcome of [`Store::mark_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMark {
    /// The user's read cursor moved forward to the given seq.
    Advanced,
    /// The cursor was already at or past the given seq; nothing changed.
    Unchanged,
    /// The conversation has no message with that seq yet.
    BeyondLast {
        /// The conversation's last seq.
        last_seq: u64,
    },
}

/// Called once with the outcome of a read mark.
pub(crate) type ReadDone = Box<dyn FnOnce(Result<ReadMark, StoreError>) + Send>;

/// What a push request asks the host to tell a user's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushKind {
    /// A message the user has not seen.
    Message,
    /// The user read past pushed messages: clear or lower the badge.
    Read,
}

impl PushKind {
    /// The name in events and in the store.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PushKind::Message => "message",
            PushKind::Read => "read",
        }
    }
}

/// A request in the durable push outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushRequest {
    /// Unique and never reused.
    pub(crate) push_id: u64,
    /// Message or badge.
    pub(crate) kind: PushKind,
    /// Whom to notify.
    pub(crate) user: String,
    /// The conversation.
    pub(crate) conv: String,
    /// The message's seq, or the seq read up to.
    pub(crate) seq: u64,
    /// The message's sender (message requests).
    pub(crate) from: Option<String>,
}

/// Called once with the push requests now offered.
pub(crate) type PushesDone = Box<dyn FnOnce(Result<Vec<PushRequest>, StoreError>) + Send>;

/// Called once with whether the thing named was found.
pub(crate) type FoundDone = Box<dyn FnOnce(Result<bool, StoreError>) + Send>;

/// Runs `start`, which hands its outcome to the completion it is given, and
/// blocks until that completion is called. A completion dropped uncalled is
/// a store error. For callers off the network threads (the host's, the
/// blocking pool).
pub(crate) fn wait_for<T: Send + 'static>(
    start: impl FnOnce(Box<dyn FnOnce(Result<T, StoreError>) + Send>),
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    start(Box::new(move |outcome| {
        let _ = tx.send(outcome);
    }));
    rx.recv()
        .unwrap_or_else(|_| Err(StoreError("the store dropped the request".into())))
}

/// Called once with the outcome of a write that returns nothing.
pub(crate) type WriteDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A group as stored: whether it is closed, and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupRecord {
    /// The group id.
    pub(crate) group: String,
    /// Closed groups refuse `join`; only the host adds members.
    pub(crate) closed: bool,
    /// Its members, sorted.
    pub(crate) members: Vec<String>,
}

/// One conversation of a user, as listed by `conversations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConversationSummary {
    /// The conversation.
    pub(crate) conv: String,
    /// Its last seq (0 for a group without messages).
    pub(crate) last_seq: u64,
    /// The user's read cursor in it (0 when none).
    pub(crate) read_seq: u64,
}

/// Conversations by name: those after `after` (all, when `None`) up to and
/// including `until` (to the last, when `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConversationRange {
    /// Exclusive lower bound.
    pub(crate) after: Option<String>,
    /// Inclusive upper bound.
    pub(crate) until: Option<String>,
}

impl ConversationRange {
    /// Whether `conv` is after the range's start.
    pub(crate) fn starts_before(&self, conv: &str) -> bool {
        self.after.as_deref().is_none_or(|after| conv > after)
    }

    /// Whether `conv` is past the range's end.
    pub(crate) fn ends_before(&self, conv: &str) -> bool {
        self.until.as_deref().is_some_and(|until| conv > until)
    }
}

/// What a sync read: the conversations of a range, and whether the user has
/// more after it.
#[derive(Debug, Default)]
pub(crate) struct SyncedPage {
    /// The range's conversations, sorted.
    pub(crate) convs: Vec<SyncedConversation>,
    /// The user has conversations after the range's end.
    pub(crate) more_after: bool,
}

/// One conversation in a sync reply.
#[derive(Debug)]
pub(crate) struct SyncedConversation {
    /// The conversation.
    pub(crate) conv: String,
    /// Its last seq at the time of the sync.
    pub(crate) last_seq: u64,
    /// Messages above the cursor, oldest first, at most the sync's limit.
    pub(crate) messages: Vec<Arc<StoredMessage>>,
    /// Whether messages above the last of `messages` (or above the cursor,
    /// when there are none) were left out, by the limit or the byte budget.
    pub(crate) more: bool,
}

impl SyncedConversation {
    /// `conv` as a sync read it: `messages` above `cursor`; `starved` when
    /// the read's byte budget was spent before it came to this conversation.
    pub(crate) fn new(
        conv: String,
        last_seq: u64,
        cursor: u64,
        messages: Vec<Arc<StoredMessage>>,
        starved: bool,
    ) -> SyncedConversation {
        let more = match messages.last() {
            Some(last) => last.seq < last_seq,
            None => starved && last_seq > cursor,
        };
        SyncedConversation {
            conv,
            last_seq,
            messages,
            more,
        }
    }
}

/// The most unread messages [`Store::unread`] counts: a badge says "9999+"
/// long before, and counting further would read every old message.
pub(crate) const UNREAD_CAP: u64 = 9999;

/// The devices remembered per user, the most recently seen: a push event
/// lists them, and a client naming a new device at every connect must not
/// grow that list without end.
pub(crate) const MAX_DEVICES_PER_USER: usize = 20;

/// Whether a store can serve now, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoreHealth {
    /// Why the store cannot reach its database, while it cannot.
    pub(crate) failing: Option<String>,
    /// Writes that failed since the store opened (nothing of them was acknowledged).
    pub(crate) errors: u64,
}

/// A message store.
pub(crate) trait Store: Send + Sync + 'static {
    /// Stores `message` unless its `(from, client_id)` is already stored, and
    /// calls `done` exactly once with the outcome. Within a conversation,
    /// `done` is called in `seq` order, and never concurrently. A new
    /// message records a push request for each of `push_to` in the same
    /// commit; a duplicate records none. An event changes its target in the
    /// same step, under the rules of [`amend::apply`]; a message's files
    /// must be the sender's uploads or in one of its conversations, and are
    /// referred to from then on. Either may refuse it.
    fn append(&self, message: NewMessage, push_to: Vec<Arc<str>>, done: AppendDone);

    /// Moves `user`'s read cursor in `conv` forward to `seq`; calls `done`
    /// once with the outcome, after it is stored. With `badge`, when the
    /// cursor passed messages the user had push requests for, those
    /// requests give way to one badge request (kind read) in the same commit.
    fn mark_read(&self, user: Arc<str>, conv: String, seq: u64, badge: bool, done: ReadDone);

    /// Remembers that `user` connected from `device` (the latest
    /// [`MAX_DEVICES_PER_USER`] of them); `done` once stored.
    fn save_device(&self, user: Arc<str>, device: Arc<str>, done: WriteDone);

    /// The devices `user` ever connected from, sorted. Blocking.
    fn devices(&self, user: &str) -> Result<Vec<String>, StoreError>;

    /// Every member's read cursor in `conv`, by user. Blocking.
    fn read_positions(&self, conv: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// How many messages of others above `user`'s read cursors, over all
    /// its conversations, counting up to [`UNREAD_CAP`]; events and deleted
    /// messages do not count. Blocking.
    fn unread(&self, user: &str) -> Result<u64, StoreError>;

    /// Up to `limit` push requests not done and not offered since
    /// `offered_before` (ms), oldest first, marked offered at `now`; `done`
    /// once stored.
    fn offer_pushes(&self, now: i64, offered_before: i64, limit: usize, done: PushesDone);

    /// Ends the push request `push_id`: it is never offered again. `done`
    /// says whether it was still pending. A message request stays, done,
    /// until a read passes it and asks for a badge.
    fn push_done(&self, push_id: u64, done: FoundDone);

    /// Every push request not done yet, oldest first. Blocking.
    fn pending_pushes(&self) -> Result<Vec<PushRequest>, StoreError>;

    /// Up to `limit` messages of `conv` with `seq` below `before` (all, when
    /// `None`), the newest of them, oldest first; reading stops once they
    /// add up to `max_bytes` (see [`StoredMessage::size_bytes`]), so a read
    /// loads only about what its reply can carry. Blocking: call it off the
    /// network threads.
    fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, StoreError>;

    /// Creates `group`, or sets whether it is closed; `done` once stored.
    fn save_group(&self, group: String, closed: bool, done: WriteDone);

    /// Makes `user` a member of `group` (or not, when `member` is false); `done` once stored.
    fn save_member(&self, group: String, user: String, member: bool, done: WriteDone);

    /// Every group with its members, for loading at start. Blocking.
    fn groups(&self) -> Result<Vec<GroupRecord>, StoreError>;

    /// Up to `limit` conversations of `user` (its direct conversations and
    /// its groups) named after `after` (from the first, when `None`), sorted,
    /// with last seq and read cursor. Blocking.
    fn conversations(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError>;

    /// The conversations of `user` within `range`, sorted, each with its
    /// last seq and up to `limit` messages above its cursor in `cursors` (0
    /// when absent), from one consistent snapshot; and whether the user has
    /// conversations after the range. Reading messages stops once they add
    /// up to `max_bytes` over all conversations; the later ones then come
    /// without their messages. Blocking: call it off the network threads.
    fn sync(
        &self,
        user: &str,
        range: &ConversationRange,
        cursors: &HashMap<String, u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<SyncedPage, StoreError>;

    /// Up to `limit` messages within `scope` (not events, not deleted) whose
    /// text has the words of every one of `terms` (runs of a query as
    /// written, which the store cuts and folds as it does text), newest
    /// first, from after the cursor `after`; reading stops past `max_bytes`.
    /// Blocking.
    fn search(
        &self,
        scope: SearchScope<'_>,
        terms: &[String],
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<SearchPage, StoreError>;

    /// Records that `user` uploaded `file` at `now`, unless its uploads
    /// would then take more than `quota` bytes; `done` gets the file as
    /// stored (the same bytes uploaded before keep the type they were
    /// stored with), or `None` over the quota.
    fn save_upload(&self, user: Arc<str>, file: FileRecord, quota: u64, now: i64, done: UploadDone);

    /// The bytes of `user`'s uploads. Blocking.
    fn upload_usage(&self, user: &str) -> Result<u64, StoreError>;

    /// The file `file_id` when `reader` may have it: its uploader, a member
    /// of a conversation where a message refers to it, or (`None`) the host.
    /// Blocking.
    fn file(&self, file_id: &str, reader: Option<&str>) -> Result<Option<FileRecord>, StoreError>;

    /// Forgets uploads from before `uploaded_before` (ms) that no message
    /// refers to, then every file with neither uploads nor references left;
    /// `done` gets those files' ids, for their bytes to be removed.
    fn collect_files(&self, uploaded_before: i64, done: CollectedDone);

    /// Finishes the writes already queued (reporting each), then ends the
    /// store's threads; later writes fail with a store error. The server's
    /// stop calls it from a thread of its own, so shutting down never
    /// depends on which reference to the store drops last, or where.
    fn close(&self) {}

    /// Whether the store can serve now. A store in this process always can.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }
}
