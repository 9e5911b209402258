//! A session's outbound queue, bounded in bytes.
//!
//! Producers (fan-out, replies) never wait: a push that would take the queue
//! past its byte limit closes the session with 1013 instead, because a reader
//! that far behind is better served by `sync` after reconnecting than by an
//! ever-growing buffer here. A close request also wakes the writer when it is
//! blocked on a peer that does not read.
//!
//! While a sync reply is being read from the store, the outbox *holds* new
//! frames instead of queueing them; the reply goes out first and the held
//! frames after it, minus the messages the reply already carried. That keeps
//! each conversation in seq order on the wire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// WebSocket close code for "try again later": the session fell too far behind.
pub const CLOSE_SLOW_READER: u16 = 1013;

/// Where a `msg` frame sits: its conversation and seq.
pub type Position<'a> = (&'a str, u64);

/// A frame held back during a sync, with its position if it is a `msg`.
struct Held {
    frame: Utf8Bytes,
    position: Option<(String, u64)>,
}

/// The producer side of a session's queue.
pub struct Outbox {
    held: Mutex<Option<Vec<Held>>>,
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
            held: Mutex::new(None),
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
        self.push_at(frame, None)
    }

    /// Queues a `msg` frame at `position`, so a sync in progress can tell
    /// whether its reply already carries it.
    pub fn push_at(&self, frame: Utf8Bytes, position: Option<Position<'_>>) -> bool {
        if self.is_closing() || !self.reserve(frame.len()) {
            return false;
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.as_mut() {
            Some(held) => {
                let position = position.map(|(conv, seq)| (conv.to_owned(), seq));
                held.push(Held { frame, position });
                true
            }
            None => self.tx.send(frame).is_ok(),
        }
    }

    /// Counts `len` more bytes against the limit, closing with 1013 when over.
    fn reserve(&self, len: usize) -> bool {
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > self.limit_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.close(CLOSE_SLOW_READER, "slow reader");
            return false;
        }
        true
    }

    /// Starts holding new frames back; false if a hold is already on.
    pub fn hold(&self) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return false;
        }
        *held = Some(Vec::new());
        true
    }

    /// Queues `reply`, then the held frames except the `msg`s for which
    /// `already_sent(conv, seq)` is true, and stops holding.
    pub fn release(&self, reply: Vec<Utf8Bytes>, already_sent: impl Fn(&str, u64) -> bool) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for frame in reply {
            if !self.is_closing() && self.reserve(frame.len()) {
                let _ = self.tx.send(frame);
            }
        }
        for h in held.take().unwrap_or_default() {
            match &h.position {
                Some((conv, seq)) if already_sent(conv, *seq) => self.written(h.frame.len()),
                _ => {
                    let _ = self.tx.send(h.frame);
                }
            }
        }
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
    fn held_frames_follow_the_reply_minus_what_it_carried() {
        let (outbox, mut rx) = Outbox::new(1000);
        assert!(outbox.hold());
        assert!(!outbox.hold());
        outbox.push_at("live-5".into(), Some(("c", 5)));
        outbox.push_at("live-7".into(), Some(("c", 7)));
        outbox.push("pong".into());
        assert!(rx.try_recv().is_err());
        outbox.release(vec!["sync-5".into(), "synced".into()], |conv, seq| {
            conv == "c" && seq <= 5
        });
        let order: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(order, ["sync-5", "synced", "live-7", "pong"]);
        outbox.push("after".into());
        assert_eq!(rx.try_recv().unwrap(), "after");
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
