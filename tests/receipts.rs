//! Read receipts that survive a reload: positions in `conversations`,
//! replayed by `sync`, and paged by `reads` for groups too large to carry them.

mod support;

use serde_json::json;
use support::{connect, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_replays_where_the_others_have_read() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    alice.send_to("bob", "a1", json!(1)).await;
    alice.send_to("bob", "a2", json!(2)).await;
    let mut bob = connect(&t.url, "bob").await;
    bob.request(json!({"type": "read", "id": "r", "conv": "dm:alice:bob", "seq": 2}))
        .await;
    drop(alice);
    // Alice comes back with her cursor at 2: no messages, but bob's position.
    let mut alice = connect(&t.url, "alice").await;
    alice
        .send_json(json!({"type": "sync", "id": "s", "cursors": {"dm:alice:bob": 2}}))
        .await;
    let mut before_synced = Vec::new();
    loop {
        let frame = alice.recv().await;
        if frame["type"] == "synced" {
            break;
        }
        before_synced.push(frame);
    }
    assert_eq!(
        before_synced,
        [json!({"type": "read", "conv": "dm:alice:bob", "user": "bob", "seq": 2})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_above_the_receipts_size_answer_reads_requests_instead() {
    let t = start(json!({"receipts": {"max_group_size": 2}}));
    t.server.create_group("big", false).unwrap();
    for member in ["ann", "bob", "cat"] {
        t.server.add_member("big", member).unwrap();
    }
    let mut ann = connect(&t.url, "ann").await;
    let mut bob = connect(&t.url, "bob").await;
    let sent = ann
        .request(json!({"type": "send", "id": "s1", "group": "big", "body": 1}))
        .await;
    assert_eq!(sent["seq"], 1);
    for client in [&mut ann, &mut bob] {
        let read = client
            .request(json!({"type": "read", "id": "r", "conv": "g:big", "seq": 1}))
            .await;
        assert_eq!(read["type"], "ok");
    }
    // No relay to the other members of a large group.
    ann.assert_quiet().await;
    let listing = ann.request(json!({"type": "conversations", "id": "c"})).await;
    assert!(listing["conversations"][0].get("reads").is_none(), "{listing}");
    let page = ann
        .request(json!({"type": "reads", "id": "q", "conv": "g:big", "limit": 1}))
        .await;
    assert_eq!(
        page,
        json!({"type": "reads", "id": "q", "conv": "g:big", "reads": {"ann": 1}, "next": "ann"})
    );
    let rest = ann
        .request(json!({"type": "reads", "id": "q2", "conv": "g:big", "after": "ann"}))
        .await;
    assert_eq!(
        rest,
        json!({"type": "reads", "id": "q2", "conv": "g:big", "reads": {"bob": 1}})
    );
    // Who left is nobody's business any more.
    t.server.remove_member("big", "bob").unwrap();
    let after_leaving = ann.request(json!({"type": "reads", "id": "q3", "conv": "g:big"})).await;
    assert_eq!(after_leaving["reads"], json!({"ann": 1}), "{after_leaving}");
    let mut eve = connect(&t.url, "eve").await;
    let refused = eve.request(json!({"type": "reads", "id": "x", "conv": "g:big"})).await;
    assert_eq!(refused["code"], "forbidden");
}

/// A `conversations` listing carries read positions only while its reply
/// fits the session's budget: a user in many groups full of readers is
/// not closed with 1013 each time it lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversations_listing_with_read_positions_fits_the_outbound_queue() {
    let s = start(json!({}));
    let readers: Vec<String> = (0..18).map(|i| format!("{:0>60}", i)).collect();
    for g in 0..1000 {
        let group = format!("g{g}");
        s.server.create_group(&group, false).unwrap();
        s.server.add_member(&group, "victim").unwrap();
        for r in &readers {
            s.server.add_member(&group, r).unwrap();
        }
        s.server.send_group("host", &group, "1", None).unwrap();
    }
    // One reader at a time: nobody else is online to receive the relays.
    for r in &readers {
        let mut c = connect(&s.url, r).await;
        for g in 0..1000 {
            c.send_json(json!({"type": "read", "conv": format!("g:g{g}"), "seq": 1}))
                .await;
        }
        let _ = c.request(json!({"type": "members", "id": "m", "group": "g0"})).await;
    }
    let mut victim = connect(&s.url, "victim").await;
    victim.send_json(json!({"type": "conversations", "id": "c"})).await;
    let reply = victim.recv().await;
    assert_eq!(
        reply["type"],
        "conversations",
        "{}",
        &reply.to_string()[..200.min(reply.to_string().len())]
    );
}
