//! What a client must not forget: its outbox (messages not yet acknowledged)
//! and its cursors (the last seq delivered to the host, per conversation).
//!
//! Kept in memory, and in a SQLite file when the host gives one, so that an
//! app restart neither loses an unsent message nor replays delivered ones.
//! The cursor in memory moves as messages arrive; the one in the file moves
//! only after the host's callback for every message up to it returned (the
//! connection records it through the event queue), so a crash in between
//! replays messages rather than losing them.

use std::collections::{HashMap, HashSet, VecDeque};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Error;

/// A message waiting for its ack.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The client message id.
    pub(crate) id: String,
    /// The whole `send` frame, as sent (and re-sent).
    pub(crate) frame: String,
}

/// What to do with a `msg` that arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The next message of its conversation: deliver it. Once the host has
    /// processed it, the conversation's cursor may be recorded at `through`
    /// (past this client's own messages right after it).
    Next {
        /// The cursor to record after the host's callback.
        through: u64,
    },
    /// This client's own message, still waiting for its ack: not delivered
    /// back, but the cursor may be recorded at `through` as for `Next`.
    Own {
        /// The cursor to record after the events queued before it.
        through: u64,
    },
    /// Already delivered: drop it.
    Duplicate,
    /// Messages are missing before it: drop it and sync, which brings both.
    Gap,
}

/// The outbox and the cursors.
pub(crate) struct ClientState {
    outbox: VecDeque<Pending>,
    cursors: HashMap<String, u64>,
    /// Positions of this client's own acknowledged messages above their
    /// cursor: the cursor steps over them without delivering them back.
    own: HashSet<(String, u64)>,
    file: Option<Connection>,
}

fn store_error(path: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Store(format!("{path}: {e}"))
}

impl ClientState {
    /// Opens the state at `path` (`":memory:"`: nothing on disk).
    pub(crate) fn open(path: &str) -> Result<ClientState, Error> {
        let mut state = ClientState {
            outbox: VecDeque::new(),
            cursors: HashMap::new(),
            own: HashSet::new(),
            file: None,
        };
        if path == ":memory:" {
            return Ok(state);
        }
        let failed = store_error(path);
        let conn = Connection::open(path).map_err(&failed)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(&failed)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(&failed)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (position INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, frame TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS cursors (conv TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;",
        )
        .map_err(&failed)?;
        let mut pending = conn
            .prepare("SELECT id, frame FROM outbox ORDER BY position")
            .map_err(&failed)?;
        state.outbox = pending
            .query_map([], |r| {
                Ok(Pending {
                    id: r.get(0)?,
                    frame: r.get(1)?,
                })
            })
            .map_err(&failed)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&failed)?;
        let mut cursors = conn.prepare("SELECT conv, seq FROM cursors").map_err(&failed)?;
        state.cursors = cursors
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(&failed)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&failed)?;
        drop((pending, cursors));
        state.file = Some(conn);
        Ok(state)
    }

    /// The prefix of this client's message ids, made once per state file.
    pub(crate) fn id_prefix(&self) -> Result<String, Error> {
        let fresh = format!("{:016x}", fastrand::u64(..));
        let Some(conn) = &self.file else {
            return Ok(fresh);
        };
        let failed = |e: rusqlite::Error| Error::Store(e.to_string());
        let known: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'id_prefix'", [], |r| r.get(0))
            .optional()
            .map_err(failed)?;
        if let Some(known) = known {
            return Ok(known);
        }
        conn.execute("INSERT INTO meta (key, value) VALUES ('id_prefix', ?1)", [&fresh])
            .map_err(failed)?;
        Ok(fresh)
    }

    /// The number to continue message ids from: past every id in the outbox.
    pub(crate) fn next_id_number(&self) -> u64 {
        self.outbox
            .iter()
            .filter_map(|p| p.id.rsplit_once('-').and_then(|(_, n)| n.parse::<u64>().ok()))
            .max()
            .map_or(1, |n| n + 1)
    }

    /// Adds a message to the outbox, durably when there is a file.
    pub(crate) fn enqueue(&mut self, pending: Pending) -> Result<(), Error> {
        if let Some(conn) = &self.file {
            conn.execute(
                "INSERT INTO outbox (id, frame) VALUES (?1, ?2)",
                params![pending.id, pending.frame],
            )
            .map_err(|e| Error::Store(e.to_string()))?;
        }
        self.outbox.push_back(pending);
        Ok(())
    }

    /// Removes `id` from the outbox; false if it was not there (a repeated ack).
    pub(crate) fn settle(&mut self, id: &str) -> bool {
        let Some(at) = self.outbox.iter().position(|p| p.id == id) else {
            return false;
        };
        self.outbox.remove(at);
        if let Some(conn) = &self.file
            && let Err(e) = conn.execute("DELETE FROM outbox WHERE id = ?1", [id])
        {
            tracing::warn!(error = %e, "could not remove an acknowledged message from the state file");
        }
        true
    }

    /// The oldest `n` messages of the outbox whose ids are not in `skip`.
    pub(crate) fn next_to_send(&self, skip: &HashSet<String>, n: usize) -> Vec<Pending> {
        self.outbox
            .iter()
            .filter(|p| !skip.contains(&p.id))
            .take(n)
            .cloned()
            .collect()
    }

    /// Whether `id` is waiting in the outbox.
    pub(crate) fn is_pending(&self, id: &str) -> bool {
        self.outbox.iter().any(|p| p.id == id)
    }

    /// Decides what to do with `seq` of `conv`, whose client id is `id`,
    /// advancing the cursor for the next one.
    pub(crate) fn arrive(&mut self, conv: &str, seq: u64, id: Option<&str>) -> Arrival {
        let cursor = self.cursors.get(conv).copied().unwrap_or(0);
        if seq <= cursor {
            Arrival::Duplicate
        } else if seq == cursor + 1 {
            self.cursors.insert(conv.to_owned(), seq);
            let through = self.step_over_own(conv);
            // One of this client's own sends, stored before its ack came: the
            // server pushed it from an earlier session of this client that it
            // had not yet closed. The ack comes when the outbox sends it again.
            if id.is_some_and(|id| self.is_pending(id)) {
                Arrival::Own { through }
            } else {
                Arrival::Next { through }
            }
        } else {
            Arrival::Gap
        }
    }

    /// Records that this client's own message sits at `seq` of `conv`: the
    /// host sent it, so it is never delivered back as a message. Returns the
    /// cursor to record once the events queued so far are processed, when
    /// the cursor stepped over it.
    pub(crate) fn sent(&mut self, conv: &str, seq: u64) -> Option<u64> {
        let cursor = self.cursors.get(conv).copied().unwrap_or(0);
        if seq <= cursor {
            return None;
        }
        self.own.insert((conv.to_owned(), seq));
        Some(self.step_over_own(conv)).filter(|stepped| *stepped > cursor)
    }

    /// Moves the cursor of `conv` over own messages right above it; returns it.
    fn step_over_own(&mut self, conv: &str) -> u64 {
        let mut cursor = self.cursors.get(conv).copied().unwrap_or(0);
        let before = cursor;
        while self.own.remove(&(conv.to_owned(), cursor + 1)) {
            cursor += 1;
        }
        if cursor > before {
            self.cursors.insert(conv.to_owned(), cursor);
        }
        cursor
    }

    /// The cursors to sync from.
    pub(crate) fn cursors(&self) -> &HashMap<String, u64> {
        &self.cursors
    }

    /// Records in the file that the host has processed `seq` of `conv`.
    pub(crate) fn delivered(&self, conv: &str, seq: u64) {
        if let Some(conn) = &self.file
            && let Err(e) = conn.execute(
                "INSERT INTO cursors (conv, seq) VALUES (?1, ?2)
                 ON CONFLICT (conv) DO UPDATE SET seq = max(seq, excluded.seq)",
                params![conv, seq as i64],
            )
        {
            tracing::warn!(error = %e, "could not record a cursor in the state file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_deliver_in_order_once() {
        let mut state = ClientState::open(":memory:").unwrap();
        assert_eq!(state.arrive("c", 1, None), Arrival::Next { through: 1 });
        assert_eq!(state.arrive("c", 1, None), Arrival::Duplicate);
        assert_eq!(state.arrive("c", 3, None), Arrival::Gap);
        assert_eq!(state.arrive("c", 2, None), Arrival::Next { through: 2 });
        assert_eq!(state.arrive("d", 1, None), Arrival::Next { through: 1 });
        assert_eq!(state.cursors()["c"], 2);
    }

    #[test]
    fn own_messages_are_stepped_over_not_delivered() {
        let mut state = ClientState::open(":memory:").unwrap();
        assert_eq!(state.sent("c", 1), Some(1));
        assert_eq!(state.arrive("c", 1, None), Arrival::Duplicate);
        assert_eq!(state.sent("c", 3), None, "3 waits for 2");
        assert_eq!(state.arrive("c", 2, None), Arrival::Next { through: 3 });
        assert_eq!(state.cursors()["c"], 3, "stepped over own 3 after delivering 2");
        assert_eq!(state.arrive("c", 3, None), Arrival::Duplicate);
        assert_eq!(state.arrive("c", 4, None), Arrival::Next { through: 4 });
    }

    #[test]
    fn the_outbox_and_cursors_survive_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("imbed-client-state-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let path = path.to_str().unwrap();
        let mut state = ClientState::open(path).unwrap();
        let prefix = state.id_prefix().unwrap();
        for id in ["p-1", "p-2", "p-3"] {
            state
                .enqueue(Pending {
                    id: id.into(),
                    frame: format!("frame {id}"),
                })
                .unwrap();
        }
        assert!(state.settle("p-2"));
        assert!(!state.settle("p-2"));
        state.arrive("c", 1, None);
        state.delivered("c", 1);
        drop(state);
        let state = ClientState::open(path).unwrap();
        let on_wire = HashSet::from(["p-1".to_owned()]);
        assert_eq!(
            state
                .next_to_send(&on_wire, 5)
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>(),
            ["p-3"]
        );
        assert_eq!(state.next_id_number(), 4);
        assert_eq!(state.id_prefix().unwrap(), prefix);
        assert_eq!(state.cursors()["c"], 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
