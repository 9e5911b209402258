//! Fan-out: queueing one shared frame to the sessions of every member of a
//! group through the router, as a group message does. Only the queueing is
//! timed; the queues are emptied between iterations, as writers would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use imbed::router::{LocalRouter, Outbox, Router, SessionHandle};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The members of a group, each online with one session.
struct Room {
    router: LocalRouter,
    members: Vec<Arc<str>>,
    online: Vec<Arc<SessionHandle>>,
}

impl Room {
    fn new(members: usize) -> Room {
        let mut room = Room {
            router: LocalRouter::new(),
            members: Vec::new(),
            online: Vec::new(),
        };
        for n in 0..members {
            let user: Arc<str> = Arc::from(format!("m{n}"));
            let outbox = Outbox::new(1 << 20);
            let session = Arc::new(SessionHandle {
                id: n as u64,
                name: Arc::from(format!("s-{n}")),
                user: user.clone(),
                outbox,
            });
            room.router.attach(session.clone());
            room.members.push(user);
            room.online.push(session);
        }
        room
    }

    /// Queues `frame` to every member but the sender (session 0).
    fn deliver(&self, frame: &Utf8Bytes, seq: u64) {
        for member in &self.members {
            self.router.deliver(member, frame, Some(("g:room", seq)), Some(0));
        }
    }

    /// Empties every queue, as the sessions' writers would.
    fn write_all(&mut self) {
        for session in &self.online {
            let bytes = session.outbox.take_ready().iter().map(|frame| frame.len()).sum();
            session.outbox.written(bytes);
        }
    }
}

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
