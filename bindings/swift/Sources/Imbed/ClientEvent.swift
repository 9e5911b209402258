import CImbed
import Foundation

/// Where an `ImbedClient`'s connection stands.
public enum ConnectionState: String, Sendable {
    /// Connecting, or waiting for the next attempt.
    case connecting
    /// Connected and authenticated; the outbox is re-sent and the sync runs.
    case connected
    /// The connection was lost; the client will reconnect.
    case disconnected
    /// Closed on purpose by the hint `.background` until `.foreground`.
    case paused
    /// The client was stopped.
    case stopped
    /// A state this version of the bindings does not know (from a newer library).
    case unknown
}

/// Something that happened in an `ImbedClient`, in the engine's order. Each
/// event carries the engine's whole event object as `json` next to the
/// fields taken out of it.
public enum ClientEvent: Sendable, Equatable {
    /// The connection changed state. `reason` says why when there is a why (a
    /// lost connection); `attempt` counts the attempts while reconnecting;
    /// `server` is the URL being connected to or connected to (on
    /// `.connecting` and `.connected`), one of the configuration's `url` and
    /// `urls`.
    case state(ConnectionState, reason: String?, attempt: Int?, server: String?, json: String)
    /// A message: `seq` in the conversation `conv`, sent by `from`. Each
    /// (`conv`, `seq`) comes exactly once, in seq order per conversation,
    /// whether pushed live or caught up by sync. `messageJSON` is the
    /// protocol `msg` frame.
    case message(from: String, conv: String, seq: UInt64, messageJSON: String, json: String)
    /// The send whose client id is `id` was stored by the server as `seq` of
    /// `conv` at `ts` (milliseconds since the epoch).
    case ack(id: String, conv: String, seq: UInt64, ts: Int64, json: String)
    /// The server refused the send `id` for good (error `code`, such as
    /// "forbidden"); it left the outbox.
    case sendFailed(id: String, code: String, message: String, json: String)
    /// Any other server frame: presence, typing, read, member, and the
    /// replies to `ImbedClient.request` ("ok", "history", "members",
    /// "conversations", "error"), which carry the request's `id`. `type` is
    /// the frame's type and `frameJSON` the frame itself.
    case frame(type: String, id: String?, frameJSON: String, json: String)
    /// The host fell behind and the engine dropped `dropped` events.
    case overflow(dropped: UInt64, json: String)
    /// An event of a kind this version of the bindings does not know (from a
    /// newer library), or whose fields it could not read: passed on rather
    /// than dropped.
    case unknown(kind: UInt32, json: String)

    /// The whole event as one JSON object, such as
    /// `{"event":"ack","id":"c-1","conv":"dm:alice:bob","seq":17,"ts":1700000000123}`.
    public var json: String {
        switch self {
        case .state(_, _, _, _, let json),
             .message(_, _, _, _, let json),
             .ack(_, _, _, _, let json),
             .sendFailed(_, _, _, let json),
             .frame(_, _, _, let json),
             .overflow(_, let json),
             .unknown(_, let json):
            return json
        }
    }

    /// Copies a client's `imbed_event`, whose strings the engine only lends
    /// for the duration of the callback.
    init(copying event: imbed_event) {
        let copied = CopiedEvent(event)
        self = ClientEvent.decode(copied) ?? .unknown(kind: copied.kindNumber, json: copied.json)
    }

    /// The event `copied` is, or nil when a field its kind always has is missing.
    private static func decode(_ copied: CopiedEvent) -> ClientEvent? {
        switch copied.kind {
        case IMBED_EVENT_STATE:
            guard let state = copied.fields(StateFields.self) else { return nil }
            return .state(
                ConnectionState(rawValue: state.state) ?? .unknown,
                reason: state.reason,
                attempt: state.attempt,
                server: state.server,
                json: copied.json
            )
        case IMBED_EVENT_MESSAGE:
            guard let from = copied.user, let messageJSON = copied.message,
                  let message = decodeJSON(MessageFields.self, from: messageJSON) else { return nil }
            return .message(from: from, conv: message.conv, seq: message.seq, messageJSON: messageJSON, json: copied.json)
        case IMBED_EVENT_ACK:
            guard let ack = copied.fields(AckFields.self) else { return nil }
            return .ack(id: ack.id, conv: ack.conv, seq: ack.seq, ts: ack.ts, json: copied.json)
        case IMBED_EVENT_SEND_FAILED:
            guard let failure = copied.fields(SendFailedFields.self) else { return nil }
            return .sendFailed(id: failure.id, code: failure.code, message: failure.message ?? "", json: copied.json)
        case IMBED_EVENT_FRAME:
            guard let envelope = copied.fields(FrameEnvelope.self), let frameJSON = jsonMember("frame", of: copied.json) else {
                return nil
            }
            return .frame(type: envelope.frame.type, id: envelope.frame.id, frameJSON: frameJSON, json: copied.json)
        case IMBED_EVENT_OVERFLOW:
            guard let overflow = copied.fields(OverflowFields.self) else { return nil }
            return .overflow(dropped: overflow.dropped, json: copied.json)
        default:
            return nil
        }
    }
}

/// What a state event says.
private struct StateFields: Decodable {
    let state: String
    let reason: String?
    let attempt: Int?
    let server: String?
}

/// What an ack event says.
private struct AckFields: Decodable {
    let id: String
    let conv: String
    let seq: UInt64
    let ts: Int64
}

/// What a send_failed event says.
private struct SendFailedFields: Decodable {
    let id: String
    let code: String
    let message: String?
}

/// A frame event: `{"event":"frame","frame":{...}}`.
private struct FrameEnvelope: Decodable {
    /// What the events take out of the frame.
    struct Frame: Decodable {
        let type: String
        let id: String?
    }

    let frame: Frame
}
