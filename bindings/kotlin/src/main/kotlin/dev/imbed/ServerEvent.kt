package dev.imbed

/**
 * Something that happened in an [ImbedServer], in the engine's order. Each event carries the
 * engine's whole event object as [json] next to the fields taken out of it.
 */
public sealed class ServerEvent {
    /** The whole event as one JSON object, such as `{"event":"connected","user":"alice","session":"s-1-1","device":"phone-1"}`. */
    public abstract val json: String

    /**
     * A session of [user] was authenticated, on [device]: the id its token or its client named, or
     * one the server made up (`d-...`).
     */
    public data class Connected(
        public val user: String,
        public val session: String,
        public val device: String,
        override val json: String,
    ) : ServerEvent()

    /** A session of [user] on [device] ended, for [reason] (such as `closed by peer` or `kicked`). */
    public data class Disconnected(
        public val user: String,
        public val session: String,
        public val device: String,
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

    /**
     * A push request (configuration `push`): [user] has no session in the foreground and should be
     * told of [seq] in [conv] through the app's push gateway. End it with [ImbedServer.pushDone] once
     * the gateway's call ended; one not ended within `push.retry_after_ms` comes again with the same
     * [pushId], and so do those pending when the server restarts on the same store.
     *
     * @property kind [PushKind.MESSAGE] for a message from [from]; [PushKind.READ] when the user read
     *   up to [seq] on some device, to update the badge ([from] is null then).
     * @property unread The user's unread messages over all conversations (at most 9999): the badge.
     * @property devices Every device the user ever connected from, sorted; [PushDevice.state] is set
     *   only for those with a session now.
     * @property collapseKey For the gateway's collapse id: the same when a request is offered again,
     *   and one per conversation for [PushKind.READ], so a repeat replaces a notification, not adds one.
     * @property group The group, for a group conversation.
     * @property previewJson The message's body as JSON (written compactly), only when `push.preview` is on.
     */
    public data class Push(
        public val pushId: Long,
        public val kind: PushKind,
        public val user: String,
        public val conv: String,
        public val seq: Long,
        public val from: String?,
        public val unread: Int,
        public val devices: List<PushDevice>,
        public val collapseKey: String,
        public val group: String?,
        public val previewJson: String?,
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
                // The device is only in the JSON: imbed_event has no field for it.
                EventKind.CONNECTED ->
                    Connected(event.user.required("user"), event.session.required("session"), jsonObject(json).string("device"), json)
                EventKind.DISCONNECTED ->
                    Disconnected(
                        event.user.required("user"),
                        event.session.required("session"),
                        jsonObject(json).string("device"),
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
                EventKind.PUSH -> {
                    val push = jsonObject(json)
                    Push(
                        push.long("push_id"),
                        PushKind.of(push.string("kind")),
                        event.user.required("user"),
                        push.string("conv"),
                        push.long("seq"),
                        push.stringOrNull("from"),
                        push.long("unread").toInt(),
                        pushDevices(push),
                        push.string("collapse_key"),
                        push.stringOrNull("group"),
                        push["preview"]?.toString(),
                        json,
                    )
                }
                else -> Unknown(event.kind, json)
            }
    }
}
