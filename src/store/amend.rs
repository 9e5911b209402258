//! Conversation events that change an earlier message (edits, deletes,
//! reactions) and replies to one: the rules that decide whether one may be
//! stored, and the state it leaves its target in. Both stores apply these
//! inside the step that stores the event, so the decision and the change
//! are one atomic write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::{NewMessage, StoredMessage};

/// What a stored entry of a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A message (a reply too, when it has a target).
    Message,
    /// A new body for the target.
    Edit,
    /// Erases the target for everyone.
    Delete,
    /// Adds the sender's reaction to the target.
    React,
    /// Takes the sender's reaction back.
    Unreact,
}

impl MessageKind {
    /// The name on the wire and in the database; `None` for a message.
    pub(crate) fn name(self) -> Option<&'static str> {
        match self {
            MessageKind::Message => None,
            MessageKind::Edit => Some("edit"),
            MessageKind::Delete => Some("delete"),
            MessageKind::React => Some("react"),
            MessageKind::Unreact => Some("unreact"),
        }
    }

    /// The kind `name` names (`None`: a message); `None` for no kind at all.
    pub(crate) fn from_name(name: Option<&str>) -> Option<MessageKind> {
        Some(match name {
            None => MessageKind::Message,
            Some("edit") => MessageKind::Edit,
            Some("delete") => MessageKind::Delete,
            Some("react") => MessageKind::React,
            Some("unreact") => MessageKind::Unreact,
            Some(_) => return None,
        })
    }
}

/// Emoji → the users who reacted with it, both sorted.
pub type Reactions = BTreeMap<String, BTreeSet<String>>;

/// What events have done to a message so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageState {
    /// When it was last edited (ms).
    pub edited: Option<i64>,
    /// Deleted for everyone: the body is `null`.
    pub deleted: bool,
    /// Its reactions.
    pub reactions: Reactions,
}

/// The rules events are held to (`messages` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// How long after a message its sender may edit it (ms).
    pub(crate) edit_window_ms: i64,
    /// The most different emojis one user puts on one message.
    pub(crate) max_reactions_per_user: usize,
    /// The most reactions (a user and an emoji each) one message carries.
    pub(crate) max_reactions_per_message: usize,
}

impl From<&crate::config::MessagesConfig> for Rules {
    fn from(config: &crate::config::MessagesConfig) -> Rules {
        Rules {
            edit_window_ms: config.edit_window_ms.min(i64::MAX as u64) as i64,
            max_reactions_per_user: config.max_reactions_per_user,
            max_reactions_per_message: config.max_reactions_per_message,
        }
    }
}

/// Why the store refused to store an entry. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// What it names does not exist (or is gone by retention).
    NotFound(String),
    /// The sender may not do this.
    Forbidden(String),
    /// It is not a valid change of its target.
    Invalid(String),
}

/// A target's new body and state after an event.
#[derive(Debug)]
pub(crate) struct Amended {
    /// The target's seq.
    pub(crate) seq: u64,
    /// Its body now.
    pub(crate) body: Box<RawValue>,
    /// Its state now.
    pub(crate) state: MessageState,
}

/// The JSON `null`, the body of a deleted message.
pub(crate) fn null_body() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// Checks `entry` against its target (`None`: no message with that seq is
/// kept) under `rules`; for an event, what the target becomes. A message
/// without a target needs no check.
pub(crate) fn apply(
    entry: &NewMessage,
    target: Option<&StoredMessage>,
    rules: &Rules,
) -> Result<Option<Amended>, Refused> {
    let Some(seq) = entry.target else {
        return Ok(None);
    };
    let conv = &entry.conv;
    let Some(target) = target else {
        return Err(Refused::NotFound(format!("no message {seq} in {conv}")));
    };
    if let Some(kind) = target.message.kind.name() {
        return Err(Refused::Invalid(format!("{seq} in {conv} is a {kind}, not a message")));
    }
    if target.state.deleted {
        return Err(Refused::Invalid(format!("message {seq} in {conv} is deleted")));
    }
    let own = *target.message.from == *entry.from;
    let mut state = target.state.clone();
    let mut body = target.message.body.clone();
    match entry.kind {
        MessageKind::Message => return Ok(None),
        MessageKind::Edit => {
            if !own {
                return Err(Refused::Forbidden("only its sender edits a message".into()));
            }
            if entry.ts - target.message.ts > rules.edit_window_ms {
                return Err(Refused::Forbidden(format!(
                    "message {seq} is older than the edit window ({} ms)",
                    rules.edit_window_ms
                )));
            }
            state.edited = Some(entry.ts);
            body = entry.body.clone();
        }
        MessageKind::Delete => {
            if !own && !entry.by_host {
                return Err(Refused::Forbidden("only its sender deletes a message".into()));
            }
            state = MessageState {
                deleted: true,
                ..MessageState::default()
            };
            body = null_body();
        }
        MessageKind::React | MessageKind::Unreact => {
            let emoji = reaction_emoji(&entry.body)
                .ok_or_else(|| Refused::Invalid("a reaction's body is {\"emoji\": …}".into()))?;
            let user = &*entry.from;
            if entry.kind == MessageKind::React {
                if state.reactions.get(&emoji).is_some_and(|users| users.contains(user)) {
                    return Err(Refused::Invalid(format!("already reacted with {emoji}")));
                }
                let all: usize = state.reactions.values().map(|users| users.len()).sum();
                if all >= rules.max_reactions_per_message {
                    return Err(Refused::Invalid(format!(
                        "message {seq} has the most reactions a message may have ({})",
                        rules.max_reactions_per_message
                    )));
                }
                let mine = state.reactions.values().filter(|users| users.contains(user)).count();
                if mine >= rules.max_reactions_per_user {
                    return Err(Refused::Invalid(format!(
                        "at most {} reactions per message and user",
                        rules.max_reactions_per_user
                    )));
                }
                state.reactions.entry(emoji).or_default().insert(user.to_owned());
            } else {
                let Some(users) = state.reactions.get_mut(&emoji).filter(|users| users.contains(user)) else {
                    return Err(Refused::NotFound(format!(
                        "no {emoji} reaction of yours on message {seq}"
                    )));
                };
                users.remove(user);
                if users.is_empty() {
                    state.reactions.remove(&emoji);
                }
            }
        }
    }
    Ok(Some(Amended { seq, body, state }))
}

/// The body of a reaction event: `{"emoji":"…"}`.
pub(crate) fn reaction_body(emoji: &str) -> Box<RawValue> {
    let text = serde_json::json!({ "emoji": emoji }).to_string();
    RawValue::from_string(text).expect("an object is JSON")
}

/// The emoji of a reaction event's body.
fn reaction_emoji(body: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Reaction {
        emoji: String,
    }
    serde_json::from_str::<Reaction>(body.get()).ok().map(|r| r.emoji)
}

/// The reactions as stored in SQLite: `None` when there are none.
pub(crate) fn reactions_to_json(reactions: &Reactions) -> Option<String> {
    (!reactions.is_empty()).then(|| serde_json::to_string(reactions).expect("maps of strings serialize"))
}

/// Reactions stored by [`reactions_to_json`].
pub(crate) fn reactions_from_json(text: Option<&str>) -> Result<Reactions, serde_json::Error> {
    text.map_or(Ok(Reactions::new()), serde_json::from_str)
}

/// The words a message is found by: every string value of its body, at any
/// depth, keys left out (docs/PROTOCOL.md, "Search").
pub(crate) fn searchable_text(body: &RawValue) -> String {
    fn collect(value: &serde_json::Value, text: &mut String) {
        match value {
            serde_json::Value::String(s) => {
                text.push_str(s);
                text.push(' ');
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, text)),
            serde_json::Value::Object(fields) => fields.values().for_each(|v| collect(v, text)),
            _ => {}
        }
    }
    let mut text = String::new();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body.get()) {
        collect(&value, &mut text);
    }
    text
}

/// The stored entry with `body` and `state` in place of its own.
pub(crate) fn with_state(stored: &StoredMessage, body: Box<RawValue>, state: MessageState) -> Arc<StoredMessage> {
    let mut message = stored.message.clone();
    message.body = body;
    Arc::new(StoredMessage {
        message,
        seq: stored.seq,
        state,
    })
}
