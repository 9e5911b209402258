//! Who hears of what, beyond the message itself: push requests for users
//! with no foreground session, and read receipts.

use std::collections::HashMap;

use serde::Deserialize;

/// Push requests for offline recipients (`push`). Off by default: a host
/// that turns it on answers every request with `push_done`, or the durable
/// outbox keeps them and offers them again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Record a push request for each recipient without a foreground session.
    pub enabled: bool,
    /// Push direct messages.
    pub direct: bool,
    /// Push group messages (see `group_overrides` and `mentions_only_above`).
    pub groups: bool,
    /// Per group: push (true) or not (false), whatever `groups` says.
    pub group_overrides: HashMap<String, bool>,
    /// In groups with more members than this, push only to the users the
    /// message's body names in `mentions` (an array of user ids).
    pub mentions_only_above: usize,
    /// Put the message's body in the request (`preview`); off, the host's
    /// gateway never sees message content.
    pub preview: bool,
    /// A request offered and not answered with `push_done` for this long is
    /// offered again, with the same `push_id`.
    pub retry_after_ms: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: false,
            direct: true,
            groups: true,
            group_overrides: HashMap::new(),
            mentions_only_above: 100,
            preview: false,
            retry_after_ms: 60_000,
        }
    }
}

impl PushConfig {
    /// Whether a message in `group` (of `size` members; `None` for a direct
    /// message) is pushed to `user`, whose name `mentioned` says whether the
    /// body's `mentions` carry.
    pub(crate) fn wants(&self, group: Option<(&str, usize)>, mentioned: bool) -> bool {
        match group {
            None => self.direct,
            Some((name, size)) => {
                self.group_overrides.get(name).copied().unwrap_or(self.groups)
                    && (size <= self.mentions_only_above || mentioned)
            }
        }
    }
}

/// Read receipts (`receipts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsConfig {
    /// Groups up to this many members relay each `read` to every member,
    /// list the others' read positions in `conversations` and replay them
    /// as `read` frames in a sync; larger ones answer a `reads` request instead.
    pub max_group_size: usize,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig { max_group_size: 100 }
    }
}

#[cfg(test)]
mod tests {
    use super::PushConfig;

    #[test]
    fn groups_push_by_override_then_default_then_size() {
        let mut push = PushConfig {
            mentions_only_above: 3,
            ..PushConfig::default()
        };
        push.group_overrides.insert("quiet".into(), false);
        assert!(push.wants(None, false));
        assert!(push.wants(Some(("team", 3)), false));
        assert!(!push.wants(Some(("team", 4)), false), "large group, not mentioned");
        assert!(push.wants(Some(("team", 4)), true), "large group, mentioned");
        assert!(!push.wants(Some(("quiet", 2)), true), "overridden off");
        push.groups = false;
        push.group_overrides.insert("loud".into(), true);
        assert!(!push.wants(Some(("team", 2)), false));
        assert!(push.wants(Some(("loud", 2)), false));
    }
}
