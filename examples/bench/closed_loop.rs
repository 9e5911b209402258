//! Closed-loop load on one connection: keep a window of sends in flight,
//! send again when one is acknowledged. The direct and room scenarios differ
//! only in what they send and what they count, their [`Role`].

use std::time::Instant;

use crate::phases::Phases;
use crate::tally::{Closed, Tally};
use crate::wire::{Connection, Frame};

/// What one connection sends and counts.
pub trait Role {
    /// The next frame to send, sent at `now`.
    fn next_send(&mut self, now: Instant) -> &str;
    /// Counts one text frame from the server, read at `now`; true when it
    /// acknowledged a send, which frees a place in the window.
    fn on_frame(&mut self, text: &[u8], now: Instant) -> bool;
    /// What was counted.
    fn into_tally(self) -> Tally;
}

/// Runs `role` on `connection` from `phases.start` to `phases.end` with
/// `window` sends in flight, and returns its tally.
pub async fn run(mut connection: Connection, mut role: impl Role, window: usize, phases: Phases) -> Tally {
    let mut unexpected = 0;
    let closed = keep_window(&mut connection, &mut role, window, &phases, &mut unexpected)
        .await
        .is_err();
    let mut tally = role.into_tally();
    tally.closed_early += u64::from(closed);
    tally.errors += unexpected;
    tally
}

async fn keep_window(
    connection: &mut Connection,
    role: &mut impl Role,
    window: usize,
    phases: &Phases,
    unexpected: &mut u64,
) -> Result<(), Closed> {
    tokio::time::sleep_until(phases.start.into()).await;
    let now = Instant::now();
    for _ in 0..window {
        connection.writer.text(role.next_send(now));
    }
    connection.writer.flush().await?;
    while let Ok(filled) = tokio::time::timeout_at(phases.end.into(), connection.reader.fill()).await {
        filled?;
        // Everything one read brought in is handled before the sends it
        // released go out, in one write.
        let now = Instant::now();
        while let Some(frame) = connection.reader.next_frame() {
            match frame {
                Frame::Text(text) => {
                    if role.on_frame(text, now) {
                        connection.writer.text(role.next_send(now));
                    }
                }
                Frame::Ping(payload) => connection.writer.pong(payload),
                Frame::Close => return Err(Closed),
                Frame::Unexpected => *unexpected += 1,
                Frame::Other => {}
            }
        }
        connection.writer.flush().await?;
    }
    Ok(())
}
