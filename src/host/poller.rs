//! Poll delivery: the host takes events from the queue on its own thread.
//!
//! With `events.delivery: "poll"` a handle has no dispatcher thread. The host
//! watches [`EventPoller::fd`] and takes events with [`EventPoller::take`],
//! without blocking. The queue and its policy when full are the callback
//! path's: a server drops and counts (an overflow event comes first), the
//! client role waits for room. An event counts as handled when the host comes
//! back for more (or stops the handle): engine work queued behind events,
//! such as the client writing its cursor past them, runs only then, so a
//! crash while the host handles an event never loses it. Stopping does not
//! drop what waits: the events of the stop itself (sessions closed, the
//! client's "stopped") can be taken afterwards, as a callback host gets them.

use std::os::fd::RawFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Event;
use super::dispatcher::{EventQueue, Queued, Work, run_then};
use super::wake::WakeFd;
use crate::config::EventDelivery;
use crate::error::Error;

/// The host's side of a polled queue, for the whole life of a handle.
pub(crate) struct EventPoller {
    wake: Arc<WakeFd>,
    turn: Mutex<Turn>,
}

enum Turn {
    /// The handle has not started: nothing to take yet.
    Before,
    /// Started: the queue's receiving end.
    Taking {
        rx: Receiver<Queued>,
        queue: Arc<EventQueue>,
        /// An event taken but not yet handed over, behind an overflow notice.
        held: Option<Queued>,
        /// Work queued behind events already handed over, in order: it runs
        /// when the host comes back for more.
        deferred: Vec<Work>,
        /// The handle stopped: once the queue is empty, takes fail.
        stopped: bool,
    },
}

impl EventPoller {
    /// A poller whose descriptor exists from now on, before start.
    fn new() -> std::io::Result<EventPoller> {
        Ok(EventPoller {
            wake: Arc::new(WakeFd::new()?),
            turn: Mutex::new(Turn::Before),
        })
    }

    /// A poller when `delivery` asks for one.
    pub(crate) fn for_delivery(delivery: EventDelivery) -> Result<Option<Arc<EventPoller>>, Error> {
        match delivery {
            EventDelivery::Callback => Ok(None),
            EventDelivery::Poll => EventPoller::new()
                .map(|poller| Some(Arc::new(poller)))
                .map_err(|e| Error::Io(format!("could not create the event descriptor: {e}"))),
        }
    }

    /// A handle's poller, or the error for a handle that delivers by callback.
    pub(crate) fn of(poller: &Option<Arc<EventPoller>>) -> Result<&EventPoller, Error> {
        poller.as_deref().ok_or_else(|| {
            Error::InvalidArgument("events.delivery is \"callback\": events go to the listener, not to a poller".into())
        })
    }

    /// The descriptor to watch for reading; the handle owns it.
    pub(crate) fn fd(&self) -> RawFd {
        self.wake.fd()
    }

    pub(super) fn wake(&self) -> &Arc<WakeFd> {
        &self.wake
    }

    /// The handle started: events now come through `rx`.
    pub(super) fn begin(&self, rx: Receiver<Queued>, queue: Arc<EventQueue>) {
        *self.turn() = Turn::Taking {
            rx,
            queue,
            held: None,
            deferred: Vec::new(),
            stopped: false,
        };
    }

    /// Takes up to `max` waiting events, in order, without blocking; none when
    /// none waits. Fails with [`Error::NotStarted`] before start, and with
    /// [`Error::Stopped`] once the handle has stopped and nothing is left.
    pub(crate) fn take(&self, max: usize) -> Result<Vec<Event>, Error> {
        let mut turn = self.turn();
        let (rx, queue, held, deferred, stopped) = match &mut *turn {
            Turn::Before => return Err(Error::NotStarted),
            Turn::Taking {
                rx,
                queue,
                held,
                deferred,
                stopped,
            } => (rx, queue, held, deferred, *stopped),
        };
        // The host came back: what it took before is handled.
        deferred.drain(..).for_each(run_then);
        let mut events = Vec::new();
        let mut armed = false;
        while events.len() < max {
            let item = match held.take() {
                Some(item) => item,
                None => match rx.try_recv() {
                    Ok(item) => match queue.took() {
                        Some(overflow) => {
                            *held = Some(item);
                            Queued::Event(overflow)
                        }
                        None => item,
                    },
                    // After the queue, what a stop posted beside it.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected)
                        if let Some(item) = queue.take_after_close() =>
                    {
                        item
                    }
                    // Stopped, the descriptor stays readable: never drain it.
                    Err(TryRecvError::Empty) if !armed && !stopped => {
                        // Armed before the second look, so a post in between is seen or wakes.
                        self.wake.arm();
                        armed = true;
                        continue;
                    }
                    Err(_) => break,
                },
            };
            match item {
                // The events before it were handed over in an earlier call: handled.
                Queued::Then(work) if events.is_empty() => run_then(work),
                // Behind events of this call, not handled yet: on the next call.
                Queued::Then(work) => deferred.push(work),
                Queued::Event(event) => events.push(event),
                Queued::Log { level, target, message } => events.push(Event::Log { level, target, message }),
                Queued::Shutdown => break,
            }
        }
        if stopped && events.is_empty() && held.is_none() {
            return Err(Error::Stopped);
        }
        // A full batch taken after arming may have left posts behind that
        // found the descriptor unarmed: keep it readable for them too.
        if held.is_some() || !deferred.is_empty() || (armed && events.len() == max) {
            // Something waits for the next call (the arming above may have
            // drained the descriptor): keep it readable so the host comes back.
            self.wake.signal();
        }
        Ok(events)
    }

    /// The handle stopped: runs the engine work whose events the host has
    /// already taken (stopping counts as having handled them), and makes the
    /// descriptor readable for good. What is still queued can be taken; then
    /// takes fail with [`Error::Stopped`].
    pub(crate) fn finish(&self) {
        if let Turn::Taking { deferred, stopped, .. } = &mut *self.turn() {
            deferred.drain(..).for_each(run_then);
            *stopped = true;
        }
        self.wake.signal();
    }

    fn turn(&self) -> MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }
}
