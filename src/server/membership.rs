//! Group membership changes: from clients (`join`, `leave`) and from the
//! host (create, add, remove). Each change is stored first, then applied to
//! the in-memory groups, then announced to the members and the host.
//! Changes are serialized, and they block on the store: callers on the
//! network side run them on the blocking pool.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::core::Core;
use crate::host::Event;
use crate::protocol::ServerFrame;
use crate::router::GroupChange;
use crate::store::WriteDone;

/// Who asks for a change.
#[derive(Clone, Copy)]
pub(crate) enum Actor {
    /// A user, from the session with this id: `join` creates missing open
    /// groups and is refused by closed ones.
    User(u64),
    /// The host: it may change closed groups, and never creates one by adding.
    Host,
}

/// Why a membership change was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The group is closed to users joining by themselves.
    Forbidden,
    /// The group does not exist.
    NotFound,
    /// The store failed; nothing changed.
    Store(String),
}

impl Core {
    /// Creates `group`, or sets whether it is closed. Closing an open group
    /// removes every member first: anyone could have joined it, and a closed
    /// group's members are exactly those the host adds.
    pub(crate) fn create_group(&self, group: &str, closed: bool) -> Result<(), Refused> {
        let _serial = self.membership_lock(group);
        let joined_freely = match self.groups.get(group) {
            Some(g) if closed && !g.closed => g.members.to_vec(),
            _ => Vec::new(),
        };
        // Removed before the group closes, under the same lock as joins: a
        // failure halfway leaves an open group, never a closed one with squatters.
        for user in &joined_freely {
            self.persist(|done| self.store.save_member(group.to_owned(), user.to_string(), false, done))?;
            self.member_changed(group, user, false);
            self.announce(group, user, false, Actor::Host);
        }
        self.persist(|done| self.store.save_group(group.to_owned(), closed, done))?;
        self.closed_changed(group, closed);
        Ok(())
    }

    /// Makes `user` a member of `group` (see [`Actor`]); Ok(false) when it already was.
    pub(crate) fn join(&self, group: &str, user: &str, actor: Actor) -> Result<bool, Refused> {
        let _serial = self.membership_lock(group);
        match (self.groups.get(group), actor) {
            (None, Actor::Host) => return Err(Refused::NotFound),
            (None, Actor::User(_)) => {
                self.persist(|done| self.store.save_group(group.to_owned(), false, done))?;
                self.closed_changed(group, false);
            }
            (Some(g), _) if g.has(user) => return Ok(false),
            (Some(g), Actor::User(_)) if g.closed => return Err(Refused::Forbidden),
            (Some(_), _) => {}
        }
        self.persist(|done| self.store.save_member(group.to_owned(), user.to_owned(), true, done))?;
        self.member_changed(group, user, true);
        self.announce(group, user, true, actor);
        Ok(true)
    }

    /// Removes `user` from `group`; Ok(false) when it was not a member.
    /// Only the host is told `NotFound` for a missing group.
    pub(crate) fn leave(&self, group: &str, user: &str, actor: Actor) -> Result<bool, Refused> {
        let _serial = self.membership_lock(group);
        match (self.groups.get(group), actor) {
            (None, Actor::Host) => return Err(Refused::NotFound),
            (Some(g), _) if g.has(user) => {}
            _ => return Ok(false),
        }
        self.persist(|done| self.store.save_member(group.to_owned(), user.to_owned(), false, done))?;
        self.member_changed(group, user, false);
        self.announce(group, user, false, actor);
        Ok(true)
    }

    /// Applies a stored membership change here, and tells the other nodes.
    fn member_changed(&self, group: &str, user: &str, member: bool) {
        self.groups.set_member(group, user, member);
        (self.router).group_changed(GroupChange::Member { group, user, member });
    }

    /// Applies a stored creation, opening or closing of `group` here, and
    /// tells the other nodes.
    fn closed_changed(&self, group: &str, closed: bool) {
        self.groups.set_closed(group, closed);
        self.router.group_changed(GroupChange::Closed { group, closed });
    }

    /// Runs a store write and waits for it.
    fn persist(&self, write: impl FnOnce(WriteDone)) -> Result<(), Refused> {
        crate::store::wait_for(write).map_err(|e| Refused::Store(e.0))
    }

    /// Tells the members (after the change), the user who left, and the
    /// host; the session that asked gets its reply instead. In a group of
    /// more than `groups.announce_max_size` members only the user's own
    /// sessions are told: announcing every join to every member would make
    /// filling a group cost the square of its size.
    fn announce(&self, group: &str, user: &str, joined: bool, actor: Actor) {
        let frame = Utf8Bytes::from(ServerFrame::Member { group, user, joined }.encode());
        let except = match actor {
            Actor::User(session) => Some(session),
            Actor::Host => None,
        };
        let members = self.groups.get(group).map(|g| g.members).unwrap_or_default();
        let everyone = members.len() <= self.config.groups.announce_max_size;
        if everyone {
            for member in members.iter() {
                self.router.deliver(member, &frame, None, except);
            }
        }
        if !joined || !everyone {
            self.router.deliver(user, &frame, None, except);
        }
        self.events.post(Event::Member {
            group: Arc::from(group),
            user: Arc::from(user),
            joined,
        });
    }
}
