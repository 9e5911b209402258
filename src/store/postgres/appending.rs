//! A run of plain messages (no target, no files) stored by one statement:
//! each conversation's counter row moves once by the run's count, and the
//! messages, their push requests and their direct conversations' members
//! are inserted as sets. The per-statement cost PostgreSQL pays (planning,
//! executor start, a round trip) is then paid once per run, not per message.

use std::sync::Arc;

use deadpool_postgres::Transaction;

use super::rows::indexed_text;
use super::writer::Failure;
use crate::store::jobs::Outcome;
use crate::store::{NewMessage, Placement};

/// `$1…$7`: the run's messages as parallel arrays (conversation, sender,
/// recipient, group, client id, body, ts, folded words: `$8`); `$9`/`$10`
/// the members to record, by message number (1-based, as `ORDINALITY`);
/// `$11`/`$12` the push requests, the same way. A message whose sender and
/// client id are stored (or earlier in the run) is not stored again. One
/// row per message, in order: whether it is new, and where it is.
const APPEND_RUN: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::bigint[], $8::text[])
            WITH ORDINALITY AS i (conv, sender, recipient, grp, client_id, body, ts, words, ord)
    ), stored_before AS (
        SELECT i.ord, m.conv, m.seq, m.ts FROM input i
        JOIN messages m ON m.sender = i.sender AND m.client_id = i.client_id
    ), firsts AS (
        SELECT i.*, row_number() OVER (PARTITION BY i.sender, i.client_id ORDER BY i.ord) AS nth
        FROM input i WHERE NOT EXISTS (SELECT FROM stored_before s WHERE s.ord = i.ord)
    ), fresh AS (
        SELECT f.*, row_number() OVER (PARTITION BY f.conv ORDER BY f.ord) AS k FROM firsts f WHERE f.nth = 1
    ), counts AS (
        SELECT conv, count(*) AS n FROM fresh GROUP BY conv
    ), bumped AS (
        UPDATE conversations c SET last_seq = c.last_seq + counts.n FROM counts WHERE c.conv = counts.conv
        RETURNING c.conv, c.last_seq - counts.n AS base
    ), stored AS (
        INSERT INTO messages (conv, seq, sender, recipient, grp, client_id, body, ts, words)
        SELECT f.conv, b.base + f.k, f.sender, f.recipient, f.grp, f.client_id, f.body, f.ts,
               to_tsvector('simple'::regconfig, f.words)
        FROM fresh f JOIN bumped b ON b.conv = f.conv ORDER BY f.ord
        RETURNING conv, seq, sender, client_id, ts
    ), placed AS (
        SELECT f.ord, s.conv, s.seq FROM fresh f JOIN stored s ON s.sender = f.sender AND s.client_id = f.client_id
    ), members AS (
        INSERT INTO user_conversations (user_id, conv)
        SELECT u.user_id, p.conv FROM unnest($9::bigint[], $10::text[]) AS u (ord, user_id) JOIN placed p USING (ord)
        ON CONFLICT DO NOTHING
    ), pushed AS (
        INSERT INTO pushes (kind, user_id, conv, seq, sender)
        SELECT 'message', u.user_id, p.conv, p.seq, i.sender
        FROM unnest($11::bigint[], $12::text[]) AS u (ord, user_id) JOIN placed p USING (ord) JOIN input i USING (ord)
        ON CONFLICT DO NOTHING
    )
    SELECT i.ord, fr.ord IS NOT NULL, coalesce(sb.seq, st.seq), coalesce(sb.conv, st.conv), coalesce(sb.ts, st.ts)
    FROM input i
    LEFT JOIN stored_before sb ON sb.ord = i.ord
    LEFT JOIN fresh fr ON fr.ord = i.ord
    LEFT JOIN stored st ON st.sender = i.sender AND st.client_id = i.client_id
    ORDER BY i.ord";

/// One message of a run: the message, whom to push, the members to record.
pub(super) struct Plain<'m> {
    pub(super) message: &'m NewMessage,
    pub(super) push_to: &'m [Arc<str>],
    pub(super) members: Vec<&'m str>,
}

/// Stores the run `plain` (plain messages, in order) with one statement;
/// an outcome per message, in order.
pub(super) async fn append_run(tx: &Transaction<'_>, plain: &[Plain<'_>]) -> Result<Vec<Outcome>, Failure> {
    let column = |f: fn(&NewMessage) -> Option<&str>| plain.iter().map(|p| f(p.message)).collect::<Vec<_>>();
    let convs = column(|m| Some(&m.conv));
    let senders = column(|m| Some(&m.from));
    let recipients = column(|m| m.to.as_deref());
    let groups = column(|m| m.group.as_deref());
    let client_ids = column(|m| Some(&m.client_id));
    let bodies = column(|m| Some(m.body.get()));
    let ts: Vec<i64> = plain.iter().map(|p| p.message.ts).collect();
    let words: Vec<String> = plain.iter().map(|p| indexed_text(&p.message.body)).collect();
    let (mut member_ords, mut members, mut push_ords, mut pushes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (ord, p) in (1i64..).zip(plain) {
        for user in &p.members {
            member_ords.push(ord);
            members.push(*user);
        }
        for user in p.push_to {
            push_ords.push(ord);
            pushes.push(&**user);
        }
    }
    let statement = tx.prepare_cached(APPEND_RUN).await?;
    let rows = tx
        .query(
            &statement,
            &[
                &convs,
                &senders,
                &recipients,
                &groups,
                &client_ids,
                &bodies,
                &ts,
                &words,
                &member_ords,
                &members,
                &push_ords,
                &pushes,
            ],
        )
        .await?;
    if rows.len() != plain.len() {
        return Err(Failure::Data(crate::store::StoreError(format!(
            "PostgreSQL: {} outcomes for {} messages",
            rows.len(),
            plain.len()
        ))));
    }
    Ok(rows
        .iter()
        .map(|row| {
            let seq = row.get::<_, i64>(2) as u64;
            if row.get::<_, bool>(1) {
                Outcome::New(seq)
            } else {
                Outcome::Duplicate(Placement {
                    conv: row.get(3),
                    seq,
                    ts: row.get(4),
                })
            }
        })
        .collect())
}
