//! The dispatcher: events and log records, in order, off the network.
//!
//! By default a thread of the engine's delivers them to the host's callbacks;
//! a handle configured with `events.delivery: "poll"` has no such thread, and
//! the host takes them from the same queue itself ([`super::poller`]).
//! The server's network tasks never block on the host: they `post` into a
//! bounded queue and move on. When the queue is full the event is dropped and
//! counted, and the host receives [`Event::Overflow`] with the count before
//! its next event; the messages among them are in the store. The client role
//! has no store behind its events, so it waits for room instead
//! ([`EventQueue::post_waiting`]) and stops reading its socket meanwhile. A
//! log record that finds the queue full is dropped without counting: logs
//! are best effort, events are the contract.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::Notify;

use super::gate::CallbackGate;
use super::poller::EventPoller;
use super::wake::WakeFd;
use super::{Event, LogLevel};
use crate::error::Error;

/// What a server does with each dropped event: count it in its metrics.
pub(crate) type DropCounter = Box<dyn Fn() + Send + Sync>;

/// Engine work queued behind events.
pub(super) type Work = Box<dyn FnOnce() + Send>;

pub(super) enum Queued {
    Event(Event),
    Log {
        level: LogLevel,
        target: String,
        message: String,
    },
    /// Engine work that must follow the events queued before it, such as
    /// recording that the host processed them.
    Then(Work),
    Shutdown,
}

/// The sending side of the event queue, shared by every network task.
pub(crate) struct EventQueue {
    tx: SyncSender<Queued>,
    /// Dropped since the host was last told.
    dropped: AtomicU64,
    /// Told of each drop, for metrics.
    on_drop: DropCounter,
    /// Signalled each time the dispatcher takes an item, making room.
    room: Notify,
    /// The polling host's wake-up descriptor, in poll delivery.
    wake: Option<Arc<WakeFd>>,
    /// Poll delivery, stopping: the host is inside `stop` and takes nothing,
    /// so the last waiting posts (the client's "stopped") go to `after_close`
    /// instead of waiting for room that cannot come.
    closing: AtomicBool,
    /// What was posted once `closing`, taken after the queue itself.
    after_close: Mutex<VecDeque<Queued>>,
}

impl EventQueue {
    /// Queues an event for the host without waiting.
    pub(crate) fn post(&self, event: Event) {
        match self.tx.try_send(Queued::Event(event)) {
            Ok(()) => self.queued(),
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                (self.on_drop)();
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Queues a log record for the host without waiting.
    pub(crate) fn post_log(&self, level: LogLevel, target: String, message: String) {
        if self.tx.try_send(Queued::Log { level, target, message }).is_ok() {
            self.queued();
        }
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
            if self.closing.load(Ordering::SeqCst) {
                self.after_close
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(item);
                return self.queued();
            }
            match self.tx.try_send(item) {
                Err(TrySendError::Full(back)) => {
                    item = back;
                    room.await;
                }
                Ok(()) => return self.queued(),
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn queued(&self) {
        if let Some(wake) = &self.wake {
            wake.notify();
        }
    }

    /// Poll delivery: the handle is stopping while its host cannot take
    /// events; posters waiting for room stop waiting (see `closing`).
    pub(super) fn close_for_stop(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.room.notify_waiters();
    }

    /// What was posted after [`EventQueue::close_for_stop`], oldest first.
    pub(super) fn take_after_close(&self) -> Option<Queued> {
        self.after_close.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    /// Called by whoever takes an item from the queue: wakes posters waiting
    /// for room, and gives the overflow event the host must see first, if
    /// events were dropped since it last saw one.
    pub(super) fn took(&self) -> Option<Event> {
        self.room.notify_waiters();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        (dropped > 0).then_some(Event::Overflow { dropped })
    }
}

/// The running dispatcher: its queue, and who takes from it.
pub(crate) struct Dispatcher {
    queue: Arc<EventQueue>,
    taker: Taker,
}

enum Taker {
    /// The engine's thread, calling the host's callbacks.
    Thread(JoinHandle<()>),
    /// The host itself, through the poller.
    Host(Arc<EventPoller>),
}

impl Dispatcher {
    /// Starts the thread, delivering through `gate`, with room for `capacity`
    /// queued items; `on_drop` is told of every dropped event.
    fn start(gate: Arc<CallbackGate>, capacity: usize, on_drop: DropCounter) -> std::io::Result<Dispatcher> {
        let (queue, rx) = EventQueue::new(capacity, on_drop, None);
        let thread = std::thread::Builder::new().name("imbed-events".into()).spawn({
            let queue = queue.clone();
            move || run(rx, &gate, &queue)
        })?;
        Ok(Dispatcher {
            queue,
            taker: Taker::Thread(thread),
        })
    }

    /// The dispatcher a handle's delivery asks for: polled through `poller`
    /// when there is one, else a thread calling `gate`.
    pub(crate) fn for_host(
        gate: Arc<CallbackGate>,
        poller: Option<&Arc<EventPoller>>,
        capacity: usize,
        on_drop: DropCounter,
    ) -> Result<Dispatcher, Error> {
        match poller {
            Some(poller) => Ok(Dispatcher::polled(poller.clone(), capacity, on_drop)),
            None => Dispatcher::start(gate, capacity, on_drop)
                .map_err(|e| Error::Io(format!("could not start the event thread: {e}"))),
        }
    }

    /// A queue the host takes from through `poller`, without a thread; as
    /// [`Dispatcher::start`] otherwise.
    fn polled(poller: Arc<EventPoller>, capacity: usize, on_drop: DropCounter) -> Dispatcher {
        let (queue, rx) = EventQueue::new(capacity, on_drop, Some(poller.wake().clone()));
        poller.begin(rx, queue.clone());
        Dispatcher {
            queue,
            taker: Taker::Host(poller),
        }
    }

    /// The queue to post into.
    pub(crate) fn queue(&self) -> &Arc<EventQueue> {
        &self.queue
    }

    /// Poll delivery: lets the last events of a stop be queued while the
    /// host, inside `stop`, takes none. Callbacks need nothing: their
    /// thread keeps taking.
    pub(crate) fn stopping(&self) {
        if let Taker::Host(_) = self.taker {
            self.queue.close_for_stop();
        }
    }

    /// With callbacks: delivers everything queued so far, then ends the
    /// thread and joins it. Polled: ends the poller's turn (see
    /// [`EventPoller::finish`]).
    pub(crate) fn shutdown(self) {
        match self.taker {
            Taker::Thread(thread) => {
                // A blocking send: the dispatcher is draining, so room appears.
                let _ = self.queue.tx.send(Queued::Shutdown);
                let _ = thread.join();
            }
            Taker::Host(poller) => poller.finish(),
        }
    }
}

impl EventQueue {
    fn new(capacity: usize, on_drop: DropCounter, wake: Option<Arc<WakeFd>>) -> (Arc<EventQueue>, Receiver<Queued>) {
        let (tx, rx) = sync_channel(capacity);
        let queue = Arc::new(EventQueue {
            tx,
            dropped: AtomicU64::new(0),
            on_drop,
            room: Notify::new(),
            wake,
            closing: AtomicBool::new(false),
            after_close: Mutex::default(),
        });
        (queue, rx)
    }
}

/// Runs engine work queued behind events; a panic in it must not end the taker.
pub(super) fn run_then(work: Work) {
    let _ = catch_unwind(AssertUnwindSafe(work));
}

fn run(rx: Receiver<Queued>, gate: &CallbackGate, queue: &EventQueue) {
    for item in rx {
        if let Some(overflow) = queue.took() {
            deliver(gate, &Queued::Event(overflow));
        }
        match item {
            Queued::Shutdown => break,
            // Engine work, not a callback: it runs whether or not there is a host.
            Queued::Then(work) => run_then(work),
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
