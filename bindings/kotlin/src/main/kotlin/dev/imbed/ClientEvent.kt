package dev.imbed

import kotlinx.serialization.json.intOrNull
import kotlinx.serialization.json.jsonPrimitive

/** Where an [ImbedClient]'s connection stands. */
public enum class ConnectionState {
    /** Connecting, or waiting for the next attempt. */
    CONNECTING,

    /** Connected and authenticated; the outbox is re-sent and the sync runs. */
    CONNECTED,

    /** The connection was lost; the client will reconnect. */
    DISCONNECTED,

    /** Closed on purpose by [Hint.BACKGROUND] until [Hint.FOREGROUND]. */
    PAUSED,

    /** The client was stopped. */
    STOPPED,

    /** A state this binding does not know (from a newer library). */
    UNKNOWN,
    ;

    internal companion object {
        /** The state the engine names [name] (`"connecting"`), or [UNKNOWN]. */
        fun of(name: String): ConnectionState = entries.firstOrNull { it.name.equals(name, ignoreCase = true) } ?: UNKNOWN
    }
}

/**
 * Something that happened in an [ImbedClient], in the engine's order. Each event carries the
 * engine's whole event object as [json] next to the fields taken out of it.
 */
public sealed class ClientEvent {
    /** The whole event as one JSON object, such as `{"event":"ack","id":"c-1","conv":"dm:alice:bob","seq":17,"ts":1700000000123}`. */
    public abstract val json: String

    /**
     * The connection changed [state]. [reason] says why when there is a why (a lost connection),
     * [attempt] counts the attempts while reconnecting, and [server] is the URL being connected to
     * or connected to (on [ConnectionState.CONNECTING] and [ConnectionState.CONNECTED]), one of the
     * configuration's `url` and `urls`.
     */
    public data class State(
        public val state: ConnectionState,
        public val reason: String?,
        public val attempt: Int?,
        public val server: String?,
        override val json: String,
    ) : ClientEvent()

    /**
     * A message: [seq] in the conversation [conv], sent by [from]. Each `(conv, seq)` comes exactly
     * once, in seq order per conversation, whether pushed live or caught up by sync.
     *
     * @property messageJson The protocol `msg` frame.
     */
    public data class Message(
        public val from: String,
        public val conv: String,
        public val seq: Long,
        public val messageJson: String,
        override val json: String,
    ) : ClientEvent()

    /** The send whose client id is [id] was stored by the server as [seq] of [conv] at [ts] (ms since the epoch). */
    public data class Ack(
        public val id: String,
        public val conv: String,
        public val seq: Long,
        public val ts: Long,
        override val json: String,
    ) : ClientEvent()

    /** The server refused the send [id] for good (error [code], such as `forbidden`); it left the outbox. */
    public data class SendFailed(
        public val id: String,
        public val code: String,
        public val message: String,
        override val json: String,
    ) : ClientEvent()

    /**
     * Any other server frame: presence, typing, read, member, and the replies to [ImbedClient.request]
     * (`ok`, `history`, `members`, `conversations`, `error`), which carry the request's [id].
     *
     * @property type The frame's `type`.
     * @property frameJson The frame itself.
     */
    public data class Frame(
        public val type: String,
        public val id: String?,
        public val frameJson: String,
        override val json: String,
    ) : ClientEvent()

    /** The host fell behind and the engine dropped [dropped] events. */
    public data class Overflow(public val dropped: Long, override val json: String) : ClientEvent()

    /**
     * An event of a kind this binding does not know (from a newer library), or whose fields it could
     * not read, passed on rather than dropped.
     */
    public data class Unknown(public val kind: Int, override val json: String) : ClientEvent()

    internal companion object {
        /** Copies a client's `imbed_event` into a [ClientEvent]; it must run inside the callback. */
        fun decode(event: EventStruct): ClientEvent {
            val json = event.json.required("json")
            return try {
                decodeKnown(event, json)
            } catch (e: RuntimeException) {
                // A field missing or of the wrong type: the JSON parser and the field readers throw.
                Unknown(event.kind, json)
            }
        }

        /** The event of a known kind, or [Unknown]; throws when a field the kind always has is unreadable. */
        private fun decodeKnown(event: EventStruct, json: String): ClientEvent =
            when (event.kind) {
                EventKind.STATE -> {
                    val state = jsonObject(json)
                    State(
                        ConnectionState.of(state.string("state")),
                        state.stringOrNull("reason"),
                        state["attempt"]?.jsonPrimitive?.intOrNull,
                        state.stringOrNull("server"),
                        json,
                    )
                }
                EventKind.MESSAGE -> {
                    val messageJson = event.message.required("message")
                    val message = jsonObject(messageJson)
                    Message(event.user.required("user"), message.string("conv"), message.long("seq"), messageJson, json)
                }
                EventKind.ACK -> {
                    val ack = jsonObject(json)
                    Ack(ack.string("id"), ack.string("conv"), ack.long("seq"), ack.long("ts"), json)
                }
                EventKind.SEND_FAILED -> {
                    val failure = jsonObject(json)
                    SendFailed(failure.string("id"), failure.string("code"), failure.stringOrNull("message").orEmpty(), json)
                }
                EventKind.FRAME -> {
                    val frame = jsonObject(json).obj("frame")
                    Frame(frame.string("type"), frame.stringOrNull("id"), frame.toString(), json)
                }
                EventKind.OVERFLOW -> Overflow(jsonObject(json).long("dropped"), json)
                else -> Unknown(event.kind, json)
            }
    }
}
