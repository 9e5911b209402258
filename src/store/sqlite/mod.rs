//! The embedded SQLite store: one file, WAL, `synchronous=FULL`.
//!
//! All writes go to one writer thread ([`writer`]) that commits them in
//! groups; reads go to a small pool of reading connections ([`readers`]).
//! SQLite is blocking, so none of it runs on the network threads.

mod readers;
mod rows;
pub mod schema;
mod writer;

use std::collections::HashMap;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use self::readers::Readers;
use self::writer::Job;
use super::{AppendDone, NewMessage, ReadDone, Retention, Store, StoreError, StoredMessage, SyncedConversation};

/// `PRAGMA synchronous` value FULL: every commit is fsynced before it returns.
const SYNCHRONOUS_FULL: i64 = 2;

/// Messages in a SQLite file.
pub struct SqliteStore {
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Readers,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it, and
    /// starts the writer thread. Fails with a message naming the path when
    /// the file cannot be opened, is not an imbed database, or is newer.
    pub fn open(path: &str, retention: Retention) -> Result<SqliteStore, StoreError> {
        let failed = |e: rusqlite::Error| StoreError(format!("{path}: {e}"));
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|e| StoreError(format!("cannot open {path}: {e}")))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(failed)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(failed)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError(format!("{path}: could not switch to WAL mode (got {mode})")));
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(failed)?;
        // Read back: an ack promises durability, so a setting that did not take is an error.
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(failed)?;
        if synchronous != SYNCHRONOUS_FULL {
            return Err(StoreError(format!("{path}: synchronous is {synchronous}, not FULL")));
        }
        schema::migrate(&mut conn, path)?;
        let (jobs, queue) = channel();
        let writer = std::thread::Builder::new()
            .name("imbed-store".into())
            .spawn(move || writer::run(conn, queue, retention))
            .map_err(|e| StoreError(format!("could not start the store thread: {e}")))?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(Some(writer)),
            readers: Readers::new(path),
        })
    }

    fn submit(&self, job: Job) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let unsent = match jobs.as_ref() {
            Some(jobs) => jobs.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        drop(jobs);
        if let Some(job) = unsent {
            job.fail(StoreError("the store is closed".into()));
        }
    }
}

impl Store for SqliteStore {
    fn append(&self, message: NewMessage, done: AppendDone) {
        self.submit(Job::Append(message, done));
    }

    fn mark_read(&self, user: Arc<str>, conv: String, seq: u64, done: ReadDone) {
        self.submit(Job::MarkRead { user, conv, seq, done });
    }

    fn history(&self, conv: &str, before: Option<u64>, limit: usize) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        self.readers.history(conv, before, limit)
    }

    fn sync(
        &self,
        user: &str,
        cursors: &HashMap<String, u64>,
        limit: usize,
    ) -> Result<Vec<SyncedConversation>, StoreError> {
        self.readers.sync(user, cursors, limit)
    }
}

impl Drop for SqliteStore {
    /// Lets the writer finish what is queued, then joins it.
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}
