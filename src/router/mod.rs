//! Who is online where, and fan-out to their sessions.
//!
//! Sessions register here after authentication; everything that must reach a
//! user goes through [`Router::deliver`]. Local routing sits behind the trait
//! so that a broker-backed router (several nodes) can replace it without
//! touching sessions.

pub(crate) mod groups;
pub(crate) mod local;
pub(crate) mod outbox;
pub(crate) mod presence;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_tungstenite::tungstenite::Utf8Bytes;

pub(crate) use groups::Groups;
pub(crate) use local::LocalRouter;
pub(crate) use outbox::{Outbox, Position};
pub(crate) use presence::Presence;

/// One authenticated connection, as the router sees it.
pub(crate) struct SessionHandle {
    /// Unique within the server, never reused.
    pub(crate) id: u64,
    /// The authenticated user.
    pub(crate) user: Arc<str>,
    /// The device the session runs on.
    pub(crate) device: Arc<str>,
    /// The client said its app is in the background (`device` frame): the
    /// user is not looking, so pushes are not held back for this session.
    pub(crate) background: AtomicBool,
    /// Frames waiting to be written to this connection.
    pub(crate) outbox: Outbox,
}

/// What [`Router::attach`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attached {
    /// It is the user's first session: the user came online.
    CameOnline,
    /// The user had sessions already.
    AlreadyOnline,
    /// The user has as many sessions as allowed; nothing changed.
    TooMany,
}

/// Routing of frames to the sessions of users.
pub(crate) trait Router: Send + Sync + 'static {
    /// Makes `session` reachable through its user, unless the user already
    /// has `max_per_user` sessions.
    fn attach(&self, session: Arc<SessionHandle>, max_per_user: usize) -> Attached;
    /// Makes `session` unreachable; true when it was the user's last
    /// session (the user went offline).
    fn detach(&self, session: &SessionHandle) -> bool;
    /// The sessions of `user`.
    fn sessions_of(&self, user: &str) -> Vec<Arc<SessionHandle>>;
    /// Whether `user` has a session.
    fn is_online(&self, user: &str) -> bool;
    /// Every user with a session.
    fn online_users(&self) -> Vec<Arc<str>>;
    /// Queues `frame` (a `msg` at `position`, or another frame when `None`)
    /// to every session of `user` except the one with id `except`; returns
    /// how many sessions it was queued to.
    fn deliver(&self, user: &str, frame: &Utf8Bytes, position: Option<Position<'_>>, except: Option<u64>) -> usize;
    /// Asks every session to close with `code` and `reason`.
    fn close_all(&self, code: u16, reason: &'static str);
    /// How many sessions are attached.
    fn session_count(&self) -> usize;
    /// How many users have a session.
    fn user_count(&self) -> usize;
}
