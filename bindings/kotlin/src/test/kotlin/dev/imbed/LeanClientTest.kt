package dev.imbed

import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertSame
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Tag
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import java.io.File
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException
import kotlin.concurrent.thread
import kotlin.time.Duration.Companion.seconds

/**
 * The bindings on the client-only library of `scripts/build-client-lib`, which has no
 * `imbed_server_*` function: clients work, and [ImbedServer] fails saying why. The server is
 * `build/imbed-host` in a process of its own, since a process loads one libimbed.
 *
 * Runs only in the `lean-client` execution of pom.xml, a JVM of its own whose `imbed.library.path`
 * is `target/client/release-small`; skipped elsewhere and when that library has not been built.
 */
@Tag("lean-client")
@Timeout(60, unit = TimeUnit.SECONDS)
class LeanClientTest {
    companion object {
        /** The client-only library this JVM must load. */
        private lateinit var leanLibrary: File

        /** The full build's host, the server the clients talk to. */
        private lateinit var hostExecutable: File

        @JvmStatic
        @BeforeAll
        fun leanLibraryIsBuilt() {
            val directory = System.getProperty("imbed.library.path")
            val host = System.getProperty("imbed.test.host")
            assumeTrue(
                directory != null && host != null,
                "runs only in the lean-client execution of bindings/kotlin/pom.xml, which names the client-only library",
            )
            leanLibrary = File(directory, System.mapLibraryName("imbed"))
            assumeTrue(
                leanLibrary.isFile,
                "$leanLibrary is missing: build the client-only library with scripts/build-client-lib (make lib-client)",
            )
            hostExecutable = File(host)
            assumeTrue(hostExecutable.canExecute(), "$hostExecutable is missing: build it with make host")
        }
    }

    @Test
    fun `the client-only library is the one loaded and has no server`() {
        assertEquals(leanLibrary.canonicalFile, ImbedNative.library.file.canonicalFile)
        assertEquals(ImbedLibrary.HEADER_VERSION, ImbedLibrary.version)
        // A shared function, bound with the client's.
        assertEquals("ok", Status.OK.description)

        val first = assertThrows<IllegalStateException> { ImbedServer(serverConfig()) }
        val message = first.message.orEmpty()
        for (expected in listOf("built without", "server role", ImbedNative.library.file.path, "scripts/build-client-lib", "`server` cargo feature")) {
            assertTrue(expected in message, "the error does not say \"$expected\": $message")
        }
        assertTrue(first.cause is UnsatisfiedLinkError, "JNA's error is not the cause: ${first.cause}")
        // Every attempt fails the same way, not with NoClassDefFoundError after the first.
        val second = assertThrows<IllegalStateException> { ImbedServer(serverConfig()) }
        assertEquals(message, second.message)
        assertSame(first.cause, second.cause)
    }

    @Test
    fun `two clients on the client-only library chat through imbed-host`() =
        runTest {
            Host(hostExecutable, File("target/lean-client-host.log")).use { host ->
                ImbedClient(clientConfig(host.port, "alice")).use { alice ->
                    ImbedClient(clientConfig(host.port, "bob")).use { bob ->
                        val aliceEvents = EventRecorder(this, alice.events)
                        val bobEvents = EventRecorder(this, bob.events)
                        alice.start()
                        bob.start()
                        aliceEvents.awaitState(ConnectionState.CONNECTED)
                        bobEvents.awaitState(ConnectionState.CONNECTED)

                        val id = alice.send("bob", """{"text":"hi from the lean library"}""")
                        val ack =
                            aliceEvents.awaitUntil("alice's ack") { events -> events.any { it is ClientEvent.Ack && it.id == id } }
                                .filterIsInstance<ClientEvent.Ack>().single { it.id == id }
                        assertEquals("dm:alice:bob", ack.conv)
                        val got = bobEvents.awaitCount<ClientEvent.Message>(1, "alice's message to bob").single()
                        assertEquals(Triple("alice", "dm:alice:bob", ack.seq), Triple(got.from, got.conv, got.seq))
                        val body = got.messageJson.toJsonObject()["body"]!!.jsonObject
                        assertEquals("hi from the lean library", body["text"]!!.jsonPrimitive.content)

                        val stored = host.awaitEvent("the host's message event") { it["event"]?.jsonPrimitive?.content == "message" }
                        assertEquals(ack.seq, stored["message"]!!.jsonObject["seq"]!!.jsonPrimitive.long)
                    }
                }
            }
        }

    /**
     * `imbed-host` on 127.0.0.1, port chosen by the system, dev auth, memory store. Its stdout (the
     * banner, then one JSON event per line) is read on a thread of its own, so a full pipe never
     * stops the host; its logs go to [log].
     */
    private class Host(executable: File, private val log: File) : AutoCloseable {
        private val process =
            ProcessBuilder(executable.path, "--listen", "127.0.0.1:0", "--dev-auth", "--db", ":memory:", "--no-web")
                .redirectError(log.also { it.parentFile.mkdirs() })
                .start()
        private val banner = CompletableFuture<String>()
        private val events = MutableStateFlow<List<JsonObject>>(emptyList())

        /** The port the host listens on, from its banner. */
        val port: Int

        init {
            thread(isDaemon = true, name = "imbed-host-stdout") {
                process.inputStream.bufferedReader().useLines { lines ->
                    for (line in lines) {
                        if (!banner.isDone) banner.complete(line) else events.update { it + line.toJsonObject() }
                    }
                }
                banner.complete("")
            }
            // Waiting on the future, not on the pipe, so a silent host fails the test instead of hanging it.
            val first =
                try {
                    banner.get(20, TimeUnit.SECONDS)
                } catch (e: TimeoutException) {
                    failAndStop("imbed-host printed nothing in 20 s; its log is $log")
                }
            port = Regex("""^listening on ws://127\.0\.0\.1:(\d+)/ws$""").find(first)?.groupValues?.get(1)?.toInt()
                ?: failAndStop("imbed-host printed no banner (got \"$first\"); its log is $log")
        }

        /** Waits until the host printed an event matching [condition], and returns it. */
        suspend fun awaitEvent(what: String, condition: (JsonObject) -> Boolean): JsonObject =
            withTimeoutOrNull(20.seconds) { events.first { seen -> seen.any(condition) } }?.first(condition)
                ?: fail("timed out waiting for $what; the host printed:\n${events.value.joinToString("\n")}")

        private fun failAndStop(message: String): Nothing {
            process.destroyForcibly()
            throw AssertionError(message)
        }

        /** Stops the host as its operator would ("quit"), and kills it only if it does not exit. */
        override fun close() {
            try {
                process.outputStream.bufferedWriter().use { it.write("quit\n") }
            } catch (e: java.io.IOException) {
                // It has exited already; waitFor says how.
            }
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor()
                fail<Unit>("imbed-host did not exit on quit; its log is $log")
            }
            assertEquals(0, process.exitValue(), "imbed-host exit status; its log is $log")
        }
    }
}
