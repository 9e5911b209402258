//! What the server and client handles share at the C ABI: setting the
//! listener and freeing, each with one body for both.

use std::sync::Arc;

use super::boundary::{FfiError, guard};
use super::handles::Registry;
use super::listener::{ListenerHost, imbed_listener};
use super::status::imbed_status;
use crate::client::Client;
use crate::error::Error;
use crate::host::Host;
use crate::server::Server;

/// A server or a client, as the shared exports use it.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Sets the host; only before start.
    fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error>;
    /// Stops, waiting until no callback runs or will run.
    fn stop(&self) -> Result<(), Error>;
}

impl Engine for Server {
    fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error> {
        Server::set_host(self, host)
    }
    fn stop(&self) -> Result<(), Error> {
        Server::stop(self)
    }
}

impl Engine for Client {
    fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error> {
        Client::set_host(self, host)
    }
    fn stop(&self) -> Result<(), Error> {
        Client::stop(self)
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
