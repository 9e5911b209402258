/*
 * C test of devices and push requests (config "push", issue 15):
 * IMBED_EVENT_PUSH, imbed_server_pending_pushes, imbed_server_push_done and
 * imbed_server_devices, with real WebSocket peers (poll-mode client role
 * handles) and a SQLite outbox that outlives its server.
 *
 * Prints one line per check, then "N passed, M failed"; exits 1 if any
 * check failed. Meant to run under
 *   IMBED_ALLOCATOR=system valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
 * so a JSON string or event never freed, or freed twice, also fails the run.
 *
 * Build:
 *   cc -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -Iinclude \
 *      tests/c/test_push.c target/release/libimbed.a -lpthread -ldl -lm -o build/test_push
 */
#include "imbed.h"
#include "check.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Silent, so that the only server events are the ones a test causes. The
 * retry delay stays at its default (60 s, longer than this test), so a
 * second offer of a request can only come from a restart. */
#define PUSH_SERVER "\"listen\":\"127.0.0.1:0\",\"auth\":{\"mode\":\"dev\"},\"log_level\":\"off\"," \
                    "\"events\":{\"delivery\":\"poll\"},\"push\":{\"enabled\":true}"
#define MEMORY_SERVER_CONFIG "{" PUSH_SERVER "}"
/* Every wait for the engine is bounded by this; generous because valgrind is slow. */
#define EVENT_WAIT_MS 20000
/* How long to keep taking events to see that no further one comes. */
#define QUIET_MS 500
/* A hung stop or poll must fail the run, not stall CI. */
#define WATCHDOG_SECONDS 120
/* Push events one test keeps; more than any test causes. */
#define MAX_PUSHES 8
#define BOB_DEVICE "bob-phone"


/* The directory holding the client state files and the server database; removed at the end. */
static char test_directory[] = "/tmp/imbed-test-push-XXXXXX";
static int state_files;

/* A push event as the server's host saw it, copied because the event itself is freed at once. */
typedef struct push_record {
    long long push_id;
    long long seq;
    long long unread;
    bool fields_ok; /* kind PUSH: user set, the fields of other kinds NULL, user the same in json */
    char user[IMBED_MAX_ID_LEN + 1];
    char json[1024];
} push_record;

/* A poll-mode server's events as a host takes them, tallied by kind. */
typedef struct server_watch {
    imbed_server *server;
    int fd;
    push_record pushes[MAX_PUSHES];
    int push_count; /* may exceed MAX_PUSHES; only the first ones are kept */
    int connected;
    int disconnected;
    int other;
    char connected_json[2][512];
    char disconnected_user[IMBED_MAX_ID_LEN + 1];
} server_watch;

/* Takes one event from `watch` into its tallies. */
static void record_server_event(server_watch *watch, const imbed_event *event)
{
    switch (event->kind) {
    case IMBED_EVENT_PUSH:
        if (watch->push_count < MAX_PUSHES) {
            push_record *record = &watch->pushes[watch->push_count];
            record->push_id = json_number(event->json, "push_id");
            record->seq = json_number(event->json, "seq");
            record->unread = json_number(event->json, "unread");
            record->fields_ok = event->user != NULL && event->session == NULL && event->reason == NULL &&
                                event->message == NULL && event->group == NULL && event->json != NULL &&
                                json_has(event->json, "user", event->user);
            snprintf(record->user, sizeof record->user, "%s", event->user != NULL ? event->user : "");
            snprintf(record->json, sizeof record->json, "%s", event->json != NULL ? event->json : "(NULL json)");
        }
        watch->push_count++;
        break;
    case IMBED_EVENT_CONNECTED:
        if (watch->connected < 2) {
            snprintf(watch->connected_json[watch->connected], sizeof watch->connected_json[0], "%s",
                     event->json != NULL ? event->json : "(NULL json)");
        }
        watch->connected++;
        break;
    case IMBED_EVENT_DISCONNECTED:
        snprintf(watch->disconnected_user, sizeof watch->disconnected_user, "%s",
                 event->user != NULL ? event->user : "");
        watch->disconnected++;
        break;
    case IMBED_EVENT_MESSAGE:
        break;
    default:
        watch->other++;
        break;
    }
}

/*
 * The host's loop: takes server events until at least `pushes` push events,
 * `connected` and `disconnected` ones were seen, or `timeout_ms` passed;
 * whether the counts were reached. Only ever waits in poll(), so a missed
 * wake-up ends in a timeout rather than a hang.
 */
static bool watch_until(server_watch *watch, int pushes, int connected, int disconnected, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (watch->push_count >= pushes && watch->connected >= connected && watch->disconnected >= disconnected) {
            return true;
        }
        imbed_event *event = NULL;
        imbed_status status = imbed_server_poll_event(watch->server, &event);
        if (status != IMBED_OK) {
            return check(false, "server poll_event -> %s", status_name(status));
        }
        if (event != NULL) {
            record_server_event(watch, event);
            imbed_event_free(event);
            continue;
        }
        long long left = deadline - now_ms();
        if (left <= 0 || wait_readable(watch->fd, (int)left) < 0) {
            return false;
        }
    }
}

/* Takes the server's events for QUIET_MS, so that one that should not come has its chance to. */
static void watch_quiet(server_watch *watch)
{
    long long deadline = now_ms() + QUIET_MS;
    long long left;
    while ((left = deadline - now_ms()) > 0) {
        /* Counts that cannot be reached: this only takes events until the deadline. */
        watch_until(watch, watch->push_count + 1, 0, 0, (int)left);
    }
}

/* Creates and starts a server from `config`, with its event descriptor; whether it worked. */
static bool start_server(const char *config, server_watch *watch, uint16_t *port_out)
{
    *watch = (server_watch){.fd = -1};
    if (!check_status(imbed_server_new(config, &watch->server), IMBED_OK, "new server")) {
        return false;
    }
    if (!check_status(imbed_server_event_fd(watch->server, &watch->fd), IMBED_OK, "server event_fd") ||
        !check_status(imbed_server_start(watch->server), IMBED_OK, "start server") ||
        (port_out != NULL && !check_status(imbed_server_port(watch->server, port_out), IMBED_OK, "server port"))) {
        imbed_server_free(watch->server);
        watch->server = NULL;
        return false;
    }
    return true;
}

/* A poll-mode client role handle, a real WebSocket peer of the server under test. */
typedef struct peer {
    const char *name;
    imbed_client *client;
    int fd;
} peer;

/*
 * Creates a poll-mode client of user `token` on the server at `port`, with a
 * state file of its own in the test's directory and `extra` added to its
 * configuration (such as ",\"device\":\"x\""); not started. Whether it worked.
 */
static bool new_peer(peer *out, uint16_t port, const char *token, const char *extra)
{
    char config[512];
    snprintf(config, sizeof config,
             "{\"url\":\"ws://127.0.0.1:%u/ws\",\"token\":\"%s\",\"state_path\":\"%s/state-%d.db\","
             "\"log_level\":\"off\",\"events\":{\"delivery\":\"poll\"}%s}",
             (unsigned)port, token, test_directory, state_files++, extra);
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
 * when it did not come within EVENT_WAIT_MS.
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

/* Queues a message from `peer` to `to` and waits for its ack; the seq it was stored at, or -1. */
static long long send_and_wait_ack(const peer *peer, const char *to, const char *body)
{
    char *id = NULL;
    char what[96];
    snprintf(what, sizeof what, "client %s sends %s to %s", peer->name, body, to);
    if (!check_status(imbed_client_send(peer->client, to, body, &id), IMBED_OK, what) || id == NULL) {
        imbed_string_free(id);
        return -1;
    }
    imbed_event *ack = wait_peer_event(peer, IMBED_EVENT_ACK, "id", id);
    long long seq = ack != NULL ? json_number(ack->json, "seq") : -1;
    imbed_event_free(ack);
    imbed_string_free(id);
    return seq;
}

/* The server's devices JSON, or NULL (after a failed check); free it with imbed_string_free. */
static char *devices_json(imbed_server *server, const char *when)
{
    char *json = NULL;
    char what[128];
    snprintf(what, sizeof what, "devices %s", when);
    if (!check_status(imbed_server_devices(server, &json), IMBED_OK, what)) {
        return NULL;
    }
    return json;
}

/* The server's pending pushes JSON, or NULL (after a failed check); free it with imbed_string_free. */
static char *pending_json(imbed_server *server, const char *when)
{
    char *json = NULL;
    char what[128];
    snprintf(what, sizeof what, "pending_pushes %s", when);
    if (!check_status(imbed_server_pending_pushes(server, &json), IMBED_OK, what)) {
        return NULL;
    }
    return json;
}

/* The entry pending_pushes gives for a message push, fields in the documented order. */
static void pending_entry(char *out, size_t capacity, long long push_id, const char *user, const char *conv,
                          long long seq, const char *from)
{
    snprintf(out, capacity, "{\"push_id\":%lld,\"kind\":\"message\",\"user\":\"%s\",\"conv\":\"%s\",\"seq\":%lld,"
             "\"from\":\"%s\"}", push_id, user, conv, seq, from);
}

/*
 * Checks a message push to bob from alice against the documented fields:
 * the event's user, and in its json push_id, kind, conv, seq, from, unread
 * (between the bounds), devices (exactly `devices`) and collapse_key.
 */
static void check_bob_push(const push_record *push, long long seq, long long unread_min, long long unread_max,
                           const char *devices)
{
    char collapse_key[128];
    snprintf(collapse_key, sizeof collapse_key, "bob:dm:alice:bob:%lld", seq);
    char devices_field[256];
    snprintf(devices_field, sizeof devices_field, "\"devices\":%s", devices);
    check(push->fields_ok && equals(push->user, "bob"),
          "push for seq %lld: kind PUSH, user \"bob\", no session/reason/message/group (user \"%s\")", seq,
          push->user);
    check(json_has(push->json, "event", "push") && push->push_id > 0 && json_has(push->json, "kind", "message") &&
              json_has(push->json, "user", "bob") && json_has(push->json, "conv", "dm:alice:bob") &&
              push->seq == seq && json_has(push->json, "from", "alice") &&
              json_has(push->json, "collapse_key", collapse_key) && !contains(push->json, "\"group\"") &&
              !contains(push->json, "\"preview\""),
          "push for seq %lld: json has push_id, kind message, conv, seq, from alice, collapse_key %s, no group or "
          "preview: %s",
          seq, collapse_key, push->json);
    check(push->unread >= unread_min && push->unread <= unread_max, "push for seq %lld: unread %lld in [%lld, %lld]",
          seq, push->unread, unread_min, unread_max);
    check(contains(push->json, devices_field), "push for seq %lld: %s (%s)", seq, devices_field, push->json);
}

/*
 * Real peers on a memory store: bob on device "bob-phone", alice on the
 * client role's default device. A message to bob while he is in the
 * foreground is not pushed; while his session says background, or once
 * the background hint closed it, each message is, once. Then the host
 * lists and ends the requests.
 */
static void test_push_events(void)
{
    static server_watch watch;
    uint16_t port = 0;
    if (!start_server(MEMORY_SERVER_CONFIG, &watch, &port)) {
        return;
    }
    peer bob = {0};
    peer alice = {0};
    if (!new_peer(&bob, port, "bob", ",\"device\":\"" BOB_DEVICE "\"") || !start_peer(&bob) ||
        !new_peer(&alice, port, "alice", "") || !start_peer(&alice)) {
        goto done;
    }
    bool connected = watch_until(&watch, 0, 2, 0, EVENT_WAIT_MS);
    check(connected, "server: CONNECTED for bob and alice (%d)", watch.connected);
    check(json_has(watch.connected_json[0], "user", "bob") &&
              json_has(watch.connected_json[0], "device", BOB_DEVICE),
          "bob's CONNECTED json names his configured device: %s", watch.connected_json[0]);
    check(json_has(watch.connected_json[1], "user", "alice") &&
              contains(watch.connected_json[1], "\"device\":\"c-"),
          "alice's CONNECTED json names the client role's default device c-...: %s", watch.connected_json[1]);

    char *devices = devices_json(watch.server, "with bob and alice connected");
    char alice_device[IMBED_MAX_ID_LEN + 1];
    bool alice_listed = copy_string_after(devices, "\"alice\":[{\"device\":\"", alice_device, sizeof alice_device);
    char alice_entry[256];
    snprintf(alice_entry, sizeof alice_entry,
             "\"alice\":[{\"device\":\"%s\",\"state\":\"foreground\",\"sessions\":1}]", alice_device);
    check(alice_listed && strncmp(alice_device, "c-", 2) == 0 && contains(devices, alice_entry) &&
              json_has(watch.connected_json[1], "device", alice_device),
          "devices: alice on her default device %s, foreground, 1 session, as CONNECTED said: %s", alice_device,
          devices != NULL ? devices : "(none)");
    check(contains(devices, "\"bob\":[{\"device\":\"" BOB_DEVICE "\",\"state\":\"foreground\",\"sessions\":1}]"),
          "devices: bob on " BOB_DEVICE ", foreground, 1 session: %s", devices != NULL ? devices : "(none)");
    imbed_string_free(devices);

    /* Bob is looking: this one is not pushed (pending_pushes below shows it). */
    long long seq1 = send_and_wait_ack(&alice, "bob", "{\"text\":\"1\"}");
    check(seq1 == 1, "alice's first message to bob (foreground) stored at seq 1 (%lld)", seq1);

    char *request_id = NULL;
    check_status(imbed_client_request(bob.client, "{\"type\":\"device\",\"state\":\"background\"}", &request_id),
                 IMBED_OK, "bob says his device went to the background");
    imbed_event *reply = request_id != NULL ? wait_peer_event(&bob, IMBED_EVENT_FRAME, "id", request_id) : NULL;
    check(reply != NULL && json_has(reply->json, "type", "ok"), "bob: ok for the device frame: %s",
          reply != NULL ? reply->json : "(none)");
    imbed_event_free(reply);
    imbed_string_free(request_id);
    devices = devices_json(watch.server, "with bob in the background");
    check(contains(devices, "\"bob\":[{\"device\":\"" BOB_DEVICE "\",\"state\":\"background\",\"sessions\":1}]") &&
              contains(devices, alice_entry),
          "devices: bob background (1 session), alice unchanged: %s", devices != NULL ? devices : "(none)");
    imbed_string_free(devices);

    long long seq2 = send_and_wait_ack(&alice, "bob", "{\"text\":\"2\"}");
    long long seq3 = send_and_wait_ack(&alice, "bob", "{\"text\":\"3\"}");
    check(seq2 == 2 && seq3 == 3, "alice's messages to background bob stored at seq 2, 3 (%lld, %lld)", seq2, seq3);
    bool pushed = watch_until(&watch, 2, 0, 0, EVENT_WAIT_MS);
    if (!check(pushed, "server: a PUSH event for each (%d)", watch.push_count)) {
        goto done;
    }
    /* Bob's session still exists, so his device carries its state. */
    check_bob_push(&watch.pushes[0], 2, 2, 3, "[{\"device\":\"" BOB_DEVICE "\",\"state\":\"background\"}]");
    check_bob_push(&watch.pushes[1], 3, 3, 3, "[{\"device\":\"" BOB_DEVICE "\",\"state\":\"background\"}]");

    /* The client role's background hint closes the connection: bob is offline. */
    check_status(imbed_client_hint(bob.client, IMBED_HINT_BACKGROUND), IMBED_OK, "bob's app goes to the background");
    bool disconnected = watch_until(&watch, 0, 0, 1, EVENT_WAIT_MS);
    check(disconnected && equals(watch.disconnected_user, "bob"),
          "server: DISCONNECTED for bob after the hint (%d, user \"%s\")", watch.disconnected,
          watch.disconnected_user);
    devices = devices_json(watch.server, "with bob offline");
    check(devices != NULL && !contains(devices, "\"bob\"") && contains(devices, alice_entry),
          "devices: bob gone, alice still there: %s", devices != NULL ? devices : "(none)");
    imbed_string_free(devices);

    long long seq4 = send_and_wait_ack(&alice, "bob", "{\"text\":\"4\"}");
    check(seq4 == 4, "alice's message to offline bob stored at seq 4 (%lld)", seq4);
    pushed = watch_until(&watch, 3, 0, 0, EVENT_WAIT_MS);
    if (!check(pushed, "server: a PUSH event for it (%d in all)", watch.push_count)) {
        goto done;
    }
    /* Bob read nothing, the first message included; his device has no session now. */
    check_bob_push(&watch.pushes[2], 4, 4, 4, "[{\"device\":\"" BOB_DEVICE "\"}]");
    watch_quiet(&watch);
    check(watch.push_count == 3, "server: one PUSH per message to bob not looking, no more (%d)", watch.push_count);
    check(watch.pushes[0].push_id != watch.pushes[1].push_id && watch.pushes[1].push_id != watch.pushes[2].push_id &&
              watch.pushes[0].push_id != watch.pushes[2].push_id,
          "server: distinct push_ids %lld, %lld, %lld", watch.pushes[0].push_id, watch.pushes[1].push_id,
          watch.pushes[2].push_id);
    check(watch.other == 0, "server: no event other than connected, disconnected, message and push (%d)",
          watch.other);

    char *pending = pending_json(watch.server, "with 3 requests offered");
    long offsets[3];
    bool listed = true;
    for (int index = 0; index < 3; index++) {
        char entry[256];
        pending_entry(entry, sizeof entry, watch.pushes[index].push_id, "bob", "dm:alice:bob",
                      watch.pushes[index].seq, "alice");
        const char *found = pending != NULL ? strstr(pending, entry) : NULL;
        listed &= found != NULL;
        offsets[index] = found != NULL ? (long)(found - pending) : -1;
    }
    check(pending != NULL && pending[0] == '[' && listed && count_occurrences(pending, "\"push_id\":") == 3 &&
              offsets[0] < offsets[1] && offsets[1] < offsets[2],
          "pending_pushes: the 3 requests (seq 2..4, none for seq 1), oldest first, as documented: %s",
          pending != NULL ? pending : "(none)");
    imbed_string_free(pending);

    long long first = watch.pushes[0].push_id;
    long long second = watch.pushes[1].push_id;
    long long third = watch.pushes[2].push_id;
    check_status(imbed_server_push_done(watch.server, (uint64_t)first, true, NULL), IMBED_OK,
                 "push_done(first, delivered, NULL reason)");
    check_status(imbed_server_push_done(watch.server, (uint64_t)first, true, NULL), IMBED_ERR_NOT_FOUND,
                 "push_done(first) again");
    check_status(imbed_server_push_done(watch.server, (uint64_t)second, false, "gateway: token expired"), IMBED_OK,
                 "push_done(second, failed, with a reason)");
    check_status(imbed_server_push_done(watch.server, (uint64_t)third, false, "\xff\xfe not UTF-8"),
                 IMBED_ERR_INVALID_UTF8, "push_done(third) with a reason not UTF-8");
    check_status(imbed_server_push_done(watch.server, 987654321, true, NULL), IMBED_ERR_NOT_FOUND,
                 "push_done(an id never given)");
    pending = pending_json(watch.server, "with one request left");
    char entry[256];
    pending_entry(entry, sizeof entry, third, "bob", "dm:alice:bob", 4, "alice");
    check(pending != NULL && pending[0] == '[' && contains(pending, entry) &&
              count_occurrences(pending, "\"push_id\":") == 1,
          "pending_pushes: only the third, which the refused call left pending: %s",
          pending != NULL ? pending : "(none)");
    imbed_string_free(pending);
    check_status(imbed_server_push_done(watch.server, (uint64_t)third, true, ""), IMBED_OK,
                 "push_done(third, delivered, empty reason)");
    pending = pending_json(watch.server, "once all are done");
    check(equals(pending, "[]"), "pending_pushes: [] once all are done (%s)", pending != NULL ? pending : "(none)");
    imbed_string_free(pending);
    watch_quiet(&watch);
    check(watch.push_count == 3, "server: no request offered again after push_done (%d pushes)", watch.push_count);

done:
    imbed_client_free(alice.client);
    imbed_client_free(bob.client);
    check_status(imbed_server_stop(watch.server), IMBED_OK, "stop server");
    imbed_server_free(watch.server);
}

/*
 * The outbox is durable: on a SQLite database, a request not done is
 * offered again, with the same push_id, by a new server on the same file;
 * one done is not. A retried send (same client id) records nothing again.
 */
static void test_push_survives_restart(void)
{
    char config[512];
    snprintf(config, sizeof config, "{" PUSH_SERVER ",\"store\":{\"path\":\"%s/server.db\"}}", test_directory);
    static server_watch watch;
    if (!start_server(config, &watch, NULL)) {
        return;
    }
    uint64_t seq1 = 0;
    uint64_t seq2 = 0;
    uint64_t seq1_again = 0;
    check_status(imbed_server_send(watch.server, "alice", "bob", "{\"text\":\"a\"}", "m-1", &seq1), IMBED_OK,
                 "sqlite: host sends m-1 from alice to offline bob");
    check_status(imbed_server_send(watch.server, "alice", "bob", "{\"text\":\"b\"}", "m-2", &seq2), IMBED_OK,
                 "sqlite: host sends m-2");
    check_status(imbed_server_send(watch.server, "alice", "bob", "{\"text\":\"a\"}", "m-1", &seq1_again), IMBED_OK,
                 "sqlite: host sends m-1 again");
    check(seq1 == 1 && seq2 == 2 && seq1_again == 1, "sqlite: seqs 1, 2, and 1 again for the retry (%llu, %llu, %llu)",
          (unsigned long long)seq1, (unsigned long long)seq2, (unsigned long long)seq1_again);
    bool both = watch_until(&watch, 2, 0, 0, EVENT_WAIT_MS);
    watch_quiet(&watch);
    if (!check(both && watch.push_count == 2, "sqlite: one PUSH per message, none for the retry (%d)",
               watch.push_count)) {
        check_status(imbed_server_stop(watch.server), IMBED_OK, "stop server");
        imbed_server_free(watch.server);
        return;
    }
    long long done_id = watch.pushes[0].push_id;
    long long kept_id = watch.pushes[1].push_id;
    check(watch.pushes[0].seq == 1 && watch.pushes[1].seq == 2 && equals(watch.pushes[1].user, "bob"),
          "sqlite: pushes for seq 1 and 2 to bob: %s %s", watch.pushes[0].json, watch.pushes[1].json);
    check_status(imbed_server_push_done(watch.server, (uint64_t)done_id, true, NULL), IMBED_OK,
                 "sqlite: push_done(first) before the restart");
    check_status(imbed_server_stop(watch.server), IMBED_OK, "sqlite: stop the first server");
    imbed_server_free(watch.server);

    if (!start_server(config, &watch, NULL)) {
        return;
    }
    bool offered = watch_until(&watch, 1, 0, 0, EVENT_WAIT_MS);
    watch_quiet(&watch);
    check(offered && watch.push_count == 1 && watch.pushes[0].push_id == kept_id && watch.pushes[0].seq == 2 &&
              json_has(watch.pushes[0].json, "kind", "message") && equals(watch.pushes[0].user, "bob") &&
              json_has(watch.pushes[0].json, "from", "alice"),
          "sqlite: after the restart the request not done is offered again, same push_id %lld, and the done one "
          "(%lld) is not (%d pushes; first: %s)",
          kept_id, done_id, watch.push_count, watch.push_count > 0 ? watch.pushes[0].json : "(none)");
    char *pending = pending_json(watch.server, "after the restart");
    char entry[256];
    pending_entry(entry, sizeof entry, kept_id, "bob", "dm:alice:bob", 2, "alice");
    check(contains(pending, entry) && count_occurrences(pending, "\"push_id\":") == 1,
          "sqlite: pending_pushes after the restart lists only the one not done: %s",
          pending != NULL ? pending : "(none)");
    imbed_string_free(pending);
    check_status(imbed_server_push_done(watch.server, (uint64_t)kept_id, true, NULL), IMBED_OK,
                 "sqlite: push_done(second) after the restart");
    check_status(imbed_server_push_done(watch.server, (uint64_t)done_id, true, NULL), IMBED_ERR_NOT_FOUND,
                 "sqlite: push_done(first) after the restart, done before it");
    check_status(imbed_server_stop(watch.server), IMBED_OK, "sqlite: stop the second server");
    imbed_server_free(watch.server);

    if (!start_server(config, &watch, NULL)) {
        return;
    }
    pending = pending_json(watch.server, "after a second restart");
    watch_quiet(&watch);
    check(equals(pending, "[]") && watch.push_count == 0,
          "sqlite: after a second restart nothing is pending or offered (%s, %d pushes)",
          pending != NULL ? pending : "(none)", watch.push_count);
    imbed_string_free(pending);
    check_status(imbed_server_stop(watch.server), IMBED_OK, "sqlite: stop the third server");
    imbed_server_free(watch.server);
}

/* The error cases of the three calls: NULL arguments, a server not started, stopped, freed. */
static void test_errors(void)
{
    char sentinel[] = "untouched";
    char *json = sentinel;
    check_status(imbed_server_push_done(NULL, 1, true, NULL), IMBED_ERR_NULL_ARGUMENT, "push_done(NULL server)");
    check_status(imbed_server_pending_pushes(NULL, &json), IMBED_ERR_NULL_ARGUMENT, "pending_pushes(NULL server)");
    check_status(imbed_server_devices(NULL, &json), IMBED_ERR_NULL_ARGUMENT, "devices(NULL server)");

    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(MEMORY_SERVER_CONFIG, &server), IMBED_OK, "new server")) {
        return;
    }
    check_status(imbed_server_pending_pushes(server, NULL), IMBED_ERR_NULL_ARGUMENT,
                 "pending_pushes(NULL json_out)");
    check_status(imbed_server_devices(server, NULL), IMBED_ERR_NULL_ARGUMENT, "devices(NULL json_out)");
    check_status(imbed_server_push_done(server, 1, true, NULL), IMBED_ERR_NOT_STARTED, "push_done before start");
    check_status(imbed_server_pending_pushes(server, &json), IMBED_ERR_NOT_STARTED, "pending_pushes before start");
    check_status(imbed_server_devices(server, &json), IMBED_ERR_NOT_STARTED, "devices before start");

    check_status(imbed_server_start(server), IMBED_OK, "start server");
    check_status(imbed_server_pending_pushes(server, NULL), IMBED_ERR_NULL_ARGUMENT,
                 "pending_pushes(NULL json_out) when started");
    check_status(imbed_server_devices(server, NULL), IMBED_ERR_NULL_ARGUMENT, "devices(NULL json_out) when started");
    char *devices = devices_json(server, "with nobody connected");
    check(equals(devices, "{}"), "devices with nobody connected: {} (%s)", devices != NULL ? devices : "(none)");
    imbed_string_free(devices);
    char *pending = pending_json(server, "with no push request");
    check(equals(pending, "[]"), "pending_pushes with no push request: [] (%s)", pending != NULL ? pending : "(none)");
    imbed_string_free(pending);

    check_status(imbed_server_stop(server), IMBED_OK, "stop server");
    check_status(imbed_server_push_done(server, 1, true, NULL), IMBED_ERR_STOPPED, "push_done on a stopped server");
    check_status(imbed_server_pending_pushes(server, &json), IMBED_ERR_STOPPED, "pending_pushes on a stopped server");
    check_status(imbed_server_devices(server, &json), IMBED_ERR_STOPPED, "devices on a stopped server");

    imbed_server_free(server);
    check_status(imbed_server_push_done(server, 1, true, NULL), IMBED_ERR_INVALID_HANDLE,
                 "push_done on a freed handle");
    check_status(imbed_server_pending_pushes(server, &json), IMBED_ERR_INVALID_HANDLE,
                 "pending_pushes on a freed handle");
    check_status(imbed_server_devices(server, &json), IMBED_ERR_INVALID_HANDLE, "devices on a freed handle");
    check(json == sentinel, "failed calls leave json_out untouched");
}

/* Removes the state files, the server database and the directory holding them. */
static void remove_test_directory(void)
{
    /* Each database and the files SQLite may keep next to it. */
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (int index = -1; index < state_files; index++) {
        for (size_t suffix = 0; suffix < sizeof suffixes / sizeof suffixes[0]; suffix++) {
            char path[128];
            if (index < 0) {
                snprintf(path, sizeof path, "%s/server.db%s", test_directory, suffixes[suffix]);
            } else {
                snprintf(path, sizeof path, "%s/state-%d.db%s", test_directory, index, suffixes[suffix]);
            }
            unlink(path);
        }
    }
    check(rmdir(test_directory) == 0, "the test directory %s held nothing but the databases", test_directory);
}

int main(void)
{
    alarm(WATCHDOG_SECONDS);
    if (mkdtemp(test_directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    long long started = now_ms();
    test_errors();
    test_push_events();
    test_push_survives_restart();
    remove_test_directory();
    printf("%d passed, %d failed in %lld ms\n", checks_passed, checks_failed, now_ms() - started);
    return checks_failed == 0 ? 0 : 1;
}
