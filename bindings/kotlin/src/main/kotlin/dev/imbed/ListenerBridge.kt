package dev.imbed

import com.sun.jna.CallbackThreadInitializer
import com.sun.jna.Native
import com.sun.jna.Pointer
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.receiveAsFlow
import java.util.concurrent.ConcurrentHashMap

/**
 * The Kotlin side of one handle's `imbed_listener`: decodes each event while its strings are still
 * valid and queues it for [events], passes log records to the logger and tokens to the
 * authenticator, if any; closes [events] when the engine calls `destroy`.
 *
 * JNA frees a callback's native stub once the callback object is garbage, and the engine may call
 * it until `destroy`, whatever became of the Kotlin object that made the handle. So an installed
 * bridge is held by [installed] (the engine's reference, in effect) until `destroy` releases it.
 */
internal class ListenerBridge<E : Any>(
    threadName: String,
    decode: (EventStruct) -> E,
    logger: ImbedLogger?,
    authenticator: ImbedAuthenticator?,
) {
    /** Unlimited: the engine's dispatcher thread must never wait for a slow collector. */
    private val queue = Channel<E>(Channel.UNLIMITED)

    /** The decoded events, in the engine's order; completes after `destroy`. */
    val events: Flow<E> = queue.receiveAsFlow()

    private val onEvent = EventCallback { _, event -> queue.trySend(decode(EventStruct(event))) }

    private val onLog: LogCallback? =
        if (logger == null) {
            null
        } else {
            LogCallback { _, level, target, message ->
                logger.log(LogLevel.of(level), target?.utf8().orEmpty(), message?.utf8().orEmpty())
            }
        }

    private val onAuthenticate: AuthenticateCallback? =
        authenticator?.let {
            AuthenticateCallback { _, token, userOut, userOutCapacity ->
                (if (authenticateInto(it, token, userOut, userOutCapacity.toLong())) 1 else 0).toByte()
            }
        }

    private val onDestroy =
        DestroyCallback { _ ->
            queue.close()
            installed.remove(this)
        }

    init {
        // The engine calls from its own threads. Keeping them attached to the JVM (detached at
        // thread exit) saves an attach, a Thread object and a detach per event.
        val attached = CallbackThreadInitializer(true, false, threadName)
        Native.setCallbackThreadInitializer(onEvent, attached)
        onLog?.let { Native.setCallbackThreadInitializer(it, attached) }
        // Authentication runs on the engine's blocking-task threads, which are reused while busy.
        onAuthenticate?.let { Native.setCallbackThreadInitializer(it, CallbackThreadInitializer(true, false, "imbed-authenticate")) }
    }

    /**
     * Installs this bridge as the listener of a handle with [setListener] (`imbed_*_set_listener`),
     * or throws, in which case the engine keeps nothing of it.
     */
    fun install(setListener: (ListenerStruct) -> Int) {
        val listener =
            ListenerStruct().apply {
                onEvent = this@ListenerBridge.onEvent
                onLog = this@ListenerBridge.onLog
                authenticate = onAuthenticate
                destroy = onDestroy
            }
        installed.add(this)
        try {
            checkStatus(setListener(listener))
        } catch (e: ImbedException) {
            installed.remove(this)
            throw e
        }
    }

    private companion object {
        /** The bridges the engine may still call. */
        val installed: MutableSet<ListenerBridge<*>> = ConcurrentHashMap.newKeySet()
    }
}

/** Copies a string field of an event that the engine always sets for the event's kind. */
internal fun Pointer?.required(field: String): String =
    this?.utf8() ?: throw IllegalStateException("the engine sent an event without its $field")
