package dev.imbed

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import java.lang.ref.WeakReference
import java.net.ConnectException
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

/** Handles that become garbage without `close()` are released by the garbage collector, once. */
@Timeout(60, unit = TimeUnit.SECONDS)
class CleanerTest {
    /** Collects garbage until [released] holds; fails naming [what] after 20 seconds. */
    private fun collectGarbageUntil(what: String, released: () -> Boolean) {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
        while (!released()) {
            if (System.nanoTime() > deadline) throw AssertionError("not released within 20 s of garbage collection: $what")
            System.gc()
            Thread.sleep(50)
        }
    }

    /** Whether a TCP connection to 127.0.0.1:[port] is refused. */
    private fun connectionRefused(port: Int): Boolean =
        try {
            Socket().use { it.connect(InetSocketAddress("127.0.0.1", port), 1000) }
            false
        } catch (e: ConnectException) {
            true
        }

    /**
     * Starts a server on [port], checks that it accepts connections, and drops it without `close()`:
     * the caller keeps only a weak reference. A function of its own, so that no local variable of
     * the test still holds the server.
     */
    private fun startAndForgetServer(port: Int): WeakReference<ImbedServer> {
        val server = ImbedServer(serverConfig(listen = "127.0.0.1:$port"))
        server.start()
        assertEquals(false, connectionRefused(port), "the server does not accept connections")
        return WeakReference(server)
    }

    @Test
    fun `a server dropped without close is stopped and its port released`() {
        val port = freePort()
        val server = startAndForgetServer(port)
        collectGarbageUntil("the server's port $port") { connectionRefused(port) }
        assertNull(server.get(), "the port was released while the server was still reachable")
        ServerSocket(port, 1, InetAddress.getByName("127.0.0.1")).close()
    }

    /** Starts a client of [server] as [user], waits until it is online, and drops it without `close()`. */
    private suspend fun startAndForgetClient(server: ImbedServer, serverEvents: EventRecorder<ServerEvent>, user: String) {
        val client = ImbedClient(clientConfig(server.port, user))
        client.start()
        serverEvents.awaitUntil("$user connected") { events -> events.any { it is ServerEvent.Connected && it.user == user } }
    }

    @Test
    fun `a client dropped without close is stopped and disconnects`() =
        runTest {
            ImbedServer(serverConfig()).use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                startAndForgetClient(server, serverEvents, "alice")
                withContext(Dispatchers.IO) {
                    collectGarbageUntil("alice's client") { serverEvents.seen<ServerEvent.Disconnected>().any { it.user == "alice" } }
                }
                assertEquals(emptyList<String>(), server.online())
            }
        }

    /** Registers an owner that is garbage as soon as this returns, with an action that counts its runs. */
    private fun registerAndForget(cleaner: GcCleaner, releases: AtomicInteger): CleanerRegistration =
        cleaner.register(Any()) { releases.incrementAndGet() }

    /** Both cleaners: java.lang.ref.Cleaner, the JVM's, and JNA's, for Android before API 33. */
    private val cleaners = listOf(JavaGcCleaner(), JnaGcCleaner())

    @Test
    fun `a JVM has java lang ref Cleaner`() {
        assertTrue(GcCleaner.shared is JavaGcCleaner)
    }

    @Test
    fun `an explicit release runs once and the garbage collector does not run it again`() {
        for (cleaner in cleaners) {
            val releases = AtomicInteger()
            val registration = registerAndForget(cleaner, releases)
            registration.clean()
            registration.clean()
            assertEquals(1, releases.get(), cleaner.javaClass.simpleName)
            // A release by the collector after the explicit one would be counted here.
            repeat(5) {
                System.gc()
                Thread.sleep(50)
            }
            assertEquals(1, releases.get(), cleaner.javaClass.simpleName)
        }
    }

    @Test
    fun `a forgotten owner is released once and an explicit release afterwards does nothing`() {
        for (cleaner in cleaners) {
            val releases = AtomicInteger()
            val registration = registerAndForget(cleaner, releases)
            collectGarbageUntil("an owner registered with ${cleaner.javaClass.simpleName}") { releases.get() > 0 }
            registration.clean()
            assertEquals(1, releases.get(), cleaner.javaClass.simpleName)
        }
    }
}
