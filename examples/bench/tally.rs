//! What one connection counted during the measured interval, added up over
//! all connections at the end of a run.

use std::cell::RefCell;

use hdrhistogram::Histogram;

use crate::histogram;

thread_local! {
    /// Every latency the connections recorded. One histogram for all of
    /// them (the generator runs on one thread): with one per connection,
    /// each record was a cache miss in one of hundreds of large arrays,
    /// 36% of the generator's time in the room scenario.
    static LATENCY_US: RefCell<Option<Histogram<u64>>> = const { RefCell::new(None) };
}

/// Counts and latencies of one connection, or of all of them.
pub struct Tally {
    /// Acks of this connection's sends.
    pub acks: u64,
    /// `msg` frames received.
    pub deliveries: u64,
    /// `error` frames and frames the servers never send: any is a failed run.
    pub errors: u64,
    /// The first error frame, to tell what went wrong.
    pub first_error: Option<String>,
    /// Connections the server closed before the run ended (slow-reader
    /// drops, crashes).
    pub closed_early: u64,
    /// The scenario's latency, in microseconds: empty in a connection's
    /// tally (its latencies go to the thread's histogram), every
    /// connection's in the sum.
    pub latency_us: Option<Histogram<u64>>,
}

impl Tally {
    /// Nothing counted yet.
    pub fn new() -> Tally {
        Tally {
            acks: 0,
            deliveries: 0,
            errors: 0,
            first_error: None,
            closed_early: 0,
            latency_us: None,
        }
    }

    /// Adds `other` to this tally.
    pub fn add(&mut self, other: &Tally) {
        self.acks += other.acks;
        self.deliveries += other.deliveries;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.closed_early += other.closed_early;
    }

    /// Counts an error frame, keeping the first.
    pub fn error(&mut self, frame: &[u8]) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(String::from_utf8_lossy(frame).into_owned());
        }
    }

    /// The counts every closed-loop result line reports: acknowledged
    /// messages and deliveries per second over `seconds`, the latency, and
    /// what went wrong.
    pub fn report(&self, line: &mut serde_json::Map<String, serde_json::Value>, seconds: f64, quantiles: &[f64]) {
        use serde_json::json;
        line.insert("messages_per_s".into(), json!((self.acks as f64 / seconds).round()));
        line.insert(
            "deliveries_per_s".into(),
            json!((self.deliveries as f64 / seconds).round()),
        );
        let latency_us = self.latency_us.clone().unwrap_or_else(histogram::histogram);
        line.insert("latency_ms".into(), histogram::summary(&latency_us, quantiles));
        line.insert("errors".into(), json!(self.errors));
        if let Some(error) = &self.first_error {
            line.insert("first_error".into(), json!(error));
        }
        line.insert("closed_early".into(), json!(self.closed_early));
    }

    /// Records a latency, clamped to the histogram's range.
    pub fn record(&mut self, latency: std::time::Duration) {
        LATENCY_US.with_borrow_mut(|recorded| {
            (recorded.get_or_insert_with(histogram::histogram)).saturating_record(latency.as_micros() as u64)
        });
    }

    /// Awaits every task and adds up their tallies, with every latency
    /// recorded on this thread since the last sum.
    pub async fn sum(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
        let mut total = Tally::new();
        for task in tasks {
            total.add(&task.await.expect("a connection task panicked"));
        }
        total.latency_us = LATENCY_US.take();
        total
    }
}

/// The server closed a connection before the run ended, or writing to it
/// failed: the connection's task stops and counts it in `closed_early`.
#[derive(Debug)]
pub struct Closed;
