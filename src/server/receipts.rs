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
use crate::router::groups::Group;
use crate::store::{Store, StoreError};

/// `group` when it is small enough for its read positions to travel to
/// every member (`receipts.max_group_size`).
fn sharing(core: &Core, group: &str) -> Option<Group> {
    core.groups
        .get(group)
        .filter(|g| g.members.len() <= core.config.receipts.max_group_size)
}

/// The read positions in `conv` of everyone but `user`, when they are
/// shared with members: a direct conversation, or a group small enough.
/// Blocking.
pub(crate) fn others_positions(
    core: &Core,
    store: &dyn Store,
    user: &str,
    conv: &str,
) -> Result<Option<Vec<(String, u64)>>, StoreError> {
    let members = match Conversation::parse(conv) {
        Some(Conversation::Direct(..)) => None,
        Some(Conversation::Group(group)) => match sharing(core, group) {
            Some(group) => Some(group),
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    let mut positions = store.read_positions(conv)?;
    positions.retain(|(reader, _)| reader != user && members.as_ref().is_none_or(|g| g.has(reader)));
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
        Some(Conversation::Group(group)) => match sharing(core, group) {
            Some(group) => {
                for member in group.members.iter() {
                    core.router.deliver(member, &frame, None, Some(session.id));
                }
            }
            None => {
                core.router.deliver(&session.user, &frame, None, Some(session.id));
            }
        },
        None => {}
    }
}
