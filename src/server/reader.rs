//! A session's read side: the only code that reads its socket.
//!
//! A quiet session owns no read buffer. When its socket is readable, the
//! bytes go into its worker thread's buffer, are decoded there
//! ([`super::frames`]), and only what the message handed out leaves
//! undecoded (the frames behind it, or the start of one) is copied into
//! the session's own buffer, which is freed once decoded. This is what
//! uWebSockets does, and what tungstenite, whose codec makes its read
//! buffer with the connection and keeps it, could not
//! (docs/DECISIONS.md, "The server reads frames into a worker's buffer").

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use super::frames::{Decoded, Decoder, Incoming, Refusal};
use super::socket::ReadHalf;

/// The size of each worker thread's read buffer: a read takes what a
/// flood of small frames brings in one system call.
const WORKER_BUFFER: usize = 16 * 1024;

/// The least room a read into a session's own buffer asks for.
const LEAST_READ: usize = 4 * 1024;

thread_local! {
    /// The buffer every session on this thread reads into. Borrowed only
    /// within one poll, never across an await.
    static WORKER_READS: RefCell<Box<[u8]>> = RefCell::new(vec![0; WORKER_BUFFER].into_boxed_slice());
}

/// Why reading ended without a message.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client broke a rule of RFC 6455.
    Refused(Refusal),
    /// The connection ended without a close frame.
    Reset,
    /// The socket failed.
    Io,
}

impl From<Refusal> for ReadError {
    fn from(refusal: Refusal) -> ReadError {
        ReadError::Refused(refusal)
    }
}

/// A session's socket's read half and what it read but did not decode yet.
/// (Generic for the fuzz target and the tests, which read from pieces.)
pub(crate) struct ReadSide<S = ReadHalf> {
    socket: S,
    decoder: Decoder,
    /// Bytes read and not decoded: empty, and unallocated, while the
    /// client is quiet.
    pending: Vec<u8>,
    /// How much of `pending` is decoded.
    decoded: usize,
}

impl<S: AsyncRead + Unpin> ReadSide<S> {
    /// Reads `socket`, refusing messages over `max_message` bytes.
    pub(crate) fn new(socket: S, max_message: usize) -> ReadSide<S> {
        ReadSide {
            socket,
            decoder: Decoder::new(max_message),
            pending: Vec::new(),
            decoded: 0,
        }
    }

    /// The next message or control frame the client sent.
    pub(crate) async fn next(&mut self) -> Result<Incoming, ReadError> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next message or control frame. What was read and not
    /// handed out stays here, so a poll that is not followed up loses
    /// nothing.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Incoming, ReadError>> {
        loop {
            if self.decoded == self.pending.len() {
                if let Some(incoming) = ready!(self.poll_read_worker(cx))? {
                    return Poll::Ready(Ok(incoming));
                }
                continue;
            }
            match self.decoder.decode(&mut self.pending[self.decoded..])? {
                Decoded::Frame { len, incoming } => {
                    self.decoded += len;
                    if self.decoded == self.pending.len() {
                        (self.pending, self.decoded) = (Vec::new(), 0);
                    }
                    if let Some(incoming) = incoming {
                        return Poll::Ready(Ok(incoming));
                    }
                }
                Decoded::Incomplete { frame_len } => ready!(self.poll_read_own(cx, frame_len))?,
            }
        }
    }

    /// Reads into the worker's buffer and decodes there; keeps what the
    /// first message leaves. `None`: the read held no whole message.
    fn poll_read_worker(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Incoming>, ReadError>> {
        WORKER_READS.with_borrow_mut(|buffer| {
            let read = ready!(poll_read(&mut self.socket, cx, buffer))?;
            let mut at = 0;
            let incoming = loop {
                if at == read {
                    break None;
                }
                match self.decoder.decode(&mut buffer[at..read])? {
                    Decoded::Frame { len, incoming } => {
                        at += len;
                        if incoming.is_some() {
                            break incoming;
                        }
                    }
                    Decoded::Incomplete { .. } => break None,
                }
            };
            self.pending.extend_from_slice(&buffer[at..read]);
            Poll::Ready(Ok(incoming))
        })
    }

    /// Reads into the session's own buffer, behind the start of a frame
    /// (`frame_len` bytes long, when its header is there).
    fn poll_read_own(&mut self, cx: &mut Context<'_>, frame_len: Option<usize>) -> Poll<Result<(), ReadError>> {
        self.pending.drain(..self.decoded);
        self.decoded = 0;
        let have = self.pending.len();
        let room = frame_len.map_or(0, |len| len.saturating_sub(have)).max(LEAST_READ);
        self.pending.resize(have + room, 0);
        let polled = poll_read(&mut self.socket, cx, &mut self.pending[have..]);
        let read = match polled {
            Poll::Ready(Ok(read)) => read,
            _ => 0,
        };
        self.pending.truncate(have + read);
        polled.map_ok(|_| ())
    }
}

/// One read into `buffer`: how much it took, or why there is nothing more.
fn poll_read(
    socket: &mut (impl AsyncRead + Unpin),
    cx: &mut Context<'_>,
    buffer: &mut [u8],
) -> Poll<Result<usize, ReadError>> {
    let mut read = ReadBuf::new(buffer);
    match ready!(Pin::new(socket).poll_read(cx, &mut read)) {
        Ok(()) if read.filled().is_empty() => Poll::Ready(Err(ReadError::Reset)),
        Ok(()) => Poll::Ready(Ok(read.filled().len())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Poll::Ready(Err(ReadError::Reset)),
        Err(_) => Poll::Ready(Err(ReadError::Io)),
    }
}

/// A stream that yields the given pieces, one per read, then ends: what
/// the fuzz target and the tests read frames from.
#[cfg(any(test, feature = "internals"))]
pub(crate) struct Pieces(pub(crate) std::collections::VecDeque<Vec<u8>>);

#[cfg(any(test, feature = "internals"))]
impl AsyncRead for Pieces {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(piece) = self.0.front_mut() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.0.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Everything a read side makes of `pieces`, up to the first close or
/// error (the end of the pieces is one: a connection ends with a close).
#[cfg(any(test, feature = "internals"))]
pub(crate) fn read_all(pieces: Vec<Vec<u8>>, max_message: usize) -> Vec<Result<Incoming, ReadError>> {
    let mut reads = ReadSide::new(Pieces(pieces.into()), max_message);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    loop {
        let Poll::Ready(next) = reads.poll_next(&mut cx) else {
            unreachable!("pieces are always ready")
        };
        let end = matches!(next, Ok(Incoming::Close) | Err(_));
        out.push(next);
        if end {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_frame(payload: &[u8]) -> Vec<u8> {
        crate::server::frames::client_frame(0x81, payload)
    }

    fn texts(read: &[Result<Incoming, ReadError>]) -> Vec<String> {
        read.iter()
            .filter_map(|r| match r {
                Ok(Incoming::Text(t)) => Some(t.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn frames_split_anywhere_across_reads_come_out_whole_and_in_order() {
        let bodies: Vec<String> = (0..50).map(|i| format!("{i}:{}", "y".repeat(i * 97 % 5000))).collect();
        let wire: Vec<u8> = bodies.iter().flat_map(|b| text_frame(b.as_bytes())).collect();
        for piece in [1, 5, 100, 4096, 20_000, wire.len()] {
            let read = read_all(wire.chunks(piece).map(<[u8]>::to_vec).collect(), 64 * 1024);
            assert_eq!(texts(&read), bodies, "pieces of {piece}");
            assert!(
                matches!(read.last(), Some(Err(ReadError::Reset))),
                "the end of the bytes is a reset"
            );
        }
    }

    #[test]
    fn a_quiet_side_keeps_no_buffer() {
        let mut wire = text_frame(b"one");
        wire.extend(text_frame(b"two"));
        let mut reads = ReadSide::new(Pieces(vec![wire].into()), 1024);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(reads.poll_next(&mut cx), Poll::Ready(Ok(Incoming::Text(t))) if t == "one"));
        assert!(
            reads.pending.capacity() > 0,
            "the second frame waits in the session's buffer"
        );
        assert!(matches!(reads.poll_next(&mut cx), Poll::Ready(Ok(Incoming::Text(t))) if t == "two"));
        assert_eq!(reads.pending.capacity(), 0, "decoded, the buffer is freed");
    }

    #[test]
    fn a_refused_frame_ends_the_reading() {
        let mut wire = text_frame(b"ok");
        wire.extend_from_slice(&[0x81, 0x02, b'n', b'o']);
        let read = read_all(vec![wire], 1024);
        assert_eq!(texts(&read), ["ok"]);
        assert!(matches!(read.last(), Some(Err(ReadError::Refused(Refusal::Protocol)))));
    }
}
