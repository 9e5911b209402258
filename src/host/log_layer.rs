//! Forwards the engine's `tracing` records to the host's log callback.
//!
//! Each server has its own subscriber (installed on its runtime's threads), so
//! two servers in one process log to their own hosts. Records are formatted
//! here and queued to the dispatcher; the engine never logs tokens or message
//! bodies, so nothing secret can reach the host this way.

use std::fmt::Write as _;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use super::LogLevel;
use super::dispatcher::EventQueue;

/// A `tracing` dispatch that sends records at or above `level` to `queue`.
pub(crate) fn dispatch_for(queue: Arc<EventQueue>, level: LogLevel) -> tracing::Dispatch {
    let filter = match level {
        LogLevel::Off => LevelFilter::OFF,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let subscriber = tracing_subscriber::registry().with(HostLogLayer { queue }.with_filter(filter));
    tracing::Dispatch::new(subscriber)
}

struct HostLogLayer {
    queue: Arc<EventQueue>,
}

impl<S: Subscriber> Layer<S> for HostLogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        };
        let mut text = MessageText::default();
        event.record(&mut text);
        self.queue.post_log(level, meta.target().to_owned(), text.0);
    }
}

/// `message` first, then `key=value` for every other field.
#[derive(Default)]
struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}
