import CImbed

/// The result of an imbed call: `imbed_status`. Codes are looked up, never
/// cast, so a code this version of the bindings does not know (from a newer
/// library) becomes `.unknown` with its number instead of a crash.
public enum ImbedStatus: Sendable, Hashable, CustomStringConvertible {
    /// Success.
    case ok
    /// A required pointer argument was NULL.
    case nullArgument
    /// A string argument is not valid UTF-8.
    case invalidUTF8
    /// The configuration JSON is invalid; the message names the field.
    case invalidConfig
    /// An argument is invalid (an id, a JSON body, a request frame).
    case invalidArgument
    /// The handle is not live: it was freed.
    case invalidHandle
    /// Already started.
    case alreadyStarted
    /// Not started yet.
    case notStarted
    /// Stopped; it cannot be used again.
    case stopped
    /// Not allowed from inside one of the handle's own callbacks (the logger,
    /// the authenticator): it would deadlock.
    case inCallback
    /// A socket or thread could not be set up, for example because the port is taken.
    case io
    /// The message store failed; nothing was acknowledged.
    case store
    /// The engine panicked; the call had no effect that can be relied on.
    case panic
    /// The thing named does not exist (a group, a pending push request).
    case notFound
    /// A client request needs a live connection (sends do not: they wait in the outbox).
    case notConnected
    /// A code this version of the bindings does not know, by its number.
    case unknown(Int32)

    /// The status whose `imbed_status` value is `code`.
    public init(code: Int32) {
        switch code {
        case Int32(IMBED_OK.rawValue): self = .ok
        case Int32(IMBED_ERR_NULL_ARGUMENT.rawValue): self = .nullArgument
        case Int32(IMBED_ERR_INVALID_UTF8.rawValue): self = .invalidUTF8
        case Int32(IMBED_ERR_INVALID_CONFIG.rawValue): self = .invalidConfig
        case Int32(IMBED_ERR_INVALID_ARGUMENT.rawValue): self = .invalidArgument
        case Int32(IMBED_ERR_INVALID_HANDLE.rawValue): self = .invalidHandle
        case Int32(IMBED_ERR_ALREADY_STARTED.rawValue): self = .alreadyStarted
        case Int32(IMBED_ERR_NOT_STARTED.rawValue): self = .notStarted
        case Int32(IMBED_ERR_STOPPED.rawValue): self = .stopped
        case Int32(IMBED_ERR_IN_CALLBACK.rawValue): self = .inCallback
        case Int32(IMBED_ERR_IO.rawValue): self = .io
        case Int32(IMBED_ERR_STORE.rawValue): self = .store
        case Int32(IMBED_ERR_PANIC.rawValue): self = .panic
        case Int32(IMBED_ERR_NOT_FOUND.rawValue): self = .notFound
        case Int32(IMBED_ERR_NOT_CONNECTED.rawValue): self = .notConnected
        default: self = .unknown(code)
        }
    }

    /// The `imbed_status` value of this status.
    public var code: Int32 {
        switch self {
        case .ok: return Int32(IMBED_OK.rawValue)
        case .nullArgument: return Int32(IMBED_ERR_NULL_ARGUMENT.rawValue)
        case .invalidUTF8: return Int32(IMBED_ERR_INVALID_UTF8.rawValue)
        case .invalidConfig: return Int32(IMBED_ERR_INVALID_CONFIG.rawValue)
        case .invalidArgument: return Int32(IMBED_ERR_INVALID_ARGUMENT.rawValue)
        case .invalidHandle: return Int32(IMBED_ERR_INVALID_HANDLE.rawValue)
        case .alreadyStarted: return Int32(IMBED_ERR_ALREADY_STARTED.rawValue)
        case .notStarted: return Int32(IMBED_ERR_NOT_STARTED.rawValue)
        case .stopped: return Int32(IMBED_ERR_STOPPED.rawValue)
        case .inCallback: return Int32(IMBED_ERR_IN_CALLBACK.rawValue)
        case .io: return Int32(IMBED_ERR_IO.rawValue)
        case .store: return Int32(IMBED_ERR_STORE.rawValue)
        case .panic: return Int32(IMBED_ERR_PANIC.rawValue)
        case .notFound: return Int32(IMBED_ERR_NOT_FOUND.rawValue)
        case .notConnected: return Int32(IMBED_ERR_NOT_CONNECTED.rawValue)
        case .unknown(let code): return code
        }
    }

    /// The library's fixed description of this status (`imbed_status_str`).
    public var description: String {
        String(cString: imbed_status_str(code))
    }
}

/// A failed imbed call: its status and the engine's message about it.
public struct ImbedError: Error, Equatable, CustomStringConvertible {
    /// What kind of failure it was; never `.ok`.
    public let status: ImbedStatus
    /// What went wrong, from `imbed_last_error()`: which field, which address...
    /// Empty when the engine had nothing to add to the status.
    public let message: String

    /// The status description, then the message when there is one.
    public var description: String {
        message.isEmpty ? status.description : "\(status.description): \(message)"
    }

    /// Throws the failure `status` reports, if any. Call it right after the
    /// imbed call that returned `status`, on the same thread: the message of
    /// `imbed_last_error()` only lives until the next imbed call there.
    static func check(_ status: imbed_status) throws {
        guard status != IMBED_OK else { return }
        let message = String(cString: imbed_last_error())
        throw ImbedError(status: ImbedStatus(code: Int32(status.rawValue)), message: message)
    }
}
