//! The host's calls on what is in conversations beyond sending: deleting a
//! message for moderation, searching, and finding an uploaded file.

use std::ffi::c_char;

use super::boundary::{arg_str, guard, opt_arg_str, out_ptr, owned_c_string};
use super::server::{SERVERS, imbed_server};
use super::status::imbed_status;
use crate::server::msg_frames::msg_list;

/// What `imbed_server_search` writes: the messages exactly as stored, not
/// parsed and written again.
#[derive(serde::Serialize)]
struct SearchAnswer<'a> {
    results: &'a serde_json::value::RawValue,
    more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
}

/// Deletes message `seq` of the conversation `conv` for everyone, as `by`
/// (any valid id the host chooses, such as "moderator"), whoever sent it;
/// returns once stored. The deletion is an event of the conversation with a
/// seq of its own, which goes to `*seq_out` unless it is NULL; the message's
/// body is erased from the store (docs/PROTOCOL.md, "Deletes").
/// `IMBED_ERR_NOT_FOUND` when the conversation has no message `seq`;
/// `IMBED_ERR_INVALID_ARGUMENT` for a malformed `conv`, a seq of 0, an event
/// or a message already deleted.
///
/// # Safety
/// `by` and `conv` are NULL or NUL-terminated; `seq_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_delete(
    server: *mut imbed_server,
    by: *const c_char,
    conv: *const c_char,
    seq: u64,
    seq_out: *mut u64,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY (both): per this function's contract.
        let by = unsafe { arg_str(by, "by") }?;
        let conv = unsafe { arg_str(conv, "conv") }?;
        let placement = server.delete(by, conv, seq)?;
        // SAFETY: writable when non-NULL, per this function's contract.
        if let Some(out) = unsafe { seq_out.as_mut() } {
            *out = placement.seq;
        }
        Ok(())
    })
}

/// Searches the messages of `conv`, or of every conversation when `conv` is
/// NULL, for those with every word of `query` (docs/PROTOCOL.md, "Search"),
/// and writes up to `limit` (1 to 100) of them, newest first, into
/// `*json_out`: `{"results":[msg frames],"more":true,"next":"…"}`, where
/// `next` (present when `more`) is the `after` of the next page (NULL for
/// the first). Free the string with `imbed_string_free`. Blocks while the
/// store is read. `IMBED_ERR_INVALID_ARGUMENT` for a query with no word or
/// over 256 bytes or 16 words, a malformed `conv`, or a bad `limit`.
///
/// # Safety
/// `conv` and `after` are NULL or NUL-terminated; `query` is NUL-terminated;
/// `json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_search(
    server: *mut imbed_server,
    conv: *const c_char,
    query: *const c_char,
    after: *const c_char,
    limit: u32,
    json_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY (all four): per this function's contract.
        let conv = unsafe { opt_arg_str(conv, "conv") }?;
        let query = unsafe { arg_str(query, "query") }?;
        let after = unsafe { opt_arg_str(after, "after") }?;
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let found = server.search(conv, query, after, limit as usize)?;
        let page = SearchAnswer {
            results: &msg_list(&found.messages, usize::MAX).0,
            more: found.next.is_some(),
            next: found.next.as_deref(),
        };
        *out = owned_c_string(serde_json::to_string(&page).expect("a search answer serializes"))?;
        Ok(())
    })
}

/// Finds the uploaded file `file_id` (the 64 hex digits `POST /files`
/// answered) and writes `{"path":"…","size":N,"type":"…"}` into `*json_out`:
/// where its bytes are under `files.dir`, and its size and content type.
/// The host reads any file. Free the string with `imbed_string_free`.
/// `IMBED_ERR_NOT_FOUND` when there is no such file;
/// `IMBED_ERR_INVALID_ARGUMENT` when the server has no `files.dir`.
///
/// # Safety
/// `file_id` is NULL or NUL-terminated; `json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_server_file(
    server: *mut imbed_server,
    file_id: *const c_char,
    json_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        let server = SERVERS.get(server)?;
        // SAFETY (both): per this function's contract.
        let file_id = unsafe { arg_str(file_id, "file_id") }?;
        let out = unsafe { out_ptr(json_out, "json_out") }?;
        let file = server.file(file_id)?;
        let json = serde_json::json!({
            "path": file.path.to_string_lossy(),
            "size": file.size,
            "type": file.content_type,
        });
        *out = owned_c_string(json.to_string())?;
        Ok(())
    })
}
