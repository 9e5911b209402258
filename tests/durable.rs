//! The durable stores through the engine: durability across restarts, sync,
//! history and read cursors over real sockets, and bad storage as clear
//! errors. SQLite by default; with `IMBED_TEST_STORE=postgres` (as `make
//! test` runs it a second time) PostgreSQL, except the tests named `sqlite_`,
//! which are about SQLite's file.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use imbed::{Config, Error, Server};
use serde_json::{Value, json};
use support::{Client, connect, start};
use tempfile::TempDir;

fn db_config(dir: &TempDir, extra: Value) -> Value {
    let mut config = json!({"store": support::postgres::durable_store(dir.path(), "imbed.db")});
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    config
}

/// Sends `sync` with `cursors` and collects the msgs and the `synced` frame.
async fn sync(client: &mut Client, cursors: Value, limit: u64) -> (Vec<Value>, Value) {
    client
        .send_json(json!({"type": "sync", "id": "s", "cursors": cursors, "limit": limit}))
        .await;
    let mut msgs = Vec::new();
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("msg") => msgs.push(frame),
            Some("synced") => return (msgs, frame),
            _ => panic!("unexpected frame during sync: {frame}"),
        }
    }
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_idempotency_keys_and_sequences_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    let first = start(db_config(&dir, json!({})));
    let mut alice = connect(&first.url, "alice").await;
    for i in 1..=3 {
        assert_eq!(alice.send_to("bob", &format!("m{i}"), json!(i)).await["seq"], i);
    }
    drop(alice);
    tokio::task::block_in_place(|| first.server.stop()).unwrap();

    let second = start(db_config(&dir, json!({})));
    let history = second.server.history("dm:alice:bob", None, 10).unwrap();
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(history[1].message.body.get(), "2");
    let mut alice = connect(&second.url, "alice").await;
    let retry = alice.send_to("bob", "m2", json!(2)).await;
    assert_eq!((retry["type"].as_str(), retry["seq"].as_u64()), (Some("ack"), Some(2)));
    assert_eq!(alice.send_to("bob", "m4", json!(4)).await["seq"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_send_in_one_commit_are_stored_once() {
    let dir = TempDir::new().unwrap();
    let t = start(db_config(&dir, json!({})));
    let mut alice = connect(&t.url, "alice").await;
    // Pipelined without waiting, so that they share a commit: a send, its
    // retry, another, and the first once more.
    for (id, body) in [("a", 1), ("a", 1), ("b", 2), ("a", 1)] {
        alice
            .send_json(json!({"type": "send", "id": id, "to": "bob", "body": body}))
            .await;
    }
    let mut acks = Vec::new();
    while acks.len() < 4 {
        let frame = alice.recv().await;
        if frame["type"] == "ack" {
            acks.push((frame["id"].as_str().unwrap().to_owned(), frame["seq"].as_u64().unwrap()));
        }
    }
    acks.sort();
    let expected = [("a", 1), ("a", 1), ("a", 1), ("b", 2)].map(|(id, seq)| (id.to_owned(), seq));
    assert_eq!(acks, expected);
    let stored = tokio::task::block_in_place(|| t.server.history("dm:alice:bob", None, 10)).unwrap();
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_come_through_sync_in_pages() {
    let dir = TempDir::new().unwrap();
    let t = start(db_config(&dir, json!({})));
    let mut alice = connect(&t.url, "alice").await;
    for i in 1..=25 {
        alice.send_to("bob", &format!("m{i}"), json!(i)).await;
    }
    alice.send_to("carol", "c1", json!("x")).await;
    let mut bob = connect(&t.url, "bob").await;
    bob.assert_quiet().await; // nothing is pushed at connect
    let (msgs, synced) = sync(&mut bob, json!({}), 10).await;
    assert_eq!(seqs(&msgs), (1..=10).collect::<Vec<_>>());
    assert_eq!(synced["id"], "s");
    assert_eq!(synced["convs"], json!({"dm:alice:bob": {"last_seq": 25, "more": true}}));
    let (msgs, synced) = sync(&mut bob, json!({"dm:alice:bob": 10}), 10).await;
    assert_eq!(seqs(&msgs), (11..=20).collect::<Vec<_>>());
    assert_eq!(synced["convs"]["dm:alice:bob"]["more"], true);
    let (msgs, synced) = sync(&mut bob, json!({"dm:alice:bob": 20}), 10).await;
    assert_eq!(seqs(&msgs), (21..=25).collect::<Vec<_>>());
    assert_eq!(synced["convs"]["dm:alice:bob"], json!({"last_seq": 25, "more": false}));
    let (msgs, _) = sync(&mut bob, json!({"dm:alice:bob": 25}), 10).await;
    assert!(msgs.is_empty());
    // alice belongs to both of her conversations.
    let (_, synced) = sync(&mut alice, json!({"dm:alice:bob": 25, "dm:alice:carol": 1}), 100).await;
    assert_eq!(synced["convs"].as_object().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_bad_requests() {
    let t = start(json!({}));
    let mut c = connect(&t.url, "zed").await;
    for frame in [
        json!({"type": "sync", "id": "a", "limit": 0}),
        json!({"type": "sync", "id": "b", "limit": 1001}),
        json!({"type": "sync", "id": "c", "cursors": {"dm:a:zed": -1}}),
        json!({"type": "sync", "id": "d", "cursors": [1]}),
    ] {
        c.send_json(frame.clone()).await;
        let reply = c.recv().await;
        assert_eq!(
            (reply["code"].as_str(), reply["id"].as_str()),
            (Some("bad_request"), frame["id"].as_str())
        );
    }
    let (msgs, synced) = sync(&mut c, json!({}), 5).await;
    assert!(msgs.is_empty());
    assert_eq!(synced["convs"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_messages_during_a_sync_never_interleave_out_of_order() {
    let dir = TempDir::new().unwrap();
    let t = start(db_config(&dir, json!({})));
    let mut alice = connect(&t.url, "alice").await;
    for i in 0..300 {
        alice
            .send_json(json!({"type": "send", "id": format!("pre{i}"), "to": "bob", "body": i}))
            .await;
    }
    for _ in 0..300 {
        alice.recv().await;
    }
    let mut bob = connect(&t.url, "bob").await;
    let url = t.url.clone();
    let sender = tokio::spawn(async move {
        let mut alice = connect(&url, "alice").await;
        for i in 0..300 {
            alice
                .send_json(json!({"type": "send", "id": format!("live{i}"), "to": "bob", "body": i}))
                .await;
        }
        for _ in 0..300 {
            alice.recv().await;
        }
    });
    bob.send_json(json!({"type": "sync", "id": "s", "limit": 1000})).await;
    let mut seen = Vec::new();
    while seen.len() < 600 {
        let frame = bob.recv().await;
        if frame["type"] == "msg" {
            seen.push(frame["seq"].as_u64().unwrap());
        }
    }
    sender.await.unwrap();
    assert_eq!(seen, (1..=600).collect::<Vec<_>>(), "every message once, in seq order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_over_the_wire_checks_membership_and_pages() {
    let dir = TempDir::new().unwrap();
    let t = start(db_config(&dir, json!({})));
    let mut alice = connect(&t.url, "alice").await;
    for i in 1..=7 {
        alice.send_to("bob", &format!("m{i}"), json!(i)).await;
    }
    alice
        .send_json(json!({"type": "history", "id": "h", "conv": "dm:alice:bob", "before": 6, "limit": 3}))
        .await;
    let reply = alice.recv().await;
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_str(), reply["conv"].as_str()),
        (Some("history"), Some("h"), Some("dm:alice:bob"))
    );
    assert_eq!(seqs(reply["messages"].as_array().unwrap()), [3, 4, 5]);
    alice
        .send_json(json!({"type": "history", "id": "n", "conv": "dm:alice:bob"}))
        .await;
    assert_eq!(
        seqs(alice.recv().await["messages"].as_array().unwrap()),
        (1..=7).collect::<Vec<_>>()
    );

    let mut carol = connect(&t.url, "carol").await;
    for (conv, code) in [
        ("dm:alice:bob", "forbidden"),
        ("g:team", "forbidden"),
        ("dm:bob:alice", "bad_request"),
        ("nope", "bad_request"),
    ] {
        carol
            .send_json(json!({"type": "history", "id": "x", "conv": conv}))
            .await;
        assert_eq!(carol.recv().await["code"], code, "{conv}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_cursors_are_stored_relayed_and_only_move_forward() {
    let dir = TempDir::new().unwrap();
    let t = start(db_config(&dir, json!({})));
    let mut alice = connect(&t.url, "alice").await;
    let mut bob_phone = connect(&t.url, "bob").await;
    let mut bob_laptop = connect(&t.url, "bob").await;
    for i in 1..=3 {
        alice.send_to("bob", &format!("m{i}"), json!(i)).await;
    }
    for _ in 0..3 {
        bob_phone.recv().await;
        bob_laptop.recv().await;
    }
    bob_phone
        .send_json(json!({"type": "read", "id": "r1", "conv": "dm:alice:bob", "seq": 2}))
        .await;
    assert_eq!(bob_phone.recv().await, json!({"type": "ok", "id": "r1"}));
    let relayed = json!({"type": "read", "conv": "dm:alice:bob", "user": "bob", "seq": 2});
    assert_eq!(alice.recv().await, relayed);
    assert_eq!(bob_laptop.recv().await, relayed);
    // Backwards: ok, but nothing relayed.
    bob_phone
        .send_json(json!({"type": "read", "id": "r2", "conv": "dm:alice:bob", "seq": 1}))
        .await;
    assert_eq!(bob_phone.recv().await["type"], "ok");
    alice.assert_quiet().await;
    for (frame, code) in [
        (
            json!({"type": "read", "id": "r3", "conv": "dm:alice:bob", "seq": 9}),
            "bad_request",
        ),
        (
            json!({"type": "read", "id": "r4", "conv": "dm:alice:carol", "seq": 1}),
            "forbidden",
        ),
        (
            json!({"type": "read", "id": "r5", "conv": "dm:alice:bob"}),
            "bad_request",
        ),
    ] {
        bob_phone.send_json(frame).await;
        assert_eq!(bob_phone.recv().await["code"], code);
    }
    tokio::task::block_in_place(|| t.server.stop()).unwrap();
    let stored: i64 = if support::postgres::selected() {
        let db = support::postgres::database(dir.path());
        let sql = "SELECT seq FROM imbed.read_cursors WHERE user_id = 'bob' AND conv = 'dm:alice:bob'";
        support::postgres::psql(&db, sql).trim().parse().unwrap()
    } else {
        let conn = rusqlite::Connection::open(dir.path().join("imbed.db")).unwrap();
        let sql = "SELECT seq FROM read_cursors WHERE user = 'bob' AND conv = 'dm:alice:bob'";
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    assert_eq!(stored, 2);
}

#[test]
fn concurrent_durable_sends_get_distinct_gapless_seqs() {
    let dir = TempDir::new().unwrap();
    let config = Config::from_json(&json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "store": support::postgres::durable_store(dir.path(), "c.db")}).to_string()).unwrap();
    let server = Arc::new(Server::new(config).unwrap());
    server.start().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let server = server.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        server
                            .send(&format!("s{t}"), "hub", "1", Some(&i.to_string()))
                            .unwrap()
                            .seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    let per_conv: HashMap<u64, usize> = all.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(*s).or_default() += 1;
        m
    });
    // Each sender has its own conversation with "hub": seqs 1..=100, eight times.
    assert_eq!(per_conv.len(), 100);
    assert!(per_conv.values().all(|n| *n == 8));
    server.stop().unwrap();
}

#[test]
fn retention_keeps_the_newest_and_seq_keeps_counting() {
    let dir = TempDir::new().unwrap();
    let config = || {
        let mut store = support::postgres::durable_store(dir.path(), "r.db");
        store["retention"] = json!({"max_messages_per_conversation": 3});
        let text = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "store": store});
        Config::from_json(&text.to_string()).unwrap()
    };
    let server = Server::new(config()).unwrap();
    server.start().unwrap();
    for i in 0..5 {
        server.send("a", "b", "1", Some(&i.to_string())).unwrap();
    }
    let kept: Vec<u64> = server
        .history("dm:a:b", None, 10)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    server.stop().unwrap();
    let server = Server::new(config()).unwrap();
    server.start().unwrap();
    assert_eq!(server.send("a", "b", "1", Some("new")).unwrap().seq, 6);
    server.stop().unwrap();
}

#[test]
fn sqlite_the_wal_stays_bounded_under_sustained_writes() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("wal.db");
    let text = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "store": {"path": path.to_str().unwrap()}});
    let server = Arc::new(Server::new(Config::from_json(&text.to_string()).unwrap()).unwrap());
    server.start().unwrap();
    let body = json!("w".repeat(2000)).to_string();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (server, body) = (server.clone(), body.clone());
            std::thread::spawn(move || {
                for i in 0..3000 {
                    server
                        .send(&format!("s{t}"), "sink", &body, Some(&i.to_string()))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 48 MB of bodies went through; a WAL that never restarts holds every
    // page written for them (about 400 MB here), a restarting one a fraction.
    let wal = std::fs::metadata(dir.path().join("wal.db-wal")).unwrap().len();
    assert!(wal < 100 * 1024 * 1024, "the WAL grew to {wal} bytes");
    server.stop().unwrap();
}

#[test]
fn sqlite_age_retention_drops_old_messages_at_start() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("age.db");
    let config = |retention: Value| {
        let text = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"},
            "store": {"path": path.to_str().unwrap(), "retention": retention}});
        Config::from_json(&text.to_string()).unwrap()
    };
    let server = Server::new(config(json!({}))).unwrap();
    server.start().unwrap();
    for i in 0..4 {
        server.send("a", "b", "1", Some(&i.to_string())).unwrap();
    }
    server.stop().unwrap();
    // Age the first two messages by a day.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE messages SET ts = ts - 86400000 WHERE seq <= 2", [])
        .unwrap();
    drop(conn);
    let server = Server::new(config(json!({"max_age_seconds": 3600}))).unwrap();
    server.start().unwrap();
    let kept: Vec<u64> = server
        .history("dm:a:b", None, 10)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(kept, [3, 4]);
    server.stop().unwrap();
}

fn start_error(path: &std::path::Path) -> String {
    let config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "store": {"path": path.to_str().unwrap()}});
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    match server.start() {
        Err(Error::Store(message)) => message,
        other => panic!("expected a store error for {}, got {other:?}", path.display()),
    }
}

#[test]
fn sqlite_bad_storage_is_a_clear_error_at_start() {
    let dir = TempDir::new().unwrap();
    let missing_dir = dir.path().join("no/such/dir/x.db");
    assert!(
        start_error(&missing_dir).contains("cannot open"),
        "{}",
        start_error(&missing_dir)
    );

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let message = start_error(&garbage);
    assert!(
        message.contains("not a database") && message.contains("garbage.db"),
        "{message}"
    );

    let newer = dir.path().join("newer.db");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.pragma_update(None, "application_id", 0x696d_6264).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let message = start_error(&newer);
    assert!(
        message.contains("schema version 99") && message.contains("newer"),
        "{message}"
    );

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER)")
        .unwrap();
    assert!(start_error(&foreign).contains("another application"));
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct TinyDisk(TempDir);

impl TinyDisk {
    fn mount(size: &str) -> TinyDisk {
        let dir = TempDir::new().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount must run: this test needs root to make a small filesystem");
        assert!(status.success(), "mounting a tmpfs failed: this test needs root");
        TinyDisk(dir)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_full_disk_fails_sends_without_acks_and_recovers_when_space_returns() {
    let disk = TinyDisk::mount("2m");
    let filler = disk.0.path().join("filler");
    let t = start(json!({"store": {"path": disk.0.path().join("full.db").to_str().unwrap()}}));
    let mut alice = connect(&t.url, "alice").await;
    assert_eq!(alice.send_to("bob", "before", json!("fits")).await["type"], "ack");
    // Fill the disk, leaving no room for the next commit.
    let _ = std::fs::write(&filler, vec![0u8; 4 * 1024 * 1024]);
    let body = json!("x".repeat(20_000));
    let mut refused = None;
    for i in 0..50 {
        let reply = alice.send_to("bob", &format!("big{i}"), body.clone()).await;
        if reply["type"] == "error" {
            refused = Some((i, reply));
            break;
        }
    }
    let (i, reply) = refused.expect("a full disk must refuse a send");
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_str()),
        (Some("internal"), Some(format!("big{i}").as_str()))
    );
    let host_send = tokio::task::block_in_place(|| t.server.send("host", "bob", &body.to_string(), None));
    assert!(
        matches!(&host_send, Err(Error::Store(m)) if m.contains("full")),
        "{host_send:?}"
    );
    // Nothing unacknowledged was stored; everything acknowledged still is.
    let stored = tokio::task::block_in_place(|| t.server.history("dm:alice:bob", None, 1000)).unwrap();
    assert_eq!(stored.len(), i + 1);
    assert!(stored.iter().all(|m| m.message.client_id != format!("big{i}")));
    // Space returns: sends work again, and seq continues without a gap.
    std::fs::remove_file(&filler).unwrap();
    let ack = alice.send_to("bob", "after", json!("ok")).await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(i as u64 + 2))
    );
    drop(alice);
    tokio::task::block_in_place(|| t.server.stop()).unwrap();
    drop(t);
}
