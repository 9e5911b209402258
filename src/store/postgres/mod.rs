//! The PostgreSQL store: the one source of truth (and of seq) for several
//! nodes sharing a database, or for one node that wants a database server.
//!
//! The store runs on a small tokio runtime of its own, so it neither
//! depends on nor blocks the server's. Writers commit every write in groups
//! ([`writer`]), each for its share of the conversations; reads go to a
//! pool of connections ([`readers`]).
//! Both come from one deadpool pool, which replaces a broken connection on
//! its next use: after PostgreSQL restarts, the first batch finds a new
//! connection and health recovers on its own.

mod amending;
mod appending;
mod notices;
mod readers;
mod rows;
mod schema;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::amend::Rules;
use super::jobs::{self, Job, queued_writes};
use super::{
    AppendDone, CollectedDone, CommitObserver, ConversationRange, ConversationSummary, FileRecord, FoundDone,
    GroupRecord, NewMessage, PushRequest, PushesDone, ReadDone, Retention, SearchPage, SearchScope, Store, StoreError,
    StoreHealth, StoredMessage, SyncedPage, UploadDone, WriteDone,
};
use writer::{Failure, Writer};

/// Connections in the pool: the writers' and the readers'.
const POOL_SIZE: usize = 8;

/// Writers committing at once, each with its own connection and its own
/// share of the conversations: one PostgreSQL backend executes one
/// statement at a time, and a single writer left the database server's
/// other cores idle (docs/BENCHMARKS.md, "Cluster").
const WRITERS: usize = 2;

/// How long a connection attempt, or a wait for a free connection, may take
/// before the operation fails with an error instead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the database answers, as the writer last found.
#[derive(Default)]
pub(super) struct Health {
    failing: Mutex<Option<String>>,
    errors: AtomicU64,
}

impl Health {
    /// The database answered.
    pub(super) fn ok(&self) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The database could not be reached: `why`.
    pub(super) fn failed(&self, why: String) {
        self.errored();
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// A write failed, the database still answering.
    pub(super) fn errored(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Messages in a PostgreSQL database.
pub(crate) struct PostgresStore {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// Each writer's queue.
    jobs: Mutex<Option<Vec<UnboundedSender<Job>>>>,
    /// The writers, then the completion thread, which ends after them.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Which writer a conversation's jobs go to.
    spread: ahash::RandomState,
    health: Arc<Health>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`),
    /// creates or migrates imbed's schema, and starts the writer. Fails with
    /// a message naming the problem when the URL is not one, the database
    /// cannot be reached, or its schema is newer than this build.
    pub(crate) fn open(
        url: &str,
        retention: Retention,
        rules: Rules,
        commits: CommitObserver,
    ) -> Result<PostgresStore, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError(format!("store.postgres is not a PostgreSQL URL: {e}")))?;
        // imbed's tables are in its own schema; the operator's options stay.
        let options = match config.get_options() {
            Some(options) => format!("{options} -c search_path=imbed"),
            None => "-c search_path=imbed".to_owned(),
        };
        config
            .options(&options)
            .application_name("imbed")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives_idle(Duration::from_secs(30));
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("imbed-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("could not start the PostgreSQL runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let pool = {
            let _entered = handle.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .recycle_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| StoreError(format!("PostgreSQL pool: {e}")))?
        };
        // Waited for on a channel, not with `block_on`: a server may be
        // started from inside another runtime.
        let (migrated, migration) = std::sync::mpsc::sync_channel(1);
        let (migrating, kept) = (pool.clone(), retention.clone());
        runtime.spawn(async move {
            let outcome = async {
                let mut client =
                    (migrating.get().await).map_err(|e| StoreError(format!("PostgreSQL unreachable: {e}")))?;
                schema::migrate(&mut client).await?;
                writer::prune_by_age(&migrating, &kept).await;
                Ok(())
            };
            let _ = migrated.send(outcome.await);
        });
        migration
            .recv()
            .unwrap_or_else(|_| Err(StoreError("PostgreSQL: the migration stopped".into())))?;
        let health = Arc::new(Health::default());
        let (completed, completions) = std::sync::mpsc::channel();
        let completer = std::thread::Builder::new()
            .name("imbed-store-done".into())
            .spawn(move || jobs::complete(completions))
            .map_err(|e| StoreError(format!("could not start a store thread: {e}")))?;
        let mut queues = Vec::with_capacity(WRITERS);
        let mut threads = Vec::with_capacity(WRITERS + 1);
        for index in 0..WRITERS {
            let (jobs, queue) = unbounded_channel();
            queues.push(jobs);
            let writer = Writer {
                pool: pool.clone(),
                completed: completed.clone(),
                retention: retention.clone(),
                rules,
                commits: commits.clone(),
                health: health.clone(),
                prunes_by_age: index == 0,
            };
            // Its own thread, driving the writer with the runtime's I/O: a
            // batch holds its jobs' completions, which are not shared across threads.
            let on_runtime = handle.clone();
            let thread = std::thread::Builder::new()
                .name(format!("imbed-store-{index}"))
                .spawn(move || on_runtime.block_on(writer.run(queue)))
                .map_err(|e| StoreError(format!("could not start a store thread: {e}")))?;
            threads.push(thread);
        }
        // The completion thread ends once every writer has dropped its sender.
        drop(completed);
        threads.push(completer);
        Ok(PostgresStore {
            runtime: Mutex::new(Some(runtime)),
            handle,
            pool,
            jobs: Mutex::new(Some(queues)),
            threads: Mutex::new(threads),
            health,
            spread: ahash::RandomState::new(),
        })
    }

    /// Queues `job` to its writer: a conversation's appends and read marks
    /// always to the same one (so they commit in order), the rest to the first.
    fn submit(&self, job: Job) {
        let writer = match &job {
            Job::Append(m, ..) => self.spread.hash_one(&m.conv) as usize % WRITERS,
            Job::MarkRead { conv, .. } => self.spread.hash_one(conv) as usize % WRITERS,
            _ => 0,
        };
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let unsent = match jobs.as_ref() {
            Some(jobs) => jobs[writer].send(job).err().map(|e| e.0),
            None => Some(job),
        };
        drop(jobs);
        if let Some(job) = unsent {
            job.fail(StoreError("the store is closed".into()));
        }
    }

    /// Runs `read` with a pooled connection on the store's runtime and
    /// waits for it: the trait's blocking reads, from any thread.
    fn read<T, F>(&self, read: impl FnOnce(Object) -> F + Send + 'static) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Failure>> + Send,
    {
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let outcome = match pool.get().await {
                Ok(client) => read(client).await,
                Err(e) => Err(Failure::Pool(e)),
            };
            let _ = tx.send(outcome.map_err(|e| StoreError(e.to_string())));
        });
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError("the store is closed".into())))
    }
}

impl Store for PostgresStore {
    queued_writes!();

    fn devices(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        self.read(move |client| async move { readers::devices(&client, &user).await })
    }

    fn read_positions(&self, conv: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let conv = conv.to_owned();
        self.read(move |client| async move { readers::read_positions(&client, &conv).await })
    }

    fn unread(&self, user: &str) -> Result<u64, StoreError> {
        let user = user.to_owned();
        self.read(move |client| async move { readers::unread(&client, &user).await })
    }

    fn pending_pushes(&self) -> Result<Vec<PushRequest>, StoreError> {
        self.read(move |client| async move { readers::pending_pushes(&client).await })
    }

    fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<std::sync::Arc<StoredMessage>>, StoreError> {
        let conv = conv.to_owned();
        self.read(move |client| async move { readers::history(&client, &conv, before, limit, max_bytes).await })
    }

    fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.read(move |client| async move { readers::groups(&client).await })
    }

    fn conversations(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let (user, after) = (user.to_owned(), after.map(str::to_owned));
        self.read(move |client| async move { readers::conversations(&client, &user, after.as_deref(), limit).await })
    }

    fn sync(
        &self,
        user: &str,
        range: &ConversationRange,
        cursors: &HashMap<String, u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<SyncedPage, StoreError> {
        let (user, range, cursors) = (user.to_owned(), range.clone(), cursors.clone());
        self.read(move |mut client| async move {
            readers::sync(&mut client, &user, &range, &cursors, limit, max_bytes).await
        })
    }

    fn search(
        &self,
        scope: SearchScope<'_>,
        terms: &[String],
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<SearchPage, StoreError> {
        let named = match scope {
            SearchScope::User(name) | SearchScope::Conv(name) => Some(name.to_owned()),
            SearchScope::All => None,
        };
        let user_scope = matches!(scope, SearchScope::User(_));
        let (terms, after) = (terms.to_vec(), after.map(str::to_owned));
        self.read(move |client| async move {
            let scope = match (&named, user_scope) {
                (Some(user), true) => SearchScope::User(user),
                (Some(conv), false) => SearchScope::Conv(conv),
                (None, _) => SearchScope::All,
            };
            readers::search(&client, scope, &terms, after.as_deref(), limit, max_bytes).await
        })
    }

    fn upload_usage(&self, user: &str) -> Result<u64, StoreError> {
        let user = user.to_owned();
        self.read(move |client| async move { readers::upload_usage(&client, &user).await })
    }

    fn file(&self, file_id: &str, reader: Option<&str>) -> Result<Option<FileRecord>, StoreError> {
        let (file_id, reader) = (file_id.to_owned(), reader.map(str::to_owned));
        self.read(move |client| async move { readers::file(&client, &file_id, reader.as_deref()).await })
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            failing: self.health.failing.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            errors: self.health.errors.load(Ordering::Relaxed),
        }
    }

    /// Lets the writer finish what is queued and report it, joins the
    /// store's threads (a thread never joins itself), then stops the runtime.
    fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let me = std::thread::current().id();
        for thread in threads.into_iter().filter(|t| t.thread().id() != me) {
            let _ = thread.join();
        }
        if let Some(runtime) = self.runtime.lock().unwrap_or_else(|p| p.into_inner()).take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.close();
    }
}
