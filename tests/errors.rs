//! Bad input gets a clear error, and the connection or the server survives it.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{connect, open, open_with_headers, refused_status, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_bad_request_and_the_connection_stays() {
    let t = start(json!({}));
    let mut c = connect(&t.url, "eve").await;
    let cases = [
        ("{not json", None),
        (r#"{"id":"x1"}"#, Some("x1")),
        (r#"{"type":"teleport","id":"x2"}"#, Some("x2")),
        (r#"{"type":"send","to":"bob","body":1}"#, None),
        (r#"{"type":"send","id":"x3","to":"bad id","body":1}"#, Some("x3")),
        (r#"{"type":"send","id":"x4","body":1}"#, Some("x4")),
        (r#"{"type":"send","id":"x5","to":"bob"}"#, Some("x5")),
        (
            r#"{"type":"send","id":"x6","to":"bob","group":"g","body":1}"#,
            Some("x6"),
        ),
        (r#"{"type":"send","id":7,"to":"bob","body":1}"#, None),
        (r#"{"type":"auth","id":"x8","token":"eve"}"#, Some("x8")),
        (r#"[1,2]"#, None),
    ];
    for (frame, id) in cases {
        c.send_raw(Message::text(frame)).await;
        let reply = c.recv().await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{frame} -> {reply}"
        );
        assert_eq!(reply["id"].as_str(), id, "{frame} -> {reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty());
    }
    c.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(c.recv().await["code"], "bad_request");
    c.send_json(json!({"type": "ping", "id": "still-here"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": "still-here"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_closes_with_1009_and_others_are_unaffected() {
    let t = start(json!({"limits": {"max_frame_bytes": 1024}}));
    let mut bystander = connect(&t.url, "bob").await;
    let mut c = connect(&t.url, "eve").await;
    let body = "x".repeat(2000);
    c.send_json(json!({"type": "send", "id": "big", "to": "bob", "body": body}))
        .await;
    assert_eq!(c.closed_with().await, Some(CloseCode::Size));
    t.host
        .wait_for(|e| e["event"] == "disconnected" && e["reason"] == "frame too large");
    bystander.send_json(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(bystander.recv().await["type"], "pong");
    // Nothing was stored or delivered for the oversize frame.
    assert!(t.server.history("dm:bob:eve", None, 10).unwrap().is_empty());
    // Just under the limit is fine.
    let mut c = connect(&t.url, "eve").await;
    let ack = c.send_to("bob", "ok", json!("y".repeat(900))).await;
    assert_eq!(ack["type"], "ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_are_404() {
    let t = start(json!({}));
    assert_eq!(refused_status(open(&t.url.replace("/ws", "/chat"), None).await), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tcp_connection_is_dropped_at_the_handshake_deadline() {
    let t = start(json!({"limits": {"handshake_timeout_ms": 200}}));
    let addr = t.server.local_addr().unwrap();
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // never finishes
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), raw.read(&mut buf))
        .await
        .expect("not dropped in time");
    assert!(matches!(n, Ok(0) | Err(_)), "expected EOF, got {n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_answers_pings_is_closed_at_the_idle_timeout() {
    let t = start(json!({"limits": {"ping_interval_ms": 100, "idle_timeout_ms": 400}}));
    let c = connect(&t.url, "sleepy").await;
    // Not reading means tungstenite never answers the server's pings.
    let event = t.host.wait_for(|e| e["event"] == "disconnected");
    assert_eq!(event["reason"], "idle timeout");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_pings_stays_past_the_idle_timeout() {
    let t = start(json!({"limits": {"ping_interval_ms": 100, "idle_timeout_ms": 400}}));
    let mut c = connect(&t.url, "awake").await;
    c.assert_quiet().await; // reading answers pings
    c.assert_quiet().await;
    c.assert_quiet().await;
    c.send_json(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(c.recv().await["type"], "pong");
    assert!(t.host.events_of("disconnected").is_empty());
}

/// The pings among the frames `c` receives until none comes for `wait`.
async fn pings_within(c: &mut support::Client, wait: Duration) -> usize {
    let mut pings = 0;
    while let Ok(Some(frame)) = tokio::time::timeout(wait, futures_util::StreamExt::next(&mut c.ws)).await {
        pings += usize::from(matches!(frame.expect("read"), Message::Ping(_)));
    }
    pings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_is_pinged_once_per_interval_whether_it_talks_or_not() {
    let t = start(json!({"limits": {"ping_interval_ms": 100, "idle_timeout_ms": 10_000}}));
    let mut quiet = connect(&t.url, "quiet").await;
    let mut busy = connect(&t.url, "busy").await;
    let (mut quiet_pings, mut busy_pings) = (0, 0);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        busy.send_json(json!({"type": "ping", "id": "p"})).await;
        busy_pings += pings_within(&mut busy, Duration::from_millis(10)).await;
        quiet_pings += pings_within(&mut quiet, Duration::from_millis(10)).await;
    }
    // About ten each: a ping per 100 ms, not one per keepalive tick (25 ms).
    for (who, pings) in [("quiet", quiet_pings), ("busy", busy_pings)] {
        assert!((5..=15).contains(&pings), "{who} was pinged {pings} times in 1 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503_until_one_closes() {
    let t = start(json!({"limits": {"max_connections": 2}}));
    let first = connect(&t.url, "a").await;
    let mut second = connect(&t.url, "b").await;
    assert_eq!(refused_status(open(&format!("{}?token=c", t.url), None).await), 503);
    drop(first);
    // The slot frees once the server has seen the close.
    let mut third = None;
    for _ in 0..100 {
        if let Ok(client) = open(&format!("{}?token=c", t.url), None).await {
            third = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(third.expect("a slot freed up").recv().await["type"], "welcome");
    second.send_json(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(
        second.recv().await["type"],
        "pong",
        "the sessions within the limit are unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_origins_are_checked_against_the_allow_list() {
    let listed = start(json!({"origins": {"allowed": ["https://good.example"]}}));
    let url = format!("{}?token=o", listed.url);
    let mut good = open_with_headers(&url, &[("origin", "https://good.example")])
        .await
        .unwrap();
    assert_eq!(good.recv().await["type"], "welcome");
    assert_eq!(
        refused_status(open_with_headers(&url, &[("origin", "https://evil.example")]).await),
        403
    );
    let mut native = open(&url, None).await.unwrap();
    assert_eq!(
        native.recv().await["type"],
        "welcome",
        "no Origin: a native client, allowed"
    );
    let strict = start(json!({"origins": {"allowed": ["https://good.example"], "required": true}}));
    assert_eq!(
        refused_status(open(&format!("{}?token=o", strict.url), None).await),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_beyond_the_rate_get_rate_limited_then_the_session_is_closed() {
    // One frame per second: the burst of ten arrives long before a refill.
    let t = start(json!({"limits": {"messages_per_second": 1, "message_burst": 5}}));
    let mut c = connect(&t.url, "fast").await;
    for i in 0..10 {
        c.send_json(json!({"type": "ping", "id": format!("p{i}")})).await;
    }
    let mut pongs = 0;
    let mut limited = Vec::new();
    for _ in 0..10 {
        let reply = c.recv().await;
        match reply["type"].as_str() {
            Some("pong") => pongs += 1,
            _ => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                limited.push(reply["id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(pongs, 5, "the burst is served");
    assert_eq!(limited, ["p5", "p6", "p7", "p8", "p9"]);
    // The budget refills at the configured rate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.send_json(json!({"type": "ping", "id": "later"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": "later"}));
    // A client that keeps going through the refusals is cut off.
    for i in 0..40 {
        c.send_raw(Message::text(
            json!({"type": "ping", "id": format!("f{i}")}).to_string(),
        ))
        .await;
    }
    assert_eq!(c.closed_with().await, Some(CloseCode::Policy));
    assert_eq!(
        t.host.wait_for(|e| e["event"] == "disconnected")["reason"],
        "rate limit"
    );
}
