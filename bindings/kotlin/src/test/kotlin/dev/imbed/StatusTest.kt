package dev.imbed

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.TimeUnit

@Timeout(30, unit = TimeUnit.SECONDS)
class StatusTest {
    @Test
    fun `status codes map both ways and unknown codes become UNKNOWN`() {
        for (status in Status.entries.filter { it != Status.UNKNOWN }) {
            assertEquals(status, Status.of(status.code))
        }
        assertEquals(Status.INVALID_CONFIG, Status.of(3))
        assertEquals(Status.NOT_CONNECTED, Status.of(14))
        assertEquals(Status.UNKNOWN, Status.of(15))
        assertEquals(Status.UNKNOWN, Status.of(-1))
        assertEquals(Status.UNKNOWN, Status.of(Int.MAX_VALUE))
    }

    @Test
    fun `the library describes every status the binding knows`() {
        val unknown = Status.UNKNOWN.description
        for (status in Status.entries.filter { it != Status.UNKNOWN }) {
            assertNotEquals(unknown, status.description, "the library does not know $status (${status.code})")
        }
    }

    @Test
    fun `an invalid server configuration names the field`() {
        val e = assertThrows<ImbedException> { ImbedServer("""{"listen":"127.0.0.1:0","auth":{"mode":"nope"}}""") }
        assertEquals(Status.INVALID_CONFIG, e.status)
        assertTrue("auth.mode" in e.message.orEmpty(), e.message)

        val typo = assertThrows<ImbedException> { ImbedServer("""{"listen":"127.0.0.1:0","workerz":2}""") }
        assertEquals(Status.INVALID_CONFIG, typo.status)
        assertTrue("workerz" in typo.message.orEmpty(), typo.message)
    }

    @Test
    fun `an invalid client configuration names the field`() {
        val e = assertThrows<ImbedException> { ImbedClient("""{"url":"ws://127.0.0.1:1/ws","token":"a","sync_limit":"many"}""") }
        assertEquals(Status.INVALID_CONFIG, e.status)
        assertTrue("sync_limit" in e.message.orEmpty(), e.message)

        val missing = assertThrows<ImbedException> { ImbedClient("""{"token":"a"}""") }
        assertEquals(Status.INVALID_CONFIG, missing.status)
        assertTrue("url" in missing.message.orEmpty(), missing.message)
    }

    @Test
    fun `strings C cannot carry are refused before the call`() {
        ImbedServer(serverConfig()).use { server ->
            assertEquals(Status.INVALID_ARGUMENT, assertThrows<ImbedException> { server.send("host", "al\u0000ice", "{}") }.status)
            assertEquals(Status.INVALID_UTF8, assertThrows<ImbedException> { server.send("host", "alice", "\"\uD800\"") }.status)
        }
    }

    @Test
    fun `arguments the library refuses raise its status and message`() {
        ImbedServer(serverConfig()).use { server ->
            server.start()
            val e = assertThrows<ImbedException> { server.send("host", "not an id", "{}") }
            assertEquals(Status.INVALID_ARGUMENT, e.status)
            assertTrue(e.message.orEmpty().isNotEmpty())
            assertEquals(Status.NOT_FOUND, assertThrows<ImbedException> { server.addMember("nowhere", "alice") }.status)
        }
    }
}
