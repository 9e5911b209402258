//! Push requests for users who are not looking: one per recipient and
//! message, durable, offered until the host says it is done, and a badge
//! request when the user reads.

mod support;

use std::sync::Arc;
use std::time::Duration;

use imbed::{Config, Error, Event, Server};
use serde_json::{Value, json};
use support::{RecordingHost, connect, start};
use tempfile::TempDir;

fn pushes(host: &RecordingHost) -> Vec<Value> {
    host.events_of("push")
}

fn message_pushes_for(host: &RecordingHost, user: &str) -> Vec<Value> {
    pushes(host)
        .into_iter()
        .filter(|p| p["kind"] == "message" && p["user"] == user)
        .collect()
}

/// Waits, off the runtime, until the number of push events the host saw
/// satisfies `enough`; `what` names it in the panic.
async fn wait_for_pushes(host: &Arc<RecordingHost>, what: &'static str, enough: fn(usize) -> bool) {
    let host = host.clone();
    tokio::task::spawn_blocking(move || {
        host.wait_until(what, |e| enough(e.iter().filter(|e| e["event"] == "push").count()))
    })
    .await
    .unwrap();
}

/// Lets the pump run: long enough for a push that is coming to come.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// A server with push on, on the durable store `store` (see
/// `support::postgres::durable_store`).
fn on_store(store: &Value, extra: Value) -> (Server, Arc<RecordingHost>, String) {
    let mut config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "store": store,
        "push": {"enabled": true}});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    let host = Arc::new(RecordingHost::default());
    server.set_host(host.clone()).unwrap();
    server.start().unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    (server, host, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_user_gets_exactly_one_push_request_per_message() {
    let t = start(json!({"push": {"enabled": true}}));
    let mut alice = connect(&t.url, "alice").await;
    for n in 0..3 {
        assert_eq!(alice.send_to("bob", &format!("a{n}"), json!(n)).await["seq"], n + 1);
    }
    // A retried send stores nothing new, so it asks for no push either.
    assert_eq!(alice.send_to("bob", "a2", json!(2)).await["seq"], 3);
    let host = t.host.clone();
    tokio::task::spawn_blocking(move || host.wait_until("three pushes", |e| e.len() >= 4))
        .await
        .unwrap();
    settle().await;
    let got = message_pushes_for(&t.host, "bob");
    assert_eq!(got.len(), 3, "{got:?}");
    let seqs: Vec<u64> = got.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let ids: std::collections::BTreeSet<u64> = got.iter().map(|p| p["push_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "distinct push ids");
    let last = &got[2];
    assert_eq!(last["conv"], "dm:alice:bob");
    assert_eq!(last["from"], "alice");
    assert_eq!(last["collapse_key"], "bob:dm:alice:bob:3");
    assert_eq!(last["unread"], 3);
    assert!(last.get("preview").is_none(), "no body unless push.preview");
    assert!(message_pushes_for(&t.host, "alice").is_empty(), "never to the sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_session_holds_pushes_back_and_a_background_one_does_not() {
    let t = start(json!({"push": {"enabled": true}}));
    let mut alice = connect(&t.url, "alice").await;
    let mut phone = support::open(&format!("{}?token=bob&device=phone", t.url), None)
        .await
        .unwrap();
    let welcome = phone.recv().await;
    assert_eq!(
        (welcome["user"].as_str(), welcome["device"].as_str()),
        (Some("bob"), Some("phone")),
        "{welcome}"
    );
    alice.send_to("bob", "a1", json!(1)).await;
    settle().await;
    assert!(message_pushes_for(&t.host, "bob").is_empty(), "bob is looking");
    let answer = phone
        .request(json!({"type": "device", "id": "d", "state": "background"}))
        .await;
    assert_eq!(answer["type"], "ok", "{answer}");
    alice.send_to("bob", "a2", json!(2)).await;
    let host = t.host.clone();
    let push = tokio::task::spawn_blocking(move || host.wait_for(|e| e["event"] == "push" && e["seq"] == 2))
        .await
        .unwrap();
    assert_eq!(
        push["devices"],
        json!([{"device": "phone", "state": "background"}]),
        "{push}"
    );
    let devices = t.server.devices().unwrap();
    assert_eq!(devices.len(), 2);
    let bobs = devices.iter().find(|d| &*d.user == "bob").unwrap();
    assert_eq!((&*bobs.device, bobs.foreground, bobs.sessions), ("phone", false, 1));
    let refused = phone
        .request(json!({"type": "device", "id": "d2", "state": "asleep"}))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_not_done_are_offered_again_after_a_restart_with_the_same_id() {
    let dir = TempDir::new().unwrap();
    let db = support::postgres::durable_store(dir.path(), "imbed.db");
    let (server, host, url) = on_store(&db, json!({}));
    let mut alice = connect(&url, "alice").await;
    alice.send_to("bob", "a1", json!(1)).await;
    alice.send_to("bob", "a2", json!(2)).await;
    wait_for_pushes(&host, "two pushes", |n| n == 2).await;
    let first: Vec<u64> = pushes(&host).iter().map(|p| p["push_id"].as_u64().unwrap()).collect();
    drop(alice);
    tokio::task::spawn_blocking(move || {
        server.push_done(first[0], true, None).unwrap();
        assert!(matches!(
            server.push_done(first[0], true, None),
            Err(Error::NotFound(_))
        ));
        server.stop().unwrap();
    })
    .await
    .unwrap();

    let (server, host, _url) = on_store(&db, json!({}));
    let again = host.clone();
    let offered = tokio::task::spawn_blocking(move || again.wait_for(|e| e["event"] == "push"))
        .await
        .unwrap();
    settle().await;
    assert_eq!(pushes(&host).len(), 1, "only the one not done: {:?}", pushes(&host));
    assert_eq!(offered["seq"], 2);
    let pending = server.pending_pushes().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].push_id, offered["push_id"].as_u64().unwrap());
    tokio::task::spawn_blocking(move || {
        server
            .push_done(pending[0].push_id, false, Some("gateway said no"))
            .unwrap();
        assert!(server.pending_pushes().unwrap().is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_not_done_in_time_is_offered_again_with_the_same_id() {
    let t = start(json!({"push": {"enabled": true, "retry_after_ms": 200}}));
    let mut alice = connect(&t.url, "alice").await;
    alice.send_to("bob", "a1", json!(1)).await;
    wait_for_pushes(&t.host, "a second offer", |n| n >= 2).await;
    let offers = pushes(&t.host);
    assert_eq!(offers[0]["push_id"], offers[1]["push_id"]);
    let id = offers[0]["push_id"].as_u64().unwrap();
    t.server.push_done(id, true, None).unwrap();
    let count = pushes(&t.host).len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(pushes(&t.host).len(), count, "never again once done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_takes_events_loses_no_push_request() {
    // Polled and never polled: the queue of 4 fills and the offering waits.
    let t = start(
        json!({"push": {"enabled": true}, "events": {"delivery": "poll", "queue_capacity": 4, "messages": false}}),
    );
    let mut alice = connect(&t.url, "alice").await;
    for n in 0..20 {
        alice.send_to("bob", &format!("a{n}"), json!(n)).await;
    }
    settle().await;
    assert_eq!(t.server.pending_pushes().unwrap().len(), 20);
    let server = t.server;
    let offered = tokio::task::spawn_blocking(move || {
        let mut ids = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ids.len() < 20 && std::time::Instant::now() < deadline {
            for event in server.poll_events(64).unwrap() {
                if let Event::Push { push_id, .. } = event {
                    ids.insert(push_id);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        ids
    })
    .await
    .unwrap();
    assert_eq!(offered.len(), 20, "every request offered once the host took events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_past_pushed_messages_asks_for_the_badge_to_clear() {
    let t = start(json!({"push": {"enabled": true}}));
    let mut alice = connect(&t.url, "alice").await;
    alice.send_to("bob", "a1", json!(1)).await;
    alice.send_to("bob", "a2", json!(2)).await;
    wait_for_pushes(&t.host, "two pushes", |n| n == 2).await;
    let mut bob = connect(&t.url, "bob").await;
    let read = bob
        .request(json!({"type": "read", "id": "r", "conv": "dm:alice:bob", "seq": 2}))
        .await;
    assert_eq!(read["type"], "ok", "{read}");
    let host = t.host.clone();
    let badge = tokio::task::spawn_blocking(move || host.wait_for(|e| e["event"] == "push" && e["kind"] == "read"))
        .await
        .unwrap();
    assert_eq!(
        (badge["user"].as_str(), badge["seq"].as_u64(), badge["unread"].as_u64()),
        (Some("bob"), Some(2), Some(0))
    );
    assert!(badge.get("from").is_none());
    let pending = t.server.pending_pushes().unwrap();
    assert_eq!(
        pending.iter().map(|p| p.kind).collect::<Vec<_>>(),
        ["read"],
        "the message requests gave way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_groups_push_only_mentions_and_overrides_silence_a_group() {
    let t = start(json!({"push": {"enabled": true, "mentions_only_above": 2, "group_overrides": {"quiet": false}}}));
    for group in ["big", "quiet"] {
        t.server.create_group(group, false).unwrap();
        for member in ["alice", "bob", "carol"] {
            t.server.add_member(group, member).unwrap();
        }
    }
    let mut alice = connect(&t.url, "alice").await;
    let sent = alice
        .request(json!({"type": "send", "id": "g1", "group": "big", "body": {"text": "hi @bob", "mentions": ["bob"]}}))
        .await;
    assert_eq!(sent["type"], "ack", "{sent}");
    alice
        .request(json!({"type": "send", "id": "q1", "group": "quiet", "body": {"mentions": ["bob"]}}))
        .await;
    settle().await;
    let got: Vec<(String, String)> = pushes(&t.host)
        .iter()
        .map(|p| {
            (
                p["user"].as_str().unwrap().to_owned(),
                p["conv"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, [("bob".to_owned(), "g:big".to_owned())], "only bob, only in big");
    assert_eq!(pushes(&t.host)[0]["group"], "big");
}

#[test]
fn push_is_off_unless_configured() {
    let config = Config::from_json("{}").unwrap();
    assert!(!config.push.enabled);
    assert!(Config::from_json(r#"{"push":{"retry_after_ms":0}}"#).is_err());
    assert!(Config::from_json(r#"{"push":{"group_overrides":{"a b":true}}}"#).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_the_host_finished_pushing_still_clears_the_badge() {
    let t = start(json!({"push": {"enabled": true}}));
    let mut alice = connect(&t.url, "alice").await;
    alice.send_to("bob", "a1", json!(1)).await;
    let host = t.host.clone();
    let pushed = tokio::task::spawn_blocking(move || host.wait_for(|e| e["event"] == "push"))
        .await
        .unwrap();
    t.server
        .push_done(pushed["push_id"].as_u64().unwrap(), true, None)
        .unwrap();
    assert!(t.server.pending_pushes().unwrap().is_empty());
    let mut bob = connect(&t.url, "bob").await;
    bob.request(json!({"type": "read", "id": "r", "conv": "dm:alice:bob", "seq": 1}))
        .await;
    let host = t.host.clone();
    let badge = tokio::task::spawn_blocking(move || host.wait_for(|e| e["event"] == "push" && e["kind"] == "read"))
        .await
        .unwrap();
    assert_eq!(badge["unread"], 0);
    // A second message and read: the newer badge request replaces any older one still pending.
    drop(bob);
    settle().await;
    alice.send_to("bob", "a2", json!(2)).await;
    settle().await;
    let mut bob = connect(&t.url, "bob").await;
    bob.request(json!({"type": "read", "id": "r", "conv": "dm:alice:bob", "seq": 2}))
        .await;
    settle().await;
    let pending: Vec<(&str, u64)> = t
        .server
        .pending_pushes()
        .unwrap()
        .iter()
        .map(|p| (p.kind, p.seq))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    assert_eq!(pending, [("read", 2)], "one badge request per conversation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_named_devices_are_remembered_and_only_the_latest_twenty() {
    let t = start(json!({"push": {"enabled": true}}));
    for _ in 0..3 {
        drop(connect(&t.url, "bob").await);
    }
    for n in 0..25 {
        drop(
            support::open(&format!("{}?token=bob&device=d{n:02}", t.url), None)
                .await
                .unwrap(),
        );
        // Devices are remembered in order of last sight.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    settle().await;
    let mut alice = connect(&t.url, "alice").await;
    alice.send_to("bob", "a1", json!(1)).await;
    let host = t.host.clone();
    let pushed = tokio::task::spawn_blocking(move || host.wait_for(|e| e["event"] == "push"))
        .await
        .unwrap();
    let devices: Vec<&str> = pushed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (5..25).map(|n| format!("d{n:02}")).collect();
    assert_eq!(
        devices, expected,
        "made-up ids are not remembered; the oldest named ones go"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_reaches_the_hosts_log() {
    let t = start(json!({"push": {"enabled": true}, "log_level": "warn"}));
    let mut alice = connect(&t.url, "alice").await;
    alice.send_to("bob", "a1", json!(1)).await;
    let host = t.host.clone();
    let pushed = tokio::task::spawn_blocking(move || host.wait_for(|e| e["event"] == "push"))
        .await
        .unwrap();
    t.server
        .push_done(pushed["push_id"].as_u64().unwrap(), false, Some("no such token"))
        .unwrap();
    settle().await;
    let logs = t.host.logs.lock().unwrap().clone();
    assert!(
        logs.iter()
            .any(|l| l.contains("push failed") && l.contains("no such token")),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_requests_than_one_batch_are_each_offered_once_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let db = support::postgres::durable_store(dir.path(), "imbed.db");
    let (server, host, _url) = on_store(&db, json!({}));
    let sent = tokio::task::spawn_blocking(move || {
        for n in 0..300 {
            server.send("alice", "bob", "1", Some(&format!("m{n}"))).unwrap();
        }
        server
    })
    .await
    .unwrap();
    wait_for_pushes(&host, "300 pushes", |n| n >= 300).await;
    tokio::task::spawn_blocking(move || sent.stop().unwrap()).await.unwrap();
    let (_server, host, _url) = on_store(&db, json!({}));
    wait_for_pushes(&host, "300 again", |n| n >= 300).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pushes(&host).len(), 300, "each pending request once");
}
