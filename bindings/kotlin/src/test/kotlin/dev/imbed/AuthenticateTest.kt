package dev.imbed

import kotlinx.serialization.json.jsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import java.net.URI
import java.net.http.HttpClient
import java.net.http.WebSocket
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionStage
import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** The auth mode `callback` with a Kotlin [ImbedAuthenticator], seen by real WebSocket clients. */
@Timeout(60, unit = TimeUnit.SECONDS)
class AuthenticateTest {
    private val httpClient = HttpClient.newHttpClient()

    /** A server in the auth mode `callback` on a free loopback port. */
    private fun callbackServer(authenticator: ImbedAuthenticator): ImbedServer =
        ImbedServer("""{"listen":"127.0.0.1:0","auth":{"mode":"callback"}}""", authenticator = authenticator)

    /** What a WebSocket client received: its text frames, and the close code once closed. */
    private class Received : WebSocket.Listener {
        private val partial = StringBuilder()
        val texts = LinkedBlockingQueue<String>()
        val closeCode = CompletableFuture<Int>()

        override fun onText(webSocket: WebSocket, data: CharSequence, last: Boolean): CompletionStage<*>? {
            partial.append(data)
            if (last) {
                texts.add(partial.toString())
                partial.setLength(0)
            }
            webSocket.request(1)
            return null
        }

        override fun onClose(webSocket: WebSocket, statusCode: Int, reason: String): CompletionStage<*>? {
            closeCode.complete(statusCode)
            return null
        }

        override fun onError(webSocket: WebSocket, error: Throwable) {
            closeCode.completeExceptionally(error)
        }

        /** The next text frame, parsed; fails after ten seconds without one. */
        fun nextFrame(): Map<String, String> {
            val text = texts.poll(10, TimeUnit.SECONDS) ?: throw AssertionError("no frame within 10 s")
            return text.toJsonObject().mapValues { it.value.jsonPrimitive.content }
        }
    }

    /** Opens a WebSocket to the server's `/ws` with `Authorization: Bearer [token]`. */
    private fun connect(server: ImbedServer, token: String): Pair<WebSocket, Received> {
        val received = Received()
        val webSocket =
            httpClient.newWebSocketBuilder()
                .header("Authorization", "Bearer $token")
                .buildAsync(URI("ws://127.0.0.1:${server.port}/ws"), received)
                .get(10, TimeUnit.SECONDS)
        return webSocket to received
    }

    /** Asserts that [token] is refused: an `unauthorized` error frame, then close code 1008. */
    private fun assertRefused(server: ImbedServer, token: String) {
        val (_, received) = connect(server, token)
        val refusal = received.nextFrame()
        assertEquals("error", refusal["type"], "$refusal")
        assertEquals("unauthorized", refusal["code"], "$refusal")
        assertEquals(1008, received.closeCode.get(10, TimeUnit.SECONDS))
    }

    @Test
    fun `a token the authenticator maps is that user's, and a token it refuses is refused`() =
        runTest {
            val users = mapOf("token-of-alice" to "alice", "token-of-bob" to "bob")
            callbackServer { token -> users[token] }.use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()

                val (alice, aliceReceived) = connect(server, "token-of-alice")
                val welcome = aliceReceived.nextFrame()
                assertEquals("welcome", welcome["type"], "$welcome")
                assertEquals("alice", welcome["user"], "$welcome")
                val connected = serverEvents.awaitCount<ServerEvent.Connected>(1, "alice connected").single()
                assertEquals("alice", connected.user)

                assertRefused(server, "token-of-mallory")
                assertEquals(listOf("alice"), server.online())
                alice.sendClose(WebSocket.NORMAL_CLOSURE, "done").get(10, TimeUnit.SECONDS)
            }
        }

    @Test
    fun `an authenticator that answers user slash device names the session's device`() =
        runTest {
            callbackServer { token -> if (token == "token-of-alice-tablet") "alice/tablet" else null }.use { server ->
                val serverEvents = EventRecorder(this, server.events)
                server.start()
                val (alice, received) = connect(server, "token-of-alice-tablet")
                val welcome = received.nextFrame()
                assertEquals("alice", welcome["user"], "$welcome")
                assertEquals("tablet", welcome["device"], "$welcome")
                val connected = serverEvents.awaitCount<ServerEvent.Connected>(1, "alice connected").single()
                assertEquals("alice" to "tablet", connected.user to connected.device)
                assertEquals(listOf("tablet"), server.devices()["alice"]?.map { it.device })
                alice.sendClose(WebSocket.NORMAL_CLOSURE, "done").get(10, TimeUnit.SECONDS)
            }
        }

    @Test
    fun `an authenticator that throws or answers an id too long refuses the token`() {
        val tooLong = "a".repeat(ImbedLibrary.MAX_ID_BYTES + 1)
        val authenticator =
            ImbedAuthenticator { token ->
                when (token) {
                    "throws" -> throw IllegalStateException("the user database is down")
                    "too-long" -> tooLong
                    else -> token
                }
            }
        callbackServer(authenticator).use { server ->
            server.start()
            assertRefused(server, "throws")
            assertRefused(server, "too-long")
            val (_, received) = connect(server, "carol")
            assertEquals("carol", received.nextFrame()["user"])
        }
    }

    @Test
    fun `the authenticator runs on several engine threads at once`() {
        // Each call waits until all of them are in progress: calls made one at a time would time
        // out here and refuse their tokens.
        val connections = 4
        val allInProgress = CountDownLatch(connections)
        val authenticator =
            ImbedAuthenticator { token ->
                allInProgress.countDown()
                if (allInProgress.await(5, TimeUnit.SECONDS)) token else null
            }
        callbackServer(authenticator).use { server ->
            server.start()
            val clients = (1..connections).map { connect(server, "user-$it") }
            val welcomed = clients.map { (_, received) -> received.nextFrame()["user"] }
            assertEquals((1..connections).map { "user-$it" }, welcomed)
        }
    }
}
