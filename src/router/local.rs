//! The in-process router: a sharded map from user to sessions.

use ahash::HashMap;
use ahash::RandomState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Attached, Audience, Position, Router, SessionHandle};

const SHARDS: usize = 64;
// A user's shard fits in a byte (`deliver_to_all`).
const _: () = assert!(SHARDS <= 256);

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
        &self.shards[self.shard_of(user)]
    }

    fn shard_of(&self, user: &str) -> usize {
        self.hasher.hash_one(user) as usize % SHARDS
    }

    /// Queues `frame` to the sessions of `user` in `shard`, a shard already locked.
    fn deliver_in(
        shard: &Sessions,
        user: &str,
        frame: &Utf8Bytes,
        position: Option<Position<'_>>,
        except: Option<u64>,
    ) -> usize {
        let Some(list) = shard.get(user) else {
            return 0;
        };
        list.iter()
            .filter(|s| Some(s.id) != except)
            .filter(|s| s.outbox.push_at(frame.clone(), position))
            .count()
    }

    /// [`Router::deliver`] to each of `users`; returns how many sessions
    /// the frame was queued to. Takes each shard's lock once for all of
    /// `users` in it, instead of once per user: in a large group's fan-out
    /// the locks were half of the router's time. Users are put in shard
    /// order by a counting sort.
    pub(crate) fn deliver_to_all(
        &self,
        users: &[Arc<str>],
        frame: &Utf8Bytes,
        position: Option<Position<'_>>,
        except: Option<u64>,
    ) -> usize {
        let shards: Vec<u8> = users.iter().map(|user| self.shard_of(user) as u8).collect();
        let mut starts = [0usize; SHARDS + 1];
        for &shard in &shards {
            starts[shard as usize + 1] += 1;
        }
        for i in 0..SHARDS {
            starts[i + 1] += starts[i];
        }
        let mut next = starts;
        let mut ordered: Vec<&str> = vec![""; users.len()];
        for (user, &shard) in users.iter().zip(&shards) {
            ordered[next[shard as usize]] = user;
            next[shard as usize] += 1;
        }
        let mut delivered = 0;
        for (index, lock) in self.shards.iter().enumerate() {
            let in_shard = &ordered[starts[index]..starts[index + 1]];
            if in_shard.is_empty() {
                continue;
            }
            let shard = lock.read().unwrap_or_else(|p| p.into_inner());
            for user in in_shard {
                delivered += Self::deliver_in(&shard, user, frame, position, except);
            }
        }
        delivered
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
        Self::deliver_in(&shard, user, frame, position, except)
    }

    fn fanout(&self, conv: &str, seq: u64, frame: &Utf8Bytes, audience: Audience<'_>, except: Option<u64>) -> usize {
        let position = Some((conv, seq));
        match audience {
            Audience::Direct(a, b) if a == b => self.deliver(a, frame, position, except),
            Audience::Direct(a, b) => {
                self.deliver(a, frame, position, except) + self.deliver(b, frame, position, except)
            }
            Audience::Group(_, members) => self.deliver_to_all(members, frame, position, except),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::router::outbox::Outbox;

    fn session(router: &LocalRouter, id: u64, user: &str) -> Arc<SessionHandle> {
        let session = Arc::new(SessionHandle {
            id,
            user: user.into(),
            device: "d".into(),
            background: AtomicBool::new(false),
            outbox: Outbox::new(1 << 20),
        });
        assert_ne!(router.attach(session.clone(), 16), Attached::TooMany);
        session
    }

    #[test]
    fn delivering_to_all_reaches_every_session_of_every_user_once_in_its_order() {
        let router = LocalRouter::new();
        // Enough users to fill every shard, a user with two sessions, one
        // excepted session, and members with no session at all.
        let mut sessions = Vec::new();
        for n in 0..300u64 {
            sessions.push(session(&router, n, &format!("u{n}")));
        }
        sessions.push(session(&router, 1000, "u7"));
        let members: Vec<Arc<str>> = (0..300)
            .chain(500..520)
            .rev()
            .map(|n| Arc::from(format!("u{n}")))
            .collect();
        for seq in 1..=3 {
            let frame = Utf8Bytes::from(format!("m{seq}"));
            assert_eq!(
                router.deliver_to_all(&members, &frame, Some(("g:x", seq)), Some(1000)),
                300
            );
        }
        for session in &sessions {
            let frames = session.outbox.take_ready().frames;
            let expected: &[&str] = if session.id == 1000 { &[] } else { &["m1", "m2", "m3"] };
            assert_eq!(frames, expected, "session {}", session.id);
        }
    }
}
