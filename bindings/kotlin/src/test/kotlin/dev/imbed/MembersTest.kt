package dev.imbed

import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.jsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.TimeUnit

/** `ImbedServer.members` (`imbed_server_members`) against the real library, and what closing a group does to its members. */
@Timeout(60, unit = TimeUnit.SECONDS)
class MembersTest {
    /** The reply to the request [id], once it came. */
    private suspend fun EventRecorder<ClientEvent>.reply(id: String): ClientEvent.Frame =
        awaitUntil("the reply to $id") { events -> events.any { it is ClientEvent.Frame && it.id == id } }
            .filterIsInstance<ClientEvent.Frame>().single { it.id == id }

    @Test
    fun `a closed group's members are those the host added, sorted`() {
        ImbedServer(serverConfig()).use { server ->
            server.start()
            server.createGroup("team", closed = true)
            assertEquals(GroupMembers(closed = true, members = emptyList()), server.members("team"))

            for (user in listOf("carol", "alice", "bob")) server.addMember("team", user)
            server.addMember("team", "alice")
            assertEquals(GroupMembers(closed = true, members = listOf("alice", "bob", "carol")), server.members("team"))

            server.removeMember("team", "bob")
            server.removeMember("team", "nobody")
            assertEquals(GroupMembers(closed = true, members = listOf("alice", "carol")), server.members("team"))

            // Closing a group that is already closed keeps its members; opening it keeps them too.
            server.createGroup("team", closed = true)
            assertEquals(GroupMembers(closed = true, members = listOf("alice", "carol")), server.members("team"))
            server.createGroup("team", closed = false)
            assertEquals(GroupMembers(closed = false, members = listOf("alice", "carol")), server.members("team"))

            // Each group has its own members.
            server.createGroup("other", closed = false)
            assertEquals(GroupMembers(closed = false, members = emptyList()), server.members("other"))
        }
    }

    @Test
    fun `members of a missing group throws NOT_FOUND, of an invalid id INVALID_ARGUMENT`() {
        ImbedServer(serverConfig()).use { server ->
            assertEquals(Status.NOT_STARTED, assertThrows<ImbedException> { server.members("team") }.status)
            server.start()
            val missing = assertThrows<ImbedException> { server.members("team") }
            assertEquals(Status.NOT_FOUND, missing.status)
            assertTrue(missing.message.orEmpty().isNotEmpty())
            assertEquals(Status.INVALID_ARGUMENT, assertThrows<ImbedException> { server.members("not a group") }.status)
            assertEquals(Status.INVALID_ARGUMENT, assertThrows<ImbedException> { server.members("te\u0000am") }.status)

            // Removing the last member leaves the group, empty.
            server.createGroup("team", closed = true)
            server.addMember("team", "alice")
            server.removeMember("team", "alice")
            assertEquals(GroupMembers(closed = true, members = emptyList()), server.members("team"))

            server.stop()
            assertEquals(Status.STOPPED, assertThrows<ImbedException> { server.members("team") }.status)
        }
    }

    @Test
    fun `closing an open group that a user joined empties it and tells the user`() =
        runTest {
            ImbedServer(serverConfig()).use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                ImbedClient(clientConfig(server.port, "alice")).use { alice ->
                    val aliceEvents = EventRecorder(this, alice.events)
                    alice.start()
                    aliceEvents.awaitState(ConnectionState.CONNECTED)

                    // Alice joins the group herself, which creates it open; the host adds bob.
                    assertEquals("j-1", alice.request("""{"type":"join","id":"j-1","group":"lobby"}"""))
                    assertEquals("ok", aliceEvents.reply("j-1").type)
                    server.addMember("lobby", "bob")
                    assertEquals(GroupMembers(closed = false, members = listOf("alice", "bob")), server.members("lobby"))

                    // Closing it removes everyone who was in it; those who were online are told.
                    server.createGroup("lobby", closed = true)
                    assertEquals(GroupMembers(closed = true, members = emptyList()), server.members("lobby"))
                    val left =
                        aliceEvents.awaitUntil("alice told she left") { events -> events.any { it.isMemberFrame("alice", joined = false) } }
                            .first { it.isMemberFrame("alice", joined = false) } as ClientEvent.Frame
                    assertEquals("lobby", left.frameJson.toJsonObject()["group"]!!.jsonPrimitive.content)
                    serverEvents.awaitUntil("the host told alice and bob left") { events ->
                        listOf("alice", "bob").all { user ->
                            events.any { it is ServerEvent.Member && it.group == "lobby" && it.user == user && !it.joined }
                        }
                    }

                    // She cannot come back by herself; the host can add her.
                    assertEquals("j-2", alice.request("""{"type":"join","id":"j-2","group":"lobby"}"""))
                    val refused = aliceEvents.reply("j-2")
                    assertEquals("error", refused.type)
                    assertEquals("forbidden", refused.frameJson.toJsonObject()["code"]!!.jsonPrimitive.content)
                    assertEquals(GroupMembers(closed = true, members = emptyList()), server.members("lobby"))
                    server.addMember("lobby", "alice")
                    assertEquals(GroupMembers(closed = true, members = listOf("alice")), server.members("lobby"))
                }
            }
        }

    private fun ClientEvent.isMemberFrame(user: String, joined: Boolean): Boolean {
        if (this !is ClientEvent.Frame || type != "member") return false
        val frame = frameJson.toJsonObject()
        return frame["user"]?.jsonPrimitive?.content == user && frame["joined"]?.jsonPrimitive?.boolean == joined
    }
}
