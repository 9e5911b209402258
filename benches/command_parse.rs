//! Parsing client commands: every frame a client sends goes through
//! `parse_client_frame` before its handler.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use imbed::internals::parses_as_client_frame;

fn parse(c: &mut Criterion) {
    let body = serde_json::to_string(&"x".repeat(64)).unwrap();
    let direct = format!(r#"{{"type":"send","id":"123456","to":"u16","body":{body}}}"#);
    let group = r#"{"type":"send","id":"123456","group":"room","body":{"t":1234567,"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#;
    let ping = r#"{"type":"ping","id":"p1"}"#;
    for (name, frame) in [
        ("send to a user", direct.as_str()),
        ("send to a group", group),
        ("ping", ping),
    ] {
        c.bench_function(&format!("parse {name}"), |b| {
            b.iter(|| parses_as_client_frame(black_box(frame)))
        });
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
