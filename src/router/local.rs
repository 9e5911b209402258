//! The in-process router: a sharded map from user to sessions.

use ahash::HashMap;
use ahash::RandomState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Attached, Position, Router, SessionHandle};

const SHARDS: usize = 64;

type Sessions = HashMap<Arc<str>, Vec<Arc<SessionHandle>>>;

/// Routes to sessions of this process. Users are spread over shards so that
/// fan-out to different users rarely touches the same lock.
pub(crate) struct LocalRouter {
    hasher: RandomState,
    shards: Vec<RwLock<Sessions>>,
    sessions: AtomicUsize,
    users: AtomicUsize,
}

impl Default for LocalRouter {
    fn default() -> Self {
        LocalRouter {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            sessions: AtomicUsize::new(0),
            users: AtomicUsize::new(0),
        }
    }
}

impl LocalRouter {
    /// A router with nobody online.
    pub(crate) fn new() -> LocalRouter {
        LocalRouter::default()
    }

    fn shard(&self, user: &str) -> &RwLock<Sessions> {
        &self.shards[self.hasher.hash_one(user) as usize % SHARDS]
    }
}

impl Router for LocalRouter {
    fn attach(&self, session: Arc<SessionHandle>, max_per_user: usize) -> Attached {
        let mut shard = self.shard(&session.user).write().unwrap_or_else(|p| p.into_inner());
        let list = shard.entry(session.user.clone()).or_default();
        if list.len() >= max_per_user {
            return Attached::TooMany;
        }
        list.push(session);
        self.sessions.fetch_add(1, Ordering::Relaxed);
        if list.len() > 1 {
            return Attached::AlreadyOnline;
        }
        self.users.fetch_add(1, Ordering::Relaxed);
        Attached::CameOnline
    }

    fn detach(&self, session: &SessionHandle) -> bool {
        let mut shard = self.shard(&session.user).write().unwrap_or_else(|p| p.into_inner());
        let Some(list) = shard.get_mut(&session.user) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| s.id != session.id);
        if list.len() == before {
            return false;
        }
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        let last = list.is_empty();
        if last {
            shard.remove(&session.user);
            self.users.fetch_sub(1, Ordering::Relaxed);
        }
        last
    }

    fn sessions_of(&self, user: &str) -> Vec<Arc<SessionHandle>> {
        let shard = self.shard(user).read().unwrap_or_else(|p| p.into_inner());
        shard.get(user).cloned().unwrap_or_default()
    }

    fn is_online(&self, user: &str) -> bool {
        self.shard(user)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(user)
    }

    fn online_users(&self) -> Vec<Arc<str>> {
        self.shards
            .iter()
            .flat_map(|shard| {
                shard
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
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

    fn user_count(&self) -> usize {
        self.users.load(Ordering::Relaxed)
    }
}
