//! The accept loop: one task per connection until the server stops.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::net::TcpListener;

use super::core::Core;
use super::session;

/// Accepts connections until the server stops. Every connection task holds a
/// clone of `alive`, so the server knows when the last one has ended.
pub async fn accept_loop(core: Arc<Core>, listener: TcpListener, alive: Sender<()>) {
    let mut stopping = core.stopping.clone();
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                let _ = tcp.set_nodelay(true);
                let core = core.clone();
                let alive = alive.clone();
                tokio::spawn(async move {
                    session::serve(core, tcp).await;
                    drop(alive);
                });
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
