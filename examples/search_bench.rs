//! Search over a large SQLite store (docs/BENCHMARKS.md, "Search"): builds
//! a database of `--messages` messages (1 million by default) in the
//! engine's own schema, indexed as its writer indexes them, then times searches through the host
//! call (every conversation, one conversation) and through a user's
//! `search` frame on a real socket.
//!
//! `cargo run --release --features internals --example search_bench -- --messages 1000000`

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use imbed::{Config, Server};
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// Messages in the database.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Direct conversations they are spread over.
    #[arg(long, default_value_t = 1000)]
    conversations: u64,
    /// Times each query runs.
    #[arg(long, default_value_t = 20)]
    repeats: u32,
}

/// Words of the generated text: a few thousand, the first far more common.
const VOCABULARY: usize = 5000;

fn word(n: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "pe", "da", "gu", "zo", "fe", "hi", "ba", "wu",
    ];
    let (a, b, c) = (n % 16, (n / 16) % 16, (n / 256) % 16);
    format!("{}{}{}", SYLLABLES[a], SYLLABLES[b], SYLLABLES[c])
}

fn build(path: &str, args: &Args) -> Duration {
    let mut conn = Connection::open(path).unwrap();
    imbed::internals::migrate_sqlite(&mut conn, path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx.prepare(imbed::internals::SQLITE_INSERT_MESSAGE).unwrap();
        // As the store's writer does: the message, then its words.
        let mut index = tx.prepare(imbed::internals::SQLITE_INDEX_MESSAGE).unwrap();
        let mut seqs = vec![0u64; args.conversations as usize];
        for n in 0..args.messages {
            let c = rng.u64(..args.conversations) as usize;
            seqs[c] += 1;
            // Squaring a uniform draw favours the first words, as text does.
            let words: Vec<String> = (0..8)
                .map(|_| word((rng.f64().powi(3) * VOCABULARY as f64) as usize))
                .collect();
            let mut text = words.join(" ");
            if n % (args.messages / 10).max(1) == 0 {
                text.push_str(" zebra");
            }
            let body = json!({ "text": text }).to_string();
            let (from, to) = (format!("u{c}"), format!("v{c}"));
            insert
                .execute(params![
                    format!("dm:{from}:{to}"),
                    seqs[c] as i64,
                    from,
                    to,
                    format!("c{n}"),
                    body,
                    1_700_000_000_000 + n as i64
                ])
                .unwrap();
            index.execute(params![body, format!("dm:{from}:{to}")]).unwrap();
        }
        let mut convs = tx
            .prepare("INSERT INTO conversations (conv, last_seq) VALUES (?1, ?2)")
            .unwrap();
        let mut members = tx
            .prepare("INSERT INTO user_conversations (user, conv) VALUES (?1, ?2)")
            .unwrap();
        for (c, last) in seqs.iter().enumerate() {
            let conv = format!("dm:u{c}:v{c}");
            convs.execute(params![conv, *last as i64]).unwrap();
            // One user is in a tenth of the conversations: the user's search filters.
            let user = if c % 10 == 0 {
                "reader".to_owned()
            } else {
                format!("u{c}")
            };
            members.execute(params![user, conv]).unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    started.elapsed()
}

/// Median and worst of `repeats` runs of `run`, in milliseconds, and what the last found.
fn time(repeats: u32, mut run: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..repeats {
        let started = Instant::now();
        found = run();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1], found)
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search.db");
    let path = path.to_str().unwrap();
    let built = build(path, &args);
    let size = std::fs::metadata(path).unwrap().len();
    println!(
        "built {} messages in {} conversations in {:.1} s ({:.0} messages/s with the index), file {:.0} MiB",
        args.messages,
        args.conversations,
        built.as_secs_f64(),
        args.messages as f64 / built.as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );
    let config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "store": {"path": path}, "log_level": "off"});
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    server.start().unwrap();
    let url = format!("ws://{}/ws?token=reader", server.local_addr().unwrap());
    let common = word(0);
    let queries = [
        ("a rare word (in 10 messages)", "zebra".to_owned()),
        ("the most common word, first page", common.clone()),
        ("two common words", format!("{} {}", word(1), word(2))),
        ("a common and a rare word", format!("{common} zebra")),
        ("a word in no message", "okapi".to_owned()),
    ];
    println!("\n| query | scope | median ms | max ms | results |\n| --- | --- | --- | --- | --- |");
    for (what, query) in &queries {
        let (median, max, found) = time(args.repeats, || {
            server.search(None, query, None, 20).unwrap().messages.len()
        });
        println!("| {what} | every conversation (host) | {median:.2} | {max:.2} | {found} |");
        let (median, max, found) = time(args.repeats, || {
            server.search(Some("dm:u1:v1"), query, None, 20).unwrap().messages.len()
        });
        println!("| {what} | one conversation (host) | {median:.2} | {max:.2} | {found} |");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        ws.next().await.unwrap().unwrap();
        for (what, query) in &queries {
            let mut times = Vec::new();
            let mut found = 0;
            for n in 0..args.repeats {
                let started = Instant::now();
                let frame = json!({"type": "search", "id": format!("q{n}"), "query": query});
                ws.send(Message::text(frame.to_string())).await.unwrap();
                let reply: Value = loop {
                    if let Message::Text(text) = ws.next().await.unwrap().unwrap() {
                        break serde_json::from_str(&text).unwrap();
                    }
                };
                found = reply["results"].as_array().map_or(0, Vec::len);
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {what} | a user's conversations (a tenth), over the socket | {:.2} | {:.2} | {found} |",
                times[times.len() / 2],
                times[times.len() - 1]
            );
        }
    });
    server.stop().unwrap();
}
