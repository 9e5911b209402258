//! The `imbed_server_*` exports for devices and push requests.

use std::ffi::c_char;

use serde::Serialize;

use super::boundary::{guard, opt_arg_str, out_ptr, owned_c_string};
use super::server::{SERVERS, imbed_server};
use super::status::imbed_status;

/// Ends the push request `push_id` (from an `IMBED_EVENT_PUSH` event) once
/// the push gateway's call ended: it is never offered again. `delivered`
/// false, with the gateway's `reason` (may be NULL), is logged and counted
/// in `/metrics` (`imbed_pushes_failed_total`) and ends it all the same.
/// `IMBED_ERR_NOT_FOUND` when no pending request has that id (done already).
/// Blocks until the store has recorded it.
///
/// # Safety
/// `reason` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_push_done(
    server: *mut imbed_server,
    push_id: u64,
    delivered: bool,
    reason: *const c_char,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let reason = unsafe { opt_arg_str(reason, "reason") }?;
        Ok(server.push_done(push_id, delivered, reason)?)
    })
}

#[derive(Serialize)]
struct PendingJson<'a> {
    push_id: u64,
    kind: &'a str,
    user: &'a str,
    conv: &'a str,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
}

/// Writes the push requests not done yet, oldest first, as a JSON array of
/// `{push_id, kind, user, conv, seq, from}` into `*json_out`; free it with
/// `imbed_string_free`. For a host that lists or completes them by hand.
///
/// # Safety
/// `json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_pending_pushes(
    server: *mut imbed_server,
    json_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let pending = server.pending_pushes()?;
        let entries: Vec<PendingJson<'_>> = pending
            .iter()
            .map(|p| PendingJson {
                push_id: p.push_id,
                kind: p.kind,
                user: &p.user,
                conv: &p.conv,
                seq: p.seq,
                from: p.from.as_deref(),
            })
            .collect();
        *out = owned_c_string(serde_json::to_string(&entries).expect("pending pushes serialize"))?;
        Ok(())
    })
}

#[derive(Serialize)]
struct DeviceJson<'a> {
    device: &'a str,
    state: &'static str,
    sessions: usize,
}

/// Writes the devices with a session now, by user, as a JSON object such as
/// `{"alice":[{"device":"phone-1","state":"background","sessions":1}]}`
/// into `*json_out`; free it with `imbed_string_free`. A device is
/// `foreground` when one of its sessions is (none said `background`).
///
/// # Safety
/// `json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_devices(server: *mut imbed_server, json_out: *mut *mut c_char) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let devices = server.devices()?;
        let mut by_user: std::collections::BTreeMap<&str, Vec<DeviceJson<'_>>> = Default::default();
        for d in &devices {
            by_user.entry(&d.user).or_default().push(DeviceJson {
                device: &d.device,
                state: if d.foreground { "foreground" } else { "background" },
                sessions: d.sessions,
            });
        }
        *out = owned_c_string(serde_json::to_string(&by_user).expect("devices serialize"))?;
        Ok(())
    })
}
