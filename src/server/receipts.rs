//! Read receipts: members see how far the others have read, live and after
//! a reload.
//!
//! A `read` is relayed to the other members' sessions (and the reader's
//! other devices) as it is stored. The positions are stored too, and come
//! with `conversations` entries and, as `read` frames, with a sync, so a
//! client that was away shows the same ticks as one that was there. Groups
//! larger than `receipts.max_group_size` relay to the reader's devices only
//! and answer a `reads` request instead.

use std::collections::BTreeMap;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::core::Core;
use crate::protocol::{Conversation, ServerFrame};
use crate::router::SessionHandle;
use crate::store::{Store, StoreError};

/// Whether `conv`'s read positions travel to every member.
pub(crate) fn shared_with_members(core: &Core, conv: &str) -> bool {
    match Conversation::parse(conv) {
        Some(Conversation::Direct(..)) => true,
        Some(Conversation::Group(group)) => core
            .groups
            .get(group)
            .is_some_and(|g| g.members.len() <= core.config.receipts.max_group_size),
        None => false,
    }
}

/// The read positions in `conv` of everyone but `user`, when they are
/// shared with members. Blocking.
pub(crate) fn others_positions(
    core: &Core,
    store: &dyn Store,
    user: &str,
    conv: &str,
) -> Result<Option<Vec<(String, u64)>>, StoreError> {
    if !shared_with_members(core, conv) {
        return Ok(None);
    }
    let mut positions = members_positions(core, store, conv)?;
    positions.retain(|(reader, _)| reader != user);
    Ok(Some(positions))
}

/// The read positions in `conv` of its current members: a group keeps the
/// cursors of those who left, which are nobody's business now. Blocking.
pub(crate) fn members_positions(core: &Core, store: &dyn Store, conv: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let mut positions = store.read_positions(conv)?;
    if let Some(Conversation::Group(group)) = Conversation::parse(conv) {
        let members = core.groups.get(group);
        positions.retain(|(reader, _)| members.as_ref().is_some_and(|g| g.has(reader)));
    }
    Ok(positions)
}

/// `positions` as a `reads` map.
pub(crate) fn as_map(positions: &[(String, u64)]) -> BTreeMap<&str, u64> {
    positions.iter().map(|(user, seq)| (user.as_str(), *seq)).collect()
}

/// A `read` frame: `user` read `conv` up to `seq`.
pub(crate) fn read_frame(conv: &str, user: &str, seq: u64) -> Utf8Bytes {
    Utf8Bytes::from(ServerFrame::Read { conv, user, seq }.encode())
}

/// Tells the other members, and the reader's other sessions, that `session`'s
/// user read `conv` up to `seq`.
pub(crate) fn relay_read(core: &Core, session: &SessionHandle, conv: &str, seq: u64) {
    let frame = read_frame(conv, &session.user, seq);
    match Conversation::parse(conv) {
        Some(Conversation::Direct(a, b)) => {
            let other = if *session.user == *a { b } else { a };
            if other != &*session.user {
                core.router.deliver(other, &frame, None, None);
            }
            core.router.deliver(&session.user, &frame, None, Some(session.id));
        }
        Some(Conversation::Group(group)) if shared_with_members(core, conv) => {
            let members = core.groups.get(group).map(|g| g.members).unwrap_or_default();
            for member in members.iter() {
                core.router.deliver(member, &frame, None, Some(session.id));
            }
        }
        Some(Conversation::Group(_)) => {
            core.router.deliver(&session.user, &frame, None, Some(session.id));
        }
        None => {}
    }
}
