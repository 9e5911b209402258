//! imbed on PostgreSQL (and, for several nodes, Redis), with the real
//! servers, each test's own: what each promise looks like when a dependency
//! fails (docs/CLUSTER.md, "Failures").

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use imbed::{Client, Config, Server};
use serde_json::json;
use support::RecordingHost;
use tempfile::TempDir;

/// A PostgreSQL or Redis of this test's own (scripts/pg-test-server,
/// scripts/redis-test-server), which it can stop and start again on the
/// same port with the same data.
struct Private {
    script: &'static str,
    dir: PathBuf,
    url: String,
}

impl Private {
    fn start(script: &'static str, dir: &Path) -> Private {
        let dir = dir.join(script);
        let url = run_script(script, "start", &dir);
        Private { script, dir, url }
    }

    fn postgres(dir: &Path) -> Private {
        Private::start("pg-test-server", dir)
    }

    fn redis(dir: &Path) -> Private {
        Private::start("redis-test-server", dir)
    }

    fn stop(&self) {
        run_script(self.script, "stop", &self.dir);
    }

    fn restart(&self) {
        assert_eq!(
            run_script(self.script, "start", &self.dir),
            self.url,
            "the same URL after a restart"
        );
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_script(script: &str, command: &str, dir: &Path) -> String {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script))
        .arg(command)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn node(port: u16, postgres: &str) -> Server {
    start_node(json!({"listen": format!("127.0.0.1:{port}"), "store": {"postgres": postgres}}))
}

/// A node of a cluster on `postgres` and `redis`, named `id`, on a free port.
fn cluster_node(id: &str, postgres: &str, redis: &str) -> Server {
    start_node(json!({"listen": "127.0.0.1:0", "store": {"postgres": postgres},
        "cluster": {"redis": redis, "node_id": id, "heartbeat_ms": 200, "presence_ttl_ms": 1000}}))
}

fn start_node(mut config: serde_json::Value) -> Server {
    config["auth"] = json!({"mode": "dev"});
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    server.start().unwrap();
    server
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
    let pg = Private::postgres(dir.path());
    let port = support::free_port();
    let server = tokio::task::block_in_place(|| node(port, &pg.url));
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (alice, alice_events) = tokio::task::block_in_place(|| client_of(&[port], "alice"));
    let (_bob, bob_events) = tokio::task::block_in_place(|| client_of(&[port], "bob"));
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

fn ws_url(server: &Server) -> String {
    format!("ws://{}/ws", server.local_addr().unwrap())
}

/// The next frame of `client` of `kind`, skipping others.
async fn next_of(client: &mut support::Client, kind: &str) -> serde_json::Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// `client` watches `user`, who is online on another node. The `ok` says
/// so, or, when the watch beat the presence crossing Redis, says offline and
/// a presence frame follows.
async fn watch_online_elsewhere(client: &mut support::Client, user: &str) {
    let watched = client
        .request(json!({"type": "watch", "id": "w", "users": [user]}))
        .await;
    if watched["online"][user] != true {
        assert_eq!(watched["online"], json!({user: false}), "{watched}");
        let online = next_of(client, "presence").await;
        assert_eq!(online, json!({"type": "presence", "user": user, "online": true}));
    }
}

/// `count` nodes named n1, n2…, each started once the previous one is subscribed.
fn nodes(count: usize, postgres: &str, redis: &str) -> Vec<Server> {
    (1..=count)
        .map(|n| {
            let node = cluster_node(&format!("n{n}"), postgres, redis);
            wait_healthy(&node);
            node
        })
        .collect()
}

/// Waits until the node says `ok`: it is subscribed and knows the others.
fn wait_healthy(node: &Server) {
    let port = node.local_addr().unwrap().port();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http_get(port, "/healthz").1 != "ok\n" {
        assert!(std::time::Instant::now() < deadline, "{:?}", http_get(port, "/healthz"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_database_and_one_redis_behave_like_one() {
    let dir = TempDir::new().unwrap();
    let redis = Private::redis(dir.path());
    let postgres = support::postgres::database(dir.path());
    let nodes = tokio::task::block_in_place(|| nodes(3, &postgres, &redis.url));
    let urls: Vec<String> = nodes.iter().map(ws_url).collect();

    // 1:1 across nodes, both ways, in order.
    let mut alice = support::connect(&urls[0], "alice").await;
    let mut bob = support::connect(&urls[1], "bob").await;
    for i in 1..=20u64 {
        let ack = alice.send_to("bob", &format!("a{i}"), json!({"n": i})).await;
        assert_eq!(ack["seq"], i, "{ack}");
    }
    for i in 1..=20u64 {
        let msg = next_of(&mut bob, "msg").await;
        assert_eq!(
            (msg["seq"].as_u64(), msg["from"].as_str()),
            (Some(i), Some("alice")),
            "{msg}"
        );
    }
    let ack = bob.send_to("alice", "b1", json!("back")).await;
    assert_eq!(ack["seq"], 21);
    assert_eq!(next_of(&mut alice, "msg").await["seq"], 21);

    // Presence across nodes: carol on the third node watches alice.
    let mut carol = support::connect(&urls[2], "carol").await;
    watch_online_elsewhere(&mut carol, "alice").await;
    let watched = carol
        .request(json!({"type": "watch", "id": "z", "users": ["zed"]}))
        .await;
    assert_eq!(watched["online"], json!({"zed": false}), "{watched}");
    drop(alice);
    let offline = next_of(&mut carol, "presence").await;
    assert_eq!(offline, json!({"type": "presence", "user": "alice", "online": false}));
    let mut alice = support::connect(&urls[1], "alice").await;
    let online = next_of(&mut carol, "presence").await;
    assert_eq!(online, json!({"type": "presence", "user": "alice", "online": true}));

    // One user, two devices on two nodes: both get what others send, and
    // each sees what the other device sent.
    let mut dave_phone = support::connect(&urls[0], "dave").await;
    let mut dave_laptop = support::connect(&urls[1], "dave").await;
    let ack = carol.send_to("dave", "c1", json!("to both")).await;
    assert_eq!(ack["type"], "ack");
    for device in [&mut dave_phone, &mut dave_laptop] {
        let msg = next_of(device, "msg").await;
        assert_eq!(
            (msg["from"].as_str(), msg["seq"].as_u64()),
            (Some("carol"), Some(1)),
            "{msg}"
        );
    }
    assert_eq!(
        dave_phone.send_to("carol", "d1", json!("from the phone")).await["seq"],
        2
    );
    let copy = next_of(&mut dave_laptop, "msg").await;
    assert_eq!(
        (copy["from"].as_str(), copy["seq"].as_u64()),
        (Some("dave"), Some(2)),
        "{copy}"
    );
    assert_eq!(next_of(&mut carol, "msg").await["seq"], 2);

    // The host of one node reaches a user on another.
    let placement = tokio::task::block_in_place(|| nodes[2].send("host", "bob", "\"from the host\"", None)).unwrap();
    let msg = next_of(&mut bob, "msg").await;
    assert_eq!(
        (msg["from"].as_str(), msg["seq"].as_u64()),
        (Some("host"), Some(placement.seq)),
        "{msg}"
    );

    // A group made on one node, joined on others, spoken in from all three.
    tokio::task::block_in_place(|| nodes[0].create_group("crew", false)).unwrap();
    for (client, id) in [(&mut alice, "j1"), (&mut bob, "j2"), (&mut carol, "j3")] {
        let joined = client.request(json!({"type": "join", "id": id, "group": "crew"})).await;
        assert_eq!(joined["type"], "ok", "{joined}");
    }
    // Each member speaks once it has heard the ones before it; each gets
    // the others' messages (not its own session's), in order.
    async fn group_msgs(client: &mut support::Client, count: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.len() < count {
            let frame = next_of(client, "msg").await;
            assert_eq!(frame["conv"], "g:crew", "{frame}");
            seqs.push(frame["seq"].as_u64().unwrap());
        }
        seqs
    }
    let say = |n: u64| json!({"type": "send", "id": format!("g{n}"), "group": "crew", "body": n});
    assert_eq!(alice.request(say(1)).await["seq"], 1);
    assert_eq!(group_msgs(&mut bob, 1).await, [1]);
    assert_eq!(bob.request(say(2)).await["seq"], 2);
    assert_eq!(group_msgs(&mut carol, 2).await, [1, 2]);
    assert_eq!(carol.request(say(3)).await["seq"], 3);
    assert_eq!(group_msgs(&mut alice, 2).await, [2, 3]);
    assert_eq!(group_msgs(&mut bob, 1).await, [3]);
    for client in [&mut alice, &mut bob, &mut carol, &mut dave_phone, &mut dave_laptop] {
        client.assert_quiet().await;
    }
    drop((alice, bob, carol, dave_phone, dave_laptop));
    tokio::task::block_in_place(|| {
        for node in nodes {
            node.stop().unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_acks_coming_and_the_store_brings_back_what_redis_lost() {
    let dir = TempDir::new().unwrap();
    let redis = Private::redis(dir.path());
    let postgres = support::postgres::database(dir.path());
    let nodes = tokio::task::block_in_place(|| nodes(2, &postgres, &redis.url));
    let urls: Vec<String> = nodes.iter().map(ws_url).collect();
    let mut alice = support::connect(&urls[0], "alice").await;
    let mut bob = support::connect(&urls[1], "bob").await;
    let mut carol = support::connect(&urls[1], "carol").await;
    watch_online_elsewhere(&mut carol, "alice").await;
    assert_eq!(alice.send_to("bob", "before", json!(0)).await["seq"], 1);
    assert_eq!(next_of(&mut bob, "msg").await["seq"], 1);

    tokio::task::block_in_place(|| redis.stop());
    // Sends are still stored and acknowledged; live delivery across nodes waits.
    for i in 2..=6u64 {
        let ack = alice.send_to("bob", &format!("during{i}"), json!(i)).await;
        assert_eq!(
            (ack["type"].as_str(), ack["seq"].as_u64()),
            (Some("ack"), Some(i)),
            "{ack}"
        );
    }
    let port = nodes[0].local_addr().unwrap().port();
    let (status, body) = tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let reply = http_get(port, "/healthz");
            if reply.1 != "ok\n" || std::time::Instant::now() > deadline {
                return reply;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(status.contains(" 200 "), "still serving: {status}");
    assert!(body.starts_with("degraded: cluster: redis"), "{body}");

    // alice's node stops while Redis is down: what it could not publish
    // is lost with it, and can only come back from the store.
    drop(alice);
    let mut nodes = nodes;
    let first = nodes.remove(0);
    tokio::task::block_in_place(|| first.stop()).unwrap();
    tokio::task::block_in_place(|| redis.restart());
    for i in 2..=6u64 {
        let msg = next_of(&mut bob, "msg").await;
        assert_eq!(msg["seq"], i, "{msg}");
    }
    tokio::task::block_in_place(|| wait_healthy(&nodes[0]));
    // Presence was rebuilt: alice's node is gone, and so is alice.
    let offline = next_of(&mut carol, "presence").await;
    assert_eq!(offline, json!({"type": "presence", "user": "alice", "online": false}));
    let mut alice = support::connect(&urls[1], "alice").await;
    assert_eq!(next_of(&mut carol, "presence").await["online"], true);
    assert_eq!(alice.send_to("bob", "after", json!(7)).await["seq"], 7);
    assert_eq!(next_of(&mut bob, "msg").await["seq"], 7);
    bob.assert_quiet().await;
    drop(alice);
    let metrics = tokio::task::block_in_place(|| http_get(nodes[0].local_addr().unwrap().port(), "/metrics")).1;
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("imbed_{name}_total ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(count("backfilled_messages") >= 5, "{metrics}");
    assert!(
        count("cluster_reconnects") >= 1 && count("redis_errors") >= 1,
        "{metrics}"
    );
    drop((bob, carol));
    tokio::task::block_in_place(|| {
        for node in nodes {
            node.stop().unwrap();
        }
    });
}

/// Not a test: the body of a node process for the tests that kill one. A
/// test runs this binary again with `--ignored --exact node_process` and
/// the node's configuration in `IMBED_NODE_CONFIG`; it serves until killed.
#[test]
#[ignore = "run by the tests that kill a node, in a process of its own"]
fn node_process() {
    let config = std::env::var("IMBED_NODE_CONFIG").expect("IMBED_NODE_CONFIG");
    let server = Server::new(Config::from_json(&config).unwrap()).unwrap();
    server.start().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A node in a process of its own, on `port`, killed (SIGKILL) when dropped.
struct NodeProcess(std::process::Child);

impl NodeProcess {
    fn spawn(id: &str, port: u16, postgres: &str, redis: &str) -> NodeProcess {
        let config = json!({"listen": format!("127.0.0.1:{port}"), "auth": {"mode": "dev"},
            "store": {"postgres": postgres},
            "cluster": {"redis": redis, "node_id": id, "heartbeat_ms": 200, "presence_ttl_ms": 1000}});
        // Killed and waited for on drop, should the wait below fail.
        let node = NodeProcess(
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "node_process", "--nocapture"])
                .env("IMBED_NODE_CONFIG", config.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let healthy =
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && http_get(port, "/healthz").1 == "ok\n";
            if healthy {
                return node;
            }
            assert!(std::time::Instant::now() < deadline, "node {id} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client of the client role that tries `ports`' nodes in order.
fn client_of(ports: &[u16], user: &str) -> (Client, Arc<RecordingHost>) {
    let urls: Vec<String> = ports.iter().map(|p| format!("ws://127.0.0.1:{p}/ws")).collect();
    support::start_client(json!({"urls": urls, "token": user,
        "reconnect": {"initial_ms": 50, "max_ms": 300}, "heartbeat_ms": 500, "dead_after_ms": 1500}))
}

#[test]
fn a_node_killed_under_load_loses_and_duplicates_nothing_its_clients_move_to_another() {
    let dir = TempDir::new().unwrap();
    let redis = Private::redis(dir.path());
    let postgres = support::postgres::database(dir.path());
    let (a, b) = (support::free_port(), support::free_port());
    let mut doomed = NodeProcess::spawn("doomed", a, &postgres, &redis.url);
    let _survivor = NodeProcess::spawn("survivor", b, &postgres, &redis.url);
    // alice and bob start on the doomed node, carol on the other.
    let (alice, alice_events) = client_of(&[a, b], "alice");
    let (_bob, bob_events) = client_of(&[a, b], "bob");
    let (_carol, carol_events) = client_of(&[b, a], "carol");
    for events in [&alice_events, &bob_events, &carol_events] {
        events.wait_until("connected", |e| e.iter().any(|e| e["state"] == "connected"));
    }
    // dora, on the doomed node, will not come back; erin on the other watches her.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _dora = runtime.block_on(support::connect(&format!("ws://127.0.0.1:{a}/ws"), "dora"));
    let mut erin = runtime.block_on(support::connect(&format!("ws://127.0.0.1:{b}/ws"), "erin"));
    runtime.block_on(watch_online_elsewhere(&mut erin, "dora"));
    const SENT: u64 = 300;
    let mut ids = Vec::new();
    for i in 0..SENT {
        ids.push(alice.send("bob", &json!({"n": i}).to_string()).unwrap());
        ids.push(alice.send("carol", &json!({"n": i}).to_string()).unwrap());
        if i == SENT / 3 {
            alice_events.wait_until("some acks", |e| e.iter().filter(|e| e["event"] == "ack").count() >= 20);
            doomed.kill();
        }
    }
    let all = 2 * SENT as usize;
    alice_events.wait_until("every ack", |e| e.iter().filter(|e| e["event"] == "ack").count() >= all);
    bob_events.wait_until("bob has every message", |e| {
        e.iter().filter(|e| e["event"] == "message").count() >= SENT as usize
    });
    carol_events.wait_until("carol has every message", |e| {
        e.iter().filter(|e| e["event"] == "message").count() >= SENT as usize
    });
    std::thread::sleep(Duration::from_millis(500)); // a duplicate would arrive now
    for events in [&alice_events, &bob_events] {
        let connects = events
            .events_of("state")
            .iter()
            .filter(|e| e["state"] == "connected")
            .count();
        assert!(
            connects >= 2,
            "moved to the other node: {:?}",
            events.events_of("state")
        );
    }
    let acked = acked_ids(&alice_events);
    let unique: std::collections::BTreeSet<&String> = acked.iter().collect();
    assert_eq!((acked.len(), unique.len()), (all, all), "each send acknowledged once");
    assert!(ids.iter().all(|id| unique.contains(id)));
    let expected: Vec<u64> = (1..=SENT).collect();
    assert_eq!(
        support::delivered_seqs(&bob_events, "dm:alice:bob"),
        expected,
        "bob: every message once, in order"
    );
    assert_eq!(
        support::delivered_seqs(&carol_events, "dm:alice:carol"),
        expected,
        "carol: every message once, in order"
    );
    // The store has each once: a fresh node reads them back.
    let reader = node(support::free_port(), &postgres);
    for conv in ["dm:alice:bob", "dm:alice:carol"] {
        let stored = reader.history(conv, None, 1000).unwrap();
        let client_ids: std::collections::BTreeSet<&str> =
            stored.iter().map(|m| m.message.client_id.as_str()).collect();
        assert_eq!(
            (stored.len(), client_ids.len()),
            (SENT as usize, SENT as usize),
            "{conv}"
        );
    }
    reader.stop().unwrap();
    alice.stop().unwrap();
    // The dead node's presence expired: dora is offline for everyone.
    let offline = runtime.block_on(next_of(&mut erin, "presence"));
    assert_eq!(offline, json!({"type": "presence", "user": "dora", "online": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_2000_spread_over_three_nodes_hears_every_message_once_in_order() {
    const MEMBERS: usize = 2000;
    const EACH: u64 = 5;
    let dir = TempDir::new().unwrap();
    let redis = Private::redis(dir.path());
    let postgres = support::postgres::database(dir.path());
    let nodes = tokio::task::block_in_place(|| nodes(3, &postgres, &redis.url));
    let urls: Vec<String> = nodes.iter().map(ws_url).collect();
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:04}")).collect();
    tokio::task::block_in_place(|| {
        nodes[0].create_group("big", true).unwrap();
        for member in &members {
            nodes[0].add_member("big", member).unwrap();
        }
    });
    // Member i on node i % 3; the first three speak, one from each node.
    let mut clients = Vec::with_capacity(MEMBERS);
    for (i, member) in members.iter().enumerate() {
        clients.push(support::connect(&urls[i % 3], member).await);
    }
    let speakers: Vec<support::Client> = clients.drain(..3).collect();
    let mut sent = Vec::new();
    let mut speaking = Vec::new();
    for (n, mut speaker) in speakers.into_iter().enumerate() {
        speaking.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..EACH {
                let frame = json!({"type": "send", "id": format!("s{n}-{k}"), "group": "big", "body": k});
                let ack = speaker.request(frame).await;
                assert_eq!(ack["type"], "ack", "{ack}");
                acked.push(ack["seq"].as_u64().unwrap());
            }
            acked
        }));
    }
    for speaker in speaking {
        sent.extend(speaker.await.unwrap());
    }
    sent.sort();
    let all: Vec<u64> = (1..=3 * EACH).collect();
    assert_eq!(sent, all, "one gapless sequence for the three nodes' sends");
    // Every listener gets all of them, in order, once. (A generous wait:
    // 2,000 sessions share two cores with the other tests.)
    let listening = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while seqs.len() < (3 * EACH) as usize {
                use futures_util::StreamExt;
                let message = tokio::time::timeout_at(deadline, client.ws.next()).await;
                let text = match message.expect("every message within a minute") {
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    other => panic!("the connection ended: {other:?}"),
                };
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "msg" {
                    seqs.push(frame["seq"].as_u64().unwrap());
                }
            }
            client.assert_quiet().await;
            seqs
        })
    });
    for heard in futures_util::future::join_all(listening).await {
        assert_eq!(heard.unwrap(), all);
    }
    tokio::task::block_in_place(|| {
        for node in nodes {
            node.stop().unwrap();
        }
    });
}

/// Runs `redis-cli` against `url` with `args`.
fn redis_cli(url: &str, args: &[&str]) {
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn metric(port: u16, name: &str) -> u64 {
    let text = http_get(port, "/metrics").1;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("imbed_{name}_total ")))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_falls_silent_is_noticed_and_made_again() {
    let dir = TempDir::new().unwrap();
    let redis = Private::redis(dir.path());
    let postgres = support::postgres::database(dir.path());
    let nodes = tokio::task::block_in_place(|| nodes(2, &postgres, &redis.url));
    let urls: Vec<String> = nodes.iter().map(ws_url).collect();
    let port = nodes[1].local_addr().unwrap().port();
    let mut alice = support::connect(&urls[0], "alice").await;
    let mut bob = support::connect(&urls[1], "bob").await;
    assert_eq!(alice.send_to("bob", "a1", json!(1)).await["seq"], 1);
    assert_eq!(next_of(&mut bob, "msg").await["seq"], 1);
    // Redis stops passing publishes on (its connections stay open): each
    // node's subscription hears nothing, not even its own probes.
    tokio::task::block_in_place(|| redis_cli(&redis.url, &["CLIENT", "PAUSE", "2000", "WRITE"]));
    for i in 2..=4u64 {
        assert_eq!(alice.send_to("bob", &format!("a{i}"), json!(i)).await["seq"], i);
    }
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metric(port, "cluster_reconnects") == 0 {
            assert!(std::time::Instant::now() < deadline, "the silence was never noticed");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    for i in 2..=4u64 {
        assert_eq!(next_of(&mut bob, "msg").await["seq"], i);
    }
    tokio::task::block_in_place(|| nodes.iter().for_each(wait_healthy));
    assert_eq!(alice.send_to("bob", "a5", json!(5)).await["seq"], 5);
    assert_eq!(next_of(&mut bob, "msg").await["seq"], 5);
    bob.assert_quiet().await;
    drop((alice, bob));
    tokio::task::block_in_place(|| nodes.into_iter().for_each(|n| n.stop().unwrap()));
}

#[test]
fn a_bad_or_unreachable_database_or_redis_is_a_clear_error_at_start() {
    let start_error = |config: serde_json::Value| {
        let mut config = config;
        config["listen"] = json!("127.0.0.1:0");
        config["auth"] = json!({"mode": "dev"});
        let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
        let error = server
            .start()
            .expect_err("a server that cannot reach its store does not start");
        error.to_string()
    };
    let nobody = format!("postgres://imbed@127.0.0.1:{}/imbed", support::free_port());
    let not_a_url = start_error(json!({"store": {"postgres": "mysql://x"}}));
    assert!(
        not_a_url.contains("store.postgres is not a PostgreSQL URL"),
        "{not_a_url}"
    );
    let unreachable = start_error(json!({"store": {"postgres": nobody}}));
    assert!(unreachable.contains("PostgreSQL unreachable"), "{unreachable}");
    let postgres = support::postgres::database(TempDir::new().unwrap().path());
    let bad_redis = start_error(json!({"store": {"postgres": postgres}, "cluster": {"redis": "http://x"}}));
    assert!(bad_redis.contains("cluster.redis"), "{bad_redis}");
}
