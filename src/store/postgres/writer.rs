//! The writer task: every write, in group commits.
//!
//! As in the SQLite store, jobs queue while a transaction commits and the
//! next transaction takes all of them. Within it, a run of plain appends is
//! stored by one statement ([`append_run`]), which takes each conversation's
//! next seqs from its counter row, so seqs are gapless and commit in seq
//! order whichever node writes; an event or a message with files is checked
//! first, then stored the same way as a run of one. A transaction
//! first locks the counter rows of its conversations in name order, so two
//! nodes' batches wait for each other but never deadlock.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool, Transaction};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::error::SqlState;

use super::appending::{Plain, append_run};
use super::{Health, amending, notices};
use crate::protocol::now_ms;
use crate::store::amend::Rules;
use crate::store::jobs::{Completed, Job, Outcome};
use crate::store::{CommitObserver, MessageKind, NewMessage, ReadMark, Retention, StoreError};

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 4096;

/// How often age-based retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often an idle writer checks that the database answers.
const PING_EVERY: Duration = Duration::from_secs(1);

/// How many times a batch is tried when PostgreSQL asks for a retry
/// (a deadlock or serialization failure, or the same client id written by
/// two nodes at once).
const ATTEMPTS: usize = 5;

/// Creates the counter rows of the conversations `$1` that have none and
/// locks them all, in name order (an upsert locks the row it touches).
const LOCK_CONVERSATIONS: &str = "
    INSERT INTO conversations (conv, last_seq) SELECT c, 0 FROM unnest($1::text[]) c ORDER BY c
    ON CONFLICT (conv) DO UPDATE SET last_seq = conversations.last_seq";

/// What the writer remembers between batches: per direct conversation, the
/// users already recorded as its members, so most appends skip that insert.
#[derive(Default)]
struct Known {
    members: HashSet<(String, String)>,
}

/// What a writer needs besides its queue.
pub(super) struct Writer {
    pub(super) pool: Pool,
    /// Where committed batches go, to be reported in order.
    pub(super) completed: Sender<Completed>,
    pub(super) retention: Retention,
    pub(super) rules: Rules,
    pub(super) commits: CommitObserver,
    pub(super) health: Arc<Health>,
    /// This writer (of several) applies age retention.
    pub(super) prunes_by_age: bool,
}

impl Writer {
    /// Runs until every sender of `jobs` is gone.
    pub(super) async fn run(self, mut jobs: UnboundedReceiver<Job>) {
        let Writer {
            pool,
            completed,
            retention,
            rules,
            commits,
            health,
            prunes_by_age,
        } = self;
        let mut known = Known::default();
        let mut last_prune = Instant::now();
        loop {
            let first = match tokio::time::timeout(PING_EVERY, jobs.recv()).await {
                Ok(Some(job)) => Some(job),
                Ok(None) => break,
                Err(_) => None,
            };
            match first {
                Some(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let started = Instant::now();
                    let outcomes = commit_batch(&pool, &mut known, batch, &retention, &rules, &health).await;
                    commits(started.elapsed());
                    let _ = completed.send(outcomes);
                }
                None => ping(&pool, &health).await,
            }
            if prunes_by_age && last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                prune_by_age(&pool, &retention).await;
            }
        }
    }
}

/// Checks that the database answers, so health reflects an outage (and its
/// end) while nothing is written.
async fn ping(pool: &Pool, health: &Health) {
    let answered = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client.simple_query("").await.map_err(|e| e.to_string())
    };
    match answered.await {
        Ok(_) => health.ok(),
        Err(e) => health.failed(format!("PostgreSQL: {e}")),
    }
}

/// Deletes messages older than the retention age, with their file
/// references. Ids grow with arrival, so the expired ones are a prefix of
/// the id order: the scan stops at the first message young enough to keep.
pub(super) async fn prune_by_age(pool: &Pool, retention: &Retention) {
    let Some(oldest) = retention.oldest_kept_ts(now_ms()) else {
        return;
    };
    let pruned = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "WITH gone AS (
                    DELETE FROM messages WHERE id < coalesce(
                        (SELECT id FROM messages WHERE ts >= $1 ORDER BY id LIMIT 1),
                        (SELECT max(id) + 1 FROM messages))
                    RETURNING conv, seq)
                 DELETE FROM file_refs f USING gone WHERE f.conv = gone.conv AND f.seq = gone.seq",
                &[&oldest],
            )
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = pruned.await {
        tracing::warn!(error = %e, "age retention failed");
    }
}

/// Why a batch failed.
pub(super) enum Failure {
    /// No connection to be had.
    Pool(deadpool_postgres::PoolError),
    /// A statement or the commit failed.
    Sql(tokio_postgres::Error),
    /// A stored row could not be read back.
    Data(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        Failure::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Data(e)
    }
}

impl Failure {
    /// PostgreSQL asked for the transaction to be tried again.
    fn retryable(&self) -> bool {
        let Failure::Sql(e) = self else {
            return false;
        };
        [
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::UNIQUE_VIOLATION,
        ]
        .iter()
        .any(|code| e.code() == Some(code))
    }

    /// The connection, not the batch, is at fault.
    fn unreachable(&self) -> bool {
        match self {
            Failure::Pool(_) => true,
            Failure::Sql(e) => e.is_closed() || e.code().is_none(),
            Failure::Data(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Pool(e) => write!(f, "PostgreSQL unreachable: {e}"),
            Failure::Data(e) => e.fmt(f),
            Failure::Sql(e) => match e.as_db_error() {
                Some(db) => write!(f, "PostgreSQL: {}", db.message()),
                None => write!(f, "PostgreSQL: {e}"),
            },
        }
    }
}

async fn commit_batch(
    pool: &Pool,
    known: &mut Known,
    batch: Vec<Job>,
    retention: &Retention,
    rules: &Rules,
    health: &Health,
) -> Completed {
    let mut attempt = 1;
    loop {
        let written = async {
            let mut client = pool.get().await.map_err(Failure::Pool)?;
            write_batch(&mut client, known, &batch, retention, rules).await
        };
        match written.await {
            Ok(outcomes) => {
                health.ok();
                return batch.into_iter().zip(outcomes.into_iter().map(Ok)).collect();
            }
            Err(failure) if failure.retryable() && attempt < ATTEMPTS => {
                tracing::debug!(error = %failure, attempt, "store batch retried");
                attempt += 1;
            }
            Err(failure) => {
                let error = StoreError(failure.to_string());
                if failure.unreachable() {
                    health.failed(error.0.clone());
                } else {
                    health.errored();
                }
                tracing::error!(error = %error, jobs = batch.len(), "store commit failed");
                return batch.into_iter().map(|job| (job, Err(error.clone()))).collect();
            }
        }
    }
}

/// The conversations whose counter rows `batch` may change.
fn conversations_of(batch: &[Job]) -> Vec<&str> {
    let convs: BTreeSet<&str> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Append(m, ..) => Some(m.conv.as_str()),
            _ => None,
        })
        .collect();
    convs.into_iter().collect()
}

/// Neither an event nor a message with files: nothing to check before it
/// is stored, so it can join a run.
fn plain(job: &Job) -> bool {
    matches!(job, Job::Append(m, ..) if m.target.is_none() && m.files.is_empty())
}

async fn write_batch(
    client: &mut Object,
    known: &mut Known,
    batch: &[Job],
    retention: &Retention,
    rules: &Rules,
) -> Result<Vec<Outcome>, Failure> {
    let tx = client.transaction().await?;
    let convs = conversations_of(batch);
    if !convs.is_empty() {
        tx.execute(LOCK_CONVERSATIONS, &[&convs]).await?;
    }
    let mut joined = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut index = 0;
    while index < batch.len() {
        let run = batch[index..].iter().take_while(|job| plain(job)).count();
        if run > 0 {
            let appends: Vec<Plain<'_>> = (batch[index..index + run].iter())
                .filter_map(|job| match job {
                    Job::Append(message, push_to, _) => Some(Plain {
                        message,
                        push_to,
                        members: new_members(known, message),
                    }),
                    _ => None,
                })
                .collect();
            for plain in &appends {
                let conv = &plain.message.conv;
                joined.extend(plain.members.iter().map(|u| (conv.clone(), u.to_string())));
            }
            outcomes.extend(append_run(&tx, &appends).await?);
            index += run;
            continue;
        }
        let job = &batch[index];
        outcomes.push(match job {
            Job::Append(m, push_to, _) => {
                let members = new_members(known, m);
                let one = [Plain {
                    message: m,
                    push_to,
                    members: members.clone(),
                }];
                let outcome = amending::append_checked(&tx, m, rules, || async {
                    let mut outcomes = append_run(&tx, &one).await?;
                    Ok(outcomes.remove(0))
                })
                .await?;
                if matches!(outcome, Outcome::New(_)) {
                    joined.extend(members.iter().map(|u| (m.conv.clone(), u.to_string())));
                }
                outcome
            }
            Job::MarkRead {
                user, conv, seq, badge, ..
            } => {
                let mark = mark_read(&tx, user, conv, *seq).await?;
                if *badge && mark == ReadMark::Advanced {
                    notices::badge_after_read(&tx, user, conv, *seq).await?;
                }
                Outcome::Read(mark)
            }
            Job::SaveDevice { user, device, .. } => notices::save_device(&tx, user, device).await?,
            Job::OfferPushes {
                now,
                offered_before,
                limit,
                ..
            } => Outcome::Offered(notices::offer_pushes(&tx, *now, *offered_before, *limit).await?),
            Job::PushDone { push_id, .. } => Outcome::Found(notices::push_done(&tx, *push_id).await?),
            Job::SaveUpload {
                user, file, quota, now, ..
            } => Outcome::Uploaded(amending::save_upload(&tx, user, file, *quota, *now).await?),
            Job::CollectFiles { uploaded_before, .. } => {
                Outcome::Collected(amending::collect_files(&tx, *uploaded_before).await?)
            }
            Job::SaveGroup { group, closed, .. } => {
                tx.execute(
                    "INSERT INTO groups (grp, closed) VALUES ($1, $2)
                     ON CONFLICT (grp) DO UPDATE SET closed = excluded.closed",
                    &[group, closed],
                )
                .await?;
                Outcome::Saved
            }
            Job::SaveMember {
                group, user, member, ..
            } => {
                let sql = if *member {
                    "INSERT INTO group_members (grp, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM group_members WHERE grp = $1 AND user_id = $2"
                };
                tx.execute(sql, &[group, user]).await?;
                Outcome::Saved
            }
        });
        index += 1;
    }
    prune_by_count(&tx, batch, &outcomes, retention).await?;
    tx.commit().await?;
    known.members.extend(joined);
    Ok(outcomes)
}

/// The sender and recipient of a direct message not yet known to be
/// members of its conversation. (A group's conversation belongs to its
/// members, in `group_members`.) An event makes nobody a member: its
/// target's message did, and a host's delete is sent by neither of the two.
fn new_members<'m>(known: &Known, m: &'m NewMessage) -> Vec<&'m str> {
    let Some(to) = m.to.as_deref().filter(|_| m.kind == MessageKind::Message) else {
        return Vec::new();
    };
    [&*m.from, to]
        .into_iter()
        .filter(|user| !known.members.contains(&(m.conv.clone(), user.to_string())))
        .collect()
}

/// Deletes what the count retention no longer keeps of the conversations
/// this batch grew, with their file references.
async fn prune_by_count(
    tx: &Transaction<'_>,
    batch: &[Job],
    outcomes: &[Outcome],
    retention: &Retention,
) -> Result<(), tokio_postgres::Error> {
    let keep = retention.max_messages_per_conversation;
    if keep == 0 {
        return Ok(());
    }
    let mut last = BTreeMap::new();
    for (job, outcome) in batch.iter().zip(outcomes) {
        if let (Job::Append(m, ..), Outcome::New(seq)) = (job, outcome) {
            last.insert(m.conv.as_str(), *seq);
        }
    }
    for (conv, last) in last.into_iter().filter(|(_, last)| *last > keep) {
        tx.execute(
            "WITH gone AS (DELETE FROM messages WHERE conv = $1 AND seq <= $2 RETURNING conv, seq)
             DELETE FROM file_refs f USING gone WHERE f.conv = gone.conv AND f.seq = gone.seq",
            &[&conv, &((last - keep) as i64)],
        )
        .await?;
    }
    Ok(())
}

async fn mark_read(tx: &Transaction<'_>, user: &str, conv: &str, seq: u64) -> Result<ReadMark, tokio_postgres::Error> {
    let seq = seq.min(i64::MAX as u64) as i64;
    let row = tx
        .query_one(
            "WITH last AS (
                SELECT coalesce((SELECT last_seq FROM conversations WHERE conv = $2), 0) AS last_seq
             ), moved AS (
                INSERT INTO read_cursors (user_id, conv, seq) SELECT $1, $2, $3 FROM last WHERE $3 <= last_seq
                ON CONFLICT (user_id, conv) DO UPDATE SET seq = excluded.seq WHERE excluded.seq > read_cursors.seq
                RETURNING 1
             )
             SELECT last_seq, EXISTS (SELECT FROM moved) FROM last",
            &[&user, &conv, &seq],
        )
        .await?;
    let last_seq: i64 = row.get(0);
    Ok(if seq > last_seq {
        ReadMark::BeyondLast {
            last_seq: last_seq as u64,
        }
    } else if row.get(1) {
        ReadMark::Advanced
    } else {
        ReadMark::Unchanged
    })
}
