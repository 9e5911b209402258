//! Push requests: who is told of a message while not looking, and how the
//! host hears of it.
//!
//! When a message is stored, each recipient without a foreground session
//! that the `push` policy selects gets a request in the store's durable
//! outbox, in the same commit as the message. A pump offers due requests to
//! the host as [`Event::Push`], waiting for room in the event queue rather
//! than dropping, and marks them offered; one the host does not end with
//! `push_done` within `push.retry_after_ms` is offered again with the same
//! id, and so are the ones pending at a restart. Reading past pushed
//! messages turns their requests into one badge request (kind `read`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::core::Core;
use crate::error::Error;
use crate::host::Event;
use crate::protocol::{Conversation, now_ms};
use crate::store::{MessageKind, NewMessage, PushKind, PushRequest, StoreError};

/// Requests offered per round of the pump.
const OFFER_BATCH: usize = 256;

/// Wakes the pump when requests may be due.
#[derive(Default)]
pub(crate) struct PushPump {
    due: Notify,
}

impl PushPump {
    /// New requests were stored.
    pub(crate) fn wake(&self) {
        self.due.notify_one();
    }
}

/// The users `message` should be pushed to: its recipients other than the
/// sender that the policy selects and that have no foreground session.
pub(crate) fn recipients(core: &Core, message: &NewMessage) -> Vec<Arc<str>> {
    let policy = &core.config.push;
    // Edits, deletes and reactions change what the user will see; they are
    // not news to wake a phone for.
    if !policy.enabled || message.kind != MessageKind::Message {
        return Vec::new();
    }
    let candidates: Vec<Arc<str>> = match (&message.to, message.group.as_deref()) {
        (Some(to), _) if policy.wants(None, false) => vec![Arc::from(to.as_str())],
        (None, Some(group)) => {
            let Some(members) = core.groups.get(group).map(|g| g.members) else {
                return Vec::new();
            };
            let mentions = mentions(&message.body);
            members
                .iter()
                .filter(|m| policy.wants(Some((group, members.len())), mentions.contains(&***m)))
                .cloned()
                .collect()
        }
        _ => Vec::new(),
    };
    candidates
        .into_iter()
        .filter(|user| **user != *message.from && !has_foreground_session(core, user))
        .collect()
}

/// The users a message body names in its `mentions` array, if it has one:
/// the first [`MAX_MENTIONS`], so one message cannot ask for a push to
/// every member of a large group.
fn mentions(body: &RawValue) -> std::collections::HashSet<String> {
    #[derive(Deserialize)]
    struct Mentions {
        #[serde(default)]
        mentions: Vec<String>,
    }
    serde_json::from_str::<Mentions>(body.get())
        .map(|m| m.mentions.into_iter().take(MAX_MENTIONS).collect())
        .unwrap_or_default()
}

/// Mentions counted per message.
const MAX_MENTIONS: usize = 100;

/// Whether one of `user`'s sessions is in the foreground: the user is looking.
pub(crate) fn has_foreground_session(core: &Core, user: &str) -> bool {
    core.router.is_looking(user)
}

/// Offers due requests until the server stops.
pub(crate) async fn run(core: Arc<Core>) {
    let retry = Duration::from_millis(core.config.push.retry_after_ms);
    let mut stopping = core.stopping.clone();
    // At start every request offered before it is due: the host that was
    // offered it before a restart may never have answered. (Not those
    // offered since, in this first round's earlier batches.)
    let started = now_ms();
    let mut since_start = true;
    loop {
        let offered_before = if since_start {
            started
        } else {
            now_ms() - retry.as_millis() as i64 + 1
        };
        let offered = offer_due(&core, offered_before).await;
        since_start = matches!(offered, Ok(OFFER_BATCH)) && since_start;
        match offered {
            // A full batch: more may be due at once.
            Ok(OFFER_BATCH) => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "push requests could not be read"),
        }
        // The next retry comes due at most this long after now.
        tokio::select! {
            _ = core.pushes.due.notified() => {}
            _ = tokio::time::sleep(retry / 2) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Offers the requests never offered or offered before `offered_before`; how many.
async fn offer_due(core: &Arc<Core>, offered_before: i64) -> Result<usize, StoreError> {
    let now = now_ms();
    let (tx, rx) = tokio::sync::oneshot::channel();
    core.store.offer_pushes(
        now,
        offered_before,
        OFFER_BATCH,
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    let requests = rx
        .await
        .unwrap_or_else(|_| Err(StoreError("the store is closed".into())))?;
    let count = requests.len();
    let described = {
        let core = core.clone();
        tokio::task::spawn_blocking(move || {
            requests
                .into_iter()
                .map(|request| describe(&core, request))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError(format!("push requests could not be read: {e}")))?
    };
    for event in described {
        // Durable and offered again later anyway, but never dropped here:
        // a full queue holds the pump back, not the network.
        core.events.post_waiting(event?).await;
    }
    Ok(count)
}

/// The event for `request`, with what the host needs to send it. Blocking.
fn describe(core: &Core, request: PushRequest) -> Result<Event, StoreError> {
    let unread = core.store.unread(&request.user)?;
    let online: Vec<(Arc<str>, bool)> = core
        .router
        .sessions_of(&request.user)
        .iter()
        .map(|s| {
            (
                s.device.clone(),
                s.background.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
        .collect();
    let devices = core
        .store
        .devices(&request.user)?
        .into_iter()
        .map(|device| {
            let state = online
                .iter()
                .find(|(d, _)| **d == *device)
                .map(|(_, background)| if *background { "background" } else { "foreground" });
            DeviceEntry { device, state }
        })
        .collect();
    let preview = match request.kind {
        PushKind::Message if core.config.push.preview => core
            .store
            .history(&request.conv, Some(request.seq + 1), 1, usize::MAX)?
            .into_iter()
            .find(|m| m.seq == request.seq)
            .map(|m| m.message.body.get().to_owned()),
        _ => None,
    };
    let collapse_key = match request.kind {
        PushKind::Message => format!("{}:{}:{}", request.user, request.conv, request.seq),
        PushKind::Read => format!("{}:{}:read", request.user, request.conv),
    };
    let json = PushJson {
        event: "push",
        push_id: request.push_id,
        kind: request.kind.as_str(),
        user: &request.user,
        conv: &request.conv,
        seq: request.seq,
        from: request.from.as_deref(),
        group: match Conversation::parse(&request.conv) {
            Some(Conversation::Group(group)) => Some(group),
            _ => None,
        },
        unread,
        devices,
        collapse_key: &collapse_key,
        preview: preview
            .as_deref()
            .and_then(|p| RawValue::from_string(p.to_owned()).ok()),
    };
    Ok(Event::Push {
        push_id: request.push_id,
        user: request.user.as_str().into(),
        json: serde_json::to_string(&json).expect("push events always serialize"),
    })
}

/// A device of the user in a push event: `state` only while it has a session.
#[derive(Serialize)]
struct DeviceEntry {
    device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
}

/// The JSON of a push event, fields in the documented order.
#[derive(Serialize)]
struct PushJson<'a> {
    event: &'static str,
    push_id: u64,
    kind: &'static str,
    user: &'a str,
    conv: &'a str,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    unread: u64,
    devices: Vec<DeviceEntry>,
    collapse_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<Box<RawValue>>,
}

/// A push request not done yet, as [`crate::Server::pending_pushes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPush {
    /// Its id, as in the push event.
    pub push_id: u64,
    /// `message`, or `read` for a badge update.
    pub kind: &'static str,
    /// Whom to notify.
    pub user: String,
    /// The conversation.
    pub conv: String,
    /// The message's seq, or the seq read up to.
    pub seq: u64,
    /// The sender, for a message.
    pub from: Option<String>,
}

impl crate::Server {
    /// Ends the push request `push_id` once the host's push gateway call
    /// ended: it is never offered again. `delivered` false (with the
    /// gateway's `reason`) is logged and counted, and ends it all the same:
    /// the host's gateway already retried as it saw fit. [`Error::NotFound`]
    /// when no pending request has that id (never offered, or done already).
    pub fn push_done(&self, push_id: u64, delivered: bool, reason: Option<&str>) -> Result<(), Error> {
        let core = self.running_core()?;
        let found =
            crate::store::wait_for(|done| core.store.push_done(push_id, done)).map_err(|e| Error::Store(e.0))?;
        if !found {
            return Err(Error::NotFound(format!("no pending push request {push_id}")));
        }
        if !delivered {
            core.metrics.pushes_failed.inc();
            self.logging(|| tracing::warn!(push_id, reason = reason.unwrap_or(""), "push failed"));
        }
        Ok(())
    }

    /// The push requests not done yet, oldest first. Blocking.
    pub fn pending_pushes(&self) -> Result<Vec<PendingPush>, Error> {
        let core = self.running_core()?;
        let pending = core.store.pending_pushes().map_err(|e| Error::Store(e.0))?;
        Ok(pending
            .into_iter()
            .map(|p| PendingPush {
                push_id: p.push_id,
                kind: p.kind.as_str(),
                user: p.user,
                conv: p.conv,
                seq: p.seq,
                from: p.from,
            })
            .collect())
    }
}
