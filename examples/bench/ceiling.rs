//! The ceiling for the durable scenario: a bare rusqlite loop that writes
//! the rows imbed writes (each message and its words in the search index), in batches of one transaction each, in WAL mode
//! with `synchronous=FULL`: one message row per message, and per batch the
//! last seq of each conversation it touched. No network, no lookups: what
//! this disk and SQLite can commit at best.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::json;

/// Options of the ceiling scenario.
#[derive(clap::Args)]
pub struct Options {
    /// Database file to create (deleted first).
    #[arg(long)]
    path: String,
    /// Rows per transaction.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// How long to insert.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
}

/// Runs the loop and returns its JSON result line.
pub fn run(o: Options) -> serde_json::Value {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", o.path));
    }
    let mut conn = Connection::open(&o.path).expect("open");
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    imbed::internals::migrate_sqlite(&mut conn, &o.path).expect("imbed's schema");
    let body = json!("x".repeat(o.body_bytes)).to_string();
    let conversations = 100;
    for c in 0..conversations {
        let conv = format!("dm:u{c}:v{c}");
        for user in [format!("u{c}"), format!("v{c}")] {
            conn.execute("INSERT INTO user_conversations VALUES (?1, ?2)", params![user, conv])
                .unwrap();
        }
    }
    let end = Instant::now() + Duration::from_secs(o.seconds);
    let mut rows = 0u64;
    let mut last_seqs = vec![0i64; conversations];
    while Instant::now() < end {
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..o.batch {
            let c = (rows as usize + i) % conversations;
            last_seqs[c] += 1;
            conn.prepare_cached(imbed::internals::SQLITE_INSERT_MESSAGE)
                .unwrap()
                .execute(params![
                    format!("dm:u{c}:v{c}"),
                    last_seqs[c],
                    format!("u{c}"),
                    format!("v{c}"),
                    (rows + i as u64).to_string(),
                    body,
                    0
                ])
                .unwrap();
            conn.prepare_cached(imbed::internals::SQLITE_INDEX_MESSAGE)
                .unwrap()
                .execute(params![body, format!("dm:u{c}:v{c}")])
                .unwrap();
        }
        for (c, seq) in last_seqs.iter().enumerate() {
            conn.prepare_cached("INSERT INTO conversations VALUES (?1, ?2) ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq")
                .unwrap()
                .execute(params![format!("dm:u{c}:v{c}"), seq])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        rows += o.batch as u64;
    }
    json!({"scenario": "sqlite-ceiling", "batch": o.batch, "rows_per_s": (rows as f64 / o.seconds as f64).round()})
}
