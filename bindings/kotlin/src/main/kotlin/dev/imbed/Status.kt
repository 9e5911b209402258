package dev.imbed

/**
 * The result of a C call: `imbed_status`. Codes are taken as integers and looked up, never cast,
 * so a code this binding does not know (from a newer library) becomes [UNKNOWN] instead of a crash.
 *
 * @property code The `imbed_status` value.
 */
public enum class Status(public val code: Int) {
    /** Success. */
    OK(0),

    /** A required pointer argument was NULL. */
    NULL_ARGUMENT(1),

    /** A string argument is not valid UTF-8. */
    INVALID_UTF8(2),

    /** The configuration JSON is invalid; the message names the field. */
    INVALID_CONFIG(3),

    /** An argument is invalid (an id, a JSON body, a request frame). */
    INVALID_ARGUMENT(4),

    /** The handle is not live: it was closed. */
    INVALID_HANDLE(5),

    /** Already started. */
    ALREADY_STARTED(6),

    /** Not started yet. */
    NOT_STARTED(7),

    /** Stopped; it cannot be used again. */
    STOPPED(8),

    /** Not allowed from inside one of the handle's own callbacks (it would deadlock). */
    IN_CALLBACK(9),

    /** A socket or thread could not be set up, for example because the port is taken. */
    IO(10),

    /** The message store failed; nothing was acknowledged. */
    STORE(11),

    /** The engine panicked; the call had no effect that can be relied on. */
    PANIC(12),

    /** The thing named does not exist (a group, a pending push request). */
    NOT_FOUND(13),

    /** A client request needs a live connection (sends do not: they wait in the outbox). */
    NOT_CONNECTED(14),

    /** A code this binding does not know. */
    UNKNOWN(-1),
    ;

    /** The library's static description of this status (`imbed_status_str`). */
    public val description: String
        get() = ImbedNative.imbed_status_str(code).utf8()

    /** Looks up status codes. */
    public companion object {
        /** The status whose code is [code], or [UNKNOWN]. */
        public fun of(code: Int): Status = entries.firstOrNull { it.code == code && it != UNKNOWN } ?: UNKNOWN
    }
}

/**
 * A failed call.
 *
 * @property status What kind of failure it was.
 * @param message The library's explanation (`imbed_last_error`), such as which configuration field is wrong.
 */
public class ImbedException(public val status: Status, message: String) : Exception(message)
