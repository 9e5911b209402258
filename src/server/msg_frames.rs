//! The `msg` frames of stored messages: the one place where a stored
//! message becomes wire text.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::protocol::MsgFrame;
use crate::store::{MessageKind, StoredMessage};

/// The protocol `msg` frame of `stored`, as JSON text.
pub(crate) fn msg_frame(stored: &StoredMessage) -> String {
    let m = &stored.message;
    MsgFrame {
        kind: "msg",
        conv: &m.conv,
        seq: stored.seq,
        from: &m.from,
        to: m.to.as_deref(),
        group: m.group.as_deref(),
        id: &m.client_id,
        body: &m.body,
        ts: m.ts,
        event: m.kind.name(),
        target: m.target.filter(|_| m.kind != MessageKind::Message),
        reply_to: m.target.filter(|_| m.kind == MessageKind::Message),
        edited: stored.state.edited,
        deleted: stored.state.deleted,
        reactions: Some(&stored.state.reactions).filter(|r| !r.is_empty()),
    }
    .encode()
}

/// A JSON array of the `msg` frames of the newest of `messages` that fit in
/// `budget` bytes, oldest first (a client pages further back with `before`).
/// The newest one is there even when it alone is over the budget, so that
/// paging always moves.
pub(crate) fn msg_array(messages: &[Arc<StoredMessage>], budget: usize) -> Box<RawValue> {
    let mut frames = frames_within(messages.iter().rev(), budget);
    frames.reverse();
    json_array(&frames)
}

/// A JSON array of the `msg` frames of `messages`, in their order, while
/// they fit in `budget` bytes (the first even when it alone is over), and
/// how many it holds.
pub(crate) fn msg_list(messages: &[Arc<StoredMessage>], budget: usize) -> (Box<RawValue>, usize) {
    let frames = frames_within(messages.iter(), budget);
    (json_array(&frames), frames.len())
}

/// The `msg` frames of `messages`, in the order given, while they fit in
/// `budget` bytes as elements of a JSON array; always the first.
fn frames_within<'m>(messages: impl Iterator<Item = &'m Arc<StoredMessage>>, budget: usize) -> Vec<String> {
    let mut frames: Vec<String> = Vec::new();
    let mut used = 2;
    for message in messages {
        let frame = msg_frame(message);
        if used + frame.len() + 1 > budget && !frames.is_empty() {
            break;
        }
        used += frame.len() + 1;
        frames.push(frame);
    }
    frames
}

fn json_array(frames: &[String]) -> Box<RawValue> {
    RawValue::from_string(format!("[{}]", frames.join(","))).expect("msg frames are JSON")
}
