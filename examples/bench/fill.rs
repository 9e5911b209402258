//! Fills a SQLite file in imbed's schema with stored messages, so that the
//! durable scenario can run against a store that already holds millions
//! (`scripts/bench-curves`). The rows are the ones the store's writer
//! writes for a plain direct message (the message, its words in the search
//! index, both users' membership, the conversation's last seq), spread round
//! the conversations `dm:u0:u1`, `dm:u2:u3`, … that `bench direct` uses
//! first, with client ids (`f<n>`) no run of the generator sends.
//!
//! A file that exists already is added to: its messages (whoever stored
//! them) and last seqs are kept and counted, so a file of 1 million is filled
//! to 10 million with 9 million more. Without a journal
//! and without fsync (the file is scratch until it is filled); the server
//! switches it to WAL when it opens it.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

/// Options of the fill command.
#[derive(clap::Args)]
pub struct Options {
    /// The database file: created if missing, added to if not.
    #[arg(long)]
    path: String,
    /// Messages the file holds when done, those it had included.
    #[arg(long)]
    messages: u64,
    /// Direct conversations they go to, round the pairs of `bench direct`.
    #[arg(long, default_value_t = 10_000)]
    conversations: u64,
    /// Stop after this many seconds even if fewer messages were added (0:
    /// no bound); the result says how many were.
    #[arg(long, default_value_t = 0)]
    max_seconds: u64,
    /// Messages per transaction.
    #[arg(long, default_value_t = 100_000)]
    commit_every: u64,
}

/// Distinct words of the generated text: three syllables each.
const VOCABULARY: u64 = 4096;

/// The `n`th word.
fn word(n: u64) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "pe", "da", "gu", "zo", "fe", "hi", "ba", "wu",
    ];
    let syllable = |k: u64| SYLLABLES[(k % 16) as usize];
    format!("{}{}{}", syllable(n), syllable(n / 16), syllable(n / 256))
}

/// A small, seeded generator (xorshift64*): the same file every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A word index, the first ones far more often (a cubed uniform draw).
    fn word(&mut self) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (u.powi(3) * VOCABULARY as f64) as u64
    }
}

/// The users and conversation of pair `c`, as `bench direct` names them.
fn pair(c: u64) -> (String, String, String) {
    let (a, b) = (format!("u{}", 2 * c), format!("u{}", 2 * c + 1));
    let conv = format!("dm:{a}:{b}");
    (a, b, conv)
}

/// Adds the messages and returns the JSON result line.
pub fn run(o: Options) -> Value {
    assert!(o.conversations >= 1 && o.commit_every >= 1);
    let started = Instant::now();
    let deadline = (o.max_seconds > 0).then(|| started + Duration::from_secs(o.max_seconds));
    let mut conn = Connection::open(&o.path).unwrap_or_else(|e| panic!("{}: {e}", o.path));
    // Scratch until filled: no journal, no fsync, a large page cache.
    conn.query_row("PRAGMA journal_mode = OFF", [], |_| Ok(())).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    conn.pragma_update(None, "cache_size", -2_000_000).unwrap();
    imbed::internals::migrate_sqlite(&mut conn, &o.path).expect("imbed's schema");
    let before: u64 = conn
        .query_row("SELECT coalesce(max(rowid), 0) FROM messages", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as u64;
    let pairs: Vec<(String, String, String)> = (0..o.conversations).map(pair).collect();
    let mut seqs = Vec::with_capacity(pairs.len());
    for (_, _, conv) in &pairs {
        let seq: Option<i64> = conn
            .query_row("SELECT last_seq FROM conversations WHERE conv = ?1", [conv], |r| {
                r.get(0)
            })
            .optional()
            .unwrap();
        seqs.push(seq.unwrap_or(0) as u64);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ before.wrapping_add(1));
    let wanted = o.messages.saturating_sub(before);
    let mut added = 0u64;
    let words: Vec<String> = (0..VOCABULARY).map(word).collect();
    let mut text = String::new();
    while added < wanted && deadline.is_none_or(|d| Instant::now() < d) {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare_cached(imbed::internals::SQLITE_INSERT_MESSAGE).unwrap();
            // As the store's writer does: the message, then its words.
            let mut index = tx.prepare_cached(imbed::internals::SQLITE_INDEX_MESSAGE).unwrap();
            let end = (added + o.commit_every).min(wanted);
            for i in added..end {
                let n = before + i;
                let c = (n % o.conversations) as usize;
                seqs[c] += 1;
                let (a, b, conv) = &pairs[c];
                let (from, to) = if seqs[c] % 2 == 0 { (a, b) } else { (b, a) };
                text.clear();
                for w in 0..8 {
                    if w > 0 {
                        text.push(' ');
                    }
                    text.push_str(&words[rng.word() as usize]);
                }
                let body = json!(text).to_string();
                insert
                    .execute(params![
                        conv,
                        seqs[c] as i64,
                        from,
                        to,
                        format!("f{n}"),
                        body,
                        1_700_000_000_000 + n as i64
                    ])
                    .unwrap();
                index.execute(params![body, conv]).unwrap();
            }
            added = end;
        }
        tx.commit().unwrap();
    }
    let tx = conn.transaction().unwrap();
    for ((a, b, conv), seq) in pairs.iter().zip(&seqs) {
        if *seq == 0 {
            continue;
        }
        tx.execute(
            "INSERT INTO conversations (conv, last_seq) VALUES (?1, ?2)
             ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq",
            params![conv, *seq as i64],
        )
        .unwrap();
        for user in [a, b] {
            tx.execute(
                "INSERT OR IGNORE INTO user_conversations (user, conv) VALUES (?1, ?2)",
                params![user, conv],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&o.path).map_or(0, |m| m.len());
    json!({
        "scenario": "fill",
        "params": {"messages": o.messages, "conversations": o.conversations, "max_seconds": o.max_seconds},
        "messages_before": before,
        "messages_added": added,
        "messages_stored": before + added,
        "complete": before + added >= o.messages,
        "seconds": (seconds * 10.0).round() / 10.0,
        "messages_per_s": (added as f64 / seconds).round(),
        "file_bytes": bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn fills_and_adds_to_a_file_the_store_can_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fill.db").to_str().unwrap().to_owned();
        let options = |messages| Options {
            path: path.clone(),
            messages,
            conversations: 3,
            max_seconds: 0,
            commit_every: 4,
        };
        let first = run(options(10));
        assert_eq!(first["messages_stored"], 10);
        let second = run(options(15));
        assert_eq!(
            (second["messages_before"].as_u64(), second["messages_stored"].as_u64()),
            (Some(10), Some(15))
        );
        let mut conn = Connection::open(&path).unwrap();
        imbed::internals::migrate_sqlite(&mut conn, &path).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM messages"), 15);
        // Last seqs match the messages, so the store's next seq follows on.
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM conversations c WHERE last_seq = (SELECT max(seq) FROM messages m WHERE m.conv = c.conv)"
            ),
            3
        );
        assert_eq!(
            count(&conn, "SELECT last_seq FROM conversations WHERE conv = 'dm:u0:u1'"),
            5
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM user_conversations"), 6);
        // Every message is in the search index, by its words.
        let common = word(0);
        let found = count(
            &conn,
            &format!("SELECT count(*) FROM message_text WHERE message_text MATCH '{common}'"),
        );
        assert!(found > 0, "the commonest word is indexed");
        assert_eq!(
            count(&conn, "SELECT count(*) FROM messages WHERE client_id NOT LIKE 'f%'"),
            0
        );
    }
}
