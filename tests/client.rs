//! The client role against a real server: chat, reconnect through a server
//! restart with messages in flight, exactly-once delivery, requests, hints.

mod support;

use std::sync::Arc;
use std::time::Duration;

use imbed::config::ClientConfig;
use imbed::{Client, Hint};
use imbed::{Config, Server};
use serde_json::{Value, json};
use support::RecordingHost;
use tempfile::TempDir;

fn server(port: u16, db: &str) -> Server {
    let config = json!({"listen": format!("127.0.0.1:{port}"), "auth": {"mode": "dev"}, "store": {"path": db}});
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    server.start().unwrap();
    server
}

fn client(port: u16, user: &str) -> (Client, Arc<RecordingHost>) {
    support::start_client(json!({"url": format!("ws://127.0.0.1:{port}/ws"), "token": user,
        "reconnect": {"initial_ms": 50, "max_ms": 500}, "heartbeat_ms": 1000, "dead_after_ms": 3000}))
}

/// Asserts that the host heard one `ack` for each of `ids`, and no other.
fn assert_each_acked_once(recorder: &RecordingHost, ids: &[String]) {
    let mut acked: Vec<String> = recorder
        .events_of("ack")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    acked.sort();
    let mut sent = ids.to_vec();
    sent.sort();
    assert_eq!(acked, sent, "each send acknowledged once");
}

#[test]
fn a_server_restart_mid_conversation_loses_and_duplicates_nothing() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("s.db").to_str().unwrap().to_owned();
    let port = support::free_port();
    let first = server(port, &db);
    let (alice, alice_events) = client(port, "alice");
    let (_bob, bob_events) = client(port, "bob");
    bob_events.wait_until("bob connected", |e| e.iter().any(|e| e["state"] == "connected"));
    let mut ids = Vec::new();
    let mut second = None;
    for i in 0..50 {
        ids.push(alice.send("bob", &json!({"n": i}).to_string()).unwrap());
        if i == 20 {
            alice_events.wait_until("some acks", |e| e.iter().filter(|e| e["event"] == "ack").count() >= 10);
            first.stop().unwrap();
        }
        if i == 30 {
            second = Some(server(port, &db));
        }
    }
    alice_events.wait_until("all 50 acks", |e| {
        e.iter().filter(|e| e["event"] == "ack").count() == 50
    });
    bob_events.wait_until("bob has all 50", |e| {
        e.iter().filter(|e| e["event"] == "message").count() >= 50
    });
    std::thread::sleep(Duration::from_millis(300)); // any duplicate would arrive now
    // The rest were queued before the restart and sent after it.
    assert_each_acked_once(&alice_events, &ids);
    assert_eq!(
        support::delivered_seqs(&bob_events, "dm:alice:bob"),
        (1..=ids.len() as u64).collect::<Vec<_>>()
    );
    let states: Vec<Value> = bob_events
        .events_of("state")
        .iter()
        .map(|e| e["state"].clone())
        .collect();
    assert!(
        states
            .windows(2)
            .any(|w| w[0] == "disconnected" && w[1] == "connecting"),
        "{states:?}"
    );
    drop(second);
}

#[test]
fn offline_messages_arrive_by_sync_and_requests_get_replies() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("s.db").to_str().unwrap().to_owned();
    let port = support::free_port();
    let server = server(port, &db);
    for i in 0..5 {
        server.send("host", "carol", &i.to_string(), None).unwrap();
    }
    let (carol, events) = client(port, "carol");
    events.wait_until("five by sync", |e| {
        e.iter().filter(|e| e["event"] == "message").count() == 5
    });
    assert_eq!(support::delivered_seqs(&events, "dm:carol:host"), [1, 2, 3, 4, 5]);
    let id = carol
        .request(r#"{"type":"history","conv":"dm:carol:host","limit":2}"#)
        .unwrap();
    events.wait_until("history reply", |e| e.iter().any(|e| e["frame"]["id"] == id.as_str()));
    let reply = events
        .events_of("frame")
        .into_iter()
        .find(|e| e["frame"]["id"] == id.as_str())
        .unwrap();
    assert_eq!(reply["frame"]["messages"].as_array().unwrap().len(), 2);
    assert!(matches!(
        carol.request(r#"{"type":"sync"}"#),
        Err(imbed::Error::InvalidArgument(_))
    ));
    let long_id = format!(
        r#"{{"type":"react","id":"{}","conv":"dm:carol:host","seq":1,"emoji":"x"}}"#,
        "i".repeat(65)
    );
    assert!(matches!(carol.request(&long_id), Err(imbed::Error::InvalidArgument(_))));
    // A send through request goes through the outbox: refused by the server, it fails for good.
    let nowhere = carol.request(r#"{"type":"send","body":1}"#).unwrap();
    events.wait_until("send_failed of a request", |e| {
        e.iter()
            .any(|e| e["event"] == "send_failed" && e["id"] == nowhere.as_str())
    });
    assert!(matches!(carol.request("[1]"), Err(imbed::Error::InvalidArgument(_))));
    assert!(matches!(
        carol.send("host", r#"{"n":-1E400}"#),
        Err(imbed::Error::InvalidArgument(why)) if why.starts_with("body: number out of range")
    ));
    let failed = carol.send_group("nogroup", "1").unwrap();
    events.wait_until("send_failed", |e| {
        e.iter()
            .any(|e| e["event"] == "send_failed" && e["id"] == failed.as_str())
    });

    carol.hint(Hint::Background).unwrap();
    events.wait_until("paused", |e| e.iter().any(|e| e["state"] == "paused"));
    assert!(matches!(
        carol.request(r#"{"type":"ping"}"#),
        Err(imbed::Error::NotConnected)
    ));
    server.send("host", "carol", "6", None).unwrap();
    carol.hint(Hint::Foreground).unwrap();
    events.wait_until("sixth after foreground", |e| {
        e.iter().filter(|e| e["event"] == "message").count() == 6
    });
    carol.stop().unwrap();
    // Reported before stop returned, as the last event.
    assert_eq!(events.events.lock().unwrap().last().unwrap()["state"], "stopped");
    assert_eq!(carol.stop(), Ok(()));
}

#[test]
fn the_outbox_survives_a_client_restart() {
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("client.db").to_str().unwrap().to_owned();
    let port = support::free_port();
    let config = json!({"url": format!("ws://127.0.0.1:{port}/ws"), "token": "dora", "state_path": state,
        "reconnect": {"initial_ms": 50, "max_ms": 200}});
    let offline = Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let queued: Vec<String> = (0..3).map(|i| offline.send("eve", &i.to_string()).unwrap()).collect();
    drop(offline);
    let server = server(port, ":memory:");
    let again = Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let events = Arc::new(RecordingHost::default());
    again.set_host(events.clone()).unwrap();
    again.start().unwrap();
    events.wait_until("three acks", |e| e.iter().filter(|e| e["event"] == "ack").count() == 3);
    let acked: Vec<String> = events
        .events_of("ack")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(acked, queued);
    assert_eq!(server.history("dm:dora:eve", None, 10).unwrap().len(), 3);
}

#[test]
fn a_wss_url_speaks_tls() {
    let port = support::free_port();
    let _plain = server(port, ":memory:");
    let config =
        json!({"url": format!("wss://127.0.0.1:{port}/ws"), "token": "tess", "reconnect": {"initial_ms": 5000}});
    let client = Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let events = Arc::new(RecordingHost::default());
    client.set_host(events.clone()).unwrap();
    client.start().unwrap();
    events.wait_until("a failed TLS attempt", |e| {
        e.iter().any(|e| e["state"] == "disconnected")
    });
    let reason = events
        .events_of("state")
        .into_iter()
        .find(|e| e["state"] == "disconnected")
        .unwrap()["reason"]
        .clone();
    let reason = reason.as_str().unwrap();
    // A plain server cannot answer a TLS handshake; what matters is that one was attempted.
    assert!(
        reason.starts_with("could not connect") && !reason.contains("not compiled"),
        "{reason}"
    );
}

#[test]
fn stop_closes_the_connection_with_a_close_handshake() {
    let t = support::start(json!({}));
    let port = t.server.local_addr().unwrap().port();
    let (client, recorder) = client(port, "alice");
    recorder.wait_for(|e| e["state"] == "connected");
    client.stop().unwrap();
    let gone = t
        .host
        .wait_for(|e| e["event"] == "disconnected" && e["user"] == "alice");
    assert_eq!(gone["reason"], "closed by peer", "{gone}");
}

#[test]
fn a_client_moves_to_the_next_server_when_one_cannot_be_reached() {
    let t = support::start(json!({}));
    let live = t.server.local_addr().unwrap().port();
    let dead = support::free_port();
    let config = json!({"urls": [format!("ws://127.0.0.1:{dead}/ws"), format!("ws://127.0.0.1:{live}/ws")],
        "token": "alice", "reconnect": {"initial_ms": 50, "max_ms": 200}});
    let client = Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let recorder = Arc::new(RecordingHost::default());
    client.set_host(recorder.clone()).unwrap();
    client.start().unwrap();
    let connected = recorder.wait_for(|e| e["state"] == "connected");
    assert_eq!(connected["server"], format!("ws://127.0.0.1:{live}/ws"));
    let tried: Vec<Value> = recorder
        .events_of("state")
        .into_iter()
        .filter(|e| e["state"] == "connecting")
        .map(|e| e["server"].clone())
        .collect();
    assert_eq!(tried[0], format!("ws://127.0.0.1:{dead}/ws"), "{tried:?}");
    let id = client.send("bob", r#""via the second""#).unwrap();
    recorder.wait_for(|e| e["event"] == "ack" && e["id"] == id.as_str());
    client.stop().unwrap();
    assert!(
        ClientConfig::from_json(r#"{"token":"t"}"#).is_err(),
        "a server is required"
    );
    assert!(ClientConfig::from_json(r#"{"token":"t","urls":["http://x"]}"#).is_err());
}

/// The window of sends the client role keeps unanswered (its `SEND_WINDOW`).
const SEND_WINDOW: usize = 64;

/// A server that speaks just enough of the protocol to acknowledge sends.
/// On its first connection it waits for a window of sends, answers them all
/// in one write and closes the socket at once, so that the client's next
/// write fails while the acks are still being read; on later connections it
/// answers each send as it comes. A repeated id gets its first seq, as from
/// a real server.
async fn acks_then_drops(listener: tokio::net::TcpListener) {
    use futures_util::SinkExt;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut seqs = std::collections::HashMap::new();
    for connection in 0.. {
        let (socket, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
        ws.send(Message::text(r#"{"type":"welcome","user":"alice"}"#))
            .await
            .unwrap();
        let mut sends = 0;
        while let Some(Ok(Message::Text(text))) = ws.next().await {
            let frame: Value = serde_json::from_str(&text).unwrap();
            let answer = match frame["type"].as_str() {
                Some("send") => {
                    sends += 1;
                    let next = seqs.len() as u64 + 1;
                    let seq = *seqs.entry(frame["id"].to_string()).or_insert(next);
                    json!({"type": "ack", "id": frame["id"], "conv": "dm:alice:bob", "seq": seq, "ts": 1})
                }
                Some("sync") => json!({"type": "synced", "id": frame["id"], "convs": {}}),
                _ => continue,
            };
            ws.feed(Message::text(answer.to_string())).await.unwrap();
            if connection > 0 || sends == SEND_WINDOW {
                ws.flush().await.unwrap();
            }
            if connection == 0 && sends == SEND_WINDOW {
                break;
            }
        }
    }
}

#[test]
fn an_ack_read_just_before_a_write_fails_still_reaches_the_host() {
    const SENDS: usize = 100;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { acks_then_drops(tokio::net::TcpListener::from_std(listener).unwrap()).await });
    });
    let (client, recorder) = client(port, "alice");
    let ids: Vec<String> = (0..SENDS)
        .map(|n| client.send("bob", &n.to_string()).unwrap())
        .collect();
    recorder.wait_until("an ack for every send", |e| {
        e.iter().filter(|e| e["event"] == "ack").count() >= SENDS
    });
    assert_each_acked_once(&recorder, &ids);
    let connects = recorder
        .events_of("state")
        .iter()
        .filter(|e| e["state"] == "connected")
        .count();
    assert!(connects >= 2, "the first connection was dropped");
    client.stop().unwrap();
}
