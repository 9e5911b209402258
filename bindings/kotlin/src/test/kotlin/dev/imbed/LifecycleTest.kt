package dev.imbed

import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.ConcurrentLinkedQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlin.concurrent.thread
import kotlin.time.Duration.Companion.seconds

@Timeout(30, unit = TimeUnit.SECONDS)
class LifecycleTest {
    private val closedStatuses = setOf(Status.INVALID_HANDLE, Status.STOPPED)

    @Test
    fun `a server closes twice, refuses calls afterwards and completes its events`() =
        runTest {
            val logs = ConcurrentLinkedQueue<LogLevel>()
            val server = ImbedServer(serverConfig(), logger = { level, _, _ -> logs.add(level) })
            server.start()
            assertEquals(Status.ALREADY_STARTED, assertThrows<ImbedException> { server.start() }.status)
            server.close()
            server.close()
            for (call in listOf<() -> Unit>({ server.send("host", "alice", "{}") }, { server.port }, { server.start() }, { server.online() })) {
                val e = assertThrows<ImbedException> { call() }
                assertTrue(e.status in closedStatuses, "${e.status}: ${e.message}")
            }
            withTimeout(5.seconds) { server.events.toList() }
            assertTrue(LogLevel.INFO in logs, "no info record about listening or stopping: $logs")
        }

    @Test
    fun `a server that never started closes and completes its events`() =
        runTest {
            val server = ImbedServer(serverConfig())
            assertEquals(Status.NOT_STARTED, assertThrows<ImbedException> { server.port }.status)
            server.close()
            server.close()
            withTimeout(5.seconds) { server.events.toList() }
        }

    @Test
    fun `a client closes twice, refuses calls afterwards and completes its events`() =
        runTest {
            // Nothing listens there: the client keeps trying until it is closed.
            val client = ImbedClient(clientConfig(freePort(), "alice"))
            client.start()
            val clientId = client.send("bob", """{"text":"queued while disconnected"}""")
            assertTrue(clientId.isNotEmpty())
            client.close()
            client.close()
            for (call in listOf<() -> Unit>({ client.send("bob", "{}") }, { client.start() }, { client.hint(Hint.FOREGROUND) })) {
                val e = assertThrows<ImbedException> { call() }
                assertTrue(e.status in closedStatuses, "${e.status}: ${e.message}")
            }
            val events = withTimeout(5.seconds) { client.events.toList() }
            assertTrue(events.none { it is ClientEvent.Ack }, "acked with no server: $events")
            assertEquals(ConnectionState.STOPPED, (events.last() as ClientEvent.State).state, "$events")
        }

    @Test
    fun `a client that never started closes and completes its events`() =
        runTest {
            val client = ImbedClient(clientConfig(freePort(), "alice"))
            client.close()
            client.close()
            assertEquals(Status.INVALID_HANDLE, assertThrows<ImbedException> { client.start() }.status)
            withTimeout(5.seconds) { client.events.toList() }
        }

    @Test
    fun `a stopped server completes its events, refuses sends and still closes`() =
        runTest {
            val server = ImbedServer(serverConfig())
            server.start()
            server.stop()
            server.stop()
            withTimeout(5.seconds) { server.events.toList() }
            assertEquals(Status.STOPPED, assertThrows<ImbedException> { server.send("host", "alice", "{}") }.status)
            server.close()
            assertEquals(Status.INVALID_HANDLE, assertThrows<ImbedException> { server.stop() }.status)
        }

    @Test
    fun `a stopped client completes its events with the stopped state and still closes`() =
        runTest {
            val client = ImbedClient(clientConfig(freePort(), "alice"))
            client.start()
            client.stop()
            client.stop()
            val events = withTimeout(5.seconds) { client.events.toList() }
            assertEquals(ConnectionState.STOPPED, (events.last() as ClientEvent.State).state, "$events")
            client.close()
            assertEquals(Status.INVALID_HANDLE, assertThrows<ImbedException> { client.stop() }.status)
        }

    @Test
    fun `a close on a second thread returns only after the first close has finished`() =
        runTest {
            // The logger holds up the engine's event thread for two seconds at the first record
            // after the server starts stopping, so the first close is still delivering when the
            // second one starts.
            val closing = AtomicInteger()
            val heldUpRecords = AtomicInteger()
            val server =
                ImbedServer(serverConfig(), logger = { _, _, _ ->
                    if (closing.get() > 0 && heldUpRecords.getAndIncrement() == 0) Thread.sleep(2000)
                })
            server.start()
            closing.incrementAndGet()
            val firstClose = thread { server.close() }
            Thread.sleep(50)
            server.close()
            // Had the second close returned early, the events would stay open for seconds more.
            withTimeout(1.seconds) { server.events.toList() }
            firstClose.join()
            assertTrue(heldUpRecords.get() > 0, "no log record while stopping: nothing was held up")
        }
}
