//! The panic boundary, argument checks and the thread's last error.
//!
//! Every export runs its body through [`guard`]: a panic becomes
//! `IMBED_ERR_PANIC`, and every failure leaves its message for
//! `imbed_last_error()`. Pointers pass through [`arg_str`] and [`out_ptr`],
//! which turn NULL and invalid UTF-8 into status codes.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::status::imbed_status;
use crate::error::Error;

/// A failure of an export: the engine's errors plus those only C can cause.
pub enum FfiError {
    /// The named argument was NULL.
    Null(&'static str),
    /// The named argument is not UTF-8.
    Utf8(&'static str),
    /// The handle, of the named kind, is not live.
    Handle(&'static str),
    /// The engine refused.
    Engine(Error),
}

impl From<Error> for FfiError {
    fn from(e: Error) -> FfiError {
        FfiError::Engine(e)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = message);
}

/// Runs an export's body: clears the last error, catches panics, and turns
/// the outcome into a status.
pub fn guard(body: impl FnOnce() -> Result<(), FfiError>) -> imbed_status {
    set_last_error("");
    let outcome = catch_unwind(AssertUnwindSafe(body));
    let (status, message) = match outcome {
        Ok(Ok(())) => return imbed_status::IMBED_OK,
        Ok(Err(FfiError::Null(name))) => (imbed_status::IMBED_ERR_NULL_ARGUMENT, format!("{name} is NULL")),
        Ok(Err(FfiError::Utf8(name))) => (
            imbed_status::IMBED_ERR_INVALID_UTF8,
            format!("{name} is not valid UTF-8"),
        ),
        Ok(Err(FfiError::Handle(kind))) => (
            imbed_status::IMBED_ERR_INVALID_HANDLE,
            format!("the handle is not a live {kind} (freed, or never created)"),
        ),
        Ok(Err(FfiError::Engine(e))) => ((&e).into(), e.detail()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (imbed_status::IMBED_ERR_PANIC, format!("internal panic: {what}"))
        }
    };
    set_last_error(&message);
    status
}

/// Borrows a NUL-terminated UTF-8 argument for the duration of the call.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the call.
pub unsafe fn arg_str<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a str, FfiError> {
    if ptr.is_null() {
        return Err(FfiError::Null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| FfiError::Utf8(name))
}

/// Like [`arg_str`], but NULL means "not given".
///
/// # Safety
/// As for [`arg_str`].
pub unsafe fn opt_arg_str<'a>(ptr: *const c_char, name: &'static str) -> Result<Option<&'a str>, FfiError> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { arg_str(ptr, name) }.map(Some)
}

/// Borrows an out-parameter.
///
/// # Safety
/// `ptr` is NULL or valid for writes of `T`.
pub unsafe fn out_ptr<'a, T>(ptr: *mut T, name: &'static str) -> Result<&'a mut T, FfiError> {
    // SAFETY: valid for writes when non-NULL, per the caller's contract.
    unsafe { ptr.as_mut() }.ok_or(FfiError::Null(name))
}

/// An owned C copy of `text`, to be freed with `imbed_string_free`.
pub fn owned_c_string(text: String) -> Result<*mut c_char, FfiError> {
    Ok(CString::new(text)
        .map_err(|_| Error::InvalidArgument("a string contains NUL".into()))?
        .into_raw())
}

/// Writes an owned copy of `text` to an optional out-parameter, to be freed
/// with `imbed_string_free`.
///
/// # Safety
/// `out` is NULL or valid for writes.
pub unsafe fn opt_out_string(out: *mut *mut c_char, text: String) -> Result<(), FfiError> {
    // SAFETY: valid for writes when non-NULL, per the caller's contract.
    if let Some(out) = unsafe { out.as_mut() } {
        *out = CString::new(text)
            .map_err(|_| Error::InvalidArgument("a string contains NUL".into()))?
            .into_raw();
    }
    Ok(())
}

/// The message of the last failed call on this thread, or "" when the last
/// call succeeded. Valid until the next `imbed_` call on the same thread;
/// never free it.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_last_error() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Frees a string the library returned to the caller (`json_out` of
/// `imbed_server_history`, `merged_out` of `imbed_config_merge`, and the
/// like). NULL is ignored.
///
/// # Safety
/// `string` is NULL or a string from this library not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_string_free(string: *mut c_char) {
    if !string.is_null() {
        // SAFETY: made by CString::into_raw in this library, per the contract.
        drop(unsafe { CString::from_raw(string) });
    }
}
