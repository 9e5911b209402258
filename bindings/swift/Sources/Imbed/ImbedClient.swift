import CImbed
import Foundation

/// The client role of imbed, for apps: one connection to an imbed server that
/// reconnects by itself, an outbox that keeps sending until the server acks,
/// and a sync after every connect, so `events` sees every message exactly
/// once, in order per conversation.
///
/// Every method may be called from any thread (the C API is thread-safe per
/// handle) and returns at once, but `upload`, which waits for the server.
/// Releasing the last reference stops the client and frees it.
public final class ImbedClient: @unchecked Sendable {
    // @unchecked: the only state is the handle, an immutable registry key
    // that the C API accepts from any thread.

    /// What the app knows about its situation that the client cannot see.
    public enum Hint: Sendable {
        /// The network changed: reconnect now instead of waiting for the
        /// backoff or for the dead connection to time out.
        case networkChanged
        /// The app went to the background: close the connection and stay
        /// paused (state "paused") until `foreground`.
        case background
        /// The app came back: reconnect at once.
        case foreground

        /// The integer `imbed_client_hint` takes for this hint.
        var code: Int32 {
            switch self {
            case .networkChanged: return Int32(IMBED_HINT_NETWORK_CHANGED.rawValue)
            case .background: return Int32(IMBED_HINT_BACKGROUND.rawValue)
            case .foreground: return Int32(IMBED_HINT_FOREGROUND.rawValue)
            }
        }
    }

    /// Every event of the client, in order: state changes, messages, acks,
    /// refused sends and other frames. The stream finishes when the client
    /// has stopped and delivered its last event.
    public let events: AsyncStream<ClientEvent>

    private let handle: OpaquePointer

    /// Creates a client from its JSON configuration: `token` and a server are
    /// required, `url` or `urls` or both (several servers, the nodes of one
    /// service: an attempt that cannot connect moves to the next);
    /// `state_path` names a SQLite file that keeps the outbox and the cursors
    /// across app restarts (docs/C-API.md lists every key).
    /// `logger` receives the engine's log records at the configured
    /// `log_level`; none when nil. It may not hold the client strongly: the
    /// engine keeps it until the client is freed, which is when its last
    /// reference goes.
    public init(configJSON: String, logger: ImbedLogger? = nil) throws {
        var created: OpaquePointer?
        try ImbedError.check(imbed_client_new(configJSON, &created))
        guard let created else { preconditionFailure("imbed_client_new succeeded without a handle") }
        let (stream, context) = ListenerContext.makeStream(
            decoding: { ClientEvent(copying: $0) },
            authenticate: nil,
            log: logger
        )
        do {
            try ListenerContext.install(context) { imbed_client_set_listener(created, $0) }
        } catch {
            imbed_client_free(created)
            throw error
        }
        handle = created
        events = stream
    }

    /// Stops the client if it runs, waits for its last event, and frees it.
    deinit {
        imbed_client_free(handle)
    }

    /// Starts connecting in the background and returns at once; the client
    /// reconnects forever, reporting each change as a `.state` event.
    public func start() throws {
        try ImbedError.check(imbed_client_start(handle))
    }

    /// Queues `bodyJSON` (any JSON value) for the user `to` and returns its
    /// client id. It is sent, and sent again after every reconnect, until an
    /// `.ack` event with that id says it is stored. Works while disconnected.
    @discardableResult
    public func send(to user: String, bodyJSON: String) throws -> String {
        try takeOwnedString { imbed_client_send(handle, user, bodyJSON, $0) }
    }

    /// Queues `bodyJSON` for the members of `group`, like `send(to:bodyJSON:)`.
    @discardableResult
    public func sendGroup(_ group: String, bodyJSON: String) throws -> String {
        try takeOwnedString { imbed_client_send_group(handle, group, bodyJSON, $0) }
    }

    /// Sends a request frame, a JSON object with a `type`, and returns its
    /// id: the frame's `"id"`, added when `frameJSON` has none.
    ///
    /// Frames that store something go through the outbox, as
    /// `send(to:bodyJSON:)` does: `send` (with `"reply_to":17` for a reply),
    /// `edit`, `delete`, `react` and `unreact` (docs/PROTOCOL.md, "Replies,
    /// edits, deletes and reactions"). They are queued while disconnected,
    /// even before `start()`, and sent until the server answers: an `.ack`
    /// event with the id once stored, or `.sendFailed` when refused for good
    /// (`forbidden`, `not_found`, `bad_request`, such as an edit of a
    /// deleted message).
    ///
    /// The others (join, leave, watch, unwatch, typing, read, history,
    /// members, conversations, search...) are not queued: while disconnected
    /// this throws an error whose status is `.notConnected`; the reply is a
    /// `.frame` event with the id.
    ///
    /// Throws `.invalidArgument` for a frame that is not an object or has no
    /// `type`, and for the types the client manages itself (sync, auth).
    @discardableResult
    public func request(_ frameJSON: String) throws -> String {
        try takeOwnedString { imbed_client_request(handle, frameJSON, $0) }
    }

    /// Uploads the file at `path` to the client's server (`POST /files` on
    /// the WebSocket's host and port, with the client's token and TLS trust)
    /// and returns what the server took. A message then refers to it by its
    /// `id` in its body's `files`, such as
    /// `{"type":"send","to":"bob","body":{"text":"the plan","files":["<id>"]}}`
    /// through `request(_:)`.
    ///
    /// `contentType` (such as `text/plain`) is a hint the server uses only
    /// when the bytes do not say what they are. Blocks until the server
    /// answers, so call it off the main thread; works whether or not the
    /// WebSocket is connected, before `start()` too.
    ///
    /// Throws `.invalidArgument` when `path` cannot be read or the server
    /// refuses the file (over `files.max_bytes` or the user's
    /// `files.quota_bytes`, or no `files.dir` on that server), `.io` when no
    /// server can be reached, `.stopped` after `stop()`.
    public func upload(path: String, contentType: String? = nil) throws -> UploadedFile {
        let answerJSON = try takeOwnedString { imbed_client_upload(handle, path, contentType, $0) }
        return try JSONDecoder().decode(UploadedFile.self, from: Data(answerJSON.utf8))
    }

    /// Uploads the file at `fileURL` (a `file:` URL), like `upload(path:contentType:)`.
    public func upload(fileURL: URL, contentType: String? = nil) throws -> UploadedFile {
        try upload(path: fileURL.path, contentType: contentType)
    }

    /// Tells the client what the app knows: the network changed, or the app
    /// went to the background or came back.
    public func hint(_ hint: Hint) throws {
        try ImbedError.check(imbed_client_hint(handle, hint.code))
    }

    /// Closes the connection, delivers the remaining events and finishes
    /// `events`. Messages not acked yet stay in the outbox, which a
    /// `state_path` file keeps for the next client. Stopping again does
    /// nothing. Throws `.inCallback` from inside the client's own logger.
    public func stop() throws {
        try ImbedError.check(imbed_client_stop(handle))
    }
}
