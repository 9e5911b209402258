//! Replies, edits, deletes, reactions, search and files (docs/PROTOCOL.md),
//! against every store (memory, SQLite, PostgreSQL): every rule refuses what it should, every device
//! converges on the same state, and what is deleted leaves the disk.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use imbed::Client as ImbedClient;
use imbed::config::ClientConfig;
use serde_json::{Value, json};
use support::{Client, TestServer, connect, start};

/// A memory store, a SQLite file in `dir`, and a PostgreSQL database.
fn stores(dir: &tempfile::TempDir) -> [Value; 3] {
    let path = dir.path().join("m.db");
    [
        json!({"store": {"path": ":memory:"}}),
        json!({"store": {"path": path.to_str().unwrap()}}),
        json!({"store": {"postgres": support::postgres::database(dir.path())}}),
    ]
}

fn code(reply: &Value) -> &str {
    assert_eq!(reply["type"], "error", "{reply}");
    reply["code"].as_str().unwrap()
}

async fn event(client: &mut Client, kind: &str, id: &str, conv: &str, seq: u64, extra: Value) -> Value {
    let mut frame = json!({"type": kind, "id": id, "conv": conv, "seq": seq});
    frame
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    client.request(frame).await
}

/// What a client that applies events to their targets shows: seq → message.
fn apply(shown: &mut BTreeMap<u64, Value>, frame: &Value) {
    let seq = frame["seq"].as_u64().unwrap();
    let Some(kind) = frame["kind"].as_str() else {
        shown.insert(seq, frame.clone());
        return;
    };
    let Some(target) = shown.get_mut(&frame["target"].as_u64().unwrap()) else {
        return;
    };
    let user = frame["from"].as_str().unwrap();
    let emoji = frame["body"]["emoji"].as_str().unwrap_or_default();
    let map = target.as_object_mut().unwrap();
    match kind {
        "edit" if map.get("deleted").is_none() => {
            map.insert("body".into(), frame["body"].clone());
            map.insert("edited".into(), frame["ts"].clone());
        }
        "delete" => {
            map.insert("body".into(), Value::Null);
            map.insert("deleted".into(), json!(true));
            map.remove("reactions");
            map.remove("edited");
        }
        "react" | "unreact" => {
            let reactions = map.entry("reactions").or_insert(json!({})).as_object_mut().unwrap();
            let users = reactions.entry(emoji).or_insert(json!([])).as_array_mut().unwrap();
            users.retain(|u| u != user);
            if kind == "react" {
                users.push(json!(user));
                users.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
            if users.is_empty() {
                reactions.remove(emoji);
            }
            if reactions.is_empty() {
                map.remove("reactions");
            }
        }
        _ => {}
    }
}

/// The messages (not events) a state shows.
fn messages(shown: &BTreeMap<u64, Value>) -> Vec<Value> {
    shown.values().filter(|m| m.get("kind").is_none()).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_refuses_what_it_should_in_every_store() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir) {
        let mut config = json!({"messages": {"max_reactions_per_user": 2, "edit_window_ms": 400}});
        config
            .as_object_mut()
            .unwrap()
            .extend(store.as_object().unwrap().clone());
        let t = start(config);
        let mut alice = connect(&t.url, "alice").await;
        let mut bob = connect(&t.url, "bob").await;
        let conv = "dm:alice:bob";
        assert_eq!(alice.send_to("bob", "m1", json!({"text": "one"})).await["seq"], 1);
        let edit = |text: &str| json!({"body": {"text": text}});
        assert_eq!(
            code(&event(&mut bob, "edit", "e0", conv, 1, edit("x")).await),
            "forbidden"
        );
        assert_eq!(
            code(&event(&mut alice, "edit", "e1", conv, 9, edit("x")).await),
            "not_found"
        );
        let ack = event(&mut alice, "edit", "e2", conv, 1, edit("uno")).await;
        assert_eq!((ack["type"].as_str(), ack["seq"].as_u64()), (Some("ack"), Some(2)));
        // A retry gets the first ack and changes nothing again.
        assert_eq!(event(&mut alice, "edit", "e2", conv, 1, edit("other")).await, ack);
        assert_eq!(
            code(&event(&mut alice, "edit", "e3", conv, 2, edit("x")).await),
            "bad_request"
        );
        let thumbs = json!({"emoji": "👍"});
        assert_eq!(event(&mut bob, "react", "r1", conv, 1, thumbs.clone()).await["seq"], 3);
        assert_eq!(
            code(&event(&mut bob, "react", "r2", conv, 1, thumbs.clone()).await),
            "bad_request"
        );
        assert_eq!(
            event(&mut bob, "react", "r3", conv, 1, json!({"emoji": "🎉"})).await["seq"],
            4
        );
        assert_eq!(
            code(&event(&mut bob, "react", "r4", conv, 1, json!({"emoji": "🙂"})).await),
            "bad_request"
        );
        assert_eq!(
            code(&event(&mut bob, "react", "r5", conv, 1, json!({"emoji": ""})).await),
            "bad_request"
        );
        assert_eq!(
            code(&event(&mut alice, "unreact", "u1", conv, 1, thumbs.clone()).await),
            "not_found"
        );
        assert_eq!(
            event(&mut bob, "unreact", "u2", conv, 1, thumbs.clone()).await["seq"],
            5
        );
        let reply = json!({"type": "send", "id": "m2", "to": "alice", "body": "yes", "reply_to": 1});
        assert_eq!(bob.request(reply).await["seq"], 6);
        let missing = json!({"type": "send", "id": "m3", "to": "alice", "body": "?", "reply_to": 77});
        assert_eq!(code(&bob.request(missing).await), "not_found");
        assert_eq!(
            code(&event(&mut bob, "delete", "d1", conv, 1, json!({})).await),
            "forbidden"
        );
        assert_eq!(event(&mut alice, "delete", "d2", conv, 1, json!({})).await["seq"], 7);
        assert_eq!(
            code(&event(&mut alice, "delete", "d3", conv, 1, json!({})).await),
            "bad_request"
        );
        assert_eq!(
            code(&event(&mut bob, "react", "r6", conv, 1, thumbs.clone()).await),
            "bad_request"
        );
        // Past the edit window.
        let late = alice.send_to("bob", "m4", json!("late")).await["seq"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            code(&event(&mut alice, "edit", "e4", conv, late, edit("x")).await),
            "forbidden"
        );
        // The host deletes anyone's message.
        let by_host = t.server.delete("moderator", conv, 6).unwrap();
        assert_eq!(by_host.seq, late + 1);
        assert!(matches!(
            t.server.delete("moderator", conv, 6),
            Err(imbed::Error::InvalidArgument(_))
        ));
        assert!(matches!(
            t.server.delete("moderator", conv, 99),
            Err(imbed::Error::NotFound(_))
        ));
        let shown = t.server.history(conv, None, 100).unwrap();
        assert!(shown[0].state.deleted);
        assert_eq!(shown[0].message.body.get(), "null");
        // The edit of a deleted message is erased too.
        assert_eq!(shown[1].message.kind, imbed::MessageKind::Edit);
        assert_eq!(shown[1].message.body.get(), "null");
        t.server.stop().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_was_offline_converges_on_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir) {
        let t = start(store);
        let mut alice = connect(&t.url, "alice").await;
        let mut bob = connect(&t.url, "bob").await;
        let conv = "dm:alice:bob";
        alice.send_to("bob", "m1", json!({"text": "a"})).await;
        alice.send_to("bob", "m2", json!({"text": "b"})).await;
        // Bob's phone has seen the first two messages, then goes away.
        let mut phone = BTreeMap::new();
        for _ in 0..2 {
            apply(&mut phone, &bob.recv().await);
        }
        drop(bob);
        let mut laptop = connect(&t.url, "bob").await;
        event(&mut alice, "edit", "e1", conv, 1, json!({"body": {"text": "A"}})).await;
        event(&mut laptop, "react", "r1", conv, 1, json!({"emoji": "👍"})).await;
        event(&mut laptop, "react", "r2", conv, 2, json!({"emoji": "👀"})).await;
        event(&mut laptop, "unreact", "r3", conv, 2, json!({"emoji": "👀"})).await;
        event(&mut alice, "delete", "d1", conv, 2, json!({})).await;
        alice.send_to("bob", "m3", json!({"text": "c"})).await;
        event(&mut alice, "edit", "e2", conv, 8, json!({"body": {"text": "C"}})).await;
        // The phone comes back and syncs from its cursor; a new device from nothing.
        let mut phone_again = connect(&t.url, "bob").await;
        let mut fresh = BTreeMap::new();
        for (cursor, state) in [(2, &mut phone), (0, &mut fresh)] {
            phone_again
                .send_json(json!({"type": "sync", "id": "s", "cursors": {conv: cursor}}))
                .await;
            loop {
                let frame = phone_again.recv().await;
                if frame["type"] == "synced" {
                    break;
                }
                if frame["type"] == "msg" {
                    apply(state, &frame);
                }
            }
        }
        let history = phone_again
            .request(json!({"type": "history", "id": "h", "conv": conv}))
            .await;
        let mut from_history = BTreeMap::new();
        for frame in history["messages"].as_array().unwrap() {
            apply(&mut from_history, frame);
        }
        let expected = messages(&from_history);
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[0]["body"]["text"], "A");
        assert_eq!(expected[0]["reactions"], json!({"👍": ["bob"]}));
        assert_eq!(expected[1]["deleted"], true);
        assert_eq!(expected[2]["body"]["text"], "C");
        assert_eq!(messages(&phone), expected, "the phone after its sync");
        assert_eq!(messages(&fresh), expected, "a new device");
        t.server.stop().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_pages_through_the_users_conversations_only() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir) {
        let t = start(store);
        t.server.create_group("zoo", false).unwrap();
        t.server.add_member("zoo", "alice").unwrap();
        t.server.create_group("secret", false).unwrap();
        let mut alice = connect(&t.url, "alice").await;
        for n in 0..12 {
            alice
                .send_to("bob", &format!("d{n}"), json!({"text": format!("Zèbra number {n}")}))
                .await;
            let frame =
                json!({"type": "send", "id": format!("g{n}"), "group": "zoo", "body": [format!("a ZEBRA {n}")]});
            alice.request(frame).await;
        }
        t.server
            .send("carol", "dave", r#"{"text":"zebra elsewhere"}"#, None)
            .unwrap();
        t.server
            .send_group("host", "secret", r#""zebra in secret""#, None)
            .unwrap();
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = json!({"type": "search", "id": "q", "query": "zebra", "limit": 5});
            if let Some(after) = &after {
                query["after"] = json!(after);
            }
            let page = alice.request(query).await;
            let results = page["results"].as_array().unwrap().clone();
            assert!(results.len() <= 5);
            found.extend(results);
            match page["next"].as_str() {
                Some(next) => {
                    assert_eq!(page["more"], true);
                    after = Some(next.to_owned());
                }
                None => break,
            }
        }
        assert_eq!(found.len(), 24, "only alice's conversations: {found:?}");
        let times: Vec<i64> = found.iter().map(|m| m["ts"].as_i64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        let in_zoo = alice
            .request(json!({"type": "search", "id": "q", "query": "zebra 3", "conv": "g:zoo"}))
            .await;
        assert_eq!(in_zoo["results"].as_array().unwrap().len(), 1, "{in_zoo}");
        let foreign = json!({"type": "search", "id": "q", "query": "zebra", "conv": "dm:carol:dave"});
        assert_eq!(code(&alice.request(foreign).await), "forbidden");
        assert_eq!(
            code(
                &alice
                    .request(json!({"type": "search", "id": "q", "query": " ,. "}))
                    .await
            ),
            "bad_request"
        );
        // Found by what a message says now: not the old words of an edit, nothing of a delete.
        event(
            &mut alice,
            "edit",
            "e",
            "dm:alice:bob",
            1,
            json!({"body": {"text": "okapi"}}),
        )
        .await;
        event(&mut alice, "delete", "x", "dm:alice:bob", 2, json!({})).await;
        let now = alice
            .request(json!({"type": "search", "id": "q", "query": "zebra number", "limit": 100}))
            .await;
        assert_eq!(now["results"].as_array().unwrap().len(), 10);
        let okapi = alice
            .request(json!({"type": "search", "id": "q", "query": "OKAPI"}))
            .await;
        assert_eq!(okapi["results"][0]["seq"], 1);
        // Scripts cut differently from Latin: Hangul, Devanagari, voiced kana.
        for (n, text) in ["한국 사람", "नमस्ते दुनिया", "がっこう"].iter().enumerate() {
            alice.send_to("bob", &format!("s{n}"), json!({"text": text})).await;
            let first = text.split(' ').next().unwrap();
            let found = alice
                .request(json!({"type": "search", "id": "q", "query": first}))
                .await;
            assert_eq!(found["results"].as_array().unwrap().len(), 1, "{first}: {found}");
        }
        // The host searches everything.
        assert_eq!(t.server.search(None, "zebra", None, 100).unwrap().messages.len(), 24);
        assert_eq!(
            t.server
                .search(Some("g:secret"), "zebra", None, 100)
                .unwrap()
                .messages
                .len(),
            1
        );
        t.server.stop().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_body_leaves_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("erase.db");
    let t = start(json!({"store": {"path": path.to_str().unwrap()}}));
    let mut alice = connect(&t.url, "alice").await;
    alice.send_to("bob", "k", json!({"text": "kept-marker-4711"})).await;
    for n in 0..50 {
        alice
            .send_to("bob", &format!("f{n}"), json!({"text": format!("filler {n}")}))
            .await;
    }
    let gone = alice
        .send_to("bob", "g", json!({"text": "gone-marker-0815 quokka"}))
        .await;
    let seq = gone["seq"].as_u64().unwrap();
    event(
        &mut alice,
        "edit",
        "e",
        "dm:alice:bob",
        seq,
        json!({"body": {"text": "edited-marker-99 wombat"}}),
    )
    .await;
    event(&mut alice, "delete", "d", "dm:alice:bob", seq, json!({})).await;
    let erased = [
        "gone-marker-0815",
        "edited-marker-99",
        "quokka",
        "wombat",
        "reaction-marker-7",
    ];
    let files_hold = |needle: &str| {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
            bytes.extend(wal);
        }
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    };
    // While the server runs: the WAL is emptied soon after the delete.
    wait_until("the deleted words leave the database and its WAL", || {
        !erased.iter().any(|e| files_hold(e))
    });
    assert!(files_hold("kept-marker-4711"), "the control is there");
    t.server.stop().unwrap();
    for erased in erased {
        assert!(!files_hold(erased), "{erased} is in the file after the stop");
    }
    assert!(files_hold("kept-marker-4711"));
}

/// A client role of `user` against `t`, for uploads.
fn uploader(t: &TestServer, user: &str) -> ImbedClient {
    let config = json!({"url": t.url, "token": user});
    ImbedClient::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap()
}

fn upload(client: &ImbedClient, dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> Result<Value, imbed::Error> {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    client
        .upload(&path, None)
        .map(|answer| serde_json::from_str(&answer).unwrap())
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_live_while_referred_to_and_within_quota() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir) {
        let files = tempfile::tempdir().unwrap();
        let mut config =
            json!({"files": {"dir": files.path(), "max_bytes": 1000, "quota_bytes": 1500, "unreferenced_ms": 400}});
        config
            .as_object_mut()
            .unwrap()
            .extend(store.as_object().unwrap().clone());
        let t = start(config);
        let client = uploader(&t, "alice");
        let kept = upload(&client, &dir, "kept.png", b"\x89PNG\r\n\x1a\nkept").unwrap();
        assert_eq!(kept["type"], "image/png");
        let loose = upload(&client, &dir, "loose.txt", &[b'x'; 600]).unwrap();
        assert_eq!(loose["type"], "application/octet-stream");
        assert!(matches!(
            upload(&client, &dir, "big", &[0; 1001]),
            Err(imbed::Error::InvalidArgument(_))
        ));
        assert!(matches!(
            upload(&client, &dir, "quota", &[1; 900]),
            Err(imbed::Error::InvalidArgument(_))
        ));
        let mut alice = connect(&t.url, "alice").await;
        let kept_id = kept["id"].as_str().unwrap();
        let sent = alice
            .send_to("bob", "f", json!({"files": [{"id": kept_id, "name": "kept.png"}]}))
            .await;
        assert_eq!(sent["type"], "ack", "{sent}");
        let path_of = |id: &str| t.server.file(id).map(|f| f.path);
        let kept_path = path_of(kept_id).unwrap();
        let loose_id = loose["id"].as_str().unwrap().to_owned();
        // The upload no message refers to expires; the other stays.
        wait_until("the unreferenced upload is collected", || path_of(&loose_id).is_err());
        assert!(kept_path.exists());
        assert!(
            std::fs::read_dir(files.path().join("tmp")).unwrap().next().is_none(),
            "no partial upload left"
        );
        // Its bytes left the quota: 900 more fit now.
        upload(&client, &dir, "fits", &[2; 900]).unwrap();
        event(
            &mut alice,
            "delete",
            "d",
            "dm:alice:bob",
            sent["seq"].as_u64().unwrap(),
            json!({}),
        )
        .await;
        wait_until("the file of a deleted message is collected", || !kept_path.exists());
        assert!(matches!(t.server.file(kept_id), Err(imbed::Error::NotFound(_))));
        client.stop().unwrap();
        t.server.stop().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_delete_in_a_direct_conversation_reaches_both_members() {
    let t = start(json!({}));
    let mut alice = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    alice.send_to("bob", "m1", json!("hi")).await;
    assert_eq!(bob.recv().await["seq"], 1);
    let deleted = t.server.delete("moderator", "dm:alice:bob", 1).unwrap();
    for member in [&mut alice, &mut bob] {
        let frame = member.recv().await;
        assert_eq!(
            (frame["kind"].as_str(), frame["seq"].as_u64()),
            (Some("delete"), Some(deleted.seq))
        );
    }
    t.server.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_lets_go_of_the_files_of_the_messages_it_removes() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir) {
        let files = tempfile::tempdir().unwrap();
        let mut config = store.clone();
        config["files"] = json!({"dir": files.path(), "unreferenced_ms": 300});
        config["store"]["retention"] = json!({"max_messages_per_conversation": 1});
        let t = start(config);
        let client = uploader(&t, "alice");
        let photo = upload(&client, &dir, "photo.gif", b"GIF89a-retained").unwrap();
        let id = photo["id"].as_str().unwrap().to_owned();
        let mut alice = connect(&t.url, "alice").await;
        assert_eq!(alice.send_to("bob", "p", json!({"files": [id]})).await["type"], "ack");
        let path = t.server.file(&id).unwrap().path;
        // Still referred to, older than unreferenced_ms: it stays.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(path.exists());
        // The next message pushes it out of the conversation's one kept message.
        alice.send_to("bob", "q", json!("next")).await;
        wait_until("the file of a message retention removed is collected", || {
            !path.exists()
        });
        client.stop().unwrap();
        t.server.stop().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_counts_messages_not_reactions_edits_or_deletes() {
    let t = start(json!({"push": {"enabled": true}}));
    let mut alice = connect(&t.url, "alice").await;
    let conv = "dm:alice:bob";
    for id in ["m1", "m2", "m3"] {
        alice.send_to("bob", id, json!(id)).await;
    }
    event(&mut alice, "react", "r", conv, 1, json!({"emoji": "👍"})).await;
    event(&mut alice, "edit", "e", conv, 1, json!({"body": "m1!"})).await;
    event(&mut alice, "delete", "d", conv, 2, json!({})).await;
    alice.send_to("bob", "m4", json!("m4")).await;
    // Bob has m1, m3 and m4 unread; the events and the deleted m2 are not news.
    let push = t.host.wait_for(|e| e["event"] == "push" && e["seq"] == 7);
    assert_eq!(push["unread"], 3, "{push}");
    t.server.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_delete_makes_nobody_a_member_of_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir) {
        let t = start(store);
        let mut alice = connect(&t.url, "alice").await;
        alice.send_to("bob", "m1", json!("private")).await;
        t.server.delete("moderator", "dm:alice:bob", 1).unwrap();
        let mut moderator = connect(&t.url, "moderator").await;
        let listing = moderator.request(json!({"type": "conversations", "id": "c"})).await;
        assert_eq!(listing["conversations"], json!([]), "{listing}");
        // The delete event itself is not erased: live and replayed it is the same.
        let history = alice
            .request(json!({"type": "history", "id": "h", "conv": "dm:alice:bob"}))
            .await;
        assert!(history["messages"][1].get("deleted").is_none(), "{history}");
        t.server.stop().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carries_at_most_its_reactions() {
    let t = start(json!({"messages": {"max_reactions_per_message": 3}}));
    t.server.create_group("g", false).unwrap();
    let mut users = Vec::new();
    for name in ["u1", "u2", "u3", "u4"] {
        t.server.add_member("g", name).unwrap();
        users.push(connect(&t.url, name).await);
    }
    let sent = json!({"type": "send", "id": "m", "group": "g", "body": "react to me"});
    assert_eq!(users[0].request(sent).await["seq"], 1);
    for (n, user) in users.iter_mut().enumerate().take(3) {
        let ack = event(user, "react", &format!("r{n}"), "g:g", 1, json!({"emoji": "👍"})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let fourth = event(&mut users[3], "react", "r3", "g:g", 1, json!({"emoji": "👍"})).await;
    assert_eq!(code(&fourth), "bad_request");
    // One taken back makes room again.
    assert_eq!(
        event(&mut users[0], "unreact", "u", "g:g", 1, json!({"emoji": "👍"})).await["type"],
        "ack"
    );
    assert_eq!(
        event(&mut users[3], "react", "r4", "g:g", 1, json!({"emoji": "👍"})).await["type"],
        "ack"
    );
    t.server.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_reply_cut_short_by_its_budget_continues_after_what_it_carried() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir) {
        // A reply may carry about 200 KB: two of these messages do not fit in one.
        let mut config = json!({"limits": {"max_frame_bytes": 200_000, "outbound_queue_bytes": 402_048}});
        config["store"] = store["store"].clone();
        let t = start(config);
        let mut alice = connect(&t.url, "alice").await;
        for (id, size) in [("older", 150_000), ("newer", 90_000)] {
            let text = format!("zebra {}", "x ".repeat(size / 2));
            assert_eq!(alice.send_to("bob", id, json!({ "text": text })).await["type"], "ack");
        }
        let mut found = Vec::new();
        let mut query = json!({"type": "search", "id": "q", "query": "zebra"});
        loop {
            let page = alice.request(query.clone()).await;
            for result in page["results"].as_array().unwrap() {
                found.push(result["id"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(next) => query["after"] = json!(next),
                None => break,
            }
        }
        assert_eq!(found, ["newer", "older"]);
        t.server.stop().unwrap();
    }
}
