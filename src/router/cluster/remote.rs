//! Who is online on the other nodes, as this node last heard: from their
//! presence envelopes, and read whole from Redis after (re)subscribing.

use std::collections::HashMap;
use std::sync::Arc;

/// A user's sessions on one node: whether one of them is in the foreground.
type Looking = bool;

/// Users online elsewhere, by user, then by node.
#[derive(Default)]
pub(super) struct RemoteOnline {
    users: HashMap<Arc<str>, HashMap<Arc<str>, Looking>>,
}

/// How a user's presence on the other nodes changed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Now online on some other node, and was on none.
    CameOnline,
    /// Now on no other node.
    WentOffline,
    /// Neither.
    Same,
}

impl RemoteOnline {
    /// `node` says `user` is online there (or not), looking or not.
    pub(super) fn set(&mut self, node: &str, user: &str, online: bool, looking: bool) -> Change {
        let before = self.users.contains_key(user);
        if online {
            self.users.entry(user.into()).or_default().insert(node.into(), looking);
        } else if let Some(nodes) = self.users.get_mut(user) {
            nodes.remove(node);
            if nodes.is_empty() {
                self.users.remove(user);
            }
        }
        match (before, self.users.contains_key(user)) {
            (false, true) => Change::CameOnline,
            (true, false) => Change::WentOffline,
            _ => Change::Same,
        }
    }

    /// `node` is gone: the users online nowhere else now.
    pub(super) fn drop_node(&mut self, node: &str) -> Vec<Arc<str>> {
        let mut gone = Vec::new();
        self.users.retain(|user, nodes| {
            nodes.remove(node);
            if nodes.is_empty() {
                gone.push(user.clone());
            }
            !nodes.is_empty()
        });
        gone
    }

    /// Everything as read from Redis: `online` by node. Returns the users
    /// that came online and those that went offline.
    pub(super) fn replace(
        &mut self,
        online: HashMap<String, Vec<(String, Looking)>>,
    ) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
        let mut users: HashMap<Arc<str>, HashMap<Arc<str>, Looking>> = HashMap::new();
        for (node, list) in online {
            let node: Arc<str> = node.into();
            for (user, looking) in list {
                users.entry(user.into()).or_default().insert(node.clone(), looking);
            }
        }
        let came = users.keys().filter(|u| !self.users.contains_key(*u)).cloned().collect();
        let went = self.users.keys().filter(|u| !users.contains_key(*u)).cloned().collect();
        self.users = users;
        (came, went)
    }

    /// Whether `user` is online on another node.
    pub(super) fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether a session of `user` on another node is in the foreground.
    pub(super) fn is_looking(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|nodes| nodes.values().any(|l| *l))
    }

    /// Every user online elsewhere.
    pub(super) fn users(&self) -> Vec<Arc<str>> {
        self.users.keys().cloned().collect()
    }

    /// The other nodes that have users online.
    pub(super) fn nodes(&self) -> Vec<Arc<str>> {
        let mut nodes: Vec<Arc<str>> = self.users.values().flat_map(|n| n.keys().cloned()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_online_while_some_node_says_so_and_a_dead_node_takes_its_users() {
        let mut r = RemoteOnline::default();
        assert_eq!(r.set("n1", "ann", true, false), Change::CameOnline);
        assert_eq!(r.set("n2", "ann", true, true), Change::Same);
        assert!(r.is_looking("ann"));
        assert_eq!(r.set("n2", "ann", false, false), Change::Same);
        assert!(!r.is_looking("ann"));
        assert_eq!(r.set("n2", "bob", true, true), Change::CameOnline);
        assert_eq!(r.nodes().len(), 2);
        assert_eq!(r.drop_node("n1"), vec![Arc::<str>::from("ann")]);
        assert!(!r.is_online("ann") && r.is_online("bob"));
        let (came, went) = r.replace(HashMap::from([("n3".to_owned(), vec![("cy".to_owned(), false)])]));
        assert_eq!((came, went), (vec![Arc::from("cy")], vec![Arc::from("bob")]));
    }
}
