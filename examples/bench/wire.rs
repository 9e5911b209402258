//! A minimal WebSocket client (RFC 6455) for the generator's hot loops.
//!
//! A general client costs the generator more per frame than some servers
//! spend: it allocates each message, validates and wakes per frame. Here one
//! read brings in whatever the socket holds, the frames in it are walked in
//! place, and the sends they release go out in one write. Only what the
//! benchmarks meet is supported: unfragmented text frames, ping, close.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::tally::Closed;

/// The read buffer's first size; it doubles whenever a read fills it, so
/// idle connections stay small and busy ones read in large chunks.
const FIRST_READ_BUFFER: usize = 4 * 1024;
const MAX_READ_BUFFER: usize = 256 * 1024;

/// One frame from the server.
pub enum Frame<'a> {
    /// A complete text message, as bytes: the generator only looks for
    /// ASCII keys in it, so it skips UTF-8 validation.
    Text(&'a [u8]),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// The server is closing the connection.
    Close,
    /// A fragment or binary data: nothing the servers here send, so the
    /// caller counts it as an error.
    Unexpected,
    /// A pong or another frame with nothing to do.
    Other,
}

/// The receiving half: a socket and the bytes read from it.
pub struct Reader {
    socket: OwnedReadHalf,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

/// The sending half: a socket and the frames queued for it.
pub struct Writer {
    socket: OwnedWriteHalf,
    queued: Vec<u8>,
}

/// Both halves of an open WebSocket connection.
pub struct Connection {
    /// Frames from the server.
    pub reader: Reader,
    /// Frames to the server.
    pub writer: Writer,
}

impl Connection {
    /// Upgrades `stream` with a GET of `path_and_query` on `host`; bytes that
    /// follow the server's 101 response are kept as the first frames.
    pub async fn upgrade(stream: TcpStream, host: &str, path_and_query: &str) -> io::Result<Connection> {
        let (socket, writer) = stream.into_split();
        let mut writer = Writer {
            socket: writer,
            queued: Vec::new(),
        };
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        writer.socket.write_all(request.as_bytes()).await?;
        let mut reader = Reader {
            socket,
            buffer: vec![0; FIRST_READ_BUFFER],
            start: 0,
            end: 0,
        };
        let header_end = loop {
            if reader.fill().await.is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the upgrade",
                ));
            }
            let read = &reader.buffer[..reader.end];
            if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let response = String::from_utf8_lossy(&reader.buffer[..header_end]);
        if !response.starts_with("HTTP/1.1 101") {
            let status = response.lines().next().unwrap_or_default().to_owned();
            return Err(io::Error::other(format!("upgrade refused: {status}")));
        }
        reader.start = header_end;
        Ok(Connection { reader, writer })
    }
}

impl Reader {
    /// Waits for more bytes from the server; `Closed` at the end of the stream.
    pub async fn fill(&mut self) -> Result<(), Closed> {
        self.buffer.copy_within(self.start..self.end, 0);
        (self.start, self.end) = (0, self.end - self.start);
        if self.end == self.buffer.len() {
            // A frame larger than the buffer.
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let read = self
            .socket
            .read(&mut self.buffer[self.end..])
            .await
            .map_err(|_| Closed)?;
        if read == 0 {
            return Err(Closed);
        }
        self.end += read;
        if self.end == self.buffer.len() && self.buffer.len() < MAX_READ_BUFFER {
            // The socket held more than fitted: read more at once next time.
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        Ok(())
    }

    /// The next complete frame in what was read, if any.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let read = &self.buffer[self.start..self.end];
        let (&first, &second) = (read.first()?, read.get(1)?);
        let (length, mut header) = match second & 0x7f {
            126 => (u64::from(u16::from_be_bytes(read.get(2..4)?.try_into().ok()?)), 4),
            127 => (u64::from_be_bytes(read.get(2..10)?.try_into().ok()?), 10),
            short => (u64::from(short), 2),
        };
        let masked = second & 0x80 != 0;
        if masked {
            header += 4;
        }
        let total = header + usize::try_from(length).ok()?;
        if read.len() < total {
            return None;
        }
        let frame_start = self.start;
        self.start += total;
        if masked {
            // Servers do not mask; unmask anyway rather than misread.
            let key: [u8; 4] = self.buffer[frame_start + header - 4..frame_start + header]
                .try_into()
                .ok()?;
            let payload = &mut self.buffer[frame_start + header..frame_start + total];
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        }
        let payload = &self.buffer[frame_start + header..frame_start + total];
        let fin = first & 0x80 != 0;
        Some(match (fin, first & 0x0f) {
            (true, 0x1) => Frame::Text(payload),
            (true, 0x9) => Frame::Ping(payload),
            (_, 0x8) => Frame::Close,
            (true, 0xa) => Frame::Other,
            _ => Frame::Unexpected,
        })
    }
}

impl Writer {
    /// Queues a text frame; [`Writer::flush`] sends it.
    pub fn text(&mut self, text: &str) {
        self.frame(0x1, text.as_bytes());
    }

    /// Queues the answer to a ping.
    pub fn pong(&mut self, payload: &[u8]) {
        self.frame(0xa, payload);
    }

    /// Appends a final frame with a zero masking key: clients must mask,
    /// and a zero key leaves the payload as it is, so it is copied once.
    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        self.queued.push(0x80 | opcode);
        match payload.len() {
            short @ 0..=125 => self.queued.push(0x80 | short as u8),
            medium @ 126..=0xffff => {
                self.queued.push(0x80 | 126);
                self.queued.extend_from_slice(&(medium as u16).to_be_bytes());
            }
            long => {
                self.queued.push(0x80 | 127);
                self.queued.extend_from_slice(&(long as u64).to_be_bytes());
            }
        }
        self.queued.extend_from_slice(&[0; 4]);
        self.queued.extend_from_slice(payload);
    }

    /// Whether frames wait to be sent.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Sends every queued frame, in as few writes as the socket allows.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        if self.queued.is_empty() {
            return Ok(());
        }
        self.socket.write_all(&self.queued).await.map_err(|_| Closed)?;
        self.queued.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader over `bytes`, as if one read had brought them in.
    async fn reader_of(bytes: &[u8]) -> Reader {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (socket, _) = client.into_split();
        let mut buffer = bytes.to_vec();
        buffer.resize(FIRST_READ_BUFFER.max(bytes.len()), 0);
        Reader {
            socket,
            buffer,
            start: 0,
            end: bytes.len(),
        }
    }

    #[tokio::test]
    async fn walks_frames_in_place_and_waits_for_partial_ones() {
        let mut bytes = vec![0x81, 5];
        bytes.extend_from_slice(b"hello");
        bytes.extend_from_slice(&[0x89, 2, b'p', b'1']);
        let long = "x".repeat(300);
        bytes.extend_from_slice(&[0x81, 126, 0x01, 0x2c]);
        bytes.extend_from_slice(long.as_bytes());
        bytes.extend_from_slice(&[0x81, 10, b'c']);
        let mut reader = reader_of(&bytes).await;
        assert!(matches!(reader.next_frame(), Some(Frame::Text(b"hello"))));
        assert!(matches!(reader.next_frame(), Some(Frame::Ping(b"p1"))));
        assert!(matches!(reader.next_frame(), Some(Frame::Text(t)) if t == long.as_bytes()));
        assert!(reader.next_frame().is_none(), "the last frame is incomplete");
    }

    #[tokio::test]
    async fn frames_are_masked_with_a_zero_key() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (_, socket) = client.into_split();
        let mut writer = Writer {
            socket,
            queued: Vec::new(),
        };
        writer.text("hi");
        writer.pong(b"");
        assert_eq!(
            writer.queued,
            [0x81, 0x82, 0, 0, 0, 0, b'h', b'i', 0x8a, 0x80, 0, 0, 0, 0]
        );
    }
}
