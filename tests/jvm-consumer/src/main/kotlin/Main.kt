// A JVM program with only the imbed-kotlin jar (and what it depends on) on its class path: it checks
// that JNA loaded the libimbed.so the jar carries, then hosts a server and has two clients chat
// through it. Prints each step; exits 0 only when every step succeeded.
package consumer

import com.sun.jna.NativeLibrary
import com.sun.jna.Platform
import com.sun.jna.Pointer
import dev.imbed.ClientEvent
import dev.imbed.ConnectionState
import dev.imbed.ImbedClient
import dev.imbed.ImbedLibrary
import dev.imbed.ImbedServer
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import java.io.File
import kotlin.system.exitProcess
import kotlin.time.Duration.Companion.seconds

/** How long each wait may take. */
private val STEP = 20.seconds

private class Failure(message: String) : Exception(message)

private fun fail(message: String): Nothing = throw Failure(message)

fun main() {
    val ok =
        try {
            checkBundledLibrary()
            runBlocking { chat() }
            true
        } catch (failure: Failure) {
            System.err.println("FAIL: ${failure.message}")
            false
        } catch (error: Throwable) {
            System.err.println("FAIL: ${error.javaClass.name}: ${error.message}")
            error.printStackTrace()
            false
        }
    println(if (ok) "ok" else "failed")
    exitProcess(if (ok) 0 else 1)
}

/**
 * Nothing points JNA at a directory, the class path carries the library inside the imbed-kotlin
 * jar, and the code behind `imbed_version` is mapped from the copy JNA extracted from it, with no
 * file named libimbed.so mapped in the process.
 */
private fun checkBundledLibrary() {
    for (property in listOf("jna.library.path", "imbed.library.path")) {
        System.getProperty(property)?.let { fail("the system property $property is set ($it)") }
    }
    for (variable in listOf("LD_LIBRARY_PATH", "IMBED_LIBRARY_PATH")) {
        System.getenv(variable)?.let { fail("the environment variable $variable is set ($it)") }
    }
    val loader = ImbedLibrary::class.java.classLoader
    val resource = "${Platform.RESOURCE_PREFIX}/${System.mapLibraryName("imbed")}"
    val url = loader.getResource(resource) ?: fail("no $resource on the class path")
    println("the class path carries $resource in $url")
    if (url.protocol != "jar" || !Regex("""/imbed-kotlin-[^/]+\.jar!""").containsMatchIn(url.path)) {
        fail("$resource does not come from the imbed-kotlin jar")
    }

    println("libimbed version ${ImbedLibrary.version} (the bindings follow the header of ${ImbedLibrary.HEADER_VERSION})")

    // The instance Native.register made for the bindings: the same name and class loader.
    val library = NativeLibrary.getInstance("imbed", loader)
    println("JNA loaded imbed from ${library.file}")
    val address = Pointer.nativeValue(library.getFunction("imbed_version"))
    val maps = File("/proc/self/maps").readLines().mapNotNull { Mapping.parse(it) }
    val mapped = maps.firstOrNull { address in it.range }?.path ?: fail("imbed_version at 0x%x is in no mapped file".format(address))
    println("imbed_version is mapped from $mapped")
    if (mapped.removeSuffix(" (deleted)") != library.file.absolutePath) fail("imbed_version is not in ${library.file}")
    if (library.file.name.startsWith("libimbed")) fail("JNA found a libimbed on a search path instead of extracting the jar's")
    maps.map { it.path }.distinct().filter { File(it).name.startsWith("libimbed.so") }.forEach {
        fail("a libimbed.so from a directory is mapped too: $it")
    }
}

/** One line of /proc/self/maps that maps a file. */
private class Mapping(val range: ULongRange, val path: String) {
    companion object {
        fun parse(line: String): Mapping? {
            val fields = line.split(Regex("""\s+"""), limit = 6)
            val path = fields.getOrNull(5)?.takeIf { it.startsWith("/") } ?: return null
            val (start, end) = fields[0].split("-").map { it.toULong(16) }
            return Mapping(start until end, path)
        }
    }
}

private operator fun ULongRange.contains(address: Long): Boolean = address.toULong() in this

/** A server on 127.0.0.1 (port 0: any free one), memory store, dev auth; alice sends bob a message. */
private suspend fun chat() {
    ImbedServer("""{"listen":"127.0.0.1:0","auth":{"mode":"dev"},"store":{"path":":memory:"}}""").use { server ->
        server.start()
        val port = server.port
        println("server listening on 127.0.0.1:$port (memory store, dev auth)")
        ImbedClient(clientConfig(port, "alice")).use { alice ->
            ImbedClient(clientConfig(port, "bob")).use { bob ->
                alice.start()
                bob.start()
                awaitEvent(alice.events, "alice connected") { it is ClientEvent.State && it.state == ConnectionState.CONNECTED }
                awaitEvent(bob.events, "bob connected") { it is ClientEvent.State && it.state == ConnectionState.CONNECTED }
                println("alice and bob are connected")

                val text = "hello bob, from a jar"
                val id = alice.send("bob", """{"text":"$text"}""")
                println("alice sent message $id to bob")
                val outcome =
                    awaitEvent(alice.events, "the ack of $id") {
                        (it is ClientEvent.Ack && it.id == id) || (it is ClientEvent.SendFailed && it.id == id)
                    }
                if (outcome !is ClientEvent.Ack) fail("the send failed: $outcome")
                println("alice got the ack: stored as ${outcome.conv} #${outcome.seq}")

                val received = awaitEvent(bob.events, "bob's message from alice") { it is ClientEvent.Message && it.from == "alice" }
                received as ClientEvent.Message
                val body = Json.parseToJsonElement(received.messageJson).jsonObject["body"]?.jsonObject
                val got = body?.get("text")?.jsonPrimitive?.content
                println("bob received ${received.conv} #${received.seq} from ${received.from}: $got")
                if (got != text || received.seq != outcome.seq) fail("bob received ${received.messageJson}")
            }
        }
    }
}

private fun clientConfig(port: Int, user: String): String =
    """{"url":"ws://127.0.0.1:$port/ws","token":"$user","reconnect":{"initial_ms":50,"max_ms":500}}"""

/** The first event of [events] that matches, or a failure naming [what] after [STEP]. */
private suspend fun <E> awaitEvent(events: Flow<E>, what: String, matches: (E) -> Boolean): E =
    withTimeoutOrNull(STEP) { events.first(matches) } ?: fail("timed out after $STEP waiting for $what")
