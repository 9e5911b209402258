//! The PostgreSQL schema and its migrations.
//!
//! imbed's tables live in a schema of their own, `imbed`, so a database the
//! operator shares with other software keeps its names apart. The one row of
//! `imbed.schema_version` counts the migrations applied. Nodes starting at
//! once each take the same transaction-scoped advisory lock first, so the
//! first migrates and the others find the work done.

use deadpool_postgres::Object;

use crate::store::StoreError;

/// The advisory lock key nodes migrate under: "imbd", as the SQLite
/// store's application id.
const MIGRATION_LOCK: i64 = 0x696d_6264;

/// Migration N (from 1) takes the schema from version N-1 to N. Text
/// compares as bytes (`COLLATE "C"`), the order conversation ranges and
/// cursors are in everywhere else.
const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store has at its version 4, at once.
    // `conversations.last_seq` is the counter each message takes its seq
    // from, under the row's lock. `messages.id` orders search results and
    // age retention; `words` is the folded searchable text (see
    // `indexed_text`), NULL for events and deleted messages.
    r#"CREATE TABLE conversations (
        conv text COLLATE "C" PRIMARY KEY,
        last_seq bigint NOT NULL
     );
     CREATE TABLE messages (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        conv text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        sender text COLLATE "C" NOT NULL,
        recipient text COLLATE "C",
        grp text COLLATE "C",
        client_id text COLLATE "C" NOT NULL,
        body text NOT NULL,
        ts bigint NOT NULL,
        kind text,
        target bigint,
        edited bigint,
        deleted boolean NOT NULL DEFAULT false,
        reactions text,
        words tsvector,
        UNIQUE (conv, seq),
        UNIQUE (sender, client_id)
     );
     CREATE INDEX messages_events_by_target ON messages (conv, target) WHERE kind IS NOT NULL;
     CREATE INDEX messages_by_words ON messages USING gin (words);
     CREATE TABLE user_conversations (
        user_id text COLLATE "C",
        conv text COLLATE "C",
        PRIMARY KEY (user_id, conv)
     );
     CREATE TABLE read_cursors (
        user_id text COLLATE "C",
        conv text COLLATE "C",
        seq bigint NOT NULL,
        PRIMARY KEY (user_id, conv)
     );
     CREATE INDEX read_cursors_by_conv ON read_cursors (conv);
     CREATE TABLE groups (
        grp text COLLATE "C" PRIMARY KEY,
        closed boolean NOT NULL
     );
     CREATE TABLE group_members (
        grp text COLLATE "C",
        user_id text COLLATE "C",
        PRIMARY KEY (grp, user_id)
     );
     CREATE INDEX group_members_by_user ON group_members (user_id, grp);
     CREATE TABLE devices (
        user_id text COLLATE "C",
        device text COLLATE "C",
        last_seen bigint NOT NULL,
        PRIMARY KEY (user_id, device)
     );
     CREATE TABLE pushes (
        push_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind text NOT NULL,
        user_id text COLLATE "C" NOT NULL,
        conv text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        sender text,
        offered bigint NOT NULL DEFAULT 0,
        done boolean NOT NULL DEFAULT false
     );
     CREATE UNIQUE INDEX pushes_by_target ON pushes (user_id, conv, kind, seq);
     CREATE INDEX pushes_pending ON pushes (offered, push_id) WHERE NOT done;
     CREATE TABLE files (
        file_id text COLLATE "C" PRIMARY KEY,
        size bigint NOT NULL,
        content_type text NOT NULL
     );
     CREATE TABLE uploads (
        user_id text COLLATE "C",
        file_id text COLLATE "C",
        ts bigint NOT NULL,
        PRIMARY KEY (user_id, file_id)
     );
     CREATE INDEX uploads_by_file ON uploads (file_id);
     CREATE TABLE file_refs (
        file_id text COLLATE "C",
        conv text COLLATE "C",
        seq bigint,
        PRIMARY KEY (file_id, conv, seq)
     );
     CREATE INDEX file_refs_by_message ON file_refs (conv, seq);"#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings imbed's schema in the database to [`SCHEMA_VERSION`], creating it
/// when missing; refuses one newer than this build.
pub(crate) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let failed = |e: tokio_postgres::Error| StoreError(format!("PostgreSQL: migrating the schema: {e}"));
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS imbed;
         CREATE TABLE IF NOT EXISTS imbed.schema_version (version bigint NOT NULL);
         INSERT INTO imbed.schema_version SELECT 0 WHERE NOT EXISTS (SELECT FROM imbed.schema_version);",
    )
    .await
    .map_err(failed)?;
    let version: i64 = tx
        .query_one("SELECT version FROM imbed.schema_version", &[])
        .await
        .map_err(failed)?
        .get(0);
    if version > SCHEMA_VERSION {
        return Err(StoreError(format!(
            "PostgreSQL: imbed's schema has version {version}, newer than this imbed supports ({SCHEMA_VERSION}); upgrade imbed"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute("UPDATE imbed.schema_version SET version = $1", &[&(index as i64 + 1)])
            .await
            .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}
