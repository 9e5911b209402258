//! The in-memory store's devices and push outbox (see `sqlite/notices.rs`
//! for the durable one): the same rules, nothing kept across a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{MAX_DEVICES_PER_USER, NewMessage, PushKind, PushRequest};

/// Devices and push requests, under one lock: neither is on a hot path.
#[derive(Default)]
pub(super) struct MemoryNotices {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per user, devices from the least to the most recently seen.
    devices: HashMap<String, Vec<String>>,
    /// Requests by id, with when each was last offered (0: never) and
    /// whether the host ended it.
    pushes: BTreeMap<u64, Push>,
    last_push_id: u64,
}

struct Push {
    request: PushRequest,
    offered: i64,
    done: bool,
}

impl Inner {
    fn add(&mut self, kind: PushKind, user: &str, conv: &str, seq: u64, from: Option<&str>) {
        let known = self.pushes.values().any(|p| {
            let r = &p.request;
            r.kind == kind && r.user == user && r.conv == conv && r.seq == seq
        });
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
        self.pushes.insert(
            self.last_push_id,
            Push {
                request,
                offered: 0,
                done: false,
            },
        );
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
        let passed = |r: &PushRequest| r.kind == PushKind::Message && r.user == user && r.conv == conv && r.seq <= seq;
        inner.pushes.retain(|_, p| !passed(&p.request));
        if inner.pushes.len() < before {
            // The newest badge says all an older one would: one per conversation.
            inner
                .pushes
                .retain(|_, p| !(p.request.kind == PushKind::Read && p.request.user == user && p.request.conv == conv));
            inner.add(PushKind::Read, user, conv, seq, None);
        }
    }

    pub(super) fn save_device(&self, user: &str, device: &str) {
        let mut inner = self.inner();
        let devices = inner.devices.entry(user.to_owned()).or_default();
        devices.retain(|d| d != device);
        devices.push(device.to_owned());
        if devices.len() > MAX_DEVICES_PER_USER {
            devices.drain(..devices.len() - MAX_DEVICES_PER_USER);
        }
    }

    pub(super) fn devices(&self, user: &str) -> Vec<String> {
        let inner = self.inner();
        let sorted: BTreeSet<&String> = inner.devices.get(user).into_iter().flatten().collect();
        sorted.into_iter().cloned().collect()
    }

    pub(super) fn offer(&self, now: i64, offered_before: i64, limit: usize) -> Vec<PushRequest> {
        let mut inner = self.inner();
        inner
            .pushes
            .values_mut()
            .filter(|p| !p.done && p.offered < offered_before)
            .take(limit)
            .map(|p| {
                p.offered = now;
                p.request.clone()
            })
            .collect()
    }

    pub(super) fn done(&self, push_id: u64) -> bool {
        let mut inner = self.inner();
        let Some(p) = inner.pushes.get_mut(&push_id).filter(|p| !p.done) else {
            return false;
        };
        p.done = true;
        // As in SQLite: only the newest finished message request per user
        // and conversation is kept, for the badge of a later read.
        let ended = p.request.clone();
        inner.pushes.retain(|id, p| {
            let r = &p.request;
            !(p.done
                && *id != push_id
                && r.kind == PushKind::Message
                && r.user == ended.user
                && r.conv == ended.conv
                && r.seq < ended.seq)
        });
        true
    }

    pub(super) fn pending(&self) -> Vec<PushRequest> {
        self.inner()
            .pushes
            .values()
            .filter(|p| !p.done)
            .map(|p| p.request.clone())
            .collect()
    }
}
