//! The C listener: `user_data`, function pointers and `destroy`, adapted to
//! the engine's [`Host`] trait.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::host::{Event, Host, LogLevel};
use crate::protocol::MAX_ID_LEN;

/// What an event is about.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum imbed_event_kind {
    /// A user's session was authenticated: `user`, `session`.
    IMBED_EVENT_CONNECTED = 1,
    /// A session ended: `user`, `session`, `reason`.
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
}

/// An event. Every pointer is borrowed for the duration of the callback;
/// fields that do not apply to the kind are NULL.
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

/// Log levels, most severe first.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum imbed_log_level {
    /// Failures.
    IMBED_LOG_ERROR = 1,
    /// Trouble the engine recovered from.
    IMBED_LOG_WARN = 2,
    /// Lifecycle: listening, stopping.
    IMBED_LOG_INFO = 3,
    /// Per-connection detail.
    IMBED_LOG_DEBUG = 4,
    /// Per-frame detail.
    IMBED_LOG_TRACE = 5,
}

/// The host's callbacks. Any function pointer may be NULL. The struct is
/// copied by `imbed_server_set_listener`; `user_data` is passed back to every
/// callback and finally to `destroy`, exactly once, after the last callback.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct imbed_listener {
    /// Passed to every callback.
    pub user_data: *mut c_void,
    /// Events, in order, on the engine's dispatcher thread.
    pub on_event: Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const imbed_event)>,
    /// Log records at or above the configured `log_level`, on the dispatcher
    /// thread. Never contains tokens or message bodies.
    pub on_log: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            level: imbed_log_level,
            target: *const c_char,
            message: *const c_char,
        ),
    >,
    /// Auth mode "callback": write the user id of `token` (NUL-terminated, at
    /// most `IMBED_MAX_ID_LEN` bytes) into `user_out`, which has room for
    /// `user_out_cap` bytes, and return true; return false to reject. Runs on
    /// engine worker threads, possibly several at once: it must be thread-safe.
    pub authenticate: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            token: *const c_char,
            user_out: *mut c_char,
            user_out_cap: usize,
        ) -> bool,
    >,
    /// Releases `user_data`; called exactly once, after the last callback.
    pub destroy: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// A copied listener, as the engine's host.
pub struct ListenerHost {
    listener: imbed_listener,
    armed: AtomicBool,
}

// SAFETY: the header documents that callbacks run on engine threads and that
// `authenticate` may run concurrently; thread-safety of `user_data` is the
// host's promise.
unsafe impl Send for ListenerHost {}
// SAFETY: as above.
unsafe impl Sync for ListenerHost {}

impl ListenerHost {
    /// Copies `listener`.
    pub fn new(listener: &imbed_listener) -> ListenerHost {
        ListenerHost {
            listener: imbed_listener { ..*listener },
            armed: AtomicBool::new(true),
        }
    }

    /// Makes dropping this host not call `destroy`: the engine refused it.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

impl Drop for ListenerHost {
    fn drop(&mut self) {
        if let (true, Some(destroy)) = (self.armed.load(Ordering::Relaxed), self.listener.destroy) {
            // SAFETY: the host's callback, called once with its own user_data.
            unsafe { destroy(self.listener.user_data) };
        }
    }
}

/// The optional strings of an event, owned while the callback runs.
#[derive(Default)]
struct EventFields {
    user: Option<CString>,
    session: Option<CString>,
    reason: Option<CString>,
    message: Option<CString>,
    group: Option<CString>,
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

impl Host for ListenerHost {
    fn on_event(&self, event: &Event) {
        let Some(on_event) = self.listener.on_event else {
            return;
        };
        let json = c_string(&event.to_json());
        let mut fields = EventFields::default();
        let kind = match event {
            Event::Connected { user, session } => {
                fields.user = Some(c_string(user));
                fields.session = Some(c_string(session));
                imbed_event_kind::IMBED_EVENT_CONNECTED
            }
            Event::Disconnected { user, session, reason } => {
                fields.user = Some(c_string(user));
                fields.session = Some(c_string(session));
                fields.reason = Some(c_string(reason));
                imbed_event_kind::IMBED_EVENT_DISCONNECTED
            }
            Event::Message { from, frame } => {
                fields.user = Some(c_string(from));
                fields.message = Some(c_string(frame));
                imbed_event_kind::IMBED_EVENT_MESSAGE
            }
            Event::Member { group, user, .. } => {
                fields.user = Some(c_string(user));
                fields.group = Some(c_string(group));
                imbed_event_kind::IMBED_EVENT_MEMBER
            }
            Event::Overflow { .. } => imbed_event_kind::IMBED_EVENT_OVERFLOW,
            Event::State { .. } => imbed_event_kind::IMBED_EVENT_STATE,
            Event::Ack { .. } => imbed_event_kind::IMBED_EVENT_ACK,
            Event::SendFailed { .. } => imbed_event_kind::IMBED_EVENT_SEND_FAILED,
            Event::Frame { .. } => imbed_event_kind::IMBED_EVENT_FRAME,
        };
        let ptr_of = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let c_event = imbed_event {
            kind,
            user: ptr_of(&fields.user),
            session: ptr_of(&fields.session),
            reason: ptr_of(&fields.reason),
            message: ptr_of(&fields.message),
            json: json.as_ptr(),
            group: ptr_of(&fields.group),
        };
        // SAFETY: the host's callback; every pointer outlives the call.
        unsafe { on_event(self.listener.user_data, &c_event) };
    }

    fn on_log(&self, level: LogLevel, target: &str, message: &str) {
        let Some(on_log) = self.listener.on_log else {
            return;
        };
        let level = match level {
            LogLevel::Off | LogLevel::Error => imbed_log_level::IMBED_LOG_ERROR,
            LogLevel::Warn => imbed_log_level::IMBED_LOG_WARN,
            LogLevel::Info => imbed_log_level::IMBED_LOG_INFO,
            LogLevel::Debug => imbed_log_level::IMBED_LOG_DEBUG,
            LogLevel::Trace => imbed_log_level::IMBED_LOG_TRACE,
        };
        let (target, message) = (c_string(target), c_string(message));
        // SAFETY: the host's callback; both strings outlive the call.
        unsafe { on_log(self.listener.user_data, level, target.as_ptr(), message.as_ptr()) };
    }

    fn has_authenticate(&self) -> bool {
        self.listener.authenticate.is_some()
    }

    fn authenticate(&self, token: &str) -> Option<String> {
        let authenticate = self.listener.authenticate?;
        let token = CString::new(token).ok()?;
        let mut user = [0 as c_char; MAX_ID_LEN + 1];
        // SAFETY: the host's callback; `user` has room for `user.len()` bytes.
        let accepted = unsafe { authenticate(self.listener.user_data, token.as_ptr(), user.as_mut_ptr(), user.len()) };
        // The host may forget the NUL: the last byte is ours regardless.
        user[MAX_ID_LEN] = 0;
        // SAFETY: NUL-terminated within the array, as just ensured.
        let user = unsafe { CStr::from_ptr(user.as_ptr()) };
        accepted.then(|| user.to_str().ok().map(str::to_owned)).flatten()
    }
}
