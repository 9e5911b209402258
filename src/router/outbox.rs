//! A session's outbound queue, bounded in bytes.
//!
//! Producers (fan-out, replies) never wait: a push that would take the queue
//! past its byte limit closes the session with 1013 instead, because a reader
//! that far behind is better served by `sync` after reconnecting than by an
//! ever-growing buffer here. A close request also wakes the writer when it is
//! blocked on a peer that does not read.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// WebSocket close code for "try again later": the session fell too far behind.
pub const CLOSE_SLOW_READER: u16 = 1013;

/// The producer side of a session's queue.
pub struct Outbox {
    tx: UnboundedSender<Utf8Bytes>,
    queued_bytes: AtomicUsize,
    limit_bytes: usize,
    close_reason: OnceLock<(u16, &'static str)>,
    close_requested: Notify,
}

impl Outbox {
    /// A queue holding at most `limit_bytes` of frames, and its receiving end.
    pub fn new(limit_bytes: usize) -> (Outbox, UnboundedReceiver<Utf8Bytes>) {
        let (tx, rx) = unbounded_channel();
        let outbox = Outbox {
            tx,
            queued_bytes: AtomicUsize::new(0),
            limit_bytes,
            close_reason: OnceLock::new(),
            close_requested: Notify::new(),
        };
        (outbox, rx)
    }

    /// Queues a frame; false when the session is closing or just overflowed.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        if self.is_closing() {
            return false;
        }
        let len = frame.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > self.limit_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.close(CLOSE_SLOW_READER, "slow reader");
            return false;
        }
        self.tx.send(frame).is_ok()
    }

    /// Asks the writer to close the connection; only the first request counts.
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.close_reason.set((code, reason)).is_ok() {
            self.close_requested.notify_one();
        }
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.close_reason.get().is_some()
    }

    /// The code and reason of the first close request.
    pub fn close_reason(&self) -> Option<(u16, &'static str)> {
        self.close_reason.get().copied()
    }

    /// Resolves once a close was requested.
    pub async fn closed(&self) {
        if !self.is_closing() {
            self.close_requested.notified().await;
        }
    }

    /// The writer reports `bytes` of frames written, making room.
    pub fn written(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_with_1013_once() {
        let (outbox, mut rx) = Outbox::new(10);
        assert!(outbox.push("123456".into()));
        assert!(!outbox.push("123456".into()));
        assert!(!outbox.push("1".into()));
        outbox.close(1001, "again");
        assert_eq!(outbox.close_reason(), Some((CLOSE_SLOW_READER, "slow reader")));
        assert_eq!(rx.try_recv().unwrap(), "123456");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn written_bytes_make_room() {
        let (outbox, _rx) = Outbox::new(10);
        assert!(outbox.push("123456".into()));
        outbox.written(6);
        assert!(outbox.push("123456".into()));
        assert!(!outbox.is_closing());
    }
}
