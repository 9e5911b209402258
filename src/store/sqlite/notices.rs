//! Devices, the push outbox and read positions: what the store keeps so the
//! server can tell people about messages, not the messages themselves.

use std::sync::Arc;

use rusqlite::{Connection, Row, Transaction, params};

use crate::protocol::now_ms;
use crate::store::jobs::Outcome;
use crate::store::{MAX_DEVICES_PER_USER, NewMessage, PushKind, PushRequest, UNREAD_CAP};

const PUSH_COLUMNS: &str = "push_id, kind, user, conv, seq, sender";

fn push_from_row(row: &Row<'_>) -> rusqlite::Result<PushRequest> {
    let kind: String = row.get(1)?;
    Ok(PushRequest {
        push_id: row.get::<_, i64>(0)? as u64,
        kind: if kind == PushKind::Read.as_str() {
            PushKind::Read
        } else {
            PushKind::Message
        },
        user: row.get(2)?,
        conv: row.get(3)?,
        seq: row.get::<_, i64>(4)? as u64,
        from: row.get(5)?,
    })
}

/// Records a push request for each of `users` for the new message `m` at `seq`.
pub(super) fn request_pushes(
    tx: &Transaction<'_>,
    m: &NewMessage,
    seq: u64,
    users: &[Arc<str>],
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO pushes (kind, user, conv, seq, sender) VALUES ('message', ?1, ?2, ?3, ?4)",
    )?;
    for user in users {
        insert.execute(params![&**user, m.conv, seq as i64, &*m.from])?;
    }
    Ok(())
}

/// `user` read `conv` up to `seq`: the message requests it passed give way
/// to one badge request, if there were any.
pub(super) fn badge_after_read(tx: &Transaction<'_>, user: &str, conv: &str, seq: u64) -> rusqlite::Result<()> {
    let passed = tx
        .prepare_cached("DELETE FROM pushes WHERE user = ?1 AND conv = ?2 AND kind = 'message' AND seq <= ?3")?
        .execute(params![user, conv, seq as i64])?;
    if passed > 0 {
        // The newest badge says all an older one would: one per conversation.
        tx.prepare_cached("DELETE FROM pushes WHERE user = ?1 AND conv = ?2 AND kind = 'read'")?
            .execute(params![user, conv])?;
        tx.prepare_cached("INSERT INTO pushes (kind, user, conv, seq, sender) VALUES ('read', ?1, ?2, ?3, NULL)")?
            .execute(params![user, conv, seq as i64])?;
    }
    Ok(())
}

/// Remembers `device` of `user`, with when it was last seen, forgetting
/// all but the user's [`MAX_DEVICES_PER_USER`] latest.
pub(super) fn save_device(tx: &Transaction<'_>, user: &str, device: &str) -> rusqlite::Result<Outcome> {
    tx.prepare_cached(
        "INSERT INTO devices (user, device, last_seen) VALUES (?1, ?2, ?3)
         ON CONFLICT (user, device) DO UPDATE SET last_seen = excluded.last_seen",
    )?
    .execute(params![user, device, now_ms()])?;
    tx.prepare_cached(
        "DELETE FROM devices WHERE user = ?1 AND device NOT IN (
            SELECT device FROM devices WHERE user = ?1 ORDER BY last_seen DESC, device LIMIT ?2)",
    )?
    .execute(params![user, MAX_DEVICES_PER_USER as i64])?;
    Ok(Outcome::Saved)
}

/// The requests due for an offer, marked offered at `now`.
pub(super) fn offer_pushes(
    tx: &Transaction<'_>,
    now: i64,
    offered_before: i64,
    limit: usize,
) -> rusqlite::Result<Vec<PushRequest>> {
    let due = tx
        .prepare_cached(&format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE done = 0 AND offered < ?1 ORDER BY push_id LIMIT ?2"
        ))?
        .query_map(params![offered_before, limit as i64], push_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut mark = tx.prepare_cached("UPDATE pushes SET offered = ?1 WHERE push_id = ?2")?;
    for request in &due {
        mark.execute(params![now, request.push_id as i64])?;
    }
    Ok(due)
}

/// Ends `push_id`; whether it was pending. A finished message request is
/// kept for the badge of a later read, but only the newest per user and
/// conversation: it alone decides whether a read passes a pushed message.
pub(super) fn push_done(tx: &Transaction<'_>, push_id: u64) -> rusqlite::Result<bool> {
    let ended = tx
        .prepare_cached("UPDATE pushes SET done = 1 WHERE push_id = ?1 AND done = 0")?
        .execute([push_id as i64])?
        > 0;
    if ended {
        tx.prepare_cached(
            "DELETE FROM pushes WHERE done = 1 AND kind = 'message' AND push_id != ?1
             AND (user, conv) = (SELECT user, conv FROM pushes WHERE push_id = ?1)
             AND seq < (SELECT seq FROM pushes WHERE push_id = ?1)",
        )?
        .execute([push_id as i64])?;
    }
    Ok(ended)
}

/// See [`crate::store::Store::devices`].
pub(super) fn devices(conn: &Connection, user: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached("SELECT device FROM devices WHERE user = ?1 ORDER BY device")?
        .query_map([user], |r| r.get(0))?
        .collect()
}

/// See [`crate::store::Store::read_positions`].
pub(super) fn read_positions(conn: &Connection, conv: &str) -> rusqlite::Result<Vec<(String, u64)>> {
    conn.prepare_cached("SELECT user, seq FROM read_cursors WHERE conv = ?1 ORDER BY user")?
        .query_map([conv], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect()
}

/// See [`crate::store::Store::unread`].
pub(super) fn unread(conn: &Connection, user: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT count(*) FROM (
            SELECT 1 FROM (
                SELECT conv FROM user_conversations WHERE user = ?1
                UNION SELECT 'g:' || grp FROM group_members WHERE user = ?1
            ) mine
            JOIN messages m ON m.conv = mine.conv
            LEFT JOIN read_cursors r ON r.user = ?1 AND r.conv = mine.conv
            WHERE m.seq > coalesce(r.seq, 0) AND m.sender != ?1 AND m.kind IS NULL AND m.deleted = 0
            LIMIT ?2)",
    )?
    .query_row(params![user, UNREAD_CAP as i64], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
}

/// See [`crate::store::Store::pending_pushes`].
pub(super) fn pending_pushes(conn: &Connection) -> rusqlite::Result<Vec<PushRequest>> {
    conn.prepare_cached(&format!(
        "SELECT {PUSH_COLUMNS} FROM pushes WHERE done = 0 ORDER BY push_id"
    ))?
    .query_map([], push_from_row)?
    .collect()
}
