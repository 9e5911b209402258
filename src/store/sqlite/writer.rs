//! The writer thread: every write, in group commits.
//!
//! Jobs queue up while a commit (and its fsync) is in progress; the next
//! commit takes all of them, up to a cap, in one transaction. Durability then
//! costs one fsync per batch instead of one per message. Outcomes are
//! reported only after the commit, in queue order, which is also seq order
//! within each conversation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::protocol::now_ms;
use crate::store::{
    AppendDone, Appended, NewMessage, Placement, ReadDone, ReadMark, Retention, StoreError, StoredMessage,
};

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 4096;

/// How often age-based retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A write for the writer thread.
pub enum Job {
    /// Store a message.
    Append(NewMessage, AppendDone),
    /// Move a user's read cursor.
    MarkRead {
        /// The reader.
        user: Arc<str>,
        /// The conversation.
        conv: String,
        /// The seq read up to.
        seq: u64,
        /// Told the outcome.
        done: ReadDone,
    },
}

impl Job {
    /// Reports `error` as this job's outcome.
    pub fn fail(self, error: StoreError) {
        match self {
            Job::Append(_, done) => done(Err(error)),
            Job::MarkRead { done, .. } => done(Err(error)),
        }
    }
}

/// What a job did inside the transaction, reported once it commits.
enum Outcome {
    New(u64),
    Duplicate(Placement),
    Read(ReadMark),
}

/// Runs the writer until every sender of `jobs` is gone.
pub fn run(mut conn: Connection, jobs: Receiver<Job>, retention: Retention) {
    // Last seq of each conversation seen, so most appends skip a lookup.
    let mut last_seqs: HashMap<String, u64> = HashMap::new();
    let mut last_prune = Instant::now();
    loop {
        let first = match jobs.recv_timeout(PRUNE_EVERY) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
            commit_batch(&mut conn, &mut last_seqs, batch, &retention);
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Some(oldest) = retention.oldest_kept_ts(now_ms())
                && let Err(e) = conn.execute("DELETE FROM messages WHERE ts < ?1", [oldest])
            {
                tracing::warn!(error = %e, "age retention failed");
            }
        }
    }
}

fn commit_batch(conn: &mut Connection, last_seqs: &mut HashMap<String, u64>, batch: Vec<Job>, retention: &Retention) {
    match write_batch(conn, last_seqs, &batch, retention) {
        Ok(outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                report(job, outcome);
            }
        }
        Err(e) => {
            // Seqs handed out inside the failed transaction were rolled back.
            last_seqs.clear();
            tracing::error!(error = %e, jobs = batch.len(), "store commit failed");
            let error = StoreError(e.to_string());
            for job in batch {
                job.fail(error.clone());
            }
        }
    }
}

fn report(job: Job, outcome: Outcome) {
    match (job, outcome) {
        (Job::Append(message, done), Outcome::New(seq)) => {
            done(Ok(Appended::New(Arc::new(StoredMessage { message, seq }))))
        }
        (Job::Append(_, done), Outcome::Duplicate(placement)) => done(Ok(Appended::Duplicate(placement))),
        (Job::MarkRead { done, .. }, Outcome::Read(mark)) => done(Ok(mark)),
        (job, _) => job.fail(StoreError("internal: outcome does not match its job".into())),
    }
}

fn write_batch(
    conn: &mut Connection,
    last_seqs: &mut HashMap<String, u64>,
    batch: &[Job],
    retention: &Retention,
) -> rusqlite::Result<Vec<Outcome>> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut grown = HashSet::new();
    for job in batch {
        outcomes.push(match job {
            Job::Append(message, _) => {
                let outcome = append(&tx, last_seqs, message)?;
                if let Outcome::New(_) = outcome {
                    grown.insert(message.conv.as_str());
                }
                outcome
            }
            Job::MarkRead { user, conv, seq, .. } => Outcome::Read(mark_read(&tx, last_seqs, user, conv, *seq)?),
        });
    }
    let keep = retention.max_messages_per_conversation;
    if keep > 0 {
        let mut prune = tx.prepare_cached("DELETE FROM messages WHERE conv = ?1 AND seq <= ?2")?;
        for conv in grown {
            let last = last_seqs.get(conv).copied().unwrap_or(0);
            if last > keep {
                prune.execute(params![conv, (last - keep) as i64])?;
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

fn last_seq(tx: &Transaction<'_>, last_seqs: &mut HashMap<String, u64>, conv: &str) -> rusqlite::Result<u64> {
    if let Some(seq) = last_seqs.get(conv) {
        return Ok(*seq);
    }
    let seq = tx
        .prepare_cached("SELECT last_seq FROM conversations WHERE conv = ?1")?
        .query_row([conv], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64;
    last_seqs.insert(conv.to_owned(), seq);
    Ok(seq)
}

fn append(tx: &Transaction<'_>, last_seqs: &mut HashMap<String, u64>, m: &NewMessage) -> rusqlite::Result<Outcome> {
    let earlier = tx
        .prepare_cached("SELECT conv, seq, ts FROM messages WHERE sender = ?1 AND client_id = ?2")?
        .query_row(params![&*m.from, m.client_id], |r| {
            Ok(Placement {
                conv: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                ts: r.get(2)?,
            })
        })
        .optional()?;
    if let Some(placement) = earlier {
        return Ok(Outcome::Duplicate(placement));
    }
    let seq = last_seq(tx, last_seqs, &m.conv)? + 1;
    tx.prepare_cached(
        "INSERT INTO messages (conv, seq, sender, recipient, grp, client_id, body, ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        m.conv,
        seq as i64,
        &*m.from,
        m.to,
        m.group,
        m.client_id,
        m.body.get(),
        m.ts
    ])?;
    tx.prepare_cached(
        "INSERT INTO conversations (conv, last_seq) VALUES (?1, ?2)
         ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq",
    )?
    .execute(params![m.conv, seq as i64])?;
    let mut member = tx.prepare_cached("INSERT OR IGNORE INTO user_conversations (user, conv) VALUES (?1, ?2)")?;
    for user in [Some(&*m.from), m.to.as_deref()].into_iter().flatten() {
        member.execute(params![user, m.conv])?;
    }
    last_seqs.insert(m.conv.clone(), seq);
    Ok(Outcome::New(seq))
}

fn mark_read(
    tx: &Transaction<'_>,
    last_seqs: &mut HashMap<String, u64>,
    user: &str,
    conv: &str,
    seq: u64,
) -> rusqlite::Result<ReadMark> {
    let last = last_seq(tx, last_seqs, conv)?;
    if seq > last {
        return Ok(ReadMark::BeyondLast { last_seq: last });
    }
    let changed = tx
        .prepare_cached(
            "INSERT INTO read_cursors (user, conv, seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (user, conv) DO UPDATE SET seq = excluded.seq WHERE excluded.seq > read_cursors.seq",
        )?
        .execute(params![user, conv, seq as i64])?;
    Ok(if changed > 0 {
        ReadMark::Advanced
    } else {
        ReadMark::Unchanged
    })
}
