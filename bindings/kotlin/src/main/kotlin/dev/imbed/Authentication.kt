package dev.imbed

import com.sun.jna.Pointer

/**
 * Decides who a token belongs to, for a server in the auth mode `callback` (the default mode, which
 * needs one): the C listener's `authenticate`.
 *
 * The engine calls it on its own worker threads, several at once, while a connection waits for the
 * answer: it must be thread-safe, and it may block (a database look-up) without stalling the network.
 */
public fun interface ImbedAuthenticator {
    /**
     * The user id [token] stands for, or null to refuse the connection. The id must be a protocol id
     * (1 to [ImbedLibrary.MAX_ID_BYTES] bytes of `A-Z a-z 0-9 _ . @ -`); any other answer, and an
     * exception, refuses the token as null does. `user/device` (such as `alice/phone-1`) also names
     * the session's device, when the token tells which; the whole answer must fit in
     * [ImbedLibrary.MAX_ID_BYTES], the engine's buffer for it.
     */
    public fun authenticate(token: String): String?
}

/**
 * Runs [authenticator] for the engine's `authenticate` call: reads [token], writes the user id and
 * its NUL into [userOut], which has room for [userOutCapacity] bytes, and says whether it did.
 *
 * An id too long for the buffer or for the protocol refuses the token: cut short, it could name
 * another user. An exception refuses it too, rather than unwinding into the engine's thread.
 */
internal fun authenticateInto(authenticator: ImbedAuthenticator, token: Pointer?, userOut: Pointer?, userOutCapacity: Long): Boolean {
    if (token == null || userOut == null) return false
    val user =
        try {
            authenticator.authenticate(token.utf8())
        } catch (e: Exception) {
            null
        } ?: return false
    val userBytes = user.encodeToByteArray()
    if (userBytes.size > ImbedLibrary.MAX_ID_BYTES || userBytes.size + 1 > userOutCapacity || 0.toByte() in userBytes) return false
    userOut.write(0, userBytes, 0, userBytes.size)
    userOut.setByte(userBytes.size.toLong(), 0)
    return true
}
