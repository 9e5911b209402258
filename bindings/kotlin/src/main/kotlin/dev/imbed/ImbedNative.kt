package dev.imbed

import com.sun.jna.Callback
import com.sun.jna.IntegerType
import com.sun.jna.Native
import com.sun.jna.NativeLibrary
import com.sun.jna.Pointer
import com.sun.jna.Structure
import com.sun.jna.ptr.PointerByReference
import java.nio.charset.CharacterCodingException

/**
 * The C functions of `include/imbed.h`, bound by JNA direct mapping (`Native.register`), as UniFFI
 * binds its Kotlin code: each call is a JNI native method, without the proxy and reflection of
 * interface mapping.
 *
 * Strings go in as NUL-terminated UTF-8 byte arrays and come out as [Pointer]s read as UTF-8,
 * because JNA's own `String` conversion uses the platform encoding and the C API speaks UTF-8.
 * Handles are [Pointer]s that are never dereferenced: the library treats them as registry keys,
 * so a freed handle passed again is answered with `IMBED_ERR_INVALID_HANDLE`, not a crash.
 *
 * This object holds the functions every build of the library exports: the shared ones and the
 * client's. The server's are in [ImbedServerNative], because `Native.register` fails on the first
 * function the library lacks, and a client-only library (`scripts/build-client-lib`) has none of
 * them.
 */
internal object ImbedNative {
    /** The loaded library, which [ImbedServerNative] binds too, so both bind the one instance. */
    val library: NativeLibrary

    init {
        libraryDirectory()?.let { NativeLibrary.addSearchPath("imbed", it) }
        // The name and class loader Native.register(Class, String) uses, so that code looking the
        // library up as it does (tests/jvm-consumer) finds this instance, not a second load.
        library = NativeLibrary.getInstance("imbed", ImbedNative::class.java.classLoader)
        Native.register(ImbedNative::class.java, library)
    }

    /**
     * The directory holding `libimbed.so`, if the app names one: the system property
     * `imbed.library.path` or the environment variable `IMBED_LIBRARY_PATH`. JNA searches it first,
     * then `jna.library.path`, then the system's directories, and last the class path, where this
     * jar carries `linux-x86-64/libimbed.so`.
     */
    private fun libraryDirectory(): String? =
        System.getProperty("imbed.library.path")
            ?: System.getenv("IMBED_LIBRARY_PATH")

    @JvmStatic external fun imbed_last_error(): Pointer

    @JvmStatic external fun imbed_status_str(status: Int): Pointer

    @JvmStatic external fun imbed_string_free(string: Pointer?)

    @JvmStatic external fun imbed_version(): Pointer

    @JvmStatic external fun imbed_client_new(configJson: ByteArray, clientOut: PointerByReference): Int

    @JvmStatic external fun imbed_client_set_listener(client: Pointer, listener: ListenerStruct): Int

    @JvmStatic external fun imbed_client_start(client: Pointer): Int

    @JvmStatic external fun imbed_client_send(
        client: Pointer,
        to: ByteArray,
        bodyJson: ByteArray,
        clientIdOut: PointerByReference,
    ): Int

    @JvmStatic external fun imbed_client_send_group(
        client: Pointer,
        group: ByteArray,
        bodyJson: ByteArray,
        clientIdOut: PointerByReference,
    ): Int

    @JvmStatic external fun imbed_client_request(
        client: Pointer,
        frameJson: ByteArray,
        requestIdOut: PointerByReference,
    ): Int

    @JvmStatic external fun imbed_client_hint(client: Pointer, hint: Int): Int

    @JvmStatic external fun imbed_client_upload(
        client: Pointer,
        path: ByteArray,
        contentType: ByteArray?,
        jsonOut: PointerByReference,
    ): Int

    @JvmStatic external fun imbed_client_stop(client: Pointer): Int

    @JvmStatic external fun imbed_client_free(client: Pointer)
}

/** The `imbed_event_kind` values. */
internal object EventKind {
    const val CONNECTED = 1
    const val DISCONNECTED = 2
    const val MESSAGE = 3
    const val OVERFLOW = 4
    const val MEMBER = 5
    const val STATE = 6
    const val ACK = 7
    const val SEND_FAILED = 8
    const val FRAME = 9
    const val PUSH = 11
}

/** `imbed_event`, read from the pointer the engine passes to `on_event`. */
@Structure.FieldOrder("kind", "user", "session", "reason", "message", "json", "group")
internal class EventStruct(pointer: Pointer) : Structure(pointer) {
    @JvmField var kind: Int = 0
    @JvmField var user: Pointer? = null
    @JvmField var session: Pointer? = null
    @JvmField var reason: Pointer? = null
    @JvmField var message: Pointer? = null
    @JvmField var json: Pointer? = null
    @JvmField var group: Pointer? = null

    init {
        read()
    }
}

/** `imbed_listener`. The engine copies it, so it only has to live through `set_listener`. */
@Structure.FieldOrder("userData", "onEvent", "onLog", "authenticate", "destroy")
internal class ListenerStruct : Structure() {
    /** Unused: each callback is a Kotlin object that carries its own state. */
    @JvmField var userData: Pointer? = null
    @JvmField var onEvent: EventCallback? = null
    @JvmField var onLog: LogCallback? = null
    @JvmField var authenticate: AuthenticateCallback? = null
    @JvmField var destroy: DestroyCallback? = null
}

/** `imbed_stats`, filled by `imbed_server_stats`. */
@Structure.FieldOrder("connections", "usersOnline", "messagesStored", "messagesDelivered")
internal class StatsStruct : Structure() {
    @JvmField var connections: Long = 0
    @JvmField var usersOnline: Long = 0
    @JvmField var messagesStored: Long = 0
    @JvmField var messagesDelivered: Long = 0
}

/** `on_event`; the event and its strings are borrowed for the call only. */
internal fun interface EventCallback : Callback {
    fun invoke(userData: Pointer?, event: Pointer)
}

/** `on_log`; `level` is an `imbed_log_level`, the strings are borrowed for the call only. */
internal fun interface LogCallback : Callback {
    fun invoke(userData: Pointer?, level: Int, target: Pointer?, message: Pointer?)
}

/**
 * `authenticate` (auth mode `callback`): writes the user id of `token` into `userOut`, which has room
 * for `userOutCapacity` bytes, and returns 1; 0 refuses the token. Runs on engine worker threads,
 * several at once. Returns a C `bool` as one byte.
 */
internal fun interface AuthenticateCallback : Callback {
    fun invoke(userData: Pointer?, token: Pointer?, userOut: Pointer?, userOutCapacity: SizeT): Byte
}

/**
 * A C `size_t`: 8 bytes on 64-bit systems, 4 on 32-bit ones (armeabi-v7a phones), where a `Long`
 * would read the wrong arguments. JNA makes one with the no-argument constructor.
 */
internal class SizeT(value: Long = 0) : IntegerType(Native.SIZE_T_SIZE, value, true) {
    // Kotlin sees java.lang.Number's byteValue and shortValue as abstract toByte and toShort.
    override fun toByte(): Byte = toLong().toByte()

    override fun toShort(): Short = toLong().toShort()
}

/** `destroy`: the engine will not call this listener again. */
internal fun interface DestroyCallback : Callback {
    fun invoke(userData: Pointer?)
}

/** Copies a borrowed C string. */
internal fun Pointer.utf8(): String = getString(0, "UTF-8")

/**
 * This string as a NUL-terminated UTF-8 argument. A NUL inside it or a lone surrogate is refused
 * here, as the library refuses a string that is not UTF-8: C would silently cut the first at the
 * NUL, and the encoder would silently replace the second.
 */
internal fun String.toCString(): ByteArray {
    if ('\u0000' in this) throw ImbedException(Status.INVALID_ARGUMENT, "a string argument contains a NUL character")
    val bytes =
        try {
            encodeToByteArray(throwOnInvalidSequence = true)
        } catch (e: CharacterCodingException) {
            throw ImbedException(Status.INVALID_UTF8, "a string argument is not valid UTF-16 (a lone surrogate)")
        }
    return bytes.copyOf(bytes.size + 1)
}

/** Throws the [ImbedException] of a failed call; the library's message is read on the calling thread, as it must be. */
internal fun checkStatus(status: Int) {
    if (status == Status.OK.code) return
    val message = ImbedNative.imbed_last_error().utf8().ifEmpty { ImbedNative.imbed_status_str(status).utf8() }
    throw ImbedException(Status.of(status), message)
}

/** Runs a call that returns an owned string through its last argument, and frees that string. */
internal inline fun ownedString(call: (PointerByReference) -> Int): String {
    val out = PointerByReference()
    checkStatus(call(out))
    val string = out.value
    try {
        return string.utf8()
    } finally {
        ImbedNative.imbed_string_free(string)
    }
}
