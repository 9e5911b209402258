//! The order in which one session's requests take effect.
//!
//! A client may pipeline: send `join` and, without waiting for its `ok`, a
//! `send` to that group; or a `send` and then a `history`. Checks run on the
//! reader in arrival order, and membership changes are awaited there before
//! the next frame is read. Writes that go through the store's queue (sends,
//! read marks) are not awaited, since that would cost a commit per frame;
//! instead reads (`sync`, `history`, `conversations`) start only once every
//! write sent before them has been reported. The store reports one session's
//! writes in the order it queued them, so a count is enough.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// Counts a session's store writes: started, and reported.
pub(crate) struct WriteOrder {
    started: u64,
    reported: Arc<watch::Sender<u64>>,
}

/// One write in flight; dropping it (when the store reports, or drops the
/// request) counts it as reported.
pub(crate) struct Written(Arc<watch::Sender<u64>>);

impl Drop for Written {
    fn drop(&mut self) {
        self.0.send_modify(|reported| *reported += 1);
    }
}

impl WriteOrder {
    /// No writes yet.
    pub(crate) fn new() -> WriteOrder {
        WriteOrder {
            started: 0,
            reported: Arc::new(watch::channel(0).0),
        }
    }

    /// Counts a write as started; the store's completion holds what this returns.
    pub(crate) fn start(&mut self) -> Written {
        self.started += 1;
        Written(self.reported.clone())
    }

    /// Resolves once every write started so far has been reported.
    pub(crate) fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        let (mut reported, target) = (self.reported.subscribe(), self.started);
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
}
