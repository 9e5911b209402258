//! The file descriptor a polling host waits on: readable while events may wait.
//!
//! An eventfd on Linux (and Android), a pipe elsewhere. Posting writes to it
//! only when the poller found the queue empty and "armed" it, so a busy queue
//! costs no system call per event; the poller drains it when it finds the
//! queue empty, so a host that takes every event sees it readable again only
//! for new ones. A spurious wake-up is possible (the host polls and finds
//! nothing); a lost one is not.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The wake-up descriptor of one handle.
pub(crate) struct WakeFd {
    /// The end the host polls.
    read: OwnedFd,
    /// The end the engine writes; the same descriptor for an eventfd.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    write: OwnedFd,
    /// Set by the poller when it found the queue empty: the next post writes.
    armed: AtomicBool,
}

impl WakeFd {
    /// A new descriptor, not readable, armed.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn new() -> io::Result<WakeFd> {
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(WakeFd {
            // SAFETY: a fresh descriptor that nothing else owns.
            read: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: AtomicBool::new(true),
        })
    }

    /// A new descriptor, not readable, armed.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn new() -> io::Result<WakeFd> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors; the result is checked.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            // SAFETY: plain system calls on a descriptor we own.
            unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(WakeFd {
            read,
            write,
            armed: AtomicBool::new(true),
        })
    }

    /// The descriptor for the host's `poll`/`epoll`/run loop: watch it for reading.
    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Something was queued: wakes the host if it is waiting for the queue.
    pub(crate) fn notify(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.signal();
        }
    }

    /// Makes the descriptor readable, armed or not; it stays readable until drained.
    pub(crate) fn signal(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let (fd, bytes) = (self.read.as_raw_fd(), 1u64.to_ne_bytes());
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let (fd, bytes) = (self.write.as_raw_fd(), [1u8]);
        // SAFETY: writes from a live buffer. A full eventfd counter or pipe
        // (EAGAIN) is already readable, which is all a write is for.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }

    /// The poller found the queue empty: makes the descriptor unreadable and
    /// arms it, so the next post wakes the host. The caller looks at the queue
    /// once more afterwards, to catch a post that came before the arming.
    pub(crate) fn arm(&self) {
        let mut sink = [0u8; 64];
        // SAFETY: reads into a live buffer from a non-blocking descriptor we own;
        // an eventfd is emptied by one read of 8 bytes, a pipe by reading to EAGAIN.
        while unsafe { libc::read(self.read.as_raw_fd(), sink.as_mut_ptr().cast(), sink.len()) } > 0 {}
        self.armed.store(true, Ordering::SeqCst);
    }
}
