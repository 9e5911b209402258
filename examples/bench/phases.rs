//! The time line of a measured run: a warm-up, then the measured interval.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::usage::Meter;

/// Command-line options for how long a run lasts.
#[derive(clap::Args, Clone)]
pub struct Timing {
    /// How long to measure, in seconds, after the warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Load before the measured interval, in seconds, not counted.
    #[arg(long, default_value_t = 1)]
    pub warm_up: u64,
}

/// When load starts, when measuring starts, and when both end.
#[derive(Clone, Copy)]
pub struct Phases {
    /// Load starts (every connection is open by then).
    pub start: Instant,
    /// Results count from here.
    pub measure_from: Instant,
    /// Load and measuring stop.
    pub end: Instant,
}

impl Phases {
    /// Phases starting shortly from now, once every task is ready to go.
    pub fn from_now(timing: &Timing) -> Phases {
        let start = Instant::now() + Duration::from_millis(100);
        let measure_from = start + Duration::from_secs(timing.warm_up);
        Phases {
            start,
            measure_from,
            end: measure_from + Duration::from_secs(timing.seconds),
        }
    }

    /// Whether something that happened at `t` counts.
    pub fn measures(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }

    /// The measured interval's length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.end - self.measure_from).as_secs_f64()
    }

    /// Waits out the run, and returns the CPU and memory use of the server
    /// (and of the generator) over the measured interval.
    pub async fn meter(&self, server_pid: Option<u32>) -> Map<String, Value> {
        tokio::time::sleep_until(self.measure_from.into()).await;
        let meter = Meter::start(server_pid);
        tokio::time::sleep_until(self.end.into()).await;
        meter.finish()
    }
}
