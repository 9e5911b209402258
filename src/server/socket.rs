//! A session's socket, split so that its reads and its writes share no lock.
//!
//! The read half belongs to the session's read side (`server::reader`), the
//! write half to its write side (`server::writer`). A plain TCP socket
//! splits into two owned halves; any other stream (TLS) through tokio's
//! `split`, which locks per call.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The read half of a session's socket.
pub(crate) enum ReadHalf {
    /// A plain TCP socket, after the bytes hyper read past the upgrade
    /// request, if it read any. Boxed, and dropped once read: a client
    /// rarely sends before the upgrade's answer, and inline the head's 32
    /// bytes would take room in every session.
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

/// The upgraded connection, split.
pub(crate) fn split(upgraded: Upgraded) -> (ReadHalf, WriteHalf) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
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
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
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
