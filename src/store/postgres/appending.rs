//! Messages stored by one statement: each conversation's counter row moves
//! once by the run's count, and the messages, their push requests, file
//! references and direct conversations' members are inserted as sets. The
//! per-statement cost PostgreSQL pays (planning, executor start, a round
//! trip) is then paid once per run, not per message. A run of plain
//! messages is stored this way; so is an event or a message with files, once
//! checked, as a run of one.

use std::sync::Arc;

use deadpool_postgres::Transaction;

use super::rows::indexed_text;
use super::writer::Failure;
use crate::store::jobs::Outcome;
use crate::store::{MessageKind, NewMessage, Placement};

/// `$1…$8`, `$13`, `$14`: the run's messages as parallel arrays
/// (conversation, sender, recipient, group, client id, body, ts, folded
/// words or NULL for an event, kind, target); `$9`/`$10` the members to
/// record, by message number (1-based, as `ORDINALITY`); `$11`/`$12` the
/// push requests, the same way; `$15`/`$16` the files referred to. A message whose sender and
/// client id are stored, or earlier in the run, is not stored again. The
/// answer has a row per message, in three kinds: `stored` (its seq now),
/// `old` (where the stored one is), `again` (its first copy in this run is
/// message number `seq`). No step joins two sets of the run's size with
/// each other: seqs come from a window over the run and the counter rows
/// (locked by the batch already), not from joining what was updated.
const APPEND_RUN: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::bigint[], $8::text[], $13::text[], $14::bigint[])
            WITH ORDINALITY AS i (conv, sender, recipient, grp, client_id, body, ts, words, kind, target, ord)
    ), numbered AS (
        SELECT i.*, old.conv AS old_conv, old.seq AS old_seq, old.ts AS old_ts,
               first_value(i.ord) OVER (PARTITION BY i.sender, i.client_id ORDER BY i.ord) AS first_ord
        FROM input i
        LEFT JOIN LATERAL (
            SELECT m.conv, m.seq, m.ts FROM messages m WHERE m.sender = i.sender AND m.client_id = i.client_id
        ) old ON true
    ), fresh AS (
        SELECT n.ord, n.conv, n.sender, n.recipient, n.grp, n.client_id, n.body, n.ts, n.words, n.kind, n.target,
               c.last_seq + row_number() OVER (PARTITION BY n.conv ORDER BY n.ord) AS seq
        FROM numbered n JOIN conversations c ON c.conv = n.conv
        WHERE n.old_seq IS NULL AND n.first_ord = n.ord
    ), bumped AS (
        UPDATE conversations c SET last_seq = top.seq
        FROM (SELECT conv, max(seq) AS seq FROM fresh GROUP BY conv) top WHERE c.conv = top.conv
    ), stored AS (
        INSERT INTO messages (conv, seq, sender, recipient, grp, client_id, body, ts, kind, target, words)
        SELECT conv, seq, sender, recipient, grp, client_id, body, ts, kind, target,
               to_tsvector('simple'::regconfig, words)
        FROM fresh ORDER BY ord
    ), members AS (
        INSERT INTO user_conversations (user_id, conv)
        SELECT u.user_id, f.conv FROM unnest($9::bigint[], $10::text[]) AS u (ord, user_id) JOIN fresh f USING (ord)
        ON CONFLICT DO NOTHING
    ), pushed AS (
        INSERT INTO pushes (kind, user_id, conv, seq, sender)
        SELECT 'message', u.user_id, f.conv, f.seq, f.sender
        FROM unnest($11::bigint[], $12::text[]) AS u (ord, user_id) JOIN fresh f USING (ord)
        ON CONFLICT DO NOTHING
    ), referred AS (
        INSERT INTO file_refs (file_id, conv, seq)
        SELECT r.file_id, f.conv, f.seq FROM unnest($15::bigint[], $16::text[]) AS r (ord, file_id) JOIN fresh f USING (ord)
        ON CONFLICT DO NOTHING
    )
    SELECT 'stored', ord, seq, conv, ts FROM fresh
    UNION ALL SELECT 'old', ord, old_seq, old_conv, old_ts FROM numbered WHERE old_seq IS NOT NULL
    UNION ALL SELECT 'again', ord, first_ord, NULL, NULL FROM numbered WHERE old_seq IS NULL AND first_ord <> ord";

/// One message of a run: the message, whom to push, the members to record.
pub(super) struct Plain<'m> {
    pub(super) message: &'m NewMessage,
    pub(super) push_to: &'m [Arc<str>],
    pub(super) members: Vec<&'m str>,
}

/// Stores the run `plain` (messages and events that passed their checks,
/// in order) with one statement; an outcome per message, in order.
pub(super) async fn append_run(tx: &Transaction<'_>, plain: &[Plain<'_>]) -> Result<Vec<Outcome>, Failure> {
    let column = |f: fn(&NewMessage) -> Option<&str>| plain.iter().map(|p| f(p.message)).collect::<Vec<_>>();
    let convs = column(|m| Some(&m.conv));
    let senders = column(|m| Some(&m.from));
    let recipients = column(|m| m.to.as_deref());
    let groups = column(|m| m.group.as_deref());
    let client_ids = column(|m| Some(&m.client_id));
    let bodies = column(|m| Some(m.body.get()));
    let ts: Vec<i64> = plain.iter().map(|p| p.message.ts).collect();
    let words: Vec<Option<String>> = (plain.iter())
        .map(|p| (p.message.kind == MessageKind::Message).then(|| indexed_text(&p.message.body)))
        .collect();
    let kinds = column(|m| m.kind.name());
    let targets: Vec<Option<i64>> = (plain.iter())
        .map(|p| p.message.target.map(|seq| seq.min(i64::MAX as u64) as i64))
        .collect();
    let (mut member_ords, mut members, mut push_ords, mut pushes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut file_ords, mut files) = (Vec::new(), Vec::new());
    for (ord, p) in (1i64..).zip(plain) {
        for file in &p.message.files {
            file_ords.push(ord);
            files.push(file.as_str());
        }
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
                &kinds,
                &targets,
                &file_ords,
                &files,
            ],
        )
        .await?;
    // Message number (from 1) → its outcome; a copy of an earlier one takes that one's place.
    let mut outcomes: Vec<Option<Outcome>> = (0..plain.len()).map(|_| None).collect();
    let mut again = Vec::new();
    for row in &rows {
        let (kind, ord, seq): (&str, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let slot = outcomes.get_mut(ord as usize - 1).ok_or_else(|| unexpected(ord))?;
        *slot = match kind {
            "stored" => Some(Outcome::New(seq as u64)),
            "old" => Some(Outcome::Duplicate(Placement {
                conv: row.get(3),
                seq: seq as u64,
                ts: row.get(4),
            })),
            _ => {
                again.push((ord as usize - 1, seq as usize - 1));
                None
            }
        };
    }
    for (copy, first) in again {
        let placement = match (outcomes.get(first), plain.get(first)) {
            (Some(Some(Outcome::New(seq))), Some(p)) => Placement {
                conv: p.message.conv.clone(),
                seq: *seq,
                ts: p.message.ts,
            },
            _ => return Err(unexpected(first as i64 + 1)),
        };
        outcomes[copy] = Some(Outcome::Duplicate(placement));
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| outcome.ok_or_else(|| unexpected(index as i64 + 1)))
        .collect()
}

/// The statement answered something other than one outcome per message.
fn unexpected(ord: i64) -> Failure {
    Failure::Data(crate::store::StoreError(format!(
        "PostgreSQL: no outcome for message {ord} of a run"
    )))
}
