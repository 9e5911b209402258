package dev.imbed

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.TimeUnit

/** A Kotlin-hosted server and Kotlin clients talking to each other over 127.0.0.1. */
@Timeout(60, unit = TimeUnit.SECONDS)
class ChatTest {
    private fun ClientEvent.Message.text(): String = messageJson.toJsonObject()["body"]!!.jsonObject["text"]!!.jsonPrimitive.content

    private fun historySeqs(history: String): List<Long> =
        Json.parseToJsonElement(history).jsonArray.map { it.jsonObject["seq"]!!.jsonPrimitive.long }

    @Test
    fun `two clients chat both ways with acks and messages in order`() =
        runTest {
            ImbedServer(serverConfig()).use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                ImbedClient(clientConfig(server.port, "alice")).use { alice ->
                    ImbedClient(clientConfig(server.port, "bob")).use { bob ->
                        val aliceEvents = EventRecorder(this, alice.events)
                        val bobEvents = EventRecorder(this, bob.events)
                        alice.start()
                        bob.start()
                        aliceEvents.awaitState(ConnectionState.CONNECTED)
                        bobEvents.awaitState(ConnectionState.CONNECTED)
                        // The callbacks must survive a collection with only the engine holding them.
                        System.gc()

                        val toBob = (1..3).map { alice.send("bob", """{"text":"hi bob $it"}""") }
                        val aliceAcks = aliceEvents.awaitCount<ClientEvent.Ack>(3, "acks to alice")
                        assertEquals(toBob, aliceAcks.map { it.id })
                        assertEquals(listOf(1L, 2L, 3L), aliceAcks.map { it.seq })
                        assertTrue(aliceAcks.all { it.conv == "dm:alice:bob" })
                        val bobGot = bobEvents.awaitCount<ClientEvent.Message>(3, "messages to bob")
                        assertEquals(listOf(1L, 2L, 3L), bobGot.map { it.seq })
                        assertEquals(listOf("hi bob 1", "hi bob 2", "hi bob 3"), bobGot.map { it.text() })
                        assertTrue(bobGot.all { it.from == "alice" && it.conv == "dm:alice:bob" })

                        val toAlice = (1..3).map { bob.send("alice", """{"text":"hi alice $it"}""") }
                        val bobAcks = bobEvents.awaitCount<ClientEvent.Ack>(3, "acks to bob")
                        assertEquals(toAlice, bobAcks.map { it.id })
                        assertEquals(listOf(4L, 5L, 6L), bobAcks.map { it.seq })
                        val aliceGot =
                            aliceEvents.awaitUntil("3 messages from bob") { events -> events.count { it is ClientEvent.Message && it.from == "bob" } >= 3 }
                                .filterIsInstance<ClientEvent.Message>().filter { it.from == "bob" }
                        assertEquals(listOf(4L, 5L, 6L), aliceGot.map { it.seq })
                        assertEquals(listOf("hi alice 1", "hi alice 2", "hi alice 3"), aliceGot.map { it.text() })

                        val stored = serverEvents.awaitCount<ServerEvent.Message>(6, "messages stored")
                        assertEquals((1L..6L).toList(), stored.map { it.seq })
                        assertEquals(listOf("alice", "alice", "alice", "bob", "bob", "bob"), stored.map { it.from })
                        val connected = serverEvents.seen<ServerEvent.Connected>().map { it.user }.toSet()
                        assertEquals(setOf("alice", "bob"), connected)

                        assertEquals(listOf("alice", "bob"), server.online())
                        assertEquals(6L, server.stats().messagesStored)
                        assertEquals(2L, server.stats().usersOnline)
                        assertEquals((1L..6L).toList(), historySeqs(server.history("dm:alice:bob", before = 0, limit = 10)))
                        assertEquals(listOf(3L), historySeqs(server.history("dm:alice:bob", before = 4, limit = 1)))

                        // The spec: "The host's own sends are not delivered back to it as messages";
                        // it learns they are stored from their acks.
                        val ownToAlice = aliceEvents.seen<ClientEvent.Message>().filter { it.from == "alice" }.map { "${it.conv}#${it.seq}" }
                        assertEquals(emptyList<String>(), ownToAlice, "alice's own sends came back as messages")
                        val ownToBob = bobEvents.seen<ClientEvent.Message>().filter { it.from == "bob" }.map { "${it.conv}#${it.seq}" }
                        assertEquals(emptyList<String>(), ownToBob, "bob's own sends came back as messages")
                    }
                }
            }
        }

    @Test
    fun `groups, requests, hints and the host's administration`() =
        runTest {
            ImbedServer(serverConfig()).use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                server.createGroup("team", closed = true)
                server.createGroup("staff", closed = true)
                server.addMember("team", "alice")
                server.addMember("team", "bob")
                ImbedClient(clientConfig(server.port, "alice")).use { alice ->
                    ImbedClient(clientConfig(server.port, "bob")).use { bob ->
                        val aliceEvents = EventRecorder(this, alice.events)
                        val bobEvents = EventRecorder(this, bob.events)
                        alice.start()
                        bob.start()
                        aliceEvents.awaitState(ConnectionState.CONNECTED)
                        bobEvents.awaitState(ConnectionState.CONNECTED)

                        // The host's messages: direct, and to a group it is not a member of.
                        assertEquals(1L, server.send("host", "alice", """{"text":"welcome"}""", clientId = "w-1"))
                        assertEquals(1L, server.send("host", "alice", """{"text":"welcome"}""", clientId = "w-1"))
                        val groupSeq = server.sendGroup("host", "team", """{"text":"hello team"}""")
                        assertEquals(1L, groupSeq)
                        val fromHost = aliceEvents.awaitCount<ClientEvent.Message>(2, "host messages to alice")
                        assertEquals(setOf("dm:alice:host" to 1L, "g:team" to 1L), fromHost.map { it.conv to it.seq }.toSet())

                        // A client's group send reaches the other member.
                        val clientId = bob.sendGroup("team", """{"text":"from bob"}""")
                        val ack = bobEvents.awaitUntil("bob's group ack") { events -> events.any { it is ClientEvent.Ack && it.id == clientId } }
                            .filterIsInstance<ClientEvent.Ack>().single { it.id == clientId }
                        assertEquals("g:team" to 2L, ack.conv to ack.seq)
                        aliceEvents.awaitUntil("bob's group message") { events -> events.any { it is ClientEvent.Message && it.conv == "g:team" && it.seq == 2L } }

                        // A request gets its reply as a frame with its id, given or added.
                        val membersId = alice.request("""{"type":"members","group":"team"}""")
                        val members = aliceEvents.awaitUntil("the members reply") { events -> events.any { it is ClientEvent.Frame && it.id == membersId } }
                            .filterIsInstance<ClientEvent.Frame>().single { it.id == membersId }
                        assertEquals("members", members.type)
                        assertEquals(listOf("alice", "bob"), members.frameJson.toJsonObject()["members"]!!.jsonArray.map { it.jsonPrimitive.content })
                        assertEquals("j-1", alice.request("""{"type":"join","id":"j-1","group":"staff"}"""))
                        val joinRefused = aliceEvents.awaitUntil("the join reply") { events -> events.any { it is ClientEvent.Frame && it.id == "j-1" } }
                            .filterIsInstance<ClientEvent.Frame>().single { it.id == "j-1" }
                        assertEquals("error", joinRefused.type)
                        assertEquals("forbidden", joinRefused.frameJson.toJsonObject()["code"]!!.jsonPrimitive.content)
                        // A send (like edit, delete, react, unreact) goes through the outbox: acked as a send is.
                        val requestedSend = alice.request("""{"type":"send","to":"bob","body":1}""")
                        val requestedAck = aliceEvents.awaitUntil("the requested send's ack") { events -> events.any { it is ClientEvent.Ack && it.id == requestedSend } }
                            .filterIsInstance<ClientEvent.Ack>().single { it.id == requestedSend }
                        assertEquals("dm:alice:bob", requestedAck.conv)
                        // What the client manages itself, and what is no request at all.
                        assertEquals(Status.INVALID_ARGUMENT, assertThrows<ImbedException> { alice.request("""{"type":"sync"}""") }.status)
                        assertEquals(Status.INVALID_ARGUMENT, assertThrows<ImbedException> { alice.request("[]") }.status)

                        // A refused send leaves the outbox as send_failed.
                        val refusedId = alice.sendGroup("elsewhere", """{"text":"nobody"}""")
                        val refused = aliceEvents.awaitUntil("the refused send") { events -> events.any { it is ClientEvent.SendFailed && it.id == refusedId } }
                            .filterIsInstance<ClientEvent.SendFailed>().single()
                        assertEquals("forbidden", refused.code)

                        // Membership changes reach the host and the members.
                        server.removeMember("team", "bob")
                        serverEvents.awaitUntil("bob left") { events -> events.any { it is ServerEvent.Member && it.user == "bob" && !it.joined } }
                        aliceEvents.awaitUntil("alice told bob left") { events ->
                            events.any { it is ClientEvent.Frame && it.type == "member" && it.frameJson.toJsonObject()["user"]!!.jsonPrimitive.content == "bob" }
                        }

                        // Background pauses, foreground reconnects; a kick is survived by reconnecting.
                        var mark = bobEvents.all.size
                        bob.hint(Hint.BACKGROUND)
                        bobEvents.awaitState(ConnectionState.PAUSED, after = mark)
                        assertEquals(Status.NOT_CONNECTED, assertThrows<ImbedException> { bob.request("""{"type":"members","group":"team"}""") }.status)
                        mark = bobEvents.all.size
                        bob.hint(Hint.FOREGROUND)
                        bobEvents.awaitState(ConnectionState.CONNECTED, after = mark)
                        mark = aliceEvents.all.size
                        assertEquals(1, server.kick("alice"))
                        assertEquals(0, server.kick("nobody"))
                        serverEvents.awaitUntil("alice kicked") { events -> events.any { it is ServerEvent.Disconnected && it.user == "alice" && it.reason == "kicked" } }
                        aliceEvents.awaitState(ConnectionState.CONNECTED, after = mark)
                        alice.hint(Hint.NETWORK_CHANGED)
                    }
                }
            }
        }
}
