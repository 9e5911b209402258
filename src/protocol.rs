//! Protocol v1 on the wire: identifiers, conversations, the frames clients
//! send, the frames the server sends, and error codes. `docs/PROTOCOL.md`
//! describes the protocol in prose; this module is its only encoder and parser.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The longest identifier (user, group, request id), in bytes.
pub(crate) const MAX_ID_LEN: usize = 64;

/// Whether `s` is a valid user or group id: 1–64 chars of `[A-Za-z0-9_.@-]`.
pub(crate) fn is_valid_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// Whether `s` is a valid request id: 1–64 chars, any characters.
pub(crate) fn is_valid_request_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.chars().count())
}

/// The conversation of a group: `g:<group>`.
pub(crate) fn group_conv(group: &str) -> String {
    format!("g:{group}")
}

/// WebSocket close codes the server sends (RFC 6455 §7.4, and 4000–4999
/// for the application's own).
pub(crate) mod close {
    /// The session ended normally: idle, or the peer closed.
    pub(crate) const NORMAL: u16 = 1000;
    /// The server is stopping.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// The peer broke the WebSocket protocol.
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame was not UTF-8.
    pub(crate) const INVALID_DATA: u16 = 1007;
    /// Authentication failed, or the client ignored its rate limit.
    pub(crate) const POLICY: u16 = 1008;
    /// A frame or message over `limits.max_frame_bytes`.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// The server could not go on with the connection.
    pub(crate) const INTERNAL_ERROR: u16 = 1011;
    /// The session fell too far behind: reconnect and sync.
    pub(crate) const SLOW_READER: u16 = 1013;
    /// The host kicked the user.
    pub(crate) const KICKED: u16 = 4001;
}

/// The direct conversation of two users: `dm:<a>:<b>` with the ids sorted bytewise.
pub(crate) fn direct_conv(a: &str, b: &str) -> String {
    let (first, second) = if a.as_bytes() <= b.as_bytes() { (a, b) } else { (b, a) };
    // Sized once: `format!` grew it twice (3% of the server's samples in a direct run).
    let mut conv = String::with_capacity("dm::".len() + first.len() + second.len());
    conv.push_str("dm:");
    conv.push_str(first);
    conv.push(':');
    conv.push_str(second);
    conv
}

/// A conversation id, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conversation<'a> {
    /// `dm:<a>:<b>`, with `a <= b` bytewise.
    Direct(&'a str, &'a str),
    /// `g:<group>`.
    Group(&'a str),
}

impl<'a> Conversation<'a> {
    /// Parses a conversation id; `None` when it is not one.
    pub(crate) fn parse(conv: &'a str) -> Option<Conversation<'a>> {
        if let Some(pair) = conv.strip_prefix("dm:") {
            let (a, b) = pair.split_once(':')?;
            (is_valid_id(a) && is_valid_id(b) && a.as_bytes() <= b.as_bytes()).then_some(Conversation::Direct(a, b))
        } else {
            conv.strip_prefix("g:")
                .filter(|g| is_valid_id(g))
                .map(Conversation::Group)
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Error codes of `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    /// The frame is malformed or not supported.
    BadRequest,
    /// Authentication failed or is missing.
    Unauthorized,
    /// The user may not do this.
    Forbidden,
    /// The thing named does not exist.
    NotFound,
    /// The client sends too fast.
    RateLimited,
    /// The server failed; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A frame from a client, as parsed: every field any frame type may carry.
///
/// Fields a frame type does not use are ignored, so newer clients can add
/// fields without breaking older servers.
#[derive(Debug, Deserialize)]
pub(crate) struct ClientFrame<'a> {
    /// The frame type.
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    /// The request id, echoed in every reply.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) id: Option<Cow<'a, str>>,
    /// `auth`: the token.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) token: Option<Cow<'a, str>>,
    /// `send`: the recipient user.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) to: Option<Cow<'a, str>>,
    /// `send`: the recipient group.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) group: Option<Cow<'a, str>>,
    /// `history`, `read`: the conversation.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) conv: Option<Cow<'a, str>>,
    /// `read`: the seq read up to; `edit`, `delete`, `react`, `unreact`: the target.
    #[serde(default)]
    pub(crate) seq: Option<u64>,
    /// `watch`, `unwatch`: the users.
    #[serde(default)]
    pub(crate) users: Option<Vec<String>>,
    /// `sync`: the client's cursor per conversation.
    #[serde(default)]
    pub(crate) cursors: Option<HashMap<String, u64>>,
    /// `sync`, `history`: how many messages at most (per conversation, for sync).
    #[serde(default)]
    pub(crate) limit: Option<u64>,
    /// `history`: only messages with a seq below this.
    #[serde(default)]
    pub(crate) before: Option<u64>,
    /// `conversations` and `sync`: the page starts after this conversation.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) after: Option<Cow<'a, str>>,
    /// `sync`: the page ends with this conversation (its cursors cover up to it).
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) until: Option<Cow<'a, str>>,
    /// `auth`: the device the session runs on.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) device: Option<Cow<'a, str>>,
    /// `send`: the seq of the message this one replies to.
    #[serde(default)]
    pub(crate) reply_to: Option<u64>,
    /// `react`, `unreact`: the emoji.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) emoji: Option<Cow<'a, str>>,
    /// `search`: the words to find.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) query: Option<Cow<'a, str>>,
    /// `device`: `foreground` or `background`.
    #[serde(default, borrow, deserialize_with = "in_place")]
    pub(crate) state: Option<Cow<'a, str>>,
    /// `send`: the message body, any JSON value (`null` included), kept as written.
    #[serde(default, borrow, deserialize_with = "present")]
    pub(crate) body: Option<&'a RawValue>,
}

/// Reads an optional string in place, as a borrow of the frame's text, when
/// it has no escapes. `#[serde(borrow)]` alone borrows a `Cow<str>` field but
/// not one inside an `Option`: that one was copied, every id of every frame.
pub(crate) fn in_place<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Option::<InPlace<'a>>::deserialize(d).map(|text| text.map(|InPlace(text)| text))
}

/// Reads a list of strings, each in place as [`in_place`] reads one.
pub(crate) fn each_in_place<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Cow<'a, str>>, D::Error> {
    Vec::<InPlace<'a>>::deserialize(d).map(|texts| texts.into_iter().map(|InPlace(text)| text).collect())
}

/// A string that serde borrows when it can: the one place where
/// `#[serde(borrow)]` takes effect is a field of exactly this type.
#[derive(Deserialize)]
struct InPlace<'a>(#[serde(borrow)] Cow<'a, str>);

/// Reads a field that is present as `Some`, even when its value is `null`;
/// with `#[serde(default)]`, only an absent field is `None`.
fn present<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'a RawValue>, D::Error> {
    <&'a RawValue>::deserialize(d).map(Some)
}

/// Only the request id of a frame, read when the whole frame does not parse,
/// so that the error reply can still carry the id.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(default, borrow, deserialize_with = "in_place")]
    id: Option<Cow<'a, str>>,
}

/// Why a client frame was rejected before it reached its handler.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FrameError {
    /// The request id, when one could be read and is valid.
    pub(crate) id: Option<String>,
    /// What is wrong, for the `message` of the error frame.
    pub(crate) message: String,
}

/// Parses one text frame into a [`ClientFrame`], checking the request id.
pub(crate) fn parse_client_frame(text: &str) -> Result<ClientFrame<'_>, FrameError> {
    match serde_json::from_str::<ClientFrame<'_>>(text) {
        Ok(frame) => match &frame.id {
            Some(id) if !is_valid_request_id(id) => Err(FrameError {
                id: None,
                message: "id must be a string of 1 to 64 characters".into(),
            }),
            _ => match frame.body.and_then(unreadable) {
                Some(why) => Err(FrameError {
                    id: frame.id.as_deref().map(str::to_owned),
                    message: format!("body: {why}"),
                }),
                None => Ok(frame),
            },
        },
        Err(e) => Err(FrameError {
            id: serde_json::from_str::<IdOnly<'_>>(text)
                .ok()
                .and_then(|f| f.id)
                .filter(|id| is_valid_request_id(id))
                .map(Cow::into_owned),
            message: format!("malformed frame: {e}"),
        }),
    }
}

/// Why `body` cannot be read, when it escapes half of a surrogate pair
/// alone (`"\uD800"`) or holds a number no double holds (`1e999`). JSON's
/// grammar allows both, so the parser takes them, but no string or number
/// can hold them: the server could read neither the body's files nor its
/// words, and strict clients could not read the message. Only a body with
/// an escape, an exponent or a long run of digits is parsed a second time
/// to find out.
fn unreadable(body: &RawValue) -> Option<String> {
    let text = body.get();
    if !text.contains("\\u") && !may_hold_a_huge_number(text) {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(text)
        .err()
        .map(|e| e.to_string())
}

/// A body the host wrote (JSON text), held to the rules a client's is.
pub(crate) fn host_body(json: &str) -> Result<Box<RawValue>, String> {
    let body = RawValue::from_string(json.trim().to_owned()).map_err(|e| format!("body is not JSON: {e}"))?;
    match unreadable(&body) {
        Some(why) => Err(format!("body: {why}")),
        None => Ok(body),
    }
}

/// Whether `text` may hold a number too large for a double: one with an
/// exponent, or with more digits than the largest double (`1.8e308`) has
/// before its point. Says yes to some strings that only look like one.
fn may_hold_a_huge_number(text: &str) -> bool {
    const DIGITS_OF_THE_LARGEST_DOUBLE: usize = 309;
    let bytes = text.as_bytes();
    let exponent = memchr::memchr2_iter(b'e', b'E', bytes).any(|at| at > 0 && bytes[at - 1].is_ascii_digit());
    exponent
        || bytes.len() > DIGITS_OF_THE_LARGEST_DOUBLE
            && bytes
                .split(|byte| !byte.is_ascii_digit())
                .any(|digits| digits.len() > DIGITS_OF_THE_LARGEST_DOUBLE)
}

/// A stored message as delivered: the `msg` frame.
#[derive(Debug, Serialize)]
pub(crate) struct MsgFrame<'a> {
    /// Always `"msg"`.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// The conversation.
    pub(crate) conv: &'a str,
    /// The message's place in the conversation, from 1.
    pub(crate) seq: u64,
    /// The sender.
    pub(crate) from: &'a str,
    /// The recipient user of a direct message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<&'a str>,
    /// The group of a group message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<&'a str>,
    /// The sender's message id.
    pub(crate) id: &'a str,
    /// The body, exactly as the sender wrote it.
    pub(crate) body: &'a RawValue,
    /// When the server stored it.
    pub(crate) ts: i64,
    /// Which event it is; absent on a message.
    #[serde(rename = "kind", skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<&'static str>,
    /// The seq of the message an event changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<u64>,
    /// The seq of the message a message replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply_to: Option<u64>,
    /// When it was last edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) edited: Option<i64>,
    /// Deleted for everyone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) deleted: bool,
    /// Emoji → the users who reacted with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reactions: Option<&'a BTreeMap<String, std::collections::BTreeSet<String>>>,
}

/// Server frames other than `msg`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerFrame<'a> {
    /// Authentication succeeded.
    Welcome {
        /// The authenticated user.
        user: &'a str,
        /// This connection's session id.
        session: &'a str,
        /// The device the session belongs to.
        device: &'a str,
        /// The server clock, for clients that correct theirs.
        server_time: i64,
    },
    /// A message was stored.
    Ack {
        /// The client's message id.
        id: &'a str,
        /// The conversation it was stored in.
        conv: &'a str,
        /// Its sequence number.
        seq: u64,
        /// When it was stored.
        ts: i64,
    },
    /// A request failed.
    Error {
        /// The request id, when the request had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// One of the [`ErrorCode`]s.
        code: &'static str,
        /// A human-readable explanation.
        message: &'a str,
    },
    /// The answer to `ping`.
    Pong {
        /// The ping's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
    /// A request without a reply of its own succeeded.
    Ok {
        /// The request's id.
        id: &'a str,
        /// `watch`: whether each watched user is online now.
        #[serde(skip_serializing_if = "Option::is_none")]
        online: Option<BTreeMap<&'a str, bool>>,
    },
    /// A watched user came online or went offline.
    Presence {
        /// The user.
        user: &'a str,
        /// Whether it has a session now.
        online: bool,
    },
    /// A group's membership changed.
    Member {
        /// The group.
        group: &'a str,
        /// The user who joined or left.
        user: &'a str,
        /// Joined (true) or left (false).
        joined: bool,
    },
    /// Someone is typing in a conversation.
    Typing {
        /// Who.
        from: &'a str,
        /// Where.
        conv: &'a str,
    },
    /// The answer to `members`.
    Members {
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// The group.
        group: &'a str,
        /// Whether it is closed.
        closed: bool,
        /// Its members, sorted.
        members: Vec<&'a str>,
    },
    /// The answer to `conversations`.
    Conversations {
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// The user's conversations, sorted: a page of them.
        conversations: &'a [ConversationEntry<'a>],
        /// When more conversations follow: the `after` of the next page.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
    },
    /// The end of a sync reply: every conversation of the user.
    Synced {
        /// The sync's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// Per conversation: its last seq and whether more messages wait.
        convs: BTreeMap<&'a str, SyncedState>,
        /// When the sync named an `until` and the user has conversations
        /// after it: the `after` of the next page.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
    },
    /// The answer to `history`.
    History {
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// The conversation.
        conv: &'a str,
        /// `msg` frames, ascending seq.
        messages: &'a RawValue,
    },
    /// The answer to `search`.
    Search {
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// `msg` frames of the messages found, newest first.
        results: &'a RawValue,
        /// Whether more match.
        more: bool,
        /// When more match: the `after` of the next page.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
    },
    /// The answer to `reads`: members' read cursors in a conversation.
    Reads {
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// The conversation.
        conv: &'a str,
        /// A page of members' read cursors, by user.
        reads: BTreeMap<&'a str, u64>,
        /// When more follow: the `after` of the next page.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
    },
    /// A member's read cursor moved.
    Read {
        /// The conversation.
        conv: &'a str,
        /// The member who read.
        user: &'a str,
        /// The seq read up to.
        seq: u64,
    },
}

/// One conversation in a `conversations` reply.
#[derive(Debug, Serialize)]
pub(crate) struct ConversationEntry<'a> {
    /// The conversation.
    pub(crate) conv: &'a str,
    /// Its last seq (0 for a group without messages).
    pub(crate) last_seq: u64,
    /// The user's read cursor in it (0 when none).
    pub(crate) read_seq: u64,
    /// The other members' read cursors, by user (direct conversations, and
    /// groups up to `receipts.max_group_size`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reads: Option<BTreeMap<&'a str, u64>>,
}

/// A conversation's state in a `synced` frame.
#[derive(Debug, Serialize)]
pub(crate) struct SyncedState {
    /// The conversation's last seq.
    pub(crate) last_seq: u64,
    /// Whether messages above the client's new cursor remain.
    pub(crate) more: bool,
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// What a `msg` frame holds besides its strings and body, with room to
/// spare: its keys, quotes, numbers and a few of the optional fields.
const MSG_FRAME_FIXED_BYTES: usize = 128;

impl MsgFrame<'_> {
    /// The frame as JSON text.
    pub(crate) fn encode(&self) -> String {
        // Sized once: from serde_json's 128 bytes, a frame of a short body
        // grew its buffer (a copy and a second allocation) every time.
        let strings = [
            self.conv,
            self.from,
            self.to.unwrap_or(""),
            self.group.unwrap_or(""),
            self.id,
        ];
        let capacity = MSG_FRAME_FIXED_BYTES + self.body.get().len() + strings.iter().map(|s| s.len()).sum::<usize>();
        let mut text = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut text, self).expect("msg frames always serialize");
        String::from_utf8(text).expect("serde_json writes UTF-8")
    }
}

/// Builds an `error` frame.
pub(crate) fn error_frame(id: Option<&str>, code: ErrorCode, message: &str) -> String {
    ServerFrame::Error {
        id,
        code: code.as_str(),
        message,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frames_strings_are_read_in_place_unless_they_have_escapes() {
        // Every send's id and recipient were copied: `#[serde(borrow)]`
        // borrows a `Cow<str>` field, not one inside an `Option`.
        let text = r#"{"type":"send","id":"c1","to":"bob","group":"g\u0031","body":1}"#;
        let frame = parse_client_frame(text).unwrap();
        assert!(matches!(frame.id, Some(Cow::Borrowed("c1"))), "{:?}", frame.id);
        assert!(matches!(frame.to, Some(Cow::Borrowed("bob"))), "{:?}", frame.to);
        assert!(
            matches!(&frame.group, Some(Cow::Owned(g)) if g == "g1"),
            "{:?}",
            frame.group
        );
        let absent_or_null = parse_client_frame(r#"{"type":"send","id":null}"#).unwrap();
        assert_eq!((absent_or_null.id, absent_or_null.to), (None, None));
        assert!(parse_client_frame(r#"{"type":"send","id":5}"#).is_err());
    }

    #[test]
    fn a_body_with_a_lone_surrogate_escape_is_refused_with_the_frames_id() {
        // Found by the fuzzer: JSON's grammar allows `\uD800` alone, but no
        // string can hold it, so a body the server stored as is could not
        // be read for its files or its words (a reference to a file went
        // unchecked) nor by strict clients.
        let text = r#"{"type":"send","id":"c1","to":"bob","body":{"files":["f"],"text":"\uDAEb"}}"#;
        let refused = parse_client_frame(text).map(|_| ()).unwrap_err();
        assert_eq!(refused.id.as_deref(), Some("c1"));
        assert!(refused.message.starts_with("body: "), "{}", refused.message);
        // A surrogate pair, and other escapes, are fine.
        let pair = r#"{"type":"send","id":"c2","to":"bob","body":"\uD83D\uDE00 \u00e9"}"#;
        assert!(parse_client_frame(pair).is_ok());
    }

    #[test]
    fn a_body_with_a_number_no_double_holds_is_refused_with_the_frames_id() {
        // Found by the fuzzer: JSON's grammar allows `1e999`, but no double
        // holds it, so a body the server stored as is could not be read for
        // its files (a reference to a file went unchecked) or its words, nor
        // by strict clients.
        let long = "9".repeat(400);
        for number in ["88448e843", "-1.5E+400", long.as_str()] {
            let text = format!(r#"{{"type":"send","id":"c1","to":"bob","body":{{"files":["f"],"n":{number}}}}}"#);
            let refused = parse_client_frame(&text).map(|_| ()).unwrap_err();
            assert_eq!(refused.id.as_deref(), Some("c1"), "{number}");
            assert!(refused.message.starts_with("body: "), "{}", refused.message);
        }
        // Numbers a double holds, and strings that only look like numbers, are fine.
        let fine =
            r#"{"type":"send","id":"c2","to":"bob","body":{"n":[1e308,-2E-999,12345678901234567890],"s":"1e999"}}"#;
        assert!(parse_client_frame(fine).is_ok());
    }

    #[test]
    fn ids() {
        assert!(is_valid_id("alice.b@x-y_z"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a:b"));
        assert!(!is_valid_id("é"));
    }

    #[test]
    fn conversations_parse_strictly() {
        assert_eq!(
            Conversation::parse("dm:alice:bob"),
            Some(Conversation::Direct("alice", "bob"))
        );
        assert_eq!(Conversation::parse("dm:al:al"), Some(Conversation::Direct("al", "al")));
        assert_eq!(Conversation::parse("g:team"), Some(Conversation::Group("team")));
        for bad in [
            "dm:bob:alice",
            "dm:alice",
            "dm:a:b:c",
            "g:",
            "g:a b",
            "x:y",
            "",
            "dm::b",
        ] {
            assert_eq!(Conversation::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn direct_conv_sorts_bytewise() {
        assert_eq!(direct_conv("bob", "alice"), "dm:alice:bob");
        assert_eq!(direct_conv("alice", "bob"), "dm:alice:bob");
        assert_eq!(direct_conv("Zed", "abe"), "dm:Zed:abe");
        assert_eq!(direct_conv("al", "al"), "dm:al:al");
    }

    #[test]
    fn parse_keeps_body_verbatim() {
        let f = parse_client_frame(r#"{"type":"send","id":"c1","to":"bob","body":{"a": [1, 2]}}"#).unwrap();
        assert_eq!(f.kind, "send");
        assert_eq!(f.body.unwrap().get(), r#"{"a": [1, 2]}"#);
    }

    #[test]
    fn a_null_body_is_present_and_a_missing_one_is_not() {
        let null = parse_client_frame(r#"{"type":"send","body":null}"#).unwrap();
        assert_eq!(null.body.map(RawValue::get), Some("null"));
        assert!(parse_client_frame(r#"{"type":"send"}"#).unwrap().body.is_none());
    }

    #[test]
    fn parse_errors_keep_the_id_when_they_can() {
        let e = parse_client_frame(r#"{"id":"x7","to":5}"#).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("x7"));
        let e = parse_client_frame(r#"{"type":"ping","id":5}"#).unwrap_err();
        assert_eq!(e.id, None);
        let long = "i".repeat(65);
        let e = parse_client_frame(&format!(r#"{{"type":"ping","id":"{long}"}}"#)).unwrap_err();
        assert_eq!(e.id, None);
        assert!(parse_client_frame("[1]").is_err());
    }

    #[test]
    fn msg_frame_shape() {
        let body = RawValue::from_string("{\"t\":1}".into()).unwrap();
        let text = MsgFrame {
            kind: "msg",
            conv: "dm:a:b",
            seq: 3,
            from: "a",
            to: Some("b"),
            group: None,
            id: "c",
            body: &body,
            ts: 9,
            event: None,
            target: None,
            reply_to: None,
            edited: None,
            deleted: false,
            reactions: None,
        }
        .encode();
        assert_eq!(
            text,
            r#"{"type":"msg","conv":"dm:a:b","seq":3,"from":"a","to":"b","id":"c","body":{"t":1},"ts":9}"#
        );
    }
}
