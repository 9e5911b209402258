//! The tokio runtime each server or client owns.

use tokio::runtime::Runtime;

thread_local! {
    static LOG_GUARD: std::cell::RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// How many tasks a worker polls from its own queue between two looks at
/// the shared one. A saturated session server wakes hundreds of readers
/// and writers at once; those that overflow a worker's local queue (256)
/// wait in the shared queue, and tokio's adaptive default takes one of them
/// about every 200 µs of work: 90 ms tails under load while most messages
/// took 3 ms (docs/DECISIONS.md, "A fair scheduler").
const GLOBAL_QUEUE_INTERVAL: u32 = 2;

/// A multi-thread runtime of `workers` threads named `name`, whose threads
/// log through `logs` (so each server or client logs to its own host).
pub(crate) fn build(workers: usize, name: &str, logs: &tracing::Dispatch) -> std::io::Result<Runtime> {
    let logs = logs.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .global_queue_interval(GLOBAL_QUEUE_INTERVAL)
        .thread_name(name)
        .enable_all()
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&logs);
            LOG_GUARD.with(|slot| *slot.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| LOG_GUARD.with(|slot| drop(slot.borrow_mut().take())))
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    /// A busy worker must not starve tasks that overflowed its local queue
    /// into the shared one: under a saturating load, each session's reader
    /// and writer wake by the hundreds at once, and the ones that overflow
    /// used to wait a hundred milliseconds (one task taken every ~127 ticks).
    #[test]
    fn tasks_that_overflow_the_local_queue_run_while_the_worker_stays_busy() {
        let runtime = super::build(1, "test", &tracing::Dispatch::none()).unwrap();
        let polls = runtime.block_on(async {
            tokio::spawn(async {
                let (ping, pong) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
                let polls = Arc::new(AtomicUsize::new(0));
                // Two tasks that wake each other keep the local queue from ever emptying.
                for (me, other) in [(ping.clone(), pong.clone()), (pong.clone(), ping.clone())] {
                    let polls = polls.clone();
                    tokio::spawn(async move {
                        loop {
                            other.notify_one();
                            me.notified().await;
                            polls.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                let spawned = 2_000;
                let done = Arc::new(AtomicUsize::new(0));
                for _ in 0..spawned {
                    let done = done.clone();
                    tokio::spawn(async move {
                        done.fetch_add(1, Ordering::Relaxed);
                    });
                }
                while done.load(Ordering::Relaxed) < spawned {
                    tokio::task::yield_now().await;
                }
                polls.load(Ordering::Relaxed)
            })
            .await
            .unwrap()
        });
        // Measured: about 13,000 polls of the busy pair (a few per spawned
        // task) with the shared queue checked every other tick; 1.8 million
        // with tokio's adaptive default.
        assert!(
            polls < 100_000,
            "the busy pair ran {polls} times before every spawned task ran once"
        );
    }
}
