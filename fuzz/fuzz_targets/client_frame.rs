//! The JSON command parser: any bytes a client can put in a text frame.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by the time they are parsed (tungstenite checks).
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(frame) = imbed::protocol::parse_client_frame(text)
    {
        // Whatever parsed must be usable: ids were checked, bodies are JSON.
        if let Some(id) = &frame.id {
            assert!(imbed::protocol::is_valid_request_id(id));
        }
        if let Some(body) = frame.body {
            assert!(serde_json::from_str::<serde_json::Value>(body.get()).is_ok());
        }
        if let Some(conv) = frame.conv.as_deref() {
            let _ = imbed::protocol::Conversation::parse(conv);
        }
    }
});
