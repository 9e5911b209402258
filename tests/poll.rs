//! Poll delivery (`events.delivery: "poll"`): the host takes events from the
//! engine's queue on its own thread, woken by a file descriptor.

mod support;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use imbed::config::ClientConfig;
use imbed::{Client, Config, Error, Event, Server};
use serde_json::{Value, json};
use support::{connect, file_cursor};
use tempfile::TempDir;

fn polled_server(extra: Value) -> (Server, String) {
    let mut config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "log_level": "off",
        "events": {"delivery": "poll"}});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    server.start().unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    (server, url)
}

fn polled_client(url: &str, user: &str, state_path: &str, queue_capacity: usize) -> Client {
    let config = json!({"url": url, "token": user, "state_path": state_path, "log_level": "off",
        "reconnect": {"initial_ms": 50, "max_ms": 500},
        "events": {"delivery": "poll", "queue_capacity": queue_capacity}});
    Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap()
}

/// Whether `fd` becomes readable within `timeout`.
fn readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pollfd, 1, timeout.as_millis() as libc::c_int) };
    ready == 1 && pollfd.revents & libc::POLLIN != 0
}

/// Takes events as a poll loop would (wait for the fd, take until none)
/// until `done` holds for what was taken, or panics after 20 s.
fn poll_until(take: impl Fn() -> Vec<Event>, fd: RawFd, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut taken = Vec::new();
    while !done(&taken) {
        assert!(Instant::now() < deadline, "timed out; took {taken:?}");
        if readable(fd, Duration::from_millis(200)) {
            taken.extend(take());
        }
    }
    taken
}

fn message_seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { frame, .. } => serde_json::from_str::<Value>(frame).unwrap()["seq"].as_u64(),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_server_wakes_its_fd_and_hands_over_events_in_order() {
    let (server, url) = polled_server(json!({}));
    let fd = server.event_fd().unwrap();
    assert_eq!(server.poll_events(16).unwrap().len(), 0);
    assert!(!readable(fd, Duration::ZERO), "nothing waits yet");
    let mut bob = connect(&url, "bob").await;
    for n in 0..3 {
        assert_eq!(bob.send_to("alice", &format!("b{n}"), json!(n)).await["type"], "ack");
    }
    let taken = tokio::task::spawn_blocking(move || {
        let taken = poll_until(|| server.poll_events(2).unwrap(), fd, |t| message_seqs(t).len() == 3);
        assert!(server.poll_events(16).unwrap().is_empty());
        assert!(!readable(fd, Duration::ZERO), "drained: the fd is quiet again");
        taken
    })
    .await
    .unwrap();
    assert!(
        matches!(&taken[0], Event::Connected { user, .. } if &**user == "bob"),
        "{taken:?}"
    );
    assert_eq!(message_seqs(&taken), [1, 2, 3]);
}

#[test]
fn log_records_arrive_as_events_when_polled() {
    let (server, _url) = polled_server(json!({"log_level": "info"}));
    let taken = poll_until(
        || server.poll_events(16).unwrap(),
        server.event_fd().unwrap(),
        |t| !t.is_empty(),
    );
    let Event::Log { message, .. } = &taken[0] else {
        panic!("{taken:?}")
    };
    assert!(message.contains("listening"), "{message}");
    assert!(
        taken[0].to_json().starts_with(r#"{"event":"log","level":"info","#),
        "{}",
        taken[0].to_json()
    );
}

#[test]
fn stop_wakes_a_waiting_poller_and_later_polls_say_stopped() {
    let (server, _url) = polled_server(json!({}));
    let fd = server.event_fd().unwrap();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| readable(fd, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(100));
        server.stop().unwrap();
        assert!(waiter.join().unwrap(), "the waiting poller woke");
    });
    assert_eq!(server.poll_events(1).unwrap_err(), Error::Stopped);
    assert!(readable(fd, Duration::ZERO), "readable for good after stop");
}

#[test]
fn only_a_started_polled_handle_takes_events() {
    let callback = Server::new(Config::from_json(r#"{"listen":"127.0.0.1:0"}"#).unwrap()).unwrap();
    assert!(matches!(callback.event_fd(), Err(Error::InvalidArgument(m)) if m.contains("events.delivery")));
    assert!(matches!(callback.poll_events(1), Err(Error::InvalidArgument(_))));
    let polled =
        Server::new(Config::from_json(r#"{"listen":"127.0.0.1:0","events":{"delivery":"poll"}}"#).unwrap()).unwrap();
    assert!(polled.event_fd().is_ok(), "the fd exists before start");
    assert_eq!(polled.poll_events(1).unwrap_err(), Error::NotStarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_server_with_a_full_queue_counts_what_it_dropped() {
    let (server, url) = polled_server(json!({"events": {"delivery": "poll", "queue_capacity": 4}}));
    let mut bob = connect(&url, "bob").await;
    for n in 0..20 {
        assert_eq!(bob.send_to("alice", &format!("b{n}"), json!(n)).await["type"], "ack");
    }
    let taken = server.poll_events(100).unwrap();
    let dropped: u64 = taken
        .iter()
        .map(|e| {
            if let Event::Overflow { dropped } = e {
                *dropped
            } else {
                0
            }
        })
        .sum();
    assert!(dropped > 0, "{taken:?}");
    let delivered = taken.iter().filter(|e| !matches!(e, Event::Overflow { .. })).count() as u64;
    assert_eq!(
        delivered + dropped,
        20 + 1,
        "the messages and the connect event: {taken:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_client_loses_nothing_and_writes_its_cursor_only_behind_the_host() {
    let (server, url) = polled_server(json!({}));
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("alice.db").to_str().unwrap().to_owned();
    let client = polled_client(&url, "alice", &state, 4);
    client.start().unwrap();
    let mut bob = connect(&url, "bob").await;
    for n in 0..100 {
        assert_eq!(bob.send_to("alice", &format!("b{n}"), json!(n)).await["type"], "ack");
    }
    let state_path = state.clone();
    tokio::task::spawn_blocking(move || {
        let fd = client.event_fd().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seqs = Vec::new();
        let mut cursor = 0;
        while cursor < 100 {
            assert!(Instant::now() < deadline, "timed out at seqs {seqs:?}, cursor {cursor}");
            let handled = seqs.last().copied().unwrap_or(0);
            if readable(fd, Duration::from_millis(200)) {
                seqs.extend(message_seqs(&client.poll_events(3).unwrap()));
            }
            cursor = file_cursor(&state_path, "dm:alice:bob");
            assert!(
                cursor <= handled,
                "cursor {cursor} passed what the host handled ({handled})"
            );
            // A slow host: the queue of 4 fills and the client stops reading.
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>(), "every message once, in order");
        client.stop().unwrap();
    })
    .await
    .unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_client_hands_over_a_batch_and_records_its_cursor_on_the_next_poll() {
    let (server, url) = polled_server(json!({}));
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("alice.db").to_str().unwrap().to_owned();
    let client = polled_client(&url, "alice", &state, 1024);
    client.start().unwrap();
    let mut bob = connect(&url, "bob").await;
    for n in 0..20 {
        assert_eq!(bob.send_to("alice", &format!("b{n}"), json!(n)).await["type"], "ack");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state_path = state.clone();
    tokio::task::spawn_blocking(move || {
        let batch = client.poll_events(100).unwrap();
        assert_eq!(
            message_seqs(&batch),
            (1..=20).collect::<Vec<u64>>(),
            "one call: {batch:?}"
        );
        assert_eq!(file_cursor(&state_path, "dm:alice:bob"), 0, "not handled yet");
        assert!(client.poll_events(100).unwrap().is_empty());
        assert_eq!(
            file_cursor(&state_path, "dm:alice:bob"),
            20,
            "handled once the host came back"
        );
        client.stop().unwrap();
    })
    .await
    .unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_a_stop_can_be_taken_after_it() {
    let (server, url) = polled_server(json!({}));
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("alice.db").to_str().unwrap().to_owned();
    let client = polled_client(&url, "alice", &state, 64);
    client.start().unwrap();
    let bob = connect(&url, "bob").await;
    tokio::task::spawn_blocking(move || {
        let fd = server.event_fd().unwrap();
        poll_until(|| server.poll_events(16).unwrap(), fd, |t| t.len() >= 2);
        server.stop().unwrap();
        let mut after = Vec::new();
        loop {
            match server.poll_events(16) {
                Ok(events) => after.extend(events),
                Err(e) => {
                    assert_eq!(e, Error::Stopped);
                    break;
                }
            }
        }
        let closed: Vec<&str> = after
            .iter()
            .filter_map(|e| match e {
                Event::Disconnected { user, .. } => Some(&**user),
                _ => None,
            })
            .collect();
        assert!(closed.contains(&"alice") && closed.contains(&"bob"), "{after:?}");
        client.stop().unwrap();
        let stopped = client.poll_events(1000).unwrap();
        assert!(
            matches!(stopped.last(), Some(Event::State { state: "stopped", .. })),
            "{stopped:?}"
        );
        assert_eq!(client.poll_events(1).unwrap_err(), Error::Stopped);
        assert!(readable(client.event_fd().unwrap(), Duration::ZERO));
    })
    .await
    .unwrap();
    drop(bob);
}

/// Poll delivery, client role: a host that stops while its queue is full
/// still gets the "stopped" state after stop.
#[test]
fn a_polled_client_stopping_with_a_full_queue_still_reports_stopped() {
    let s = support::start(json!({}));
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("a.db").to_str().unwrap().to_owned();
    let config = json!({"url": s.url, "token": "alice", "state_path": state, "log_level": "off",
        "events": {"delivery": "poll", "queue_capacity": 4}});
    let alice = Client::new(ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    alice.start().unwrap();
    for i in 0..20 {
        s.server.send("bob", "alice", &format!("{i}"), None).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1000));
    let began = Instant::now();
    alice.stop().unwrap();
    let took = began.elapsed();
    let mut states = Vec::new();
    loop {
        match alice.poll_events(64) {
            Ok(events) => states.extend(events.into_iter().filter_map(|e| match e {
                Event::State { state, .. } => Some(state),
                _ => None,
            })),
            Err(Error::Stopped) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(states.last(), Some(&"stopped"), "states {states:?}; stop took {took:?}");
}
