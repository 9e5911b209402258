//! WebSocket frame decoding as the server does it, against tungstenite's:
//! any bytes a client can send after the handshake, arriving in pieces of
//! any size. The server's read side must decode exactly the messages
//! tungstenite decodes, and refuse where tungstenite refuses.

#![no_main]

use std::io::{Cursor, Read, Write};

use imbed::internals::{ClientFrameRead, read_client_frames};
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error, Message};

/// Small, so that the fuzzer reaches the size limits.
const MAX_MESSAGE: usize = 1024;

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

/// What tungstenite, configured as a strict server, makes of `bytes`.
fn tungstenite_reads(bytes: &[u8]) -> Vec<ClientFrameRead> {
    // A small read buffer: tungstenite zeroes it at every read, and its
    // default 128 KiB would be most of each input's time.
    let config = WebSocketConfig::default()
        .read_buffer_size(512)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .accept_unmasked_frames(false);
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(bytes.to_vec())), Role::Server, Some(config));
    let mut out = Vec::new();
    loop {
        let read = match ws.read() {
            Ok(Message::Text(text)) => ClientFrameRead::Text(text.to_string()),
            Ok(Message::Binary(bytes)) => ClientFrameRead::Binary(bytes.to_vec()),
            Ok(Message::Ping(bytes)) => ClientFrameRead::Ping(bytes.to_vec()),
            Ok(Message::Pong(_)) => ClientFrameRead::Pong,
            Ok(Message::Close(_)) => ClientFrameRead::Close,
            Ok(Message::Frame(_)) => unreachable!("tungstenite reads no raw frames"),
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => unreachable!("a cursor never blocks"),
            Err(_) => ClientFrameRead::Refused,
        };
        let end = matches!(read, ClientFrameRead::Close | ClientFrameRead::Refused);
        out.push(read);
        if end {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte sets the size of the pieces the rest arrives in.
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    let pieces = bytes.chunks(usize::from(piece).max(1)).map(<[u8]>::to_vec).collect();
    assert_eq!(read_client_frames(pieces, MAX_MESSAGE), tungstenite_reads(bytes));
});
