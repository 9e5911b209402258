//! Uploaded files: who uploaded what, and which messages refer to which
//! file. The bytes themselves are in `files.dir`; this is only their
//! bookkeeping, in the same transactions as the messages.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::store::{FileRecord, NewMessage};

/// Whether a file is `?1`'s to read or refer to: its upload, or one in a
/// conversation of the user. `?2` is the file.
const VISIBLE_TO_USER: &str = "
    EXISTS (SELECT 1 FROM uploads WHERE user = ?1 AND file_id = ?2)
    OR EXISTS (SELECT 1 FROM file_refs r WHERE r.file_id = ?2 AND (
        r.conv IN (SELECT conv FROM user_conversations WHERE user = ?1)
        OR r.conv IN (SELECT 'g:' || grp FROM group_members WHERE user = ?1)))";

/// The first of `files` that `user` may not refer to, if any.
pub(super) fn first_unknown<'f>(
    tx: &Transaction<'_>,
    user: &str,
    files: &'f [String],
) -> rusqlite::Result<Option<&'f str>> {
    let mut visible = tx.prepare_cached(&format!("SELECT {VISIBLE_TO_USER}"))?;
    for file in files {
        if !visible.query_row(params![user, file], |r| r.get::<_, bool>(0))? {
            return Ok(Some(file));
        }
    }
    Ok(None)
}

/// Records that the message `m`, stored at `seq`, refers to its files.
pub(super) fn refer_to_files(tx: &Transaction<'_>, m: &NewMessage, seq: u64) -> rusqlite::Result<()> {
    let mut refer = tx.prepare_cached("INSERT OR IGNORE INTO file_refs (file_id, conv, seq) VALUES (?1, ?2, ?3)")?;
    for file in &m.files {
        refer.execute(params![file, m.conv, seq as i64])?;
    }
    Ok(())
}

/// See [`crate::store::Store::save_upload`].
pub(super) fn save_upload(
    tx: &Transaction<'_>,
    user: &str,
    file: &FileRecord,
    quota: u64,
    now: i64,
) -> rusqlite::Result<Option<FileRecord>> {
    let others: i64 = tx
        .prepare_cached(
            "SELECT coalesce(sum(f.size), 0) FROM uploads u JOIN files f ON f.file_id = u.file_id
             WHERE u.user = ?1 AND u.file_id <> ?2",
        )?
        .query_row(params![user, file.file_id], |r| r.get(0))?;
    if others as u64 + file.size > quota {
        return Ok(None);
    }
    tx.prepare_cached("INSERT OR IGNORE INTO files (file_id, size, content_type) VALUES (?1, ?2, ?3)")?
        .execute(params![file.file_id, file.size as i64, file.content_type])?;
    tx.prepare_cached(
        "INSERT INTO uploads (user, file_id, ts) VALUES (?1, ?2, ?3)
         ON CONFLICT (user, file_id) DO UPDATE SET ts = excluded.ts",
    )?
    .execute(params![user, file.file_id, now])?;
    let content_type = tx
        .prepare_cached("SELECT content_type FROM files WHERE file_id = ?1")?
        .query_row([&file.file_id], |r| r.get(0))?;
    Ok(Some(FileRecord {
        content_type,
        ..file.clone()
    }))
}

/// See [`crate::store::Store::collect_files`].
pub(super) fn collect_files(tx: &Transaction<'_>, uploaded_before: i64) -> rusqlite::Result<Vec<String>> {
    tx.prepare_cached(
        "DELETE FROM uploads WHERE ts < ?1
         AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.file_id = uploads.file_id)",
    )?
    .execute([uploaded_before])?;
    let unneeded = "FROM files f WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.file_id = f.file_id)
         AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.file_id = f.file_id)";
    let collected = tx
        .prepare_cached(&format!("SELECT file_id {unneeded}"))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    tx.prepare_cached(&format!(
        "DELETE FROM files WHERE file_id IN (SELECT file_id {unneeded})"
    ))?
    .execute([])?;
    Ok(collected)
}

/// See [`crate::store::Store::upload_usage`].
pub(super) fn upload_usage(conn: &Connection, user: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(f.size), 0) FROM uploads u JOIN files f ON f.file_id = u.file_id WHERE u.user = ?1",
    )?
    .query_row([user], |r| r.get::<_, i64>(0))
    .map(|bytes| bytes as u64)
}

/// See [`crate::store::Store::file`].
pub(super) fn file(conn: &Connection, file_id: &str, reader: Option<&str>) -> rusqlite::Result<Option<FileRecord>> {
    let record = |r: &rusqlite::Row<'_>| {
        Ok(FileRecord {
            file_id: file_id.to_owned(),
            size: r.get::<_, i64>(0)? as u64,
            content_type: r.get(1)?,
        })
    };
    match reader {
        None => conn
            .prepare_cached("SELECT size, content_type FROM files WHERE file_id = ?1")?
            .query_row([file_id], record)
            .optional(),
        Some(user) => conn
            .prepare_cached(&format!(
                "SELECT size, content_type FROM files WHERE file_id = ?2 AND ({VISIBLE_TO_USER})"
            ))?
            .query_row(params![user, file_id], record)
            .optional(),
    }
}
