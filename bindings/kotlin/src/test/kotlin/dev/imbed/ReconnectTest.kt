package dev.imbed

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.serialization.json.int
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path
import java.util.concurrent.TimeUnit
import kotlin.time.Duration.Companion.seconds

/** The client's outbox and sync across a server restart on the same port and SQLite file. */
@Timeout(120, unit = TimeUnit.SECONDS)
class ReconnectTest {
    @Test
    fun `a server restart in the middle of a burst loses nothing and repeats nothing`(@TempDir dir: Path) =
        runTest {
            // A fixed port: the clients must find the second server where the first one was.
            val port = freePort()
            val config = serverConfig(listen = "127.0.0.1:$port", storePath = dir.resolve("imbed.db").toString())
            var server = ImbedServer(config).apply { start() }
            try {
                ImbedClient(clientConfig(port, "alice")).use { alice ->
                    ImbedClient(clientConfig(port, "bob")).use { bob ->
                        val aliceEvents = EventRecorder(this, alice.events)
                        val bobEvents = EventRecorder(this, bob.events)
                        alice.start()
                        bob.start()
                        aliceEvents.awaitState(ConnectionState.CONNECTED)
                        bobEvents.awaitState(ConnectionState.CONNECTED)

                        val sending =
                            async(Dispatchers.IO) {
                                (1..50).map { n -> alice.send("bob", """{"n":$n}""").also { delay(10) } }
                            }
                        aliceEvents.awaitCount<ClientEvent.Ack>(20, "acks before the restart")
                        server.close()
                        val ackedBeforeRestart = aliceEvents.seen<ClientEvent.Ack>().size
                        server = ImbedServer(config).apply { start() }
                        val sent = sending.await()

                        val acks = aliceEvents.awaitCount<ClientEvent.Ack>(50, "acks", timeout = 60.seconds)
                        bobEvents.awaitUntil("50 messages to bob", timeout = 60.seconds) { events ->
                            events.count { it is ClientEvent.Message } >= 50
                        }
                        // Anything repeated after the last message would arrive now.
                        delay(1000)

                        assertTrue(ackedBeforeRestart < 50, "the restart came after the last ack")
                        assertTrue(
                            bobEvents.all.any { it is ClientEvent.State && it.state == ConnectionState.DISCONNECTED },
                            "bob's client never saw the restart",
                        )
                        assertEquals(50, aliceEvents.seen<ClientEvent.Ack>().size)
                        assertEquals(sent.toSet(), acks.map { it.id }.toSet())
                        assertEquals(50, sent.toSet().size)
                        val received = bobEvents.seen<ClientEvent.Message>()
                        assertEquals((1L..50L).toList(), received.map { it.seq })
                        assertEquals(List(50) { "dm:alice:bob" }, received.map { it.conv })
                        val bodies = received.map { it.messageJson.toJsonObject()["body"]!!.jsonObject["n"]!!.jsonPrimitive.int }
                        assertEquals((1..50).toSet(), bodies.toSet())
                        // Each message bob holds is the one alice's ack numbered.
                        val ackedSeqs = acks.associate { it.id to it.seq }
                        val receivedSeqs = received.associate { it.messageJson.toJsonObject()["id"]!!.jsonPrimitive.content to it.seq }
                        assertEquals(ackedSeqs, receivedSeqs)
                    }
                }
            } finally {
                server.close()
            }
        }
}
