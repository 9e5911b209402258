//! A session's write side: the only code that writes to its socket.
//!
//! It drains the outbox, copies every text frame that is ready (framed
//! when it was queued: see `router::outbox::Queued`) into its worker
//! thread's buffer and writes it with as few system calls as the socket
//! allows; only what the socket does not take is copied into the
//! session's own buffer, freed once written, as on the read side. It
//! pings when the outbox asks it to (`server::keepalive` does, on its
//! schedule), and ends the connection with a close frame when a close is
//! requested. It runs in the session's one task, polled beside the reads
//! (`server::session`), so everything it is in the middle of lives in
//! [`WriteSide`]: a poll that a read cuts short is simply not followed
//! up, and the next one goes on where it stopped. The write side owns the
//! socket's write half outright: a frame costs one copy into the buffer,
//! with no `Sink` between the outbox and the socket
//! (docs/DECISIONS.md, "The writer frames into a worker's buffer;
//! outboxes queue framed, shared frames").

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::socket::WriteHalf;
use crate::router::SessionHandle;
use crate::router::outbox::{Entry, Outbox, Ready};

/// How long a session waits for room to send its close frame. A slow
/// reader has megabytes ahead of it in the socket; it should still learn
/// why it was cut off (1013) when it gets there, if it is reading at all.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The buffer is written out once it holds this much, so a long batch
/// neither waits for its end to start leaving nor makes the buffer large.
const WRITE_AT: usize = 16 * 1024;

/// A session reads at most this many frames while replies wait (and a
/// cork is one more read): a peer that always has more to send must not
/// keep its replies in the outbox until it overflows.
const READS_PER_BATCH: u32 = 64;

thread_local! {
    /// The buffer every session on this thread copies its batches into.
    /// Borrowed only within one poll: what the socket does not take moves
    /// to the session's own buffer.
    static WORKER_WRITES: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(WORKER_BUFFER));
}

/// The worker's buffer: a batch written out at [`WRITE_AT`] bytes, plus
/// the frame that took it past.
const WORKER_BUFFER: usize = 2 * WRITE_AT;

/// The socket and the bytes framed for it that it has not taken yet.
struct Framed {
    socket: WriteHalf,
    /// Framed bytes the socket did not take yet: empty, and unallocated,
    /// unless the peer reads slower than the session writes (or a control
    /// frame waits).
    pending: Vec<u8>,
    /// How much of `pending` the socket took.
    written: usize,
}

impl Framed {
    /// Writes out what is pending; a write cut short goes on where it
    /// stopped at the next call. The buffer is freed once written: most
    /// sessions are idle most of the time, and an idle one keeps none.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(poll_write(&mut self.socket, cx, &self.pending, &mut self.written))?;
        (self.pending, self.written) = (Vec::new(), 0);
        Poll::Ready(Ok(()))
    }

    /// Copies text frames from the front of `frames` into the worker's
    /// buffer (see [`copy_until_full`]) and writes them; what the socket
    /// does not take is kept in `pending`, for [`Framed::poll_flush`].
    /// Nothing may be pending.
    fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        outbox: &Outbox,
        frames: &mut VecDeque<Entry>,
        session: u64,
    ) -> Poll<io::Result<()>> {
        debug_assert!(self.pending.is_empty());
        WORKER_WRITES.with_borrow_mut(|buffer| {
            buffer.clear();
            copy_until_full(buffer, outbox, frames, session);
            let mut at = 0;
            let written = poll_write(&mut self.socket, cx, buffer, &mut at);
            if written.is_pending() {
                self.pending = buffer[at..].to_vec();
            }
            // A huge frame grew the buffer: it is not kept that large.
            if buffer.capacity() > WORKER_BUFFER {
                *buffer = Vec::with_capacity(WORKER_BUFFER);
            }
            written
        })
    }
}

/// Writes `bytes` from `at` on to `socket`, moving `at` past what it
/// takes, until all is written; a write of nothing is an error.
fn poll_write(socket: &mut WriteHalf, cx: &mut Context<'_>, bytes: &[u8], at: &mut usize) -> Poll<io::Result<()>> {
    while *at < bytes.len() {
        match ready!(Pin::new(&mut *socket).poll_write(cx, &bytes[*at..]))? {
            0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            n => *at += n,
        }
    }
    Poll::Ready(Ok(()))
}

fn push_frame(buffer: &mut Vec<u8>, frame: Frame) {
    // Writing to a Vec cannot fail.
    let _ = frame.format(buffer);
}

/// `frame`'s bytes on the wire, for what is written outside a batch: a
/// pong, and what is sent before the session starts.
pub(crate) fn framed(frame: Frame) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(frame.len());
    push_frame(&mut buffer, frame);
    buffer
}

/// What a session writes, and how far it got.
pub(crate) struct WriteSide {
    framed: Framed,
    /// The text frames of the batch not copied for the socket yet.
    batch: VecDeque<Entry>,
    /// The outbox said frames are ready; they are taken after the cork.
    due: bool,
    /// The cork was pulled: the task let the others run once since `due`.
    corked: bool,
    /// Frames the session read since it last took a batch.
    reads: u32,
}

/// Why [`WriteSide::poll_write_until_closing`] finished.
pub(crate) enum Stopped {
    /// A close was requested.
    Closing,
    /// A write failed.
    Failed,
}

impl WriteSide {
    /// Nothing to write yet, on the socket's write half.
    pub(crate) fn new(socket: WriteHalf) -> WriteSide {
        WriteSide {
            framed: Framed {
                socket,
                pending: Vec::new(),
                written: 0,
            },
            batch: VecDeque::new(),
            due: false,
            corked: false,
            reads: 0,
        }
    }

    /// Writes what the outbox makes ready until a close is requested (even
    /// in the middle of a write: a slow reader's socket may never take the
    /// rest) or a write fails.
    ///
    /// A poll function rather than an `async fn`: it is raced with every
    /// read, and as a future it made every session's task twice as large.
    /// Everything it is in the middle of lives in `self`, so a poll that is
    /// not followed up loses nothing. Before taking a batch it lets every
    /// other task that is ready run once (the cork), so the frames they
    /// queue leave in the same write; a session that always has frames to
    /// read still writes at its next turn, since the cork stays pulled.
    ///
    /// It writes for `session`: a group's batch carries frames not for it
    /// (its own), which it skips.
    pub(crate) fn poll_write_until_closing(&mut self, cx: &mut Context<'_>, session: &SessionHandle) -> Poll<Stopped> {
        let outbox = &session.outbox;
        loop {
            // Checked first: a side that always finds frames ready would
            // otherwise never see a close.
            if outbox.is_closing() {
                return Poll::Ready(Stopped::Closing);
            }
            let written = if !self.framed.pending.is_empty() {
                self.framed.poll_flush(cx)
            } else if !self.batch.is_empty() {
                self.framed.poll_write_frames(cx, outbox, &mut self.batch, session.id)
            } else if !self.due {
                ready!(outbox.poll_ready(cx));
                self.due = true;
                continue;
            } else if !self.corked {
                // The first poll of tokio's yield defers the task's wake-up
                // until its worker has run everything else that is ready:
                // every frame those tasks queue here leaves in this write.
                self.corked = true;
                let _ = pin!(tokio::task::yield_now()).poll(cx);
                return Poll::Pending;
            } else {
                (self.due, self.corked, self.reads) = (false, false, 0);
                self.batch = start_batch(&mut self.framed, outbox, std::mem::take(&mut self.batch));
                continue;
            };
            match written {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Stopped::Failed),
                // The outbox wakes the task for a close too: a close
                // must not wait on a peer that does not read.
                Poll::Pending => {
                    ready!(outbox.poll_ready(cx));
                    self.due = true;
                }
            }
        }
    }

    /// Counts a frame the session read.
    pub(crate) fn read_one(&mut self) {
        self.reads = self.reads.saturating_add(1);
    }

    /// Whether to write before the next read: right after the cork, when
    /// the task was put at the back of the run queue to write when it comes
    /// round again, or after [`READS_PER_BATCH`] frames read, so the replies
    /// to a flood of requests leave while it lasts.
    pub(crate) fn is_first(&self) -> bool {
        self.corked || self.reads >= READS_PER_BATCH
    }

    /// Sends the close frame the outbox asks for, after the frame that was
    /// being written, if any. Waits for room to send it, but not forever.
    pub(crate) async fn close(mut self, outbox: &Outbox) {
        let Some((code, reason)) = outbox.close_reason() else {
            return;
        };
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        push_frame(&mut self.framed.pending, Frame::close(Some(frame)));
        let _ = timeout(CLOSE_WRITE_TIMEOUT, poll_fn(|cx| self.framed.poll_flush(cx))).await;
    }
}

/// Takes what is ready, giving the outbox the emptied list of the batch
/// before (see [`Outbox::take_ready`]): a ping and the control frames go
/// to the pending bytes, written first; the text frames are returned, to
/// be copied by [`Framed::poll_write_frames`].
fn start_batch(framed: &mut Framed, outbox: &Outbox, emptied: VecDeque<Entry>) -> VecDeque<Entry> {
    let Ready { ping, control, frames } = outbox.take_ready(emptied);
    outbox.written(control.len());
    framed.pending = control;
    if ping {
        push_frame(&mut framed.pending, Frame::ping(Bytes::new()));
    }
    frames
}

/// Copies text frames from the front of `frames` until none is left or
/// `buffer` holds [`WRITE_AT`] bytes, so a long batch starts leaving before
/// its end; a slice of a group's batch stopped in the middle goes back to
/// the front, for the rest. The frames stop counting against the outbox
/// once they are in the buffer: a long batch must not count frames the
/// peer already read. A group's frame that is not for `session` (its own
/// message) is skipped, and counted as written: the outbox counted it.
fn copy_until_full(buffer: &mut Vec<u8>, outbox: &Outbox, frames: &mut VecDeque<Entry>, session: u64) {
    let mut bytes = 0;
    while buffer.len() < WRITE_AT
        && let Some(entry) = frames.pop_front()
    {
        match entry {
            Entry::Frame(frame) => {
                bytes += frame.len();
                buffer.extend_from_slice(frame.wire());
            }
            Entry::Slice(batch, from, to) => {
                let mut at = from;
                while at < to
                    && buffer.len() < WRITE_AT
                    && let Some(queued) = batch.get(at.into())
                {
                    bytes += queued.frame.len();
                    if queued.except != Some(session) {
                        buffer.extend_from_slice(queued.frame.wire());
                    }
                    at += 1;
                }
                // Only a full buffer stops it short: every frame below a
                // slice's end is appended.
                if at < to && buffer.len() >= WRITE_AT {
                    frames.push_front(Entry::Slice(batch, at, to));
                }
            }
        }
    }
    outbox.written(bytes);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::router::batch::Batch;
    use crate::router::outbox::{BatchPushed, Queued};

    #[test]
    fn a_slice_cut_short_by_a_full_buffer_goes_on_where_it_stopped_without_the_sessions_own_frames() {
        let body = |c: char| c.to_string().repeat(9000);
        let batch = Arc::new(Batch::new(8));
        for (c, except) in [('a', None), ('b', Some(7)), ('c', None), ('d', Some(8)), ('e', None)] {
            assert!(batch.join(Queued::text(&body(c)), except).is_ok());
        }
        let outbox = Outbox::new(5 * 9000);
        assert_eq!(outbox.push_batch(&batch, 0), BatchPushed::Taken);
        let mut frames = outbox.take_ready(VecDeque::new()).frames;
        let payloads = |buffer: &[u8]| -> String {
            let mut out = String::new();
            let mut at = 0;
            while at < buffer.len() {
                assert_eq!(&buffer[at..at + 2], [0x81, 126]);
                let len = usize::from(u16::from_be_bytes([buffer[at + 2], buffer[at + 3]]));
                out.push(char::from(buffer[at + 4]));
                at += 4 + len;
            }
            out
        };
        let mut buffer = Vec::new();
        copy_until_full(&mut buffer, &outbox, &mut frames, 7);
        assert_eq!(
            payloads(&buffer),
            "ac",
            "b is the session's own; the buffer is full after c"
        );
        buffer.clear();
        copy_until_full(&mut buffer, &outbox, &mut frames, 7);
        assert_eq!(payloads(&buffer), "de");
        assert!(frames.is_empty());
        // Every byte counted is written, the skipped frame's too: the whole
        // limit is free again.
        assert!(outbox.push(body('f').repeat(5).into()));
        assert!(!outbox.is_closing());
    }
}
