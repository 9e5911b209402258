//! The library's version and the protocol's fixed sizes.

use std::ffi::c_char;

/// The longest user or group id, in bytes (not counting the NUL): these ids
/// are ASCII. Request and message ids (`client_id`) may be up to this many
/// characters of any kind, so up to 4 × this many bytes of UTF-8.
pub const IMBED_MAX_ID_LEN: usize = 64;

// cbindgen needs a literal above; this keeps it equal to the protocol's limit.
const _: () = assert!(IMBED_MAX_ID_LEN == crate::protocol::MAX_ID_LEN);

/// The library version, such as "0.1.0": equal to `IMBED_VERSION` of the
/// header the program was compiled with, unless it runs with another library.
/// Static; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn imbed_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
