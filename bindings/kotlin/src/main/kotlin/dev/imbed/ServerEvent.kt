package dev.imbed

/**
 * Something that happened in an [ImbedServer], in the engine's order. Each event carries the
 * engine's whole event object as [json] next to the fields taken out of it.
 */
public sealed class ServerEvent {
    /** The whole event as one JSON object, such as `{"event":"connected","user":"alice","session":"s-1-1"}`. */
    public abstract val json: String

    /** A session of [user] was authenticated. */
    public data class Connected(public val user: String, public val session: String, override val json: String) : ServerEvent()

    /** A session of [user] ended, for [reason] (such as `closed by peer` or `kicked`). */
    public data class Disconnected(
        public val user: String,
        public val session: String,
        public val reason: String,
        override val json: String,
    ) : ServerEvent()

    /**
     * A message was stored: [seq] in the conversation [conv], sent by [from].
     *
     * @property messageJson The protocol `msg` frame, as clients receive it.
     */
    public data class Message(
        public val from: String,
        public val conv: String,
        public val seq: Long,
        public val messageJson: String,
        override val json: String,
    ) : ServerEvent()

    /** [user] joined [group] ([joined] true) or left it. */
    public data class Member(
        public val group: String,
        public val user: String,
        public val joined: Boolean,
        override val json: String,
    ) : ServerEvent()

    /** The host fell behind and the engine dropped [dropped] events; messages are still in the store. */
    public data class Overflow(public val dropped: Long, override val json: String) : ServerEvent()

    /**
     * An event of a kind this binding does not know (from a newer library), or whose fields it could
     * not read, passed on rather than dropped.
     */
    public data class Unknown(public val kind: Int, override val json: String) : ServerEvent()

    internal companion object {
        /** Copies a server's `imbed_event` into a [ServerEvent]; it must run inside the callback. */
        fun decode(event: EventStruct): ServerEvent {
            val json = event.json.required("json")
            return try {
                decodeKnown(event, json)
            } catch (e: RuntimeException) {
                // A field missing or of the wrong type: the JSON parser and the field readers throw.
                Unknown(event.kind, json)
            }
        }

        /** The event of a known kind, or [Unknown]; throws when a field the kind always has is unreadable. */
        private fun decodeKnown(event: EventStruct, json: String): ServerEvent =
            when (event.kind) {
                EventKind.CONNECTED -> Connected(event.user.required("user"), event.session.required("session"), json)
                EventKind.DISCONNECTED ->
                    Disconnected(
                        event.user.required("user"),
                        event.session.required("session"),
                        event.reason.required("reason"),
                        json,
                    )
                EventKind.MESSAGE -> {
                    val messageJson = event.message.required("message")
                    val message = jsonObject(messageJson)
                    Message(event.user.required("user"), message.string("conv"), message.long("seq"), messageJson, json)
                }
                EventKind.OVERFLOW -> Overflow(jsonObject(json).long("dropped"), json)
                EventKind.MEMBER ->
                    Member(event.group.required("group"), event.user.required("user"), jsonObject(json).boolean("joined"), json)
                else -> Unknown(event.kind, json)
            }
    }
}
