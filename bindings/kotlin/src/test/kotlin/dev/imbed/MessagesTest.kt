package dev.imbed

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.util.concurrent.TimeUnit

/**
 * Uploads, replies, edits, reactions, search and deletes (`imbed_client_upload`, `imbed_client_request`
 * through the outbox, `imbed_server_search`, `imbed_server_delete`, `imbed_server_file`) against the
 * real library, on a SQLite server with a files directory.
 */
@Timeout(60, unit = TimeUnit.SECONDS)
class MessagesTest {
    /** A 1×1 PNG: the server takes its type from these bytes. */
    private val pixelPng: ByteArray =
        intArrayOf(
            0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
            0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
            0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
            0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
        ).map { it.toByte() }.toByteArray()

    /** A loopback server in dev auth storing in [directory], with uploads up to [maxBytes] in its `files`. */
    private fun filesServer(directory: File, maxBytes: Int = 2048): ImbedServer {
        val store = JsonPrimitive(File(directory, "server.db").path)
        val files = JsonPrimitive(File(directory, "files").path)
        return ImbedServer(
            """{"listen":"127.0.0.1:0","auth":{"mode":"dev"},"log_level":"off","store":{"path":$store},""" +
                """"files":{"dir":$files,"max_bytes":$maxBytes}}""",
        )
    }

    /** The seqs of the msg frames [frames], in their order. */
    private fun seqs(frames: List<String>): List<Long> = frames.map { it.toJsonObject()["seq"]!!.jsonPrimitive.long }

    /** The stored messages of `dm:alice:bob` by seq, from the host's history. */
    private fun ImbedServer.historyBySeq(): Map<Long, JsonObject> =
        Json.parseToJsonElement(history("dm:alice:bob", limit = 100)).jsonArray
            .map { it.jsonObject }
            .associateBy({ it["seq"]!!.jsonPrimitive.long }, { it })

    /** Waits for the ack of the outbox entry [id] and returns it. */
    private suspend fun EventRecorder<ClientEvent>.awaitAck(id: String): ClientEvent.Ack =
        awaitUntil("the ack of $id") { events -> events.any { it is ClientEvent.Ack && it.id == id } }
            .filterIsInstance<ClientEvent.Ack>().single { it.id == id }

    /** Waits for the refusal of the outbox entry [id] and returns it. */
    private suspend fun EventRecorder<ClientEvent>.awaitSendFailed(id: String): ClientEvent.SendFailed =
        awaitUntil("send_failed for $id") { events -> events.any { it is ClientEvent.SendFailed && it.id == id } }
            .filterIsInstance<ClientEvent.SendFailed>().single { it.id == id }

    @Test
    fun `alice uploads a picture and refers to it, bob replies and reacts, the host finds, searches and deletes`(
        @TempDir directory: File,
    ) = runTest {
        filesServer(directory).use { server ->
            server.start()
            ImbedClient(clientConfig(server.port, "alice")).use { alice ->
                ImbedClient(clientConfig(server.port, "bob")).use { bob ->
                    val aliceEvents = EventRecorder(this, alice.events)
                    val bobEvents = EventRecorder(this, bob.events)
                    alice.start()
                    aliceEvents.awaitState(ConnectionState.CONNECTED)

                    val pixel = File(directory, "pixel.png").apply { writeBytes(pixelPng) }
                    val uploaded = alice.upload(pixel.path)
                    assertTrue(Regex("[0-9a-f]{64}").matches(uploaded.id), "not a file id: ${uploaded.id}")
                    assertEquals(UploadedFile(uploaded.id, pixelPng.size.toLong(), "image/png"), uploaded)
                    // The same bytes are the same file; the bytes say PNG whatever the hint says.
                    assertEquals(uploaded, alice.upload(pixel.path, contentType = "text/plain"))

                    val sendId =
                        alice.request(
                            """{"type":"send","id":"m-pic","to":"bob","body":{"text":"the zebra plan","files":["${uploaded.id}"]}}""",
                        )
                    assertEquals("m-pic", sendId)
                    val ack = aliceEvents.awaitAck(sendId)
                    assertEquals("dm:alice:bob", ack.conv)
                    assertEquals(1L, ack.seq)

                    // Before bob starts: stored frames wait in his outbox, other requests need a connection.
                    val replyId = bob.request("""{"type":"send","to":"alice","body":{"text":"zebra agreed"},"reply_to":1}""")
                    val reactId = bob.request("""{"type":"react","conv":"dm:alice:bob","seq":1,"emoji":"👍"}""")
                    val notQueued = assertThrows<ImbedException> { bob.request("""{"type":"history","conv":"dm:alice:bob"}""") }
                    assertEquals(Status.NOT_CONNECTED, notQueued.status)
                    bob.start()
                    assertEquals(2L, bobEvents.awaitAck(replyId).seq)
                    assertEquals(3L, bobEvents.awaitAck(reactId).seq)

                    val file = server.file(uploaded.id)
                    assertEquals(StoredFile(file.path, pixelPng.size.toLong(), "image/png"), file)
                    assertTrue(file.path.startsWith(File(directory, "files").path + File.separator), file.path)
                    assertArrayEquals(pixelPng, File(file.path).readBytes())

                    val everywhere = server.search("zebra")
                    assertEquals(listOf(2L, 1L), seqs(everywhere.messagesJson), "newest first: $everywhere")
                    assertFalse(everywhere.more)
                    assertNull(everywhere.next)
                    assertEquals(everywhere, server.search("zebra", conv = "dm:alice:bob"))
                    assertEquals(SearchResults(emptyList(), false, null), server.search("zebra", conv = "dm:alice:carol"))
                    assertEquals(listOf(1L), seqs(server.search("ZÈBRA plan").messagesJson))
                    val first = server.search("zebra", limit = 1)
                    assertEquals(listOf(2L), seqs(first.messagesJson))
                    assertTrue(first.more)
                    val second = server.search("zebra", after = first.next!!, limit = 1)
                    assertEquals(SearchResults(second.messagesJson, false, null), second)
                    assertEquals(listOf(1L), seqs(second.messagesJson))
                    val found = second.messagesJson.single().toJsonObject()
                    assertEquals(listOf("bob"), found["reactions"]!!.jsonObject["👍"]!!.jsonArray.map { it.jsonPrimitive.content })

                    // An edit through the outbox: found by its new text, the event itself never.
                    val editId = alice.request("""{"type":"edit","conv":"dm:alice:bob","seq":1,"body":{"text":"the okapi plan"}}""")
                    assertEquals(4L, aliceEvents.awaitAck(editId).seq)
                    assertEquals(listOf(1L), seqs(server.search("okapi").messagesJson))
                    assertEquals(listOf(2L), seqs(server.search("zebra").messagesJson))

                    // The host deletes alice's message: a seq of its own, gone from search, a tombstone in history.
                    assertEquals(5L, server.delete("moderator", "dm:alice:bob", 1))
                    assertEquals(SearchResults(emptyList(), false, null), server.search("okapi"))
                    assertEquals(emptyList<String>(), server.search("plan", conv = "dm:alice:bob").messagesJson)
                    assertEquals(listOf(2L), seqs(server.search("zebra").messagesJson))
                    val history = server.historyBySeq()
                    assertEquals((1L..5L).toList(), history.keys.toList())
                    assertTrue(history[1]!!["deleted"]!!.jsonPrimitive.boolean, "no tombstone: ${history[1]}")
                    assertEquals(JsonNull, history[1]!!["body"])
                    assertEquals("alice", history[1]!!["from"]!!.jsonPrimitive.content)
                    assertEquals(1L, history[2]!!["reply_to"]!!.jsonPrimitive.long)
                    assertEquals("delete", history[5]!!["kind"]!!.jsonPrimitive.content)
                    assertEquals(1L, history[5]!!["target"]!!.jsonPrimitive.long)
                    assertEquals("moderator", history[5]!!["from"]!!.jsonPrimitive.content)

                    // Refused for good: an edit of the deleted message, a send referring to a file nobody uploaded.
                    val lateEdit = alice.request("""{"type":"edit","conv":"dm:alice:bob","seq":1,"body":{"text":"too late"}}""")
                    assertEquals("bad_request", aliceEvents.awaitSendFailed(lateEdit).code)
                    val unknownFile = alice.request("""{"type":"send","to":"bob","body":{"files":["${"1".repeat(64)}"]}}""")
                    assertEquals("not_found", aliceEvents.awaitSendFailed(unknownFile).code)
                }
            }
        }
    }

    @Test
    fun `the host's calls refuse what the engine refuses`(
        @TempDir directory: File,
    ) {
        filesServer(directory).use { server ->
            fun status(call: () -> Unit): Status = assertThrows<ImbedException> { call() }.status

            assertEquals(Status.NOT_STARTED, status { server.search("zebra") })
            assertEquals(Status.NOT_STARTED, status { server.delete("host", "dm:alice:bob", 1) })
            assertEquals(Status.NOT_STARTED, status { server.file("0".repeat(64)) })
            server.start()
            assertEquals(1L, server.send("alice", "bob", """{"text":"zebra"}"""))

            assertEquals(Status.INVALID_ARGUMENT, status { server.search("") })
            assertEquals(Status.INVALID_ARGUMENT, status { server.search("?! ...") })
            assertEquals(Status.INVALID_ARGUMENT, status { server.search("zebra", limit = 0) })
            assertEquals(Status.INVALID_ARGUMENT, status { server.search("zebra", limit = 101) })
            assertEquals(Status.INVALID_ARGUMENT, status { server.search("zebra", conv = "dm:bob:alice") })
            assertEquals(Status.INVALID_UTF8, status { server.search("zebra \uD800") })
            assertEquals(Status.INVALID_ARGUMENT, status { server.search("zebra\u0000") })

            assertEquals(Status.NOT_FOUND, status { server.delete("moderator", "dm:alice:bob", 999) })
            assertEquals(Status.INVALID_ARGUMENT, status { server.delete("moderator", "dm:alice:bob", 0) })
            assertEquals(Status.INVALID_ARGUMENT, status { server.delete("moderator", "alice", 1) })
            assertEquals(Status.INVALID_ARGUMENT, status { server.delete("not an id", "dm:alice:bob", 1) })
            assertEquals(Status.INVALID_UTF8, status { server.delete("moderator", "dm:alice:\uDC00", 1) })
            assertEquals(2L, server.delete("moderator", "dm:alice:bob", 1))
            assertEquals(Status.INVALID_ARGUMENT, status { server.delete("moderator", "dm:alice:bob", 1) })
            assertEquals(Status.INVALID_ARGUMENT, status { server.delete("moderator", "dm:alice:bob", 2) })

            assertEquals(Status.NOT_FOUND, status { server.file("0".repeat(64)) })
            assertEquals(Status.NOT_FOUND, status { server.file("not-a-file-id") })
            assertEquals(Status.INVALID_UTF8, status { server.file("\uD800") })

            ImbedClient(clientConfig(server.port, "alice")).use { alice ->
                val missing = assertThrows<ImbedException> { alice.upload(File(directory, "no-such.png").path) }
                assertEquals(Status.INVALID_ARGUMENT, missing.status)
                assertTrue(missing.message!!.contains("no-such.png"), missing.message)
                val big = File(directory, "big.bin").apply { writeBytes(ByteArray(2049) { 'x'.code.toByte() }) }
                val tooBig = assertThrows<ImbedException> { alice.upload(big.path) }
                assertEquals(Status.INVALID_ARGUMENT, tooBig.status)
                assertTrue(tooBig.message!!.contains("413"), tooBig.message)
                assertEquals(Status.INVALID_UTF8, status { alice.upload("\uD800") })
                assertEquals(Status.INVALID_UTF8, status { alice.upload(big.path, contentType = "text/\uDC00") })
                alice.stop()
                assertEquals(Status.STOPPED, status { alice.upload(big.path) })
            }
            server.close()
            assertEquals(Status.INVALID_HANDLE, status { server.search("zebra") })
            assertEquals(Status.INVALID_HANDLE, status { server.delete("moderator", "dm:alice:bob", 1) })
            assertEquals(Status.INVALID_HANDLE, status { server.file("0".repeat(64)) })
        }
    }

    @Test
    fun `without files dir there are no files, and nothing listening is an IO error`(
        @TempDir directory: File,
    ) {
        val pixel = File(directory, "pixel.png").apply { writeBytes(pixelPng) }
        val port: Int
        ImbedServer(serverConfig()).use { server ->
            server.start()
            port = server.port
            assertEquals(Status.INVALID_ARGUMENT, assertThrows<ImbedException> { server.file("0".repeat(64)) }.status)
            ImbedClient(clientConfig(port, "alice")).use { alice ->
                assertEquals(Status.INVALID_ARGUMENT, assertThrows<ImbedException> { alice.upload(pixel.path) }.status)
            }
        }
        ImbedClient(clientConfig(port, "alice")).use { alice ->
            assertEquals(Status.IO, assertThrows<ImbedException> { alice.upload(pixel.path) }.status)
        }
    }
}
