//! Events and replies in the writer's transaction: the target they name,
//! checked by [`crate::store::amend::apply`], and the change they make.

use rusqlite::{OptionalExtension, Transaction, params};

use super::files;
use super::rows::{MESSAGE_COLUMNS, message_from_row};
use crate::store::amend::{self, Amended, Refused, Rules, reactions_to_json};
use crate::store::{MessageKind, NewMessage};

/// Whether `m` may be stored: its target allows it, and its files are the
/// sender's to refer to. For an event, what its target becomes.
pub(super) fn check(
    tx: &Transaction<'_>,
    m: &NewMessage,
    rules: &Rules,
) -> rusqlite::Result<Result<Option<Amended>, Refused>> {
    let unknown = if m.by_host {
        None
    } else {
        files::first_unknown(tx, &m.from, &m.files)?
    };
    if let Some(missing) = unknown {
        return Ok(Err(Refused::NotFound(format!("unknown file {missing}"))));
    }
    let target = match m.target {
        Some(seq) => tx
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq = ?2"
            ))?
            .query_row(params![m.conv, seq.min(i64::MAX as u64) as i64], message_from_row)
            .optional()?,
        None => None,
    };
    Ok(amend::apply(m, target.as_deref(), rules))
}

/// Writes what an event of `kind` made of its target in `conv`. A delete
/// also erases the bodies of the target's earlier events (edits' text,
/// reactions' emojis) and lets go of the files all of them referred to.
pub(super) fn amend(tx: &Transaction<'_>, conv: &str, kind: MessageKind, amended: &Amended) -> rusqlite::Result<()> {
    let seq = amended.seq as i64;
    tx.prepare_cached(
        "UPDATE messages SET body = ?3, edited = ?4, deleted = ?5, reactions = ?6 WHERE conv = ?1 AND seq = ?2",
    )?
    .execute(params![
        conv,
        seq,
        amended.body.get(),
        amended.state.edited,
        amended.state.deleted,
        reactions_to_json(&amended.state.reactions)
    ])?;
    if kind == MessageKind::Delete {
        tx.prepare_cached(
            "DELETE FROM file_refs WHERE conv = ?1 AND (seq = ?2 OR seq IN (
                SELECT seq FROM messages WHERE conv = ?1 AND target = ?2 AND kind IN ('edit', 'react', 'unreact')))",
        )?
        .execute(params![conv, seq])?;
        tx.prepare_cached(
            "UPDATE messages SET body = 'null', deleted = 1
             WHERE conv = ?1 AND target = ?2 AND kind IN ('edit', 'react', 'unreact')",
        )?
        .execute(params![conv, seq])?;
    }
    Ok(())
}
