//! The in-process router: a sharded map from user to sessions.

use ahash::HashMap;
use ahash::RandomState;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::group_fanout::GroupFanout;
use super::outbox::Queued;
use super::{Attached, Audience, Members, Position, Router, SessionHandle};

const SHARDS: usize = 64;
// A user's shard fits in a byte (`sessions_of_all`).
const _: () = assert!(SHARDS <= 256);

type Sessions = HashMap<Arc<str>, Vec<Arc<SessionHandle>>>;

/// A group's sessions here, as a fan-out to the group found them.
struct GroupSessions {
    /// The member list they were found for. Kept, not only compared: a
    /// new list can then never be taken for it at the same address.
    members: Members,
    /// The router's [`LocalRouter::changes`] before they were looked up.
    change: u64,
    fanout: Arc<GroupFanout>,
}

/// Routes to sessions of this process. Users are spread over shards so that
/// fan-out to different users rarely touches the same lock.
pub(crate) struct LocalRouter {
    hasher: RandomState,
    shards: Vec<RwLock<Sessions>>,
    sessions: AtomicUsize,
    users: AtomicUsize,
    /// Counts attaches and detaches, each after its change to the shards:
    /// a group's sessions found at an earlier count may be wrong.
    changes: AtomicU64,
    /// Per group, its sessions as the last fan-out to it found them, so that
    /// the next one skips a lookup per member while nobody comes or goes.
    /// Emptied at each detach, so that it keeps no closed session alive.
    groups: RwLock<HashMap<Arc<str>, GroupSessions>>,
}

impl Default for LocalRouter {
    fn default() -> Self {
        LocalRouter {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            sessions: AtomicUsize::new(0),
            users: AtomicUsize::new(0),
            changes: AtomicU64::new(0),
            groups: RwLock::default(),
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
        shard
            .get(user)
            .map_or(0, |list| Self::push_to(list, frame, position, except))
    }

    /// Queues `frame` to each of `sessions` but the one with id `except`,
    /// one frame shared by all of them; how many it was queued to.
    fn push_to(
        sessions: &[Arc<SessionHandle>],
        frame: &Utf8Bytes,
        position: Option<Position<'_>>,
        except: Option<u64>,
    ) -> usize {
        // Framed only for someone: a group with nobody else online costs no copy.
        if sessions.iter().all(|s| Some(s.id) == except) {
            return 0;
        }
        let frame = Queued::text(frame);
        sessions
            .iter()
            .filter(|s| Some(s.id) != except)
            .filter(|s| s.outbox.push_at(frame.clone(), position))
            .count()
    }

    /// [`Router::deliver`] to each member of `group`, whose members are
    /// `members`, one push per session: for a cluster's copies of messages,
    /// which arrive from several places and are filtered per session
    /// (`outbox::Queue::synced`). Returns how many sessions the frame was
    /// queued to.
    pub(crate) fn deliver_to_group(
        &self,
        group: &str,
        members: &Members,
        frame: &Utf8Bytes,
        position: Option<Position<'_>>,
        except: Option<u64>,
    ) -> usize {
        Self::push_to(self.fanout_of(group, members).sessions(), frame, position, except)
    }

    /// The fan-out to the sessions of `group`'s `members`: the sessions the
    /// last fan-out found, and its batch, unless a member list or a
    /// session changed since.
    fn fanout_of(&self, group: &str, members: &Members) -> Arc<GroupFanout> {
        let change = self.changes.load(Ordering::SeqCst);
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = groups.get(group)
            && found.change == change
            && Arc::ptr_eq(&found.members, members)
        {
            return found.fanout.clone();
        }
        drop(groups);
        let fanout = Arc::new(GroupFanout::new(self.sessions_of_all(members)));
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        // A detach since `change` emptied the map: keep nothing it would
        // not have kept.
        if self.changes.load(Ordering::SeqCst) == change {
            let found = GroupSessions {
                members: members.clone(),
                change,
                fanout: fanout.clone(),
            };
            // Dropped outside the lock: it seals its batch.
            let replaced = groups.insert(group.into(), found);
            drop(groups);
            drop(replaced);
        }
        fanout
    }

    /// The sessions of each of `users`. Takes each shard's lock once for all
    /// of `users` in it, instead of once per user: in a large group's
    /// fan-out the locks were half of the router's time. Users are put in
    /// shard order by a counting sort.
    fn sessions_of_all(&self, users: &[Arc<str>]) -> Vec<Arc<SessionHandle>> {
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
        let mut sessions = Vec::with_capacity(users.len());
        for (index, lock) in self.shards.iter().enumerate() {
            let in_shard = &ordered[starts[index]..starts[index + 1]];
            if in_shard.is_empty() {
                continue;
            }
            let shard = lock.read().unwrap_or_else(|p| p.into_inner());
            for user in in_shard {
                sessions.extend(shard.get(*user).into_iter().flatten().cloned());
            }
        }
        sessions
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
        // After the session is in its shard: a fan-out that sees the new
        // count finds it there.
        self.changes.fetch_add(1, Ordering::SeqCst);
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
        drop(shard);
        let stale = {
            let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
            self.changes.fetch_add(1, Ordering::SeqCst);
            std::mem::take(&mut *groups)
        };
        // Dropped outside the lock: the sessions of every group cached.
        drop(stale);
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
            Audience::Group(group, members) => self.fanout_of(group, members).deliver(frame, position, except),
        }
    }

    fn close_all(&self, code: u16, reason: &'static str) {
        self.for_each_session(&mut |session| session.outbox.close(code, reason));
    }

    fn for_each_session(&self, visit: &mut dyn FnMut(&SessionHandle)) {
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            for session in shard.values().flatten() {
                visit(session);
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

    use super::*;
    use crate::router::outbox::texts_for;

    fn session(router: &LocalRouter, id: u64, user: &str) -> Arc<SessionHandle> {
        let session = Arc::new(SessionHandle::new(id, user.into(), "d".into(), 1 << 20));
        assert_ne!(router.attach(session.clone(), 16), Attached::TooMany);
        session
    }

    fn members(names: impl IntoIterator<Item = String>) -> Members {
        Arc::new(names.into_iter().map(Arc::from).collect())
    }

    #[test]
    fn delivering_to_a_group_reaches_every_session_of_every_member_once_in_its_order() {
        // One push per session (a cluster's copies), and in batches.
        for batched in [false, true] {
            let router = LocalRouter::new();
            // Enough users to fill every shard, a user with two sessions, one
            // excepted session, and members with no session at all.
            let mut sessions = Vec::new();
            for n in 0..300u64 {
                sessions.push(session(&router, n, &format!("u{n}")));
            }
            sessions.push(session(&router, 1000, "u7"));
            let members = members((0..300).chain(500..520).rev().map(|n| format!("u{n}")));
            for seq in 1..=3 {
                let frame = Utf8Bytes::from(format!("m{seq}"));
                let reached = if batched {
                    router.fanout("g:g", seq, &frame, Audience::Group("g", &members), Some(1000))
                } else {
                    router.deliver_to_group("g", &members, &frame, Some(("g:g", seq)), Some(1000))
                };
                assert_eq!(reached, 300);
            }
            for session in &sessions {
                let frames = texts_for(&session.outbox.take_ready(Default::default()).frames, session.id);
                let expected: &[&str] = if session.id == 1000 { &[] } else { &["m1", "m2", "m3"] };
                assert_eq!(frames, expected, "session {} batched {batched}", session.id);
            }
        }
    }

    #[test]
    fn a_group_fan_out_sees_who_came_and_went_since_the_last_and_keeps_no_closed_session() {
        let router = LocalRouter::new();
        let alice = session(&router, 1, "alice");
        let team = members(["alice".to_owned(), "bob".to_owned()]);
        let deliver = |members: &Members| router.deliver_to_group("team", members, &"m".into(), None, None);
        assert_eq!(deliver(&team), 1);
        let bob = session(&router, 2, "bob");
        assert_eq!(deliver(&team), 2, "a session attached since the last fan-out");
        assert_eq!(deliver(&team), 2);
        router.detach(&alice);
        assert_eq!(Arc::strong_count(&alice), 1, "nothing else keeps the closed session");
        assert_eq!(deliver(&team), 1);
        assert_eq!(alice.outbox.take_ready(Default::default()).frames.len(), 3);
        // A new member list is looked up, though nobody came or went since.
        let carol = session(&router, 3, "carol");
        assert_eq!(deliver(&team), 1);
        let with_carol = members(["bob".to_owned(), "carol".to_owned()]);
        assert_eq!(deliver(&with_carol), 2);
        assert_eq!(bob.outbox.take_ready(Default::default()).frames.len(), 5);
        assert_eq!(carol.outbox.take_ready(Default::default()).frames.len(), 1);
    }
}
