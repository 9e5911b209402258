//! The server's lifecycle and its promises to the host: start once, stop
//! cleanly and idempotently, no callback after stop, no secrets in logs,
//! slow readers cut off without losing anything.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use imbed::{Config, Error, Event, Host, Server};
use serde_json::json;
use support::{RecordingHost, connect, start};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_sessions_with_1001_and_reports_them_before_returning() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    t.host.wait_for(|e| e["event"] == "connected");
    let server = t.server;
    let stopper = tokio::task::spawn_blocking(move || {
        server.stop().unwrap();
        server
    });
    assert_eq!(alice.closed_with().await, Some(CloseCode::Away));
    let server = stopper.await.unwrap();
    // Reported before stop returned: no waiting needed.
    let disconnected = t.host.events_of("disconnected");
    assert_eq!(disconnected.len(), 1);
    assert_eq!(disconnected[0]["reason"], "server stopping");
    assert_eq!(server.stop(), Ok(()));
    assert_eq!(server.start(), Err(Error::Stopped));
    assert!(matches!(server.send("a", "b", "1", None), Err(Error::Stopped)));
    assert_eq!(server.local_addr(), Err(Error::Stopped));
    assert!(
        tokio::net::TcpStream::connect(t.url.trim_start_matches("ws://").trim_end_matches("/ws"))
            .await
            .is_err()
    );
}

#[test]
fn start_twice_and_calls_before_start_are_errors() {
    let server = Server::new(Config::from_json(r#"{"listen":"127.0.0.1:0","auth":{"mode":"dev"}}"#).unwrap()).unwrap();
    assert_eq!(server.local_addr(), Err(Error::NotStarted));
    assert!(matches!(server.send("a", "b", "1", None), Err(Error::NotStarted)));
    server.start().unwrap();
    assert_ne!(server.local_addr().unwrap().port(), 0);
    assert_eq!(server.start(), Err(Error::AlreadyStarted));
    assert_eq!(
        server.set_host(Arc::new(RecordingHost::default())),
        Err(Error::AlreadyStarted)
    );
    server.stop().unwrap();
}

#[test]
fn a_taken_port_is_an_io_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = Config::from_json(&json!({"listen": addr.to_string(), "auth": {"mode": "dev"}}).to_string()).unwrap();
    let server = Server::new(config).unwrap();
    match server.start() {
        Err(Error::Io(m)) => assert!(m.contains(&addr.to_string()), "{m}"),
        other => panic!("expected Io, got {other:?}"),
    }
}

/// Counts callbacks, records when it is dropped, and tries to stop its
/// server from inside a callback.
struct StrictHost {
    server: Mutex<Option<Arc<Server>>>,
    callbacks: AtomicUsize,
    dropped: Arc<AtomicUsize>,
    stop_from_callback: Mutex<Option<Result<(), Error>>>,
}

impl Host for StrictHost {
    fn on_event(&self, event: &Event) {
        self.callbacks.fetch_add(1, Ordering::SeqCst);
        if let (Event::Message { .. }, Some(server)) = (event, self.server.lock().unwrap().as_ref()) {
            *self.stop_from_callback.lock().unwrap() = Some(server.stop());
        }
    }
}

impl Drop for StrictHost {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn stop_from_a_callback_is_refused_and_the_host_is_released_once_after_the_last_callback() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let host = Arc::new(StrictHost {
        server: Mutex::new(None),
        callbacks: AtomicUsize::new(0),
        dropped: dropped.clone(),
        stop_from_callback: Mutex::new(None),
    });
    let server =
        Arc::new(Server::new(Config::from_json(r#"{"listen":"127.0.0.1:0","auth":{"mode":"dev"}}"#).unwrap()).unwrap());
    server.set_host(host.clone()).unwrap();
    server.start().unwrap();
    *host.server.lock().unwrap() = Some(server.clone());
    server.send("host", "bob", "1", None).unwrap();
    while host.stop_from_callback.lock().unwrap().is_none() {
        std::thread::yield_now();
    }
    assert_eq!(
        host.stop_from_callback.lock().unwrap().clone(),
        Some(Err(Error::InCallback))
    );
    host.server.lock().unwrap().take(); // break the cycle host -> server
    let weak = Arc::downgrade(&host);
    drop(host);
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "the running engine holds the host");
    server.stop().unwrap();
    assert!(weak.upgrade().is_none(), "the engine must hold no reference after stop");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn a_replaced_or_never_started_host_is_released_once() {
    let server = Server::new(Config::from_json(r#"{"auth":{"mode":"dev"}}"#).unwrap()).unwrap();
    let first = Arc::new(RecordingHost::default());
    let second = Arc::new(RecordingHost::default());
    server.set_host(first.clone()).unwrap();
    server.set_host(second.clone()).unwrap();
    assert_eq!(Arc::strong_count(&first), 1);
    drop(server);
    assert_eq!(Arc::strong_count(&second), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_reach_the_host_without_tokens_or_bodies() {
    let secret = "hunter2-secret-hunter2-secret-hunter2";
    let t = start(json!({"log_level": "trace", "auth": {"mode": "jwt", "secret": secret}}));
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "tess", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut tess = support::open(&t.url, Some(&token)).await.unwrap();
    assert_eq!(tess.recv().await["type"], "welcome");
    assert_eq!(
        tess.send_to("tess", "c1", json!("classified-body-text")).await["type"],
        "ack"
    );
    let _ = support::open(&t.url, Some("forged.token.value"))
        .await
        .unwrap()
        .recv()
        .await;
    t.host.wait_for(|e| e["event"] == "message");
    drop(tess);
    t.host.wait_for(|e| e["event"] == "disconnected");
    tokio::task::block_in_place(|| t.server.stop()).unwrap();
    let logs = t.host.logs.lock().unwrap().join("\n");
    assert!(logs.contains("listening"), "{logs}");
    assert!(logs.contains("session started"), "{logs}");
    for secret_text in [token.as_str(), "forged.token.value", "classified-body-text", secret] {
        assert!(!logs.contains(secret_text), "{secret_text} leaked into logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_is_closed_with_1013_and_loses_nothing() {
    let t = start(json!({"limits": {"outbound_queue_bytes": 262144}}));
    let mut slow = connect(&t.url, "slow").await;
    let body = format!("\"{}\"", "z".repeat(8000));
    let sent = tokio::task::block_in_place(|| {
        // Enough to fill the kernel's socket buffers and then the outbox.
        (0..4000)
            .take_while(|i| t.server.send("feeder", "slow", &body, Some(&format!("f{i}"))).is_ok())
            .count()
    });
    assert_eq!(sent, 4000, "the host's sends are stored even though the reader is slow");
    // The client, reading at last, sees some messages, then the 1013 close.
    let mut delivered = 0;
    loop {
        match tokio::time::timeout(support::WAIT, futures_util::StreamExt::next(&mut slow.ws))
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => delivered += 1,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Again));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    assert!(delivered < sent, "the reader was cut off early ({delivered} of {sent})");
    let event = t.host.wait_for(|e| e["event"] == "disconnected");
    assert_eq!(event["reason"], "slow reader");
    // Reconnecting and syncing brings back every message, in order, once.
    let mut again = connect(&t.url, "slow").await;
    let mut seqs = Vec::new();
    loop {
        let cursor = seqs.last().copied().unwrap_or(0);
        again
            .send_json(json!({"type": "sync", "cursors": {"dm:feeder:slow": cursor}, "limit": 1000}))
            .await;
        let synced = loop {
            let frame = again.recv().await;
            match frame["type"].as_str() {
                Some("msg") => seqs.push(frame["seq"].as_u64().unwrap()),
                Some("synced") => break frame,
                other => panic!("unexpected {other:?}"),
            }
        };
        if synced["convs"]["dm:feeder:slow"]["more"] == false {
            break;
        }
    }
    assert_eq!(seqs, (1..=sent as u64).collect::<Vec<_>>());
}
