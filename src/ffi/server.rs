//! The `imbed_server_*` exports.

use std::ffi::{CString, c_char};
use std::ptr;
use std::sync::Arc;

use super::boundary::{FfiError, arg_str, guard, opt_arg_str, out_ptr};
use super::handles::Registry;
use super::listener::{ListenerHost, imbed_listener};
use super::status::imbed_status;
use crate::config::Config;
use crate::error::Error;
use crate::server::Server;
use crate::store::StoredMessage;

/// An IM server. Opaque: create it with `imbed_server_new`, release it with
/// `imbed_server_free`. Every call on it is thread-safe.
#[allow(non_camel_case_types)]
pub struct imbed_server {
    _opaque: [u8; 0],
}

static SERVERS: Registry<Server> = Registry::new();

fn server_of(handle: *const imbed_server) -> Result<Arc<Server>, FfiError> {
    if handle.is_null() {
        return Err(FfiError::Null("server"));
    }
    SERVERS.get(handle.addr())
}

/// Creates a server from a JSON configuration (see docs/C-API.md for the
/// keys; `"{}"` takes every default). The whole configuration is validated
/// here: an unknown key, a wrong type or a bad value gives
/// `IMBED_ERR_INVALID_CONFIG` with a message naming the field. On success
/// `*server_out` receives the new handle.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `server_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_new(
    config_json: *const c_char,
    server_out: *mut *mut imbed_server,
) -> imbed_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let text = unsafe { arg_str(config_json, "config_json") }?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(server_out, "server_out") }?;
        let server = Server::new(Config::from_json(text)?)?;
        *out = ptr::without_provenance_mut(SERVERS.insert(server));
        Ok(())
    })
}

/// Sets the callbacks (copied from `*listener`). Only before
/// `imbed_server_start`; a listener set earlier gets its `destroy` call now.
/// If this call fails, the engine keeps nothing and calls nothing of `listener`.
///
/// # Safety
/// `listener` is NULL or points to a readable `imbed_listener`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_set_listener(
    server: *mut imbed_server,
    listener: *const imbed_listener,
) -> imbed_status {
    guard(|| {
        let server = server_of(server)?;
        // SAFETY: readable when non-NULL, per this function's contract.
        let listener = unsafe { listener.as_ref() }.ok_or(FfiError::Null("listener"))?;
        let host = Arc::new(ListenerHost::new(listener));
        server.set_host(host.clone()).inspect_err(|_| host.disarm())?;
        Ok(())
    })
}

/// Starts the server: its runtime, its event thread and its listening
/// socket. Fails with `IMBED_ERR_IO` when the address cannot be bound, and
/// with `IMBED_ERR_INVALID_CONFIG` in auth mode "callback" without an
/// `authenticate` listener. A server starts at most once.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_server_start(server: *mut imbed_server) -> imbed_status {
    guard(|| Ok(server_of(server)?.start()?))
}

/// Writes the bound TCP port (the real one when configured with port 0)
/// into `*port_out`. `IMBED_ERR_NOT_STARTED` before start.
///
/// # Safety
/// `port_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_port(server: *mut imbed_server, port_out: *mut u16) -> imbed_status {
    guard(|| {
        let server = server_of(server)?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(port_out, "port_out") }?;
        *out = server.local_addr()?.port();
        Ok(())
    })
}

/// Sends a direct message from `from` (any valid id the host chooses; it
/// need not be connected) to the user `to`, and returns once it is stored.
/// `body_json` is any JSON value. `client_id` is the idempotency key: sending
/// again with the same `from` and `client_id` stores nothing new and reports
/// the same seq; NULL lets the engine make a unique one. On success the
/// message's seq goes to `*seq_out` unless `seq_out` is NULL.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `seq_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_send(
    server: *mut imbed_server,
    from: *const c_char,
    to: *const c_char,
    body_json: *const c_char,
    client_id: *const c_char,
    seq_out: *mut u64,
) -> imbed_status {
    guard(|| {
        let server = server_of(server)?;
        // SAFETY (all four): per this function's contract.
        let from = unsafe { arg_str(from, "from") }?;
        let to = unsafe { arg_str(to, "to") }?;
        let body = unsafe { arg_str(body_json, "body_json") }?;
        let client_id = unsafe { opt_arg_str(client_id, "client_id") }?;
        let placement = server.send(from, to, body, client_id)?;
        // SAFETY: writable when non-NULL, per this function's contract.
        if let Some(out) = unsafe { seq_out.as_mut() } {
            *out = placement.seq;
        }
        Ok(())
    })
}

/// Stops the server: closes the listener and every session (close code
/// 1001), delivers the remaining events, calls the listener's `destroy`, and
/// returns only then: no callback runs after it returns. Stopping again is
/// `IMBED_OK`. From inside one of this server's callbacks it returns
/// `IMBED_ERR_IN_CALLBACK` instead of waiting for itself.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_server_stop(server: *mut imbed_server) -> imbed_status {
    guard(|| Ok(server_of(server)?.stop()?))
}

/// Stops the server if needed and releases the handle; afterwards every call
/// with it returns `IMBED_ERR_INVALID_HANDLE`. NULL, a freed handle and a
/// second free are ignored. From inside one of this server's callbacks the
/// handle is released at once and the stop finishes on a background thread
/// after the callback returns.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_server_free(server: *mut imbed_server) {
    guard(|| {
        let Some(server) = SERVERS.remove(server.addr()) else {
            return Ok(());
        };
        if let Err(Error::InCallback) = server.stop() {
            std::thread::Builder::new()
                .name("imbed-free".into())
                .spawn(move || server.stop())
                .map_err(|e| Error::Io(format!("could not start the stopping thread: {e}")))?;
        }
        Ok(())
    });
}

/// Writes up to `limit` (1 to 1000) stored messages of the conversation
/// `conv` (`dm:<a>:<b>` with a <= b, or `g:<group>`) with seq below `before`
/// (0: the newest), oldest first, as a JSON array of protocol `msg` frames,
/// into `*json_out`. The string is owned by the caller: free it with
/// `imbed_string_free`. An unknown conversation gives `[]`. Blocks while the
/// store is read.
///
/// # Safety
/// `conv` is NULL or NUL-terminated; `json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_history(
    server: *mut imbed_server,
    conv: *const c_char,
    before: u64,
    limit: u32,
    json_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        let server = server_of(server)?;
        // SAFETY (both): per this function's contract.
        let conv = unsafe { arg_str(conv, "conv") }?;
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let messages = server.history(conv, (before > 0).then_some(before), limit as usize)?;
        let json = StoredMessage::json_array(&messages, usize::MAX);
        *out = CString::new(json.get())
            .map_err(|_| Error::Store("a stored message contains NUL".into()))?
            .into_raw();
        Ok(())
    })
}

/// Frees a string the library returned to the caller (`json_out` of
/// `imbed_server_history`). NULL is ignored.
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
