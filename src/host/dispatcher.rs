//! The dispatcher thread: events and log records, in order, off the network.
//!
//! The server's network tasks never block on the host: they `post` into a
//! bounded queue and move on. When the queue is full the event is dropped and
//! counted, and the host receives [`Event::Overflow`] with the count before
//! its next event; the messages among them are in the store. The client role
//! has no store behind its events, so it waits for room instead
//! ([`EventQueue::post_waiting`]) and stops reading its socket meanwhile. A
//! log record that finds the queue full is dropped without counting: logs
//! are best effort, events are the contract.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use super::gate::CallbackGate;
use super::{Event, LogLevel};

enum Queued {
    Event(Event),
    Log {
        level: LogLevel,
        target: String,
        message: String,
    },
    /// Engine work that must follow the events queued before it, such as
    /// recording that the host processed them.
    Then(Box<dyn FnOnce() + Send>),
    Shutdown,
}

/// The sending side of the event queue, shared by every network task.
pub(crate) struct EventQueue {
    tx: SyncSender<Queued>,
    /// Dropped since the host was last told.
    dropped: AtomicU64,
    /// Dropped since start, for metrics.
    dropped_total: Counter,
    /// Signalled each time the dispatcher takes an item, making room.
    room: Notify,
}

impl EventQueue {
    /// Queues an event for the host without waiting.
    pub(crate) fn post(&self, event: Event) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Queued::Event(event)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.inc();
        }
    }

    /// Queues a log record for the host without waiting.
    pub(crate) fn post_log(&self, level: LogLevel, target: String, message: String) {
        let _ = self.tx.try_send(Queued::Log { level, target, message });
    }

    /// Queues an event, waiting for room when the queue is full: nothing is dropped.
    pub(crate) async fn post_waiting(&self, event: Event) {
        self.queue_waiting(Queued::Event(event)).await;
    }

    /// Queues `work` to run on the dispatcher thread once every event queued
    /// before it has been delivered, waiting for room as
    /// [`EventQueue::post_waiting`] does.
    pub(crate) async fn then_waiting(&self, work: impl FnOnce() + Send + 'static) {
        self.queue_waiting(Queued::Then(Box::new(work))).await;
    }

    async fn queue_waiting(&self, mut item: Queued) {
        loop {
            // Registered before trying, so a take between the two is not missed.
            let room = self.room.notified();
            match self.tx.try_send(item) {
                Err(TrySendError::Full(back)) => {
                    item = back;
                    room.await;
                }
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// The running dispatcher thread.
pub(crate) struct Dispatcher {
    queue: Arc<EventQueue>,
    thread: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts the thread, delivering through `gate`, with room for `capacity`
    /// queued items; every dropped event also counts in `dropped_total`.
    pub(crate) fn start(
        gate: Arc<CallbackGate>,
        capacity: usize,
        dropped_total: Counter,
    ) -> std::io::Result<Dispatcher> {
        let (tx, rx) = sync_channel(capacity);
        let queue = Arc::new(EventQueue {
            tx,
            dropped: AtomicU64::new(0),
            dropped_total,
            room: Notify::new(),
        });
        let thread = std::thread::Builder::new().name("imbed-events".into()).spawn({
            let queue = queue.clone();
            move || run(rx, &gate, &queue)
        })?;
        Ok(Dispatcher { queue, thread })
    }

    /// The queue to post into.
    pub(crate) fn queue(&self) -> &Arc<EventQueue> {
        &self.queue
    }

    /// Delivers everything queued so far, then ends the thread and joins it.
    pub(crate) fn shutdown(self) {
        // A blocking send: the dispatcher is draining, so room appears.
        let _ = self.queue.tx.send(Queued::Shutdown);
        let _ = self.thread.join();
    }
}

fn run(rx: Receiver<Queued>, gate: &CallbackGate, queue: &EventQueue) {
    for item in rx {
        queue.room.notify_waiters();
        let dropped = queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            deliver(gate, &Queued::Event(Event::Overflow { dropped }));
        }
        match item {
            Queued::Shutdown => break,
            // Engine work, not a callback: it runs whether or not there is a host.
            Queued::Then(work) => {
                let _ = catch_unwind(AssertUnwindSafe(work));
            }
            item => deliver(gate, &item),
        }
    }
}

fn deliver(gate: &CallbackGate, item: &Queued) {
    // A panic in the host's Rust code must not end the dispatcher; C callbacks cannot unwind.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        gate.call(|host| match item {
            Queued::Event(event) => host.on_event(event),
            Queued::Log { level, target, message } => host.on_log(*level, target, message),
            Queued::Then(_) | Queued::Shutdown => {}
        })
    }));
}
