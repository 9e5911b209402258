//! The writer thread: every write, in group commits.
//!
//! Jobs queue up while a commit (and its fsync) is in progress; the next
//! commit takes all of them, up to a cap, in one transaction. Durability then
//! costs one fsync per batch instead of one per message. Outcomes are
//! reported only after the commit, in queue order, which is also seq order
//! within each conversation: a completion thread runs them (fan-out, acks)
//! while the writer already commits the next batch.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{amending, files, notices};
use crate::protocol::now_ms;
use crate::store::amend::{Rules, searchable_text};
use crate::store::jobs::{Completed, Job, Outcome};
use crate::store::{CommitObserver, MessageKind, NewMessage, Placement, ReadMark, Retention, StoreError};

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 4096;

/// How often age-based retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often the writer finishes a checkpoint itself, between batches.
const RESET_WAL_EVERY: Duration = Duration::from_millis(250);

/// What the writer remembers between batches, so that most appends touch
/// only the messages table. Cleared when a commit fails, since the failed
/// transaction may have changed it.
#[derive(Default)]
struct Known {
    /// The last seq of each conversation seen.
    last_seqs: HashMap<String, u64>,
    /// Per conversation, the users already in `user_conversations`.
    members: HashMap<String, Vec<String>>,
}

/// Runs the writer until every sender of `jobs` is gone; outcomes go to `completed`.
pub(crate) fn run(
    mut conn: Connection,
    jobs: Receiver<Job>,
    completed: Sender<Completed>,
    retention: Retention,
    rules: Rules,
    commits: CommitObserver,
) {
    let mut known = Known::default();
    let mut last_prune = Instant::now();
    let mut last_wal_reset = Instant::now();
    let mut erasing = false;
    loop {
        let wait = if erasing { RESET_WAL_EVERY } else { PRUNE_EVERY };
        let first = match jobs.recv_timeout(wait) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
            let started = Instant::now();
            let outcomes = commit_batch(&mut conn, &mut known, batch, &retention, &rules);
            commits(started.elapsed());
            erasing |= outcomes.iter().any(|(job, outcome)| match (job, outcome) {
                (Job::Append(m, ..), Ok(Outcome::New(_))) => m.kind == MessageKind::Delete,
                _ => false,
            });
            let _ = completed.send(outcomes);
        }
        if erasing && truncate_wal(&conn) {
            erasing = false;
            last_wal_reset = Instant::now();
        }
        // Until one completes: the checkpointer thread may hold the checkpoint lock.
        if last_wal_reset.elapsed() >= RESET_WAL_EVERY && finish_checkpoint(&conn) {
            last_wal_reset = Instant::now();
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            prune_by_age(&conn, &retention);
        }
    }
}

/// Checkpoints everything and empties the WAL file, so that the pages a
/// delete overwrote leave it too (the database file's copies are zeroed by
/// `secure_delete`). Never waits: when a reader or the checkpointer is in
/// the way it fails, and the writer tries again a moment later.
fn truncate_wal(conn: &Connection) -> bool {
    let _ = conn.busy_timeout(Duration::ZERO);
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
    let _ = conn.busy_timeout(Duration::from_secs(5));
    matches!(result, Ok(0))
}

/// Completes a checkpoint from the writer, between transactions. The
/// checkpointer thread's PASSIVE checkpoints never catch up with a writer
/// that keeps appending, so the WAL would grow without end and every write
/// would land on new, zero-filled blocks. Run here, with no write in
/// progress, the checkpoint finishes (the checkpointer has copied most pages
/// already) and the next transaction starts the WAL over from its beginning.
/// True when it completed.
fn finish_checkpoint(conn: &Connection) -> bool {
    // (busy, frames in the WAL, frames checkpointed)
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        Ok((busy, log, done)) => busy == 0 && log == done,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint failed");
            false
        }
    }
}

/// Deletes messages older than the retention age. Rows are appended in
/// arrival order, so the expired ones are a prefix of the rowid order: the
/// scan stops at the first row young enough to keep, without a ts index.
pub(crate) fn prune_by_age(conn: &Connection, retention: &Retention) {
    let Some(oldest) = retention.oldest_kept_ts(now_ms()) else {
        return;
    };
    let pruned = conn.execute(
        "DELETE FROM messages WHERE rowid < coalesce(
            (SELECT rowid FROM messages WHERE ts >= ?1 ORDER BY rowid LIMIT 1),
            (SELECT max(rowid) + 1 FROM messages))",
        [oldest],
    );
    if let Err(e) = pruned {
        tracing::warn!(error = %e, "age retention failed");
    }
}

fn commit_batch(
    conn: &mut Connection,
    known: &mut Known,
    batch: Vec<Job>,
    retention: &Retention,
    rules: &Rules,
) -> Completed {
    match write_batch(conn, known, &batch, retention, rules) {
        Ok(outcomes) => batch.into_iter().zip(outcomes.into_iter().map(Ok)).collect(),
        Err(e) => {
            // Seqs and memberships written inside the failed transaction were rolled back.
            *known = Known::default();
            tracing::error!(error = %e, jobs = batch.len(), "store commit failed");
            let error = StoreError(e.to_string());
            batch.into_iter().map(|job| (job, Err(error.clone()))).collect()
        }
    }
}

fn write_batch(
    conn: &mut Connection,
    known: &mut Known,
    batch: &[Job],
    retention: &Retention,
    rules: &Rules,
) -> rusqlite::Result<Vec<Outcome>> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut grown = HashSet::new();
    for job in batch {
        outcomes.push(match job {
            Job::Append(message, push_to, _) => {
                let outcome = append(&tx, known, message, rules)?;
                if let Outcome::New(seq) = outcome {
                    grown.insert(message.conv.as_str());
                    notices::request_pushes(&tx, message, seq, push_to)?;
                }
                outcome
            }
            Job::MarkRead {
                user, conv, seq, badge, ..
            } => {
                let mark = mark_read(&tx, &mut known.last_seqs, user, conv, *seq)?;
                if *badge && mark == ReadMark::Advanced {
                    notices::badge_after_read(&tx, user, conv, *seq)?;
                }
                Outcome::Read(mark)
            }
            Job::SaveDevice { user, device, .. } => notices::save_device(&tx, user, device)?,
            Job::OfferPushes {
                now,
                offered_before,
                limit,
                ..
            } => Outcome::Offered(notices::offer_pushes(&tx, *now, *offered_before, *limit)?),
            Job::PushDone { push_id, .. } => Outcome::Found(notices::push_done(&tx, *push_id)?),
            Job::SaveUpload {
                user, file, quota, now, ..
            } => Outcome::Uploaded(files::save_upload(&tx, user, file, *quota, *now)?),
            Job::CollectFiles { uploaded_before, .. } => {
                Outcome::Collected(files::collect_files(&tx, *uploaded_before)?)
            }
            Job::SaveGroup { group, closed, .. } => save_group(&tx, group, *closed)?,
            Job::SaveMember {
                group, user, member, ..
            } => save_member(&tx, group, user, *member)?,
        });
    }
    // Once per conversation per batch, not once per message.
    let mut record_last_seq = tx.prepare_cached(
        "INSERT INTO conversations (conv, last_seq) VALUES (?1, ?2)
         ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq",
    )?;
    let mut prune = tx.prepare_cached("DELETE FROM messages WHERE conv = ?1 AND seq <= ?2")?;
    let keep = retention.max_messages_per_conversation;
    for conv in grown {
        let last = known.last_seqs.get(conv).copied().unwrap_or(0);
        record_last_seq.execute(params![conv, last as i64])?;
        if keep > 0 && last > keep {
            prune.execute(params![conv, (last - keep) as i64])?;
        }
    }
    drop((record_last_seq, prune));
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

fn append(tx: &Transaction<'_>, known: &mut Known, m: &NewMessage, rules: &Rules) -> rusqlite::Result<Outcome> {
    let plain = m.target.is_none() && m.files.is_empty();
    // Rules are checked only for what is not stored yet: a retry gets its
    // first ack even when the rule it passed would now refuse it.
    let amended = if plain {
        None
    } else if let Some(original) = stored_placement(tx, m)? {
        return Ok(Outcome::Duplicate(original));
    } else {
        match amending::check(tx, m, rules)? {
            Ok(amended) => amended,
            Err(why) => return Ok(Outcome::Refused(why)),
        }
    };
    let seq = last_seq(tx, &mut known.last_seqs, &m.conv)? + 1;
    // The unique (sender, client_id) index is the duplicate check: a retry
    // inserts nothing, and only then is the original looked up.
    let inserted = tx
        .prepare_cached(
            "INSERT INTO messages (conv, seq, sender, recipient, grp, client_id, body, ts, kind, target)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (sender, client_id) DO NOTHING",
        )?
        .execute(params![
            m.conv,
            seq as i64,
            &*m.from,
            m.to,
            m.group,
            m.client_id,
            m.body.get(),
            m.ts,
            m.kind.name(),
            m.target.map(|t| t as i64),
        ])?;
    if inserted == 0 {
        let original = stored_placement(tx, m)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        return Ok(Outcome::Duplicate(original));
    }
    known.last_seqs.insert(m.conv.clone(), seq);
    if m.kind == MessageKind::Message {
        tx.prepare_cached("INSERT INTO message_text (rowid, text, conv) VALUES (last_insert_rowid(), ?1, ?2)")?
            .execute(params![searchable_text(&m.body), m.conv])?;
    }
    remember_members(tx, known, m)?;
    if let Some(amended) = amended {
        amending::amend(tx, &m.conv, m.kind, &amended)?;
    }
    files::refer_to_files(tx, m, seq)?;
    Ok(Outcome::New(seq))
}

/// Where the sender's message with this client id is, if it is stored.
fn stored_placement(tx: &Transaction<'_>, m: &NewMessage) -> rusqlite::Result<Option<Placement>> {
    tx.prepare_cached("SELECT conv, seq, ts FROM messages WHERE sender = ?1 AND client_id = ?2")?
        .query_row(params![&*m.from, m.client_id], |r| {
            Ok(Placement {
                conv: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                ts: r.get(2)?,
            })
        })
        .optional()
}

/// Records that the sender and the recipient of a direct message belong to
/// its conversation, the first time each pair is seen. (A group's
/// conversation belongs to its members, in `group_members`.) An event makes
/// nobody a member: its target's message did, and a host's delete is sent
/// by neither of the two.
fn remember_members(tx: &Transaction<'_>, known: &mut Known, m: &NewMessage) -> rusqlite::Result<()> {
    let Some(to) = m.to.as_deref().filter(|_| m.kind == MessageKind::Message) else {
        return Ok(());
    };
    for user in [&*m.from, to] {
        if known
            .members
            .get(&m.conv)
            .is_some_and(|users| users.iter().any(|u| u == user))
        {
            continue;
        }
        tx.prepare_cached("INSERT OR IGNORE INTO user_conversations (user, conv) VALUES (?1, ?2)")?
            .execute(params![user, m.conv])?;
        known.members.entry(m.conv.clone()).or_default().push(user.to_owned());
    }
    Ok(())
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

fn save_group(tx: &Transaction<'_>, group: &str, closed: bool) -> rusqlite::Result<Outcome> {
    tx.prepare_cached(
        "INSERT INTO groups (grp, closed) VALUES (?1, ?2)
         ON CONFLICT (grp) DO UPDATE SET closed = excluded.closed",
    )?
    .execute(params![group, closed])?;
    Ok(Outcome::Saved)
}

fn save_member(tx: &Transaction<'_>, group: &str, user: &str, member: bool) -> rusqlite::Result<Outcome> {
    let sql = if member {
        "INSERT OR IGNORE INTO group_members (grp, user) VALUES (?1, ?2)"
    } else {
        "DELETE FROM group_members WHERE grp = ?1 AND user = ?2"
    };
    tx.prepare_cached(sql)?.execute(params![group, user])?;
    Ok(Outcome::Saved)
}
