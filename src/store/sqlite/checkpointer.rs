//! WAL checkpoints off the commit path.
//!
//! By default SQLite checkpoints inside whichever commit crosses 1000 WAL
//! pages, stalling that commit (and every ack waiting on it) while pages are
//! copied into the database and fsynced. Here the writer's auto-checkpoint is
//! off and this thread runs PASSIVE checkpoints, which never block the writer,
//! on a timer; a TRUNCATE checkpoint at shutdown leaves a small WAL behind.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// How often a checkpoint runs.
const EVERY: Duration = Duration::from_millis(250);

/// Checkpoints until `stop` says so or is dropped.
pub(crate) fn run(conn: Connection, stop: Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
}
