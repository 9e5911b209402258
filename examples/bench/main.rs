//! imbed's load generator: speaks protocol v1 to any server (imbed or a
//! peer), runs one scenario for a bounded time, and prints one JSON line
//! with the server's CPU and memory use beside the results.
//!
//! ```text
//! cargo run --release --example bench -- direct --url ws://127.0.0.1:8080/ws --server-pid 1234
//! cargo run --release --example bench -- idle --url ws://127.0.0.1:8080/ws --server-pid 1234 --connections 10000
//! cargo run --release --example bench -- room --url ws://127.0.0.1:8080/ws --members 100 --senders 10
//! cargo run --release --example bench -- latency --url ws://127.0.0.1:8080/ws --rate 50000
//! cargo run --release --example bench -- sqlite-ceiling --path /tmp/ceiling.db --batch 200 --seconds 5
//! cargo run --release --example bench -- fill --path /tmp/stored.db --messages 1000000
//! ```
//!
//! Everything runs on one thread, so that pinned to one core (`taskset`) the
//! generator cannot take CPU from a server pinned to another.

mod ceiling;
mod closed_loop;
mod connect;
mod direct;
mod fill;
mod frames;
mod histogram;
mod idle;
mod latency;
mod phases;
mod room;
mod server;
mod tally;
mod timer;
mod usage;
mod wire;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generator for imbed and its peers")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Many authenticated connections doing nothing: the server's memory per connection.
    Idle(idle::Options),
    /// Pairs of users send to each other, each keeping a window of unacked messages.
    Direct(direct::Options),
    /// Members of one group, a few of whom send: fan-out deliveries per second.
    Room(room::Options),
    /// Pairs sending at a fixed total rate (open loop): latency at a given load.
    Latency(latency::Options),
    /// A bare rusqlite loop inserting the rows imbed stores, in batches: the disk's ceiling.
    SqliteCeiling(ceiling::Options),
    /// Adds stored messages to a SQLite file in imbed's schema, for the durable scenario at scale.
    Fill(fill::Options),
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut result = match cli.scenario {
        Scenario::Idle(options) => runtime.block_on(idle::run(options)),
        Scenario::Direct(options) => runtime.block_on(direct::run(options)),
        Scenario::Room(options) => runtime.block_on(room::run(options)),
        Scenario::Latency(options) => runtime.block_on(latency::run(options)),
        Scenario::SqliteCeiling(options) => ceiling::run(options),
        Scenario::Fill(options) => fill::run(options),
    };
    // The command line, so every number in a report can say where it came from.
    let command: Vec<String> = std::env::args().skip(1).collect();
    result["command"] = format!("bench {}", command.join(" ")).into();
    println!("{result}");
}
