//! The idle scenario: `connections` authenticated connections that send
//! nothing. Reports the server's resident memory per connection (its RSS
//! with every connection open and settled, minus its RSS before the first),
//! and its CPU use while they sit idle.
//!
//! The generator holds one file descriptor per connection and the server
//! another, and a process here may hold 20,000: 10,000 connections fit.

use std::time::Instant;

use serde_json::{Value, json};

use crate::connect::{connect_all, stay_connected};
use crate::phases::{Phases, Timing};
use crate::server::ServerArgs;
use crate::usage::server_rss_kb;

/// Options of the idle scenario.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    server: ServerArgs,
    /// How long the connections sit idle (`--seconds`) after settling
    /// (`--warm-up`), before the server's memory is read.
    #[command(flatten)]
    timing: Timing,
    /// How many connections to open, each as its own user.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
}

/// Runs the scenario and returns its JSON result line.
pub async fn run(o: Options) -> Value {
    let pid = o
        .server
        .server_pid
        .expect("idle needs --server-pid to read the server's memory");
    let rss_before = server_rss_kb(Some(pid)).expect("the server's VmRSS");
    let opening = Instant::now();
    let connections = connect_all(&o.server, o.connections, |n| format!("idle{n}")).await;
    let connect_seconds = opening.elapsed().as_secs_f64();
    let readers: Vec<_> = connections
        .into_iter()
        .map(|c| tokio::spawn(stay_connected(c)))
        .collect();
    let usage = Phases::from_now(&o.timing).meter(Some(pid)).await;
    let closed_early = readers.iter().filter(|r| r.is_finished()).count();
    let rss_after = usage["server_rss_kb"].as_u64().expect("the server's VmRSS");
    let mut line = o.server.result(
        "idle",
        json!({"connections": o.connections, "source_addrs": o.server.source_addrs, "seconds": o.timing.seconds}),
    );
    line.insert(
        "connects_per_s".into(),
        json!((o.connections as f64 / connect_seconds).round()),
    );
    line.insert("rss_before_kb".into(), json!(rss_before));
    line.insert(
        "kb_per_connection".into(),
        json!(((rss_after as f64 - rss_before as f64) / o.connections as f64 * 100.0).round() / 100.0),
    );
    line.insert("closed_early".into(), json!(closed_early));
    line.extend(usage);
    Value::Object(line)
}
