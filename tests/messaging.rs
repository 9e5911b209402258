//! Direct messaging over real sockets: acks, delivery, multi-device,
//! idempotency, ordering, host sends.

mod support;

use serde_json::json;
use support::{connect, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_with_gapless_seq() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;

    let ack = alice.send_to("bob", "a1", json!({"text": "hi"})).await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(
        (ack["id"].as_str(), ack["conv"].as_str(), ack["seq"].as_u64()),
        (Some("a1"), Some("dm:alice:bob"), Some(1))
    );
    assert!(ack["ts"].as_i64().unwrap() > 1_600_000_000_000);

    let msg = bob.recv().await;
    assert_eq!(
        msg,
        json!({"type": "msg", "conv": "dm:alice:bob", "seq": 1, "from": "alice", "to": "bob", "id": "a1", "body": {"text": "hi"}, "ts": ack["ts"]})
    );

    let ack = bob.send_to("alice", "b1", json!("yo")).await;
    assert_eq!(
        (ack["conv"].as_str(), ack["seq"].as_u64()),
        (Some("dm:alice:bob"), Some(2))
    );
    assert_eq!(alice.recv().await["seq"], 2);
    let ack = alice.send_to("bob", "a2", json!(null)).await;
    assert_eq!(ack["seq"], 3);
    assert_eq!(bob.recv().await["body"], json!(null));

    let stored = t.host.wait_for(|e| e["event"] == "message" && e["message"]["seq"] == 3);
    assert_eq!(stored["message"]["from"], "alice");
    assert_eq!(t.host.events_of("connected").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_devices_of_the_sender_get_the_message_but_not_the_sending_one() {
    let t = start(json!({}));
    let mut phone = connect(&t.url, "alice").await;
    let mut laptop = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;

    let ack = phone.send_to("bob", "m1", json!(1)).await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(bob.recv().await["id"], "m1");
    let copy = laptop.recv().await;
    assert_eq!(
        (copy["type"].as_str(), copy["from"].as_str(), copy["id"].as_str()),
        (Some("msg"), Some("alice"), Some("m1"))
    );
    phone.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_id_gets_the_same_ack_and_no_second_message() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    let first = alice.send_to("bob", "same", json!("x")).await;
    let again = alice.send_to("bob", "same", json!("x")).await;
    assert_eq!(first, again);
    assert_eq!(bob.recv().await["id"], "same");
    bob.assert_quiet().await;
    // Another sender may use the same client id: keys are per sender.
    let other = bob.send_to("alice", "same", json!("y")).await;
    assert_eq!(other["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_yourself_reach_your_other_sessions() {
    let t = start(json!({}));
    let mut a1 = connect(&t.url, "alice").await;
    let mut a2 = connect(&t.url, "alice").await;
    let ack = a1.send_to("alice", "note", json!("remember")).await;
    assert_eq!(ack["conv"], "dm:alice:alice");
    let copy = a2.recv().await;
    assert_eq!(copy["id"], "note");
    a2.assert_quiet().await;
    a1.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_are_delivered_in_seq_order() {
    let t = start(json!({}));
    let mut bob = connect(&t.url, "bob").await;
    let mut senders = Vec::new();
    for device in 0..2 {
        let url = t.url.clone();
        senders.push(tokio::spawn(async move {
            let mut alice = connect(&url, "alice").await;
            for i in 0..200 {
                alice
                    .send_json(json!({"type": "send", "id": format!("d{device}-{i}"), "to": "bob", "body": i}))
                    .await;
            }
            // Drain acks and the other device's copies until all 200 acks came.
            let mut acks = 0;
            while acks < 200 {
                if alice.recv().await["type"] == "ack" {
                    acks += 1;
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    for expected in 1..=400 {
        assert_eq!(bob.recv().await["seq"], expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_sends_as_any_sender_and_reads_history() {
    let t = start(json!({}));
    let mut bob = connect(&t.url, "bob").await;
    let placement =
        tokio::task::block_in_place(|| t.server.send("support", "bob", r#"{"text":"welcome"}"#, Some("w1"))).unwrap();
    assert_eq!((placement.conv.as_str(), placement.seq), ("dm:bob:support", 1));
    let msg = bob.recv().await;
    assert_eq!(
        (msg["from"].as_str(), msg["id"].as_str(), msg["body"]["text"].as_str()),
        (Some("support"), Some("w1"), Some("welcome"))
    );

    let again = tokio::task::block_in_place(|| t.server.send("support", "bob", "{}", Some("w1"))).unwrap();
    assert_eq!(again.seq, 1);
    let generated = tokio::task::block_in_place(|| t.server.send("support", "bob", "2", None)).unwrap();
    assert_eq!(generated.seq, 2);
    let second = bob.recv().await;
    assert!(second["id"].as_str().unwrap().starts_with("host-"));

    let history = t.server.history("dm:bob:support", None, 10).unwrap();
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(matches!(
        t.server.send("bad id", "bob", "1", None),
        Err(imbed::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        t.server.send("a", "bob", "{", None),
        Err(imbed::Error::InvalidArgument(_))
    ));
    // JSON, but with a number no double holds: refused as a client's would
    // be, so its files cannot go unchecked.
    let huge = t.server.send("a", "bob", r#"{"files":["x"],"n":1e999}"#, None);
    assert!(
        matches!(&huge, Err(imbed::Error::InvalidArgument(why)) if why.starts_with("body: number out of range")),
        "{huge:?}"
    );
    assert_eq!(t.server.history("dm:a:bob", None, 10).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_host_can_turn_message_events_off() {
    let t = start(json!({"events": {"messages": false}}));
    let mut alice = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    for i in 0..3 {
        alice.send_to("bob", &format!("q{i}"), json!({"n": i})).await;
        assert_eq!(bob.recv().await["seq"], i + 1);
    }
    drop(alice);
    // Events after the messages still come, in order, so none of them was a message.
    t.host
        .wait_for(|e| e["event"] == "disconnected" && e["user"] == "alice");
    assert!(t.host.events_of("message").is_empty());
    assert_eq!(t.host.events_of("connected").len(), 2);
}
