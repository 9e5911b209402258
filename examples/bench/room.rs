//! The room scenario: `members` users join one group; the first `senders`
//! of them send to it, each with up to `window` unacked messages. Every
//! message reaches the other `members - 1` members. Reports deliveries per
//! second and the send→delivery latency, which the body carries: its `t` is
//! the send time in microseconds since the run's epoch. The latency of one
//! delivery in [`LATENCY_EVERY`] is recorded: reading each one's send time
//! and recording it was a tenth of the generator's core, which is what
//! limits the fastest servers here.

use std::fmt::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::closed_loop::{self, Role};
use crate::connect::connect_all;
use crate::frames::{Kind, id, kind, send_time};
use crate::phases::{Phases, Timing};
use crate::server::ServerArgs;
use crate::tally::Tally;
use crate::wire::{Connection, Frame};

/// The group every member joins.
const ROOM: &str = "room";

/// Each member records the latency of every this-many-th delivery (its
/// first, then every fourth), millions of samples in a run.
const LATENCY_EVERY: u64 = 4;

/// Options of the room scenario.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    timing: Timing,
    /// Members of the group, each one connection.
    #[arg(long, default_value_t = 500)]
    members: usize,
    /// How many of the members send: enough that each sends well under
    /// 1,000 frames a second, imbed's default limit per session.
    #[arg(long, default_value_t = 50)]
    senders: usize,
    /// Unacknowledged messages each sender keeps in flight.
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// Body size in bytes (at least 32, for the send time).
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
}

/// Runs the scenario and returns its JSON result line.
pub async fn run(o: Options) -> Value {
    assert!(
        o.senders >= 1 && o.senders <= o.members,
        "--senders must be 1 to --members"
    );
    let mut connections = connect_all(&o.server, o.members, |n| format!("m{n}")).await;
    for (n, connection) in connections.iter_mut().enumerate() {
        join(connection).await.unwrap_or_else(|e| panic!("member {n}: {e}"));
    }
    let phases = Phases::from_now(&o.timing);
    let epoch = phases.start;
    let tasks = connections
        .into_iter()
        .enumerate()
        .map(|(n, connection)| {
            let member = Member::new(epoch, o.body_bytes, phases);
            let window = if n < o.senders { o.window } else { 0 };
            tokio::spawn(closed_loop::run(connection, member, window, phases))
        })
        .collect();
    let usage = phases.meter(o.server.server_pid).await;
    let total = Tally::sum(tasks).await;
    let mut line = o.server.result(
        "room",
        json!({
            "members": o.members, "senders": o.senders, "window": o.window,
            "body_bytes": o.body_bytes, "seconds": o.timing.seconds,
        }),
    );
    total.report(&mut line, phases.seconds(), &[0.5, 0.99]);
    line.extend(usage);
    Value::Object(line)
}

/// Joins the room and waits for the `ok` (other frames, such as imbed's
/// `member` notices of earlier joins, are skipped).
async fn join(connection: &mut Connection) -> Result<(), String> {
    connection
        .writer
        .text(&format!(r#"{{"type":"join","id":"join","group":"{ROOM}"}}"#));
    connection.writer.flush().await.map_err(|_| "closed while joining")?;
    loop {
        connection.reader.fill().await.map_err(|_| "closed while joining")?;
        while let Some(frame) = connection.reader.next_frame() {
            match frame {
                Frame::Text(text) if kind(text) == Kind::Ok && id(text) == Some(b"join") => return Ok(()),
                Frame::Text(text) if kind(text) == Kind::Error => {
                    return Err(format!("join refused: {}", String::from_utf8_lossy(text)));
                }
                Frame::Close => return Err("closed while joining".into()),
                _ => {}
            }
        }
    }
}

/// A member: receives the room's messages and, if it sends, keeps its
/// window of sends to the room.
struct Member {
    epoch: Instant,
    padding: String,
    frame: String,
    next_id: u64,
    phases: Phases,
    tally: Tally,
}

impl Member {
    fn new(epoch: Instant, body_bytes: usize, phases: Phases) -> Member {
        // `{"t":` + up to 12 digits + `,"p":"` + padding + `"}`.
        let framing = 5 + 12 + 6 + 2;
        Member {
            epoch,
            padding: "x".repeat(body_bytes.saturating_sub(framing)),
            frame: String::new(),
            next_id: 0,
            phases,
            tally: Tally::new(),
        }
    }
}

impl Role for Member {
    fn next_send(&mut self, now: Instant) -> &str {
        let id = self.next_id;
        self.next_id += 1;
        let sent = (now - self.epoch).as_micros();
        self.frame.clear();
        let _ = write!(
            self.frame,
            r#"{{"type":"send","id":"{id}","group":"{ROOM}","body":{{"t":{sent},"p":"{}"}}}}"#,
            self.padding
        );
        &self.frame
    }

    fn on_frame(&mut self, text: &[u8], now: Instant) -> bool {
        let counts = self.phases.measures(now);
        match kind(text) {
            Kind::Msg if counts => {
                self.tally.deliveries += 1;
                if self.tally.deliveries % LATENCY_EVERY == 1
                    && let Some(sent) = send_time(text)
                {
                    self.tally.record(now - (self.epoch + Duration::from_micros(sent)));
                }
                false
            }
            Kind::Ack => {
                self.tally.acks += u64::from(counts);
                true
            }
            Kind::Error => {
                self.tally.error(text);
                false
            }
            _ => false,
        }
    }

    fn into_tally(self) -> Tally {
        self.tally
    }
}
