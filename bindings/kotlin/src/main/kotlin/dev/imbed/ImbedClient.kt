package dev.imbed

import com.sun.jna.ptr.PointerByReference
import kotlinx.coroutines.flow.Flow

/** What the app tells a client about its surroundings ([ImbedClient.hint]). */
public enum class Hint(internal val code: Int) {
    /** The network changed: reconnect now instead of waiting for the backoff or a dead-connection timeout. */
    NETWORK_CHANGED(1),

    /** The app went to the background: close the connection and stay [ConnectionState.PAUSED]. */
    BACKGROUND(2),

    /** The app came to the foreground: reconnect at once. */
    FOREGROUND(3),
}

/**
 * A client of an imbed server, for apps: it connects in the background and reconnects forever,
 * keeps sends in an outbox until the server acknowledges them, and after every connect re-sends
 * that outbox and syncs, so [events] has every message exactly once, in order per conversation.
 *
 * Every call is thread-safe and returns at once, but [upload], which waits for the server. Failures
 * throw [ImbedException].
 *
 * [close] releases the client. A client that becomes garbage without it is stopped and released by
 * the garbage collector, at a time nobody chooses: keep a reference for as long as it should run.
 * The logger must not hold the client: the engine keeps it until the client is released.
 *
 * @param configJson The client configuration, such as
 *   `{"url":"wss://chat.example.com/ws","token":"...","state_path":"/data/imbed-state.db"}`,
 *   validated whole here: a wrong field throws [Status.INVALID_CONFIG] naming it. Several servers
 *   (the nodes of one service) go in `urls`, beside or instead of `url`: an attempt that cannot
 *   connect moves to the next, and [ClientEvent.State.server] names the one in use.
 * @param logger Receives the engine's log records at the configured `log_level`; none when null.
 */
public class ImbedClient(configJson: String, logger: ImbedLogger? = null) : AutoCloseable {
    private val handle: NativeHandle
    private val listener = ListenerBridge("imbed-client-events", { ClientEvent.decode(it) }, logger, authenticator = null)

    /**
     * The client's events, in order. Unread events wait in an unbounded queue; the flow completes
     * after [stop] or [close]. Each event goes to one collector: collect it once.
     */
    public val events: Flow<ClientEvent> = listener.events

    init {
        val clientOut = PointerByReference()
        checkStatus(ImbedNative.imbed_client_new(configJson.toCString(), clientOut))
        val client = clientOut.value
        try {
            listener.install { ImbedNative.imbed_client_set_listener(client, it) }
        } catch (e: ImbedException) {
            ImbedNative.imbed_client_free(client)
            throw e
        }
        handle = NativeHandle(this, client, ImbedNative::imbed_client_free)
    }

    /** Starts connecting, in the background. A client starts once. */
    public fun start() {
        checkStatus(ImbedNative.imbed_client_start(handle.pointer))
    }

    /**
     * Queues a direct message with the body [bodyJson] (any JSON value) to the user [to] and returns
     * its client id. It is sent, and re-sent after every reconnect, until the server stores it:
     * then [ClientEvent.Ack] comes with that id. Works while disconnected.
     */
    public fun send(to: String, bodyJson: String): String =
        ownedString { ImbedNative.imbed_client_send(handle.pointer, to.toCString(), bodyJson.toCString(), it) }

    /** Queues a message to [group], as [send] does for a user, and returns its client id. */
    public fun sendGroup(group: String, bodyJson: String): String =
        ownedString { ImbedNative.imbed_client_send_group(handle.pointer, group.toCString(), bodyJson.toCString(), it) }

    /**
     * Sends a request frame, a JSON object with a `type`, and returns its id: the frame's `"id"`,
     * added when missing.
     *
     * Frames that store something go through the outbox, as [send] does: `send` (with `reply_to`
     * for a reply, `"reply_to":17`), `edit`, `delete`, `react` and `unreact`
     * (`docs/PROTOCOL.md`, "Replies, edits, deletes and reactions"). They are queued while
     * disconnected, even before [start], and sent until the server answers: [ClientEvent.Ack] with
     * that id once stored, or [ClientEvent.SendFailed] when refused for good (`forbidden`,
     * `not_found`, `bad_request`, such as an edit of a deleted message).
     *
     * The others (`join`, `leave`, `watch`, `unwatch`, `typing`, `read`, `history`, `members`,
     * `conversations`, `search`...) are not queued: while not connected this throws
     * [Status.NOT_CONNECTED]; the reply comes as a [ClientEvent.Frame] with the id.
     *
     * [Status.INVALID_ARGUMENT] for a frame that is not an object or has no `type`, and for the
     * types the client manages itself (`sync`, `auth`).
     */
    public fun request(frameJson: String): String =
        ownedString { ImbedNative.imbed_client_request(handle.pointer, frameJson.toCString(), it) }

    /**
     * Uploads the file at [path] to the client's server (`POST /files` on the WebSocket's host and
     * port, with the client's token and TLS trust) and returns what the server took. A message then
     * refers to it by [UploadedFile.id] in its body's `files`, such as
     * `request("""{"type":"send","to":"bob","body":{"text":"the plan","files":["${file.id}"]}}""")`.
     *
     * [contentType] (such as `text/plain`) is a hint the server uses only when the bytes do not say
     * what they are. Blocks until the server answers, so call it off the main thread (for example
     * on `Dispatchers.IO`); works whether or not the WebSocket is connected, before [start] too.
     *
     * @throws ImbedException [Status.INVALID_ARGUMENT] when [path] cannot be read or the server
     *   refuses the file (over `files.max_bytes` or the user's `files.quota_bytes`, or no
     *   `files.dir` on that server); [Status.IO] when no server can be reached;
     *   [Status.STOPPED] after [stop].
     */
    public fun upload(path: String, contentType: String? = null): UploadedFile =
        uploadedFile(
            ownedString { ImbedNative.imbed_client_upload(handle.pointer, path.toCString(), contentType?.toCString(), it) },
        )

    /** Tells the client what happened to the app or the network. */
    public fun hint(hint: Hint) {
        checkStatus(ImbedNative.imbed_client_hint(handle.pointer, hint.code))
    }

    /**
     * Stops the client: closes the connection, delivers the remaining events, then completes
     * [events], and returns only then. Unacknowledged sends stay in the outbox of a `state_path` file
     * for the next client on it. Stopping again does nothing; [close] is still needed to release it.
     */
    public fun stop() {
        checkStatus(ImbedNative.imbed_client_stop(handle.pointer))
    }

    /**
     * Stops the client as [stop] does and releases it. Closing again does nothing; any other call
     * afterwards throws [Status.INVALID_HANDLE].
     */
    override fun close() {
        handle.free()
    }
}
