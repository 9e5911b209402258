//! Per-session rate limits: a token bucket for all incoming frames, and a
//! tighter one for `typing`, which fans out to every member of a group.

use std::time::Instant;

use crate::protocol::{ErrorCode, error_frame, parse_client_frame};

/// Typing indicators a session may send: a burst of this many, refilled at
/// this many per second.
pub(crate) const TYPING_PER_SECOND: f64 = 5.0;

/// `join` and `leave` a session may send: bursts of this many, refilled at
/// [`MEMBERSHIP_PER_SECOND`]. Each one is a store write and a fan-out to
/// every member.
pub(crate) const MEMBERSHIP_BURST: f64 = 20.0;

/// The sustained rate of `join` and `leave` per session.
pub(crate) const MEMBERSHIP_PER_SECOND: f64 = 10.0;

/// Per-connection rate limits, owned by the session's reader.
pub(crate) struct SessionLimits {
    frames: TokenBucket,
    typing: TokenBucket,
    membership: TokenBucket,
    /// Frames refused in a row.
    strikes: u32,
    /// Refusals in a row after which the session is closed.
    max_strikes: u32,
}

/// What the frame budget says about one more frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameBudget {
    /// Handle it.
    Within,
    /// Refuse it with `rate_limited`.
    Over,
    /// Close the session: it ignores the refusals.
    Exhausted,
}

impl SessionLimits {
    /// The limits of `limits`, with full buckets.
    pub(crate) fn new(limits: &crate::config::Limits) -> SessionLimits {
        SessionLimits {
            frames: TokenBucket::new(f64::from(limits.message_burst), f64::from(limits.messages_per_second)),
            typing: TokenBucket::new(TYPING_PER_SECOND, TYPING_PER_SECOND),
            membership: TokenBucket::new(MEMBERSHIP_BURST, MEMBERSHIP_PER_SECOND),
            strikes: 0,
            max_strikes: limits.message_burst,
        }
    }

    /// Spends the budget of one incoming frame.
    pub(crate) fn frame(&mut self) -> FrameBudget {
        if self.frames.take() {
            self.strikes = 0;
            FrameBudget::Within
        } else if self.strikes < self.max_strikes {
            self.strikes += 1;
            FrameBudget::Over
        } else {
            FrameBudget::Exhausted
        }
    }

    /// Spends the budget of one typing indicator; false when it is spent.
    pub(crate) fn typing(&mut self) -> bool {
        self.typing.take()
    }

    /// Spends the budget of one `join` or `leave`; false when it is spent.
    pub(crate) fn membership(&mut self) -> bool {
        self.membership.take()
    }
}

/// The `rate_limited` error for a refused frame, with its id when it has one.
pub(crate) fn rate_limited(text: Option<&str>) -> String {
    let id = text
        .and_then(|t| parse_client_frame(t).ok())
        .and_then(|f| f.id.map(|id| id.into_owned()));
    error_frame(id.as_deref(), ErrorCode::RateLimited, "too many frames: slow down")
}

/// A token bucket: `capacity` tokens, refilled at `rate` per second.
struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(capacity: f64, rate: f64) -> TokenBucket {
        TokenBucket {
            capacity,
            rate,
            tokens: capacity,
            refilled: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.rate).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
