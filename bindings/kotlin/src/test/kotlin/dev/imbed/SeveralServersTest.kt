package dev.imbed

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import java.util.concurrent.TimeUnit

/** A client given several servers (`urls`) gets past one that cannot be reached. */
@Timeout(60, unit = TimeUnit.SECONDS)
class SeveralServersTest {
    @Test
    fun `a client whose first server is down connects to the next and gets its ack`() =
        runTest {
            // Nothing listens there: each attempt is refused at once, so the client must move on.
            val deadUrl = "ws://127.0.0.1:${freePort()}/ws"
            ImbedServer(serverConfig()).use { server ->
                server.start()
                val liveUrl = "ws://127.0.0.1:${server.port}/ws"
                val config = """{"urls":["$deadUrl","$liveUrl"],"token":"alice","reconnect":{"initial_ms":50,"max_ms":500}}"""
                ImbedClient(config).use { alice ->
                    val events = EventRecorder(this, alice.events)
                    alice.start()

                    val connected = events.awaitState(ConnectionState.CONNECTED)
                    assertEquals(liveUrl, connected.server)
                    val states = events.seen<ClientEvent.State>()
                    assertEquals(ConnectionState.CONNECTING, states.first().state)
                    assertEquals(deadUrl, states.first().server, "the servers are tried in the order given")
                    assertTrue(
                        states.any { it.state == ConnectionState.CONNECTING && it.server == liveUrl },
                        "no connecting state named the live server: $states",
                    )
                    assertTrue(
                        states.filter { it.state == ConnectionState.DISCONNECTED }.all { it.server == null },
                        "a disconnected state named a server: $states",
                    )

                    val id = alice.send("bob", """{"text":"hi"}""")
                    val ack = events.awaitCount<ClientEvent.Ack>(1, "the ack").single()
                    assertEquals(id, ack.id)
                    assertEquals("dm:alice:bob", ack.conv)
                    assertEquals(1L, ack.seq)
                }
            }
        }
}
