//! The `imbed_client_*` exports: the client role over the C ABI.

use std::ffi::{c_char, c_int};
use std::ptr;

use super::boundary::{arg_str, guard, opt_arg_str, opt_out_string, out_ptr, owned_c_string};
use super::engine;
use super::event::imbed_event;
use super::handles::Registry;
use super::listener::imbed_listener;
use super::status::imbed_status;
use crate::client::{Client, Hint};
use crate::config::ClientConfig;
use crate::error::Error;

/// A client: a resilient connection to an imbed server. Opaque, with the
/// same handle rules as `imbed_server`.
#[allow(non_camel_case_types)]
pub struct imbed_client {
    _opaque: [u8; 0],
}

/// What the app tells its client about its situation.
// Only the header uses the type: hints arrive as integers and are converted.
#[allow(dead_code)]
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum imbed_hint {
    /// The network changed: reconnect now instead of waiting out a backoff
    /// or a dead-connection timeout.
    IMBED_HINT_NETWORK_CHANGED = 1,
    /// The app went to the background: close the connection, stay paused.
    IMBED_HINT_BACKGROUND = 2,
    /// The app came to the foreground: reconnect at once.
    IMBED_HINT_FOREGROUND = 3,
}

static CLIENTS: Registry<Client> = Registry::new("client");

/// Creates a client from a JSON configuration (`url` and `token` required;
/// see docs/C-API.md). Opens the state file when one is configured, so
/// messages queued before an app restart are sent again.
///
/// # Safety
/// `config_json` is NULL or NUL-terminated; `client_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_new(
    config_json: *const c_char,
    client_out: *mut *mut imbed_client,
) -> imbed_status {
    guard(|| {
        // SAFETY (both): per this function's contract.
        let text = unsafe { arg_str(config_json, "config_json") }?;
        let out = unsafe { out_ptr(client_out, "client_out") }?;
        let client = Client::new(ClientConfig::from_json(text)?)?;
        *out = ptr::without_provenance_mut(CLIENTS.insert(client));
        Ok(())
    })
}

/// Sets the callbacks (copied). `on_event`, `on_log` and `destroy` are used;
/// `authenticate` is ignored. Only before `imbed_client_start`.
///
/// # Safety
/// `listener` is NULL or points to a readable `imbed_listener`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_set_listener(
    client: *mut imbed_client,
    listener: *const imbed_listener,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { engine::set_listener(&CLIENTS, client, listener) }
}

/// Starts connecting in the background and returns at once. The client
/// reconnects by itself until stopped; `IMBED_EVENT_STATE` events tell how.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_client_start(client: *mut imbed_client) -> imbed_status {
    guard(|| Ok(CLIENTS.get(client)?.start()?))
}

/// Queues a direct message to `to` and writes its client id into
/// `*client_id_out` (owned: free it with `imbed_string_free`; NULL to not
/// receive it). The message is sent, and re-sent after every reconnect in
/// order, until the server acks it (`IMBED_EVENT_ACK` with this id). Works
/// while disconnected and before start.
///
/// # Safety
/// `to` and `body_json` are NULL or NUL-terminated; `client_id_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_send(
    client: *mut imbed_client,
    to: *const c_char,
    body_json: *const c_char,
    client_id_out: *mut *mut c_char,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { queue(client, (to, "to"), body_json, client_id_out, Client::send) }
}

/// Queues a message to `group`; as `imbed_client_send`.
///
/// # Safety
/// As for `imbed_client_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_send_group(
    client: *mut imbed_client,
    group: *const c_char,
    body_json: *const c_char,
    client_id_out: *mut *mut c_char,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { queue(client, (group, "group"), body_json, client_id_out, Client::send_group) }
}

/// The body of `imbed_client_send` and `imbed_client_send_group`.
///
/// # Safety
/// As for `imbed_client_send`.
unsafe fn queue(
    client: *mut imbed_client,
    (target, target_name): (*const c_char, &'static str),
    body_json: *const c_char,
    client_id_out: *mut *mut c_char,
    send: fn(&Client, &str, &str) -> Result<String, Error>,
) -> imbed_status {
    guard(|| {
        let client = CLIENTS.get(client)?;
        // SAFETY (both): per the caller's contract.
        let target = unsafe { arg_str(target, target_name) }?;
        let body = unsafe { arg_str(body_json, "body_json") }?;
        let id = send(&client, target, body)?;
        // SAFETY: per the caller's contract.
        unsafe { opt_out_string(client_id_out, id) }
    })
}

/// Sends a request frame given as a JSON object. An `id` is added when
/// missing; `*request_id_out` (NULL to not receive it; owned) gets it.
/// Frames that store something (`send`, with `reply_to` for a reply, and
/// `edit`, `delete`, `react`, `unreact`) go through the outbox like
/// `imbed_client_send`: queued while disconnected and sent until acked, then
/// an `IMBED_EVENT_ACK` or `IMBED_EVENT_SEND_FAILED` with the id. The others
/// (join, leave, watch, unwatch, typing, read, history, members,
/// conversations, search…) are not queued: `IMBED_ERR_NOT_CONNECTED` while
/// disconnected; the reply arrives as an `IMBED_EVENT_FRAME` event with the
/// id. `IMBED_ERR_INVALID_ARGUMENT` for a non-object, a missing type, or
/// the types the client manages itself (sync, auth).
///
/// # Safety
/// `frame_json` is NULL or NUL-terminated; `request_id_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_request(
    client: *mut imbed_client,
    frame_json: *const c_char,
    request_id_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        let client = CLIENTS.get(client)?;
        // SAFETY: per this function's contract.
        let frame = unsafe { arg_str(frame_json, "frame_json") }?;
        let id = client.request(frame)?;
        // SAFETY: per this function's contract.
        unsafe { opt_out_string(request_id_out, id) }
    })
}

/// Passes a hint (an `imbed_hint` value, taken as an integer) to
/// the running client. Other values give `IMBED_ERR_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_client_hint(client: *mut imbed_client, hint: i32) -> imbed_status {
    guard(|| {
        let client = CLIENTS.get(client)?;
        let hint = match hint {
            1 => Hint::NetworkChanged,
            2 => Hint::Background,
            3 => Hint::Foreground,
            other => return Err(Error::InvalidArgument(format!("{other} is not an imbed_hint")).into()),
        };
        Ok(client.hint(hint)?)
    })
}

/// Closes the connection, delivers the remaining events, calls the
/// listener's `destroy`, and returns: no callback runs after it. Stopping
/// again is `IMBED_OK`; from inside a callback, `IMBED_ERR_IN_CALLBACK`.
/// Queued messages stay in the state file (if any) for the next start.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_client_stop(client: *mut imbed_client) -> imbed_status {
    guard(|| Ok(CLIENTS.get(client)?.stop()?))
}

/// Stops the client if needed and releases the handle. NULL, a freed handle
/// and a second free are ignored; from inside a callback the stop finishes
/// on a background thread.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_client_free(client: *mut imbed_client) {
    engine::free(&CLIENTS, client);
}

/// Poll delivery (config `events.delivery: "poll"`): writes the file
/// descriptor to watch for reading into `*fd_out`. It is readable while
/// events may wait (take them with `imbed_client_poll_event` or
/// `imbed_client_next_events` until none is left; a wake-up may find none),
/// and stays readable once the client has stopped. The client owns it: never
/// read, write or close it; valid until `imbed_client_free`. An eventfd on
/// Linux and Android, a pipe elsewhere. Available before start.
/// `IMBED_ERR_INVALID_ARGUMENT` for a client that delivers by callback.
///
/// # Safety
/// `fd_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_event_fd(client: *mut imbed_client, fd_out: *mut c_int) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { engine::event_fd(&CLIENTS, client, fd_out) }
}

/// Poll delivery: takes the oldest waiting event, without blocking, into
/// `*event_out`, or writes NULL when none waits. Free each event with
/// `imbed_event_free`. The events are the ones the callbacks would get, in
/// the same order and under the same policy when the queue is full; log
/// records arrive as `IMBED_EVENT_LOG`. An event counts as handled when the
/// host polls again or stops the client. `IMBED_ERR_NOT_STARTED` before
/// start. After `imbed_client_stop` the events still queued, those of the stop
/// itself included (the "stopped" state), can be taken until none is left; then
/// `IMBED_ERR_STOPPED`.
///
/// # Safety
/// `event_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_poll_event(
    client: *mut imbed_client,
    event_out: *mut *mut imbed_event,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { engine::poll_event(&CLIENTS, client, event_out) }
}

/// Poll delivery: takes up to `max` waiting events, oldest first, without
/// blocking, into `events[0..*count_out]`; `*count_out` is 0 when none waits.
/// As `imbed_client_poll_event` otherwise; free each event with `imbed_event_free`.
///
/// # Safety
/// `events` has room for `max` pointers (it may be NULL when `max` is 0);
/// `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_next_events(
    client: *mut imbed_client,
    events: *mut *mut imbed_event,
    max: usize,
    count_out: *mut usize,
) -> imbed_status {
    // SAFETY: per this function's contract.
    unsafe { engine::next_events(&CLIENTS, client, events, max, count_out) }
}

/// Uploads the file at `path` to the client's server (`POST /files` on the
/// WebSocket's host and port, with the client's token and TLS trust) and
/// writes the server's answer, `{"id":"…","size":N,"type":"…"}`, into
/// `*json_out` (free it with `imbed_string_free`). A message refers to the
/// file by that id in its body's `files` (docs/PROTOCOL.md, "Files").
/// `content_type` (NULL: none) is a hint the server uses only when the
/// bytes do not say. Blocks until the server answers; works whether or not
/// the WebSocket is connected; call it off the event thread of a busy app.
/// `IMBED_ERR_INVALID_ARGUMENT` when the server refuses the file (over its
/// size limit or the user's quota, no files on that server) or `path`
/// cannot be read; `IMBED_ERR_IO` when no server can be reached.
///
/// # Safety
/// `path` and `content_type` are NULL or NUL-terminated; `json_out` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_client_upload(
    client: *mut imbed_client,
    path: *const c_char,
    content_type: *const c_char,
    json_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        let client = CLIENTS.get(client)?;
        // SAFETY (all three): per this function's contract.
        let path = unsafe { arg_str(path, "path") }?;
        let content_type = unsafe { opt_arg_str(content_type, "content_type") }?;
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let answer = client.upload(std::path::Path::new(path), content_type)?;
        *out = owned_c_string(answer)?;
        Ok(())
    })
}
