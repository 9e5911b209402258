//! The direct scenario: `senders` users in pairs (0↔1, 2↔3, …), each sending
//! to its partner with up to `window` unacked messages, for a fixed time.
//! Reports acknowledged messages per second, deliveries per second, and the
//! send→ack latency.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::frames::{is_type, string_field};

/// Options of the direct scenario.
#[derive(clap::Args)]
pub struct Options {
    /// The server's WebSocket URL (dev auth by `?token=`).
    #[arg(long)]
    url: String,
    /// Concurrent sending connections (even).
    #[arg(long, default_value_t = 200)]
    senders: usize,
    /// Unacknowledged messages each sender keeps in flight.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// How long to measure, after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// A label for the result line (the server's name).
    #[arg(long, default_value = "server")]
    label: String,
}

struct Tally {
    acks: u64,
    deliveries: u64,
    latency_us: Histogram<u64>,
}

/// Runs the scenario and returns its JSON result line.
pub fn run(options: Options) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure(options))
}

async fn measure(o: Options) -> serde_json::Value {
    let warm_up = Duration::from_secs(1);
    let start = Instant::now() + Duration::from_millis(500);
    let measure_from = start + warm_up;
    let end = measure_from + Duration::from_secs(o.seconds);
    let body = json!("x".repeat(o.body_bytes)).to_string();
    let tasks: Vec<_> = (0..o.senders)
        .map(|i| {
            let partner = i ^ 1;
            let (url, body, window) = (o.url.clone(), body.clone(), o.window);
            tokio::spawn(async move { sender(url, i, partner, body, window, start, measure_from, end).await })
        })
        .collect();
    let mut total = Tally {
        acks: 0,
        deliveries: 0,
        latency_us: Histogram::new(3).unwrap(),
    };
    for task in tasks {
        let tally = task.await.expect("sender task panicked");
        total.acks += tally.acks;
        total.deliveries += tally.deliveries;
        total.latency_us.add(&tally.latency_us).unwrap();
    }
    let seconds = o.seconds as f64;
    json!({
        "scenario": "direct", "server": o.label, "senders": o.senders, "window": o.window,
        "messages_per_s": (total.acks as f64 / seconds).round(),
        "deliveries_per_s": (total.deliveries as f64 / seconds).round(),
        "latency_ms": {
            "p50": total.latency_us.value_at_quantile(0.50) as f64 / 1000.0,
            "p99": total.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        },
    })
}

#[allow(clippy::too_many_arguments)]
async fn sender(
    url: String,
    me: usize,
    partner: usize,
    body: String,
    window: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?token=u{me}"))
        .await
        .expect("connect");
    let (mut sink, mut stream) = ws.split();
    tokio::time::sleep_until(start.into()).await;
    let mut tally = Tally {
        acks: 0,
        deliveries: 0,
        latency_us: Histogram::new(3).unwrap(),
    };
    let mut in_flight: std::collections::VecDeque<(u64, Instant)> = Default::default();
    let mut next_id = 0u64;
    let send = |id: u64| {
        Message::text(format!(
            r#"{{"type":"send","id":"{me}-{id}","to":"u{partner}","body":{body}}}"#
        ))
    };
    for _ in 0..window {
        sink.feed(send(next_id)).await.expect("send");
        in_flight.push_back((next_id, Instant::now()));
        next_id += 1;
    }
    sink.flush().await.expect("flush");
    while Instant::now() < end {
        let Ok(Some(Ok(Message::Text(frame)))) = tokio::time::timeout_at(end.into(), stream.next()).await else {
            break;
        };
        let now = Instant::now();
        if is_type(&frame, "msg") {
            tally.deliveries += u64::from(now >= measure_from);
        } else if is_type(&frame, "ack") {
            let acked = string_field(&frame, "id")
                .and_then(|id| id.split_once('-'))
                .and_then(|(_, n)| n.parse().ok());
            if let Some(position) = acked.and_then(|id: u64| in_flight.iter().position(|(n, _)| *n == id)) {
                let (_, sent_at) = in_flight.remove(position).expect("present");
                if now >= measure_from {
                    tally.acks += 1;
                    let _ = tally.latency_us.record((now - sent_at).as_micros() as u64);
                }
            }
            sink.send(send(next_id)).await.expect("send");
            in_flight.push_back((next_id, Instant::now()));
            next_id += 1;
        }
    }
    tally
}
