import CImbed

/// Something that happened in an `ImbedServer`, in the engine's order. Each
/// event carries the engine's whole event object as `json` next to the
/// fields taken out of it.
public enum ServerEvent: Sendable, Equatable {
    /// A session of `user` was authenticated, on `device`: the id its token
    /// or its client named, or one the server made up ("d-...").
    case connected(user: String, session: String, device: String, json: String)
    /// A session of `user` on `device` ended, for `reason` (such as "closed
    /// by peer" or "kicked").
    case disconnected(user: String, session: String, device: String, reason: String, json: String)
    /// A message was stored: `seq` in the conversation `conv`, sent by `from`.
    /// `messageJSON` is the protocol `msg` frame, as clients receive it.
    case message(from: String, conv: String, seq: UInt64, messageJSON: String, json: String)
    /// `user` joined `group` (`joined` true) or left it.
    case member(group: String, user: String, joined: Bool, json: String)
    /// A push request: tell `PushRequest.user` through the app's push
    /// gateway, then end it with `ImbedServer.pushDone(_:delivered:reason:)`.
    case push(PushRequest, json: String)
    /// The host fell behind and the engine dropped `dropped` events; messages
    /// are still in the store.
    case overflow(dropped: UInt64, json: String)
    /// An event of a kind this version of the bindings does not know (from a
    /// newer library), or whose fields it could not read: passed on rather
    /// than dropped.
    case unknown(kind: UInt32, json: String)

    /// The whole event as one JSON object, such as
    /// `{"event":"connected","user":"alice","session":"s-1-1","device":"phone-1"}`.
    public var json: String {
        switch self {
        case .connected(_, _, _, let json),
             .disconnected(_, _, _, _, let json),
             .message(_, _, _, _, let json),
             .member(_, _, _, let json),
             .push(_, let json),
             .overflow(_, let json),
             .unknown(_, let json):
            return json
        }
    }

    /// Copies a server's `imbed_event`, whose strings the engine only lends
    /// for the duration of the callback.
    init(copying event: imbed_event) {
        let copied = CopiedEvent(event)
        self = ServerEvent.decode(copied) ?? .unknown(kind: copied.kindNumber, json: copied.json)
    }

    /// The event `copied` is, or nil when a field its kind always has is missing.
    private static func decode(_ copied: CopiedEvent) -> ServerEvent? {
        switch copied.kind {
        // The device is only in the JSON: imbed_event has no field for it.
        case IMBED_EVENT_CONNECTED:
            guard let user = copied.user, let session = copied.session,
                  let device = copied.fields(SessionFields.self)?.device else { return nil }
            return .connected(user: user, session: session, device: device, json: copied.json)
        case IMBED_EVENT_DISCONNECTED:
            guard let user = copied.user, let session = copied.session, let reason = copied.reason,
                  let device = copied.fields(SessionFields.self)?.device else { return nil }
            return .disconnected(user: user, session: session, device: device, reason: reason, json: copied.json)
        case IMBED_EVENT_MESSAGE:
            guard let from = copied.user, let messageJSON = copied.message,
                  let message = decodeJSON(MessageFields.self, from: messageJSON) else { return nil }
            return .message(from: from, conv: message.conv, seq: message.seq, messageJSON: messageJSON, json: copied.json)
        case IMBED_EVENT_MEMBER:
            guard let group = copied.group, let user = copied.user,
                  let member = copied.fields(MemberFields.self) else { return nil }
            return .member(group: group, user: user, joined: member.joined, json: copied.json)
        case IMBED_EVENT_PUSH:
            guard let user = copied.user, let push = copied.fields(PushFields.self) else { return nil }
            let request = push.request(user: user, previewJSON: jsonMember("preview", of: copied.json))
            return .push(request, json: copied.json)
        case IMBED_EVENT_OVERFLOW:
            guard let overflow = copied.fields(OverflowFields.self) else { return nil }
            return .overflow(dropped: overflow.dropped, json: copied.json)
        default:
            return nil
        }
    }
}

/// The device of a connected or disconnected event.
private struct SessionFields: Decodable {
    let device: String
}

/// Whether a member event is a join.
private struct MemberFields: Decodable {
    let joined: Bool
}
