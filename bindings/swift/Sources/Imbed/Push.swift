/// What a push request is about: a `.push` event or a `PendingPush`.
public enum PushKind: String, Sendable {
    /// A message the user has not seen: show a notification.
    case message
    /// The user read past pushed messages: update the badge, withdraw what
    /// was shown.
    case read
    /// A kind this version of the bindings does not know (from a newer
    /// library); the event's `json` has its name.
    case unknown
}

/// Whether the app behind a device is on screen, as its client last said
/// (`{"type":"device","state":...}`).
public enum DeviceState: String, Sendable {
    /// On screen: a session of the device is in the foreground. Users with
    /// one get no push requests.
    case foreground
    /// Every session of the device said its app went to the background.
    case background
    /// A state this version of the bindings does not know (from a newer library).
    case unknown
}

/// A device a push request may go to: one the user ever connected from.
public struct PushDevice: Sendable, Equatable {
    /// The device's id.
    public let device: String
    /// Its state while it has a session; nil when it has none, the usual
    /// case for a push.
    public let state: DeviceState?

    /// A device, for comparing with a push request's `devices`.
    public init(device: String, state: DeviceState?) {
        self.device = device
        self.state = state
    }
}

/// A push request (configuration `push`), from a `.push` event: `user` has
/// no session in the foreground and should be told of `seq` in `conv`
/// through the app's push gateway. End it with
/// `ImbedServer.pushDone(_:delivered:reason:)` once the gateway's call
/// ended; one not ended within `push.retry_after_ms` comes again with the
/// same `pushID`, and so do those pending when the server restarts on the
/// same store.
public struct PushRequest: Sendable, Equatable {
    /// The request's id, the same each time it is offered.
    public let pushID: UInt64
    /// `.message` for a message from `from`; `.read` when the user read up
    /// to `seq` on some device, to update the badge (`from` is nil then).
    public let kind: PushKind
    /// Whom to notify.
    public let user: String
    /// The conversation: `dm:<a>:<b>` or `g:<group>`.
    public let conv: String
    /// The message's seq, or the seq read up to.
    public let seq: UInt64
    /// The sender, for `.message`.
    public let from: String?
    /// The user's unread messages over all conversations (at most 9999):
    /// the badge.
    public let unread: Int
    /// Every device the user ever connected from, sorted; `state` is set only
    /// for those with a session now.
    public let devices: [PushDevice]
    /// For the gateway's collapse id: the same when a request is offered
    /// again, and one per conversation for `.read`, so a repeat replaces a
    /// notification rather than adding one.
    public let collapseKey: String
    /// The group, for a group conversation.
    public let group: String?
    /// The message's body as JSON, only when `push.preview` is on. The same
    /// value as the engine's, though not always the same text: it is
    /// written again, so object members may come in another order.
    public let previewJSON: String?
}

/// A push request not ended yet, from `ImbedServer.pendingPushes()`: the
/// durable part of a `PushRequest`, without what the engine works out when
/// it offers one (unread count, devices).
public struct PendingPush: Sendable, Equatable {
    /// The request's id, as in its `.push` event.
    public let pushID: UInt64
    /// `.message`, or `.read` for a badge update.
    public let kind: PushKind
    /// Whom to notify.
    public let user: String
    /// The conversation.
    public let conv: String
    /// The message's seq, or the seq read up to.
    public let seq: UInt64
    /// The sender, for `.message`.
    public let from: String?

    /// A pending request, for comparing with `pendingPushes()`.
    public init(pushID: UInt64, kind: PushKind, user: String, conv: String, seq: UInt64, from: String?) {
        self.pushID = pushID
        self.kind = kind
        self.user = user
        self.conv = conv
        self.seq = seq
        self.from = from
    }
}

/// A device with a session now, from `ImbedServer.devices()`.
public struct OnlineDevice: Sendable, Equatable {
    /// The device's id.
    public let device: String
    /// `.foreground` when one of its sessions is.
    public let state: DeviceState
    /// How many sessions it has open.
    public let sessions: Int

    /// A device, for comparing with `devices()`.
    public init(device: String, state: DeviceState, sessions: Int) {
        self.device = device
        self.state = state
        self.sessions = sessions
    }
}

/// What a push event says, but the user (the event's own field) and the
/// preview (any JSON value, which Decodable cannot keep as text).
struct PushFields: Decodable {
    /// An entry of `devices`.
    struct Device: Decodable {
        let device: String
        let state: String?
    }

    let pushID: UInt64
    let kind: String
    let conv: String
    let seq: UInt64
    let from: String?
    let group: String?
    let unread: Int
    let devices: [Device]
    let collapseKey: String

    enum CodingKeys: String, CodingKey {
        case pushID = "push_id"
        case kind, conv, seq, from, group, unread, devices
        case collapseKey = "collapse_key"
    }

    /// The request these fields describe, for `user`.
    func request(user: String, previewJSON: String?) -> PushRequest {
        PushRequest(
            pushID: pushID,
            kind: PushKind(rawValue: kind) ?? .unknown,
            user: user,
            conv: conv,
            seq: seq,
            from: from,
            unread: unread,
            devices: devices.map { entry in
                PushDevice(device: entry.device, state: entry.state.map { DeviceState(rawValue: $0) ?? .unknown })
            },
            collapseKey: collapseKey,
            group: group,
            previewJSON: previewJSON
        )
    }
}

/// An entry of `imbed_server_pending_pushes`.
struct PendingPushFields: Decodable {
    let pushID: UInt64
    let kind: String
    let user: String
    let conv: String
    let seq: UInt64
    let from: String?

    enum CodingKeys: String, CodingKey {
        case pushID = "push_id"
        case kind, user, conv, seq, from
    }

    var pending: PendingPush {
        PendingPush(pushID: pushID, kind: PushKind(rawValue: kind) ?? .unknown, user: user, conv: conv, seq: seq, from: from)
    }
}

/// An entry of `imbed_server_devices`.
struct OnlineDeviceFields: Decodable {
    let device: String
    let state: String
    let sessions: Int

    var online: OnlineDevice {
        OnlineDevice(device: device, state: DeviceState(rawValue: state) ?? .unknown, sessions: sessions)
    }
}
