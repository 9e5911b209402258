import CImbed

/// A failed imbed call: its status code and the engine's message about it.
public struct ImbedError: Error, Equatable, CustomStringConvertible {
    /// The `imbed_status` code of the failure, never `IMBED_OK` (0).
    public let status: Int32
    /// What went wrong, from `imbed_last_error()`: which field, which address...
    /// Empty when the engine had nothing to add to the status.
    public let message: String

    /// The engine's fixed description of `status`, from `imbed_status_str`.
    public var statusDescription: String {
        String(cString: imbed_status_str(status))
    }

    /// The status description, then the message when there is one.
    public var description: String {
        message.isEmpty ? statusDescription : "\(statusDescription): \(message)"
    }

    /// Whether this is `IMBED_ERR_NOT_CONNECTED`: a client request made while
    /// the client was not connected (requests are not queued; retry later).
    public var isNotConnected: Bool {
        status == Int32(IMBED_ERR_NOT_CONNECTED.rawValue)
    }

    /// Throws the failure `status` reports, if any. Call it right after the
    /// imbed call that returned `status`, on the same thread: the message of
    /// `imbed_last_error()` only lives until the next imbed call there.
    static func check(_ status: imbed_status) throws {
        guard status != IMBED_OK else { return }
        throw ImbedError(status: Int32(status.rawValue), message: String(cString: imbed_last_error()))
    }
}
