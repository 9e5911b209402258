//! Fan-out: queueing one shared frame to the sessions of every member of a
//! group through the router, as a group message does. Only the queueing is
//! timed; the queues are emptied between iterations, as writers would.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use imbed::internals::Room;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The members of a group, each online with one session.
fn fanout(c: &mut Criterion) {
    let frame = Utf8Bytes::from(format!(
        r#"{{"type":"msg","conv":"g:room","seq":1,"from":"m0","group":"room","id":"1","body":"{}","ts":1}}"#,
        "x".repeat(64)
    ));
    let mut group = c.benchmark_group("fan-out to a group");
    for members in [10, 100, 1000] {
        let mut room = Room::new(members);
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter_custom(|iterations| {
                let mut queueing = Duration::ZERO;
                for seq in 0..iterations {
                    let started = Instant::now();
                    room.deliver(&frame, seq);
                    queueing += started.elapsed();
                    room.write_all();
                }
                queueing
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
