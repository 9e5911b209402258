//! Events as C sees them: borrowed by a callback, or owned by a polling host.

use std::ffi::{CString, c_char};
use std::ptr;

use crate::host::Event;

/// What an event is about.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum imbed_event_kind {
    /// A user's session was authenticated: `user`, `session`; `json` also
    /// has the session's `device`.
    IMBED_EVENT_CONNECTED = 1,
    /// A session ended: `user`, `session`, `reason`; `json` also has `device`.
    IMBED_EVENT_DISCONNECTED = 2,
    /// A message was stored: `user` is the sender, `message` the `msg` frame.
    IMBED_EVENT_MESSAGE = 3,
    /// The host fell behind and events were dropped; `json` has the count.
    IMBED_EVENT_OVERFLOW = 4,
    /// A group's membership changed: `group`, `user`; `json` says joined or left.
    IMBED_EVENT_MEMBER = 5,
    /// Client role: the connection's state changed (`json`: state, reason, attempt).
    IMBED_EVENT_STATE = 6,
    /// Client role: a queued message was stored by the server (`json`: id, conv, seq, ts).
    IMBED_EVENT_ACK = 7,
    /// Client role: the server refused a queued message for good (`json`: id, code, message).
    IMBED_EVENT_SEND_FAILED = 8,
    /// Client role: any other server frame, such as presence, typing or a reply (`json`: frame).
    IMBED_EVENT_FRAME = 9,
    /// Poll delivery only: a log record (`json`: level, target, message); a
    /// callback host gets log records through `on_log` instead.
    IMBED_EVENT_LOG = 10,
    /// A push request (config `push`): `user` is whom to notify; `json` has
    /// push_id, kind, conv, seq, from, group, unread, devices, collapse_key
    /// and (with `push.preview`) preview. Answer it with `imbed_server_push_done`.
    IMBED_EVENT_PUSH = 11,
}

/// An event. In a callback, it and every pointer in it are borrowed for the
/// duration of the call; an event taken by polling lives, strings included,
/// until `imbed_event_free`. Fields that do not apply to the kind are NULL.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct imbed_event {
    /// What happened.
    pub kind: imbed_event_kind,
    /// The user (connected, disconnected) or the sender (message).
    pub user: *const c_char,
    /// The session id (connected, disconnected).
    pub session: *const c_char,
    /// Why the session ended (disconnected), such as "closed by peer".
    pub reason: *const c_char,
    /// The protocol `msg` frame as JSON (message).
    pub message: *const c_char,
    /// The whole event as one JSON object, such as
    /// `{"event":"connected","user":"alice","session":"s-1-1"}`. Never NULL.
    pub json: *const c_char,
    /// The group (member).
    pub group: *const c_char,
}

/// An event with the strings it points to. `event` comes first, so a pointer
/// to it is a pointer to the whole, which `imbed_event_free` takes back.
#[repr(C)]
pub struct OwnedEvent {
    event: imbed_event,
    // A CString's bytes stay where they are when the CString moves, so the
    // pointers in `event` survive moving this struct into a Box.
    strings: EventStrings,
}

#[derive(Default)]
struct EventStrings {
    json: CString,
    user: Option<CString>,
    session: Option<CString>,
    reason: Option<CString>,
    message: Option<CString>,
    group: Option<CString>,
}

/// `s` for C: an inner NUL cannot be represented, so it is spelled out.
pub fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

impl OwnedEvent {
    /// The C form of `event`.
    pub fn new(event: &Event) -> OwnedEvent {
        let mut strings = EventStrings {
            json: c_string(&event.to_json()),
            ..EventStrings::default()
        };
        let kind = match event {
            Event::Connected { user, session, .. } => {
                strings.user = Some(c_string(user));
                strings.session = Some(c_string(session));
                imbed_event_kind::IMBED_EVENT_CONNECTED
            }
            Event::Disconnected {
                user, session, reason, ..
            } => {
                strings.user = Some(c_string(user));
                strings.session = Some(c_string(session));
                strings.reason = Some(c_string(reason));
                imbed_event_kind::IMBED_EVENT_DISCONNECTED
            }
            Event::Message { from, frame } => {
                strings.user = Some(c_string(from));
                strings.message = Some(c_string(frame));
                imbed_event_kind::IMBED_EVENT_MESSAGE
            }
            Event::Member { group, user, .. } => {
                strings.user = Some(c_string(user));
                strings.group = Some(c_string(group));
                imbed_event_kind::IMBED_EVENT_MEMBER
            }
            Event::Overflow { .. } => imbed_event_kind::IMBED_EVENT_OVERFLOW,
            Event::State { .. } => imbed_event_kind::IMBED_EVENT_STATE,
            Event::Ack { .. } => imbed_event_kind::IMBED_EVENT_ACK,
            Event::SendFailed { .. } => imbed_event_kind::IMBED_EVENT_SEND_FAILED,
            Event::Frame { .. } => imbed_event_kind::IMBED_EVENT_FRAME,
            Event::Log { .. } => imbed_event_kind::IMBED_EVENT_LOG,
            Event::Push { user, .. } => {
                strings.user = Some(c_string(user));
                imbed_event_kind::IMBED_EVENT_PUSH
            }
        };
        let ptr_of = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        OwnedEvent {
            event: imbed_event {
                kind,
                user: ptr_of(&strings.user),
                session: ptr_of(&strings.session),
                reason: ptr_of(&strings.reason),
                message: ptr_of(&strings.message),
                json: strings.json.as_ptr(),
                group: ptr_of(&strings.group),
            },
            strings,
        }
    }

    /// The event, for a callback.
    pub fn as_c(&self) -> &imbed_event {
        &self.event
    }

    /// Hands the event to a polling host, who frees it with `imbed_event_free`.
    pub fn into_raw(self) -> *mut imbed_event {
        Box::into_raw(Box::new(self)).cast()
    }
}

/// Frees an event taken with `imbed_server_poll_event`,
/// `imbed_server_next_events` or their client twins. Events may be freed in
/// any order, on any thread; NULL is fine. Never free an event a callback
/// received: it is borrowed.
///
/// # Safety
/// `event` is NULL or an event from one of those calls, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_event_free(event: *mut imbed_event) {
    super::boundary::guard(|| {
        if !event.is_null() {
            // SAFETY: made by `OwnedEvent::into_raw`, per this function's contract.
            drop(unsafe { Box::from_raw(event.cast::<OwnedEvent>()) });
        }
        Ok(())
    });
}
