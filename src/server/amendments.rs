//! The requests that change an earlier message: `edit`, `delete`, `react`
//! and `unreact` (docs/PROTOCOL.md, "Replies, edits, deletes and
//! reactions"). Each becomes an event of the conversation, stored and
//! delivered like a message; the store decides whether its target allows it.

use std::sync::Arc;

use super::core::Core;
use super::files;
use super::requests::{Refusal, SessionState, bad, member_conv, store_and_ack};
use crate::protocol::{ClientFrame, Conversation, now_ms};
use crate::router::SessionHandle;
use crate::store::amend::{null_body, reaction_body};
use crate::store::{MessageKind, NewMessage};

/// The longest emoji, in bytes: flags and family sequences stay well below.
const MAX_EMOJI_BYTES: usize = 64;

/// Handles one of the four event requests, `kind` naming which.
pub(crate) fn amend(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &mut SessionState,
    frame: &ClientFrame<'_>,
    kind: MessageKind,
) -> Result<(), Refusal> {
    let name = kind.name().unwrap_or("send");
    let client_id = frame
        .id
        .as_deref()
        .ok_or_else(|| bad(format!("{name} requires an id")))?;
    let conv = member_conv(core, session, frame)?;
    let seq = frame
        .seq
        .filter(|seq| *seq >= 1)
        .ok_or_else(|| bad(format!("{name} requires the seq of its target, 1 or more")))?;
    let (body, files) = match kind {
        MessageKind::Edit => {
            let body = frame.body.ok_or_else(|| bad("edit requires a body"))?;
            (body.to_owned(), files::referenced(body).map_err(bad)?)
        }
        MessageKind::React | MessageKind::Unreact => (reaction_body(emoji_of(frame)?), Vec::new()),
        MessageKind::Delete | MessageKind::Message => (null_body(), Vec::new()),
    };
    let (to, group) =
        addressed(conv, &session.user).ok_or_else(|| bad("conv must be dm:<a>:<b> (sorted) or g:<group>"))?;
    let message = NewMessage {
        conv: conv.to_owned(),
        from: session.user.clone(),
        to,
        group,
        client_id: client_id.to_owned(),
        body,
        ts: now_ms(),
        kind,
        target: Some(seq),
        files,
        by_host: false,
    };
    store_and_ack(core, session, state, message);
    Ok(())
}

/// The `to` and `group` of an event in `conv` sent by `from`: a direct
/// conversation's other member (`from` may be neither, as the host is), or
/// the group. `None` for a malformed `conv`.
pub(crate) fn addressed(conv: &str, from: &str) -> Option<(Option<String>, Option<String>)> {
    Some(match Conversation::parse(conv)? {
        Conversation::Direct(a, b) => (Some(if from == b { a } else { b }.to_owned()), None),
        Conversation::Group(group) => (None, Some(group.to_owned())),
    })
}

/// The frame's `emoji`: 1 to 64 bytes, no control characters.
fn emoji_of<'f>(frame: &'f ClientFrame<'_>) -> Result<&'f str, Refusal> {
    match frame.emoji.as_deref() {
        Some(emoji) if (1..=MAX_EMOJI_BYTES).contains(&emoji.len()) && !emoji.chars().any(char::is_control) => {
            Ok(emoji)
        }
        _ => Err(bad(format!(
            "emoji must be 1 to {MAX_EMOJI_BYTES} bytes without control characters"
        ))),
    }
}
