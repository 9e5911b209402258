//! Who is online where, and fan-out to their sessions.
//!
//! Sessions register here after authentication; everything that must reach a
//! user goes through [`Router::deliver`]. Local routing sits behind the trait
//! so that a broker-backed router (several nodes) can replace it without
//! touching sessions.

pub(crate) mod batch;
pub(crate) mod cluster;
pub(crate) mod group_fanout;
pub(crate) mod groups;
pub(crate) mod local;
pub(crate) mod outbox;
pub(crate) mod presence;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

use tokio_tungstenite::tungstenite::Utf8Bytes;

pub(crate) use groups::{Groups, Members};
pub(crate) use local::LocalRouter;
pub(crate) use outbox::{Outbox, Position};
pub(crate) use presence::Presence;

/// One authenticated connection, as the router sees it.
#[repr(C)]
pub(crate) struct SessionHandle {
    /// Unique within the server, never reused.
    pub(crate) id: u64,
    /// Frames waiting to be written to this connection. Beside `id`, in
    /// C's order: a fan-out reads both (see `outbox::Queue`).
    pub(crate) outbox: Outbox,
    /// The authenticated user.
    pub(crate) user: Arc<str>,
    /// The device the session runs on.
    pub(crate) device: Arc<str>,
    /// The client said its app is in the background (`device` frame): the
    /// user is not looking, so pushes are not held back for this session.
    pub(crate) background: AtomicBool,
    /// When the peer was last heard from, in the server's keepalive ticks
    /// (`server::keepalive`, which alone reads it).
    pub(crate) last_heard: AtomicU32,
}

impl SessionHandle {
    /// A session of `user` on `device`, in the foreground, with an empty
    /// outbox of at most `outbox_bytes`.
    pub(crate) fn new(id: u64, user: Arc<str>, device: Arc<str>, outbox_bytes: usize) -> SessionHandle {
        SessionHandle {
            id,
            user,
            device,
            background: AtomicBool::new(false),
            outbox: Outbox::new(outbox_bytes),
            last_heard: AtomicU32::new(0),
        }
    }
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

/// Who a message of a conversation goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Audience<'a> {
    /// The two members of a direct conversation (one user twice, in a
    /// conversation with oneself).
    Direct(&'a str, &'a str),
    /// A group, by name, and its members as this node knows them.
    Group(&'a str, &'a Members),
}

/// A change to a group, which every node's copy of the groups must see.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GroupChange<'a> {
    /// `user` joined (`member`) or left `group`.
    Member {
        /// The group.
        group: &'a str,
        /// The user.
        user: &'a str,
        /// Joined or left.
        member: bool,
    },
    /// `group` was created, or opened or closed.
    Closed {
        /// The group.
        group: &'a str,
        /// Closed or open.
        closed: bool,
    },
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
    /// Calls `visit` with every session, under the locks that keep the
    /// sessions where they are: `visit` must not call the router.
    fn for_each_session(&self, visit: &mut dyn FnMut(&SessionHandle));
    /// How many sessions are attached.
    fn session_count(&self) -> usize;
    /// How many users have a session.
    fn user_count(&self) -> usize;

    /// Queues the `msg` frame of `conv`'s message `seq` to every session of
    /// its `audience` but the one with id `except`; returns how many
    /// sessions it was queued to here.
    fn fanout(&self, conv: &str, seq: u64, frame: &Utf8Bytes, audience: Audience<'_>, except: Option<u64>) -> usize;

    /// Whether one of `user`'s sessions is in the foreground: the user is looking.
    fn is_looking(&self, user: &str) -> bool {
        self.sessions_of(user)
            .iter()
            .any(|s| !s.background.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// One of `user`'s sessions went to the background or came back.
    fn looking_changed(&self, _user: &str) {}

    /// `change` was stored and applied to this node's groups.
    fn group_changed(&self, _change: GroupChange<'_>) {}

    /// A sync reply told a session that `conv` ends at `last_seq`.
    fn synced(&self, _conv: &str, _last_seq: u64) {}

    /// Why messages may not reach the sessions of other nodes now, when so.
    fn degraded(&self) -> Option<String> {
        None
    }

    /// Stops what the router runs besides the sessions.
    fn stop(&self) {}
}
