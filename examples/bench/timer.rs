//! A timer precise to microseconds for open-loop sending. tokio's timers
//! fire on a millisecond wheel, which would make sends up to a millisecond
//! late and, since latency counts from the intended send time, add that to
//! every sample; a timerfd fires within microseconds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use tokio::io::unix::AsyncFd;

/// A one-shot timer on `CLOCK_MONOTONIC`, the clock of [`Instant`].
pub struct Timer {
    fd: AsyncFd<OwnedFd>,
    armed_for: Option<Instant>,
}

impl Timer {
    /// A timer that is not armed.
    pub fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create has no pointer arguments; a valid result is
        // a new descriptor that nothing else owns.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nothing else; the
        // AsyncFd owns it from here on and closes it only when dropped.
        let fd = unsafe { AsyncFd::register(OwnedFd::from_raw_fd(fd))? };
        Ok(Timer { fd, armed_for: None })
    }

    /// Resolves at `deadline` or soon after, and possibly earlier when a
    /// previous wait was cancelled: callers check the time. Waiting again
    /// for the same deadline does not re-arm the timer, so cancelling and
    /// restarting the wait (as in `select!`) costs no system call.
    pub async fn sleep_until(&mut self, deadline: Instant) -> io::Result<()> {
        if self.armed_for != Some(deadline) {
            let delay = deadline.saturating_duration_since(Instant::now());
            if delay.is_zero() {
                return Ok(());
            }
            let spec = libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec {
                    tv_sec: delay.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(delay.subsec_nanos() as i32),
                },
            };
            // SAFETY: the descriptor is open; spec is a valid itimerspec and
            // the old value is not asked for.
            if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
                return Err(io::Error::last_os_error());
            }
            self.armed_for = Some(deadline);
        }
        loop {
            let mut ready = self.fd.readable().await?;
            let expired = ready.try_io(|fd| {
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into an 8-byte buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), expirations.len()) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
            });
            if let Ok(result) = expired {
                self.armed_for = None;
                return result;
            }
        }
    }
}
