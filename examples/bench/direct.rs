//! The direct scenario: `senders` users in pairs (0↔1, 2↔3, …), each sending
//! to its partner with up to `window` unacked messages, for a fixed time.
//! Reports acknowledged messages per second, deliveries per second, and the
//! send→ack latency. Against imbed with `--db FILE`, this is the durable
//! scenario.

use std::collections::VecDeque;
use std::fmt::Write;
use std::time::Instant;

use serde_json::{Value, json};

use crate::closed_loop::{self, Role};
use crate::connect::connect_all;
use crate::frames::{Kind, kind, numeric_id};
use crate::phases::{Phases, Timing};
use crate::server::ServerArgs;
use crate::tally::Tally;

/// Options of the direct scenario.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    timing: Timing,
    /// Concurrent sending connections (even). Enough that each sends well
    /// under 1,000 frames a second, imbed's default limit per session, at
    /// the rates measured here.
    #[arg(long, default_value_t = 400)]
    senders: usize,
    /// Unacknowledged messages each sender keeps in flight.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// The scenario's name in the result line (`durable` for a run against
    /// a server that stores to disk).
    #[arg(long, default_value = "direct")]
    scenario: String,
}

/// Runs the scenario and returns its JSON result line.
pub async fn run(o: Options) -> Value {
    assert!(o.senders >= 2 && o.senders.is_multiple_of(2), "--senders must be even");
    let connections = connect_all(&o.server, o.senders, |n| format!("u{n}")).await;
    let phases = Phases::from_now(&o.timing);
    let body = json!("x".repeat(o.body_bytes)).to_string();
    let tasks = connections
        .into_iter()
        .enumerate()
        .map(|(n, connection)| {
            let member = PairMember::new(&format!("u{}", n ^ 1), &body, phases);
            tokio::spawn(closed_loop::run(connection, member, o.window, phases))
        })
        .collect();
    let usage = phases.meter(o.server.server_pid).await;
    let total = Tally::sum(tasks).await;
    let mut line = o.server.result(
        &o.scenario,
        json!({"senders": o.senders, "window": o.window, "body_bytes": o.body_bytes, "seconds": o.timing.seconds}),
    );
    total.report(&mut line, phases.seconds(), &[0.5, 0.99]);
    line.extend(usage);
    Value::Object(line)
}

/// One sender: numbered sends to its partner, acks matched to their sends.
struct PairMember {
    /// The send frame after its id: `","to":…,"body":…}`.
    after_id: String,
    frame: String,
    next_id: u64,
    in_flight: VecDeque<(u64, Instant)>,
    phases: Phases,
    tally: Tally,
}

impl PairMember {
    fn new(to: &str, body: &str, phases: Phases) -> PairMember {
        PairMember {
            after_id: format!(r#"","to":"{to}","body":{body}}}"#),
            frame: String::new(),
            next_id: 0,
            in_flight: VecDeque::new(),
            phases,
            tally: Tally::new(),
        }
    }
}

impl Role for PairMember {
    fn next_send(&mut self, now: Instant) -> &str {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push_back((id, now));
        self.frame.clear();
        let _ = write!(self.frame, r#"{{"type":"send","id":"{id}{}"#, self.after_id);
        &self.frame
    }

    fn on_frame(&mut self, text: &[u8], now: Instant) -> bool {
        let counts = self.phases.measures(now);
        match kind(text) {
            Kind::Ack => {}
            Kind::Msg => {
                self.tally.deliveries += u64::from(counts);
                return false;
            }
            Kind::Error => {
                self.tally.error(text);
                return false;
            }
            _ => return false,
        }
        let Some(position) = numeric_id(text).and_then(|id| self.in_flight.iter().position(|(n, _)| *n == id)) else {
            return false;
        };
        let (_, sent_at) = self.in_flight.remove(position).expect("present");
        if counts {
            self.tally.acks += 1;
            self.tally.record(now - sent_at);
        }
        true
    }

    fn into_tally(self) -> Tally {
        self.tally
    }
}
