import Foundation

/// A file the server took, from `ImbedClient.upload(path:contentType:)`: the
/// answer of `POST /files` (docs/PROTOCOL.md, "Files"). A message refers to
/// it by `id` in its body's `files`, such as
/// `{"text":"the plan","files":["<id>"]}` or
/// `{"files":[{"id":"<id>","name":"plan.png"}]}`.
public struct UploadedFile: Sendable, Equatable, Decodable {
    /// The SHA-256 of the file's bytes, 64 lowercase hex digits: the same
    /// bytes uploaded twice are one file.
    public let id: String
    /// Its size in bytes.
    public let size: UInt64
    /// Its content type, taken from its bytes (`image/png`), else from the
    /// declared one when that cannot run script in a browser, else
    /// `application/octet-stream`.
    public let type: String

    /// A file, for comparing with `upload(path:contentType:)`.
    public init(id: String, size: UInt64, type: String) {
        self.id = id
        self.size = size
        self.type = type
    }
}

/// An uploaded file as the server keeps it, from `ImbedServer.file(_:)`.
public struct StoredFile: Sendable, Equatable, Decodable {
    /// Where its bytes are, under the configuration's `files.dir`; the host
    /// may read them.
    public let path: String
    /// Its size in bytes.
    public let size: UInt64
    /// Its content type, as it is served.
    public let type: String

    /// A file, for comparing with `file(_:)`.
    public init(path: String, size: UInt64, type: String) {
        self.path = path
        self.size = size
        self.type = type
    }
}

/// A page of search results, from `ImbedServer.search(_:in:after:limit:)`.
public struct SearchResults: Sendable, Equatable {
    /// The messages found, newest first, each a protocol `msg` frame in its
    /// current state (edited text, reactions, `reply_to`). The same values
    /// as the engine's, though not always the same text: each is written
    /// again, so object members may come in another order.
    public let messagesJSON: [String]
    /// Whether more messages match than this page holds.
    public let more: Bool
    /// When `more`, the `after` of the next page (an opaque string); nil
    /// otherwise.
    public let next: String?

    /// A page, for comparing with `search(_:in:after:limit:)`.
    public init(messagesJSON: [String], more: Bool, next: String?) {
        self.messagesJSON = messagesJSON
        self.more = more
        self.next = next
    }
}

extension SearchResults {
    /// What `imbed_server_search` writes, but the results (msg frames, which
    /// Decodable cannot keep as text): `next` is null or absent without more.
    private struct Fields: Decodable {
        let more: Bool
        let next: String?
    }

    /// The object `imbed_server_search` writes:
    /// `{"results":[msg frames],"more":true,"next":"…"}`.
    init(json: String) throws {
        let data = Data(json.utf8)
        let fields = try JSONDecoder().decode(Fields.self, from: data)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let results = object["results"] as? [Any]
        else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: [], debugDescription: "a search answer without results: \(json)"))
        }
        messagesJSON = try results.map { frame in
            let frameData = try JSONSerialization.data(withJSONObject: frame, options: [.withoutEscapingSlashes])
            return String(decoding: frameData, as: UTF8.self)
        }
        more = fields.more
        next = fields.next
    }
}
