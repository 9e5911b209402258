//! Pings and idle timeouts for every session, from one task.
//!
//! Each session used to keep timers of its own: its writer an interval to
//! ping, its reader a timeout around every read. One task now ticks for the
//! whole server. At each tick it closes the sessions it has not heard from
//! for the idle timeout, and asks a slice of them for a ping, so that each
//! session is pinged once per interval and a tick's pings are a slice of
//! all, not all at once. A session holds no timer (its writer's interval
//! was a 128-byte allocation and the reader's timeout 112 bytes of its
//! task), and a read registers none (a clock read and a timer-wheel entry
//! per wait for the peer).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::core::Core;
use crate::config::Limits;
use crate::protocol::close;
use crate::router::SessionHandle;

/// Ticks per ping interval or idle timeout, whichever is shorter: a silent
/// session is closed at most a quarter of that after its idle timeout.
const TICKS_PER_PERIOD: u32 = 4;

/// What a session's reader stamps it with while it waits for a request's
/// answer instead of for the peer: such a session is not idle, whatever
/// the peer does meanwhile.
const ANSWERING: u32 = u32::MAX;

/// The server's clock in ticks, and what each tick does.
pub(crate) struct Keepalive {
    /// Ticks since the server started; wraps after 2^32.
    tick: AtomicU32,
    /// How long a tick is.
    every: Duration,
    /// Ticks between two pings of a session.
    ping_ticks: u32,
    /// Ticks without a frame after which a session is closed.
    idle_ticks: u32,
}

/// What a tick does to one session.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    Nothing,
    Ping,
    Close,
}

impl Keepalive {
    /// The clock for `limits`' ping interval and idle timeout.
    pub(crate) fn new(limits: &Limits) -> Keepalive {
        let (ping, idle) = (limits.ping_interval(), limits.idle_timeout());
        let every = (ping.min(idle) / TICKS_PER_PERIOD).max(Duration::from_millis(1));
        let ticks = |period: Duration| (period.as_nanos() / every.as_nanos()).clamp(1, u32::MAX as u128 / 2) as u32;
        Keepalive {
            tick: AtomicU32::new(0),
            every,
            ping_ticks: ticks(ping),
            idle_ticks: ticks(idle),
        }
    }

    /// Stamps `session` as heard from now.
    pub(crate) fn heard(&self, session: &SessionHandle) {
        let now = self.tick.load(Ordering::Relaxed);
        // Read first: a busy session's stamp is written once per tick, not
        // once per frame.
        if session.last_heard.load(Ordering::Relaxed) != now {
            session.last_heard.store(now, Ordering::Relaxed);
        }
    }

    /// Stamps `session` as waiting for a request's answer, not for its peer.
    pub(crate) fn answering(&self, session: &SessionHandle) {
        session.last_heard.store(ANSWERING, Ordering::Relaxed);
    }

    /// What tick `tick` does to the session `id`, last heard from at tick
    /// `last_heard`.
    fn due(&self, tick: u32, id: u64, last_heard: u32) -> Due {
        if last_heard != ANSWERING && tick.wrapping_sub(last_heard) > self.idle_ticks {
            Due::Close
        } else if id % u64::from(self.ping_ticks) == u64::from(tick % self.ping_ticks) {
            Due::Ping
        } else {
            Due::Nothing
        }
    }
}

/// Ticks until the server stops: pings, and closes idle sessions.
pub(crate) async fn run(core: Arc<Core>) {
    let keepalive = &core.keepalive;
    let mut stopping = core.stopping.clone();
    let mut ticks = tokio::time::interval(keepalive.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        let tick = keepalive.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        core.router.for_each_session(&mut |session| match keepalive.due(
            tick,
            session.id,
            session.last_heard.load(Ordering::Relaxed),
        ) {
            Due::Close => session.outbox.close(close::NORMAL, "idle timeout"),
            Due::Ping => session.outbox.ping(),
            Due::Nothing => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keepalive(ping_ms: u64, idle_ms: u64) -> Keepalive {
        Keepalive::new(&Limits {
            ping_interval_ms: ping_ms,
            idle_timeout_ms: idle_ms,
            ..Limits::default()
        })
    }

    #[test]
    fn a_session_is_closed_once_silent_for_the_idle_timeout_unless_it_waits_for_an_answer() {
        // Ticks of 25 ms; 16 of them make the idle timeout.
        let k = keepalive(100, 400);
        assert_eq!(
            (k.every, k.ping_ticks, k.idle_ticks),
            (Duration::from_millis(25), 4, 16)
        );
        assert_ne!(k.due(16, 1, 0), Due::Close);
        assert_eq!(k.due(17, 1, 0), Due::Close);
        assert_ne!(k.due(17, 1, 1), Due::Close);
        assert_ne!(k.due(1_000, 1, ANSWERING), Due::Close);
        // Across the clock's wrap.
        assert_ne!(k.due(5, 1, u32::MAX - 5), Due::Close);
        assert_eq!(k.due(20, 1, u32::MAX - 5), Due::Close);
    }

    #[test]
    fn each_session_is_pinged_once_per_interval_and_a_tick_pings_a_slice() {
        let k = keepalive(20_000, 60_000);
        assert_eq!((k.every, k.ping_ticks, k.idle_ticks), (Duration::from_secs(5), 4, 12));
        for id in 0..8u64 {
            let pinged: Vec<u32> = (1..=8).filter(|&tick| k.due(tick, id, tick) == Due::Ping).collect();
            assert_eq!(pinged.len(), 2, "session {id}");
            assert_eq!(pinged[1] - pinged[0], 4, "session {id}");
        }
        let in_one_tick = (0..400u64).filter(|&id| k.due(7, id, 7) == Due::Ping).count();
        assert_eq!(in_one_tick, 100);
    }

    #[test]
    fn a_stamp_is_written_only_when_the_tick_moved() {
        let k = keepalive(100, 400);
        let session = SessionHandle::new(1, "a".into(), "d".into(), 1 << 10);
        k.answering(&session);
        k.heard(&session);
        assert_eq!(session.last_heard.load(Ordering::Relaxed), 0);
        k.tick.store(3, Ordering::Relaxed);
        k.heard(&session);
        assert_eq!(session.last_heard.load(Ordering::Relaxed), 3);
    }
}
