//! A session's writer task: the only one that writes to the session's socket.
//!
//! It drains the outbox, frames every text frame that is ready into one
//! buffer and writes it with as few system calls as the socket allows,
//! pings on a timer, and ends the connection with a close frame when a
//! close is requested. The frames are framed here, with tungstenite's frame
//! types, because the writer owns the socket's write half outright: it
//! shares no lock with the reader, and a frame costs a header and one copy
//! into the buffer, with no `Sink` between the outbox and the socket.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use super::socket::WriteHalf;
use crate::protocol::close;
use crate::router::SessionHandle;
use crate::router::outbox::Outbox;

/// How long the writer waits for room to send its close frame. A slow
/// reader has megabytes ahead of it in the socket; it should still learn
/// why it was cut off (1013) when it gets there, if it is reading at all.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The buffer is written out once it holds this much, so a long batch
/// neither waits for its end to start leaving nor makes the buffer large.
const WRITE_AT: usize = 16 * 1024;

/// The longest header of a server frame: unmasked, with a 64-bit length.
const MAX_HEADER: usize = 10;

/// The socket and the bytes framed for it that it has not taken yet.
struct Framed {
    socket: WriteHalf,
    buffer: Vec<u8>,
    /// How much of `buffer` the socket took.
    written: usize,
}

impl Framed {
    /// Appends a text frame carrying `payload`.
    fn push_text(&mut self, payload: Bytes) {
        push_frame(
            &mut self.buffer,
            Frame::message(payload, OpCode::Data(Data::Text), true),
        );
    }

    /// Writes out what is buffered. Cancel-safe: a write cut short goes on
    /// where it stopped at the next call.
    async fn flush(&mut self) -> io::Result<()> {
        while self.written < self.buffer.len() {
            match self.socket.write(&self.buffer[self.written..]).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => self.written += n,
            }
        }
        self.buffer.clear();
        self.written = 0;
        Ok(())
    }

    /// Frees the buffer once everything ready is written: most sessions are
    /// idle most of the time, and an idle one keeps no buffer.
    fn release(&mut self) {
        self.buffer = Vec::new();
    }
}

fn push_frame(buffer: &mut Vec<u8>, frame: Frame) {
    // Writing to a Vec cannot fail.
    let _ = frame.format(buffer);
}

/// Drains the outbox into the socket until a close is requested, then
/// sends the close frame.
pub(crate) async fn write_loop(socket: WriteHalf, session: Arc<SessionHandle>, ping_every: Duration) {
    let outbox = &session.outbox;
    let mut framed = Framed {
        socket,
        buffer: Vec::new(),
        written: 0,
    };
    tokio::select! {
        result = pump(&mut framed, outbox, ping_every) => if result.is_err() { outbox.close(close::INTERNAL_ERROR, "write failed") },
        _ = outbox.closed() => {}
    }
    if let Some((code, reason)) = outbox.close_reason() {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        // After the frame the pump was writing, if it was cut short.
        push_frame(&mut framed.buffer, Frame::close(Some(frame)));
        let _ = timeout(CLOSE_WRITE_TIMEOUT, framed.flush()).await;
    }
}

/// Writes every frame that is ready, and pings on a timer. Returns only
/// when writing fails.
async fn pump(framed: &mut Framed, outbox: &Outbox, ping_every: Duration) -> io::Result<()> {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            _ = outbox.ready() => {
                // Cork: let every other task that is ready run first, so the
                // frames they queue here leave in this one write.
                tokio::task::yield_now().await;
                let ready = outbox.take_ready();
                // One allocation for a batch of small frames.
                let framed_size = ready.control.len() + ready.frames.iter().map(|f| f.len() + MAX_HEADER).sum::<usize>();
                framed.buffer.reserve(framed_size.min(WRITE_AT + MAX_HEADER));
                framed.buffer.extend_from_slice(&ready.control);
                outbox.written(ready.control.len());
                // Each frame stops counting against the outbox once it is in
                // the buffer: a long batch must not count frames the peer already read.
                for frame in ready.frames {
                    let bytes = frame.len();
                    framed.push_text(frame.into());
                    outbox.written(bytes);
                    if framed.buffer.len() >= WRITE_AT {
                        framed.flush().await?;
                    }
                }
                framed.flush().await?;
                framed.release();
            }
            _ = ping.tick() => {
                push_frame(&mut framed.buffer, Frame::ping(Bytes::new()));
                framed.flush().await?;
                framed.release();
            }
        }
    }
}
