//! Encoding the frames every message produces: its `msg` frame, encoded once
//! per message and shared by every recipient, and the sender's `ack`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use imbed::internals::{ack_frame, msg_frame};
use imbed::{MessageKind, MessageState, NewMessage, StoredMessage};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A direct message as the load generator sends it: a 64-byte string body.
fn stored_message() -> StoredMessage {
    let body = serde_json::to_string(&"x".repeat(64)).unwrap();
    StoredMessage {
        message: NewMessage {
            conv: "dm:u17:u16".into(),
            from: Arc::from("u17"),
            to: Some("u16".into()),
            group: None,
            client_id: "123456".into(),
            body: RawValue::from_string(body).unwrap(),
            ts: 1_700_000_000_123,
            kind: MessageKind::Message,
            target: None,
            files: Vec::new(),
            by_host: false,
        },
        seq: 48_211,
        state: MessageState::default(),
    }
}

fn encode(c: &mut Criterion) {
    let stored = stored_message();
    c.bench_function("msg frame (64-byte body)", |b| {
        b.iter(|| Utf8Bytes::from(msg_frame(black_box(&stored))))
    });
    c.bench_function("ack frame", |b| {
        b.iter(|| {
            ack_frame(
                black_box("123456"),
                black_box("dm:u17:u16"),
                black_box(48_211),
                black_box(1_700_000_000_123),
            )
        })
    });
}

criterion_group!(benches, encode);
criterion_main!(benches);
