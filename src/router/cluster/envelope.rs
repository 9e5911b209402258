//! What nodes tell each other over Redis: one JSON object per published
//! message. A frame travels as it is (it is JSON already), after the other
//! fields, so neither side escapes or re-encodes it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::{each_in_place, in_place};

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    /// A stored message (`conv`, `seq`, `frame`) for its conversation's
    /// members: `users` of a direct conversation, or `group`'s members.
    Message,
    /// Another frame (`frame`) for every session of `users`.
    Deliver,
    /// `user` came online (`online`), or went offline, on the sending node;
    /// `looking` whether a session of it there is in the foreground.
    Presence,
    /// `user` joined (`member`) or left `group`.
    Member,
    /// `group` was created, opened or closed (`closed`).
    Closed,
    /// The sending node checks that its own subscription still receives.
    Probe,
}

/// An envelope as read: borrowed from the published bytes where it can be.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope<'a> {
    /// The node that published it.
    #[serde(borrow)]
    pub(super) node: Cow<'a, str>,
    /// What it carries.
    pub(super) kind: Kind,
    #[serde(borrow, default, deserialize_with = "in_place")]
    pub(super) conv: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) seq: Option<u64>,
    #[serde(borrow, default, deserialize_with = "each_in_place")]
    pub(super) users: Vec<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "in_place")]
    pub(super) group: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "in_place")]
    pub(super) user: Option<Cow<'a, str>>,
    /// `online`, `member` or `closed`, by kind.
    #[serde(default)]
    pub(super) flag: bool,
    #[serde(default)]
    pub(super) looking: bool,
    #[serde(borrow, default)]
    pub(super) frame: Option<&'a RawValue>,
}

/// An envelope to publish, without its frame.
#[derive(Debug, Serialize)]
pub(super) struct Outgoing<'a> {
    pub(super) node: &'a str,
    pub(super) kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) conv: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) seq: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) users: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) flag: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) looking: bool,
}

impl<'a> Outgoing<'a> {
    /// An envelope of `kind` from `node` with nothing else set.
    pub(super) fn new(node: &'a str, kind: Kind) -> Outgoing<'a> {
        Outgoing {
            node,
            kind,
            conv: None,
            seq: None,
            users: &[],
            group: None,
            user: None,
            flag: false,
            looking: false,
        }
    }

    /// The published text: these fields, then `frame` (JSON text) as is.
    pub(super) fn encode(&self, frame: Option<&str>) -> String {
        let mut text = serde_json::to_string(self).expect("strings and numbers serialize");
        if let Some(frame) = frame {
            text.pop();
            text.push_str(",\"frame\":");
            text.push_str(frame);
            text.push('}');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_travels_unescaped_and_reads_back_borrowed() {
        let frame = r#"{"type":"msg","conv":"dm:a:b","seq":7,"body":"h\"i"}"#;
        let users = ["a", "b"];
        let text = Outgoing {
            conv: Some("dm:a:b"),
            seq: Some(7),
            users: &users,
            ..Outgoing::new("n1", Kind::Message)
        }
        .encode(Some(frame));
        assert!(text.ends_with(&format!(",\"frame\":{frame}}}")), "{text}");
        let read: Envelope<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (read.kind, read.seq, read.node.as_ref()),
            (Kind::Message, Some(7), "n1")
        );
        assert_eq!(read.users, ["a", "b"]);
        // Read in place, not copied: a message's envelope names its conversation and recipients.
        assert!(matches!(read.conv, Some(Cow::Borrowed("dm:a:b"))), "{:?}", read.conv);
        assert!(
            read.users.iter().all(|user| matches!(user, Cow::Borrowed(_))),
            "{:?}",
            read.users
        );
        assert_eq!(read.frame.unwrap().get(), frame);
        let presence = Outgoing {
            user: Some("ü\"x"),
            flag: true,
            ..Outgoing::new("n2", Kind::Presence)
        }
        .encode(None);
        let read: Envelope<'_> = serde_json::from_str(&presence).unwrap();
        assert_eq!((read.user.as_deref(), read.flag), (Some("ü\"x"), true));
        assert!(read.frame.is_none());
    }
}
