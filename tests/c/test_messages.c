/*
 * C test of what happens to messages after they are sent, and of files
 * (issue 16; docs/PROTOCOL.md, "Replies, edits, deletes and reactions",
 * "Search" and "Files"): imbed_server_delete, imbed_server_search,
 * imbed_server_file and imbed_client_upload, and imbed_client_request
 * routing send (with reply_to), edit and react through the client's outbox
 * (ack and send_failed events), on a SQLite server with a files directory and
 * real WebSocket peers (poll-mode client role handles).
 *
 * Prints one line per check, then "N passed, M failed"; exits 1 if any
 * check failed. Meant to run under
 *   IMBED_ALLOCATOR=system valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
 * so a JSON string or event never freed, or freed twice, also fails the run.
 *
 * Build:
 *   cc -std=c11 -Wall -Wextra -Werror -D_DEFAULT_SOURCE -Iinclude \
 *      tests/c/test_messages.c target/release/libimbed.a -lpthread -ldl -lm -o build/test_messages
 */
#include "imbed.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Silent servers with dev auth; each test adds its store and files. */
#define SERVER_BASE "\"listen\":\"127.0.0.1:0\",\"auth\":{\"mode\":\"dev\"},\"log_level\":\"off\""
/* The largest upload and alice's quota in the main test: small, so that the refusals are cheap. */
#define MAX_BYTES 2048
#define QUOTA_BYTES 3000
/* Every wait for the engine is bounded by this; generous because valgrind is slow. */
#define EVENT_WAIT_MS 20000
/* A hung stop, poll or upload must fail the run, not stall CI. */
#define WATCHDOG_SECONDS 240
/* 👍 in UTF-8, as the engine writes it back (serde_json leaves non-ASCII as is). */
#define THUMBS_UP "\xf0\x9f\x91\x8d"

/* A 1×1 PNG: signature, IHDR, IDAT, IEND. The server takes its type from these bytes. */
static const unsigned char PIXEL_PNG[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
};

/* The directory holding the server database, the files directory and the uploads' sources; removed at the end. */
static char test_directory[] = "/tmp/imbed-test-messages-XXXXXX";

/* Whether `id` is a file id: exactly 64 lowercase hex digits. */
static bool is_file_id(const char *id)
{
    size_t length = 0;
    for (; id[length] != '\0'; length++) {
        char c = id[length];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return length == 64;
}

/* Offset of the first "seq":<seq> (as a whole number, so 1 does not match 12) in `json`, or -1. */
static long seq_offset(const char *json, long long seq)
{
    if (json == NULL) {
        return -1;
    }
    char needle[40];
    int needle_length = snprintf(needle, sizeof needle, "\"seq\":%lld", seq);
    for (const char *found = strstr(json, needle); found != NULL; found = strstr(found + 1, needle)) {
        char next = found[needle_length];
        if (next < '0' || next > '9') {
            return (long)(found - json);
        }
    }
    return -1;
}

/*
 * Copies the msg frame of `json` (a history array or search answer) that has
 * "seq":<seq> into `out`: from the '{' that opens it to its '}', found by
 * counting braces outside strings. Whether there was one.
 */
static bool copy_frame_with_seq(const char *json, long long seq, char *out, size_t capacity)
{
    out[0] = '\0';
    long offset = seq_offset(json, seq);
    if (offset < 0) {
        return false;
    }
    /* Frames are flat up to "seq" (type, conv, seq come first): the '{' before it opens the frame. */
    const char *start = json + offset;
    while (start > json && *start != '{') {
        start--;
    }
    int depth = 0;
    bool in_string = false;
    for (const char *at = start; *at != '\0'; at++) {
        if (in_string) {
            if (*at == '\\' && at[1] != '\0') {
                at++;
            } else if (*at == '"') {
                in_string = false;
            }
            continue;
        }
        if (*at == '"') {
            in_string = true;
        } else if (*at == '{') {
            depth++;
        } else if (*at == '}' && --depth == 0) {
            size_t length = (size_t)(at - start) + 1;
            if (length >= capacity) {
                return false;
            }
            memcpy(out, start, length);
            out[length] = '\0';
            return true;
        }
    }
    return false;
}

/* Writes `length` bytes to `path` (created or truncated); whether it worked. */
static bool write_file(const char *path, const void *bytes, size_t length)
{
    FILE *file = fopen(path, "wb");
    if (file == NULL) {
        return false;
    }
    bool written = fwrite(bytes, 1, length, file) == length;
    return fclose(file) == 0 && written;
}

/* Writes `length` bytes of `fill` to `path`; whether it worked. */
static bool write_filled_file(const char *path, char fill, size_t length)
{
    char *bytes = malloc(length);
    if (bytes == NULL) {
        return false;
    }
    memset(bytes, fill, length);
    bool written = write_file(path, bytes, length);
    free(bytes);
    return written;
}

/* Whether the file at `path` holds exactly `length` bytes equal to `bytes`. */
static bool file_holds(const char *path, const void *bytes, size_t length)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return false;
    }
    unsigned char buffer[256];
    size_t read = fread(buffer, 1, sizeof buffer, file);
    fclose(file);
    return read == length && memcmp(buffer, bytes, length) == 0;
}

/* Removes `path` and, if it is a directory, everything under it; whether all of it went. */
static bool remove_tree(const char *path)
{
    struct stat status;
    if (lstat(path, &status) != 0) {
        return errno == ENOENT;
    }
    if (!S_ISDIR(status.st_mode)) {
        return unlink(path) == 0;
    }
    DIR *directory = opendir(path);
    if (directory == NULL) {
        return false;
    }
    bool removed = true;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
        removed &= remove_tree(child);
    }
    closedir(directory);
    return rmdir(path) == 0 && removed;
}

/* A poll-mode client role handle, a real WebSocket peer of the server under test. */
typedef struct peer {
    const char *name;
    imbed_client *client;
    int fd;
} peer;

/* Creates a poll-mode client of user `token` for the server at `port` (state in memory); not started. */
static bool new_peer(peer *out, uint16_t port, const char *token)
{
    char config[256];
    snprintf(config, sizeof config,
             "{\"url\":\"ws://127.0.0.1:%u/ws\",\"token\":\"%s\",\"log_level\":\"off\","
             "\"events\":{\"delivery\":\"poll\"}}",
             (unsigned)port, token);
    *out = (peer){.name = token, .fd = -1};
    char what[64];
    snprintf(what, sizeof what, "new client %s", token);
    if (!check_status(imbed_client_new(config, &out->client), IMBED_OK, what)) {
        return false;
    }
    snprintf(what, sizeof what, "client %s event_fd", token);
    if (!check_status(imbed_client_event_fd(out->client, &out->fd), IMBED_OK, what)) {
        imbed_client_free(out->client);
        out->client = NULL;
        return false;
    }
    return true;
}

/*
 * Waits for the client's event of `kind` whose json has "key":"value",
 * freeing the events before it; returns it (the caller frees it), or NULL
 * when it did not come within EVENT_WAIT_MS. An ack or send_failed of the
 * same id but the other kind is reported, as it will never turn into the
 * one awaited.
 */
static imbed_event *wait_peer_event(const peer *peer, imbed_event_kind kind, const char *key, const char *value)
{
    long long deadline = now_ms() + EVENT_WAIT_MS;
    for (;;) {
        imbed_event *event = NULL;
        imbed_status status = imbed_client_poll_event(peer->client, &event);
        if (status != IMBED_OK) {
            check(false, "client %s poll_event -> %s", peer->name, status_name(status));
            return NULL;
        }
        if (event != NULL) {
            if (event->kind == kind && json_has(event->json, key, value)) {
                return event;
            }
            bool settled_otherwise = (event->kind == IMBED_EVENT_ACK || event->kind == IMBED_EVENT_SEND_FAILED) &&
                                     event->kind != kind && json_has(event->json, key, value);
            if (settled_otherwise) {
                check(false, "client %s: %s awaited, got %s instead: %s", peer->name, kind_name(kind),
                      kind_name(event->kind), event->json);
                imbed_event_free(event);
                return NULL;
            }
            imbed_event_free(event);
            continue;
        }
        long long left = deadline - now_ms();
        if (left <= 0 || wait_readable(peer->fd, (int)left) < 0) {
            check(false, "client %s: %s event with \"%s\":\"%s\" in time", peer->name, kind_name(kind), key,
                  value != NULL ? value : "(NULL)");
            return NULL;
        }
    }
}

/* Starts `peer` and waits until it is connected; whether it was in time. */
static bool start_peer(const peer *peer)
{
    char what[64];
    snprintf(what, sizeof what, "start client %s", peer->name);
    if (!check_status(imbed_client_start(peer->client), IMBED_OK, what)) {
        return false;
    }
    imbed_event *event = wait_peer_event(peer, IMBED_EVENT_STATE, "state", "connected");
    imbed_event_free(event);
    return event != NULL;
}

/*
 * Sends `frame` through imbed_client_request and returns its request id
 * (free it with imbed_string_free), or NULL after a failed check.
 */
static char *request(const peer *peer, const char *frame, const char *what)
{
    char *id = NULL;
    if (!check_status(imbed_client_request(peer->client, frame, &id), IMBED_OK, what)) {
        return NULL;
    }
    check(id != NULL && id[0] != '\0', "%s: a request id (%s)", what, id != NULL ? id : "(NULL)");
    return id;
}

/* Waits for the ack of request `id` and returns the seq it was stored at, or -1; frees `id`. */
static long long wait_ack(const peer *peer, char *id, const char *what)
{
    imbed_event *ack = id != NULL ? wait_peer_event(peer, IMBED_EVENT_ACK, "id", id) : NULL;
    long long seq = ack != NULL ? json_number(ack->json, "seq") : -1;
    check(ack != NULL && json_has(ack->json, "conv", "dm:alice:bob") && seq > 0 && json_number(ack->json, "ts") > 0,
          "%s: ack with conv dm:alice:bob, seq and ts (%s)", what, ack != NULL ? ack->json : "(none)");
    imbed_event_free(ack);
    imbed_string_free(id);
    return seq;
}

/* imbed_server_search, checked to succeed; the JSON or NULL (free it with imbed_string_free). */
static char *search(imbed_server *server, const char *conv, const char *query, const char *after, uint32_t limit,
                    const char *what)
{
    char *json = NULL;
    if (!check_status(imbed_server_search(server, conv, query, after, limit, &json), IMBED_OK, what)) {
        return NULL;
    }
    return json;
}

/* The number of msg frames in a search answer or history array. */
static int frame_count(const char *json)
{
    return count_occurrences(json, "\"type\":\"msg\"");
}

/* Checks a search answer: `count` results, these seqs in this order (newest first), and `more`. */
static void check_results(const char *json, int count, const long long *seqs, bool more, const char *what)
{
    bool ordered = json != NULL && contains(json, "\"results\":[");
    long previous = -1;
    for (int index = 0; index < count && ordered; index++) {
        long offset = seq_offset(json, seqs[index]);
        ordered = offset > previous && contains(json, "\"conv\":\"dm:alice:bob\"");
        previous = offset;
    }
    check(ordered && frame_count(json) == count && contains(json, more ? "\"more\":true" : "\"more\":false"),
          "%s: %d result(s)%s, more %s: %s", what, count, count > 1 ? ", newest first" : "", more ? "true" : "false",
          json != NULL ? json : "(none)");
}

/* The server's history of dm:alice:bob, or NULL after a failed check. */
static char *history(imbed_server *server, const char *when)
{
    char *json = NULL;
    char what[128];
    snprintf(what, sizeof what, "history of dm:alice:bob %s", when);
    if (!check_status(imbed_server_history(server, "dm:alice:bob", 0, 100, &json), IMBED_OK, what)) {
        return NULL;
    }
    return json;
}

/* Creates and starts a server from `config`; its port goes to `*port_out`. NULL after a failed check. */
static imbed_server *start_server(const char *config, uint16_t *port_out)
{
    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(config, &server), IMBED_OK, "new server")) {
        return NULL;
    }
    if (!check_status(imbed_server_start(server), IMBED_OK, "start server") ||
        !check_status(imbed_server_port(server, port_out), IMBED_OK, "server port")) {
        imbed_server_free(server);
        return NULL;
    }
    return server;
}

/*
 * The whole story on one SQLite server with files: alice uploads a PNG and
 * sends a message referring to it through imbed_client_request; bob, before
 * he starts, queues a reply and a reaction; the host finds the file and the
 * messages, alice edits, the host deletes, and search and history follow.
 */
static void test_messages_and_files(void)
{
    char config[1024];
    snprintf(config, sizeof config,
             "{" SERVER_BASE ",\"store\":{\"path\":\"%s/server.db\"},"
             "\"files\":{\"dir\":\"%s/files\",\"max_bytes\":%d,\"quota_bytes\":%d}}",
             test_directory, test_directory, MAX_BYTES, QUOTA_BYTES);
    uint16_t port = 0;
    imbed_server *server = start_server(config, &port);
    if (server == NULL) {
        return;
    }
    peer alice = {0};
    peer bob = {0};
    char *json = NULL;
    char *second = NULL;
    if (!new_peer(&alice, port, "alice") || !new_peer(&bob, port, "bob") || !start_peer(&alice)) {
        goto done;
    }

    /* Upload: the id is the SHA-256 of the bytes, the type from the bytes. */
    char pixel_path[256];
    snprintf(pixel_path, sizeof pixel_path, "%s/pixel.png", test_directory);
    if (!check(write_file(pixel_path, PIXEL_PNG, sizeof PIXEL_PNG), "write %s", pixel_path)) {
        goto done;
    }
    if (!check_status(imbed_client_upload(alice.client, pixel_path, NULL, &json), IMBED_OK,
                      "alice uploads pixel.png (no content type)")) {
        goto done;
    }
    char file_id[80];
    bool has_id = copy_string_after(json, "\"id\":\"", file_id, sizeof file_id);
    check(has_id && is_file_id(file_id), "upload answer: an id of 64 lowercase hex digits (%s)", json);
    check(json_has(json, "type", "image/png") && json_number(json, "size") == (long long)sizeof PIXEL_PNG,
          "upload answer: \"type\":\"image/png\" and \"size\":%zu (%s)", sizeof PIXEL_PNG, json);
    imbed_string_free(json);
    json = NULL;
    if (!has_id) {
        goto done;
    }

    /* The same bytes again, with a content type the bytes contradict: the same file, still a PNG. */
    if (check_status(imbed_client_upload(alice.client, pixel_path, "text/plain", &second), IMBED_OK,
                     "alice uploads pixel.png again, content type text/plain")) {
        check(json_has(second, "id", file_id) && json_has(second, "type", "image/png"),
              "the same bytes are the same file, typed by its bytes: %s", second);
    }
    imbed_string_free(second);
    second = NULL;

    /* Bob uploads before starting: the upload needs no WebSocket. */
    char note_path[256];
    snprintf(note_path, sizeof note_path, "%s/note.txt", test_directory);
    if (check(write_file(note_path, "zebra notes\n", 12), "write %s", note_path) &&
        check_status(imbed_client_upload(bob.client, note_path, "text/plain", &second), IMBED_OK,
                     "bob uploads note.txt before his client starts")) {
        check(json_has(second, "type", "text/plain") && json_number(second, "size") == 12,
              "a text file typed by its declared text/plain: %s", second);
    }
    imbed_string_free(second);
    second = NULL;

    /* The message referring to the file, through the outbox: an ack with the frame's own id. */
    char frame[512];
    snprintf(frame, sizeof frame,
             "{\"type\":\"send\",\"id\":\"m-files-1\",\"to\":\"bob\",\"body\":{\"text\":\"the zebra plan\","
             "\"files\":[\"%s\"]}}",
             file_id);
    char *id = request(&alice, frame, "alice requests a send referring to the file");
    check(equals(id, "m-files-1"), "the request id is the frame's id (%s)", id != NULL ? id : "(NULL)");
    long long seq1 = wait_ack(&alice, id, "alice's message with the file");
    check(seq1 == 1, "alice's message stored at seq 1 (%lld)", seq1);

    /* Bob, not started yet: the outbox takes a reply and a reaction; a history request needs a connection. */
    char *reply_id = request(&bob, "{\"type\":\"send\",\"to\":\"alice\",\"body\":{\"text\":\"zebra agreed\"},\"reply_to\":1}",
                             "bob requests a reply to seq 1 before starting (no id in the frame)");
    char *react_id = request(&bob,
                             "{\"type\":\"react\",\"id\":\"r-thumb\",\"conv\":\"dm:alice:bob\",\"seq\":1,\"emoji\":\"" THUMBS_UP
                             "\"}",
                             "bob requests a reaction to seq 1 before starting");
    char *unused = NULL;
    check_status(imbed_client_request(bob.client, "{\"type\":\"history\",\"conv\":\"dm:alice:bob\"}", &unused),
                 IMBED_ERR_NOT_CONNECTED, "bob requests history before starting (not queued)");
    imbed_string_free(unused);
    if (!start_peer(&bob)) {
        imbed_string_free(reply_id);
        imbed_string_free(react_id);
        goto done;
    }
    long long seq2 = wait_ack(&bob, reply_id, "bob's reply, queued before start");
    long long seq3 = wait_ack(&bob, react_id, "bob's reaction, queued before start");
    check(seq2 == 2 && seq3 == 3, "bob's reply and reaction stored at seq 2 and 3, in the outbox's order (%lld, %lld)",
          seq2, seq3);

    /* The host finds the file: its bytes where the path says. */
    if (check_status(imbed_server_file(server, file_id, &json), IMBED_OK, "server file(the uploaded id)")) {
        char path[512];
        struct stat status;
        bool has_path = copy_string_after(json, "\"path\":\"", path, sizeof path);
        check(has_path && stat(path, &status) == 0 && S_ISREG(status.st_mode) &&
                  status.st_size == (off_t)sizeof PIXEL_PNG && file_holds(path, PIXEL_PNG, sizeof PIXEL_PNG),
              "file: the path names a file holding the %zu uploaded bytes: %s", sizeof PIXEL_PNG, json);
        char files_dir[300];
        snprintf(files_dir, sizeof files_dir, "%s/files/", test_directory);
        check(strncmp(path, files_dir, strlen(files_dir)) == 0, "file: the path is under files.dir (%s)", path);
        check(json_number(json, "size") == (long long)sizeof PIXEL_PNG && json_has(json, "type", "image/png"),
              "file: \"size\":%zu and \"type\":\"image/png\" (%s)", sizeof PIXEL_PNG, json);
    }
    imbed_string_free(json);
    json = NULL;

    /* Search: every word, newest first, pages, scoped or not. */
    long long both[] = {2, 1};
    json = search(server, NULL, "zebra", NULL, 20, "search \"zebra\" everywhere");
    check_results(json, 2, both, false, "search \"zebra\" everywhere");
    imbed_string_free(json);
    json = search(server, "dm:alice:bob", "zebra", NULL, 20, "search \"zebra\" in dm:alice:bob");
    check_results(json, 2, both, false, "search \"zebra\" in dm:alice:bob");
    imbed_string_free(json);
    json = search(server, "dm:alice:carol", "zebra", NULL, 20, "search \"zebra\" in dm:alice:carol");
    check(contains(json, "\"results\":[]") && contains(json, "\"more\":false"),
          "search in another conversation finds nothing: %s", json != NULL ? json : "(none)");
    imbed_string_free(json);
    json = search(server, NULL, "Z\xc3\x88" "BRA plan", NULL, 20, "search \"Z\xc3\x88" "BRA plan\"");
    check_results(json, 1, both + 1, false, "search ignores case and diacritics, needs every word");
    imbed_string_free(json);
    json = search(server, NULL, "zebra", NULL, 1, "search \"zebra\", limit 1");
    check_results(json, 1, both, true, "search \"zebra\", limit 1: the newest");
    char next[128];
    bool has_next = copy_string_after(json, "\"next\":\"", next, sizeof next);
    check(has_next && next[0] != '\0', "search with more: a next (%s)", json != NULL ? json : "(none)");
    imbed_string_free(json);
    json = NULL;
    if (has_next) {
        json = search(server, NULL, "zebra", next, 1, "search \"zebra\", limit 1, after next");
        check_results(json, 1, both + 1, false, "search's second page: the older");
        imbed_string_free(json);
        json = NULL;
    }
    json = search(server, NULL, file_id, NULL, 20, "search for the file's id");
    check_results(json, 1, both + 1, false, "search for the file's id (a string in the body)");
    imbed_string_free(json);
    json = search(server, NULL, "okapi", NULL, 20, "search \"okapi\" before the edit");
    check(contains(json, "\"results\":[]"), "no okapi before the edit: %s", json != NULL ? json : "(none)");
    imbed_string_free(json);
    json = NULL;

    /* Alice edits through the outbox: search finds the current text, never the event itself. */
    id = request(&alice, "{\"type\":\"edit\",\"conv\":\"dm:alice:bob\",\"seq\":1,\"body\":{\"text\":\"the okapi plan\"}}",
                 "alice requests an edit of seq 1");
    long long seq4 = wait_ack(&alice, id, "alice's edit");
    check(seq4 == 4, "the edit is an event at seq 4 (%lld)", seq4);
    json = search(server, NULL, "okapi", NULL, 20, "search \"okapi\" after the edit");
    check_results(json, 1, both + 1, false, "the edited message is found by its new text, the edit event is not");
    imbed_string_free(json);
    json = search(server, NULL, "zebra", NULL, 20, "search \"zebra\" after the edit");
    check_results(json, 1, both, false, "the edited message is no longer found by its old text");
    imbed_string_free(json);
    json = NULL;

    /* The host deletes seq 1, whoever sent it: a new seq, and it is gone from search. */
    uint64_t delete_seq = 0;
    check_status(imbed_server_delete(server, "moderator", "dm:alice:bob", 1, &delete_seq), IMBED_OK,
                 "server delete(dm:alice:bob, 1) by moderator");
    check(delete_seq == 5, "the delete is an event with a seq of its own, the next one: 5 (%llu)",
          (unsigned long long)delete_seq);
    /* Delivered like a message: to both members of the conversation, whoever the host deletes as. */
    const peer *members[] = {&bob, &alice};
    for (size_t index = 0; index < sizeof members / sizeof members[0]; index++) {
        imbed_event *deleted = wait_peer_event(members[index], IMBED_EVENT_MESSAGE, "kind", "delete");
        check(deleted != NULL && seq_offset(deleted->json, 5) >= 0 && contains(deleted->json, "\"target\":1") &&
                  json_has(deleted->json, "from", "moderator"),
              "%s's client receives the delete event (seq 5, kind delete, target 1, from moderator): %s",
              members[index]->name, deleted != NULL ? deleted->json : "(none)");
        imbed_event_free(deleted);
    }
    json = search(server, NULL, "okapi", NULL, 20, "search \"okapi\" after the delete");
    check(contains(json, "\"results\":[]") && contains(json, "\"more\":false"),
          "search no longer finds the deleted message: %s", json != NULL ? json : "(none)");
    imbed_string_free(json);
    json = search(server, "dm:alice:bob", "plan", NULL, 20, "search \"plan\" in dm:alice:bob after the delete");
    check(contains(json, "\"results\":[]"), "nor by a word its first text had: %s", json != NULL ? json : "(none)");
    imbed_string_free(json);
    json = search(server, NULL, "zebra", NULL, 20, "search \"zebra\" after the delete");
    check_results(json, 1, both, false, "the reply is still found");
    imbed_string_free(json);
    json = NULL;

    /* History: a tombstone with its seq and sender, the reply, the events. */
    json = history(server, "after the delete");
    char message[2048];
    bool found = copy_frame_with_seq(json, 1, message, sizeof message);
    check(found && contains(message, "\"deleted\":true") && contains(message, "\"body\":null") &&
              json_has(message, "from", "alice") && !contains(message, "okapi") && !contains(message, "zebra") &&
              !contains(message, file_id),
          "history: seq 1 is a tombstone, \"deleted\":true, body null, from alice, no text or file left: %s",
          found ? message : (json != NULL ? json : "(none)"));
    found = copy_frame_with_seq(json, 2, message, sizeof message);
    check(found && contains(message, "\"reply_to\":1") && contains(message, "zebra agreed") &&
              !contains(message, "\"deleted\""),
          "history: seq 2 is bob's reply, \"reply_to\":1: %s", found ? message : "(none)");
    found = copy_frame_with_seq(json, 5, message, sizeof message);
    check(found && json_has(message, "kind", "delete") && contains(message, "\"target\":1") &&
              json_has(message, "from", "moderator"),
          "history: seq 5 is the delete event (kind delete, target 1, from moderator): %s",
          found ? message : "(none)");
    check(frame_count(json) == 5, "history: seqs 1 to 5, events included (%d frames)", frame_count(json));
    check(!contains(json, "okapi") && !contains(json, "the zebra plan"),
          "history: neither text of the deleted message survives, in it or its edit: %s", json != NULL ? json : "");
    imbed_string_free(json);
    json = NULL;

    /* An edit of a deleted message: refused for good, a send_failed event. */
    id = request(&alice, "{\"type\":\"edit\",\"conv\":\"dm:alice:bob\",\"seq\":1,\"body\":{\"text\":\"too late\"}}",
                 "alice requests an edit of the deleted seq 1");
    imbed_event *failed = id != NULL ? wait_peer_event(&alice, IMBED_EVENT_SEND_FAILED, "id", id) : NULL;
    check(failed != NULL && json_has(failed->json, "code", "bad_request"),
          "the edit of a deleted message: send_failed, code bad_request (%s)", failed != NULL ? failed->json : "(none)");
    imbed_event_free(failed);
    imbed_string_free(id);

    /* Deletes the engine refuses. */
    uint64_t untouched = 12345;
    check_status(imbed_server_delete(server, "moderator", "dm:alice:bob", 1, &untouched), IMBED_ERR_INVALID_ARGUMENT,
                 "delete of a message already deleted");
    check_status(imbed_server_delete(server, "moderator", "dm:alice:bob", 5, &untouched), IMBED_ERR_INVALID_ARGUMENT,
                 "delete of an event (the delete itself)");
    check_status(imbed_server_delete(server, "moderator", "dm:alice:bob", 3, &untouched), IMBED_ERR_INVALID_ARGUMENT,
                 "delete of an event (bob's reaction)");
    check_status(imbed_server_delete(server, "moderator", "dm:alice:bob", 999, &untouched), IMBED_ERR_NOT_FOUND,
                 "delete of a missing seq");
    check_last_error_mentions("", "delete of a missing seq");
    check_status(imbed_server_delete(server, "moderator", "dm:alice:carol", 1, &untouched), IMBED_ERR_NOT_FOUND,
                 "delete in a conversation without messages");
    check_status(imbed_server_delete(server, "moderator", "dm:alice:bob", 0, &untouched), IMBED_ERR_INVALID_ARGUMENT,
                 "delete of seq 0");
    check_status(imbed_server_delete(server, "moderator", "dm:bob:alice", 2, &untouched), IMBED_ERR_INVALID_ARGUMENT,
                 "delete in a malformed conv (dm ids not sorted)");
    check_status(imbed_server_delete(server, "moderator", "alice", 2, &untouched), IMBED_ERR_INVALID_ARGUMENT,
                 "delete in a malformed conv (no prefix)");
    check_status(imbed_server_delete(server, "not an id!", "dm:alice:bob", 2, &untouched), IMBED_ERR_INVALID_ARGUMENT,
                 "delete by an invalid id");
    check(untouched == 12345, "refused deletes leave seq_out untouched (%llu)", (unsigned long long)untouched);
    check_status(imbed_server_delete(server, "host", "dm:alice:bob", 2, NULL), IMBED_OK,
                 "delete of bob's reply with a NULL seq_out");

    /* Searches the engine refuses. */
    char *sentinel_json = (char *)"untouched";
    json = sentinel_json;
    check_status(imbed_server_search(server, NULL, "", NULL, 20, &json), IMBED_ERR_INVALID_ARGUMENT,
                 "search with an empty query");
    check_status(imbed_server_search(server, NULL, "?! -- ...", NULL, 20, &json), IMBED_ERR_INVALID_ARGUMENT,
                 "search with a query of no word");
    check_status(imbed_server_search(server, NULL, "a b c d e f g h i j k l m n o p q", NULL, 20, &json),
                 IMBED_ERR_INVALID_ARGUMENT, "search with 17 words");
    char long_query[300];
    memset(long_query, 'z', 257);
    long_query[257] = '\0';
    check_status(imbed_server_search(server, NULL, long_query, NULL, 20, &json), IMBED_ERR_INVALID_ARGUMENT,
                 "search with a query of 257 bytes");
    check_status(imbed_server_search(server, NULL, "zebra", NULL, 0, &json), IMBED_ERR_INVALID_ARGUMENT,
                 "search with limit 0");
    check_status(imbed_server_search(server, NULL, "zebra", NULL, 101, &json), IMBED_ERR_INVALID_ARGUMENT,
                 "search with limit 101");
    check_status(imbed_server_search(server, "dm:bob:alice", "zebra", NULL, 20, &json), IMBED_ERR_INVALID_ARGUMENT,
                 "search in a malformed conv");
    check(json == sentinel_json, "refused searches leave json_out untouched");
    json = NULL;
    json = search(server, NULL, "z", NULL, 100, "search with a one-letter word and limit 100");
    imbed_string_free(json);
    json = NULL;

    /* Files the engine does not have, and uploads it refuses. */
    char *file_json = sentinel_json;
    check_status(imbed_server_file(server, "0000000000000000000000000000000000000000000000000000000000000000",
                                   &file_json),
                 IMBED_ERR_NOT_FOUND, "file of an unknown id");
    check_status(imbed_server_file(server, "not-a-file-id", &file_json), IMBED_ERR_NOT_FOUND,
                 "file of a string that is no file id");
    char missing_path[256];
    snprintf(missing_path, sizeof missing_path, "%s/no-such-file.png", test_directory);
    check_status(imbed_client_upload(alice.client, missing_path, NULL, &file_json), IMBED_ERR_INVALID_ARGUMENT,
                 "upload of a missing path");
    check_last_error_mentions("no-such-file.png", "upload of a missing path");
    char big_path[256];
    snprintf(big_path, sizeof big_path, "%s/big.bin", test_directory);
    if (check(write_filled_file(big_path, 'x', MAX_BYTES + 1), "write %d bytes to %s", MAX_BYTES + 1, big_path)) {
        check_status(imbed_client_upload(alice.client, big_path, NULL, &file_json), IMBED_ERR_INVALID_ARGUMENT,
                     "upload of files.max_bytes + 1 bytes");
        check_last_error_mentions("413", "upload over files.max_bytes");
    }
    /* Alice has the PNG; 1500 bytes fit her quota, 1500 more do not. */
    char fits_path[256];
    char over_path[256];
    snprintf(fits_path, sizeof fits_path, "%s/fits.bin", test_directory);
    snprintf(over_path, sizeof over_path, "%s/over.bin", test_directory);
    if (check(write_filled_file(fits_path, 'a', 1500) && write_filled_file(over_path, 'b', 1500),
              "write two files of 1500 bytes")) {
        if (check_status(imbed_client_upload(alice.client, fits_path, NULL, &second), IMBED_OK,
                         "upload of 1500 bytes within alice's quota")) {
            check(json_has(second, "type", "application/octet-stream"),
                  "bytes that say nothing, without a content type: application/octet-stream (%s)", second);
        }
        imbed_string_free(second);
        second = NULL;
        check_status(imbed_client_upload(alice.client, over_path, NULL, &file_json), IMBED_ERR_INVALID_ARGUMENT,
                     "upload past alice's files.quota_bytes");
        check_last_error_mentions("507", "upload past the quota");
    }
    check(file_json == sentinel_json, "refused file and upload calls leave json_out untouched");

    /* A send referring to a file nobody uploaded: refused for good, nothing stored. */
    id = request(&alice,
                 "{\"type\":\"send\",\"to\":\"bob\",\"body\":{\"files\":[\"1111111111111111111111111111111111111111111111"
                 "111111111111111111\"]}}",
                 "alice requests a send referring to an unknown file");
    failed = id != NULL ? wait_peer_event(&alice, IMBED_EVENT_SEND_FAILED, "id", id) : NULL;
    check(failed != NULL && json_has(failed->json, "code", "not_found"),
          "a send referring to an unknown file: send_failed, code not_found (%s)",
          failed != NULL ? failed->json : "(none)");
    imbed_event_free(failed);
    imbed_string_free(id);

    /* The client's own refusals of request frames. */
    check_status(imbed_client_request(alice.client, "[1,2]", &unused), IMBED_ERR_INVALID_ARGUMENT,
                 "request of a non-object");
    check_status(imbed_client_request(alice.client, "{\"to\":\"bob\"}", &unused), IMBED_ERR_INVALID_ARGUMENT,
                 "request without a type");
    check_status(imbed_client_request(alice.client, "{\"type\":\"sync\"}", &unused), IMBED_ERR_INVALID_ARGUMENT,
                 "request of a sync (managed by the client)");
    imbed_string_free(unused);

done:
    imbed_client_free(alice.client);
    imbed_client_free(bob.client);
    check_status(imbed_server_stop(server), IMBED_OK, "stop server");
    imbed_server_free(server);
}

/*
 * NULL arguments and strings that are not UTF-8, for the four calls; and the
 * three server calls on a server not started, stopped and freed.
 */
static void test_arguments(void)
{
    char *sentinel = (char *)"untouched";
    char *json = sentinel;
    uint64_t seq = 0;
    const char *id64 = "0000000000000000000000000000000000000000000000000000000000000000";
    check_status(imbed_server_delete(NULL, "host", "dm:alice:bob", 1, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "delete(NULL server)");
    check_status(imbed_server_search(NULL, NULL, "zebra", NULL, 20, &json), IMBED_ERR_NULL_ARGUMENT,
                 "search(NULL server)");
    check_status(imbed_server_file(NULL, id64, &json), IMBED_ERR_NULL_ARGUMENT, "file(NULL server)");
    check_status(imbed_client_upload(NULL, "/etc/hostname", NULL, &json), IMBED_ERR_NULL_ARGUMENT,
                 "upload(NULL client)");

    char config[512];
    snprintf(config, sizeof config, "{" SERVER_BASE ",\"files\":{\"dir\":\"%s/files-arguments\"}}", test_directory);
    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(config, &server), IMBED_OK, "new server")) {
        return;
    }
    check_status(imbed_server_delete(server, "host", "dm:alice:bob", 1, &seq), IMBED_ERR_NOT_STARTED,
                 "delete before start");
    check_status(imbed_server_search(server, NULL, "zebra", NULL, 20, &json), IMBED_ERR_NOT_STARTED,
                 "search before start");
    check_status(imbed_server_file(server, id64, &json), IMBED_ERR_NOT_STARTED, "file before start");
    uint16_t port = 0;
    if (!check_status(imbed_server_start(server), IMBED_OK, "start server") ||
        !check_status(imbed_server_port(server, &port), IMBED_OK, "server port")) {
        imbed_server_free(server);
        return;
    }

    check_status(imbed_server_delete(server, NULL, "dm:alice:bob", 1, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "delete(NULL by)");
    check_status(imbed_server_delete(server, "host", NULL, 1, &seq), IMBED_ERR_NULL_ARGUMENT, "delete(NULL conv)");
    check_status(imbed_server_delete(server, "\xff", "dm:alice:bob", 1, &seq), IMBED_ERR_INVALID_UTF8,
                 "delete(by not UTF-8)");
    check_status(imbed_server_delete(server, "host", "dm:alice:\xc3", 1, &seq), IMBED_ERR_INVALID_UTF8,
                 "delete(conv not UTF-8)");

    check_status(imbed_server_search(server, NULL, NULL, NULL, 20, &json), IMBED_ERR_NULL_ARGUMENT,
                 "search(NULL query)");
    check_status(imbed_server_search(server, NULL, "zebra", NULL, 20, NULL), IMBED_ERR_NULL_ARGUMENT,
                 "search(NULL json_out)");
    check_status(imbed_server_search(server, NULL, "zebra \xfe", NULL, 20, &json), IMBED_ERR_INVALID_UTF8,
                 "search(query not UTF-8)");
    check_status(imbed_server_search(server, "dm:\xff:bob", "zebra", NULL, 20, &json), IMBED_ERR_INVALID_UTF8,
                 "search(conv not UTF-8)");
    check_status(imbed_server_search(server, NULL, "zebra", "\xff", 20, &json), IMBED_ERR_INVALID_UTF8,
                 "search(after not UTF-8)");
    check_status(imbed_server_search(server, NULL, "", NULL, 20, &json), IMBED_ERR_INVALID_ARGUMENT,
                 "search(empty query)");

    check_status(imbed_server_file(server, NULL, &json), IMBED_ERR_NULL_ARGUMENT, "file(NULL file_id)");
    check_status(imbed_server_file(server, id64, NULL), IMBED_ERR_NULL_ARGUMENT, "file(NULL json_out)");
    check_status(imbed_server_file(server, "\xff", &json), IMBED_ERR_INVALID_UTF8, "file(file_id not UTF-8)");
    check_status(imbed_server_file(server, id64, &json), IMBED_ERR_NOT_FOUND, "file of an unknown id");

    peer carol = {0};
    if (new_peer(&carol, port, "carol")) {
        char pixel_path[256];
        snprintf(pixel_path, sizeof pixel_path, "%s/pixel.png", test_directory);
        check_status(imbed_client_upload(carol.client, NULL, NULL, &json), IMBED_ERR_NULL_ARGUMENT,
                     "upload(NULL path)");
        check_status(imbed_client_upload(carol.client, pixel_path, NULL, NULL), IMBED_ERR_NULL_ARGUMENT,
                     "upload(NULL json_out)");
        check_status(imbed_client_upload(carol.client, "/tmp/\xff.png", NULL, &json), IMBED_ERR_INVALID_UTF8,
                     "upload(path not UTF-8)");
        check_status(imbed_client_upload(carol.client, pixel_path, "image/\xff", &json), IMBED_ERR_INVALID_UTF8,
                     "upload(content_type not UTF-8)");
        check_status(imbed_client_upload(carol.client, "", NULL, &json), IMBED_ERR_INVALID_ARGUMENT,
                     "upload(empty path)");
        check_status(imbed_client_stop(carol.client), IMBED_OK, "stop client carol (never started)");
        check_status(imbed_client_upload(carol.client, pixel_path, NULL, &json), IMBED_ERR_STOPPED,
                     "upload from a stopped client");
        imbed_client_free(carol.client);
        check_status(imbed_client_upload(carol.client, pixel_path, NULL, &json), IMBED_ERR_INVALID_HANDLE,
                     "upload from a freed client");
    }

    check_status(imbed_server_stop(server), IMBED_OK, "stop server");
    check_status(imbed_server_delete(server, "host", "dm:alice:bob", 1, &seq), IMBED_ERR_STOPPED,
                 "delete on a stopped server");
    check_status(imbed_server_search(server, NULL, "zebra", NULL, 20, &json), IMBED_ERR_STOPPED,
                 "search on a stopped server");
    check_status(imbed_server_file(server, id64, &json), IMBED_ERR_STOPPED, "file on a stopped server");
    imbed_server_free(server);
    check_status(imbed_server_delete(server, "host", "dm:alice:bob", 1, &seq), IMBED_ERR_INVALID_HANDLE,
                 "delete on a freed handle");
    check_status(imbed_server_search(server, NULL, "zebra", NULL, 20, &json), IMBED_ERR_INVALID_HANDLE,
                 "search on a freed handle");
    check_status(imbed_server_file(server, id64, &json), IMBED_ERR_INVALID_HANDLE, "file on a freed handle");
    check(json == sentinel && seq == 0, "failed calls leave json_out and seq_out untouched");
}

/*
 * A server without files.dir: imbed_server_file is refused, and so is an
 * upload to it (404); an upload to a port nobody listens on is IMBED_ERR_IO.
 */
static void test_files_off(void)
{
    uint16_t port = 0;
    imbed_server *server = start_server("{" SERVER_BASE "}", &port);
    if (server == NULL) {
        return;
    }
    char *sentinel = (char *)"untouched";
    char *json = sentinel;
    check_status(imbed_server_file(server, "0000000000000000000000000000000000000000000000000000000000000000", &json),
                 IMBED_ERR_INVALID_ARGUMENT, "file on a server without files.dir");
    char pixel_path[256];
    snprintf(pixel_path, sizeof pixel_path, "%s/pixel.png", test_directory);
    peer dave = {0};
    if (new_peer(&dave, port, "dave")) {
        check_status(imbed_client_upload(dave.client, pixel_path, NULL, &json), IMBED_ERR_INVALID_ARGUMENT,
                     "upload to a server without files.dir");
        imbed_client_free(dave.client);
    }
    /* Search works without files. */
    char *found = search(server, NULL, "anything", NULL, 20, "search on a server without files.dir");
    check(equals(found, "{\"results\":[],\"more\":false,\"next\":null}") ||
              (contains(found, "\"results\":[]") && contains(found, "\"more\":false")),
          "search on an empty server: no results (%s)", found != NULL ? found : "(none)");
    imbed_string_free(found);
    check_status(imbed_server_stop(server), IMBED_OK, "stop server");
    imbed_server_free(server);

    /* The stopped server's port: nobody listens there now. */
    peer eve = {0};
    if (new_peer(&eve, port, "eve")) {
        check_status(imbed_client_upload(eve.client, pixel_path, NULL, &json), IMBED_ERR_IO,
                     "upload when no server can be reached");
        imbed_client_free(eve.client);
    }
    check(json == sentinel, "refused uploads leave json_out untouched");
}

int main(void)
{
    alarm(WATCHDOG_SECONDS);
    if (mkdtemp(test_directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    long long started = now_ms();
    test_messages_and_files();
    test_arguments();
    test_files_off();
    check(remove_tree(test_directory), "removed the test directory %s", test_directory);
    printf("%d passed, %d failed in %lld ms\n", checks_passed, checks_failed, now_ms() - started);
    return checks_failed == 0 ? 0 : 1;
}
