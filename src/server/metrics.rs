//! The server's counters, exposed at `GET /metrics` in the OpenMetrics text
//! format that Prometheus scrapes.
//!
//! Counters and the histogram are updated where things happen; gauges are
//! read from the router when a scrape comes in, so they cost nothing between
//! scrapes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::router::cluster::ClusterCounters;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric the server exports.
pub(crate) struct Metrics {
    registry: Registry,
    /// Messages accepted and stored (`send` from clients and the host).
    pub(crate) messages_in: Counter,
    /// `msg` frames queued to sessions.
    pub(crate) messages_out: Counter,
    /// Sessions closed because their outbound queue overflowed (1013).
    pub(crate) slow_reader_closes: Counter,
    /// Host events dropped because the host's queue was full.
    pub(crate) events_dropped: Counter,
    /// Push requests the host reported as failed.
    pub(crate) pushes_failed: Counter,
    /// How long each store commit took, in seconds.
    pub(crate) store_commit_seconds: Histogram,
    /// What a node of a cluster counts (all zero for a single node).
    pub(crate) cluster: Arc<ClusterCounters>,
    store_errors: Counter,
    redis_errors: Counter,
    cluster_reconnects: Counter,
    backfills: Counter,
    backfilled_messages: Counter,
    connections: Gauge,
    users_online: Gauge,
    sockets: Gauge,
}

/// What the scrape reads live.
pub(crate) struct Live {
    /// Open authenticated sessions.
    pub(crate) connections: u64,
    /// Users with at least one session.
    pub(crate) users_online: u64,
    /// Accepted TCP connections, handshakes and plain HTTP included.
    pub(crate) sockets: u64,
    /// Store writes that failed since start (the store counts them).
    pub(crate) store_errors: u64,
}

impl Default for Metrics {
    /// Registers every metric under the `imbed` prefix.
    fn default() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("imbed"),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            slow_reader_closes: Counter::default(),
            events_dropped: Counter::default(),
            pushes_failed: Counter::default(),
            // 50 µs to about 3.3 s: an fsync on a fast SSD to a stalled disk.
            store_commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            cluster: Arc::default(),
            store_errors: Counter::default(),
            redis_errors: Counter::default(),
            cluster_reconnects: Counter::default(),
            backfills: Counter::default(),
            backfilled_messages: Counter::default(),
            connections: Gauge::default(),
            users_online: Gauge::default(),
            sockets: Gauge::default(),
        };
        let m = &mut metrics;
        m.registry
            .register("connections", "Open authenticated sessions", m.connections.clone());
        m.registry.register(
            "users_online",
            "Users with at least one session",
            m.users_online.clone(),
        );
        m.registry.register(
            "sockets",
            "Accepted TCP connections, handshakes included",
            m.sockets.clone(),
        );
        m.registry
            .register("messages_in", "Messages accepted and stored", m.messages_in.clone());
        m.registry
            .register("messages_out", "msg frames queued to sessions", m.messages_out.clone());
        m.registry.register(
            "slow_reader_closes",
            "Sessions closed because their outbound queue overflowed",
            m.slow_reader_closes.clone(),
        );
        m.registry.register(
            "host_events_dropped",
            "Host events dropped because the host's queue was full",
            m.events_dropped.clone(),
        );
        m.registry.register(
            "pushes_failed",
            "Push requests the host reported failed (push_done, not delivered)",
            m.pushes_failed.clone(),
        );
        m.registry.register(
            "store_commit_seconds",
            "Duration of each store commit (one batch of messages)",
            m.store_commit_seconds.clone(),
        );
        m.registry.register(
            "store_errors",
            "Store writes that failed (a database unreachable or refusing); none was acknowledged",
            m.store_errors.clone(),
        );
        m.registry.register(
            "redis_errors",
            "Redis commands or connections that failed (cluster.redis)",
            m.redis_errors.clone(),
        );
        m.registry.register(
            "cluster_reconnects",
            "Times this node subscribed to Redis again after its subscription failed or fell silent",
            m.cluster_reconnects.clone(),
        );
        m.registry.register(
            "backfills",
            "Gaps in a conversation read back from the store before its next message was delivered here",
            m.backfills.clone(),
        );
        m.registry.register(
            "backfilled_messages",
            "Messages delivered here from backfills",
            m.backfilled_messages.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// A callback for the store that records each commit's duration.
    pub(crate) fn commit_observer(&self) -> crate::store::CommitObserver {
        let histogram = self.store_commit_seconds.clone();
        Arc::new(move |took: Duration| histogram.observe(took.as_secs_f64()))
    }

    /// The text of a scrape, with the gauges set to `live`.
    pub(crate) fn render(&self, live: Live) -> String {
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.connections, live.connections);
        gauge(&self.users_online, live.users_online);
        gauge(&self.sockets, live.sockets);
        let catch_up = |counter: &Counter, total: u64| counter.inc_by(total.saturating_sub(counter.get()));
        catch_up(&self.store_errors, live.store_errors);
        let cluster = &self.cluster;
        catch_up(&self.redis_errors, cluster.redis_errors.load(Ordering::Relaxed));
        catch_up(&self.cluster_reconnects, cluster.reconnects.load(Ordering::Relaxed));
        catch_up(&self.backfills, cluster.backfills.load(Ordering::Relaxed));
        catch_up(&self.backfilled_messages, cluster.backfilled.load(Ordering::Relaxed));
        let mut text = String::with_capacity(4096);
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_names_every_metric_with_its_value() {
        let metrics = Metrics::default();
        metrics.messages_in.inc_by(3);
        (metrics.commit_observer())(Duration::from_millis(2));
        let text = metrics.render(Live {
            connections: 2,
            users_online: 1,
            sockets: 4,
            store_errors: 5,
        });
        for line in [
            "imbed_connections 2",
            "imbed_users_online 1",
            "imbed_sockets 4",
            "imbed_messages_in_total 3",
            "imbed_messages_out_total 0",
            "imbed_slow_reader_closes_total 0",
            "imbed_host_events_dropped_total 0",
            "imbed_pushes_failed_total 0",
            "imbed_store_commit_seconds_count 1",
            "imbed_store_errors_total 5",
            "imbed_store_commit_seconds_bucket{le=\"0.0032\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
