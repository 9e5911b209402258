//! imbed's load generator: speaks protocol v1 to any server (imbed or a
//! peer), runs one scenario for a bounded time, and prints one JSON line.
//!
//! ```text
//! cargo run --release --example bench -- direct --url ws://127.0.0.1:8080/ws --senders 200 --seconds 10
//! cargo run --release --example bench -- sqlite-ceiling --path /tmp/ceiling.db --batch 200 --seconds 5
//! ```

mod ceiling;
mod direct;
mod frames;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generator for imbed and its peers")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Pairs of users send to each other, each keeping a window of unacked messages.
    Direct(direct::Options),
    /// A bare rusqlite loop inserting the rows imbed stores, in batches: the disk's ceiling.
    SqliteCeiling(ceiling::Options),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Direct(options) => direct::run(options),
        Scenario::SqliteCeiling(options) => ceiling::run(options),
    };
    println!("{result}");
}
