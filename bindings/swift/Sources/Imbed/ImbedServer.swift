import CImbed
import Foundation

/// An IM server: WebSocket clients connect to it with a token and chat, and
/// every event reaches `events`.
///
/// Every method may be called from any thread (the C API is thread-safe per
/// handle). Releasing the last reference stops the server and frees it.
public final class ImbedServer: @unchecked Sendable {
    // @unchecked: the only state is the handle, an immutable registry key
    // that the C API accepts from any thread.

    /// The server's counters, from `imbed_server_stats`.
    public struct Stats: Sendable, Equatable {
        /// Open authenticated sessions.
        public let connections: UInt64
        /// Users with at least one session.
        public let usersOnline: UInt64
        /// Messages stored since start.
        public let messagesStored: UInt64
        /// `msg` frames queued to sessions since start.
        public let messagesDelivered: UInt64
    }

    /// Every event of the server, in order. The stream finishes when the
    /// server has stopped and delivered its last event.
    public let events: AsyncStream<ServerEvent>

    private let handle: OpaquePointer

    /// Creates a server from its JSON configuration (docs/C-API.md lists the
    /// keys; `"{}"` takes every default). Throws `.invalidConfig` naming the
    /// field for an invalid configuration.
    ///
    /// - Parameters:
    ///   - logger: Receives the engine's log records at the configured
    ///     `log_level`; none when nil.
    ///   - authenticate: Decides who a token belongs to in auth mode
    ///     "callback", the default mode, which needs one; unused in the
    ///     other modes.
    ///
    /// Neither closure may hold the server strongly: the engine keeps them
    /// until the server is freed, which is when its last reference goes.
    public init(configJSON: String, logger: ImbedLogger? = nil, authenticate: ImbedAuthenticator? = nil) throws {
        var created: OpaquePointer?
        try ImbedError.check(imbed_server_new(configJSON, &created))
        guard let created else { preconditionFailure("imbed_server_new succeeded without a handle") }
        let (stream, context) = ListenerContext.makeStream(
            decoding: { ServerEvent(copying: $0) },
            authenticate: authenticate,
            log: logger
        )
        do {
            try ListenerContext.install(context) { imbed_server_set_listener(created, $0) }
        } catch {
            imbed_server_free(created)
            throw error
        }
        handle = created
        events = stream
    }

    /// Stops the server if it runs, waits for its last event, and frees it.
    deinit {
        imbed_server_free(handle)
    }

    /// Binds the configured address and starts serving. A server starts once.
    public func start() throws {
        try ImbedError.check(imbed_server_start(handle))
    }

    /// The bound TCP port: the real one when the configuration asked for port 0.
    public func port() throws -> UInt16 {
        var port: UInt16 = 0
        try ImbedError.check(imbed_server_port(handle, &port))
        return port
    }

    /// Sends `bodyJSON` (any JSON value) from `from` to the user `to`, and
    /// returns the message's seq once it is stored. Sending again with the
    /// same `from` and `clientID` stores nothing new and returns the same
    /// seq; nil lets the engine make a unique id.
    @discardableResult
    public func send(from: String, to: String, bodyJSON: String, clientID: String? = nil) throws -> UInt64 {
        var seq: UInt64 = 0
        try ImbedError.check(imbed_server_send(handle, from, to, bodyJSON, clientID, &seq))
        return seq
    }

    /// Sends like `send`, to every member of `group`; throws `.notFound`
    /// when the group does not exist.
    @discardableResult
    public func sendGroup(from: String, group: String, bodyJSON: String, clientID: String? = nil) throws -> UInt64 {
        var seq: UInt64 = 0
        try ImbedError.check(imbed_server_send_group(handle, from, group, bodyJSON, clientID, &seq))
        return seq
    }

    /// Up to `limit` (1 to 1000) stored messages of `conversation`
    /// (`dm:<a>:<b>` or `g:<group>`) with seq below `before` (0: the newest),
    /// oldest first, as a JSON array of protocol `msg` frames.
    public func history(conversation: String, before: UInt64 = 0, limit: UInt32 = 50) throws -> String {
        try takeOwnedString { imbed_server_history(handle, conversation, before, limit, $0) }
    }

    /// Creates `group`, or makes an existing one closed or open. Users cannot
    /// join a closed group; only the host adds its members. Closing an open
    /// group removes all its members first (they are told): anyone could have
    /// joined it, so a closed group's members are exactly those the host adds.
    public func createGroup(_ group: String, closed: Bool = false) throws {
        try ImbedError.check(imbed_server_create_group(handle, group, closed))
    }

    /// Adds `user` to `group` (closed groups too), once it is stored.
    public func addMember(_ user: String, to group: String) throws {
        try ImbedError.check(imbed_server_add_member(handle, group, user))
    }

    /// Removes `user` from `group`, once it is stored.
    public func removeMember(_ user: String, from group: String) throws {
        try ImbedError.check(imbed_server_remove_member(handle, group, user))
    }

    /// Closes every session of `user` (close code 4001) and returns how many
    /// there were: 0 for a user who is not online.
    @discardableResult
    public func kick(_ user: String) throws -> UInt32 {
        var sessionsClosed: UInt32 = 0
        try ImbedError.check(imbed_server_kick(handle, user, &sessionsClosed))
        return sessionsClosed
    }

    /// Whether `group` is closed, and its members, sorted. Throws `.notFound`
    /// when there is no such group.
    public func members(of group: String) throws -> GroupMembers {
        let membersJSON = try takeOwnedString { imbed_server_members(handle, group, $0) }
        return try JSONDecoder().decode(GroupMembers.self, from: Data(membersJSON.utf8))
    }

    /// The ids of the users with at least one session, sorted.
    public func online() throws -> [String] {
        let usersJSON = try takeOwnedString { imbed_server_online(handle, $0) }
        return try JSONDecoder().decode([String].self, from: Data(usersJSON.utf8))
    }

    /// Deletes message `seq` of `conversation` for everyone, as `by` (any
    /// valid id the host chooses, such as "moderator"), whoever sent it, and
    /// returns once it is stored. The delete is an event of the conversation
    /// with a seq of its own, which this returns; the message's body, its
    /// edits' and its reactions are erased from the store, and `history`
    /// shows a tombstone (`"deleted":true`) (docs/PROTOCOL.md, "Deletes").
    /// Throws `.notFound` when the conversation has no message `seq`, and
    /// `.invalidArgument` for a malformed `conversation` or `by`, a `seq` of
    /// 0, an event, or a message already deleted.
    @discardableResult
    public func delete(by: String, conversation: String, seq: UInt64) throws -> UInt64 {
        var deleteSeq: UInt64 = 0
        try ImbedError.check(imbed_server_delete(handle, by, conversation, seq, &deleteSeq))
        return deleteSeq
    }

    /// Searches the messages of `conversation`, or of every conversation when
    /// it is nil, for those with every word of `query` (letters and digits;
    /// case and diacritics ignored, whole words), and returns up to `limit`
    /// (1 to 100) of them, newest first, in their current state: edited ones
    /// by their new text, deleted ones and events never (docs/PROTOCOL.md,
    /// "Search"). `after` is the `next` of the page before; nil for the
    /// first. Blocks while the store is read. Throws `.invalidArgument` for a
    /// query with no word or over 256 bytes or 16 words, a malformed
    /// `conversation`, or a `limit` out of range.
    public func search(_ query: String, in conversation: String? = nil, after: String? = nil, limit: UInt32 = 20) throws -> SearchResults {
        let resultsJSON = try takeOwnedString { imbed_server_search(handle, conversation, query, after, limit, $0) }
        return try SearchResults(json: resultsJSON)
    }

    /// The uploaded file `fileID` (the 64 hex digits of `UploadedFile.id`):
    /// where its bytes are under `files.dir`, its size and its content type.
    /// The host may read any file. Throws `.notFound` when there is no such
    /// file, `.invalidArgument` when the configuration has no `files.dir`.
    public func file(_ fileID: String) throws -> StoredFile {
        let fileJSON = try takeOwnedString { imbed_server_file(handle, fileID, $0) }
        return try JSONDecoder().decode(StoredFile.self, from: Data(fileJSON.utf8))
    }

    /// Ends the push request `pushID` (from a `.push` event) once the push
    /// gateway's call ended: it is never offered again. `delivered` false,
    /// with the gateway's `reason`, is logged and counted in `/metrics`
    /// (`imbed_pushes_failed_total`) and ends it all the same: the gateway
    /// already retried as it saw fit. Throws `.notFound` when no request with
    /// that id is pending (ended already). Blocks until stored.
    public func pushDone(_ pushID: UInt64, delivered: Bool = true, reason: String? = nil) throws {
        try ImbedError.check(imbed_server_push_done(handle, pushID, delivered, reason))
    }

    /// The push requests not ended yet, oldest first: for a host that lists
    /// or ends them by hand.
    public func pendingPushes() throws -> [PendingPush] {
        let pushesJSON = try takeOwnedString { imbed_server_pending_pushes(handle, $0) }
        return try JSONDecoder().decode([PendingPushFields].self, from: Data(pushesJSON.utf8)).map(\.pending)
    }

    /// The devices with a session now, by user, each user's sorted. A user
    /// with a device in the foreground is looking and gets no push requests.
    public func devices() throws -> [String: [OnlineDevice]] {
        let devicesJSON = try takeOwnedString { imbed_server_devices(handle, $0) }
        let byUser = try JSONDecoder().decode([String: [OnlineDeviceFields]].self, from: Data(devicesJSON.utf8))
        return byUser.mapValues { devices in devices.map(\.online) }
    }

    /// The server's counters.
    public func stats() throws -> Stats {
        var stats = imbed_stats()
        try ImbedError.check(imbed_server_stats(handle, &stats))
        return Stats(
            connections: stats.connections,
            usersOnline: stats.users_online,
            messagesStored: stats.messages_stored,
            messagesDelivered: stats.messages_delivered
        )
    }

    /// Closes every session (close code 1001), delivers the remaining events
    /// and finishes `events`. Stopping again does nothing; the other calls
    /// then throw `.stopped`. Throws `.inCallback` from inside the server's
    /// own callbacks (the logger, the authenticator), where it would wait
    /// for itself.
    public func stop() throws {
        try ImbedError.check(imbed_server_stop(handle))
    }
}

/// A group's membership, from `ImbedServer.members(of:)`.
public struct GroupMembers: Sendable, Equatable, Decodable {
    /// Whether users are refused when they try to join; only the host adds
    /// members.
    public let closed: Bool
    /// The members' ids, sorted.
    public let members: [String]

    /// A membership, for comparing with `members(of:)`.
    public init(closed: Bool, members: [String]) {
        self.closed = closed
        self.members = members
    }
}
