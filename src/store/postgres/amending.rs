//! What an append must pass before it is stored (events and replies
//! checked against their target by [`crate::store::amend::apply`], files the
//! sender may refer to), the change an event makes, and uploads.

use std::future::Future;

use deadpool_postgres::Transaction;

use super::rows::{MESSAGE_COLUMNS, indexed_text, message_from_row};
use super::writer::Failure;
use crate::store::amend::{self, Amended, Refused, Rules, reactions_to_json};
use crate::store::jobs::Outcome;
use crate::store::{FileRecord, MessageKind, NewMessage, Placement};

/// Whether a file is `$1`'s to read or refer to: its upload, or one in a
/// conversation of the user. `$2` is the file.
pub(super) const VISIBLE_TO_USER: &str = "
    EXISTS (SELECT FROM uploads WHERE user_id = $1 AND file_id = $2)
    OR EXISTS (SELECT FROM file_refs r WHERE r.file_id = $2 AND (
        r.conv IN (SELECT conv FROM user_conversations WHERE user_id = $1)
        OR r.conv IN (SELECT 'g:' || grp FROM group_members WHERE user_id = $1)))";

/// Stores `m` with `store` once it passes its checks. Rules are checked
/// only for what is not stored yet: a retry gets its first ack even when
/// the rule it passed would now refuse it.
pub(super) async fn append_checked<F: Future<Output = Result<Outcome, Failure>>>(
    tx: &Transaction<'_>,
    m: &NewMessage,
    rules: &Rules,
    store: impl FnOnce() -> F,
) -> Result<Outcome, Failure> {
    let stored = tx
        .query_opt(
            "SELECT conv, seq, ts FROM messages WHERE sender = $1 AND client_id = $2",
            &[&&*m.from, &m.client_id],
        )
        .await?;
    if let Some(row) = stored {
        return Ok(Outcome::Duplicate(Placement {
            conv: row.get(0),
            seq: row.get::<_, i64>(1) as u64,
            ts: row.get(2),
        }));
    }
    if !m.by_host {
        let visible = tx.prepare_cached(&format!("SELECT {VISIBLE_TO_USER}")).await?;
        for file in &m.files {
            if !tx.query_one(&visible, &[&&*m.from, file]).await?.get::<_, bool>(0) {
                return Ok(Outcome::Refused(Refused::NotFound(format!("unknown file {file}"))));
            }
        }
    }
    let target = match m.target {
        // Locked: another node's event on the same target waits for this one.
        Some(seq) => tx
            .query_opt(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = $1 AND seq = $2 FOR UPDATE"),
                &[&m.conv, &(seq.min(i64::MAX as u64) as i64)],
            )
            .await?
            .map(|row| message_from_row(&row))
            .transpose()?,
        None => None,
    };
    let amended = match amend::apply(m, target.as_deref(), rules) {
        Ok(amended) => amended,
        Err(why) => return Ok(Outcome::Refused(why)),
    };
    let outcome = store().await?;
    if let (Outcome::New(_), Some(amended)) = (&outcome, amended) {
        amend_target(tx, &m.conv, m.kind, &amended).await?;
    }
    Ok(outcome)
}

/// Writes what an event of `kind` made of its target in `conv`. A delete
/// also erases the bodies of the target's earlier events (edits' text,
/// reactions' emojis) and lets go of the files all of them referred to.
async fn amend_target(
    tx: &Transaction<'_>,
    conv: &str,
    kind: MessageKind,
    amended: &Amended,
) -> Result<(), tokio_postgres::Error> {
    let seq = amended.seq as i64;
    let text = (!amended.state.deleted).then(|| indexed_text(&amended.body));
    tx.execute(
        "UPDATE messages SET body = $3, edited = $4, deleted = $5, reactions = $6,
            words = to_tsvector('simple'::regconfig, $7::text)
         WHERE conv = $1 AND seq = $2",
        &[
            &conv,
            &seq,
            &amended.body.get(),
            &amended.state.edited,
            &amended.state.deleted,
            &reactions_to_json(&amended.state.reactions),
            &text,
        ],
    )
    .await?;
    if kind == MessageKind::Delete {
        tx.execute(
            "DELETE FROM file_refs WHERE conv = $1 AND (seq = $2 OR seq IN (
                SELECT seq FROM messages WHERE conv = $1 AND target = $2 AND kind IN ('edit', 'react', 'unreact')))",
            &[&conv, &seq],
        )
        .await?;
        tx.execute(
            "UPDATE messages SET body = 'null', deleted = true
             WHERE conv = $1 AND target = $2 AND kind IN ('edit', 'react', 'unreact')",
            &[&conv, &seq],
        )
        .await?;
    }
    Ok(())
}

/// See [`crate::store::Store::save_upload`]. The user's uploads are locked
/// first, so two nodes' uploads by one user cannot both pass the quota.
pub(super) async fn save_upload(
    tx: &Transaction<'_>,
    user: &str,
    file: &FileRecord,
    quota: u64,
    now: i64,
) -> Result<Option<FileRecord>, tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('imbed upload ' || $1))",
        &[&user],
    )
    .await?;
    let others: i64 = tx
        .query_one(
            "SELECT coalesce(sum(f.size), 0)::bigint FROM uploads u JOIN files f ON f.file_id = u.file_id
             WHERE u.user_id = $1 AND u.file_id <> $2",
            &[&user, &file.file_id],
        )
        .await?
        .get(0);
    if others as u64 + file.size > quota {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO files (file_id, size, content_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&file.file_id, &(file.size as i64), &file.content_type],
    )
    .await?;
    // Its own statement: it sees the row whichever upload of these bytes
    // (here or on another node) inserted it.
    let content_type: String = tx
        .query_one("SELECT content_type FROM files WHERE file_id = $1", &[&file.file_id])
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO uploads (user_id, file_id, ts) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, file_id) DO UPDATE SET ts = excluded.ts",
        &[&user, &file.file_id, &now],
    )
    .await?;
    Ok(Some(FileRecord {
        content_type,
        ..file.clone()
    }))
}

/// See [`crate::store::Store::collect_files`].
pub(super) async fn collect_files(
    tx: &Transaction<'_>,
    uploaded_before: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM uploads WHERE ts < $1
         AND NOT EXISTS (SELECT FROM file_refs r WHERE r.file_id = uploads.file_id)",
        &[&uploaded_before],
    )
    .await?;
    let rows = tx
        .query(
            "DELETE FROM files f WHERE NOT EXISTS (SELECT FROM uploads u WHERE u.file_id = f.file_id)
             AND NOT EXISTS (SELECT FROM file_refs r WHERE r.file_id = f.file_id)
             RETURNING file_id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
