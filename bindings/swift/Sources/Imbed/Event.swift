import CImbed

/// One event of a server or a client, copied out of the engine's callback so
/// that it outlives it.
public struct Event: Sendable, Equatable {
    /// What an event is about.
    public enum Kind: Sendable, Equatable {
        /// A user's session was authenticated (server): `user`, `session`.
        case connected
        /// A session ended (server): `user`, `session`, `reason`.
        case disconnected
        /// A message: stored on the server, or delivered to the client.
        /// `user` is the sender and `message` the `msg` frame.
        case message
        /// The host fell behind and events were dropped; `json` has the count.
        case overflow
        /// A group's membership changed (server): `group`, `user`.
        case member
        /// The client's connection changed state; `json` has the state.
        case state
        /// The server stored a message the client queued; `json` has its id and seq.
        case ack
        /// The server refused a queued message for good; `json` has its id and the code.
        case sendFailed
        /// Any other frame the client received, replies included; `json` has it.
        case frame
        /// A kind this version of the bindings does not know, by its number.
        case unknown(UInt32)

        /// The Swift kind of a C event kind.
        init(_ kind: imbed_event_kind) {
            switch kind {
            case IMBED_EVENT_CONNECTED: self = .connected
            case IMBED_EVENT_DISCONNECTED: self = .disconnected
            case IMBED_EVENT_MESSAGE: self = .message
            case IMBED_EVENT_OVERFLOW: self = .overflow
            case IMBED_EVENT_MEMBER: self = .member
            case IMBED_EVENT_STATE: self = .state
            case IMBED_EVENT_ACK: self = .ack
            case IMBED_EVENT_SEND_FAILED: self = .sendFailed
            case IMBED_EVENT_FRAME: self = .frame
            default: self = .unknown(UInt32(kind.rawValue))
            }
        }
    }

    /// What happened.
    public let kind: Kind
    /// The whole event as one JSON object, such as
    /// `{"event":"ack","id":"1f0c9a3e-1","conv":"dm:alice:bob","seq":17,"ts":1700000000123}`.
    public let json: String
    /// The user (connected, disconnected, member) or the sender (message).
    public let user: String?
    /// The session id (connected, disconnected).
    public let session: String?
    /// Why the session ended (disconnected).
    public let reason: String?
    /// The protocol `msg` frame as JSON (message).
    public let message: String?
    /// The group (member).
    public let group: String?

    /// Copies every field of `event`, whose strings the engine only lends for
    /// the duration of the callback.
    init(copying event: imbed_event) {
        kind = Kind(event.kind)
        // Never NULL by the header's contract; Swift sees every C pointer as optional.
        json = event.json.map { String(cString: $0) } ?? "{}"
        user = event.user.map { String(cString: $0) }
        session = event.session.map { String(cString: $0) }
        reason = event.reason.map { String(cString: $0) }
        message = event.message.map { String(cString: $0) }
        group = event.group.map { String(cString: $0) }
    }
}
