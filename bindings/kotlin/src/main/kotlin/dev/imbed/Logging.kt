package dev.imbed

/**
 * The level of a log record: `imbed_log_level`, most severe first.
 *
 * @property code The `imbed_log_level` value.
 */
public enum class LogLevel(public val code: Int) {
    /** Failures. */
    ERROR(1),

    /** Trouble the engine recovered from. */
    WARN(2),

    /** Lifecycle: listening, connecting, stopping. */
    INFO(3),

    /** Per-connection detail. */
    DEBUG(4),

    /** Per-frame detail. */
    TRACE(5),
    ;

    /** Looks up log levels. */
    public companion object {
        /**
         * The level whose code is [code]. Levels are ordered by detail, so a code past [TRACE]
         * (a finer level from a newer library) is taken as [TRACE].
         */
        public fun of(code: Int): LogLevel = entries.firstOrNull { it.code == code } ?: TRACE
    }
}

/**
 * Receives the engine's log records at or above the configured `log_level`. They never contain
 * tokens or message bodies.
 *
 * It runs on the engine's event thread, in order with the events: a slow logger delays the events
 * behind it (never the network), so it should hand records on rather than block.
 */
public fun interface ImbedLogger {
    /** Handles one record; [target] names the engine module that wrote it. */
    public fun log(level: LogLevel, target: String, message: String)
}
