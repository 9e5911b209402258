//! Who watches whom: the `watch` subscriptions of sessions, and the
//! `presence` frames sent when a watched user comes online or goes offline.

use ahash::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::SessionHandle;
use crate::protocol::ServerFrame;

#[derive(Default)]
struct Watches {
    /// Watched user → the sessions watching it.
    watchers: HashMap<Arc<str>, Vec<Arc<SessionHandle>>>,
    /// Session id → the users it watches, to clean up when it ends.
    watched: HashMap<u64, HashSet<Arc<str>>>,
}

/// Presence subscriptions of every session.
#[derive(Default)]
pub(crate) struct Presence {
    watches: Mutex<Watches>,
}

impl Presence {
    fn watches(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `session` starts watching `users`, unless it would then watch more
    /// than `max` users: then nothing changes and it returns false. The cap
    /// also bounds how long ending a session holds the lock.
    pub(crate) fn watch(&self, session: &Arc<SessionHandle>, users: &[Arc<str>], max: usize) -> bool {
        let mut w = self.watches();
        let watched = w.watched.entry(session.id).or_default();
        let new: HashSet<&Arc<str>> = users.iter().filter(|u| !watched.contains(*u)).collect();
        if watched.len() + new.len() > max {
            return false;
        }
        watched.extend(new.iter().map(|u| (*u).clone()));
        for user in new {
            w.watchers.entry(user.clone()).or_default().push(session.clone());
        }
        true
    }

    /// `session` stops watching `users`.
    pub(crate) fn unwatch(&self, session: &SessionHandle, users: &[Arc<str>]) {
        let mut w = self.watches();
        for user in users {
            if w.watched.get_mut(&session.id).is_some_and(|set| set.remove(user)) {
                Self::drop_watcher(&mut w.watchers, user, session.id);
            }
        }
    }

    /// Drops every watch of a session that ended.
    pub(crate) fn forget(&self, session: &SessionHandle) {
        let mut w = self.watches();
        for user in w.watched.remove(&session.id).unwrap_or_default() {
            Self::drop_watcher(&mut w.watchers, &user, session.id);
        }
    }

    fn drop_watcher(watchers: &mut HashMap<Arc<str>, Vec<Arc<SessionHandle>>>, user: &str, session: u64) {
        if let Some(list) = watchers.get_mut(user) {
            list.retain(|s| s.id != session);
            if list.is_empty() {
                watchers.remove(user);
            }
        }
    }

    /// Tells every session watching `user` that it came online or went offline.
    pub(crate) fn announce(&self, user: &str, online: bool) {
        let watchers = self.watches().watchers.get(user).cloned().unwrap_or_default();
        if watchers.is_empty() {
            return;
        }
        let frame = Utf8Bytes::from(ServerFrame::Presence { user, online }.encode());
        for session in watchers {
            session.outbox.push(frame.clone());
        }
    }
}
