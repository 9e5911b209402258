import CImbed

/// The level of a log record: `imbed_log_level`, most severe first, so
/// `.error < .trace`.
public enum LogLevel: Sendable, Hashable, Comparable {
    /// Failures.
    case error
    /// Trouble the engine recovered from.
    case warn
    /// Lifecycle: listening, connecting, stopping.
    case info
    /// Per-connection detail.
    case debug
    /// Per-frame detail.
    case trace

    /// The level of a C log level. Levels are ordered by detail, so a value
    /// past `IMBED_LOG_TRACE` (a finer level from a newer library) is taken as
    /// `.trace`.
    init(_ level: imbed_log_level) {
        switch level {
        case IMBED_LOG_ERROR: self = .error
        case IMBED_LOG_WARN: self = .warn
        case IMBED_LOG_INFO: self = .info
        case IMBED_LOG_DEBUG: self = .debug
        default: self = .trace
        }
    }
}

/// Receives the engine's log records at or above the configured `log_level`,
/// with the engine module that wrote each (`target`). They never contain
/// tokens or message bodies.
///
/// It runs on the engine's event thread, in order with the events: a slow
/// logger delays the events behind it (never the network), so it should hand
/// records on rather than block.
public typealias ImbedLogger = @Sendable (_ level: LogLevel, _ target: String, _ message: String) -> Void
