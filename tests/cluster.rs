//! imbed on PostgreSQL (and, for several nodes, Redis), with the real
//! servers, each test's own: what each promise looks like when a dependency
//! fails (docs/CLUSTER.md, "Failures").

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use imbed::config::ClientConfig;
use imbed::{Client, Config, Server};
use serde_json::json;
use support::RecordingHost;
use tempfile::TempDir;

/// A PostgreSQL of this test's own, which it can stop and start again on
/// the same port with the same data.
struct PrivatePostgres {
    dir: PathBuf,
    url: String,
}

impl PrivatePostgres {
    fn start(dir: &Path) -> PrivatePostgres {
        let dir = dir.join("pg");
        let url = pg_test_server("start", &dir);
        PrivatePostgres { dir, url }
    }

    fn stop(&self) {
        pg_test_server("stop", &self.dir);
    }

    fn restart(&self) {
        assert_eq!(
            pg_test_server("start", &self.dir),
            self.url,
            "the same URL after a restart"
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pg_test_server(command: &str, dir: &Path) -> String {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-server"))
        .arg(command)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg-test-server {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn node(port: u16, postgres: &str) -> Server {
    let config = json!({"listen": format!("127.0.0.1:{port}"), "auth": {"mode": "dev"},
        "store": {"postgres": postgres}});
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    server.start().unwrap();
    server
}

fn client(port: u16, user: &str) -> (Client, Arc<RecordingHost>) {
    let config = json!({"url": format!("ws://127.0.0.1:{port}/ws"), "token": user,
        "reconnect": {"initial_ms": 50, "max_ms": 500}, "heartbeat_ms": 1000, "dead_after_ms": 3000});
    let client = Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let recorder = Arc::new(RecordingHost::default());
    client.set_host(recorder.clone()).unwrap();
    client.start().unwrap();
    (client, recorder)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the node at `port`: the status line and the body.
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

fn acked_ids(events: &RecordingHost) -> Vec<String> {
    events
        .events_of("ack")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_fails_sends_without_acks_and_the_outbox_stores_each_once_after() {
    let dir = TempDir::new().unwrap();
    let pg = PrivatePostgres::start(dir.path());
    let port = free_port();
    let server = tokio::task::block_in_place(|| node(port, &pg.url));
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (alice, alice_events) = tokio::task::block_in_place(|| client(port, "alice"));
    let (_bob, bob_events) = tokio::task::block_in_place(|| client(port, "bob"));
    bob_events.wait_until("bob connected", |e| e.iter().any(|e| e["state"] == "connected"));
    let mut ids: Vec<String> = (0..10)
        .map(|i| alice.send("bob", &json!({"n": i}).to_string()).unwrap())
        .collect();
    alice_events.wait_until("10 acks", |e| e.iter().filter(|e| e["event"] == "ack").count() == 10);
    assert_eq!(tokio::task::block_in_place(|| http_get(port, "/healthz")).1, "ok\n");

    tokio::task::block_in_place(|| pg.stop());
    // A send while the database is down: a clear error, no ack.
    let mut carol = support::connect(&url, "carol").await;
    let refused = carol.send_to("bob", "c1", json!("while down")).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("internal")),
        "{refused}"
    );
    // The host is told what failed.
    let host_send = tokio::task::block_in_place(|| server.send("host", "bob", "1", None));
    assert!(
        matches!(&host_send, Err(imbed::Error::Store(m)) if m.contains("PostgreSQL")),
        "{host_send:?}"
    );
    let (status, body) = tokio::task::block_in_place(|| http_get(port, "/healthz"));
    assert!(status.contains(" 503 "), "{status}");
    assert!(body.starts_with("degraded: store: PostgreSQL"), "{body}");
    // The client's outbox keeps these and retries them.
    ids.extend((10..20).map(|i| alice.send("bob", &json!({"n": i}).to_string()).unwrap()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        acked_ids(&alice_events).len(),
        10,
        "nothing acknowledged while the database is down"
    );

    tokio::task::block_in_place(|| pg.restart());
    alice_events.wait_until("all 20 acks", |e| {
        e.iter().filter(|e| e["event"] == "ack").count() >= 20
    });
    bob_events.wait_until("bob has all 20", |e| {
        e.iter().filter(|e| e["event"] == "message").count() >= 20
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // a duplicate would arrive now
    let acked = acked_ids(&alice_events);
    assert_eq!(acked.len(), 20, "each send acknowledged once");
    assert!(ids.iter().all(|id| acked.contains(id)));
    let delivered: Vec<u64> = bob_events
        .events_of("message")
        .iter()
        .map(|e| e["message"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(delivered, (1..=20).collect::<Vec<u64>>(), "in order, gapless, once");
    let stored = tokio::task::block_in_place(|| server.history("dm:alice:bob", None, 100)).unwrap();
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u64>>()
    );
    let stored_ids: std::collections::BTreeSet<&str> = stored.iter().map(|m| m.message.client_id.as_str()).collect();
    assert_eq!(stored_ids.len(), 20, "each client id stored once");
    // The refused send was not stored; sent again, it is the conversation's first.
    let again = carol.send_to("bob", "c1", json!("after")).await;
    assert_eq!(
        (again["type"].as_str(), again["seq"].as_u64()),
        (Some("ack"), Some(1)),
        "{again}"
    );
    let (status, body) = tokio::task::block_in_place(|| http_get(port, "/healthz"));
    assert!(status.contains(" 200 "), "{status} {body}");
    let metrics = tokio::task::block_in_place(|| http_get(port, "/metrics")).1;
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("imbed_store_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 1, "{metrics}");
    drop(carol);
    tokio::task::block_in_place(|| {
        alice.stop().unwrap();
        server.stop().unwrap();
    });
}
