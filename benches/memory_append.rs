//! The in-memory store's append, the direct row's largest cost of its own:
//! 400 senders in 200 direct conversations, once the store holds as much as
//! its default bounds allow (256 MiB of messages, 500,000 idempotency keys),
//! where every append also drops the oldest message and key, as in a
//! saturating run after its first seconds.

use criterion::{Criterion, criterion_group, criterion_main};
use imbed::internals::MemoryAppends;

fn memory_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("in-memory append");
    let mut full = MemoryAppends::new(400);
    // About 800,000 messages of a 64-byte body fill the default 256 MiB.
    for _ in 0..1_200_000 {
        full.append();
    }
    group.bench_function("at its bounds", |b| b.iter(|| assert!(full.append())));
    group.finish();
}

criterion_group!(benches, memory_append);
criterion_main!(benches);
