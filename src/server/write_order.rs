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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// How far a session's writes have been reported.
#[derive(Default)]
struct Progress {
    /// Writes 1 to this one are all reported.
    through: u64,
    /// Writes reported ahead of an earlier one still in flight.
    early: BTreeSet<u64>,
}

/// What the writes of one session have reported, and who waits for it.
/// A `Notify` rather than a watch channel: this lives as long as the
/// session, and a watch channel's waiter lists took 400 bytes of each.
#[derive(Default)]
struct Reported {
    /// What was reported so far.
    progress: Mutex<Progress>,
    /// Signalled when `progress.through` moves.
    advanced: Notify,
    /// Reads waiting for `advanced`: a report wakes nobody (and takes no
    /// waiter lock) while it is zero, which is nearly always.
    waiting: AtomicUsize,
}

impl Reported {
    /// The write up to which all are reported.
    fn through(&self) -> u64 {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).through
    }
}

/// One read counted in `Reported::waiting` until it is done or dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a session's store writes: started, and reported.
pub(crate) struct WriteOrder {
    started: u64,
    /// Made at the first write: most sessions idle, and never write.
    reported: Option<Arc<Reported>>,
}

/// One write in flight; dropping it (when the store reports, or drops the
/// request) counts it as reported.
pub(crate) struct Written {
    number: u64,
    reported: Arc<Reported>,
}

impl Drop for Written {
    fn drop(&mut self) {
        let mut progress = self.reported.progress.lock().unwrap_or_else(|p| p.into_inner());
        if self.number != progress.through + 1 {
            progress.early.insert(self.number);
            return;
        }
        progress.through = self.number;
        while progress.early.first() == Some(&(progress.through + 1)) {
            progress.early.pop_first();
            progress.through += 1;
        }
        drop(progress);
        // A read counts itself before it checks the progress under the lock,
        // so either it sees this report or this sees it waiting.
        if self.reported.waiting.load(Ordering::SeqCst) > 0 {
            self.reported.advanced.notify_waiters();
        }
    }
}

impl WriteOrder {
    /// No writes yet.
    pub(crate) fn new() -> WriteOrder {
        WriteOrder {
            started: 0,
            reported: None,
        }
    }

    /// Counts a write as started; the store's completion holds what this returns.
    pub(crate) fn start(&mut self) -> Written {
        self.started += 1;
        Written {
            number: self.started,
            reported: self.reported.get_or_insert_with(Arc::default).clone(),
        }
    }

    /// Resolves once every write started so far has been reported.
    pub(crate) fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        let (reported, target) = (self.reported.clone(), self.started);
        async move {
            // No write started yet: nothing to wait for.
            let Some(reported) = reported else { return };
            if reported.through() >= target {
                return;
            }
            reported.waiting.fetch_add(1, Ordering::SeqCst);
            let _counted = Waiting(&reported.waiting);
            loop {
                let advanced = reported.advanced.notified();
                tokio::pin!(advanced);
                // Registered before the check, so a report between the two still wakes it.
                advanced.as_mut().enable();
                if reported.through() >= target {
                    break;
                }
                advanced.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Awaits `settled`, failing with `why` if it takes over a second.
    async fn settles(settled: tokio::task::JoinHandle<()>, why: &str) {
        tokio::time::timeout(std::time::Duration::from_secs(1), settled)
            .await
            .expect(why)
            .unwrap();
    }

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
        settles(settled, "settled once both earlier writes were reported").await;
    }

    #[tokio::test]
    async fn a_read_before_any_write_is_settled_at_once_and_waits_for_later_ones() {
        let mut order = WriteOrder::new();
        order.settled().await;
        let first = order.start();
        let settled = tokio::spawn(order.settled());
        tokio::task::yield_now().await;
        assert!(!settled.is_finished());
        drop(first);
        settles(settled, "settled once the write was reported").await;
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
        settles(settled, "settled once the first was reported too").await;
    }
}
