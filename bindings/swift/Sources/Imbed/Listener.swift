import CImbed

/// Decides who a token belongs to: returns the user id (1 to
/// `IMBED_MAX_ID_LEN` bytes of the protocol's id characters), or nil to
/// reject the connection. The engine calls it on its worker threads, several
/// at once, so it must be thread-safe.
public typealias Authenticator = @Sendable (_ token: String) -> String?

/// What the C callbacks reach through their `user_data`: the stream the
/// events go to, and the server's authenticator.
///
/// The engine owns one retained reference to it from `imbed_*_set_listener`
/// until it calls `destroy`, exactly once, after the last callback; so the
/// context lives exactly as long as the engine may call into it, whatever the
/// Swift object that created it does meanwhile.
final class ListenerContext: Sendable {
    let continuation: AsyncStream<Event>.Continuation
    let authenticate: Authenticator?

    init(continuation: AsyncStream<Event>.Continuation, authenticate: Authenticator?) {
        self.continuation = continuation
        self.authenticate = authenticate
    }

    /// A new stream of events and the context that feeds it.
    ///
    /// The stream does not bound its buffer: the engine's own event queue is
    /// the bound (`events.queue_capacity`), with an overflow event when it is
    /// exceeded, and a second, silent bound here would only lose events.
    static func makeStream(authenticate: Authenticator?) -> (AsyncStream<Event>, ListenerContext) {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
        return (stream, ListenerContext(continuation: continuation, authenticate: authenticate))
    }

    /// Hands `context` to `setListener` (an `imbed_*_set_listener` call) in a
    /// listener whose `destroy` releases it. If that call fails, the engine
    /// keeps nothing and will never call `destroy`, so the reference is
    /// released here and the stream finished.
    static func install(
        _ context: ListenerContext,
        with setListener: (UnsafePointer<imbed_listener>) -> imbed_status
    ) throws {
        let userData = Unmanaged.passRetained(context).toOpaque()
        let listener = imbed_listener(
            user_data: userData,
            on_event: deliverEvent,
            on_log: nil,
            authenticate: context.authenticate == nil ? nil : authenticateToken,
            destroy: releaseContext
        )
        let status = withUnsafePointer(to: listener) { setListener($0) }
        do {
            try ImbedError.check(status)
        } catch {
            Unmanaged<ListenerContext>.fromOpaque(userData).release()
            context.continuation.finish()
            throw error
        }
    }
}

/// The listener's `on_event`: copies the event, whose strings are only
/// borrowed for this call, into the stream.
private let deliverEvent: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<imbed_event>?) -> Void = { userData, event in
    guard let userData, let event else { return }
    let context = Unmanaged<ListenerContext>.fromOpaque(userData).takeUnretainedValue()
    context.continuation.yield(Event(copying: event.pointee))
}

/// The listener's `authenticate`: runs the Swift authenticator and writes the
/// user id, NUL-terminated, into the engine's buffer. An id that does not fit
/// rejects the token rather than being cut into another user's id.
private let authenticateToken: @convention(c) (
    UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int
) -> Bool = { userData, token, userOut, userOutCapacity in
    guard let userData, let token, let userOut else { return false }
    let context = Unmanaged<ListenerContext>.fromOpaque(userData).takeUnretainedValue()
    guard let user = context.authenticate?(String(cString: token)) else { return false }
    let userWithNul = user.utf8CString
    guard userWithNul.count <= userOutCapacity, userWithNul.count <= Int(IMBED_MAX_ID_LEN) + 1 else {
        return false
    }
    for (offset, byte) in userWithNul.enumerated() {
        userOut[offset] = byte
    }
    return true
}

/// The listener's `destroy`: the engine's last call with this `user_data`.
/// Ends the event stream and drops the reference `install` retained.
private let releaseContext: @convention(c) (UnsafeMutableRawPointer?) -> Void = { userData in
    guard let userData else { return }
    let context = Unmanaged<ListenerContext>.fromOpaque(userData).takeRetainedValue()
    context.continuation.finish()
}
