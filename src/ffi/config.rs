//! Configuration helpers that are not tied to a handle.

use std::ffi::c_char;

use super::boundary::{arg_str, guard, out_ptr, owned_c_string};
use super::status::imbed_status;
use crate::config::merge_json;

/// Lays `overlay_json` over `base_json`, both JSON objects, and writes the
/// result to `*merged_out` (free it with `imbed_string_free`). The merge is
/// a JSON Merge Patch (RFC 7386): objects merge key by key, any other value
/// (arrays too) replaces the one below, and `null` removes a key. For hosts
/// that layer configuration, such as command-line flags over a file; the
/// result is validated only by `imbed_server_new` or `imbed_client_new`.
/// `IMBED_ERR_INVALID_CONFIG` when either is not a JSON object.
///
/// # Safety
/// `base_json` and `overlay_json` are NULL or NUL-terminated strings;
/// `merged_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn imbed_config_merge(
    base_json: *const c_char,
    overlay_json: *const c_char,
    merged_out: *mut *mut c_char,
) -> imbed_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let base = unsafe { arg_str(base_json, "base_json") }?;
        // SAFETY: per this function's contract.
        let overlay = unsafe { arg_str(overlay_json, "overlay_json") }?;
        // SAFETY: per this function's contract.
        let out = unsafe { out_ptr(merged_out, "merged_out") }?;
        *out = owned_c_string(merge_json(base, overlay)?)?;
        Ok(())
    })
}
