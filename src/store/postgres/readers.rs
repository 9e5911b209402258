//! Reads: history, sync, search, conversations, groups, and the rest the
//! server asks of the store outside a write. Each runs on a pooled
//! connection; a sync reads one snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::amending::VISIBLE_TO_USER;
use super::notices::{PUSH_COLUMNS, push_from_row};
use super::rows::{MESSAGE_COLUMNS, message_from_row};
use super::writer::Failure;
use crate::store::words::words;
use crate::store::{
    ConversationRange, ConversationSummary, FileRecord, GroupRecord, PushRequest, SearchPage, SearchScope,
    StoredMessage, SyncedConversation, SyncedPage, UNREAD_CAP, take_within,
};

/// A user's conversations: direct ones it took part in, and its groups'.
/// `$1` is the user.
const CONVERSATIONS_OF_USER: &str = "
    SELECT u.conv, coalesce(c.last_seq, 0) AS last_seq, coalesce(r.seq, 0) AS read_seq FROM (
        SELECT conv FROM user_conversations WHERE user_id = $1
        UNION SELECT 'g:' || grp FROM group_members WHERE user_id = $1
    ) u
    LEFT JOIN conversations c ON c.conv = u.conv
    LEFT JOIN read_cursors r ON r.user_id = $1 AND r.conv = u.conv";

/// A seq or a count as PostgreSQL's bigint.
fn big(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// Messages from `rows` while `budget` lasts, as [`take_within`] takes them.
fn messages_within(
    rows: &[tokio_postgres::Row],
    limit: usize,
    budget: &mut usize,
) -> Result<Vec<Arc<StoredMessage>>, Failure> {
    Ok(take_within(rows.iter().map(message_from_row), limit, budget)?)
}

/// See [`crate::store::Store::history`].
pub(super) async fn history(
    client: &Object,
    conv: &str,
    before: Option<u64>,
    limit: usize,
    mut max_bytes: usize,
) -> Result<Vec<Arc<StoredMessage>>, Failure> {
    let before = before.map_or(i64::MAX, big);
    let rows = client
        .query(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"),
            &[&conv, &before, &big(limit as u64)],
        )
        .await?;
    let mut found = messages_within(&rows, limit, &mut max_bytes)?;
    found.reverse();
    Ok(found)
}

/// See [`crate::store::Store::sync`].
pub(super) async fn sync(
    client: &mut Object,
    user: &str,
    range: &ConversationRange,
    cursors: &HashMap<String, u64>,
    limit: usize,
    mut max_bytes: usize,
) -> Result<SyncedPage, Failure> {
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let rows = snapshot
        .query(
            &format!("SELECT conv, last_seq FROM ({CONVERSATIONS_OF_USER}) mine WHERE conv > $2 ORDER BY conv"),
            &[&user, &range.after.as_deref().unwrap_or("")],
        )
        .await?;
    let mut convs: Vec<(String, u64)> = rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect();
    let in_range = convs.iter().take_while(|(conv, _)| !range.ends_before(conv)).count();
    let more_after = in_range < convs.len();
    convs.truncate(in_range);
    let messages = snapshot
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .await?;
    let mut synced = Vec::with_capacity(convs.len());
    for (conv, last_seq) in convs {
        let after = cursors.get(&conv).copied().unwrap_or(0).min(i64::MAX as u64);
        let starved = max_bytes == 0;
        let found = if !starved && last_seq > after {
            let rows = snapshot
                .query(&messages, &[&conv, &(after as i64), &big(limit as u64)])
                .await?;
            messages_within(&rows, limit, &mut max_bytes)?
        } else {
            Vec::new()
        };
        synced.push(SyncedConversation::new(conv, last_seq, after, found, starved));
    }
    snapshot.commit().await?;
    Ok(SyncedPage {
        convs: synced,
        more_after,
    })
}

/// See [`crate::store::Store::search`]. Each term is a phrase of its
/// folded words; a message must have every term. The cursor is the id of
/// the last message of the page before; one that is not an id finds nothing.
pub(super) async fn search(
    client: &Object,
    scope: SearchScope<'_>,
    terms: &[String],
    after: Option<&str>,
    limit: usize,
    mut max_bytes: usize,
) -> Result<SearchPage, Failure> {
    let Some(below) = after.map_or(Some(i64::MAX), |a| a.parse::<i64>().ok()) else {
        return Ok(SearchPage::default());
    };
    let phrases: Vec<String> = terms
        .iter()
        .map(|term| words(term).join(" "))
        .filter(|phrase| !phrase.is_empty())
        .collect();
    let (filter, named) = match scope {
        SearchScope::User(user) => (
            "conv IN (SELECT conv FROM user_conversations WHERE user_id = $3
                      UNION SELECT 'g:' || grp FROM group_members WHERE user_id = $3)",
            Some(user),
        ),
        SearchScope::Conv(conv) => ("conv = $3", Some(conv)),
        SearchScope::All => ("$3::text IS NULL", None),
    };
    let mut matching = String::from("true");
    for n in 0..phrases.len() {
        matching.push_str(&format!(
            " AND words @@ phraseto_tsquery('simple'::regconfig, ${})",
            n + 4
        ));
    }
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, id FROM messages
         WHERE {matching} AND id < $1 AND kind IS NULL AND NOT deleted AND {filter}
         ORDER BY id DESC LIMIT $2"
    );
    let asked = big(limit as u64 + 1);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&below, &asked, &named];
    params.extend(phrases.iter().map(|p| p as &(dyn ToSql + Sync)));
    let rows = client.query(&sql, &params).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.get(13)).collect();
    let found = messages_within(&rows, limit + 1, &mut max_bytes)?;
    Ok(SearchPage::cut(found, &ids, limit, max_bytes == 0))
}

/// See [`crate::store::Store::conversations`].
pub(super) async fn conversations(
    client: &Object,
    user: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ConversationSummary>, Failure> {
    let rows = client
        .query(
            &format!("SELECT * FROM ({CONVERSATIONS_OF_USER}) mine WHERE conv > $2 ORDER BY conv LIMIT $3"),
            &[&user, &after.unwrap_or(""), &big(limit as u64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ConversationSummary {
            conv: r.get(0),
            last_seq: r.get::<_, i64>(1) as u64,
            read_seq: r.get::<_, i64>(2) as u64,
        })
        .collect())
}

/// See [`crate::store::Store::groups`].
pub(super) async fn groups(client: &Object) -> Result<Vec<GroupRecord>, Failure> {
    let rows = client
        .query(
            "SELECT g.grp, g.closed,
                coalesce(array_agg(m.user_id ORDER BY m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}')
             FROM groups g LEFT JOIN group_members m ON m.grp = g.grp GROUP BY g.grp, g.closed ORDER BY g.grp",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| GroupRecord {
            group: r.get(0),
            closed: r.get(1),
            members: r.get(2),
        })
        .collect())
}

/// See [`crate::store::Store::devices`].
pub(super) async fn devices(client: &Object, user: &str) -> Result<Vec<String>, Failure> {
    let rows = client
        .query(
            "SELECT device FROM devices WHERE user_id = $1 ORDER BY device",
            &[&user],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// See [`crate::store::Store::read_positions`].
pub(super) async fn read_positions(client: &Object, conv: &str) -> Result<Vec<(String, u64)>, Failure> {
    let rows = client
        .query(
            "SELECT user_id, seq FROM read_cursors WHERE conv = $1 ORDER BY user_id",
            &[&conv],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
}

/// See [`crate::store::Store::unread`].
pub(super) async fn unread(client: &Object, user: &str) -> Result<u64, Failure> {
    let row = client
        .query_one(
            "SELECT count(*) FROM (
                SELECT FROM (
                    SELECT conv FROM user_conversations WHERE user_id = $1
                    UNION SELECT 'g:' || grp FROM group_members WHERE user_id = $1
                ) mine
                JOIN messages m ON m.conv = mine.conv
                LEFT JOIN read_cursors r ON r.user_id = $1 AND r.conv = mine.conv
                WHERE m.seq > coalesce(r.seq, 0) AND m.sender <> $1 AND m.kind IS NULL AND NOT m.deleted
                LIMIT $2) counted",
            &[&user, &big(UNREAD_CAP)],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// See [`crate::store::Store::pending_pushes`].
pub(super) async fn pending_pushes(client: &Object) -> Result<Vec<PushRequest>, Failure> {
    let rows = client
        .query(
            &format!("SELECT {PUSH_COLUMNS} FROM pushes WHERE NOT done ORDER BY push_id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(push_from_row).collect())
}

/// See [`crate::store::Store::upload_usage`].
pub(super) async fn upload_usage(client: &Object, user: &str) -> Result<u64, Failure> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(f.size), 0)::bigint FROM uploads u JOIN files f ON f.file_id = u.file_id
             WHERE u.user_id = $1",
            &[&user],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// See [`crate::store::Store::file`].
pub(super) async fn file(client: &Object, file_id: &str, reader: Option<&str>) -> Result<Option<FileRecord>, Failure> {
    let row = match reader {
        None => {
            client
                .query_opt("SELECT size, content_type FROM files WHERE file_id = $1", &[&file_id])
                .await?
        }
        Some(user) => {
            client
                .query_opt(
                    &format!("SELECT size, content_type FROM files WHERE file_id = $2 AND ({VISIBLE_TO_USER})"),
                    &[&user, &file_id],
                )
                .await?
        }
    };
    Ok(row.map(|r| FileRecord {
        file_id: file_id.to_owned(),
        size: r.get::<_, i64>(0) as u64,
        content_type: r.get(1),
    }))
}
