import CImbed
import Foundation

/// The fields of an `imbed_event`, copied while the engine still lends its
/// strings, for `ServerEvent` and `ClientEvent` to read.
struct CopiedEvent {
    /// The C kind.
    let kind: imbed_event_kind
    /// The whole event as one JSON object.
    let json: String
    /// The user (connected, disconnected, member) or the sender (message).
    let user: String?
    /// The session id (connected, disconnected).
    let session: String?
    /// Why the session ended (disconnected).
    let reason: String?
    /// The protocol `msg` frame as JSON (message).
    let message: String?
    /// The group (member).
    let group: String?

    init(_ event: imbed_event) {
        kind = event.kind
        // Never NULL by the header's contract; Swift sees every C pointer as optional.
        json = event.json.map { String(cString: $0) } ?? "{}"
        user = event.user.map { String(cString: $0) }
        session = event.session.map { String(cString: $0) }
        reason = event.reason.map { String(cString: $0) }
        message = event.message.map { String(cString: $0) }
        group = event.group.map { String(cString: $0) }
    }

    /// The kind's number, for the `unknown` events.
    var kindNumber: UInt32 {
        UInt32(kind.rawValue)
    }

    /// The event's JSON read as `Fields`, or nil when it does not fit.
    func fields<Fields: Decodable>(_ type: Fields.Type) -> Fields? {
        decodeJSON(type, from: json)
    }
}

/// `json` read as `Fields`, or nil when it does not fit. Members `Fields`
/// does not name are ignored.
func decodeJSON<Fields: Decodable>(_ type: Fields.Type, from json: String) -> Fields? {
    try? JSONDecoder().decode(type, from: Data(json.utf8))
}

/// The member `key` of the JSON object `json`, as JSON text of its own, or
/// nil when there is none. Any JSON value: a message body need not be an
/// object.
func jsonMember(_ key: String, of json: String) -> String? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
          let member = object[key],
          let memberData = try? JSONSerialization.data(withJSONObject: member, options: [.withoutEscapingSlashes, .fragmentsAllowed])
    else { return nil }
    return String(decoding: memberData, as: UTF8.self)
}

/// What the events take out of a protocol `msg` frame.
struct MessageFields: Decodable {
    let conv: String
    let seq: UInt64
}

/// The `dropped` count of an overflow event.
struct OverflowFields: Decodable {
    let dropped: UInt64
}
