//! Reading stored messages back out of rows.

use std::sync::Arc;

use rusqlite::Row;
use serde_json::value::RawValue;

use crate::store::{NewMessage, StoredMessage};

/// The columns [`message_from_row`] expects, in order.
pub(crate) const MESSAGE_COLUMNS: &str = "conv, seq, sender, recipient, grp, client_id, body, ts";

/// A message from a row selected with [`MESSAGE_COLUMNS`].
pub(crate) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Arc<StoredMessage>> {
    let body: String = row.get(6)?;
    let body = RawValue::from_string(body)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e)))?;
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
        },
    }))
}
