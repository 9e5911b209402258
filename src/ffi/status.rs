//! Status codes: what every fallible call returns.

use std::ffi::c_char;

use crate::error::Error;

/// The result of a call. `IMBED_OK` is 0; every other value is a failure whose
/// details `imbed_last_error()` gives on the same thread.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum imbed_status {
    /// Success.
    IMBED_OK = 0,
    /// A required pointer argument was NULL.
    IMBED_ERR_NULL_ARGUMENT = 1,
    /// A string argument is not valid UTF-8.
    IMBED_ERR_INVALID_UTF8 = 2,
    /// The configuration JSON is invalid; the message names the field.
    IMBED_ERR_INVALID_CONFIG = 3,
    /// An argument is invalid (an id, a JSON body).
    IMBED_ERR_INVALID_ARGUMENT = 4,
    /// The handle is not a live server (never created, or already freed).
    IMBED_ERR_INVALID_HANDLE = 5,
    /// The server is already started.
    IMBED_ERR_ALREADY_STARTED = 6,
    /// The server is not started yet.
    IMBED_ERR_NOT_STARTED = 7,
    /// The server was stopped and cannot be used again.
    IMBED_ERR_STOPPED = 8,
    /// Not allowed from inside a callback of the same server (it would deadlock).
    IMBED_ERR_IN_CALLBACK = 9,
    /// A socket or thread could not be set up (for example, the port is taken).
    IMBED_ERR_IO = 10,
    /// The message store failed; nothing was acknowledged.
    IMBED_ERR_STORE = 11,
    /// The engine panicked; the call had no effect that can be relied on.
    IMBED_ERR_PANIC = 12,
    /// The thing named does not exist (a group).
    IMBED_ERR_NOT_FOUND = 13,
    /// A client request needs a live connection.
    IMBED_ERR_NOT_CONNECTED = 14,
}

impl From<&Error> for imbed_status {
    fn from(e: &Error) -> imbed_status {
        match e {
            Error::InvalidConfig(_) => imbed_status::IMBED_ERR_INVALID_CONFIG,
            Error::InvalidArgument(_) => imbed_status::IMBED_ERR_INVALID_ARGUMENT,
            Error::AlreadyStarted => imbed_status::IMBED_ERR_ALREADY_STARTED,
            Error::NotStarted => imbed_status::IMBED_ERR_NOT_STARTED,
            Error::Stopped => imbed_status::IMBED_ERR_STOPPED,
            Error::InCallback => imbed_status::IMBED_ERR_IN_CALLBACK,
            Error::Io(_) => imbed_status::IMBED_ERR_IO,
            Error::Store(_) => imbed_status::IMBED_ERR_STORE,
            Error::NotFound(_) => imbed_status::IMBED_ERR_NOT_FOUND,
            Error::NotConnected => imbed_status::IMBED_ERR_NOT_CONNECTED,
        }
    }
}

/// A static, NUL-terminated description of a status code. Takes any integer:
/// unknown values give "unknown status". Never NULL; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_status_str(status: i32) -> *const c_char {
    let text: &'static [u8] = match status {
        0 => b"ok\0",
        1 => b"a required argument is NULL\0",
        2 => b"a string argument is not valid UTF-8\0",
        3 => b"invalid configuration\0",
        4 => b"invalid argument\0",
        5 => b"invalid handle\0",
        6 => b"already started\0",
        7 => b"not started\0",
        8 => b"stopped\0",
        9 => b"not allowed inside a callback of this server\0",
        10 => b"i/o error\0",
        11 => b"store error\0",
        12 => b"internal panic\0",
        13 => b"not found\0",
        14 => b"not connected\0",
        _ => b"unknown status\0",
    };
    text.as_ptr().cast()
}
