package dev.imbed

import com.sun.jna.Native
import com.sun.jna.Pointer
import com.sun.jna.ptr.IntByReference
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference
import com.sun.jna.ptr.ShortByReference

/**
 * The server's C functions (`imbed_server_*`), bound as [ImbedNative] binds the others, but apart
 * from them and only when the first [ImbedServer] is made: a client-only library
 * (`scripts/build-client-lib`, or `scripts/build-android` with `IMBED_ROLES=client`) lacks them, and
 * `Native.register` fails on the first missing function, so bound with the rest they would keep
 * such a library from loading at all, for the client too.
 *
 * This object's initialisation never throws: a failure is kept and thrown by [requireServerRole]
 * at every [ImbedServer] made, instead of once as an initialiser error and then as
 * `NoClassDefFoundError`. Calling a function here before [requireServerRole] has passed is a bug.
 */
internal object ImbedServerNative {
    /** Why the server's functions could not be bound; null when they are. */
    private val unavailable: Unavailable? =
        try {
            Native.register(ImbedServerNative::class.java, ImbedNative.library)
            null
        } catch (e: UnsatisfiedLinkError) {
            Unavailable(describe(e), e)
        }

    private class Unavailable(val message: String, val cause: UnsatisfiedLinkError)

    /**
     * Throws [IllegalStateException] unless the loaded library has the server's functions. A new
     * exception each time, so its stack trace is the caller's; JNA's error is its cause.
     */
    fun requireServerRole() {
        unavailable?.let { throw IllegalStateException(it.message, it.cause) }
    }

    /**
     * JNA raises `UnsatisfiedLinkError` ("Error looking up function ...") for the first function it
     * cannot find. Without `imbed_server_new` the library was built without the server role, which
     * the app can fix by shipping another build; with it, one function is missing and the library
     * and these bindings are of different versions, which JNA's message, naming it, says better.
     */
    private fun describe(error: UnsatisfiedLinkError): String {
        val library = ImbedNative.library
        val file = library.file?.path ?: library.name
        val hasServer =
            try {
                library.getFunction("imbed_server_new")
                true
            } catch (e: UnsatisfiedLinkError) {
                false
            }
        return if (hasServer) {
            "the loaded libimbed ($file) does not match these bindings (header ${ImbedLibrary.HEADER_VERSION}, " +
                "library ${ImbedLibrary.version}): ${error.message}"
        } else {
            "ImbedServer needs the server role, and the loaded libimbed ($file) was built without it: " +
                "it lacks the imbed_server_* functions, as a client-only build does (scripts/build-client-lib, " +
                "or scripts/build-android with IMBED_ROLES=client: no `server` cargo feature). " +
                "Host a server with a library built with the `server` feature (the default: cargo build --release); " +
                "ImbedClient works with either."
        }
    }

    @JvmStatic external fun imbed_server_new(configJson: ByteArray, serverOut: PointerByReference): Int

    @JvmStatic external fun imbed_server_set_listener(server: Pointer, listener: ListenerStruct): Int

    @JvmStatic external fun imbed_server_start(server: Pointer): Int

    @JvmStatic external fun imbed_server_port(server: Pointer, portOut: ShortByReference): Int

    @JvmStatic external fun imbed_server_send(
        server: Pointer,
        from: ByteArray,
        to: ByteArray,
        bodyJson: ByteArray,
        clientId: ByteArray?,
        seqOut: LongByReference,
    ): Int

    @JvmStatic external fun imbed_server_send_group(
        server: Pointer,
        from: ByteArray,
        group: ByteArray,
        bodyJson: ByteArray,
        clientId: ByteArray?,
        seqOut: LongByReference,
    ): Int

    @JvmStatic external fun imbed_server_stop(server: Pointer): Int

    @JvmStatic external fun imbed_server_free(server: Pointer)

    @JvmStatic external fun imbed_server_history(
        server: Pointer,
        conv: ByteArray,
        before: Long,
        limit: Int,
        jsonOut: PointerByReference,
    ): Int

    /** `closed` is a C `bool`: one byte, 0 or 1. */
    @JvmStatic external fun imbed_server_create_group(server: Pointer, group: ByteArray, closed: Byte): Int

    @JvmStatic external fun imbed_server_add_member(server: Pointer, group: ByteArray, user: ByteArray): Int

    @JvmStatic external fun imbed_server_remove_member(server: Pointer, group: ByteArray, user: ByteArray): Int

    @JvmStatic external fun imbed_server_kick(server: Pointer, user: ByteArray, sessionsClosedOut: IntByReference): Int

    @JvmStatic external fun imbed_server_members(server: Pointer, group: ByteArray, jsonOut: PointerByReference): Int

    @JvmStatic external fun imbed_server_online(server: Pointer, jsonOut: PointerByReference): Int

    @JvmStatic external fun imbed_server_stats(server: Pointer, statsOut: StatsStruct): Int

    /** `pushId` is a C `uint64_t`, passed as a Long of the same bits; `delivered` a C `bool`, one byte. */
    @JvmStatic external fun imbed_server_push_done(server: Pointer, pushId: Long, delivered: Byte, reason: ByteArray?): Int

    @JvmStatic external fun imbed_server_pending_pushes(server: Pointer, jsonOut: PointerByReference): Int

    @JvmStatic external fun imbed_server_devices(server: Pointer, jsonOut: PointerByReference): Int

    /** `seq` is a C `uint64_t`, passed as a Long of the same bits, as is `*seqOut`. */
    @JvmStatic external fun imbed_server_delete(
        server: Pointer,
        by: ByteArray,
        conv: ByteArray,
        seq: Long,
        seqOut: LongByReference,
    ): Int

    /** `limit` is a C `uint32_t`, passed as an Int of the same bits. */
    @JvmStatic external fun imbed_server_search(
        server: Pointer,
        conv: ByteArray?,
        query: ByteArray,
        after: ByteArray?,
        limit: Int,
        jsonOut: PointerByReference,
    ): Int

    @JvmStatic external fun imbed_server_file(server: Pointer, fileId: ByteArray, jsonOut: PointerByReference): Int
}
