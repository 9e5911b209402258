//! The in-memory store: for tests, demos and hosts that keep nothing.
//!
//! Conversations and idempotency keys live in hash maps split into shards so
//! that senders in different conversations rarely wait for each other. It
//! keeps everything until the server is dropped.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{AppendDone, Appended, NewMessage, Placement, Store, StoreError, StoredMessage};

const SHARDS: usize = 64;

type IdempotencyKey = (Arc<str>, String);

/// Messages and idempotency keys in memory.
pub struct MemoryStore {
    hasher: RandomState,
    conversations: Vec<Mutex<HashMap<String, Vec<Arc<StoredMessage>>>>>,
    keys: Vec<Mutex<HashMap<IdempotencyKey, Placement>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            hasher: RandomState::new(),
            conversations: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn shard<'a, T>(&self, shards: &'a [Mutex<T>], key: &str) -> MutexGuard<'a, T> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn append(&self, message: NewMessage, done: AppendDone) {
        // Lock order: sender's keys, then conversation. The key lock makes the
        // duplicate check and the insert one step; the conversation lock is
        // held across `done` so completions run in seq order.
        let mut keys = self.shard(&self.keys, &message.from);
        let key = (message.from.clone(), message.client_id.clone());
        if let Some(placement) = keys.get(&key) {
            let placement = placement.clone();
            drop(keys);
            return done(Ok(Appended::Duplicate(placement)));
        }
        let mut conversations = self.shard(&self.conversations, &message.conv);
        let log = conversations.entry(message.conv.clone()).or_default();
        let stored = Arc::new(StoredMessage {
            seq: log.len() as u64 + 1,
            message,
        });
        log.push(stored.clone());
        let appended = Appended::New(stored);
        keys.insert(key, appended.placement());
        drop(keys);
        done(Ok(appended));
    }

    fn history(&self, conv: &str, before: Option<u64>, limit: usize) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        let conversations = self.shard(&self.conversations, conv);
        let Some(log) = conversations.get(conv) else {
            return Ok(Vec::new());
        };
        // seq n sits at index n - 1.
        let end = before.map_or(log.len(), |b| (b.saturating_sub(1) as usize).min(log.len()));
        let start = end.saturating_sub(limit);
        Ok(log[start..end].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use serde_json::value::RawValue;

    use super::*;

    fn message(from: &str, client_id: &str) -> NewMessage {
        NewMessage {
            conv: "dm:a:b".into(),
            from: from.into(),
            to: Some("b".into()),
            group: None,
            client_id: client_id.into(),
            body: RawValue::from_string("1".into()).unwrap(),
            ts: 5,
        }
    }

    fn append(store: &MemoryStore, m: NewMessage) -> Appended {
        let (tx, rx) = channel();
        store.append(m, Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap()
    }

    #[test]
    fn seq_is_gapless_and_keys_are_idempotent() {
        let store = MemoryStore::new();
        assert_eq!(append(&store, message("a", "1")).placement().seq, 1);
        assert_eq!(append(&store, message("a", "2")).placement().seq, 2);
        assert!(matches!(append(&store, message("a", "1")), Appended::Duplicate(p) if p.seq == 1));
        assert_eq!(append(&store, message("b", "1")).placement().seq, 3);
        let all = store.history("dm:a:b", None, 10).unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn history_pages_below_before() {
        let store = MemoryStore::new();
        for i in 0..10 {
            append(&store, message("a", &i.to_string()));
        }
        let seqs = |before, limit| -> Vec<u64> {
            store
                .history("dm:a:b", before, limit)
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect()
        };
        assert_eq!(seqs(None, 3), [8, 9, 10]);
        assert_eq!(seqs(Some(5), 3), [2, 3, 4]);
        assert_eq!(seqs(Some(2), 3), [1]);
        assert_eq!(seqs(Some(1), 3), Vec::<u64>::new());
        assert_eq!(seqs(Some(100), 2), [9, 10]);
        assert!(store.history("dm:x:y", None, 5).unwrap().is_empty());
    }
}
