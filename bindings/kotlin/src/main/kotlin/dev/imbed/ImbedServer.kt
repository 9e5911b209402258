package dev.imbed

import com.sun.jna.ptr.IntByReference
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference
import com.sun.jna.ptr.ShortByReference
import kotlinx.coroutines.flow.Flow

/**
 * An IM server: WebSocket clients connect to it with a token and chat; every message is acknowledged
 * once stored, and the host sees every event in [events].
 *
 * Every call is thread-safe. Calls that store (sends, deletes, group changes) or read the store
 * (history, search) block until done, so call them from a thread that may block, such as
 * `Dispatchers.IO`. Failures throw [ImbedException].
 *
 * [close] releases the server. A server that becomes garbage without it is stopped and released by
 * the garbage collector, at a time nobody chooses: keep a reference for as long as it should serve.
 * The logger and the authenticator must not hold the server: the engine keeps them until the server
 * is released.
 *
 * @param configJson The configuration object of `docs/C-API.md`, such as
 *   `{"listen":"127.0.0.1:0","auth":{"mode":"jwt","secret":"..."}}`, validated whole here: a wrong
 *   field throws [Status.INVALID_CONFIG] naming it.
 * @param logger Receives the engine's log records at the configured `log_level`; none when null.
 * @param authenticator Maps tokens to user ids in the auth mode `callback`, the default mode, which
 *   needs one; unused in the other modes.
 * @throws IllegalStateException when the loaded `libimbed` was built without the server role, as
 *   the client-only library of `scripts/build-client-lib` is ([ImbedClient] still works with it),
 *   or lacks one of the server's functions (a version other than these bindings').
 */
public class ImbedServer(
    configJson: String,
    logger: ImbedLogger? = null,
    authenticator: ImbedAuthenticator? = null,
) : AutoCloseable {
    init {
        // Before the listener: its callbacks are wasted on a library that cannot serve.
        ImbedServerNative.requireServerRole()
    }

    private val handle: NativeHandle
    private val listener = ListenerBridge("imbed-server-events", { ServerEvent.decode(it) }, logger, authenticator)

    /**
     * The server's events, in order. Unread events wait in an unbounded queue; the flow completes
     * after [stop] or [close]. Each event goes to one collector: collect it once.
     */
    public val events: Flow<ServerEvent> = listener.events

    init {
        val serverOut = PointerByReference()
        checkStatus(ImbedServerNative.imbed_server_new(configJson.toCString(), serverOut))
        val server = serverOut.value
        try {
            listener.install { ImbedServerNative.imbed_server_set_listener(server, it) }
        } catch (e: ImbedException) {
            ImbedServerNative.imbed_server_free(server)
            throw e
        }
        handle = NativeHandle(this, server, ImbedServerNative::imbed_server_free)
    }

    /** Binds the configured address and starts serving. A server starts once. */
    public fun start() {
        checkStatus(ImbedServerNative.imbed_server_start(handle.pointer))
    }

    /** The bound TCP port: the real one when the configuration asked for port 0. Only after [start]. */
    public val port: Int
        get() {
            val portOut = ShortByReference()
            checkStatus(ImbedServerNative.imbed_server_port(handle.pointer, portOut))
            return portOut.value.toInt() and 0xFFFF
        }

    /**
     * Sends a direct message from [from] (any valid id; it need not be connected) to the user [to],
     * and returns its seq once it is stored. [bodyJson] is any JSON value. [clientId] is the
     * idempotency key: sending again with the same [from] and [clientId] stores nothing new and
     * returns the same seq; null lets the engine make a unique one.
     */
    public fun send(from: String, to: String, bodyJson: String, clientId: String? = null): Long {
        val seqOut = LongByReference()
        checkStatus(
            ImbedServerNative.imbed_server_send(
                handle.pointer,
                from.toCString(),
                to.toCString(),
                bodyJson.toCString(),
                clientId?.toCString(),
                seqOut,
            ),
        )
        return seqOut.value
    }

    /**
     * Sends to every member of [group] from [from] (any valid id, member or not) and returns the
     * message's seq once it is stored. [Status.NOT_FOUND] when the group does not exist.
     * [bodyJson] and [clientId] as for [send].
     */
    public fun sendGroup(from: String, group: String, bodyJson: String, clientId: String? = null): Long {
        val seqOut = LongByReference()
        checkStatus(
            ImbedServerNative.imbed_server_send_group(
                handle.pointer,
                from.toCString(),
                group.toCString(),
                bodyJson.toCString(),
                clientId?.toCString(),
                seqOut,
            ),
        )
        return seqOut.value
    }

    /**
     * Creates the group [name], or changes whether an existing one is [closed]. Users cannot join a
     * closed group; the host adds its members with [addMember]. Closing an open group removes all its
     * members first (they are told): anyone could have joined it, so a closed group's members are
     * exactly those the host adds.
     */
    public fun createGroup(name: String, closed: Boolean) {
        checkStatus(ImbedServerNative.imbed_server_create_group(handle.pointer, name.toCString(), if (closed) 1 else 0))
    }

    /** Adds [user] to [group] (closed groups too) and tells the members. Adding a member again is fine. */
    public fun addMember(group: String, user: String) {
        checkStatus(ImbedServerNative.imbed_server_add_member(handle.pointer, group.toCString(), user.toCString()))
    }

    /** Removes [user] from [group] and tells the members and the user. Removing a non-member is fine. */
    public fun removeMember(group: String, user: String) {
        checkStatus(ImbedServerNative.imbed_server_remove_member(handle.pointer, group.toCString(), user.toCString()))
    }

    /** Closes every session of [user] (close code 4001, reason `kicked`) and returns how many there were. */
    public fun kick(user: String): Int {
        val sessionsClosed = IntByReference()
        checkStatus(ImbedServerNative.imbed_server_kick(handle.pointer, user.toCString(), sessionsClosed))
        return sessionsClosed.value
    }

    /**
     * Whether [group] is closed, and its members, sorted. [Status.NOT_FOUND] when there is no such
     * group. Only once started, like the other group calls.
     */
    public fun members(group: String): GroupMembers {
        val json = jsonObject(ownedString { ImbedServerNative.imbed_server_members(handle.pointer, group.toCString(), it) })
        return GroupMembers(json.boolean("closed"), jsonStrings(json.array("members")))
    }

    /** The ids of the users with at least one session, sorted. */
    public fun online(): List<String> = jsonStrings(ownedString { ImbedServerNative.imbed_server_online(handle.pointer, it) })

    /**
     * Up to [limit] (1 to 1000) stored messages of the conversation [conv] (`dm:<a>:<b>` with a <= b,
     * or `g:<group>`) with seq below [before] (0: the newest), oldest first, as a JSON array of
     * protocol `msg` frames. An unknown conversation gives `[]`.
     */
    public fun history(conv: String, before: Long = 0, limit: Int = 50): String =
        ownedString { ImbedServerNative.imbed_server_history(handle.pointer, conv.toCString(), before, limit, it) }

    /**
     * Deletes message [seq] of the conversation [conv] for everyone, as [by] (any valid id the host
     * chooses, such as `moderator`), whoever sent it, and returns once it is stored. The delete is an
     * event of the conversation with a seq of its own, which this returns; the message's body, its
     * edits' and its reactions are erased from the store, and it stays as a tombstone
     * (`"deleted":true`) in [history] (`docs/PROTOCOL.md`, "Deletes").
     *
     * @throws ImbedException [Status.NOT_FOUND] when [conv] has no message [seq];
     *   [Status.INVALID_ARGUMENT] for a malformed [conv] or [by], a [seq] of 0, an event, or a
     *   message already deleted.
     */
    public fun delete(by: String, conv: String, seq: Long): Long {
        val seqOut = LongByReference()
        checkStatus(ImbedServerNative.imbed_server_delete(handle.pointer, by.toCString(), conv.toCString(), seq, seqOut))
        return seqOut.value
    }

    /**
     * Searches the messages of [conv], or of every conversation when it is null, for those with
     * every word of [query] (letters and digits; case and diacritics ignored, whole words), and
     * returns up to [limit] (1 to 100) of them, newest first, in their current state: edited ones by
     * their new text, deleted ones and events never (`docs/PROTOCOL.md`, "Search"). [after] is the
     * [SearchResults.next] of the page before; null for the first. Blocks while the store is read.
     *
     * @throws ImbedException [Status.INVALID_ARGUMENT] for a query with no word or over 256 bytes
     *   or 16 words, a malformed [conv], or a [limit] out of range.
     */
    public fun search(query: String, conv: String? = null, after: String? = null, limit: Int = 20): SearchResults =
        searchResults(
            ownedString {
                ImbedServerNative.imbed_server_search(handle.pointer, conv?.toCString(), query.toCString(), after?.toCString(), limit, it)
            },
        )

    /**
     * Finds the uploaded file [fileId] (the 64 hex digits of [UploadedFile.id]): where its bytes are
     * under `files.dir`, its size and its content type. The host may read any file.
     *
     * @throws ImbedException [Status.NOT_FOUND] when there is no such file;
     *   [Status.INVALID_ARGUMENT] when the configuration has no `files.dir`.
     */
    public fun file(fileId: String): StoredFile =
        storedFile(ownedString { ImbedServerNative.imbed_server_file(handle.pointer, fileId.toCString(), it) })

    /**
     * Ends the push request [pushId] (from a [ServerEvent.Push]) once the push gateway's call ended:
     * it is never offered again. [delivered] false, with the gateway's [reason], is logged and counted
     * in `/metrics` (`imbed_pushes_failed_total`) and ends it all the same: the gateway already
     * retried as it saw fit. [Status.NOT_FOUND] when no request with that id is pending (ended
     * already). Blocks until stored.
     */
    public fun pushDone(pushId: Long, delivered: Boolean = true, reason: String? = null) {
        checkStatus(ImbedServerNative.imbed_server_push_done(handle.pointer, pushId, if (delivered) 1 else 0, reason?.toCString()))
    }

    /** The push requests not ended yet, oldest first: for a host that lists or ends them by hand. Blocks while the store is read. */
    public fun pendingPushes(): List<PendingPush> = pendingPushes(ownedString { ImbedServerNative.imbed_server_pending_pushes(handle.pointer, it) })

    /**
     * The devices with a session now, by user, users and devices sorted. A user with a device in
     * [DeviceState.FOREGROUND] is looking and gets no push requests.
     */
    public fun devices(): Map<String, List<OnlineDevice>> = onlineDevices(ownedString { ImbedServerNative.imbed_server_devices(handle.pointer, it) })

    /** The server's counters now. */
    public fun stats(): ServerStats {
        val stats = StatsStruct()
        checkStatus(ImbedServerNative.imbed_server_stats(handle.pointer, stats))
        return ServerStats(stats.connections, stats.usersOnline, stats.messagesStored, stats.messagesDelivered)
    }

    /**
     * Stops the server: closes every session (close code 1001), delivers the remaining events, then
     * completes [events], and returns only then. Stopping again does nothing; the other calls then
     * throw [Status.STOPPED]. [close] is still needed to release it.
     */
    public fun stop() {
        checkStatus(ImbedServerNative.imbed_server_stop(handle.pointer))
    }

    /**
     * Stops the server as [stop] does and releases it. Closing again does nothing; any other call
     * afterwards throws [Status.INVALID_HANDLE].
     */
    override fun close() {
        handle.free()
    }
}

/**
 * A server's counters.
 *
 * @property connections Open authenticated sessions.
 * @property usersOnline Users with at least one session.
 * @property messagesStored Messages stored since start.
 * @property messagesDelivered `msg` frames queued to sessions since start.
 */
public data class ServerStats(
    public val connections: Long,
    public val usersOnline: Long,
    public val messagesStored: Long,
    public val messagesDelivered: Long,
)

/**
 * A group's membership, from [ImbedServer.members].
 *
 * @property closed Whether users are refused when they try to join; only the host adds members.
 * @property members The members' ids, sorted.
 */
public data class GroupMembers(
    public val closed: Boolean,
    public val members: List<String>,
)
