//! The `imbed_server_*` exports.

use std::ffi::{c_char, c_int};
use std::ptr;

use super::boundary::{arg_str, guard, opt_arg_str, out_ptr, owned_c_string};
use super::engine;
use super::event::imbed_event;
use super::handles::Registry;
use super::listener::imbed_listener;
use super::status::imbed_status;
use crate::config::Config;
use crate::error::Error;
use crate::server::Server;
use crate::server::msg_frames::msg_array;

/// An IM server. Opaque: create it with `imbed_server_new`, release it with
/// `imbed_server_free`. Every call on it is thread-safe.
#[allow(non_camel_case_types)]
pub struct imbed_server {
    _opaque: [u8; 0],
}

pub(super) static SERVERS: Registry<Server> = Registry::new("server");

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
    // SAFETY: per this function's contract.
    unsafe { engine::set_listener(&SERVERS, server, listener) }
}

/// Starts the server: its runtime, its event thread and its listening
/// socket. Fails with `IMBED_ERR_IO` when the address cannot be bound, and
/// with `IMBED_ERR_INVALID_CONFIG` in auth mode "callback" without an
/// `authenticate` listener. A server starts at most once.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_server_start(server: *mut imbed_server) -> imbed_status {
    guard(|| Ok(SERVERS.get(server)?.start()?))
}

/// Writes the bound TCP port (the real one when configured with port 0)
/// into `*port_out`. `IMBED_ERR_NOT_STARTED` before start.
///
/// # Safety
/// `port_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_port(server: *mut imbed_server, port_out: *mut u16) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(port_out, "port_out") }?;
        *out = server.local_addr()?.port();
        Ok(())
    })
}

/// Sends a direct message from `from` (any valid id the host chooses; it
/// need not be connected) to the user `to`, and returns once it is stored.
/// `body_json` is any JSON value a client may send (docs/PROTOCOL.md, `send`:
/// no lone surrogate escape, no number beyond a double's range); anything
/// else fails with `IMBED_ERR_INVALID_ARGUMENT`. `client_id` is the idempotency key: sending
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
    // SAFETY: per this function's contract.
    unsafe { send_to(server, from, (to, "to"), body_json, client_id, seq_out, Server::send) }
}

/// Stops the server: closes the listener and every session (close code
/// 1001), delivers the remaining events, calls the listener's `destroy`, and
/// returns only then: no callback runs after it returns. Stopping again is
/// `IMBED_OK`. From inside one of this server's callbacks it returns
/// `IMBED_ERR_IN_CALLBACK` instead of waiting for itself.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_server_stop(server: *mut imbed_server) -> imbed_status {
    guard(|| Ok(SERVERS.get(server)?.stop()?))
}

/// Stops the server if needed and releases the handle; afterwards every call
/// with it returns `IMBED_ERR_INVALID_HANDLE`. NULL, a freed handle and a
/// second free are ignored. From inside one of this server's callbacks the
/// handle is released at once and the stop finishes on a background thread
/// after the callback returns.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_server_free(server: *mut imbed_server) {
    engine::free(&SERVERS, server);
}

/// Poll delivery (config `events.delivery: "poll"`): writes the file
/// descriptor to watch for reading into `*fd_out`. It is readable while
/// events may wait (take them with `imbed_server_poll_event` or
/// `imbed_server_next_events` until none is left; a wake-up may find none),
/// and stays readable once the server has stopped. The server owns it: never
/// read, write or close it; valid until `imbed_server_free`. An eventfd on
/// Linux and Android, a pipe elsewhere. Available before start.
/// `IMBED_ERR_INVALID_ARGUMENT` for a server that delivers by callback.
///
/// # Safety
/// `fd_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_event_fd(server: *mut imbed_server, fd_out: *mut c_int) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { engine::event_fd(&SERVERS, server, fd_out) }
}

/// Poll delivery: takes the oldest waiting event, without blocking, into
/// `*event_out`, or writes NULL when none waits. Free each event with
/// `imbed_event_free`. The events are the ones the callbacks would get, in
/// the same order and under the same policy when the queue is full; log
/// records arrive as `IMBED_EVENT_LOG`. An event counts as handled when the
/// host polls again or stops the server. `IMBED_ERR_NOT_STARTED` before
/// start. After `imbed_server_stop` the events still queued, those of the stop
/// itself included (sessions closed), can be taken until none is left; then
/// `IMBED_ERR_STOPPED`.
///
/// # Safety
/// `event_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_poll_event(
    server: *mut imbed_server,
    event_out: *mut *mut imbed_event,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { engine::poll_event(&SERVERS, server, event_out) }
}

/// Poll delivery: takes up to `max` waiting events, oldest first, without
/// blocking, into `events[0..*count_out]`; `*count_out` is 0 when none waits.
/// As `imbed_server_poll_event` otherwise; free each event with `imbed_event_free`.
///
/// # Safety
/// `events` has room for `max` pointers (it may be NULL when `max` is 0);
/// `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_next_events(
    server: *mut imbed_server,
    events: *mut *mut imbed_event,
    max: usize,
    count_out: *mut usize,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { engine::next_events(&SERVERS, server, events, max, count_out) }
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
        let server = SERVERS.get(server)?;
        // SAFETY (both): per this function's contract.
        let conv = unsafe { arg_str(conv, "conv") }?;
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let messages = server.history(conv, (before > 0).then_some(before), limit as usize)?;
        *out = owned_c_string(msg_array(&messages, usize::MAX).get().to_owned())?;
        Ok(())
    })
}

/// Creates the group `group`, or changes whether an existing one is closed.
/// A closed group refuses `join` from clients (`forbidden`); the host adds
/// its members with `imbed_server_add_member`. Closing an open group removes
/// all its members first (they are told): anyone could have joined it, so a
/// closed group's members are exactly those the host adds.
///
/// # Safety
/// `group` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_create_group(
    server: *mut imbed_server,
    group: *const c_char,
    closed: bool,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let group = unsafe { arg_str(group, "group") }?;
        Ok(server.create_group(group, closed)?)
    })
}

/// Adds `user` to `group` (closed groups too); the members' sessions are
/// told. `IMBED_ERR_NOT_FOUND` when the group does not exist; adding a
/// member twice is `IMBED_OK`. Blocks until stored.
///
/// # Safety
/// `group` and `user` are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_add_member(
    server: *mut imbed_server,
    group: *const c_char,
    user: *const c_char,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { change_member(server, group, user, Server::add_member) }
}

/// Removes `user` from `group`; the members and the user are told.
/// `IMBED_ERR_NOT_FOUND` when the group does not exist; removing a
/// non-member is `IMBED_OK`. Blocks until stored.
///
/// # Safety
/// `group` and `user` are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_remove_member(
    server: *mut imbed_server,
    group: *const c_char,
    user: *const c_char,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { change_member(server, group, user, Server::remove_member) }
}

/// Sends to `group` from `from` (any valid id; it need not be a member) and
/// returns once stored; every member's sessions receive it.
/// `IMBED_ERR_NOT_FOUND` when the group does not exist. `client_id` and
/// `seq_out` as for `imbed_server_send`.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `seq_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_send_group(
    server: *mut imbed_server,
    from: *const c_char,
    group: *const c_char,
    body_json: *const c_char,
    client_id: *const c_char,
    seq_out: *mut u64,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe {
        send_to(
            server,
            from,
            (group, "group"),
            body_json,
            client_id,
            seq_out,
            Server::send_group,
        )
    }
}

/// Closes every session of `user` with close code 4001 (reason "kicked").
/// How many goes to `*sessions_closed_out` unless it is NULL; a user not
/// online gives 0.
///
/// # Safety
/// `user` is NULL or NUL-terminated; `sessions_closed_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_kick(
    server: *mut imbed_server,
    user: *const c_char,
    sessions_closed_out: *mut u32,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let user = unsafe { arg_str(user, "user") }?;
        let closed = server.kick(user)?;
        // SAFETY: writable when non-NULL, per this function's contract.
        if let Some(out) = unsafe { sessions_closed_out.as_mut() } {
            *out = u32::try_from(closed).unwrap_or(u32::MAX);
        }
        Ok(())
    })
}

/// Writes whether `group` is closed and its members, sorted, as JSON
/// (`{"closed":true,"members":["alice","bob"]}`) into `*json_out`; free it
/// with `imbed_string_free`. `IMBED_ERR_NOT_FOUND` when there is no such group.
///
/// # Safety
/// `group` is NULL or NUL-terminated; `json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_members(
    server: *mut imbed_server,
    group: *const c_char,
    json_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY (both): per this function's contract.
        let group = unsafe { arg_str(group, "group") }?;
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let found = server.members(group)?;
        let members: Vec<&str> = found.members.iter().map(|m| &**m).collect();
        let json = serde_json::json!({"closed": found.closed, "members": members});
        *out = owned_c_string(json.to_string())?;
        Ok(())
    })
}

/// Writes the ids of the users online (with at least one session), sorted,
/// as a JSON array into `*json_out`; free it with `imbed_string_free`.
///
/// # Safety
/// `json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_online(server: *mut imbed_server, json_out: *mut *mut c_char) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let users = server.online()?;
        let names: Vec<&str> = users.iter().map(|u| &**u).collect();
        *out = owned_c_string(serde_json::to_string(&names).expect("strings serialize"))?;
        Ok(())
    })
}

/// The server's counters.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct imbed_stats {
    /// Open authenticated sessions.
    pub connections: u64,
    /// Users with at least one session.
    pub users_online: u64,
    /// Messages stored since start.
    pub messages_stored: u64,
    /// `msg` frames queued to sessions since start.
    pub messages_delivered: u64,
}

/// Writes the server's counters into `*stats_out`.
///
/// # Safety
/// `stats_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_stats(server: *mut imbed_server, stats_out: *mut imbed_stats) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(stats_out, "stats_out") }?;
        let stats = server.stats()?;
        *out = imbed_stats {
            connections: stats.connections,
            users_online: stats.users_online,
            messages_stored: stats.messages_stored,
            messages_delivered: stats.messages_delivered,
        };
        Ok(())
    })
}

type SendFn = fn(&Server, &str, &str, &str, Option<&str>) -> Result<crate::Placement, Error>;

/// The body of `imbed_server_send` and `imbed_server_send_group`, which
/// differ only in what the message goes to.
///
/// # Safety
/// As for `imbed_server_send`.
unsafe fn send_to(
    server: *mut imbed_server,
    from: *const c_char,
    (target, target_name): (*const c_char, &'static str),
    body_json: *const c_char,
    client_id: *const c_char,
    seq_out: *mut u64,
    send: SendFn,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY (all four): per the caller's contract.
        let from = unsafe { arg_str(from, "from") }?;
        let target = unsafe { arg_str(target, target_name) }?;
        let body = unsafe { arg_str(body_json, "body_json") }?;
        let client_id = unsafe { opt_arg_str(client_id, "client_id") }?;
        let placement = send(&server, from, target, body, client_id)?;
        // SAFETY: writable when non-NULL, per the caller's contract.
        if let Some(out) = unsafe { seq_out.as_mut() } {
            *out = placement.seq;
        }
        Ok(())
    })
}

/// The body of `imbed_server_add_member` and `imbed_server_remove_member`.
///
/// # Safety
/// `group` and `user` are NULL or NUL-terminated.
unsafe fn change_member(
    server: *mut imbed_server,
    group: *const c_char,
    user: *const c_char,
    change: fn(&Server, &str, &str) -> Result<(), Error>,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY (both): per the caller's contract.
        let group = unsafe { arg_str(group, "group") }?;
        let user = unsafe { arg_str(user, "user") }?;
        Ok(change(&server, group, user)?)
    })
}
