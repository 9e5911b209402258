//! The in-memory store's devices and push outbox (see `sqlite/notices.rs`
//! for the durable one): the same rules, nothing kept across a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{NewMessage, PushKind, PushRequest};

/// Devices and push requests, under one lock: neither is on a hot path.
#[derive(Default)]
pub(super) struct MemoryNotices {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, BTreeSet<String>>,
    /// Pending requests by id, with when each was last offered (0: never).
    pushes: BTreeMap<u64, (PushRequest, i64)>,
    last_push_id: u64,
}

impl Inner {
    fn add(&mut self, kind: PushKind, user: &str, conv: &str, seq: u64, from: Option<&str>) {
        let known = self
            .pushes
            .values()
            .any(|(p, _)| p.kind == kind && p.user == user && p.conv == conv && p.seq == seq);
        if known {
            return;
        }
        self.last_push_id += 1;
        let request = PushRequest {
            push_id: self.last_push_id,
            kind,
            user: user.to_owned(),
            conv: conv.to_owned(),
            seq,
            from: from.map(str::to_owned),
        };
        self.pushes.insert(self.last_push_id, (request, 0));
    }
}

impl MemoryNotices {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message request for each of `users`, for `m` stored at `seq`.
    pub(super) fn request_pushes(&self, m: &NewMessage, seq: u64, users: &[Arc<str>]) {
        let mut inner = self.inner();
        for user in users {
            inner.add(PushKind::Message, user, &m.conv, seq, Some(&m.from));
        }
    }

    /// See [`super::Store::mark_read`]'s `badge`.
    pub(super) fn badge_after_read(&self, user: &str, conv: &str, seq: u64) {
        let mut inner = self.inner();
        let before = inner.pushes.len();
        inner
            .pushes
            .retain(|_, (p, _)| !(p.kind == PushKind::Message && p.user == user && p.conv == conv && p.seq <= seq));
        if inner.pushes.len() < before {
            inner.add(PushKind::Read, user, conv, seq, None);
        }
    }

    pub(super) fn save_device(&self, user: &str, device: &str) {
        self.inner()
            .devices
            .entry(user.to_owned())
            .or_default()
            .insert(device.to_owned());
    }

    pub(super) fn devices(&self, user: &str) -> Vec<String> {
        self.inner()
            .devices
            .get(user)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn offer(&self, now: i64, offered_before: i64, limit: usize) -> Vec<PushRequest> {
        let mut inner = self.inner();
        inner
            .pushes
            .values_mut()
            .filter(|(_, offered)| *offered < offered_before)
            .take(limit)
            .map(|(request, offered)| {
                *offered = now;
                request.clone()
            })
            .collect()
    }

    pub(super) fn done(&self, push_id: u64) -> bool {
        self.inner().pushes.remove(&push_id).is_some()
    }

    pub(super) fn pending(&self) -> Vec<PushRequest> {
        self.inner().pushes.values().map(|(p, _)| p.clone()).collect()
    }
}
