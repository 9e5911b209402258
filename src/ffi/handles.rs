//! Handles: registry keys that look like pointers to C.
//!
//! A C program may pass a freed handle, or free one twice. If handles were
//! pointers to our memory, either would be undefined behaviour. Instead a
//! handle's value is a number that is never reused, and every call looks it
//! up in this registry: a stale handle simply is not found.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use once_cell::sync::Lazy;

use super::boundary::FfiError;

/// A registry of live objects of type `T`, keyed by handle value.
pub(crate) struct Registry<T> {
    /// What its handles are, for messages: "server", "client".
    kind: &'static str,
    live: Lazy<RwLock<HashMap<usize, Arc<T>>>>,
    next: AtomicUsize,
}

impl<T> Registry<T> {
    /// An empty registry of `kind` handles, usable in a `static`.
    pub(crate) const fn new(kind: &'static str) -> Registry<T> {
        Registry {
            kind,
            live: Lazy::new(RwLock::default),
            next: AtomicUsize::new(1),
        }
    }

    /// Registers `value` and returns its new handle value (never 0, never reused).
    pub(crate) fn insert(&self, value: T) -> usize {
        // Spaced out so that a handle is never a small, plausible-looking integer.
        let key = self.next.fetch_add(1, Ordering::Relaxed) << 4;
        self.live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(value));
        key
    }

    /// The live object behind `handle`: NULL and stale handles are errors
    /// naming this registry's kind.
    pub(crate) fn get<H>(&self, handle: *const H) -> Result<Arc<T>, FfiError> {
        if handle.is_null() {
            return Err(FfiError::Null(self.kind));
        }
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&handle.addr())
            .cloned()
            .ok_or(FfiError::Handle(self.kind))
    }

    /// Unregisters `handle`, returning the object if it was live.
    pub(crate) fn remove<H>(&self, handle: *const H) -> Option<Arc<T>> {
        self.live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle.addr())
    }
}
