//! The latency scenario: `senders` users in pairs send to their partners at
//! a fixed total `rate`, whether or not earlier sends were acknowledged (open
//! loop). Send `k` has an intended time, `k / rate` seconds after the start,
//! and its latency counts from that time to its ack, so a server that stalls
//! is charged for the sends its stall delayed too (no coordinated omission).
//! Reports p50/p99/p99.9 of that latency; with `--of delivery`, of the
//! time from a send's intended time to its arrival at the partner instead
//! (across nodes, when the two URLs of a pair are two nodes of a cluster).
//!
//! One pacer sends for every connection, waking at most once per `tick`:
//! each wake-up of the pacer, and each send that wakes a sleeping server,
//! costs a few microseconds of system time, and at one of each per message
//! the generator would saturate its core before the server. Sends due
//! within a tick go out together, up to `tick` late; the latency counts
//! that lateness, the same for every server.

use std::fmt::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::connect::connect_all;
use crate::frames::{Kind, kind, numeric_id};
use crate::phases::{Phases, Timing};
use crate::server::ServerArgs;
use crate::tally::{Closed, Tally};
use crate::timer::Timer;
use crate::wire::{Frame, Reader, Writer};

/// Options of the latency scenario.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    timing: Timing,
    /// Messages per second offered, over all senders.
    #[arg(long)]
    rate: f64,
    /// Concurrent sending connections (even).
    #[arg(long, default_value_t = 200)]
    senders: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// The pacer sleeps at least this long between wake-ups, in
    /// microseconds; sends due meanwhile go out together.
    #[arg(long, default_value_t = 100)]
    tick_us: u64,
    /// What the latency is of: `ack` (send to its ack) or `delivery` (send
    /// to the partner's `msg`).
    #[arg(long, default_value = "ack", value_parser = ["ack", "delivery"])]
    of: String,
    /// After the run, how long to wait for the acks of the last sends;
    /// sends still unacknowledged then count with the latency they reached.
    #[arg(long, default_value_t = 2)]
    drain_seconds: u64,
}

/// Runs the scenario and returns its JSON result line.
pub async fn run(o: Options) -> Value {
    assert!(o.senders >= 2 && o.senders.is_multiple_of(2), "--senders must be even");
    assert!(o.rate > 0.0, "--rate must be positive");
    let connections = connect_all(&o.server, o.senders, |n| format!("u{n}")).await;
    let phases = Phases::from_now(&o.timing);
    let schedule = Schedule {
        start: phases.start,
        gap: Duration::from_secs_f64(1.0 / o.rate),
        senders: o.senders as u64,
        // Every send due before the end of the measured interval.
        count: ((phases.end - phases.start).as_secs_f64() * o.rate).ceil() as u64,
    };
    let drain_until = phases.end + Duration::from_secs(o.drain_seconds);
    let (readers, writers): (Vec<_>, Vec<_>) = connections.into_iter().map(|c| (c.reader, c.writer)).unzip();
    let readers = readers
        .into_iter()
        .enumerate()
        .map(|(n, reader)| {
            let deliveries = o.of == "delivery";
            tokio::spawn(read_acks(reader, n as u64, schedule, phases, drain_until, deliveries))
        })
        .collect();
    let body = json!("x".repeat(o.body_bytes)).to_string();
    let pacer = tokio::spawn(pace(writers, schedule, body, Duration::from_micros(o.tick_us)));
    let usage = phases.meter(o.server.server_pid).await;
    // The writers stay open until every reader is done: a writer dropped
    // when the pacer ends would close its connection before the last acks
    // (a durable server's come a commit later) could arrive.
    let (failed, writers) = pacer.await.expect("the pacer panicked");
    let mut total = Tally::sum(readers).await;
    drop(writers);
    total.closed_early += failed;
    let mut line = o.server.result(
        "latency",
        json!({
            "rate": o.rate, "senders": o.senders, "body_bytes": o.body_bytes,
            "tick_us": o.tick_us, "seconds": o.timing.seconds, "latency_of": o.of,
        }),
    );
    line.insert("offered_per_s".into(), json!(o.rate));
    total.report(&mut line, phases.seconds(), &[0.5, 0.99, 0.999]);
    line.extend(usage);
    Value::Object(line)
}

/// Which send goes when, and where: send `k` of `count` is due `k * gap`
/// after `start`, from connection `k % senders`.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    gap: Duration,
    senders: u64,
    count: u64,
}

impl Schedule {
    fn due(&self, k: u64) -> Instant {
        self.start + self.gap.mul_f64(k as f64)
    }

    /// How many sends connection `n` makes in the whole run.
    fn sends_of(&self, n: u64) -> u64 {
        self.count / self.senders + u64::from(n < self.count % self.senders)
    }
}

/// Sends every send at its due time (or up to `tick` later) until the end;
/// returns how many connections failed, and the writers, still open.
async fn pace(mut writers: Vec<Writer>, schedule: Schedule, body: String, tick: Duration) -> (u64, Vec<Writer>) {
    let mut timer = Timer::new().expect("a timerfd");
    let mut failed = vec![false; writers.len()];
    let mut frame = String::new();
    let mut k = 0;
    while k < schedule.count {
        let now = Instant::now();
        while k < schedule.count && schedule.due(k) <= now {
            let n = (k % schedule.senders) as usize;
            frame.clear();
            let _ = write!(frame, r#"{{"type":"send","id":"{k}","to":"u{}","body":{body}}}"#, n ^ 1);
            writers[n].text(&frame);
            k += 1;
        }
        for (writer, failed) in writers.iter_mut().zip(&mut failed) {
            if writer.has_queued() && !*failed {
                *failed = writer.flush().await.is_err();
            }
        }
        if k < schedule.count {
            let wake = schedule.due(k).max(now + tick);
            timer.sleep_until(wake).await.expect("the timerfd");
        }
    }
    (failed.iter().filter(|&&f| f).count() as u64, writers)
}

/// Reads connection `n` until every one of its sends is acknowledged or
/// `drain_until` passes, timing each ack from its send's due time. Pings go
/// unanswered (the pacer owns the writing half): the servers close only
/// silent connections, and these send all the time. With `deliveries`, the
/// latencies recorded are those of the partner's messages arriving here
/// (their id is their send's number), not of the acks.
async fn read_acks(
    mut reader: Reader,
    n: u64,
    schedule: Schedule,
    phases: Phases,
    drain_until: Instant,
    deliveries: bool,
) -> Tally {
    let mut tally = Tally::new();
    let mut acked = vec![false; schedule.sends_of(n) as usize];
    let mut unacked = acked.len();
    let reading = async {
        while unacked > 0 {
            reader.fill().await?;
            let now = Instant::now();
            while let Some(frame) = reader.next_frame() {
                let text = match frame {
                    Frame::Text(text) => text,
                    Frame::Close => return Err(Closed),
                    Frame::Unexpected => {
                        tally.errors += 1;
                        continue;
                    }
                    Frame::Ping(_) | Frame::Other => continue,
                };
                match kind(text) {
                    Kind::Ack => {
                        let Some(k) = numeric_id(text) else {
                            continue;
                        };
                        let Some(seen) = acked.get_mut((k / schedule.senders) as usize) else {
                            continue;
                        };
                        if k % schedule.senders != n || std::mem::replace(seen, true) {
                            continue;
                        }
                        unacked -= 1;
                        let due = schedule.due(k);
                        if phases.measures(due) {
                            tally.acks += 1;
                            if !deliveries {
                                tally.record(now - due);
                            }
                        }
                    }
                    Kind::Msg => {
                        tally.deliveries += u64::from(phases.measures(now));
                        if deliveries && let Some(k) = numeric_id(text) {
                            let due = schedule.due(k);
                            if phases.measures(due) {
                                tally.record(now - due);
                            }
                        }
                    }
                    Kind::Error => tally.error(text),
                    _ => {}
                }
            }
        }
        Ok(())
    };
    if let Ok(Err(Closed)) = tokio::time::timeout_at(drain_until.into(), reading).await {
        tally.closed_early += 1;
    }
    // Sends never acknowledged count with the latency they had reached, so
    // that a stalled server shows in the tail.
    for (i, _) in acked.iter().enumerate().filter(|(_, seen)| !**seen && !deliveries) {
        let due = schedule.due(i as u64 * schedule.senders + n);
        if phases.measures(due) {
            tally.record(drain_until - due);
        }
    }
    tally
}
