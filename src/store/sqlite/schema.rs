//! The database schema and its migrations.
//!
//! `PRAGMA user_version` counts the migrations applied; `application_id`
//! marks the file as imbed's, so a database that belongs to something else
//! is refused instead of being written into.

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use serde_json::value::RawValue;

use crate::store::amend::searchable_text;

use crate::store::StoreError;

/// "imbd": the application id written into every imbed database.
pub(crate) const APPLICATION_ID: i32 = 0x696d_6264;

/// Migration N (from 1) takes a database from user_version N-1 to N.
const MIGRATIONS: &[&str] = &[
    // 1: messages with their per-conversation sequence and idempotency keys,
    // each user's conversations (for sync), and read cursors.
    "CREATE TABLE conversations (
        conv TEXT PRIMARY KEY NOT NULL,
        last_seq INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE messages (
        conv TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT,
        grp TEXT,
        client_id TEXT NOT NULL,
        body TEXT NOT NULL,
        ts INTEGER NOT NULL
     );
     CREATE UNIQUE INDEX messages_by_conv_and_seq ON messages (conv, seq);
     CREATE UNIQUE INDEX messages_by_sender_and_client_id ON messages (sender, client_id);
     CREATE TABLE user_conversations (
        user TEXT NOT NULL,
        conv TEXT NOT NULL,
        PRIMARY KEY (user, conv)
     ) WITHOUT ROWID;
     CREATE TABLE read_cursors (
        user TEXT NOT NULL,
        conv TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user, conv)
     ) WITHOUT ROWID;",
    // 2: groups and their members.
    "CREATE TABLE groups (
        grp TEXT PRIMARY KEY NOT NULL,
        closed INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE group_members (
        grp TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (grp, user)
     ) WITHOUT ROWID;
     CREATE INDEX group_members_by_user ON group_members (user, grp);",
    // 3: devices, the push outbox, and read positions by conversation.
    // AUTOINCREMENT: a push id is never reused, so one the host reports done
    // can never name a later request. A message request the host finished
    // stays (done) until the user reads past it: that read asks for a badge;
    // only the newest done one per user and conversation is kept for that.
    "CREATE TABLE devices (
        user TEXT NOT NULL,
        device TEXT NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (user, device)
     ) WITHOUT ROWID;
     CREATE TABLE pushes (
        push_id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        user TEXT NOT NULL,
        conv TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender TEXT,
        offered INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0
     );
     CREATE UNIQUE INDEX pushes_by_target ON pushes (user, conv, kind, seq);
     CREATE INDEX pushes_pending ON pushes (offered, push_id) WHERE done = 0;
     CREATE INDEX read_cursors_by_conv ON read_cursors (conv);",
    // 4: events that change a message (kind, target) and the state they
    // leave it in; the search index; uploaded files and the messages that
    // refer to them. The index is contentless (the text is in `messages`
    // already), so a row leaves it by a 'delete' that names the words it
    // had; with `secure-delete` those words then leave the file itself, so
    // a deleted message's words do not linger in the index. The writer
    // indexes each new message itself (a trigger's insert into the index
    // costs three times as much); triggers keep it in step with edits,
    // deletes and prunes. A body's text is `imbed_search_text` of it
    // ([`register_functions`]), the same words the in-memory store finds. The
    // conversation is indexed too, so a search in one conversation
    // intersects its words with the conversation's instead of testing each
    // of its messages against the words.
    "ALTER TABLE messages ADD COLUMN kind TEXT;
     ALTER TABLE messages ADD COLUMN target INTEGER;
     ALTER TABLE messages ADD COLUMN edited INTEGER;
     ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE messages ADD COLUMN reactions TEXT;
     CREATE INDEX messages_events_by_target ON messages (conv, target) WHERE kind IS NOT NULL;
     CREATE VIRTUAL TABLE message_text USING fts5(
        text, conv, content = '', tokenize = 'unicode61 remove_diacritics 2'
     );
     INSERT INTO message_text (message_text, rank) VALUES ('secure-delete', 1);
     INSERT INTO message_text (rowid, text, conv)
        SELECT rowid, imbed_search_text(body), conv FROM messages;
     CREATE TRIGGER message_reindexed AFTER UPDATE OF body ON messages
     WHEN new.kind IS NULL AND old.body IS NOT new.body BEGIN
        INSERT INTO message_text (message_text, rowid, text, conv)
        SELECT 'delete', old.rowid, imbed_search_text(old.body), old.conv WHERE old.deleted = 0;
        INSERT INTO message_text (rowid, text, conv)
        SELECT new.rowid, imbed_search_text(new.body), new.conv WHERE new.deleted = 0;
     END;
     CREATE TRIGGER message_unindexed AFTER DELETE ON messages WHEN old.kind IS NULL AND old.deleted = 0 BEGIN
        INSERT INTO message_text (message_text, rowid, text, conv)
        VALUES ('delete', old.rowid, imbed_search_text(old.body), old.conv);
     END;
     CREATE TABLE files (
        file_id TEXT PRIMARY KEY NOT NULL,
        size INTEGER NOT NULL,
        content_type TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE uploads (
        user TEXT NOT NULL,
        file_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (user, file_id)
     ) WITHOUT ROWID;
     CREATE INDEX uploads_by_file ON uploads (file_id);
     CREATE TABLE file_refs (
        file_id TEXT NOT NULL,
        conv TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (file_id, conv, seq)
     ) WITHOUT ROWID;
     CREATE INDEX file_refs_by_message ON file_refs (conv, seq);
     CREATE TRIGGER message_files_released AFTER DELETE ON messages BEGIN
        DELETE FROM file_refs WHERE conv = old.conv AND seq = old.seq;
     END;",
];

/// Adds to `conn` the SQL functions the schema's triggers call:
/// `imbed_search_text(body)`, a message body's searchable text
/// ([`searchable_text`]). Every connection that writes messages needs them.
pub(crate) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "imbed_search_text",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let body: String = ctx.get(0)?;
            Ok(RawValue::from_string(body).map_or_else(|_| String::new(), |body| searchable_text(&body)))
        },
    )
}

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `path` to [`SCHEMA_VERSION`], refusing one that is
/// newer or not imbed's.
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let failed = |e: rusqlite::Error| StoreError(format!("{path}: {e}"));
    register_functions(conn).map_err(failed)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(failed)?;
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(failed)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| {
            r.get(0)
        })
        .map_err(failed)?;
    if application_id != APPLICATION_ID && (application_id != 0 || tables > 0) {
        return Err(StoreError(format!(
            "{path} is a SQLite database of another application, not imbed's"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError(format!(
            "{path} has schema version {version}, newer than this imbed supports ({SCHEMA_VERSION}); upgrade imbed"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let target = index as i64 + 1;
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", target).map_err(failed)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}
