//! The engine's promises under races and overflow: nothing acknowledged is
//! lost, the client role delivers every message once and in order, no
//! callback runs after `stop` returns, and a session's requests take effect
//! in the order they were sent. Each test here reproduced a bug first.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imbed::Client;
use imbed::config::ClientConfig;
use imbed::{Config, Event, Host, Server};
use serde_json::{Value, json};
use support::{RecordingHost, connect, file_cursor, start};
use tempfile::TempDir;

/// Panics on the engine's own threads (`imbed-*`), counted by a hook that
/// stays installed for this whole test binary.
static ENGINE_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_engine_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name().is_some_and(|n| n.starts_with("imbed-")) {
                ENGINE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

fn sqlite_server(dir: &TempDir, extra: Value) -> Server {
    let mut config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"},
        "store": {"path": dir.path().join("s.db").to_str().unwrap()}});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    server.start().unwrap();
    server
}

#[test]
fn stop_and_drop_racing_senders_never_panic_the_store() {
    count_engine_panics();
    let dir = TempDir::new().unwrap();
    for round in 0..40 {
        let server = Arc::new(sqlite_server(&dir, json!({})));
        let senders: Vec<_> = (0..4)
            .map(|n| {
                let server = server.clone();
                std::thread::spawn(move || {
                    let mut stored = 0;
                    while server.send(&format!("h{n}"), "bob", "1", None).is_ok() {
                        stored += 1;
                    }
                    stored
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5 + round % 7));
        server.stop().unwrap();
        drop(server);
        for sender in senders {
            sender.join().unwrap();
        }
        assert_eq!(
            ENGINE_PANICS.load(Ordering::SeqCst),
            0,
            "an engine thread panicked in round {round}"
        );
    }
}

/// A host whose callback for the first connected event takes `slow`, and
/// which records whether a callback is running and when it is released.
struct SlowHost {
    slow: Duration,
    entered: AtomicBool,
    running: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
}

impl Host for SlowHost {
    fn on_event(&self, event: &Event) {
        if matches!(event, Event::Connected { .. } | Event::State { state: "connected", .. })
            && !self.entered.swap(true, Ordering::SeqCst)
        {
            self.running.store(true, Ordering::SeqCst);
            std::thread::sleep(self.slow);
            self.running.store(false, Ordering::SeqCst);
        }
    }
}

impl Drop for SlowHost {
    fn drop(&mut self) {
        self.released.store(true, Ordering::SeqCst);
    }
}

fn slow_host() -> (Arc<SlowHost>, Arc<AtomicBool>, Arc<AtomicBool>) {
    let (running, released) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let host = Arc::new(SlowHost {
        slow: Duration::from_millis(500),
        entered: AtomicBool::new(false),
        running: running.clone(),
        released: released.clone(),
    });
    (host, running, released)
}

/// Calls `stop` twice at once while a callback is running; each call must
/// return only after the callback finished and the host was released.
fn assert_both_stops_wait(running: &AtomicBool, released: &AtomicBool, stop: impl Fn() + Sync) {
    while !running.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::scope(|scope| {
        let first = scope.spawn(&stop);
        std::thread::sleep(Duration::from_millis(50));
        let second = scope.spawn(|| {
            stop();
            (running.load(Ordering::SeqCst), released.load(Ordering::SeqCst))
        });
        assert_eq!(second.join().unwrap(), (false, true), "the second stop returned early");
        first.join().unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_server_stop_waits_for_the_first() {
    let (host, running, released) = slow_host();
    let server = Server::new(Config::from_json(r#"{"listen":"127.0.0.1:0","auth":{"mode":"dev"}}"#).unwrap()).unwrap();
    server.set_host(host).unwrap();
    server.start().unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    let _alice = connect(&url, "alice").await;
    tokio::task::spawn_blocking(move || assert_both_stops_wait(&running, &released, || server.stop().unwrap()))
        .await
        .unwrap();
}

#[test]
fn a_second_concurrent_client_stop_waits_for_the_first() {
    let t = start(json!({}));
    let (host, running, released) = slow_host();
    let client = new_client(&t.url, "alice", ":memory:", json!({}));
    client.set_host(host).unwrap();
    client.start().unwrap();
    assert_both_stops_wait(&running, &released, || client.stop().unwrap());
}

fn new_client(url: &str, user: &str, state_path: &str, extra: Value) -> Client {
    let mut config = json!({"url": url, "token": user, "state_path": state_path,
        "reconnect": {"initial_ms": 50, "max_ms": 500}, "heartbeat_ms": 1000, "dead_after_ms": 3000});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap()
}

/// A client host that takes `delay` per message and records every message's seq.
struct SlowRecorder {
    delay: Duration,
    seqs: Mutex<Vec<u64>>,
    /// Checked at each message: the state file's cursor must not be ahead.
    state_file: Option<String>,
    cursor_ahead: Mutex<Option<(u64, u64)>>,
}

impl Host for SlowRecorder {
    fn on_event(&self, event: &Event) {
        let Event::Message { frame, .. } = event else { return };
        let msg: Value = serde_json::from_str(frame).unwrap();
        let seq = msg["seq"].as_u64().unwrap();
        if let Some(path) = &self.state_file {
            let written = file_cursor(path, msg["conv"].as_str().unwrap());
            if written >= seq {
                self.cursor_ahead.lock().unwrap().get_or_insert((seq, written));
            }
        }
        std::thread::sleep(self.delay);
        self.seqs.lock().unwrap().push(seq);
    }
}

fn slow_recorder(delay_ms: u64, state_file: Option<&str>) -> Arc<SlowRecorder> {
    Arc::new(SlowRecorder {
        delay: Duration::from_millis(delay_ms),
        seqs: Mutex::default(),
        state_file: state_file.map(str::to_owned),
        cursor_ahead: Mutex::default(),
    })
}

/// Whether `done` becomes true within `limit`.
fn within(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    assert!(within(limit, done), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_full_event_queue_loses_no_message_across_a_restart() {
    let t = start(json!({}));
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("alice.db").to_str().unwrap().to_owned();
    let recorder = slow_recorder(2, None);
    let client = new_client(&t.url, "alice", &state, json!({"events": {"queue_capacity": 4}}));
    client.set_host(recorder.clone()).unwrap();
    client.start().unwrap();
    let mut bob = connect(&t.url, "bob").await;
    for n in 0..200 {
        assert_eq!(bob.send_to("alice", &format!("b{n}"), json!(n)).await["type"], "ack");
    }
    let first_run = recorder.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("some messages", Duration::from_secs(20), || {
            first_run.seqs.lock().unwrap().len() >= 50
        });
        client.stop().unwrap();
    })
    .await
    .unwrap();
    let restarted = slow_recorder(0, None);
    let client = new_client(&t.url, "alice", &state, json!({}));
    client.set_host(restarted.clone()).unwrap();
    client.start().unwrap();
    let second_run = restarted.clone();
    tokio::task::spawn_blocking(move || {
        // Gives up only when something was lost: the last message then never comes.
        within(Duration::from_secs(10), || {
            second_run.seqs.lock().unwrap().last() == Some(&200)
        });
        client.stop().unwrap();
    })
    .await
    .unwrap();
    let mut all = recorder.seqs.lock().unwrap().clone();
    all.extend(restarted.seqs.lock().unwrap().iter());
    assert_eq!(all, (1..=200).collect::<Vec<u64>>(), "every message once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_never_passes_messages_the_host_has_not_processed() {
    let t = start(json!({}));
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("alice.db").to_str().unwrap().to_owned();
    let recorder = slow_recorder(50, Some(&state));
    let client = new_client(&t.url, "alice", &state, json!({}));
    client.set_host(recorder.clone()).unwrap();
    client.start().unwrap();
    let mut bob = connect(&t.url, "bob").await;
    for n in 0..10 {
        assert_eq!(bob.send_to("alice", &format!("b{n}"), json!(n)).await["type"], "ack");
    }
    // Alice's own message lands at seq 11 and is acked while 1..=10 are still queued.
    client.send("bob", r#""mine""#).unwrap();
    assert_eq!(bob.recv().await["seq"], 11);
    let done = recorder.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("ten messages", Duration::from_secs(20), || {
            done.seqs.lock().unwrap().len() == 10
        });
        client.stop().unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        *recorder.cursor_ahead.lock().unwrap(),
        None,
        "(seq, cursor in the file)"
    );
    assert_eq!(file_cursor(&state, "dm:alice:bob"), 11);
}

fn states(recorder: &RecordingHost, state: &str) -> usize {
    recorder
        .events_of("state")
        .iter()
        .filter(|e| e["state"] == state)
        .count()
}

#[test]
fn a_refused_sync_backs_off_instead_of_reconnecting_in_a_storm() {
    let t = start(json!({"limits": {"messages_per_second": 1, "message_burst": 1}}));
    let recorder = Arc::new(RecordingHost::default());
    let client = new_client(
        &t.url,
        "alice",
        ":memory:",
        json!({"reconnect": {"initial_ms": 100, "max_ms": 2000}}),
    );
    client.set_host(recorder.clone()).unwrap();
    // Queued before start: the outbox takes the connection's one frame, the sync is refused.
    client.send("bob", "1").unwrap();
    client.start().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    client.stop().unwrap();
    let attempts = states(&recorder, "connecting");
    assert!(attempts <= 15, "{attempts} connection attempts in 3 s");
    let reasons: Vec<Value> = recorder
        .events_of("state")
        .into_iter()
        .filter(|e| e["state"] == "disconnected")
        .map(|e| e["reason"].clone())
        .collect();
    assert!(
        reasons.iter().all(|r| r.as_str().unwrap().starts_with("sync refused")),
        "{reasons:?}"
    );
}

#[test]
fn sends_refused_as_rate_limited_stay_queued_and_are_acked() {
    let t = start(json!({"limits": {"messages_per_second": 100, "message_burst": 100}}));
    let recorder = Arc::new(RecordingHost::default());
    let client = new_client(&t.url, "alice", ":memory:", json!({}));
    client.set_host(recorder.clone()).unwrap();
    client.start().unwrap();
    recorder.wait_until("connected", |e| e.iter().any(|e| e["state"] == "connected"));
    let ids: Vec<String> = (0..300).map(|n| client.send("bob", &n.to_string()).unwrap()).collect();
    recorder.wait_until("every ack", |e| {
        e.iter().filter(|e| e["event"] == "ack").count() >= ids.len()
    });
    client.stop().unwrap();
    assert!(
        recorder.events_of("send_failed").is_empty(),
        "{:?}",
        recorder.events_of("send_failed")
    );
    let acked: Vec<Value> = recorder.events_of("ack").iter().map(|e| e["id"].clone()).collect();
    assert_eq!(acked.len(), ids.len());
    for id in &ids {
        assert!(acked.contains(&json!(id)), "{id} not acked");
    }
    assert_eq!(
        states(&recorder, "disconnected"),
        0,
        "refusals never cost the connection: {:?}",
        recorder.events_of("state")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_join_then_send_takes_effect_in_order() {
    let dir = TempDir::new().unwrap();
    let server = tokio::task::spawn_blocking(move || (sqlite_server(&dir, json!({})), dir))
        .await
        .unwrap();
    let url = format!("ws://{}/ws", server.0.local_addr().unwrap());
    let mut alice = connect(&url, "alice").await;
    // Within the join/leave burst of one session (20).
    for n in 0..8 {
        let group = format!("room{n}");
        alice
            .send_json(json!({"type": "join", "id": format!("j{n}"), "group": group}))
            .await;
        alice
            .send_json(json!({"type": "send", "id": format!("m{n}"), "group": group, "body": n}))
            .await;
        alice
            .send_json(json!({"type": "leave", "id": format!("l{n}"), "group": group}))
            .await;
        alice
            .send_json(json!({"type": "send", "id": format!("x{n}"), "group": group, "body": n}))
            .await;
        let mut replies = std::collections::HashMap::new();
        while replies.len() < 4 {
            let reply = alice.recv().await;
            if let Some(id) = reply["id"].as_str() {
                replies.insert(id.to_owned(), reply.clone());
            }
        }
        assert_eq!(replies[&format!("j{n}")]["type"], "ok");
        assert_eq!(
            replies[&format!("m{n}")]["type"],
            "ack",
            "try {n}: {}",
            replies[&format!("m{n}")]
        );
        assert_eq!(replies[&format!("l{n}")]["type"], "ok");
        assert_eq!(replies[&format!("x{n}")]["code"], "forbidden", "try {n}");
    }
    tokio::task::spawn_blocking(move || drop(server)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_frame_larger_than_the_reply_budget_is_synced_alone() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("s.db").to_str().unwrap().to_owned();
    let big = format!("\"{}\"", "x".repeat(40_000));
    let config = |extra: Value| {
        let mut c = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "store": {"path": db}});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Config::from_json(&c.to_string()).unwrap()
    };
    let (first, later) = (
        config(json!({})),
        config(json!({"limits": {"max_frame_bytes": 8192, "outbound_queue_bytes": 65536}})),
    );
    tokio::task::spawn_blocking(move || {
        let server = Server::new(first).unwrap();
        server.start().unwrap();
        server.send("bob", "alice", &big, Some("big")).unwrap();
        server.send("bob", "alice", "2", Some("small")).unwrap();
    })
    .await
    .unwrap();
    let server = tokio::task::spawn_blocking(move || {
        let server = Server::new(later).unwrap();
        server.start().unwrap();
        server
    })
    .await
    .unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    let mut alice = connect(&url, "alice").await;
    let mut seqs = Vec::new();
    for round in 0..3 {
        alice
            .send_json(json!({"type": "sync", "id": format!("s{round}"), "cursors": {"dm:alice:bob": seqs.last().copied().unwrap_or(0)}}))
            .await;
        loop {
            let frame = alice.recv().await;
            match frame["type"].as_str().unwrap() {
                "msg" => seqs.push(frame["seq"].as_u64().unwrap()),
                "synced" => {
                    let more = frame["convs"]["dm:alice:bob"]["more"].as_bool().unwrap();
                    assert!(!more || seqs.len() > round, "more without progress: {frame}");
                    break;
                }
                other => panic!("unexpected {other}: {frame}"),
            }
        }
        alice
            .send_json(json!({"type": "history", "id": format!("h{round}"), "conv": "dm:alice:bob", "before": 2}))
            .await;
        let history = alice.recv().await;
        assert_eq!(
            history["messages"].as_array().unwrap().len(),
            1,
            "history must carry the big message alone"
        );
    }
    assert_eq!(seqs, [1, 2]);
    tokio::task::spawn_blocking(move || drop(server)).await.unwrap();
}

#[test]
fn limits_that_cannot_carry_one_frame_per_reply_are_refused() {
    let config = json!({"limits": {"max_frame_bytes": 65536, "outbound_queue_bytes": 100_000}}).to_string();
    let error = Config::from_json(&config)
        .and_then(|c| Server::new(c).map(drop))
        .unwrap_err();
    assert!(error.to_string().contains("limits.outbound_queue_bytes"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_its_own_pushed_before_its_ack_is_not_delivered_back() {
    // One frame a second: the client's sync on connect takes it, so its send
    // is refused as rate_limited and stays in its outbox, unacknowledged.
    let t = start(json!({"limits": {"messages_per_second": 1, "message_burst": 1}}));
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("alice.db").to_str().unwrap().to_owned();
    // The session a reconnecting client left behind, which had sent the message.
    let mut old_session = connect(&t.url, "alice").await;
    let host = Arc::new(RecordingHost::default());
    let client = new_client(
        &t.url,
        "alice",
        &state,
        json!({"reconnect": {"initial_ms": 30000, "max_ms": 30000}}),
    );
    client.set_host(host.clone()).unwrap();
    client.start().unwrap();
    let connected = host.clone();
    tokio::task::spawn_blocking(move || connected.wait_for(|e| e["state"] == "connected"))
        .await
        .unwrap();
    let id = client.send("bob", r#""mine""#).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Stored from the old session: the server pushes it to alice's other
    // session, the client's, before the client's own send is acknowledged.
    assert_eq!(old_session.send_to("bob", &id, json!("mine")).await["seq"], 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered_back: Vec<Value> = host
        .events_of("message")
        .into_iter()
        .filter(|e| e["message"]["id"] == id.as_str())
        .collect();
    assert_eq!(
        delivered_back,
        Vec::<Value>::new(),
        "its own message came back as a message"
    );
    tokio::task::spawn_blocking(move || client.stop().unwrap())
        .await
        .unwrap();
}

/// A peer's message whose client id equals one of the client's pending
/// sends is the peer's, not the client's own: it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_message_reusing_a_pending_client_id_is_still_delivered() {
    let s = start(json!({}));
    let config = json!({"url": s.url, "token": "alice", "reconnect": {"initial_ms": 50, "max_ms": 500}});
    let alice = Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let host = std::sync::Arc::new(RecordingHost::default());
    alice.set_host(host.clone()).unwrap();
    // 100 sends queued while offline: ids prefix-1 .. prefix-100 (window 64).
    let mut ids = Vec::new();
    for n in 0..100 {
        ids.push(alice.send("carol", &format!("{n}")).unwrap());
    }
    // Bob saw alice's ids before; he reuses the last one for his own message.
    let mut bob = connect(&s.url, "bob").await;
    assert_eq!(
        bob.send_to("alice", ids.last().unwrap(), json!("hi alice")).await["type"],
        "ack"
    );
    alice.start().unwrap();
    let h = host.clone();
    tokio::task::spawn_blocking(move || {
        h.wait_until("100 acks", |e| e.iter().filter(|e| e["event"] == "ack").count() == 100)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from_bob: Vec<_> = host
        .events_of("message")
        .into_iter()
        .filter(|e| e["message"]["from"] == "bob")
        .collect();
    assert_eq!(from_bob.len(), 1, "bob's message was swallowed as alice's own");
}
