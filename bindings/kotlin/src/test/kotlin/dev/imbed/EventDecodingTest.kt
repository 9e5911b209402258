package dev.imbed

import com.sun.jna.Memory
import com.sun.jna.Pointer
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

/** Decoding `imbed_event`s built here in native memory, as the engine passes them. */
class EventDecodingTest {
    /** The native strings of the events made here, kept reachable until the test ends. */
    private val strings = mutableListOf<Memory>()

    private fun cString(text: String?): Pointer? =
        text?.let {
            val bytes = it.encodeToByteArray()
            Memory(bytes.size + 1L).apply {
                write(0, bytes, 0, bytes.size)
                setByte(bytes.size.toLong(), 0)
                strings.add(this)
            }
        }

    /** An event of [kind] whose `json` is [json], with the [user] and [message] fields. */
    private fun event(kind: Int, json: String, user: String? = null, message: String? = null): EventStruct =
        EventStruct(Memory(128).apply { clear() }).apply {
            this.kind = kind
            this.json = cString(json)
            this.user = cString(user)
            this.message = cString(message)
        }

    @Test
    fun `a message is decoded into its fields`() {
        val messageJson = """{"type":"msg","conv":"dm:alice:bob","seq":17,"from":"alice","to":"bob","id":"c-1","body":{},"ts":1}"""
        val json = """{"event":"message","message":$messageJson}"""
        val decoded = ServerEvent.decode(event(EventKind.MESSAGE, json, user = "alice", message = messageJson))
        assertEquals(ServerEvent.Message("alice", "dm:alice:bob", 17, messageJson, json), decoded)
    }

    @Test
    fun `a push request is decoded into its fields, those of its kind only when present`() {
        val message =
            """{"event":"push","push_id":7,"kind":"message","user":"bob","conv":"g:team","seq":3,"from":"alice","group":"team",""" +
                """"unread":5,"devices":[{"device":"phone-1"},{"device":"tablet","state":"background"}],""" +
                """"collapse_key":"bob:g:team:3","preview":{"text":"hi"}}"""
        assertEquals(
            ServerEvent.Push(
                7, PushKind.MESSAGE, "bob", "g:team", 3, "alice", 5,
                listOf(PushDevice("phone-1", null), PushDevice("tablet", DeviceState.BACKGROUND)),
                "bob:g:team:3", "team", """{"text":"hi"}""", message,
            ),
            ServerEvent.decode(event(EventKind.PUSH, message, user = "bob")),
        )
        val read =
            """{"event":"push","push_id":9,"kind":"read","user":"bob","conv":"dm:alice:bob","seq":3,"unread":0,""" +
                """"devices":[],"collapse_key":"bob:dm:alice:bob:read"}"""
        assertEquals(
            ServerEvent.Push(9, PushKind.READ, "bob", "dm:alice:bob", 3, null, 0, emptyList(), "bob:dm:alice:bob:read", null, null, read),
            ServerEvent.decode(event(EventKind.PUSH, read, user = "bob")),
        )
        val newKind = read.replace("\"read\"", "\"later\"")
        assertEquals(PushKind.UNKNOWN, (ServerEvent.decode(event(EventKind.PUSH, newKind, user = "bob")) as ServerEvent.Push).kind)
    }

    @Test
    fun `a state event names its server when it has one`() {
        val connecting = """{"event":"state","state":"connecting","attempt":2,"server":"ws://b/ws"}"""
        assertEquals(
            ClientEvent.State(ConnectionState.CONNECTING, null, 2, "ws://b/ws", connecting),
            ClientEvent.decode(event(EventKind.STATE, connecting)),
        )
        val disconnected = """{"event":"state","state":"disconnected","reason":"closed by peer"}"""
        assertEquals(
            ClientEvent.State(ConnectionState.DISCONNECTED, "closed by peer", null, null, disconnected),
            ClientEvent.decode(event(EventKind.STATE, disconnected)),
        )
    }

    @Test
    fun `an event whose fields cannot be read is passed on as Unknown`() {
        val messageJson = """{"type":"msg","conv":"dm:alice:bob"}"""
        val json = """{"event":"message","message":$messageJson}"""
        assertEquals(ServerEvent.Unknown(EventKind.MESSAGE, json), ServerEvent.decode(event(EventKind.MESSAGE, json, user = "alice", message = messageJson)))
        val ack = """{"event":"ack","conv":"dm:alice:bob","seq":"seventeen"}"""
        assertEquals(ClientEvent.Unknown(EventKind.ACK, ack), ClientEvent.decode(event(EventKind.ACK, ack)))
    }

    @Test
    fun `an event of a kind from a newer library is passed on as Unknown`() {
        val json = """{"event":"something_new"}"""
        assertEquals(ServerEvent.Unknown(42, json), ServerEvent.decode(event(42, json)))
        assertEquals(ClientEvent.Unknown(42, json), ClientEvent.decode(event(42, json)))
    }
}
