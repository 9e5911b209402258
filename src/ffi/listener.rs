//! The C listener: `user_data`, function pointers and `destroy`, adapted to
//! the engine's [`Host`] trait.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use super::event::{OwnedEvent, c_string, imbed_event};
use crate::host::{Event, Host, LogLevel};
use crate::protocol::MAX_ID_LEN;

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
    /// most `IMBED_MAX_ID_LEN` bytes), or `user/device` when the host knows
    /// the device, into `user_out`, which has room for `user_out_cap` bytes
    /// (enough for both ids at their longest), and return true; return false
    /// to reject. Runs on engine worker threads, possibly several at once: it
    /// must be thread-safe.
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

/// The bytes `authenticate` may write: `user/device` and the NUL.
const ANSWER_CAP: usize = 2 * MAX_ID_LEN + 2;

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

impl Host for ListenerHost {
    fn on_event(&self, event: &Event) {
        let Some(on_event) = self.listener.on_event else {
            return;
        };
        let event = OwnedEvent::new(event);
        // SAFETY: the host's callback; the event outlives the call.
        unsafe { on_event(self.listener.user_data, event.as_c()) };
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
        // Room for `user/device`, both ids at their longest.
        let mut user = [0 as c_char; ANSWER_CAP];
        // SAFETY: the host's callback; `user` has room for `user.len()` bytes.
        let accepted = unsafe { authenticate(self.listener.user_data, token.as_ptr(), user.as_mut_ptr(), user.len()) };
        // The host may forget the NUL: the last byte is ours regardless.
        user[ANSWER_CAP - 1] = 0;
        // SAFETY: NUL-terminated within the array, as just ensured.
        let user = unsafe { CStr::from_ptr(user.as_ptr()) };
        accepted.then(|| user.to_str().ok().map(str::to_owned)).flatten()
    }
}
