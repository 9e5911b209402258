//! WebSocket frame decoding as the server configures it: any bytes a client
//! can send after the handshake.

#![no_main]

use std::io::{Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::{Role, WebSocket};

/// The client's bytes to read; what the server writes is discarded.
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = imbed::config::Limits::default();
    let config = imbed::internals::websocket_config(&limits);
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(data.to_vec())), Role::Server, Some(config));
    // Read until the bytes run out or the stream is refused; neither may panic.
    while let Ok(message) = ws.read() {
        assert!(message.len() <= limits.max_frame_bytes);
    }
});
