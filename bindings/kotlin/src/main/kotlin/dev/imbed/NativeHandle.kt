package dev.imbed

import com.sun.jna.Pointer
import java.util.concurrent.ThreadFactory

/**
 * A C handle (`imbed_server *`, `imbed_client *`) and the one owner of its release: a registration
 * with the process's [GcCleaner]. [free] releases it now; if [owner] becomes garbage first, the
 * cleaner releases it then. Either way the release runs once, so `close()` and the garbage collector
 * never free a handle twice.
 *
 * @property pointer The handle, for the C calls.
 */
internal class NativeHandle(owner: Any, val pointer: Pointer, release: (Pointer) -> Unit) {
    private val registration = GcCleaner.shared.register(owner, Release(pointer, release))

    /**
     * Releases the handle now, unless it was released already. A call on another thread while the
     * release runs waits for it, as a second `imbed_*_free` waits for the first: when `close()`
     * returns, no callback of the handle runs any more.
     */
    fun free() {
        synchronized(this) { registration.clean() }
    }

    /**
     * The cleaning action. A class of its own that holds the pointer and nothing else: an action
     * that reached the owner would keep it reachable from the cleaner, and so never garbage.
     */
    private class Release(private val pointer: Pointer, private val release: (Pointer) -> Unit) : Runnable {
        override fun run() {
            release(pointer)
        }
    }
}

/** One registration with a [GcCleaner]. */
internal fun interface CleanerRegistration {
    /** Runs the action now if it has not run yet, and unregisters it: it runs at most once. */
    fun clean()
}

/**
 * Runs an action once an object has become garbage (phantom reachable), on a thread of its own.
 *
 * [shared] is `java.lang.ref.Cleaner` where the platform has it (every JVM since 9, Android from
 * API 33), and otherwise the cleaner JNA itself uses for its native memory, as UniFFI's Kotlin does,
 * so the bindings still load on older Android.
 */
internal interface GcCleaner {
    /** Runs [action] when [owner] becomes garbage, unless the returned registration is cleaned first. */
    fun register(owner: Any, action: Runnable): CleanerRegistration

    companion object {
        /** The process's cleaner for imbed handles. */
        val shared: GcCleaner by lazy {
            val hasJavaCleaner =
                try {
                    Class.forName("java.lang.ref.Cleaner")
                    true
                } catch (e: ClassNotFoundException) {
                    false
                }
            if (hasJavaCleaner) JavaGcCleaner() else JnaGcCleaner()
        }
    }
}

/** `java.lang.ref.Cleaner`, with its own daemon thread named for imbed. */
internal class JavaGcCleaner : GcCleaner {
    private val cleaner = java.lang.ref.Cleaner.create(ThreadFactory { Thread(it, "imbed-cleaner") })

    override fun register(owner: Any, action: Runnable): CleanerRegistration = CleanerRegistration(cleaner.register(owner, action)::clean)
}

/** JNA's cleaner (`com.sun.jna.internal.Cleaner`), for platforms without `java.lang.ref.Cleaner`. */
internal class JnaGcCleaner : GcCleaner {
    override fun register(owner: Any, action: Runnable): CleanerRegistration =
        CleanerRegistration(com.sun.jna.internal.Cleaner.getCleaner().register(owner, action)::clean)
}
