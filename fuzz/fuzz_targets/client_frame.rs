//! The JSON command parser: any bytes a client can put in a text frame.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by the time they are parsed (tungstenite checks).
    if let Ok(text) = std::str::from_utf8(data) {
        imbed::internals::check_client_frame(text);
    }
});
