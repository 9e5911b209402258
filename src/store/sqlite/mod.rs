//! The embedded SQLite store: one file, WAL, `synchronous=FULL`.
//!
//! All writes go to one writer thread ([`writer`]) that commits them in
//! groups; reads go to a small pool of reading connections ([`readers`]);
//! WAL checkpoints run on a thread of their own ([`checkpointer`]).
//! SQLite is blocking, so none of it runs on the network threads.

mod amending;
mod checkpointer;
mod files;
mod notices;
mod readers;
mod rows;
pub(crate) mod schema;
mod writer;

use std::collections::HashMap;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use self::readers::Readers;
use super::amend::Rules;
use super::jobs::{self, Job, queued_writes};
use super::{
    AppendDone, CollectedDone, CommitObserver, ConversationRange, ConversationSummary, FileRecord, FoundDone,
    GroupRecord, NewMessage, PushRequest, PushesDone, ReadDone, Retention, SearchPage, SearchScope, Store, StoreError,
    StoredMessage, SyncedPage, UploadDone, WriteDone,
};

/// `PRAGMA synchronous` value FULL: every commit is fsynced before it returns.
const SYNCHRONOUS_FULL: i64 = 2;

/// Messages in a SQLite file.
pub(crate) struct SqliteStore {
    jobs: Mutex<Option<Sender<Job>>>,
    stop_checkpoints: Mutex<Option<Sender<()>>>,
    /// The writer, the completion thread (which ends after it), the checkpointer.
    threads: Mutex<Vec<JoinHandle<()>>>,
    readers: Readers,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it, and
    /// starts the writer thread. Fails with a message naming the path when
    /// the file cannot be opened, is not an imbed database, or is newer.
    pub(crate) fn open(
        path: &str,
        retention: Retention,
        rules: Rules,
        commits: CommitObserver,
    ) -> Result<SqliteStore, StoreError> {
        let failed = |e: rusqlite::Error| StoreError(format!("{path}: {e}"));
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError(format!("cannot open the database: {e}")))?;
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
        // A deleted message's body must leave the file, not linger in freed space.
        conn.pragma_update(None, "secure_delete", true).map_err(failed)?;
        // Index pages stay in memory instead of being read back for every batch.
        conn.pragma_update(None, "cache_size", -65_536).map_err(failed)?;
        // Checkpoints run on their own thread (see checkpointer), not inside the writer's commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(failed)?;
        // A WAL that grew during a burst shrinks back to this when it restarts.
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)
            .map_err(failed)?;
        schema::migrate(&mut conn, path)?;
        // Before the first read, so nothing past its age is ever served.
        writer::prune_by_age(&conn, &retention);
        let could_not = |e: std::io::Error| StoreError(format!("could not start a store thread: {e}"));
        let (completed, completions) = channel();
        let completer = std::thread::Builder::new()
            .name("imbed-store-done".into())
            .spawn(move || jobs::complete(completions))
            .map_err(could_not)?;
        let (jobs, queue) = channel();
        let writer = std::thread::Builder::new()
            .name("imbed-store".into())
            .spawn(move || writer::run(conn, queue, completed, retention, rules, commits))
            .map_err(could_not)?;
        let (stop_checkpoints, stopped) = channel();
        let checkpoint_conn = Connection::open_with_flags(path, flags).map_err(failed)?;
        let checkpointer = std::thread::Builder::new()
            .name("imbed-checkpoint".into())
            .spawn(move || checkpointer::run(checkpoint_conn, stopped))
            .map_err(could_not)?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(jobs)),
            stop_checkpoints: Mutex::new(Some(stop_checkpoints)),
            threads: Mutex::new(vec![writer, completer, checkpointer]),
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
    queued_writes!();

    fn devices(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.readers.with(|conn| notices::devices(conn, user))
    }

    fn read_positions(&self, conv: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.readers.with(|conn| notices::read_positions(conn, conv))
    }

    fn unread(&self, user: &str) -> Result<u64, StoreError> {
        self.readers.with(|conn| notices::unread(conn, user))
    }

    fn pending_pushes(&self) -> Result<Vec<PushRequest>, StoreError> {
        self.readers.with(|conn| notices::pending_pushes(conn))
    }

    fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        self.readers.history(conv, before, limit, max_bytes)
    }

    fn search(
        &self,
        scope: SearchScope<'_>,
        terms: &[String],
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<SearchPage, StoreError> {
        self.readers.search(scope, terms, after, limit, max_bytes)
    }

    fn upload_usage(&self, user: &str) -> Result<u64, StoreError> {
        self.readers.upload_usage(user)
    }

    fn file(&self, file_id: &str, reader: Option<&str>) -> Result<Option<FileRecord>, StoreError> {
        self.readers.file(file_id, reader)
    }

    fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.readers.groups()
    }

    fn conversations(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.readers.conversations(user, after, limit)
    }

    fn sync(
        &self,
        user: &str,
        range: &ConversationRange,
        cursors: &HashMap<String, u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<SyncedPage, StoreError> {
        self.readers.sync(user, range, cursors, limit, max_bytes)
    }

    /// Lets the writer finish what is queued and report it, then joins the
    /// threads; a thread never joins itself (that is a deadlock, EDEADLK).
    fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.stop_checkpoints.lock().unwrap_or_else(|p| p.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let me = std::thread::current().id();
        for thread in threads.into_iter().filter(|t| t.thread().id() != me) {
            let _ = thread.join();
        }
    }
}

impl Drop for SqliteStore {
    /// Closes the store if nobody did: on a store thread itself that thread
    /// is left to end on its own.
    fn drop(&mut self) {
        self.close();
    }
}
