import CImbed

/// Decides who a token belongs to, for a server in auth mode "callback" (the
/// default mode, which needs one): returns the user id (1 to
/// `ImbedLibrary.maxIDBytes` bytes of the protocol's id characters), or nil to
/// reject the connection. An id that is too long rejects it too, rather than
/// being cut into another user's id. "user/device" (such as "alice/phone-1")
/// also names the session's device, when the token tells which; the whole
/// answer must fit in `ImbedLibrary.maxIDBytes`, the engine's buffer for it.
/// The engine calls it on its worker threads, several at once, so it must be
/// thread-safe; it may block (a database look-up) without stalling the
/// network.
public typealias ImbedAuthenticator = @Sendable (_ token: String) -> String?

/// What the C callbacks reach through their `user_data`: where the events go,
/// and the host's logger and authenticator.
///
/// The engine owns one retained reference to it from `imbed_*_set_listener`
/// until it calls `destroy`, exactly once, after the last callback; so the
/// context lives exactly as long as the engine may call into it, whatever the
/// Swift object that created it does meanwhile.
final class ListenerContext: Sendable {
    /// Copies an event, whose strings the engine lends for the callback only,
    /// into the event stream.
    let deliver: @Sendable (imbed_event) -> Void
    /// Finishes the event stream: the engine will not call again.
    let finish: @Sendable () -> Void
    /// The server's authenticator, behind the listener's `authenticate`.
    let authenticate: ImbedAuthenticator?
    /// The host's logger, behind the listener's `on_log`.
    let log: ImbedLogger?

    private init(
        deliver: @escaping @Sendable (imbed_event) -> Void,
        finish: @escaping @Sendable () -> Void,
        authenticate: ImbedAuthenticator?,
        log: ImbedLogger?
    ) {
        self.deliver = deliver
        self.finish = finish
        self.authenticate = authenticate
        self.log = log
    }

    /// A new stream of the events `decode` makes, and the context that feeds it.
    ///
    /// The stream does not bound its buffer: the engine's own event queue is
    /// the bound (`events.queue_capacity`), with an overflow event when it is
    /// exceeded, and a second, silent bound here would only lose events.
    static func makeStream<Element: Sendable>(
        decoding decode: @escaping @Sendable (imbed_event) -> Element,
        authenticate: ImbedAuthenticator?,
        log: ImbedLogger?
    ) -> (AsyncStream<Element>, ListenerContext) {
        let (stream, continuation) = AsyncStream.makeStream(of: Element.self, bufferingPolicy: .unbounded)
        let context = ListenerContext(
            deliver: { event in _ = continuation.yield(decode(event)) },
            finish: { continuation.finish() },
            authenticate: authenticate,
            log: log
        )
        return (stream, context)
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
            on_log: context.log == nil ? nil : forwardLog,
            authenticate: context.authenticate == nil ? nil : authenticateToken,
            destroy: releaseContext
        )
        let status = withUnsafePointer(to: listener) { setListener($0) }
        do {
            try ImbedError.check(status)
        } catch {
            Unmanaged<ListenerContext>.fromOpaque(userData).release()
            context.finish()
            throw error
        }
    }
}

/// The listener's `on_event`: hands the event to the context while its
/// strings are still valid.
private let deliverEvent: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<imbed_event>?) -> Void = { userData, event in
    guard let userData, let event else { return }
    let context = Unmanaged<ListenerContext>.fromOpaque(userData).takeUnretainedValue()
    context.deliver(event.pointee)
}

/// The listener's `on_log`: copies the record's strings, which are only
/// borrowed for this call, and runs the Swift logger.
private let forwardLog: @convention(c) (
    UnsafeMutableRawPointer?, imbed_log_level, UnsafePointer<CChar>?, UnsafePointer<CChar>?
) -> Void = { userData, level, target, message in
    guard let userData else { return }
    let context = Unmanaged<ListenerContext>.fromOpaque(userData).takeUnretainedValue()
    context.log?(
        LogLevel(level),
        target.map { String(cString: $0) } ?? "",
        message.map { String(cString: $0) } ?? ""
    )
}

/// The listener's `authenticate`: runs the Swift authenticator and writes the
/// user id, NUL-terminated, into the engine's buffer. An id that does not fit,
/// or that holds a NUL, rejects the token rather than being cut into another
/// user's id.
private let authenticateToken: @convention(c) (
    UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int
) -> Bool = { userData, token, userOut, userOutCapacity in
    guard let userData, let token, let userOut else { return false }
    let context = Unmanaged<ListenerContext>.fromOpaque(userData).takeUnretainedValue()
    guard let user = context.authenticate?(String(cString: token)), !user.utf8.contains(0) else { return false }
    let userWithNul = user.utf8CString
    guard userWithNul.count <= userOutCapacity, userWithNul.count <= ImbedLibrary.maxIDBytes + 1 else {
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
    Unmanaged<ListenerContext>.fromOpaque(userData).takeRetainedValue().finish()
}
