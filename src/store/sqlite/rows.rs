//! Reading stored messages back out of rows.

use std::sync::Arc;

use rusqlite::Row;
use serde_json::value::RawValue;

use crate::store::amend::{MessageKind, MessageState, reactions_from_json};
use crate::store::{NewMessage, StoredMessage};

/// The columns [`message_from_row`] expects, in order.
pub(crate) const MESSAGE_COLUMNS: &str =
    "conv, seq, sender, recipient, grp, client_id, body, ts, kind, target, edited, deleted, reactions";

fn conversion_failed(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

/// A message from a row selected with [`MESSAGE_COLUMNS`].
pub(crate) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Arc<StoredMessage>> {
    let body: String = row.get(6)?;
    let body = RawValue::from_string(body).map_err(|e| conversion_failed(6, e))?;
    let kind_name: Option<String> = row.get(8)?;
    let kind = MessageKind::from_name(kind_name.as_deref())
        .ok_or_else(|| conversion_failed(8, std::io::Error::other(format!("unknown kind {kind_name:?}"))))?;
    let reactions: Option<String> = row.get(12)?;
    Ok(Arc::new(StoredMessage {
        seq: row.get::<_, i64>(1)? as u64,
        message: NewMessage {
            conv: row.get(0)?,
            from: row.get::<_, String>(2)?.into(),
            to: row.get(3)?,
            group: row.get(4)?,
            client_id: row.get(5)?,
            body,
            ts: row.get(7)?,
            kind,
            target: row.get::<_, Option<i64>>(9)?.map(|seq| seq as u64),
            files: Vec::new(),
            by_host: false,
        },
        state: MessageState {
            edited: row.get(10)?,
            deleted: row.get(11)?,
            reactions: reactions_from_json(reactions.as_deref()).map_err(|e| conversion_failed(12, e))?,
        },
    }))
}
