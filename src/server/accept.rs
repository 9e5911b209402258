//! The accept loop: one task per connection until the server stops.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::net::TcpListener;

use super::connection::{self, Frontend, OpenConnection};

/// Accepts connections until the server stops. Every connection task holds a
/// clone of `alive`, so the server knows when the last one has ended.
pub(crate) async fn accept_loop(frontend: Arc<Frontend>, listener: TcpListener, alive: Sender<()>) {
    let core = &frontend.core;
    let mut stopping = core.stopping.clone();
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                let _ = tcp.set_nodelay(true);
                // Counted from accept, so half-open handshakes count too; one
                // over the limit is still answered (503) within the handshake deadline.
                let (open, open_now) = OpenConnection::count(core.clone(), alive.clone());
                let full = open_now > core.config.limits.max_connections;
                tokio::spawn(connection::serve(frontend.clone(), tcp, full, open));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
