//! The order in which one session's requests take effect.
//!
//! A client may pipeline: send `join` and, without waiting for its `ok`, a
//! `send` to that group; or a `send` and then a `history`. Checks run on the
//! reader in arrival order, and membership changes are awaited there before
//! the next frame is read. Writes that go through the store's queue (sends,
//! read marks) are not awaited, since that would cost a commit per frame;
//! instead reads (`sync`, `history`, `conversations`) start only once every
//! write sent before them has been reported. A store with several writers
//! (PostgreSQL: one per share of the conversations) may report a session's
//! writes out of order, so each write is numbered and a read waits until
//! every write up to its number is reported, not merely as many.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// What the writes of one session have reported.
struct Reported {
    /// Writes reported ahead of an earlier one still in flight.
    early: Mutex<BTreeSet<u64>>,
    /// Writes 1 to this one are all reported.
    through: watch::Sender<u64>,
}

/// Counts a session's store writes: started, and reported.
pub(crate) struct WriteOrder {
    started: u64,
    reported: Arc<Reported>,
}

/// One write in flight; dropping it (when the store reports, or drops the
/// request) counts it as reported.
pub(crate) struct Written {
    number: u64,
    reported: Arc<Reported>,
}

impl Drop for Written {
    fn drop(&mut self) {
        let mut early = self.reported.early.lock().unwrap_or_else(|p| p.into_inner());
        early.insert(self.number);
        let mut through = *self.reported.through.borrow();
        while early.remove(&(through + 1)) {
            through += 1;
        }
        self.reported.through.send_replace(through);
    }
}

impl WriteOrder {
    /// No writes yet.
    pub(crate) fn new() -> WriteOrder {
        WriteOrder {
            started: 0,
            reported: Arc::new(Reported {
                early: Mutex::default(),
                through: watch::channel(0).0,
            }),
        }
    }

    /// Counts a write as started; the store's completion holds what this returns.
    pub(crate) fn start(&mut self) -> Written {
        self.started += 1;
        Written {
            number: self.started,
            reported: self.reported.clone(),
        }
    }

    /// Resolves once every write started so far has been reported.
    pub(crate) fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        let (mut reported, target) = (self.reported.through.subscribe(), self.started);
        async move {
            let _ = reported.wait_for(|n| *n >= target).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_wait_for_the_writes_started_before_them() {
        let mut order = WriteOrder::new();
        let first = order.start();
        let second = order.start();
        let settled = tokio::spawn(order.settled());
        let _later = order.start();
        drop(first);
        tokio::task::yield_now().await;
        assert!(!settled.is_finished());
        drop(second);
        tokio::time::timeout(std::time::Duration::from_secs(1), settled)
            .await
            .expect("settled once both earlier writes were reported")
            .unwrap();
    }

    #[tokio::test]
    async fn a_later_write_reported_first_does_not_settle_an_earlier_one() {
        let mut order = WriteOrder::new();
        let first = order.start();
        let second = order.start();
        let settled = tokio::spawn(order.settled());
        // Two writers: the second write and one started after the read are
        // reported before the first (another writer's conversation).
        drop(second);
        drop(order.start());
        tokio::task::yield_now().await;
        assert!(!settled.is_finished(), "the first write is not reported yet");
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(1), settled)
            .await
            .expect("settled once the first was reported too")
            .unwrap();
    }
}
