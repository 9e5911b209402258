//! A session's socket, split so that its reads and its writes share no lock.
//!
//! tungstenite reads the client's frames through a [`SessionIo`]. Until the
//! session starts, what tungstenite writes (an error frame, a close) goes
//! straight to the socket. Once it starts, the socket's write half belongs
//! to the session's write side alone (`server::writer`), and what
//! tungstenite still has to write on its own (pongs) reaches it through the
//! session's outbox as frames ready to send. A plain TCP socket splits into two owned halves;
//! any other stream (TLS) through tokio's `split`, which locks per call.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::router::SessionHandle;

/// The read half of a session's socket.
pub(crate) enum ReadHalf {
    /// A plain TCP socket, after the bytes hyper read past the upgrade
    /// request, if it read any. Boxed, and dropped once read: a client
    /// rarely sends before the upgrade's answer, and inline the head's 32
    /// bytes put every session's WebSocket in a larger size class.
    Tcp {
        head: Option<Box<Bytes>>,
        socket: OwnedReadHalf,
    },
    /// Any other stream: TLS.
    Other(tokio::io::ReadHalf<TokioIo<Upgraded>>),
}

/// The write half of a session's socket.
pub(crate) enum WriteHalf {
    /// A plain TCP socket.
    Tcp(OwnedWriteHalf),
    /// Any other stream: TLS.
    Other(tokio::io::WriteHalf<TokioIo<Upgraded>>),
}

/// Where tungstenite's writes go.
enum Writes {
    /// To the socket: before the session starts.
    Socket(WriteHalf),
    /// To the session's outbox, whose writer owns the socket.
    Outbox(Arc<SessionHandle>),
}

/// The stream tungstenite reads a session's frames from.
pub(crate) struct SessionIo {
    read: ReadHalf,
    writes: Writes,
}

impl SessionIo {
    /// The upgraded connection, split.
    pub(crate) fn new(upgraded: Upgraded) -> SessionIo {
        let (read, write) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (read, write) = parts.io.into_inner().into_split();
                // A copy: the bytes hyper read ahead are a view of its whole
                // read buffer, which would otherwise live as long as the session.
                let head = (!parts.read_buf.is_empty()).then(|| Box::new(Bytes::copy_from_slice(&parts.read_buf)));
                (ReadHalf::Tcp { head, socket: read }, WriteHalf::Tcp(write))
            }
            Err(upgraded) => {
                let (read, write) = tokio::io::split(TokioIo::new(upgraded));
                (ReadHalf::Other(read), WriteHalf::Other(write))
            }
        };
        SessionIo {
            read,
            writes: Writes::Socket(write),
        }
    }

    /// Hands the socket's write half over to the session's write side; from now
    /// on tungstenite's own writes go to `session`'s outbox. Call it once,
    /// after tungstenite flushed what it had to write.
    pub(crate) fn hand_over(&mut self, session: Arc<SessionHandle>) -> WriteHalf {
        match std::mem::replace(&mut self.writes, Writes::Outbox(session)) {
            Writes::Socket(socket) => socket,
            Writes::Outbox(_) => unreachable!("a session's socket is handed over once"),
        }
    }
}

impl AsyncRead for SessionIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().read {
            ReadHalf::Tcp { head, socket } => match head {
                None => Pin::new(socket).poll_read(cx, buf),
                Some(ahead) => {
                    let n = ahead.len().min(buf.remaining());
                    buf.put_slice(&ahead[..n]);
                    ahead.advance(n);
                    if ahead.is_empty() {
                        *head = None;
                    }
                    Poll::Ready(Ok(()))
                }
            },
            ReadHalf::Other(socket) => Pin::new(socket).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SessionIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().writes {
            Writes::Socket(socket) => Pin::new(socket).poll_write(cx, buf),
            Writes::Outbox(session) => {
                session.outbox.push_control(buf);
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().writes {
            Writes::Socket(socket) => Pin::new(socket).poll_flush(cx),
            Writes::Outbox(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().writes {
            Writes::Socket(socket) => Pin::new(socket).poll_shutdown(cx),
            // The write side ends the connection.
            Writes::Outbox(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(socket) => Pin::new(socket).poll_write(cx, buf),
            WriteHalf::Other(socket) => Pin::new(socket).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(socket) => Pin::new(socket).poll_flush(cx),
            WriteHalf::Other(socket) => Pin::new(socket).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(socket) => Pin::new(socket).poll_shutdown(cx),
            WriteHalf::Other(socket) => Pin::new(socket).poll_shutdown(cx),
        }
    }
}
