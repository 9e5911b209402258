//! Group membership in memory: what fan-out and membership checks read.
//!
//! Loaded from the store at start and changed only after the store has the
//! change. Each group's member list is shared copy-on-write: a fan-out to
//! 2,000 members takes one reference under a read lock and iterates without
//! holding it; a change builds a new list.

use ahash::HashMap;
use std::sync::{Arc, RwLock};

use crate::store::GroupRecord;

/// A group's members, sorted; shared, and replaced whole on a change.
pub(crate) type Members = Arc<Vec<Arc<str>>>;

/// A group's state as fan-out sees it.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// Whether `join` is refused.
    pub(crate) closed: bool,
    /// The members, sorted.
    pub(crate) members: Members,
}

impl Group {
    /// Whether `user` is a member.
    pub(crate) fn has(&self, user: &str) -> bool {
        self.members.binary_search_by(|m| (**m).cmp(user)).is_ok()
    }
}

/// Every group of the server.
#[derive(Default)]
pub(crate) struct Groups {
    groups: RwLock<HashMap<Arc<str>, Group>>,
}

impl Groups {
    /// The groups of `records`.
    pub(crate) fn load(records: Vec<GroupRecord>) -> Groups {
        let groups = records
            .into_iter()
            .map(|r| {
                let mut members: Vec<Arc<str>> = r.members.into_iter().map(Arc::from).collect();
                members.sort();
                (
                    Arc::from(r.group),
                    Group {
                        closed: r.closed,
                        members: Arc::new(members),
                    },
                )
            })
            .collect();
        Groups {
            groups: RwLock::new(groups),
        }
    }

    /// Replaces every group with those of `records` (as [`Groups::load`]
    /// reads them): another node's changes this node may have missed.
    pub(crate) fn replace(&self, records: Vec<GroupRecord>) {
        let fresh = Groups::load(records)
            .groups
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        *self.groups.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// The group, if it exists.
    pub(crate) fn get(&self, group: &str) -> Option<Group> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .cloned()
    }

    /// Whether `user` is a member of `group`.
    pub(crate) fn is_member(&self, group: &str, user: &str) -> bool {
        self.get(group).is_some_and(|g| g.has(user))
    }

    /// Creates `group` (without members) or sets whether it is closed.
    pub(crate) fn set_closed(&self, group: &str, closed: bool) {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        match groups.get_mut(group) {
            Some(g) => g.closed = closed,
            None => {
                groups.insert(
                    group.into(),
                    Group {
                        closed,
                        members: Arc::default(),
                    },
                );
            }
        }
    }

    /// Adds or removes `user`; false when nothing changed.
    pub(crate) fn set_member(&self, group: &str, user: &str, member: bool) -> bool {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        let Some(g) = groups.get_mut(group) else {
            return false;
        };
        let position = g.members.binary_search_by(|m| (**m).cmp(user));
        let mut members = (*g.members).clone();
        match (position, member) {
            (Err(at), true) => members.insert(at, user.into()),
            (Ok(at), false) => {
                members.remove(at);
            }
            _ => return false,
        }
        g.members = Arc::new(members);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_stay_sorted_and_changes_report_themselves() {
        let groups = Groups::default();
        groups.set_closed("team", false);
        assert!(groups.set_member("team", "carol", true));
        assert!(groups.set_member("team", "alice", true));
        assert!(!groups.set_member("team", "alice", true));
        assert!(!groups.set_member("nope", "alice", true));
        let team = groups.get("team").unwrap();
        assert_eq!(
            team.members.iter().map(|m| &**m).collect::<Vec<_>>(),
            ["alice", "carol"]
        );
        assert!(team.has("carol") && !team.has("bob"));
        assert!(groups.set_member("team", "alice", false));
        assert!(!groups.is_member("team", "alice"));
        groups.set_closed("team", true);
        assert!(groups.get("team").unwrap().closed);
    }
}
