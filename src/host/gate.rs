//! The one door through which the engine calls the host.
//!
//! Every callback passes the gate under a read lock; `stop` closes it under
//! the write lock. Closing therefore waits for callbacks in progress, and no
//! callback starts after it: that is how `stop` keeps its promise that no
//! callback runs after it returns. The gate also marks the calling thread as
//! "inside a callback of server N", so that a host calling `stop` from a
//! callback gets an error instead of waiting for itself forever.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::Host;

thread_local! {
    static IN_CALLBACK_OF: Cell<Option<u64>> = const { Cell::new(None) };
}

static NEXT_OWNER_ID: AtomicU64 = AtomicU64::new(1);

/// A number for a new server or client, unique in the process: the gate
/// tells callbacks of different owners apart by it.
pub(crate) fn next_owner_id() -> u64 {
    NEXT_OWNER_ID.fetch_add(1, Ordering::Relaxed)
}

/// Whether the current thread is inside a callback of server `server_id`.
pub(crate) fn in_callback_of(server_id: u64) -> bool {
    IN_CALLBACK_OF.with(|c| c.get() == Some(server_id))
}

/// The host of one server, behind a read-write lock.
pub(crate) struct CallbackGate {
    server_id: u64,
    host: RwLock<Option<Arc<dyn Host>>>,
}

impl CallbackGate {
    /// A gate for `server_id`, open, leading to `host`.
    pub(crate) fn new(server_id: u64, host: Option<Arc<dyn Host>>) -> CallbackGate {
        CallbackGate {
            server_id,
            host: RwLock::new(host),
        }
    }

    /// Calls `f` with the host, unless the gate is closed or there is no host.
    pub(crate) fn call<R>(&self, f: impl FnOnce(&dyn Host) -> R) -> Option<R> {
        let guard = self.host.read().unwrap_or_else(|p| p.into_inner());
        let host = guard.as_ref()?;
        let outer = IN_CALLBACK_OF.with(|c| c.replace(Some(self.server_id)));
        let result = f(host.as_ref());
        IN_CALLBACK_OF.with(|c| c.set(outer));
        Some(result)
    }

    /// Closes the gate, waiting for callbacks in progress, and hands back the
    /// host so the caller decides on which thread its last reference drops.
    pub(crate) fn close(&self) -> Option<Arc<dyn Host>> {
        self.host.write().unwrap_or_else(|p| p.into_inner()).take()
    }
}
