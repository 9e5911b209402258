//! Groups, presence, typing and group read receipts over real sockets, and
//! the host's administration API.

mod support;

use std::sync::Arc;
use std::time::Duration;

use imbed::Error;
use serde_json::{Value, json};
use support::{Client, connect, start};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn request(client: &mut Client, frame: Value) -> Value {
    client.send_json(frame).await;
    client.recv().await
}

async fn join(client: &mut Client, group: &str) {
    let reply = request(client, json!({"type": "join", "id": "j", "group": group})).await;
    assert_eq!(reply, json!({"type": "ok", "id": "j"}), "join {group}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_send_and_leave_with_member_notices() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    let mut alice_laptop = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    join(&mut alice, "team").await;
    assert_eq!(
        alice_laptop.recv().await,
        json!({"type": "member", "group": "team", "user": "alice", "joined": true})
    );
    join(&mut bob, "team").await;
    let notice = json!({"type": "member", "group": "team", "user": "bob", "joined": true});
    assert_eq!(alice.recv().await, notice);
    assert_eq!(alice_laptop.recv().await, notice);
    bob.assert_quiet().await; // the requesting session gets only its ok
    t.host
        .wait_for(|e| e == &json!({"event": "member", "group": "team", "user": "bob", "joined": true}));

    for seq in 1..=3 {
        let ack = request(
            &mut bob,
            json!({"type": "send", "id": format!("b{seq}"), "group": "team", "body": seq}),
        )
        .await;
        assert_eq!(
            (ack["type"].as_str(), ack["conv"].as_str(), ack["seq"].as_u64()),
            (Some("ack"), Some("g:team"), Some(seq))
        );
        for member in [&mut alice, &mut alice_laptop] {
            let msg = member.recv().await;
            assert_eq!(
                (msg["group"].as_str(), msg["from"].as_str(), msg["seq"].as_u64()),
                (Some("team"), Some("bob"), Some(seq))
            );
            assert!(msg.get("to").is_none());
        }
    }
    bob.assert_quiet().await;

    let mut carol = connect(&t.url, "carol").await;
    let refused = request(
        &mut carol,
        json!({"type": "send", "id": "c1", "group": "team", "body": 1}),
    )
    .await;
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(
        request(&mut carol, json!({"type": "members", "id": "m", "group": "team"})).await["code"],
        "forbidden"
    );

    let listing = request(&mut alice, json!({"type": "members", "id": "m", "group": "team"})).await;
    assert_eq!(
        listing,
        json!({"type": "members", "id": "m", "group": "team", "closed": false, "members": ["alice", "bob"]})
    );

    assert_eq!(
        request(&mut bob, json!({"type": "leave", "id": "l", "group": "team"})).await,
        json!({"type": "ok", "id": "l"})
    );
    let left = json!({"type": "member", "group": "team", "user": "bob", "joined": false});
    assert_eq!(alice.recv().await, left);
    assert_eq!(alice_laptop.recv().await, left);
    assert_eq!(
        request(
            &mut bob,
            json!({"type": "send", "id": "b9", "group": "team", "body": 1})
        )
        .await["code"],
        "forbidden"
    );
    let history = request(&mut bob, json!({"type": "history", "id": "h", "conv": "g:team"})).await;
    assert_eq!(history["code"], "forbidden");
    // Leaving again, or a group that does not exist, is fine.
    assert_eq!(
        request(&mut bob, json!({"type": "leave", "id": "l2", "group": "team"})).await["type"],
        "ok"
    );
    assert_eq!(
        request(&mut bob, json!({"type": "leave", "id": "l3", "group": "ghost"})).await["type"],
        "ok"
    );
    assert_eq!(
        request(&mut bob, json!({"type": "join", "id": "j", "group": "bad id"})).await["code"],
        "bad_request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_groups_are_administered_by_the_host() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    tokio::task::block_in_place(|| t.server.create_group("staff", true)).unwrap();
    assert_eq!(
        request(&mut alice, json!({"type": "join", "id": "j", "group": "staff"})).await["code"],
        "forbidden"
    );
    tokio::task::block_in_place(|| t.server.add_member("staff", "alice")).unwrap();
    assert_eq!(
        alice.recv().await,
        json!({"type": "member", "group": "staff", "user": "alice", "joined": true})
    );
    let placement =
        tokio::task::block_in_place(|| t.server.send_group("ops-bot", "staff", r#"{"alert":1}"#, Some("a1"))).unwrap();
    assert_eq!((placement.conv.as_str(), placement.seq), ("g:staff", 1));
    let msg = alice.recv().await;
    assert_eq!(
        (msg["from"].as_str(), msg["group"].as_str()),
        (Some("ops-bot"), Some("staff"))
    );
    let listing = request(&mut alice, json!({"type": "members", "id": "m", "group": "staff"})).await;
    assert_eq!(listing["closed"], true);

    assert!(matches!(t.server.add_member("ghost", "alice"), Err(Error::NotFound(_))));
    assert!(matches!(
        t.server.remove_member("ghost", "alice"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        t.server.send_group("x", "ghost", "1", None),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        t.server.add_member("staff", "bad id"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        t.server.create_group("", false),
        Err(Error::InvalidArgument(_))
    ));

    tokio::task::block_in_place(|| t.server.remove_member("staff", "alice")).unwrap();
    assert_eq!(alice.recv().await["joined"], false);
    tokio::task::block_in_place(|| t.server.create_group("staff", false)).unwrap();
    join(&mut alice, "staff").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_online_and_stats() {
    let t = start(json!({}));
    let mut bob1 = connect(&t.url, "bob").await;
    let mut bob2 = connect(&t.url, "bob").await;
    let mut alice = connect(&t.url, "alice").await;
    assert_eq!(
        t.server.online().unwrap().iter().map(|u| &**u).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    alice.send_to("bob", "m1", json!(1)).await;
    bob1.recv().await;
    bob2.recv().await;
    let stats = t.server.stats().unwrap();
    assert_eq!(
        (
            stats.connections,
            stats.users_online,
            stats.messages_stored,
            stats.messages_delivered
        ),
        (3, 2, 1, 2)
    );
    assert_eq!(t.server.kick("bob").unwrap(), 2);
    for bob in [&mut bob1, &mut bob2] {
        assert_eq!(bob.closed_with().await, Some(CloseCode::from(4001)));
    }
    t.host
        .wait_for(|e| e["event"] == "disconnected" && e["reason"] == "kicked");
    assert_eq!(t.server.kick("nobody").unwrap(), 0);
    for _ in 0..100 {
        if t.server.online().unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        t.server.online().unwrap().iter().map(|u| &**u).collect::<Vec<_>>(),
        ["alice"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_flips_on_first_and_last_session_only() {
    let t = start(json!({}));
    let mut watcher = connect(&t.url, "wendy").await;
    let ok = request(
        &mut watcher,
        json!({"type": "watch", "id": "w", "users": ["bob", "wendy"]}),
    )
    .await;
    assert_eq!(
        ok,
        json!({"type": "ok", "id": "w", "online": {"bob": false, "wendy": true}})
    );
    let bob1 = connect(&t.url, "bob").await;
    assert_eq!(
        watcher.recv().await,
        json!({"type": "presence", "user": "bob", "online": true})
    );
    let bob2 = connect(&t.url, "bob").await;
    watcher.assert_quiet().await; // a second device does not flap presence
    drop(bob1);
    watcher.assert_quiet().await;
    drop(bob2);
    assert_eq!(
        watcher.recv().await,
        json!({"type": "presence", "user": "bob", "online": false})
    );
    assert_eq!(
        request(&mut watcher, json!({"type": "unwatch", "id": "u", "users": ["bob"]})).await["type"],
        "ok"
    );
    let _bob3 = connect(&t.url, "bob").await;
    watcher.assert_quiet().await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    for users in [json!(too_many), json!([]), json!(["bad id"])] {
        assert_eq!(
            request(&mut watcher, json!({"type": "watch", "id": "x", "users": users})).await["code"],
            "bad_request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_side_and_is_rate_limited() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    let mut alice2 = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    alice.send_json(json!({"type": "typing", "to": "bob"})).await;
    assert_eq!(
        bob.recv().await,
        json!({"type": "typing", "from": "alice", "conv": "dm:alice:bob"})
    );
    alice2.assert_quiet().await;
    join(&mut alice, "g").await;
    join(&mut bob, "g").await;
    alice.recv().await; // bob joined
    alice2.recv().await; // alice joined
    alice2.recv().await; // bob joined
    bob.send_json(json!({"type": "typing", "group": "g"})).await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "typing", "from": "bob", "conv": "g:g"})
    );
    assert_eq!(alice2.recv().await["from"], "bob");
    bob.assert_quiet().await;
    let mut carol = connect(&t.url, "carol").await;
    assert_eq!(
        request(&mut carol, json!({"type": "typing", "id": "t", "group": "g"})).await["code"],
        "forbidden"
    );

    // A burst of ten: five relayed, five refused.
    for i in 0..10 {
        carol
            .send_json(json!({"type": "typing", "id": format!("t{i}"), "to": "bob"}))
            .await;
    }
    let mut refused = Vec::new();
    for _ in 0..5 {
        let e = carol.recv().await;
        assert_eq!(e["code"], "rate_limited");
        refused.push(e["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(refused, ["t5", "t6", "t7", "t8", "t9"].map(String::from));
    for _ in 0..5 {
        assert_eq!(bob.recv().await["from"], "carol");
    }
    bob.assert_quiet().await;
    // Never stored.
    assert!(t.server.history("dm:alice:bob", None, 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_read_receipts_and_conversation_listing() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    join(&mut alice, "team").await;
    join(&mut bob, "team").await;
    alice.recv().await;
    request(
        &mut alice,
        json!({"type": "send", "id": "a1", "group": "team", "body": 1}),
    )
    .await;
    bob.recv().await;
    request(&mut alice, json!({"type": "send", "id": "a2", "to": "bob", "body": 2})).await;
    bob.recv().await;
    assert_eq!(
        request(&mut bob, json!({"type": "read", "id": "r", "conv": "g:team", "seq": 1})).await["type"],
        "ok"
    );
    assert_eq!(
        alice.recv().await,
        json!({"type": "read", "conv": "g:team", "user": "bob", "seq": 1})
    );
    let listing = request(&mut bob, json!({"type": "conversations", "id": "c"})).await;
    assert_eq!(
        listing,
        json!({"type": "conversations", "id": "c", "conversations": [
            {"conv": "dm:alice:bob", "last_seq": 1, "read_seq": 0, "reads": {}},
            {"conv": "g:team", "last_seq": 1, "read_seq": 1, "reads": {}},
        ]})
    );
    // Alice sees where bob has read, after a reload as well as live.
    let listing = request(&mut alice, json!({"type": "conversations", "id": "c"})).await;
    assert_eq!(listing["conversations"][1]["reads"], json!({"bob": 1}), "{listing}");
    let mut carol = connect(&t.url, "carol").await;
    let refused = request(
        &mut carol,
        json!({"type": "read", "id": "r", "conv": "g:team", "seq": 1}),
    )
    .await;
    assert_eq!(refused["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_survive_a_restart_and_come_through_sync() {
    let dir = TempDir::new().unwrap();
    let config = json!({"store": support::postgres::durable_store(dir.path(), "g.db")});
    let first = start(config.clone());
    tokio::task::block_in_place(|| {
        first.server.create_group("vault", true).unwrap();
        first.server.add_member("vault", "alice").unwrap();
        first.server.add_member("vault", "bob").unwrap();
        first.server.create_group("empty", false).unwrap();
        first.server.add_member("empty", "bob").unwrap();
        first.server.send_group("host", "vault", "1", Some("v1")).unwrap();
        first.server.send_group("host", "vault", "2", Some("v2")).unwrap();
        first.server.stop().unwrap();
    });
    let second = start(config);
    let mut bob = connect(&second.url, "bob").await;
    bob.send_json(json!({"type": "sync", "id": "s"})).await;
    let mut seqs = Vec::new();
    let synced = loop {
        let frame = bob.recv().await;
        if frame["type"] == "synced" {
            break frame;
        }
        seqs.push(frame["seq"].as_u64().unwrap());
    };
    assert_eq!(seqs, [1, 2]);
    assert_eq!(
        synced["convs"],
        json!({"g:empty": {"last_seq": 0, "more": false}, "g:vault": {"last_seq": 2, "more": false}})
    );
    let listing = request(&mut bob, json!({"type": "members", "id": "m", "group": "vault"})).await;
    assert_eq!(
        (listing["closed"].as_bool(), listing["members"].clone()),
        (Some(true), json!(["alice", "bob"]))
    );
    let mut carol = connect(&second.url, "carol").await;
    assert_eq!(
        request(&mut carol, json!({"type": "join", "id": "j", "group": "vault"})).await["code"],
        "forbidden"
    );
    let ack = request(
        &mut bob,
        json!({"type": "send", "id": "b", "group": "vault", "body": 3}),
    )
    .await;
    assert_eq!(ack["seq"], 3);
}

/// Connects `count` members of `group` (added by the host), each reading in
/// its own task until it has `expected` messages; returns their seqs.
async fn room(
    t: &support::TestServer,
    group: &str,
    count: usize,
    expected: usize,
) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    tokio::task::block_in_place(|| {
        t.server.create_group(group, false).unwrap();
        for i in 0..count {
            t.server.add_member(group, &format!("m{i}")).unwrap();
        }
    });
    let mut readers = Vec::new();
    let connecting = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..count {
        let (url, permit) = (t.url.clone(), connecting.clone().acquire_owned().await.unwrap());
        let mut member = connect(&url, &format!("m{i}")).await;
        drop(permit);
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(expected);
            while seqs.len() < expected {
                let frame = tokio::time::timeout(Duration::from_secs(30), member.recv())
                    .await
                    .expect("member starved");
                if frame["type"] == "msg" {
                    seqs.push(frame["seq"].as_u64().unwrap());
                }
            }
            seqs
        }));
    }
    readers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_two_thousand_members_gets_every_message_in_order() {
    let t = start(json!({}));
    let readers = room(&t, "hall", 2000, 20).await;
    let mut sender = connect(&t.url, "m0").await;
    for i in 0..20 {
        sender
            .send_json(json!({"type": "send", "id": format!("h{i}"), "group": "hall", "body": {"n": i}}))
            .await;
    }
    for reader in readers.into_iter().skip(1) {
        assert_eq!(reader.await.unwrap(), (1..=20).collect::<Vec<_>>());
    }
    let stats = t.server.stats().unwrap();
    assert_eq!(stats.messages_stored, 20);
    assert!(stats.messages_delivered >= 20 * 1999, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_is_cut_off_and_delays_nobody() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let t = start(json!({"limits": {"outbound_queue_bytes": 262144}}));
    // 16 MB in all: more than the kernel's socket buffers and the stalled
    // member's outbox can hold. The sender stays at most 20 messages (160 KB)
    // ahead of the slowest reading member, so only the stalled one falls behind.
    let (body, messages, window) = (json!("x".repeat(8000)).to_string(), 2000u64, 20u64);
    tokio::task::block_in_place(|| {
        t.server.create_group("busy", false).unwrap();
        for user in ["r0", "r1", "r2", "stalled"] {
            t.server.add_member("busy", user).unwrap();
        }
    });
    let mut stalled = support::connect_with_small_window(&t.url, "stalled").await;
    let mut progress = Vec::new();
    let mut readers = Vec::new();
    for i in 0..3 {
        let mut member = connect(&t.url, &format!("r{i}")).await;
        let seen = Arc::new(AtomicU64::new(0));
        progress.push(seen.clone());
        readers.push(tokio::spawn(async move {
            for expected in 1..=messages {
                let msg = member.recv().await;
                assert_eq!(msg["seq"].as_u64(), Some(expected));
                seen.store(expected, Ordering::Relaxed);
            }
        }));
    }
    'sending: for i in 0..messages {
        while progress.iter().map(|p| p.load(Ordering::Relaxed)).min().unwrap() + window < i {
            // A reader that ended early failed: stop sending, so its panic is reported below.
            if readers.iter().any(|r| r.is_finished()) {
                break 'sending;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::task::block_in_place(|| t.server.send_group("host", "busy", &body, Some(&format!("b{i}")))).unwrap();
    }
    for reader in readers {
        reader.await.unwrap();
    }
    // The stalled member, reading at last, finds the 1013 behind what it was sent.
    let mut got = 0;
    loop {
        match tokio::time::timeout(support::WAIT, futures_util::StreamExt::next(&mut stalled.ws))
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Again));
                break;
            }
            Some(Ok(_)) => got += 1,
            other => panic!("expected the 1013 close, got {other:?}"),
        }
    }
    assert!(got < messages, "the stalled member was cut off ({got} of {messages})");
    let event = t
        .host
        .wait_for(|e| e["event"] == "disconnected" && e["user"] == "stalled");
    assert_eq!(event["reason"], "slow reader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_reads_late_gets_every_message_whole_and_in_order() {
    // 12 MB sent while the member does not read: more than the kernel's
    // socket buffers take, so the server's writes stop part-way through
    // its batches, and what they did not take waits in the session until
    // the member reads.
    let t = start(json!({"limits": {"outbound_queue_bytes": 32 << 20}}));
    let messages = 1500u64;
    tokio::task::block_in_place(|| {
        t.server.create_group("late", false).unwrap();
        t.server.add_member("late", "reader").unwrap();
    });
    let mut reader = support::connect_with_small_window(&t.url, "reader").await;
    for i in 1..=messages {
        let body = json!(format!("{i}:{}", "x".repeat(8000))).to_string();
        tokio::task::block_in_place(|| t.server.send_group("host", "late", &body, Some(&format!("l{i}")))).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for expected in 1..=messages {
        let msg = reader.recv().await;
        assert_eq!(msg["seq"].as_u64(), Some(expected), "{}", &msg.to_string()[..80]);
        assert_eq!(msg["body"], format!("{expected}:{}", "x".repeat(8000)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_above_the_announced_size_tells_only_the_joiner() {
    let t = start(json!({"groups": {"announce_max_size": 2}}));
    let mut ann = connect(&t.url, "ann").await;
    join(&mut ann, "big").await;
    let mut bob = connect(&t.url, "bob").await;
    join(&mut bob, "big").await;
    // Two members: still announced.
    assert_eq!(ann.recv().await["user"], "bob");
    let mut carol = connect(&t.url, "carol").await;
    let mut carol_phone = connect(&t.url, "carol").await;
    join(&mut carol, "big").await;
    // Three: only carol's other session hears of it; the others ask.
    assert_eq!(
        carol_phone.recv().await,
        json!({"type": "member", "group": "big", "user": "carol", "joined": true})
    );
    ann.assert_quiet().await;
    bob.assert_quiet().await;
    let members = ann.request(json!({"type": "members", "id": "m", "group": "big"})).await;
    assert_eq!(members["members"], json!(["ann", "bob", "carol"]));
    // Leaving from three to two is announced again.
    let left = carol.request(json!({"type": "leave", "id": "l", "group": "big"})).await;
    assert_eq!(left["type"], "ok");
    assert_eq!(
        ann.recv().await,
        json!({"type": "member", "group": "big", "user": "carol", "joined": false})
    );
    t.host
        .wait_for(|e| e == &json!({"event": "member", "group": "big", "user": "carol", "joined": true}));
    t.server.stop().unwrap();
}

/// The seq of the next `msg` frame `client` receives, skipping other frames.
async fn next_msg_seq(client: &mut Client) -> u64 {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "msg" {
            return frame["seq"].as_u64().unwrap();
        }
    }
}

/// A member who syncs while a group's messages stream to it: its session
/// reads them from a batch the group's fan-out keeps appending to, and
/// the sync must seal that batch so that no live message passes the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_syncing_mid_stream_gets_the_reply_then_every_later_message_once_in_order() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    join(&mut alice, "team").await;
    join(&mut bob, "team").await;
    alice.recv().await; // bob's member notice
    for i in 1..=200 {
        let ack = request(
            &mut alice,
            json!({"type": "send", "id": format!("pre{i}"), "group": "team", "body": i}),
        )
        .await;
        assert_eq!(ack["seq"], i);
        assert_eq!(bob.recv().await["seq"], i, "live, before the sync");
    }
    let url = t.url.clone();
    let sender = tokio::spawn(async move {
        let mut alice = connect(&url, "alice").await;
        for i in 0..400 {
            alice
                .send_json(json!({"type": "send", "id": format!("live{i}"), "group": "team", "body": i}))
                .await;
        }
        for _ in 0..400 {
            assert_eq!(alice.recv().await["type"], "ack");
        }
    });
    // Some of the stream first, so that the sync finds bob reading a batch.
    let mut before_reply = Vec::new();
    while before_reply.len() < 20 {
        before_reply.push(next_msg_seq(&mut bob).await);
    }
    bob.send_json(json!({"type": "sync", "id": "s", "limit": 1000})).await;
    let mut until_synced = Vec::new();
    loop {
        let frame = bob.recv().await;
        match frame["type"].as_str() {
            Some("msg") => until_synced.push(frame["seq"].as_u64().unwrap()),
            Some("synced") => break,
            _ => {}
        }
    }
    // The live messages pushed before the sync was read, then the reply from seq 1.
    let reply_at = until_synced
        .iter()
        .rposition(|&seq| seq == 1)
        .expect("the reply starts at seq 1");
    before_reply.extend_from_slice(&until_synced[..reply_at]);
    let reply = &until_synced[reply_at..];
    assert_eq!(before_reply, (201..201 + before_reply.len() as u64).collect::<Vec<_>>());
    let last = *reply.last().unwrap();
    assert_eq!(reply, (1..=last).collect::<Vec<_>>(), "the reply, whole and in order");
    let mut after = Vec::new();
    while after.len() < (600 - last) as usize {
        after.push(next_msg_seq(&mut bob).await);
    }
    assert_eq!(
        after,
        (last + 1..=600).collect::<Vec<_>>(),
        "after the reply: the rest, once, in order"
    );
    sender.await.unwrap();
    bob.assert_quiet().await;
}
