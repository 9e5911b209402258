//! A session's writer task: the only one that writes to the session's socket.
//!
//! It drains the outbox, frames every text frame that is ready into one
//! buffer and writes it with as few system calls as the socket allows,
//! pings when the outbox asks it to (`server::keepalive` does, on its
//! schedule), and ends the connection with a close frame when a close is
//! requested. The frames are framed here, with tungstenite's frame
//! types, because the writer owns the socket's write half outright: it
//! shares no lock with the reader, and a frame costs a header and one copy
//! into the buffer, with no `Sink` between the outbox and the socket.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use super::socket::WriteHalf;
use crate::protocol::close;
use crate::router::SessionHandle;
use crate::router::outbox::{Outbox, Ready};

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
/// sends the close frame. Returns when a close is requested, even in the
/// middle of a write (a slow reader's socket may never take the rest), or
/// when a write fails.
///
/// A plain fn around one `async` block, with the pump inline and a close
/// raced inside it rather than beside it: the task's future then holds
/// each of its values once (an `async fn` keeps its arguments beside the
/// locals they move into, and a pump of its own kept its references to
/// them again) and never the pump and the close wait side by side, which
/// keeps every idle session's writer task in a 384-byte block.
pub(crate) fn write_loop(socket: WriteHalf, session: Arc<SessionHandle>) -> impl Future<Output = ()> + Send {
    let mut framed = Framed {
        socket,
        buffer: Vec::new(),
        written: 0,
    };
    async move {
        let write_failed = 'pump: loop {
            // Checked here, not only raced below: a writer that always finds
            // frames ready would otherwise never see a close.
            if session.outbox.is_closing() {
                break false;
            }
            // In this order, so that a busy writer registers no close wait
            // per batch. The batch is written after the `select!`, not in
            // its arm, which would keep the macro's state through the write.
            let ready = tokio::select! {
                biased;
                _ = session.outbox.ready() => true,
                _ = session.outbox.closed() => false,
            };
            if !ready {
                break false;
            }
            // Cork: let every other task that is ready run first, so the
            // frames they queue here leave in this one write.
            tokio::task::yield_now().await;
            let mut frames = start_batch(&mut framed, &session.outbox);
            loop {
                frame_until_full(&mut framed, &session.outbox, &mut frames);
                match flush_unless_closed(&mut framed, &session.outbox).await {
                    Ok(Flushed::All) if frames.is_empty() => break,
                    Ok(Flushed::All) => {}
                    Ok(Flushed::Closing) => break 'pump false,
                    Err(_) => break 'pump true,
                }
            }
            framed.release();
        };
        if write_failed {
            session.outbox.close(close::INTERNAL_ERROR, "write failed");
        }
        if let Some((code, reason)) = session.outbox.close_reason() {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            // After the frame the pump was writing, if it was cut short.
            push_frame(&mut framed.buffer, Frame::close(Some(frame)));
            let _ = timeout(CLOSE_WRITE_TIMEOUT, framed.flush()).await;
        }
    }
}

/// Takes what is ready: the control frames go into the buffer, which is
/// sized for the batch (one allocation for a batch of small frames); the
/// text frames are returned, to be framed by [`frame_until_full`].
fn start_batch(framed: &mut Framed, outbox: &Outbox) -> VecDeque<Utf8Bytes> {
    let Ready { ping, control, frames } = outbox.take_ready();
    let framed_size = control.len() + frames.iter().map(|f| f.len() + MAX_HEADER).sum::<usize>();
    framed.buffer.reserve(framed_size.min(WRITE_AT + MAX_HEADER));
    if ping {
        push_frame(&mut framed.buffer, Frame::ping(Bytes::new()));
    }
    framed.buffer.extend_from_slice(&control);
    outbox.written(control.len());
    frames
}

/// Frames text frames from the front of `frames` until none is left or the
/// buffer holds [`WRITE_AT`] bytes, so a long batch starts leaving before
/// its end. The frames stop counting against the outbox once they are in
/// the buffer: a long batch must not count frames the peer already read.
/// (Not `async`: no frame is held across the pump's awaits.)
fn frame_until_full(framed: &mut Framed, outbox: &Outbox, frames: &mut VecDeque<Utf8Bytes>) {
    let mut bytes = 0;
    while framed.buffer.len() < WRITE_AT
        && let Some(frame) = frames.pop_front()
    {
        bytes += frame.len();
        framed.push_text(frame.into());
    }
    outbox.written(bytes);
}

/// How a flush raced with a close request ended.
#[derive(PartialEq)]
enum Flushed {
    /// Everything buffered was written.
    All,
    /// A close was requested first; the rest stays buffered.
    Closing,
}

/// Writes out what is buffered, unless a close is requested first.
async fn flush_unless_closed(framed: &mut Framed, outbox: &Outbox) -> io::Result<Flushed> {
    // The close wait is polled only when the write has to wait.
    tokio::select! {
        biased;
        written = framed.flush() => written.map(|()| Flushed::All),
        _ = outbox.closed() => Ok(Flushed::Closing),
    }
}
