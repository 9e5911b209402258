//! Opening authenticated client connections: bind a source address, connect,
//! upgrade, and wait for `welcome`.

use std::net::SocketAddr;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::net::TcpSocket;

use crate::frames::{Kind, kind};
use crate::server::ServerArgs;
use crate::wire::{Connection, Frame};

/// How many handshakes are in progress at once: enough to open thousands of
/// connections quickly, few enough not to overflow the server's accept backlog.
const CONCURRENT_HANDSHAKES: usize = 256;

/// Connects as `user` from the source address of connection `n` and waits
/// for the server's `welcome`.
pub async fn connect(server: &ServerArgs, user: &str, n: usize) -> Result<Connection, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    let source = server.source_addr(n);
    socket
        .bind(SocketAddr::from((source, 0)))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let address = server.socket_addr(n);
    let stream = socket
        .connect(address)
        .await
        .map_err(|e| format!("connect from {source}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let target = format!("{}?token={user}", server.path(n));
    let mut connection = Connection::upgrade(stream, &address.to_string(), &target)
        .await
        .map_err(|e| format!("upgrade as {user}: {e}"))?;
    loop {
        while let Some(frame) = connection.reader.next_frame() {
            match frame {
                Frame::Text(text) if kind(text) == Kind::Welcome => return Ok(connection),
                Frame::Text(text) => {
                    let text = String::from_utf8_lossy(text);
                    return Err(format!("{user} got {text} before welcome"));
                }
                Frame::Close => return Err(format!("{user}: closed before welcome")),
                _ => {}
            }
        }
        if connection.reader.fill().await.is_err() {
            return Err(format!("{user}: closed before welcome"));
        }
    }
}

/// Connects users `names(0)..names(count)` concurrently; the connections come
/// in the order of their users. Panics with the first error: a run that
/// cannot open its connections has nothing to report.
pub async fn connect_all(server: &ServerArgs, count: usize, names: impl Fn(usize) -> String) -> Vec<Connection> {
    let opening = stream::iter(0..count).map(|n| {
        let user = names(n);
        async move { (n, connect(server, &user, n).await) }
    });
    let mut connections: Vec<Option<Connection>> = (0..count).map(|_| None).collect();
    let mut opened = std::pin::pin!(opening.buffer_unordered(CONCURRENT_HANDSHAKES));
    while let Some((n, connection)) = opened.next().await {
        connections[n] = Some(connection.unwrap_or_else(|e| panic!("connection {n}: {e}")));
    }
    connections
        .into_iter()
        .map(|c| c.expect("every connection opened"))
        .collect()
}

/// Keeps a connection open, answering pings, until the server closes it.
pub async fn stay_connected(mut connection: Connection) {
    loop {
        while let Some(frame) = connection.reader.next_frame() {
            match frame {
                Frame::Ping(payload) => connection.writer.pong(payload),
                Frame::Close => return,
                _ => {}
            }
        }
        if connection.writer.flush().await.is_err() || connection.reader.fill().await.is_err() {
            return;
        }
    }
}
