//! Devices and the push outbox: what the store keeps so the server can tell
//! people about messages, not the messages themselves.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use crate::protocol::now_ms;
use crate::store::jobs::Outcome;
use crate::store::{MAX_DEVICES_PER_USER, PushKind, PushRequest};

/// The columns [`push_from_row`] expects, in order.
pub(super) const PUSH_COLUMNS: &str = "push_id, kind, user_id, conv, seq, sender";

/// A push request from a row selected with [`PUSH_COLUMNS`].
pub(super) fn push_from_row(row: &Row) -> PushRequest {
    PushRequest {
        push_id: row.get::<_, i64>(0) as u64,
        kind: if row.get::<_, &str>(1) == PushKind::Read.as_str() {
            PushKind::Read
        } else {
            PushKind::Message
        },
        user: row.get(2),
        conv: row.get(3),
        seq: row.get::<_, i64>(4) as u64,
        from: row.get(5),
    }
}

/// `user` read `conv` up to `seq`: the message requests it passed give way
/// to one badge request, if there were any.
pub(super) async fn badge_after_read(
    tx: &Transaction<'_>,
    user: &str,
    conv: &str,
    seq: u64,
) -> Result<(), tokio_postgres::Error> {
    let seq = seq.min(i64::MAX as u64) as i64;
    let passed = tx
        .execute(
            "DELETE FROM pushes WHERE user_id = $1 AND conv = $2 AND kind = 'message' AND seq <= $3",
            &[&user, &conv, &seq],
        )
        .await?;
    if passed > 0 {
        // The newest badge says all an older one would: one per conversation.
        tx.execute(
            "DELETE FROM pushes WHERE user_id = $1 AND conv = $2 AND kind = 'read'",
            &[&user, &conv],
        )
        .await?;
        tx.execute(
            "INSERT INTO pushes (kind, user_id, conv, seq, sender) VALUES ('read', $1, $2, $3, NULL)",
            &[&user, &conv, &seq],
        )
        .await?;
    }
    Ok(())
}

/// Remembers `device` of `user`, with when it was last seen, forgetting
/// all but the user's [`MAX_DEVICES_PER_USER`] latest.
pub(super) async fn save_device(
    tx: &Transaction<'_>,
    user: &str,
    device: &str,
) -> Result<Outcome, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO devices (user_id, device, last_seen) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, device) DO UPDATE SET last_seen = excluded.last_seen",
        &[&user, &device, &now_ms()],
    )
    .await?;
    tx.execute(
        "DELETE FROM devices WHERE user_id = $1 AND device NOT IN (
            SELECT device FROM devices WHERE user_id = $1 ORDER BY last_seen DESC, device LIMIT $2)",
        &[&user, &(MAX_DEVICES_PER_USER as i64)],
    )
    .await?;
    Ok(Outcome::Saved)
}

/// The requests due for an offer, marked offered at `now`. Requests another
/// node is offering at the same moment are skipped, not offered twice.
pub(super) async fn offer_pushes(
    tx: &Transaction<'_>,
    now: i64,
    offered_before: i64,
    limit: usize,
) -> Result<Vec<PushRequest>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!(
                "UPDATE pushes SET offered = $1 WHERE push_id IN (
                    SELECT push_id FROM pushes WHERE NOT done AND offered < $2 ORDER BY push_id LIMIT $3
                    FOR UPDATE SKIP LOCKED)
                 RETURNING {PUSH_COLUMNS}"
            ),
            &[&now, &offered_before, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?;
    let mut due: Vec<PushRequest> = rows.iter().map(push_from_row).collect();
    due.sort_by_key(|request| request.push_id);
    Ok(due)
}

/// Ends `push_id`; whether it was pending. A finished message request is
/// kept for the badge of a later read, but only the newest per user and
/// conversation: it alone decides whether a read passes a pushed message.
pub(super) async fn push_done(tx: &Transaction<'_>, push_id: u64) -> Result<bool, tokio_postgres::Error> {
    let push_id = push_id.min(i64::MAX as u64) as i64;
    let ended = tx
        .query_opt(
            "UPDATE pushes SET done = true WHERE push_id = $1 AND NOT done RETURNING user_id, conv, seq",
            &[&push_id],
        )
        .await?;
    let Some(ended) = ended else {
        return Ok(false);
    };
    let (user, conv, seq): (&str, &str, i64) = (ended.get(0), ended.get(1), ended.get(2));
    tx.execute(
        "DELETE FROM pushes WHERE done AND kind = 'message' AND push_id <> $1
         AND user_id = $2 AND conv = $3 AND seq < $4",
        &[&push_id, &user, &conv, &seq],
    )
    .await?;
    Ok(true)
}
