//! The in-memory store: for tests, demos and hosts that keep nothing.
//!
//! Conversations, idempotency keys and each user's conversations live in
//! hash maps split into shards, so that senders in different conversations
//! rarely wait for each other. Retention applies as messages arrive.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;

use ahash::{HashMap, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::MemoryLimits;
use crate::protocol::group_conv;

use super::amend::{self, Refused, Rules, null_body, searchable_text, with_state};
use super::memory_files::MemoryFiles;
use super::memory_notices::MemoryNotices;
use super::words::words;
use super::{
    AppendDone, Appended, CollectedDone, ConversationRange, ConversationSummary, FileRecord, FoundDone, GroupRecord,
    MessageKind, MessageState, NewMessage, Placement, PushRequest, PushesDone, ReadDone, ReadMark, Retention,
    SearchPage, SearchScope, Store, StoreError, StoredMessage, SyncedConversation, SyncedPage, UNREAD_CAP, UploadDone,
    WriteDone, take_within,
};

const SHARDS: usize = 64;

/// An idempotency key as kept: two keyed 64-bit hashes of the sender and
/// its client id, so that keeping a key allocates nothing and finding one
/// compares no strings. The hash keys are random per store: two different
/// sends share a digest with odds of about 10^-27 among 500,000 keys, far
/// below a memory error's (docs/DECISIONS.md, "Idempotency keys as digests").
type KeyDigest = u128;

/// What a kept message costs beyond its bytes: the `Arc`, the struct and the
/// allocations of its strings and body (measured: a direct run of 64-byte
/// bodies held about 3.6 times their counted bytes).
const MESSAGE_OVERHEAD: usize = 256;

/// The memory a kept message takes, as `store.memory.max_bytes` counts it.
fn footprint(message: &StoredMessage) -> usize {
    message.size_bytes() + MESSAGE_OVERHEAD
}

/// One conversation: its name, its last seq and the messages still kept.
struct Conversation {
    /// Shared with the idempotency keys of its messages, which would
    /// otherwise each copy it.
    name: Arc<str>,
    last_seq: u64,
    kept: VecDeque<Arc<StoredMessage>>,
}

impl Conversation {
    /// A conversation with no message yet.
    fn named(name: &str) -> Conversation {
        Conversation {
            name: name.into(),
            last_seq: 0,
            kept: VecDeque::new(),
        }
    }

    /// The kept message `seq`, and where it is in `kept`.
    fn find(&self, seq: u64) -> Option<(usize, &Arc<StoredMessage>)> {
        let first = self.kept.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.kept.get(index).filter(|m| m.seq == seq).map(|m| (index, m))
    }

    /// Puts `replacement` in the place of the kept entry at `index`; the
    /// bytes it takes more (or, negative, less).
    fn replace(&mut self, index: usize, replacement: Arc<StoredMessage>) -> isize {
        let old = std::mem::replace(&mut self.kept[index], replacement);
        footprint(&self.kept[index]) as isize - footprint(&old) as isize
    }

    /// Applies what an event made of its target; for a delete, erases the
    /// target's earlier events too (edits' bodies, reactions' emojis).
    /// Returns the seqs whose file references go, and the change in bytes kept.
    fn amend(&mut self, kind: MessageKind, amended: amend::Amended) -> (Vec<u64>, isize) {
        let Some((index, target)) = self.find(amended.seq).map(|(index, m)| (index, m.clone())) else {
            return (Vec::new(), 0);
        };
        let mut grown = self.replace(index, with_state(&target, amended.body, amended.state));
        let mut released = Vec::new();
        if kind == MessageKind::Delete {
            released.push(amended.seq);
            for index in index + 1..self.kept.len() {
                let entry = self.kept[index].clone();
                let erasable = !matches!(entry.message.kind, MessageKind::Message | MessageKind::Delete);
                if erasable && entry.message.target == Some(amended.seq) {
                    released.push(entry.seq);
                    let erased = MessageState {
                        deleted: true,
                        ..MessageState::default()
                    };
                    grown += self.replace(index, with_state(&entry, null_body(), erased));
                }
            }
        }
        (released, grown)
    }

    /// Up to `limit` kept messages between `after` and `before` (exclusive),
    /// the newest of them when `newest`, oldest first, within `budget` bytes.
    fn range(
        &self,
        after: u64,
        before: u64,
        limit: usize,
        newest: bool,
        budget: &mut usize,
    ) -> Vec<Arc<StoredMessage>> {
        let in_range = self.kept.iter().filter(|m| m.seq > after && m.seq < before).cloned();
        if newest {
            let Ok(mut newest_first) = take_within(in_range.rev().map(Ok::<_, Infallible>), limit, budget);
            newest_first.reverse();
            newest_first
        } else {
            let Ok(oldest_first) = take_within(in_range.map(Ok::<_, Infallible>), limit, budget);
            oldest_first
        }
    }

    /// Drops what `retention` no longer keeps; the bytes dropped.
    fn apply_retention(&mut self, retention: &Retention, now_ms: i64) -> usize {
        let max = retention.max_messages_per_conversation as usize;
        let oldest = retention.oldest_kept_ts(now_ms);
        let mut dropped = 0;
        while let Some(front) = self.kept.front() {
            let too_many = max > 0 && self.kept.len() > max;
            let too_old = oldest.is_some_and(|oldest| front.message.ts < oldest);
            if !(too_many || too_old) {
                break;
            }
            dropped += footprint(front);
            self.kept.pop_front();
        }
        dropped
    }

    /// Drops the oldest messages, keeping the newest, until `excess` bytes
    /// went; the bytes dropped.
    fn shed(&mut self, excess: usize) -> usize {
        let mut dropped = 0;
        while dropped < excess && self.kept.len() > 1 {
            dropped += self.kept.pop_front().map_or(0, |m| footprint(&m));
        }
        dropped
    }
}

/// One shard of idempotency keys, in two generations: new keys go to
/// `current`; when the shard must give way, `previous` is dropped whole and
/// `current` takes its place. Nothing is removed key by key: a hash table
/// that drops its oldest key at every insert fills with tombstones and
/// doubles some tens of seconds after the store is full (a step of 13 MB in
/// RSS 45 s into a saturating run).
#[derive(Default)]
struct Keys {
    current: HashMap<KeyDigest, KeptPlacement>,
    previous: HashMap<KeyDigest, KeptPlacement>,
}

/// Where a send was stored, as its key keeps it: the conversation's name
/// shared, not copied (a copy was an allocation per message).
struct KeptPlacement {
    conv: Arc<str>,
    seq: u64,
    ts: i64,
}

impl Keys {
    /// Where the send with this key was stored, if it is still remembered.
    fn get(&self, key: &KeyDigest) -> Option<Placement> {
        let kept = self.current.get(key).or_else(|| self.previous.get(key))?;
        Some(Placement {
            conv: kept.conv.to_string(),
            seq: kept.seq,
            ts: kept.ts,
        })
    }

    /// Forgets the older generation and starts a new one, sized like the
    /// one before it; how many keys were forgotten.
    fn next_generation(&mut self) -> usize {
        let next = HashMap::with_capacity_and_hasher(self.current.len(), RandomState::default());
        let current = std::mem::replace(&mut self.current, next);
        std::mem::replace(&mut self.previous, current).len()
    }
}

/// Messages, idempotency keys and read cursors in memory.
pub(crate) struct MemoryStore {
    hasher: RandomState,
    /// The two hashes of a [`KeyDigest`].
    key_hashers: [RandomState; 2],
    retention: Retention,
    limits: MemoryLimits,
    /// Bytes of the messages kept, over all conversations.
    kept_bytes: AtomicUsize,
    /// Idempotency keys kept, over all shards.
    key_count: AtomicUsize,
    conversations: Vec<Mutex<HashMap<String, Conversation>>>,
    keys: Vec<Mutex<Keys>>,
    users: Vec<Mutex<HashMap<Arc<str>, BTreeSet<String>>>>,
    /// User → conversation → read seq: a listing reads one user's cursors,
    /// not everyone's.
    read_cursors: Mutex<HashMap<Arc<str>, HashMap<String, u64>>>,
    /// Conversation → user → read seq: receipts read one conversation's.
    read_positions: Mutex<HashMap<String, BTreeMap<String, u64>>>,
    groups: Mutex<HashMap<String, (bool, BTreeSet<String>)>>,
    notices: MemoryNotices,
    files: MemoryFiles,
    rules: Rules,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_retention(
            Retention::default(),
            MemoryLimits::default(),
            Rules::from(&crate::config::MessagesConfig::default()),
        )
    }
}

fn shards<T: Default>() -> Vec<Mutex<T>> {
    (0..SHARDS).map(|_| Mutex::default()).collect()
}

impl MemoryStore {
    /// An empty store that keeps everything.
    #[cfg(test)]
    pub(crate) fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An empty store that keeps what `retention` and `limits` allow.
    pub(crate) fn with_retention(retention: Retention, limits: MemoryLimits, rules: Rules) -> MemoryStore {
        MemoryStore {
            hasher: RandomState::new(),
            key_hashers: [RandomState::new(), RandomState::new()],
            retention,
            limits,
            kept_bytes: AtomicUsize::new(0),
            key_count: AtomicUsize::new(0),
            conversations: shards(),
            keys: shards(),
            users: shards(),
            read_cursors: Mutex::default(),
            read_positions: Mutex::default(),
            groups: Mutex::default(),
            notices: MemoryNotices::default(),
            files: MemoryFiles::default(),
            rules,
        }
    }

    fn shard<'a, T>(&self, shards: &'a [Mutex<T>], key: &str) -> MutexGuard<'a, T> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The digest under which `from`'s send with `client_id` is remembered.
    fn key_digest(&self, from: &str, client_id: &str) -> KeyDigest {
        let [high, low] = self.key_hashers.each_ref().map(|h| h.hash_one((from, client_id)));
        (KeyDigest::from(high) << 64) | KeyDigest::from(low)
    }

    fn remember_conversation(&self, user: &str, conv: &str) {
        let mut users = self.shard(&self.users, user);
        if !users.get(user).is_some_and(|convs| convs.contains(conv)) {
            users.entry(user.into()).or_default().insert(conv.to_owned());
        }
    }

    fn forget_conversation(&self, user: &str, conv: &str) {
        if let Some(convs) = self.shard(&self.users, user).get_mut(user) {
            convs.remove(conv);
        }
    }

    fn conversations_of(&self, user: &str) -> BTreeSet<String> {
        self.shard(&self.users, user).get(user).cloned().unwrap_or_default()
    }

    /// Every conversation's name.
    fn all_conversations(&self) -> BTreeSet<String> {
        self.conversations
            .iter()
            .flat_map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn last_seq(&self, conv: &str) -> u64 {
        self.shard(&self.conversations, conv)
            .get(conv)
            .map_or(0, |c| c.last_seq)
    }
}

impl Store for MemoryStore {
    fn append(&self, message: NewMessage, push_to: Vec<Arc<str>>, done: AppendDone) {
        // Lock order: sender's keys, then conversation. The key lock makes the
        // duplicate check and the insert one step; the conversation lock is
        // held across `done` so completions run in seq order.
        let mut keys = self.shard(&self.keys, &message.from);
        let key = self.key_digest(&message.from, &message.client_id);
        if let Some(placement) = keys.get(&key) {
            drop(keys);
            return done(Ok(Appended::Duplicate(placement)));
        }
        if !message.files.is_empty() && !message.by_host {
            let scope = self.conversations_of(&message.from);
            if let Some(missing) = self.files.first_unknown(&message.from, &scope, &message.files) {
                drop(keys);
                return done(Ok(Appended::Refused(Refused::NotFound(format!(
                    "unknown file {missing}"
                )))));
            }
        }
        let mut conversations = self.shard(&self.conversations, &message.conv);
        let target = message
            .target
            .and_then(|seq| conversations.get(&message.conv)?.find(seq).map(|(_, m)| m.clone()));
        let amended = match amend::apply(&message, target.as_deref(), &self.rules) {
            Ok(amended) => amended,
            Err(why) => {
                drop((conversations, keys));
                return done(Ok(Appended::Refused(why)));
            }
        };
        // Looked up first: the key is cloned only for a conversation's first
        // message. Its two users are remembered then, and only then: a direct
        // conversation is never forgotten, and its first message is a message
        // (an event needs a target). Group conversations belong to their
        // members, not to whoever sent in them.
        if !conversations.contains_key(&message.conv) {
            if let Some(to) = message.to.as_deref().filter(|_| message.kind == MessageKind::Message) {
                self.remember_conversation(&message.from, &message.conv);
                self.remember_conversation(to, &message.conv);
            }
            conversations.insert(message.conv.clone(), Conversation::named(&message.conv));
        }
        let conversation = conversations.get_mut(&message.conv).expect("inserted above");
        conversation.last_seq += 1;
        let now = message.ts;
        let kind = message.kind;
        let stored = Arc::new(StoredMessage {
            seq: conversation.last_seq,
            message,
            state: MessageState::default(),
        });
        conversation.kept.push_back(stored.clone());
        let mut grown = 0;
        if let Some(amended) = amended {
            let (released, change) = conversation.amend(kind, amended);
            self.files.release(&stored.message.conv, &released);
            grown = change;
        }
        // An edit or delete may shrink its target by more than the event takes.
        let added = footprint(&stored);
        match grown {
            0.. => self.kept_bytes.fetch_add(grown.unsigned_abs(), Ordering::Relaxed),
            _ => self.kept_bytes.fetch_sub(grown.unsigned_abs(), Ordering::Relaxed),
        };
        self.files
            .refer(&stored.message.files, &stored.message.conv, stored.seq);
        let dropped = conversation.apply_retention(&self.retention, now);
        let kept = self.kept_bytes.fetch_add(added, Ordering::Relaxed) + added - dropped;
        let excess = kept.saturating_sub(self.limits.max_bytes as usize);
        let shed = if excess > 0 { conversation.shed(excess) } else { 0 };
        self.kept_bytes.fetch_sub(dropped + shed, Ordering::Relaxed);
        self.notices.request_pushes(&stored.message, stored.seq, &push_to);
        let placement = KeptPlacement {
            conv: conversation.name.clone(),
            seq: stored.seq,
            ts: stored.message.ts,
        };
        let appended = Appended::New(stored);
        keys.current.insert(key, placement);
        // The bound is global; the sender's own shard gives way, so a sender
        // that floods mostly forgets its own keys, not a bystander's. A shard
        // whose older generation is empty starts one; it gives way next time.
        let count = self.key_count.fetch_add(1, Ordering::Relaxed) + 1;
        if count > self.limits.max_keys as usize {
            let forgotten = keys.next_generation();
            self.key_count.fetch_sub(forgotten, Ordering::Relaxed);
        }
        drop(keys);
        done(Ok(appended));
    }

    fn mark_read(&self, user: Arc<str>, conv: String, seq: u64, badge: bool, done: ReadDone) {
        let last_seq = self.last_seq(&conv);
        if seq > last_seq {
            return done(Ok(ReadMark::BeyondLast { last_seq }));
        }
        let mut cursors = self.read_cursors.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = cursors
            .entry(user.clone())
            .or_default()
            .entry(conv.clone())
            .or_default();
        let mark = if seq > *cursor {
            *cursor = seq;
            ReadMark::Advanced
        } else {
            ReadMark::Unchanged
        };
        drop(cursors);
        if mark == ReadMark::Advanced {
            self.read_positions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(conv.clone())
                .or_default()
                .insert(user.to_string(), seq);
            if badge {
                self.notices.badge_after_read(&user, &conv, seq);
            }
        }
        done(Ok(mark));
    }

    fn save_device(&self, user: Arc<str>, device: Arc<str>, done: WriteDone) {
        self.notices.save_device(&user, &device);
        done(Ok(()));
    }

    fn devices(&self, user: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.notices.devices(user))
    }

    fn read_positions(&self, conv: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let positions = self.read_positions.lock().unwrap_or_else(|p| p.into_inner());
        Ok(positions
            .get(conv)
            .map(|p| p.iter().map(|(user, seq)| (user.clone(), *seq)).collect())
            .unwrap_or_default())
    }

    fn unread(&self, user: &str) -> Result<u64, StoreError> {
        let cursors = self
            .read_cursors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
            .unwrap_or_default();
        let mut unread = 0;
        for conv in self.conversations_of(user) {
            let cursor = cursors.get(&conv).copied().unwrap_or(0);
            if let Some(c) = self.shard(&self.conversations, &conv).get(&conv) {
                unread += c
                    .kept
                    .iter()
                    .filter(|m| m.seq > cursor && *m.message.from != *user)
                    .filter(|m| m.message.kind == MessageKind::Message && !m.state.deleted)
                    .count() as u64;
            }
            if unread >= UNREAD_CAP {
                return Ok(UNREAD_CAP);
            }
        }
        Ok(unread)
    }

    fn offer_pushes(&self, now: i64, offered_before: i64, limit: usize, done: PushesDone) {
        done(Ok(self.notices.offer(now, offered_before, limit)));
    }

    fn push_done(&self, push_id: u64, done: FoundDone) {
        done(Ok(self.notices.done(push_id)));
    }

    fn pending_pushes(&self) -> Result<Vec<PushRequest>, StoreError> {
        Ok(self.notices.pending())
    }

    fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: usize,
        mut max_bytes: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        let conversations = self.shard(&self.conversations, conv);
        Ok(conversations
            .get(conv)
            .map(|c| c.range(0, before.unwrap_or(u64::MAX), limit, true, &mut max_bytes))
            .unwrap_or_default())
    }

    fn search(
        &self,
        scope: SearchScope<'_>,
        wanted: &[String],
        after: Option<&str>,
        limit: usize,
        mut max_bytes: usize,
    ) -> Result<SearchPage, StoreError> {
        let Some(below) = after.map_or(Some(None), |a| SearchCursor::parse(a).map(Some)) else {
            return Ok(SearchPage::default());
        };
        let convs = match scope {
            SearchScope::User(user) => self.conversations_of(user),
            SearchScope::Conv(conv) => BTreeSet::from([conv.to_owned()]),
            SearchScope::All => self.all_conversations(),
        };
        let mut found = Vec::new();
        for conv in convs {
            let conversations = self.shard(&self.conversations, &conv);
            let Some(conversation) = conversations.get(&conv) else {
                continue;
            };
            for m in &conversation.kept {
                let cursor = SearchCursor::of(m);
                let searchable = m.message.kind == MessageKind::Message && !m.state.deleted;
                if searchable && below.as_ref().is_none_or(|below| cursor < *below) {
                    let text = words(&searchable_text(&m.message.body));
                    if wanted.iter().flat_map(|term| words(term)).all(|w| text.contains(&w)) {
                        found.push((cursor, m.clone()));
                    }
                }
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0));
        let more = found.len() > limit;
        let Ok(results) = take_within(
            found.iter().map(|(_, m)| Ok::<_, Infallible>(m.clone())),
            limit,
            &mut max_bytes,
        );
        let cursors: Vec<String> = results.iter().map(|m| SearchCursor::of(m).to_string()).collect();
        let next = (more || (max_bytes == 0 && results.len() < found.len()))
            .then(|| cursors.last().cloned())
            .flatten();
        Ok(SearchPage { results, cursors, next })
    }

    fn save_upload(&self, user: Arc<str>, file: FileRecord, quota: u64, now: i64, done: UploadDone) {
        done(Ok(self.files.save_upload(&user, file, quota, now)));
    }

    fn upload_usage(&self, user: &str) -> Result<u64, StoreError> {
        Ok(self.files.usage(user))
    }

    fn file(&self, file_id: &str, reader: Option<&str>) -> Result<Option<FileRecord>, StoreError> {
        let scope = reader.map(|user| (user, self.conversations_of(user)));
        Ok(self
            .files
            .file(file_id, scope.as_ref().map(|(user, convs)| (*user, convs))))
    }

    fn collect_files(&self, uploaded_before: i64, done: CollectedDone) {
        let kept = |conv: &str, seq: u64| {
            self.shard(&self.conversations, conv)
                .get(conv)
                .is_some_and(|c| c.find(seq).is_some())
        };
        done(Ok(self.files.collect(uploaded_before, kept)));
    }

    fn save_group(&self, group: String, closed: bool, done: WriteDone) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(group)
            .or_default()
            .0 = closed;
        done(Ok(()));
    }

    fn save_member(&self, group: String, user: String, member: bool, done: WriteDone) {
        let conv = group_conv(&group);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let members = &mut groups.entry(group).or_default().1;
        if member {
            members.insert(user.clone());
            self.remember_conversation(&user, &conv);
        } else {
            members.remove(&user);
            self.forget_conversation(&user, &conv);
        }
        drop(groups);
        done(Ok(()));
    }

    fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        Ok(groups
            .iter()
            .map(|(group, (closed, members))| GroupRecord {
                group: group.clone(),
                closed: *closed,
                members: members.iter().cloned().collect(),
            })
            .collect())
    }

    fn conversations(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let mut listed: Vec<ConversationSummary> = self
            .conversations_of(user)
            .into_iter()
            .filter(|conv| after.is_none_or(|after| conv.as_str() > after))
            .take(limit)
            .map(|conv| ConversationSummary {
                last_seq: self.last_seq(&conv),
                read_seq: 0,
                conv,
            })
            .collect();
        let read_cursors = self.read_cursors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mine) = read_cursors.get(user) {
            for summary in &mut listed {
                summary.read_seq = mine.get(&summary.conv).copied().unwrap_or(0);
            }
        }
        Ok(listed)
    }

    fn sync(
        &self,
        user: &str,
        range: &ConversationRange,
        cursors: &std::collections::HashMap<String, u64>,
        limit: usize,
        mut max_bytes: usize,
    ) -> Result<SyncedPage, StoreError> {
        let mut page = SyncedPage::default();
        for conv in self.conversations_of(user) {
            if !range.starts_before(&conv) {
                continue;
            }
            if range.ends_before(&conv) {
                page.more_after = true;
                break;
            }
            let after = cursors.get(&conv).copied().unwrap_or(0);
            let starved = max_bytes == 0;
            let conversations = self.shard(&self.conversations, &conv);
            let (last_seq, messages) = conversations
                .get(&conv)
                .map(|c| (c.last_seq, c.range(after, u64::MAX, limit, false, &mut max_bytes)))
                .unwrap_or_default();
            drop(conversations);
            page.convs
                .push(SyncedConversation::new(conv, last_seq, after, messages, starved));
        }
        Ok(page)
    }
}

/// Where a search result is in the order of results (newest first): its
/// time, conversation and seq. On the wire `<ts>:<seq>:<conv>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SearchCursor {
    ts: i64,
    conv: String,
    seq: u64,
}

impl SearchCursor {
    fn of(m: &StoredMessage) -> SearchCursor {
        SearchCursor {
            ts: m.message.ts,
            conv: m.message.conv.clone(),
            seq: m.seq,
        }
    }

    fn parse(text: &str) -> Option<SearchCursor> {
        let mut parts = text.splitn(3, ':');
        Some(SearchCursor {
            ts: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            conv: parts.next()?.to_owned(),
        })
    }
}

impl std::fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.ts, self.seq, self.conv)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use serde_json::value::RawValue;

    use super::*;

    /// Every conversation of `user`, synced from `cursors`.
    fn sync(
        store: &MemoryStore,
        user: &str,
        cursors: &std::collections::HashMap<String, u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Vec<SyncedConversation> {
        let page = store.sync(user, &ConversationRange::default(), cursors, limit, max_bytes);
        page.unwrap().convs
    }

    #[test]
    fn sync_covers_its_range_and_tells_what_follows() {
        let store = MemoryStore::new();
        for other in ["c", "d", "e"] {
            append(&store, message_between("a", other));
        }
        let range = |after: Option<&str>, until: Option<&str>| ConversationRange {
            after: after.map(str::to_owned),
            until: until.map(str::to_owned),
        };
        let names = |page: SyncedPage| {
            (
                page.convs.into_iter().map(|c| c.conv).collect::<Vec<_>>(),
                page.more_after,
            )
        };
        let read = |r| names(store.sync("a", &r, &Default::default(), 10, usize::MAX).unwrap());
        assert_eq!(
            read(range(None, None)),
            (vec!["dm:a:c".into(), "dm:a:d".into(), "dm:a:e".into()], false)
        );
        assert_eq!(read(range(None, Some("dm:a:c"))), (vec!["dm:a:c".to_owned()], true));
        assert_eq!(
            read(range(Some("dm:a:c"), Some("dm:a:d"))),
            (vec!["dm:a:d".to_owned()], true)
        );
        assert_eq!(
            read(range(Some("dm:a:d"), Some("dm:a:x"))),
            (vec!["dm:a:e".to_owned()], false)
        );
    }

    fn test_rules() -> Rules {
        Rules::from(&crate::config::MessagesConfig::default())
    }

    fn message_between(from: &str, to: &str) -> NewMessage {
        NewMessage {
            conv: crate::protocol::direct_conv(from, to),
            to: Some(to.into()),
            ..message(from, to, 5)
        }
    }

    fn message(from: &str, client_id: &str, ts: i64) -> NewMessage {
        NewMessage {
            conv: "dm:a:b".into(),
            from: from.into(),
            to: Some(if from == "a" { "b" } else { "a" }.into()),
            group: None,
            client_id: client_id.into(),
            body: RawValue::from_string("1".into()).unwrap(),
            ts,
            kind: MessageKind::Message,
            target: None,
            files: Vec::new(),
            by_host: false,
        }
    }

    fn append(store: &MemoryStore, m: NewMessage) -> Appended {
        let (tx, rx) = channel();
        store.append(m, Vec::new(), Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap()
    }

    fn seqs(messages: &[Arc<StoredMessage>]) -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn seq_is_gapless_and_keys_are_idempotent() {
        let store = MemoryStore::new();
        assert_eq!(append(&store, message("a", "1", 5)).placement().unwrap().seq, 1);
        assert_eq!(append(&store, message("a", "2", 5)).placement().unwrap().seq, 2);
        assert!(matches!(append(&store, message("a", "1", 5)), Appended::Duplicate(p) if p.seq == 1));
        assert_eq!(append(&store, message("b", "1", 5)).placement().unwrap().seq, 3);
        assert_eq!(seqs(&store.history("dm:a:b", None, 10, usize::MAX).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn history_pages_below_before() {
        let store = MemoryStore::new();
        for i in 0..10 {
            append(&store, message("a", &i.to_string(), 5));
        }
        let page = |before, limit| seqs(&store.history("dm:a:b", before, limit, usize::MAX).unwrap());
        assert_eq!(page(None, 3), [8, 9, 10]);
        assert_eq!(page(Some(5), 3), [2, 3, 4]);
        assert_eq!(page(Some(2), 3), [1]);
        assert_eq!(page(Some(1), 3), Vec::<u64>::new());
        assert_eq!(page(Some(100), 2), [9, 10]);
        assert!(store.history("dm:x:y", None, 5, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn sync_names_every_conversation_of_the_user_and_pages_by_cursor() {
        let store = MemoryStore::new();
        for i in 0..5 {
            append(&store, message("a", &i.to_string(), 5));
        }
        let cursors = std::collections::HashMap::from([("dm:a:b".to_owned(), 2)]);
        let synced = sync(&store, "b", &cursors, 2, usize::MAX);
        assert_eq!(synced.len(), 1);
        assert_eq!((synced[0].conv.as_str(), synced[0].last_seq), ("dm:a:b", 5));
        assert_eq!(seqs(&synced[0].messages), [3, 4]);
        assert!(sync(&store, "c", &Default::default(), 2, usize::MAX).is_empty());
    }

    #[test]
    fn reads_stop_at_their_byte_budget_but_always_make_progress() {
        let store = MemoryStore::new();
        for i in 0..10 {
            append(&store, message("a", &i.to_string(), 5));
        }
        let one = store.history("dm:a:b", None, 10, usize::MAX).unwrap()[0].size_bytes();
        assert_eq!(seqs(&store.history("dm:a:b", None, 10, 3 * one).unwrap()), [8, 9, 10]);
        assert_eq!(
            seqs(&store.history("dm:a:b", None, 10, 1).unwrap()),
            [10],
            "one even over budget"
        );
        let synced = sync(&store, "b", &Default::default(), 10, 2 * one);
        assert_eq!(seqs(&synced[0].messages), [1, 2]);
        assert!(synced[0].more);
        let starved = sync(&store, "b", &Default::default(), 10, 0);
        assert!(
            starved[0].messages.is_empty() && starved[0].more,
            "no budget: more, never silence"
        );
    }

    #[test]
    fn retention_drops_the_oldest_but_seq_keeps_counting() {
        let by_count = MemoryStore::with_retention(
            Retention {
                max_messages_per_conversation: 3,
                max_age_seconds: 0,
            },
            MemoryLimits::default(),
            test_rules(),
        );
        for i in 0..5 {
            append(&by_count, message("a", &i.to_string(), 5));
        }
        assert_eq!(
            seqs(&by_count.history("dm:a:b", None, 10, usize::MAX).unwrap()),
            [3, 4, 5]
        );
        assert_eq!(append(&by_count, message("a", "new", 5)).placement().unwrap().seq, 6);

        let by_age = MemoryStore::with_retention(
            Retention {
                max_messages_per_conversation: 0,
                max_age_seconds: 10,
            },
            MemoryLimits::default(),
            test_rules(),
        );
        append(&by_age, message("a", "old", 1_000));
        append(&by_age, message("a", "new", 20_000));
        assert_eq!(seqs(&by_age.history("dm:a:b", None, 10, usize::MAX).unwrap()), [2]);
    }

    #[test]
    fn read_cursors_only_move_forward_and_not_past_the_last_message() {
        let store = MemoryStore::new();
        append(&store, message("a", "1", 5));
        append(&store, message("a", "2", 5));
        let mark = |seq| {
            let (tx, rx) = channel();
            store.mark_read(
                "b".into(),
                "dm:a:b".into(),
                seq,
                false,
                Box::new(move |r| tx.send(r).unwrap()),
            );
            rx.recv().unwrap().unwrap()
        };
        assert_eq!(mark(2), ReadMark::Advanced);
        assert_eq!(mark(1), ReadMark::Unchanged);
        assert_eq!(mark(3), ReadMark::BeyondLast { last_seq: 2 });
    }

    #[test]
    fn kept_bytes_stay_within_the_bound_and_each_conversation_keeps_its_newest() {
        let limits = MemoryLimits {
            max_bytes: 2_000,
            max_keys: 1_000_000,
        };
        let store = MemoryStore::with_retention(Retention::default(), limits, test_rules());
        let body = format!("\"{}\"", "x".repeat(200));
        let mut biggest = 0;
        for i in 0..60 {
            let mut m = message("a", &format!("c{i}"), 0);
            m.conv = format!("dm:a:b{}", i % 3);
            m.to = Some(format!("b{}", i % 3));
            m.body = RawValue::from_string(body.clone()).unwrap();
            if let Appended::New(stored) = append(&store, m) {
                biggest = biggest.max(footprint(&stored));
            }
        }
        let kept: usize = (0..3)
            .flat_map(|c| store.history(&format!("dm:a:b{c}"), None, 1000, usize::MAX).unwrap())
            .map(|m| footprint(&m))
            .sum();
        assert!(kept <= 2_000 + 3 * biggest, "{kept} bytes kept");
        assert_eq!(
            store.kept_bytes.load(Ordering::Relaxed),
            kept,
            "the count matches what is kept"
        );
        for c in 0..3 {
            let newest = store.history(&format!("dm:a:b{c}"), None, 1, usize::MAX).unwrap();
            assert_eq!(seqs(&newest), [20], "the newest of dm:a:b{c}");
        }
    }

    #[test]
    fn only_the_latest_idempotency_keys_are_kept() {
        let limits = MemoryLimits {
            max_bytes: u64::MAX,
            max_keys: 2,
        };
        let store = MemoryStore::with_retention(Retention::default(), limits, test_rules());
        for i in 0..5 {
            append(&store, message("a", &format!("c{i}"), 0));
        }
        // Two keys kept: c3 and c4.
        assert!(matches!(append(&store, message("a", "c4", 0)), Appended::Duplicate(p) if p.seq == 5));
        assert!(matches!(append(&store, message("a", "c0", 0)), Appended::New(m) if m.seq == 6));
    }

    #[test]
    fn collecting_files_while_messages_refer_to_them_never_deadlocks() {
        let store = Arc::new(MemoryStore::new());
        let file_id = "f".repeat(64);
        let file = FileRecord {
            file_id: file_id.clone(),
            size: 1,
            content_type: "image/png".into(),
        };
        let (saved, done) = channel();
        store.save_upload("a".into(), file, u64::MAX, 0, Box::new(move |r| saved.send(r).unwrap()));
        assert!(matches!(done.recv().unwrap(), Ok(Some(_))));
        let referring = move |n: usize| {
            let mut m = message("a", &format!("c{n}"), 0);
            m.files = vec![file_id.clone()];
            m
        };
        for n in 0..2_000 {
            append(&store, referring(n));
        }
        // Both sides for a while at once: each takes the other's lock while holding its own.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        let (finished, all_done) = channel();
        let appender = {
            let (store, finished, referring) = (store.clone(), finished.clone(), referring.clone());
            std::thread::spawn(move || {
                let mut n = 2_000;
                while std::time::Instant::now() < until {
                    append(&store, referring(n));
                    n += 1;
                }
                finished.send(()).unwrap();
            })
        };
        let collector = std::thread::spawn(move || {
            while std::time::Instant::now() < until {
                store.collect_files(0, Box::new(|_| {}));
            }
            finished.send(()).unwrap();
        });
        for _ in 0..2 {
            all_done
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("appends and collection went on without each other");
        }
        appender.join().unwrap();
        collector.join().unwrap();
    }

    #[test]
    fn a_delete_gives_back_the_bytes_of_its_target() {
        let store = MemoryStore::new();
        let mut big = message("a", "big", 5);
        big.body = RawValue::from_string(format!("\"{}\"", "x".repeat(60_000))).unwrap();
        append(&store, big);
        let mut delete = message("a", "d", 5);
        delete.kind = MessageKind::Delete;
        delete.target = Some(1);
        assert!(matches!(append(&store, delete), Appended::New(_)));
        let kept: usize = store
            .history("dm:a:b", None, 10, usize::MAX)
            .unwrap()
            .iter()
            .map(|m| footprint(m))
            .sum();
        assert_eq!(store.kept_bytes.load(Ordering::Relaxed), kept);
        assert!(kept < 1_000, "{kept}");
    }
}
