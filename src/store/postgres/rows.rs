//! Reading stored messages back out of rows, and the text they are found by.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio_postgres::Row;

use crate::store::amend::{MessageKind, MessageState, reactions_from_json, searchable_text};
use crate::store::words::words;
use crate::store::{NewMessage, StoreError, StoredMessage};

/// The columns [`message_from_row`] expects, in order.
pub(super) const MESSAGE_COLUMNS: &str =
    "conv, seq, sender, recipient, grp, client_id, body, ts, kind, target, edited, deleted, reactions";

/// A message from a row selected with [`MESSAGE_COLUMNS`] (more columns may follow).
pub(super) fn message_from_row(row: &Row) -> Result<Arc<StoredMessage>, StoreError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| StoreError(format!("PostgreSQL: a stored message's {what}: {e}"));
    let body = RawValue::from_string(row.get(6)).map_err(|e| bad("body", &e))?;
    let kind_name: Option<&str> = row.get(8);
    let kind = MessageKind::from_name(kind_name).ok_or_else(|| bad("kind", &format!("{kind_name:?}")))?;
    let reactions: Option<&str> = row.get(12);
    Ok(Arc::new(StoredMessage {
        seq: row.get::<_, i64>(1) as u64,
        message: NewMessage {
            conv: row.get(0),
            from: row.get::<_, &str>(2).into(),
            to: row.get(3),
            group: row.get(4),
            client_id: row.get(5),
            body,
            ts: row.get(7),
            kind,
            target: row.get::<_, Option<i64>>(9).map(|seq| seq as u64),
            files: Vec::new(),
            by_host: false,
        },
        state: MessageState {
            edited: row.get(10),
            deleted: row.get(11),
            reactions: reactions_from_json(reactions).map_err(|e| bad("reactions", &e))?,
        },
    }))
}

/// What `to_tsvector('simple', …)` indexes a body by: its searchable text,
/// cut and folded in Rust ([`words`]), so PostgreSQL finds the words the
/// other stores find, with no extension and whatever the database's locale.
pub(super) fn indexed_text(body: &RawValue) -> String {
    words(&searchable_text(body)).join(" ")
}
