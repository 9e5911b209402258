//! The in-process router: a sharded map from user to sessions.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Position, Router, SessionHandle};

const SHARDS: usize = 64;

type Sessions = HashMap<Arc<str>, Vec<Arc<SessionHandle>>>;

/// Routes to sessions of this process. Users are spread over shards so that
/// fan-out to different users rarely touches the same lock.
pub struct LocalRouter {
    hasher: RandomState,
    shards: Vec<RwLock<Sessions>>,
    sessions: AtomicUsize,
}

impl Default for LocalRouter {
    fn default() -> Self {
        LocalRouter {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            sessions: AtomicUsize::new(0),
        }
    }
}

impl LocalRouter {
    /// A router with nobody online.
    pub fn new() -> LocalRouter {
        LocalRouter::default()
    }

    fn shard(&self, user: &str) -> &RwLock<Sessions> {
        &self.shards[self.hasher.hash_one(user) as usize % SHARDS]
    }
}

impl Router for LocalRouter {
    fn attach(&self, session: Arc<SessionHandle>) {
        let mut shard = self.shard(&session.user).write().unwrap_or_else(|p| p.into_inner());
        shard.entry(session.user.clone()).or_default().push(session);
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    fn detach(&self, session: &SessionHandle) {
        let mut shard = self.shard(&session.user).write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = shard.get_mut(&session.user) {
            let before = list.len();
            list.retain(|s| s.id != session.id);
            if list.len() < before {
                self.sessions.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                shard.remove(&session.user);
            }
        }
    }

    fn deliver(&self, user: &str, frame: &Utf8Bytes, position: Option<Position<'_>>, except: Option<u64>) -> usize {
        let shard = self.shard(user).read().unwrap_or_else(|p| p.into_inner());
        let Some(list) = shard.get(user) else {
            return 0;
        };
        list.iter()
            .filter(|s| Some(s.id) != except)
            .filter(|s| s.outbox.push_at(frame.clone(), position))
            .count()
    }

    fn close_all(&self, code: u16, reason: &'static str) {
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            for session in shard.values().flatten() {
                session.outbox.close(code, reason);
            }
        }
    }

    fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }
}
