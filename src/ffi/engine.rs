//! What the server and client handles share at the C ABI: setting the
//! listener, polling for events and freeing, each with one body for both.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::Arc;

use super::boundary::{FfiError, guard, out_ptr};
use super::event::{OwnedEvent, imbed_event};
use super::handles::Registry;
use super::listener::{ListenerHost, imbed_listener};
use super::status::imbed_status;
#[cfg(feature = "client")]
use crate::client::Client;
use crate::error::Error;
use crate::host::{Event, Host};
#[cfg(feature = "server")]
use crate::server::Server;

/// A server or a client, as the shared exports use it.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Sets the host; only before start.
    fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error>;
    /// Stops, waiting until no callback runs or will run.
    fn stop(&self) -> Result<(), Error>;
    /// Poll delivery: the descriptor to watch.
    fn event_fd(&self) -> Result<RawFd, Error>;
    /// Poll delivery: up to `max` waiting events.
    fn poll_events(&self, max: usize) -> Result<Vec<Event>, Error>;
}

#[cfg(feature = "server")]
impl Engine for Server {
    fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error> {
        Server::set_host(self, host)
    }
    fn stop(&self) -> Result<(), Error> {
        Server::stop(self)
    }
    fn event_fd(&self) -> Result<RawFd, Error> {
        Server::event_fd(self)
    }
    fn poll_events(&self, max: usize) -> Result<Vec<Event>, Error> {
        Server::poll_events(self, max)
    }
}

#[cfg(feature = "client")]
impl Engine for Client {
    fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error> {
        Client::set_host(self, host)
    }
    fn stop(&self) -> Result<(), Error> {
        Client::stop(self)
    }
    fn event_fd(&self) -> Result<RawFd, Error> {
        Client::event_fd(self)
    }
    fn poll_events(&self, max: usize) -> Result<Vec<Event>, Error> {
        Client::poll_events(self, max)
    }
}

/// The body of `imbed_server_set_listener` and `imbed_client_set_listener`.
/// If it fails, nothing of `listener` is kept or called.
///
/// # Safety
/// `listener` is NULL or points to a readable `imbed_listener`.
pub(crate) unsafe fn set_listener<T: Engine, H>(
    registry: &Registry<T>,
    handle: *const H,
    listener: *const imbed_listener,
) -> imbed_status {
    guard(|| {
        let engine = registry.get(handle)?;
        // SAFETY: readable when non-NULL, per the caller's contract.
        let listener = unsafe { listener.as_ref() }.ok_or(FfiError::Null("listener"))?;
        let host = Arc::new(ListenerHost::new(listener));
        engine.set_host(host.clone()).inspect_err(|_| host.disarm())?;
        Ok(())
    })
}

/// The body of `imbed_server_free` and `imbed_client_free`: unregisters the
/// handle and stops the engine. From inside one of its callbacks the stop
/// cannot wait for itself, so it finishes on a thread of its own.
pub(crate) fn free<T: Engine, H>(registry: &Registry<T>, handle: *const H) {
    guard(|| {
        let Some(engine) = registry.remove(handle) else {
            return Ok(());
        };
        if let Err(Error::InCallback) = engine.stop() {
            std::thread::Builder::new()
                .name("imbed-free".into())
                .spawn(move || engine.stop())
                .map_err(|e| Error::Io(format!("could not start the stopping thread: {e}")))?;
        }
        Ok(())
    });
}

/// The body of `imbed_server_event_fd` and `imbed_client_event_fd`.
///
/// # Safety
/// `fd_out` is NULL or writable.
pub(crate) unsafe fn event_fd<T: Engine, H>(
    registry: &Registry<T>,
    handle: *const H,
    fd_out: *mut c_int,
) -> imbed_status {
    guard(|| {
        let engine = registry.get(handle)?;
        // SAFETY: per the caller's contract.
        let out = unsafe { out_ptr(fd_out, "fd_out") }?;
        *out = engine.event_fd()?;
        Ok(())
    })
}

/// The body of `imbed_server_poll_event` and `imbed_client_poll_event`:
/// one event, or NULL when none waits.
///
/// # Safety
/// `event_out` is NULL or writable.
pub(crate) unsafe fn poll_event<T: Engine, H>(
    registry: &Registry<T>,
    handle: *const H,
    event_out: *mut *mut imbed_event,
) -> imbed_status {
    guard(|| {
        let engine = registry.get(handle)?;
        // SAFETY: per the caller's contract.
        let out = unsafe { out_ptr(event_out, "event_out") }?;
        *out = engine
            .poll_events(1)?
            .first()
            .map_or(ptr::null_mut(), |event| OwnedEvent::new(event).into_raw());
        Ok(())
    })
}

/// The body of `imbed_server_next_events` and `imbed_client_next_events`.
///
/// # Safety
/// `events` has room for `max` pointers (it may be NULL when `max` is 0);
/// `count_out` is NULL or writable.
pub(crate) unsafe fn next_events<T: Engine, H>(
    registry: &Registry<T>,
    handle: *const H,
    events: *mut *mut imbed_event,
    max: usize,
    count_out: *mut usize,
) -> imbed_status {
    guard(|| {
        let engine = registry.get(handle)?;
        // SAFETY: per the caller's contract.
        let count = unsafe { out_ptr(count_out, "count_out") }?;
        if events.is_null() && max > 0 {
            return Err(FfiError::Null("events"));
        }
        let taken = engine.poll_events(max)?;
        for (i, event) in taken.iter().enumerate() {
            // SAFETY: `i < max`, and `events` has room for `max` pointers.
            unsafe { events.add(i).write(OwnedEvent::new(event).into_raw()) };
        }
        *count = taken.len();
        Ok(())
    })
}
