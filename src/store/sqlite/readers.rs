//! Read-only connections for history and sync, reused across calls.
//!
//! In WAL mode readers never block the writer, and each read runs in its own
//! transaction, so a sync sees one consistent snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, params};

use super::rows::{MESSAGE_COLUMNS, message_from_row};
use crate::store::{
    ConversationRange, ConversationSummary, GroupRecord, SearchPage, SearchScope, StoreError, StoredMessage,
    SyncedConversation, SyncedPage, take_within,
};

/// A user's conversations: direct ones it took part in, and its groups'.
/// `?1` is the user.
const CONVERSATIONS_OF_USER: &str = "
    SELECT u.conv, coalesce(c.last_seq, 0), coalesce(r.seq, 0) FROM (
        SELECT conv FROM user_conversations WHERE user = ?1
        UNION SELECT 'g:' || grp FROM group_members WHERE user = ?1
    ) u
    LEFT JOIN conversations c ON c.conv = u.conv
    LEFT JOIN read_cursors r ON r.user = ?1 AND r.conv = u.conv
    ORDER BY u.conv";

/// Idle connections kept for reuse; more may be open while busy.
const IDLE_READERS: usize = 4;

/// A pool of reading connections to one database file.
pub(crate) struct Readers {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// A pool for the database at `path`; connections open on first use.
    pub(crate) fn new(path: &str) -> Readers {
        Readers {
            path: path.to_owned(),
            idle: Mutex::default(),
        }
    }

    /// Runs `read` on a pooled connection.
    pub(super) fn with<R>(&self, read: impl FnOnce(&mut Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let failed = |e: rusqlite::Error| StoreError(format!("{}: {e}", self.path));
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags).map_err(failed)?;
                conn.pragma_update(None, "query_only", true).map_err(failed)?;
                conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(failed)?;
                conn
            }
        };
        let result = read(&mut conn).map_err(failed);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// See [`crate::store::Store::history`].
    pub(crate) fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: usize,
        mut max_bytes: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        self.with(|conn| {
            let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = statement.query_map(params![conv, before, limit as i64], message_from_row)?;
            let mut found = take_within(rows, limit, &mut max_bytes)?;
            found.reverse();
            Ok(found)
        })
    }

    /// See [`crate::store::Store::sync`].
    pub(crate) fn sync(
        &self,
        user: &str,
        range: &ConversationRange,
        cursors: &HashMap<String, u64>,
        limit: usize,
        mut max_bytes: usize,
    ) -> Result<SyncedPage, StoreError> {
        self.with(|conn| {
            let snapshot = conn.transaction()?;
            let mut convs = snapshot
                .prepare_cached(&format!("SELECT * FROM ({CONVERSATIONS_OF_USER}) WHERE conv > ?2"))?
                .query_map(params![user, range.after.as_deref().unwrap_or("")], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let in_range = convs.iter().take_while(|(conv, _)| !range.ends_before(conv)).count();
            let more_after = in_range < convs.len();
            convs.truncate(in_range);
            let mut messages = snapshot.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let mut synced = Vec::with_capacity(convs.len());
            for (conv, last_seq) in convs {
                let after = cursors.get(&conv).copied().unwrap_or(0).min(i64::MAX as u64);
                let starved = max_bytes == 0;
                let found = if !starved && last_seq > after {
                    let rows = messages.query_map(params![conv, after as i64, limit as i64], message_from_row)?;
                    take_within(rows, limit, &mut max_bytes)?
                } else {
                    Vec::new()
                };
                synced.push(SyncedConversation::new(conv, last_seq, after, found, starved));
            }
            drop(messages);
            snapshot.commit()?;
            Ok(SyncedPage {
                convs: synced,
                more_after,
            })
        })
    }

    /// See [`crate::store::Store::search`]. The cursor is the rowid of the
    /// last message of the page before; one that is not a rowid finds nothing.
    pub(crate) fn search(
        &self,
        scope: SearchScope<'_>,
        terms: &[String],
        after: Option<&str>,
        limit: usize,
        mut max_bytes: usize,
    ) -> Result<SearchPage, StoreError> {
        let Some(below) = after.map_or(Some(i64::MAX), |a| a.parse::<i64>().ok()) else {
            return Ok(SearchPage::default());
        };
        // Each term a quoted FTS5 string: FTS5 cuts and folds it as it did the
        // text (a term of several words is a phrase), and whatever it holds is
        // words to find, never query syntax; only in the text column.
        let quoted = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
        let words = terms.iter().map(|w| quoted(w)).collect::<Vec<_>>().join(" ");
        let mut query = format!("text : ({words})");
        // `+m.conv`: the index narrows the rows; the messages table only confirms.
        let (filter, named) = match scope {
            SearchScope::User(user) => (
                "+m.conv IN (SELECT conv FROM user_conversations WHERE user = ?4
                             UNION SELECT 'g:' || grp FROM group_members WHERE user = ?4)",
                Some(user),
            ),
            SearchScope::Conv(conv) => {
                // The conversation's tokens as a phrase; ids differing only
                // in case share them, and `m.conv` tells those apart.
                query.push_str(&format!(" AND conv : {}", quoted(conv)));
                ("+m.conv = ?4", Some(conv))
            }
            SearchScope::All => ("?4 IS NULL", None),
        };
        // The index has a `conv` column too: the message's columns are named by table.
        let columns = MESSAGE_COLUMNS
            .split(", ")
            .map(|c| format!("m.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.with(|conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {columns}, m.rowid FROM message_text t JOIN messages m ON m.rowid = t.rowid
                 WHERE message_text MATCH ?1 AND t.rowid < ?2 AND m.kind IS NULL AND m.deleted = 0 AND {filter}
                 ORDER BY t.rowid DESC LIMIT ?3"
            ))?;
            let mut rowids = Vec::new();
            let rows = statement.query_map(params![query, below, limit as i64 + 1, named], |r| {
                rowids.push(r.get::<_, i64>(13)?);
                message_from_row(r)
            })?;
            let results = take_within(rows, limit + 1, &mut max_bytes)?;
            Ok(SearchPage::cut(results, &rowids, limit, max_bytes == 0))
        })
    }

    /// See [`crate::store::Store::conversations`].
    pub(crate) fn conversations(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.with(|conn| {
            conn.prepare_cached(&format!(
                "SELECT * FROM ({CONVERSATIONS_OF_USER}) WHERE conv > ?2 ORDER BY conv LIMIT ?3"
            ))?
            .query_map(params![user, after.unwrap_or(""), limit as i64], |r| {
                Ok(ConversationSummary {
                    conv: r.get(0)?,
                    last_seq: r.get::<_, i64>(1)? as u64,
                    read_seq: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect()
        })
    }

    /// See [`crate::store::Store::upload_usage`].
    pub(crate) fn upload_usage(&self, user: &str) -> Result<u64, StoreError> {
        self.with(|conn| super::files::upload_usage(conn, user))
    }

    /// See [`crate::store::Store::file`].
    pub(crate) fn file(
        &self,
        file_id: &str,
        reader: Option<&str>,
    ) -> Result<Option<crate::store::FileRecord>, StoreError> {
        self.with(|conn| super::files::file(conn, file_id, reader))
    }

    /// See [`crate::store::Store::groups`].
    pub(crate) fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.with(|conn| {
            let snapshot = conn.transaction()?;
            let mut groups = snapshot
                .prepare("SELECT grp, closed FROM groups ORDER BY grp")?
                .query_map([], |r| {
                    Ok(GroupRecord {
                        group: r.get(0)?,
                        closed: r.get(1)?,
                        members: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut members = snapshot.prepare("SELECT user FROM group_members WHERE grp = ?1 ORDER BY user")?;
            for group in &mut groups {
                group.members = members
                    .query_map([&group.group], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
            }
            drop(members);
            snapshot.commit()?;
            Ok(groups)
        })
    }
}
