package dev.imbed

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.TimeUnit

/** Devices and push requests (`imbed_server_push_done`, `_pending_pushes`, `_devices`, `IMBED_EVENT_PUSH`) against the real library. */
@Timeout(60, unit = TimeUnit.SECONDS)
class PushTest {
    /** A loopback server in dev auth with push requests on, and the further `push` settings [push]. */
    private fun pushServer(push: String = ""): ImbedServer =
        ImbedServer("""{"listen":"127.0.0.1:0","auth":{"mode":"dev"},"push":{"enabled":true$push}}""")

    /** A client of [user] on [device], reconnecting quickly. */
    private fun deviceClient(port: Int, user: String, device: String): ImbedClient =
        ImbedClient(
            """{"url":"ws://127.0.0.1:$port/ws","token":"$user","device":"$device","reconnect":{"initial_ms":50,"max_ms":500}}""",
        )

    /** The message push requests for [seq] among [events]. */
    private fun pushesOf(events: List<ServerEvent>, seq: Long): List<ServerEvent.Push> =
        events.filterIsInstance<ServerEvent.Push>().filter { it.kind == PushKind.MESSAGE && it.seq == seq }

    /** The first push request for [seq] (of a direct conversation: seqs are per conversation). */
    private suspend fun EventRecorder<ServerEvent>.awaitPush(seq: Long): ServerEvent.Push =
        pushesOf(awaitUntil("a push request for seq $seq") { pushesOf(it, seq).isNotEmpty() }, seq).first()

    private suspend fun EventRecorder<ClientEvent>.awaitReply(id: String): ClientEvent.Frame =
        awaitUntil("the reply to $id") { events -> events.any { it is ClientEvent.Frame && it.id == id } }
            .filterIsInstance<ClientEvent.Frame>().single { it.id == id }

    @Test
    fun `an offline user gets a push request per message, and pushDone ends it`() =
        runTest {
            pushServer().use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                assertEquals(emptyList<PendingPush>(), server.pendingPushes())

                assertEquals(1L, server.send("alice", "bob", """{"text":"one"}""", clientId = "m-1"))
                assertEquals(2L, server.send("alice", "bob", """{"text":"two"}"""))
                // A retried send stores nothing new, so it asks for no second push either.
                assertEquals(1L, server.send("alice", "bob", """{"text":"one"}""", clientId = "m-1"))
                // Recorded in the message's own commit: pending as soon as the send returns.
                val pending = server.pendingPushes()
                assertEquals(
                    listOf(
                        PendingPush(0, PushKind.MESSAGE, "bob", "dm:alice:bob", 1, "alice"),
                        PendingPush(0, PushKind.MESSAGE, "bob", "dm:alice:bob", 2, "alice"),
                    ),
                    pending.map { it.copy(pushId = 0) },
                )

                val first = serverEvents.awaitPush(1)
                val second = serverEvents.awaitPush(2)
                assertEquals(pending.map { it.pushId }, listOf(first.pushId, second.pushId))
                assertEquals("bob", first.user)
                assertEquals("dm:alice:bob", first.conv)
                assertEquals("alice", first.from)
                assertEquals("bob:dm:alice:bob:1", first.collapseKey)
                assertEquals("bob:dm:alice:bob:2", second.collapseKey)
                // Bob never connected: no device to name. By the second, both messages are unread.
                assertEquals(emptyList<PushDevice>(), first.devices)
                assertEquals(2, second.unread)
                assertNull(first.group)
                assertNull(first.previewJson, "preview is off by default")

                server.pushDone(first.pushId)
                server.pushDone(second.pushId, delivered = false, reason = "the gateway said no")
                assertEquals(emptyList<PendingPush>(), server.pendingPushes())
                val again = assertThrows<ImbedException> { server.pushDone(first.pushId) }
                assertEquals(Status.NOT_FOUND, again.status)
                assertEquals(Status.NOT_FOUND, assertThrows<ImbedException> { server.pushDone(987_654) }.status)
            }
        }

    @Test
    fun `push calls need a started server`() {
        pushServer().use { server ->
            assertEquals(Status.NOT_STARTED, assertThrows<ImbedException> { server.pendingPushes() }.status)
            assertEquals(Status.NOT_STARTED, assertThrows<ImbedException> { server.devices() }.status)
            assertEquals(Status.NOT_STARTED, assertThrows<ImbedException> { server.pushDone(1) }.status)
            server.start()
            assertEquals(emptyMap<String, List<OnlineDevice>>(), server.devices())
        }
    }

    @Test
    fun `a request not ended is offered again with the same id, and a group's says which group, with a preview`() =
        runTest {
            pushServer(""","retry_after_ms":200,"preview":true""").use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                server.createGroup("team", closed = true)
                server.addMember("team", "bob")
                server.sendGroup("alice", "team", """{"text":"standup?"}""")

                val pushes = pushesOf(serverEvents.awaitUntil("the request offered twice") { pushesOf(it, 1).size >= 2 }, 1)
                assertEquals(1, pushes.map { it.pushId }.distinct().size, "offered again under another id: $pushes")
                val push = pushes.first()
                assertEquals("g:team", push.conv)
                assertEquals("team", push.group)
                assertEquals("""{"text":"standup?"}""", push.previewJson)
                server.pushDone(push.pushId)
                assertEquals(emptyList<PendingPush>(), server.pendingPushes())
            }
        }

    @Test
    fun `devices lists a connected client's device, and its events carry it`() =
        runTest {
            pushServer().use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                deviceClient(server.port, "bob", "phone-1").use { bob ->
                    val bobEvents = EventRecorder(this, bob.events)
                    bob.start()
                    bobEvents.awaitState(ConnectionState.CONNECTED)
                    val connected = serverEvents.awaitCount<ServerEvent.Connected>(1, "bob connected").single()
                    assertEquals("bob", connected.user)
                    assertEquals("phone-1", connected.device)
                    assertEquals(mapOf("bob" to listOf(OnlineDevice("phone-1", DeviceState.FOREGROUND, 1))), server.devices())

                    // In the foreground he is looking: nothing to push.
                    server.send("alice", "bob", """{"text":"seen live"}""")
                    assertEquals(emptyList<PendingPush>(), server.pendingPushes())

                    // His app says it went to the background while the connection stays.
                    assertEquals("d1", bob.request("""{"type":"device","id":"d1","state":"background"}"""))
                    assertEquals("ok", bobEvents.awaitReply("d1").type)
                    assertEquals(mapOf("bob" to listOf(OnlineDevice("phone-1", DeviceState.BACKGROUND, 1))), server.devices())
                    server.send("alice", "bob", """{"text":"in the background"}""")
                    val whileBackground = serverEvents.awaitPush(2)
                    assertEquals(listOf(PushDevice("phone-1", DeviceState.BACKGROUND)), whileBackground.devices)
                    server.pushDone(whileBackground.pushId)

                    // The client role closes its connection in the background: no session, no state.
                    bob.hint(Hint.BACKGROUND)
                    val disconnected = serverEvents.awaitCount<ServerEvent.Disconnected>(1, "bob disconnected").single()
                    assertEquals("phone-1", disconnected.device)
                    serverEvents.awaitUntil("bob's device gone from devices()") { _ -> server.devices().isEmpty() }
                    server.send("alice", "bob", """{"text":"while away"}""")
                    val whileAway = serverEvents.awaitPush(3)
                    assertEquals(listOf(PushDevice("phone-1", null)), whileAway.devices)
                    server.pushDone(whileAway.pushId)
                }
            }
        }

    @Test
    fun `reading past pushed messages replaces their requests with one badge request`() =
        runTest {
            pushServer().use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                server.send("alice", "bob", """{"text":"one"}""")
                server.send("alice", "bob", """{"text":"two"}""")
                serverEvents.awaitPush(2)

                deviceClient(server.port, "bob", "phone-1").use { bob ->
                    val bobEvents = EventRecorder(this, bob.events)
                    bob.start()
                    bobEvents.awaitCount<ClientEvent.Message>(2, "bob's messages synced")
                    bob.request("""{"type":"read","id":"r1","conv":"dm:alice:bob","seq":2}""")
                    val read =
                        serverEvents.awaitUntil("a read request") { events -> events.any { it is ServerEvent.Push && it.kind == PushKind.READ } }
                            .filterIsInstance<ServerEvent.Push>().single { it.kind == PushKind.READ }
                    assertEquals("bob", read.user)
                    assertEquals("dm:alice:bob", read.conv)
                    assertEquals(2L, read.seq)
                    assertNull(read.from)
                    assertEquals(0, read.unread)
                    assertEquals("bob:dm:alice:bob:read", read.collapseKey)
                    assertEquals(listOf(PendingPush(read.pushId, PushKind.READ, "bob", "dm:alice:bob", 2, null)), server.pendingPushes())
                    server.pushDone(read.pushId)
                    assertEquals(emptyList<PendingPush>(), server.pendingPushes())
                }
            }
        }
}
