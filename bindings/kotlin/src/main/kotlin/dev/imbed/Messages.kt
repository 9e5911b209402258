package dev.imbed

import kotlinx.serialization.json.JsonNull

/**
 * A file the server took, from [ImbedClient.upload]: the answer of `POST /files`
 * (`docs/PROTOCOL.md`, "Files"). A message refers to it by [id] in its body's `files`, such as
 * `{"text":"the plan","files":["<id>"]}` or `{"files":[{"id":"<id>","name":"plan.png"}]}`.
 *
 * @property id The SHA-256 of the file's bytes, 64 lowercase hex digits: the same bytes uploaded
 *   twice are one file.
 * @property size Its size in bytes.
 * @property type Its content type, taken from its bytes (`image/png`), else from the declared one
 *   when that cannot run script in a browser, else `application/octet-stream`.
 */
public data class UploadedFile(
    public val id: String,
    public val size: Long,
    public val type: String,
)

/**
 * An uploaded file as the server keeps it, from [ImbedServer.file].
 *
 * @property path Where its bytes are, under the configuration's `files.dir`; the host may read them.
 * @property size Its size in bytes.
 * @property type Its content type, as it is served.
 */
public data class StoredFile(
    public val path: String,
    public val size: Long,
    public val type: String,
)

/**
 * A page of search results, from [ImbedServer.search].
 *
 * @property messagesJson The messages found, newest first, each a protocol `msg` frame in its
 *   current state (edited text, reactions, `reply_to`).
 * @property more Whether more messages match than this page holds.
 * @property next When [more], the `after` of the next page (an opaque string); null otherwise.
 */
public data class SearchResults(
    public val messagesJson: List<String>,
    public val more: Boolean,
    public val next: String?,
)

/** The answer of `imbed_client_upload`: `{"id":…,"size":…,"type":…}`. */
internal fun uploadedFile(json: String): UploadedFile {
    val answer = jsonObject(json)
    return UploadedFile(answer.string("id"), answer.long("size"), answer.string("type"))
}

/** The object `imbed_server_file` writes: `{"path":…,"size":…,"type":…}`. */
internal fun storedFile(json: String): StoredFile {
    val file = jsonObject(json)
    return StoredFile(file.string("path"), file.long("size"), file.string("type"))
}

/** The object `imbed_server_search` writes: `{"results":[…],"more":…,"next":…}`, `next` null or absent without more. */
internal fun searchResults(json: String): SearchResults {
    val page = jsonObject(json)
    val next = page["next"]?.takeUnless { it is JsonNull }?.let { page.string("next") }
    return SearchResults(page.array("results").map { it.toString() }, page.boolean("more"), next)
}
