package dev.imbed

import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.jsonObject
import org.junit.jupiter.api.Assertions.fail
import java.net.InetAddress
import java.net.ServerSocket
import kotlin.time.Duration
import kotlin.time.Duration.Companion.seconds

/** A server configuration for tests: loopback, dev auth (the token is the user id). */
fun serverConfig(listen: String = "127.0.0.1:0", storePath: String? = null): String {
    val store = storePath?.let { ""","store":{"path":${JsonPrimitive(it)}}""" }.orEmpty()
    return """{"listen":"$listen","auth":{"mode":"dev"}$store}"""
}

/** A client configuration for [user] on the local server at [port], reconnecting quickly. */
fun clientConfig(port: Int, user: String): String =
    """{"url":"ws://127.0.0.1:$port/ws","token":"$user","reconnect":{"initial_ms":50,"max_ms":500}}"""

/** Runs a test body in a coroutine; unlike a bare `= runBlocking { }`, returns Unit, as JUnit needs to run the test at all. */
fun runTest(body: suspend CoroutineScope.() -> Unit) {
    runBlocking { body() }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
fun freePort(): Int = ServerSocket(0, 1, InetAddress.getByName("127.0.0.1")).use { it.localPort }

/** Parses a JSON object the engine wrote. */
fun String.toJsonObject(): JsonObject = Json.parseToJsonElement(this).jsonObject

/**
 * Collects a handle's events from the moment it is made, so a test can wait for a condition on
 * everything seen so far without losing the events it was not waiting for.
 */
class EventRecorder<E>(scope: CoroutineScope, events: Flow<E>) {
    private val seen = MutableStateFlow<List<E>>(emptyList())

    init {
        scope.launch(Dispatchers.Default) { events.collect { event -> seen.update { it + event } } }
    }

    /** Every event so far. */
    val all: List<E> get() = seen.value

    /** Every event so far of type [T]. */
    inline fun <reified T> seen(): List<T> = all.filterIsInstance<T>()

    /** Waits until [condition] holds on the events seen, and returns them; fails naming [what] after [timeout]. */
    suspend fun awaitUntil(what: String, timeout: Duration = 20.seconds, condition: (List<E>) -> Boolean): List<E> =
        withTimeoutOrNull(timeout) { seen.first(condition) }
            ?: fail("timed out after $timeout waiting for $what; saw:\n${all.joinToString("\n")}")

    /** Waits until [count] events of type [T] were seen, and returns them all. */
    suspend inline fun <reified T> awaitCount(count: Int, what: String, timeout: Duration = 20.seconds): List<T> =
        awaitUntil("$count × $what", timeout) { events -> events.count { it is T } >= count }.filterIsInstance<T>()
}

/** Waits until the client's connection is in [state] (seen after the events already checked). */
suspend fun EventRecorder<ClientEvent>.awaitState(state: ConnectionState, after: Int = 0): ClientEvent.State =
    awaitUntil("state $state") { events -> events.drop(after).any { it is ClientEvent.State && it.state == state } }
        .drop(after)
        .filterIsInstance<ClientEvent.State>()
        .first { it.state == state }
