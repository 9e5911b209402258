/*
 * C test of poll delivery (config "events":{"delivery":"poll"}): the event
 * file descriptor, imbed_*_poll_event, imbed_*_next_events and
 * imbed_event_free, for the server and the client role.
 *
 * Prints one line per check, then "N passed, M failed"; exits 1 if any
 * check failed. Meant to run under
 *   IMBED_ALLOCATOR=system valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
 * so an event read after its handle was freed, freed twice, or never freed
 * also fails the run (without IMBED_ALLOCATOR=system the engine allocates
 * with jemalloc, whose heap valgrind cannot see).
 *
 * Build:
 *   cc -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -Iinclude \
 *      tests/c/test_poll.c target/release/libimbed.a -lpthread -ldl -lm -o build/test_poll
 */
#include "imbed.h"
#include "check.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEV_SERVER "\"listen\":\"127.0.0.1:0\",\"auth\":{\"mode\":\"dev\"}"
/* Silent, so that the only events are the ones a test causes: at "info" the
 * server's "listening" record would be an IMBED_EVENT_LOG. */
#define POLL_SERVER_CONFIG "{" DEV_SERVER ",\"log_level\":\"off\",\"events\":{\"delivery\":\"poll\"}}"
#define CALLBACK_SERVER_CONFIG "{" DEV_SERVER ",\"log_level\":\"off\"}"
/* Every wait for the engine is bounded by this; generous because valgrind is slow. */
#define EVENT_WAIT_MS 20000
/* How long a poll() that must not see anything waits, to give a wrong wake-up a chance. */
#define QUIET_MS 100
/* A hung stop or poll must fail the run, not stall CI. */
#define WATCHDOG_SECONDS 180
#define ORDERED_MESSAGES 40
#define OVERFLOW_MESSAGES 100
#define SMALL_QUEUE 4
#define CLIENT_MESSAGES 150
#define BATCH 8


/* The directory holding the client state files; removed at the end. */
static char state_directory[] = "/tmp/imbed-test-poll-XXXXXX";
static int state_files;

/* One handle polled the way a host would: exactly one of server and client is set. */
typedef struct event_source {
    const char *name;
    imbed_server *server;
    imbed_client *client;
    int fd;
} event_source;

/* A thread that waits in poll() on a handle's descriptor while another thread stops the handle. */
typedef struct stop_waiter {
    pthread_t thread;
    event_source source;
    /* The client may queue a stray event (a state change) while the thread
     * waits, so for it the thread keeps taking events until IMBED_ERR_STOPPED;
     * a silent server must wake exactly once, by the stop. */
    bool take_until_stopped;
    atomic_bool done;
    int poll_result;
    short revents;
    long long woke_at;
    imbed_status final_status;
    int stray_events;
    int empty_wakes;
} stop_waiter;

/* Whether `fd` is readable right now. */
static bool readable_now(int fd)
{
    return wait_readable(fd, 0) == 1;
}

/* A poll-mode source for a server, with its descriptor; fd is -1 when event_fd failed. */
static event_source server_source(imbed_server *server)
{
    event_source source = {.name = "server", .server = server, .fd = -1};
    check_status(imbed_server_event_fd(server, &source.fd), IMBED_OK, "server event_fd");
    return source;
}

/* A poll-mode source for a client, with its descriptor; fd is -1 when event_fd failed. */
static event_source client_source(imbed_client *client)
{
    event_source source = {.name = "client", .client = client, .fd = -1};
    check_status(imbed_client_event_fd(client, &source.fd), IMBED_OK, "client event_fd");
    return source;
}

/* imbed_server_poll_event or imbed_client_poll_event, whichever `source` holds. */
static imbed_status source_poll(const event_source *source, imbed_event **event_out)
{
    return source->server != NULL ? imbed_server_poll_event(source->server, event_out)
                                  : imbed_client_poll_event(source->client, event_out);
}

/* imbed_server_next_events or imbed_client_next_events, whichever `source` holds. */
static imbed_status source_next(const event_source *source, imbed_event **events, size_t max, size_t *count_out)
{
    return source->server != NULL ? imbed_server_next_events(source->server, events, max, count_out)
                                  : imbed_client_next_events(source->client, events, max, count_out);
}

/*
 * The host's loop for one event: take one; when none waits, poll() the
 * descriptor until `deadline` and try again. Returns the event, or NULL on a
 * failed take (its status in *status_out) or when the deadline passed (IMBED_OK).
 * Waiting only in poll() also tests the wake-ups: a missed one ends in a timeout.
 */
static imbed_event *wait_event(const event_source *source, long long deadline, imbed_status *status_out)
{
    for (;;) {
        imbed_event *event = NULL;
        imbed_status status = source_poll(source, &event);
        if (status != IMBED_OK || event != NULL) {
            *status_out = status;
            return event;
        }
        long long left = deadline - now_ms();
        if (left <= 0 || wait_readable(source->fd, (int)left) < 0) {
            *status_out = IMBED_OK;
            return NULL;
        }
    }
}

/* Takes events until none waits, without waiting; returns how many, or -1 if a take failed. */
static int drain(const event_source *source)
{
    int taken = 0;
    for (;;) {
        imbed_event *event = NULL;
        imbed_status status = source_poll(source, &event);
        if (status != IMBED_OK) {
            return -1;
        }
        if (event == NULL) {
            return taken;
        }
        imbed_event_free(event);
        taken++;
    }
}

/* Creates and starts a server from `config`; NULL on failure. */
static imbed_server *start_server(const char *config, uint16_t *port_out)
{
    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(config, &server), IMBED_OK, "new server")) {
        return NULL;
    }
    if (!check_status(imbed_server_start(server), IMBED_OK, "start server")) {
        imbed_server_free(server);
        return NULL;
    }
    if (port_out != NULL && !check_status(imbed_server_port(server, port_out), IMBED_OK, "server port")) {
        imbed_server_free(server);
        return NULL;
    }
    return server;
}

/*
 * Creates a poll-mode client of user `token` on the server at `port`, with a
 * state file of its own in the test's directory and `extra_events` added to
 * its "events" object (e.g. ",\"queue_capacity\":4"); not started. NULL on failure.
 */
static imbed_client *new_poll_client(uint16_t port, const char *token, const char *extra_events)
{
    char config[512];
    snprintf(config, sizeof config,
             "{\"url\":\"ws://127.0.0.1:%u/ws\",\"token\":\"%s\",\"state_path\":\"%s/state-%d.db\","
             "\"log_level\":\"off\",\"events\":{\"delivery\":\"poll\"%s}}",
             (unsigned)port, token, state_directory, state_files++, extra_events);
    imbed_client *client = NULL;
    if (!check_status(imbed_client_new(config, &client), IMBED_OK, "new poll client")) {
        return NULL;
    }
    return client;
}

/* Waits for the client's STATE "connected" event, freeing the events before it; whether it came in time. */
static bool wait_client_connected(const event_source *source)
{
    long long deadline = now_ms() + EVENT_WAIT_MS;
    for (;;) {
        imbed_status status = IMBED_OK;
        imbed_event *event = wait_event(source, deadline, &status);
        if (event == NULL) {
            return check(false, "client connected in time (take: %s)", status_name(status));
        }
        bool connected = event->kind == IMBED_EVENT_STATE && json_has(event->json, "state", "connected");
        imbed_event_free(event);
        if (connected) {
            return true;
        }
    }
}

/* Removes the client state files and the directory holding them. */
static void remove_state_directory(void)
{
    /* The database and the files SQLite may keep next to it. */
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (int index = 0; index < state_files; index++) {
        for (size_t suffix = 0; suffix < sizeof suffixes / sizeof suffixes[0]; suffix++) {
            char path[128];
            snprintf(path, sizeof path, "%s/state-%d.db%s", state_directory, index, suffixes[suffix]);
            unlink(path);
        }
    }
    check(rmdir(state_directory) == 0, "the state directory %s held nothing but the state files", state_directory);
}

/*
 * A poll-mode server with a real WebSocket peer (a poll-mode client): the
 * server's events come in order, CONNECTED first, then one MESSAGE per sent
 * message in the order sent, with the documented fields; the client's own
 * events come in order too (connecting, connected, an ack per message).
 */
static void test_order_and_content(void)
{
    uint16_t port = 0;
    imbed_server *server = start_server(POLL_SERVER_CONFIG, &port);
    if (server == NULL) {
        return;
    }
    event_source server_events = server_source(server);
    imbed_client *client = new_poll_client(port, "alice", "");
    if (client == NULL) {
        imbed_server_free(server);
        return;
    }
    event_source client_events = client_source(client);
    check_status(imbed_client_start(client), IMBED_OK, "start client alice");

    char *ids[ORDERED_MESSAGES] = {0};
    int queued = 0;
    for (int index = 0; index < ORDERED_MESSAGES; index++) {
        char body[64];
        snprintf(body, sizeof body, "{\"n\":%d}", index);
        queued += imbed_client_send(client, "bob", body, &ids[index]) == IMBED_OK && ids[index] != NULL;
    }
    check(queued == ORDERED_MESSAGES, "client queued %d of %d messages to bob", queued, ORDERED_MESSAGES);

    /* The server's side: every event until the last message, classified. */
    long long deadline = now_ms() + EVENT_WAIT_MS;
    int events = 0;
    int messages = 0;
    int connected_events = 0;
    int connected_after_message = 0;
    int unexpected = 0;
    imbed_event_kind unexpected_kind = IMBED_EVENT_LOG;
    int out_of_order = 0;
    int bad_fields = 0;
    char first_bad[512] = "";
    char session[128] = "";
    char connected_json[512] = "(none)";
    bool first_is_connected = false;
    long long last_seq = 0;
    imbed_status status = IMBED_OK;
    while (messages < ORDERED_MESSAGES) {
        imbed_event *event = wait_event(&server_events, deadline, &status);
        if (event == NULL) {
            break;
        }
        if (event->kind == IMBED_EVENT_CONNECTED) {
            first_is_connected |= events == 0;
            connected_events++;
            connected_after_message += messages > 0;
            snprintf(connected_json, sizeof connected_json, "%s", event->json ? event->json : "(NULL json)");
            if (equals(event->user, "alice") && event->session != NULL && event->message == NULL &&
                event->reason == NULL && event->group == NULL && json_has(event->json, "event", "connected") &&
                json_has(event->json, "user", "alice") && json_has(event->json, "session", event->session)) {
                snprintf(session, sizeof session, "%s", event->session);
            }
        } else if (event->kind == IMBED_EVENT_MESSAGE) {
            long long seq = json_number(event->message, "seq");
            out_of_order += seq != last_seq + 1 || !json_has(event->message, "id", ids[messages]);
            last_seq = seq;
            bool fields_ok = equals(event->user, "alice") && event->message != NULL && event->session == NULL &&
                             event->reason == NULL && event->group == NULL &&
                             json_has(event->json, "event", "message") && json_has(event->message, "type", "msg") &&
                             json_has(event->message, "from", "alice") && json_has(event->message, "to", "bob") &&
                             json_has(event->message, "conv", "dm:alice:bob");
            if (!fields_ok && bad_fields++ == 0) {
                snprintf(first_bad, sizeof first_bad, "%s", event->json ? event->json : "(NULL json)");
            }
            messages++;
        } else {
            unexpected++;
            unexpected_kind = event->kind;
        }
        events++;
        imbed_event_free(event);
    }
    check(messages == ORDERED_MESSAGES, "server: %d of %d message events arrived (last take: %s)", messages,
          ORDERED_MESSAGES, status_name(status));
    check(first_is_connected && connected_events == 1 && connected_after_message == 0,
          "server: the first event is CONNECTED, once, before every message (%d connected, %d after a message)",
          connected_events, connected_after_message);
    check(session[0] != '\0', "server: CONNECTED has user alice, a session, no other field, the same in json: %s",
          connected_json);
    check(out_of_order == 0 && last_seq == ORDERED_MESSAGES,
          "server: messages in the order sent: seq 1..%d increasing, ids as sent (%d out of place, last seq %lld)",
          ORDERED_MESSAGES, out_of_order, last_seq);
    check(bad_fields == 0,
          "server: message fields as documented (user alice, the msg frame, no session/reason/group, json) "
          "(%d did not; first: %s)",
          bad_fields, first_bad);
    check(unexpected == 0, "server: no other event with log_level off (%d, last %s)", unexpected,
          kind_name(unexpected_kind));

    /* The client's side: connecting, connected, then an ack per message, in order. */
    deadline = now_ms() + EVENT_WAIT_MS;
    int states = 0;
    bool states_in_order = true;
    int acks = 0;
    int acks_out_of_order = 0;
    int client_other = 0;
    char first_other[512] = "";
    while (acks < ORDERED_MESSAGES) {
        imbed_event *event = wait_event(&client_events, deadline, &status);
        if (event == NULL) {
            break;
        }
        if (event->kind == IMBED_EVENT_STATE) {
            const char *expected = states == 0 ? "connecting" : "connected";
            states_in_order &= states < 2 && acks == 0 && json_has(event->json, "state", expected);
            states++;
        } else if (event->kind == IMBED_EVENT_ACK) {
            acks_out_of_order += !json_has(event->json, "id", ids[acks]) ||
                                 json_number(event->json, "seq") != acks + 1 ||
                                 !json_has(event->json, "conv", "dm:alice:bob") || event->user != NULL;
            acks++;
        } else {
            if (client_other++ == 0) {
                snprintf(first_other, sizeof first_other, "%s after %d acks: %s", kind_name(event->kind), acks,
                         event->json ? event->json : "(NULL json)");
            }
        }
        imbed_event_free(event);
    }
    check(states == 2 && states_in_order, "client: STATE connecting then connected, before any ack (%d states)",
          states);
    check(acks == ORDERED_MESSAGES && acks_out_of_order == 0,
          "client: %d of %d acks, in the order sent with seq 1..%d (%d out of place; last take: %s)", acks,
          ORDERED_MESSAGES, ORDERED_MESSAGES, acks_out_of_order, status_name(status));
    /* Own messages included: the client acks them, it never delivers them back (docs/PROTOCOL.md). */
    check(client_other == 0, "client: no other event, no message of its own, with log_level off (%d; first: %s)",
          client_other, first_other);

    /* The peer leaving is an event too, naming the session CONNECTED named. */
    check_status(imbed_client_stop(client), IMBED_OK, "stop client");
    imbed_event *event = wait_event(&server_events, now_ms() + EVENT_WAIT_MS, &status);
    check(event != NULL && event->kind == IMBED_EVENT_DISCONNECTED && equals(event->user, "alice") &&
              equals(event->session, session) && event->reason != NULL && event->message == NULL &&
              json_has(event->json, "event", "disconnected"),
          "server: DISCONNECTED for alice's session once the client stopped: %s",
          event != NULL && event->json != NULL ? event->json : "(none)");
    imbed_event_free(event);

    check_status(imbed_server_stop(server), IMBED_OK, "stop server");
    imbed_client_free(client);
    imbed_server_free(server);
    for (int index = 0; index < ORDERED_MESSAGES; index++) {
        imbed_string_free(ids[index]);
    }
}

/* At log_level "info" the server's log records are IMBED_EVENT_LOG events, "listening" among them. */
static void test_log_events(void)
{
    imbed_server *server =
        start_server("{" DEV_SERVER ",\"log_level\":\"info\",\"events\":{\"delivery\":\"poll\"}}", NULL);
    if (server == NULL) {
        return;
    }
    event_source source = server_source(server);
    long long deadline = now_ms() + EVENT_WAIT_MS;
    int logs = 0;
    int other = 0;
    int bad_fields = 0;
    char listening[512] = "";
    imbed_status status = IMBED_OK;
    while (listening[0] == '\0') {
        imbed_event *event = wait_event(&source, deadline, &status);
        if (event == NULL) {
            break;
        }
        if (event->kind == IMBED_EVENT_LOG) {
            logs++;
            bad_fields += event->json == NULL || event->user != NULL || event->session != NULL ||
                          event->reason != NULL || event->message != NULL || event->group != NULL ||
                          !json_has(event->json, "event", "log") || json_number(event->json, "level") != -1 ||
                          strstr(event->json, "\"level\":\"") == NULL || strstr(event->json, "\"target\":\"") == NULL ||
                          strstr(event->json, "\"message\":\"") == NULL;
            if (json_has(event->json, "level", "info") && strstr(event->json, "listening") != NULL) {
                snprintf(listening, sizeof listening, "%s", event->json);
            }
        } else {
            other++;
        }
        imbed_event_free(event);
    }
    check(listening[0] != '\0', "an IMBED_EVENT_LOG at info says listening (%d log events; last take %s): %s", logs,
          status_name(status), listening);
    check(bad_fields == 0, "log events carry level, target and message in json and no other field (%d did not)",
          bad_fields);
    check(other == 0, "no other events on an idle server (%d)", other);
    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    imbed_server_free(server);
}

/*
 * The descriptor is readable exactly when events may wait: not after start
 * with nothing queued, soon after an event, not once every event was taken,
 * and again for a new event.
 */
static void test_wakeups(void)
{
    imbed_server *server = NULL;
    /* "warn", not "off": info records such as "listening" must not wake the host either. */
    if (!check_status(imbed_server_new("{" DEV_SERVER ",\"log_level\":\"warn\",\"events\":{\"delivery\":\"poll\"}}",
                                       &server),
                      IMBED_OK, "new poll server at log_level warn")) {
        return;
    }
    int fd_before_start = -1;
    check_status(imbed_server_event_fd(server, &fd_before_start), IMBED_OK, "event_fd before start");
    check(fd_before_start >= 0 && wait_readable(fd_before_start, 0) == 0,
          "the descriptor exists before start and is not readable (fd %d)", fd_before_start);
    if (!check_status(imbed_server_start(server), IMBED_OK, "start")) {
        imbed_server_free(server);
        return;
    }
    event_source source = server_source(server);
    check(source.fd == fd_before_start, "event_fd after start is the same descriptor (%d, %d)", source.fd,
          fd_before_start);
    check(wait_readable(source.fd, QUIET_MS) == 0, "not readable after start with nothing queued (%d ms)", QUIET_MS);

    uint64_t seq = 0;
    check_status(imbed_server_send(server, "host", "bob", "{\"n\":1}", NULL, &seq), IMBED_OK, "send one");
    long long sent_at = now_ms();
    int readable = wait_readable(source.fd, EVENT_WAIT_MS);
    check(readable == 1, "readable after an event was queued (poll gave %d after %lld ms)", readable,
          now_ms() - sent_at);

    imbed_event *event = NULL;
    check_status(imbed_server_poll_event(server, &event), IMBED_OK, "poll_event");
    check(event != NULL && event->kind == IMBED_EVENT_MESSAGE && json_number(event->message, "seq") == 1,
          "it is the message event with seq 1");
    imbed_event_free(event);
    event = (imbed_event *)&source; /* anything but NULL, to see it written */
    check_status(imbed_server_poll_event(server, &event), IMBED_OK, "poll_event with nothing waiting");
    check(event == NULL, "it writes NULL");
    check(wait_readable(source.fd, QUIET_MS) == 0, "not readable once every event was taken");
    event = (imbed_event *)&source;
    check_status(imbed_server_poll_event(server, &event), IMBED_OK, "poll_event again with nothing waiting");
    check(event == NULL && wait_readable(source.fd, 0) == 0, "still NULL, still not readable");

    /* Several events: taking some leaves it readable; a short batch means none is left. */
    for (int index = 2; index <= 4; index++) {
        imbed_server_send(server, "host", "bob", "{}", NULL, NULL);
    }
    check(wait_readable(source.fd, EVENT_WAIT_MS) == 1, "readable again for new events");
    event = NULL;
    check_status(imbed_server_poll_event(server, &event), IMBED_OK, "poll_event one of three");
    check(event != NULL && json_number(event->message, "seq") == 2, "it is seq 2");
    imbed_event_free(event);
    check(readable_now(source.fd), "still readable while two events wait");
    imbed_event *batch[BATCH] = {0};
    size_t count = 99;
    check_status(imbed_server_next_events(server, batch, BATCH, &count), IMBED_OK, "next_events(max 8)");
    check(count == 2 && batch[0] != NULL && batch[1] != NULL && json_number(batch[0]->message, "seq") == 3 &&
              json_number(batch[1]->message, "seq") == 4,
          "it gives the two waiting, oldest first (%zu)", count);
    for (size_t index = 0; index < count && index < BATCH; index++) {
        imbed_event_free(batch[index]);
    }
    check(wait_readable(source.fd, QUIET_MS) == 0, "not readable after a batch shorter than max emptied the queue");

    /* A wake-up from the network side, not from the caller's own thread. */
    uint16_t port = 0;
    imbed_server_port(server, &port);
    imbed_client *client = new_poll_client(port, "carol", "");
    if (client != NULL) {
        check_status(imbed_client_start(client), IMBED_OK, "start client carol");
        readable = wait_readable(source.fd, EVENT_WAIT_MS);
        check(readable == 1, "readable when a peer connects (poll gave %d)", readable);
        event = NULL;
        check_status(imbed_server_poll_event(server, &event), IMBED_OK, "poll_event");
        check(event != NULL && event->kind == IMBED_EVENT_CONNECTED && equals(event->user, "carol"),
              "it is CONNECTED for carol (%s)", event != NULL && event->json != NULL ? event->json : "none");
        imbed_event_free(event);
        check(drain(&source) == 0 && wait_readable(source.fd, QUIET_MS) == 0,
              "nothing else waits, and the descriptor is quiet again");
        check_status(imbed_client_stop(client), IMBED_OK, "stop client carol");
        imbed_client_free(client);
    }
    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    imbed_server_free(server);
}

/*
 * A server whose host does not poll drops what does not fit and says so:
 * the first event is OVERFLOW, and messages seen + dropped == messages sent.
 */
static void test_server_overflow(void)
{
    char config[256];
    snprintf(config, sizeof config,
             "{" DEV_SERVER ",\"log_level\":\"off\",\"events\":{\"delivery\":\"poll\",\"queue_capacity\":%d}}",
             SMALL_QUEUE);
    imbed_server *server = start_server(config, NULL);
    if (server == NULL) {
        return;
    }
    event_source source = server_source(server);
    int sent = 0;
    for (int index = 0; index < OVERFLOW_MESSAGES; index++) {
        sent += imbed_server_send(server, "host", "bob", "{}", NULL, NULL) == IMBED_OK;
    }
    check(sent == OVERFLOW_MESSAGES, "sent %d of %d messages while the host did not poll", sent, OVERFLOW_MESSAGES);
    check(wait_readable(source.fd, EVENT_WAIT_MS) == 1, "the descriptor is readable");

    /* The message events are queued before each send returns, so all that will come is there now. */
    int taken = 0;
    int messages = 0;
    int overflows = 0;
    long long dropped = 0;
    bool overflow_first = false;
    bool overflow_fields_ok = true;
    bool increasing = true;
    long long last_seq = 0;
    imbed_status status = IMBED_OK;
    for (;;) {
        imbed_event *event = NULL;
        status = imbed_server_poll_event(server, &event);
        if (status != IMBED_OK || event == NULL) {
            break;
        }
        if (event->kind == IMBED_EVENT_OVERFLOW) {
            overflow_first |= taken == 0;
            overflows++;
            long long count = json_number(event->json, "dropped");
            overflow_fields_ok &= count > 0 && json_has(event->json, "event", "overflow") && event->user == NULL &&
                                  event->message == NULL && event->session == NULL;
            dropped += count > 0 ? count : 0;
        } else if (event->kind == IMBED_EVENT_MESSAGE) {
            long long seq = json_number(event->message, "seq");
            increasing &= seq > last_seq;
            last_seq = seq;
            messages++;
        }
        taken++;
        imbed_event_free(event);
    }
    check(status == IMBED_OK, "taking until none waits succeeds (%s)", status_name(status));
    check(overflow_first, "the first event is IMBED_EVENT_OVERFLOW (%d overflow events)", overflows);
    check(overflow_fields_ok, "overflow events have \"dropped\" > 0 in json and no user or message");
    check(messages <= SMALL_QUEUE && messages > 0 && increasing,
          "%d message events, at most the queue's %d, in seq order", messages, SMALL_QUEUE);
    check(messages + dropped == OVERFLOW_MESSAGES, "message events %d + dropped %lld == %d sent", messages, dropped,
          OVERFLOW_MESSAGES);
    check(wait_readable(source.fd, QUIET_MS) == 0, "not readable once drained");

    /* The count was reported once; the next event comes on its own. */
    check_status(imbed_server_send(server, "host", "bob", "{}", NULL, NULL), IMBED_OK, "send one more");
    imbed_event *event = wait_event(&source, now_ms() + EVENT_WAIT_MS, &status);
    check(event != NULL && event->kind == IMBED_EVENT_MESSAGE &&
              json_number(event->message, "seq") == OVERFLOW_MESSAGES + 1,
          "the next event is the new message, seq %d, with no overflow before it (%s)", OVERFLOW_MESSAGES + 1,
          event != NULL && event->json != NULL ? event->json : "none");
    imbed_event_free(event);
    check(drain(&source) == 0, "and nothing after it");
    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    imbed_server_free(server);
}

/*
 * The client role never drops: with a small queue and a host that does not
 * poll, it stops reading from the server; taken later, every message comes
 * exactly once, in seq order, with no overflow event.
 */
static void test_client_full_queue(void)
{
    uint16_t port = 0;
    imbed_server *server = start_server(CALLBACK_SERVER_CONFIG, &port);
    if (server == NULL) {
        return;
    }
    char extra[64];
    snprintf(extra, sizeof extra, ",\"queue_capacity\":%d", SMALL_QUEUE);
    imbed_client *client = new_poll_client(port, "alice", extra);
    if (client == NULL) {
        imbed_server_free(server);
        return;
    }
    event_source source = client_source(client);
    check_status(imbed_client_start(client), IMBED_OK, "start client alice with a queue of 4");
    if (!wait_client_connected(&source)) {
        imbed_client_free(client);
        imbed_server_free(server);
        return;
    }
    int sent = 0;
    for (int index = 0; index < CLIENT_MESSAGES; index++) {
        char body[64];
        snprintf(body, sizeof body, "{\"n\":%d}", index + 1);
        sent += imbed_server_send(server, "host", "alice", body, NULL, NULL) == IMBED_OK;
    }
    check(sent == CLIENT_MESSAGES, "server sent %d of %d messages to alice", sent, CLIENT_MESSAGES);
    /* Not polling for a while, so the client's queue is full and it stops reading. */
    sleep_ms(500);
    check(readable_now(source.fd), "the client's descriptor is readable while its queue is full");

    /* Taken in batches, so the client's next_events is tested with real traffic. */
    long long deadline = now_ms() + EVENT_WAIT_MS;
    int messages = 0;
    int duplicates = 0;
    int gaps = 0;
    int overflows = 0;
    int states = 0;
    int other = 0;
    int bad_fields = 0;
    int batches = 0;
    size_t largest_batch = 0;
    long long last_seq = 0;
    imbed_status status = IMBED_OK;
    imbed_event *batch[BATCH];
    size_t count = 0;
    size_t next = 0;
    while (last_seq < CLIENT_MESSAGES) {
        if (next == count) {
            next = count = 0;
            status = imbed_client_next_events(client, batch, BATCH, &count);
            if (status != IMBED_OK) {
                break;
            }
            if (count == 0) {
                long long left = deadline - now_ms();
                if (left <= 0 || wait_readable(source.fd, (int)left) < 0) {
                    break;
                }
                continue;
            }
            batches++;
            largest_batch = count > largest_batch ? count : largest_batch;
        }
        imbed_event *event = batch[next++];
        if (event->kind == IMBED_EVENT_MESSAGE) {
            long long seq = json_number(event->message, "seq");
            duplicates += seq <= last_seq;
            gaps += seq > last_seq + 1;
            bad_fields += !equals(event->user, "host") || !json_has(event->message, "conv", "dm:alice:host") ||
                          json_number(event->message, "n") != seq || event->json == NULL;
            last_seq = seq > last_seq ? seq : last_seq;
            messages++;
        } else if (event->kind == IMBED_EVENT_OVERFLOW) {
            overflows++;
        } else if (event->kind == IMBED_EVENT_STATE) {
            states++;
        } else {
            other++;
        }
        imbed_event_free(event);
    }
    while (next < count) {
        imbed_event_free(batch[next++]);
    }
    check(messages == CLIENT_MESSAGES && duplicates == 0 && gaps == 0,
          "client: every message exactly once in seq order (%d events, %d repeated, %d gaps, last seq %lld; "
          "%d next_events calls gave events, at most %zu at once; last take %s)",
          messages, duplicates, gaps, last_seq, batches, largest_batch, status_name(status));
    check(overflows == 0, "client: no overflow event (%d)", overflows);
    check(bad_fields == 0, "client: message events from host in dm:alice:host, body matching seq (%d did not)",
          bad_fields);
    check(other == 0, "client: no other events (%d; and %d state changes, reconnects if any)", other, states);
    check(drain(&source) == 0 && wait_readable(source.fd, QUIET_MS) == 0,
          "client: nothing else waits, and the descriptor is quiet once drained");
    check_status(imbed_client_stop(client), IMBED_OK, "stop client");
    check_status(imbed_server_stop(server), IMBED_OK, "stop server");
    imbed_client_free(client);
    imbed_server_free(server);
}

/* Thread body: waits in poll() until the handle is stopped (see stop_waiter). */
static void *wait_for_stop(void *argument)
{
    stop_waiter *waiter = argument;
    long long deadline = now_ms() + EVENT_WAIT_MS;
    waiter->final_status = IMBED_OK;
    for (;;) {
        long long left = deadline - now_ms();
        struct pollfd watched = {.fd = waiter->source.fd, .events = POLLIN};
        waiter->poll_result = poll(&watched, 1, left > 0 ? (int)left : 0);
        waiter->revents = watched.revents;
        waiter->woke_at = now_ms();
        if (waiter->poll_result <= 0 || !waiter->take_until_stopped) {
            break;
        }
        imbed_event *event = NULL;
        waiter->final_status = source_poll(&waiter->source, &event);
        if (waiter->final_status != IMBED_OK) {
            break;
        }
        if (event == NULL) {
            waiter->empty_wakes++;
        } else {
            waiter->stray_events++;
            imbed_event_free(event);
        }
    }
    atomic_store(&waiter->done, true);
    return NULL;
}

/* Starts `waiter` polling, stops the handle from this thread, and checks the waiter woke for it. */
static void stop_under_waiter(stop_waiter *waiter)
{
    const char *name = waiter->source.name;
    atomic_init(&waiter->done, false);
    pthread_create(&waiter->thread, NULL, wait_for_stop, waiter);
    sleep_ms(300);
    check(!atomic_load(&waiter->done), "%s: the poller thread is still waiting before stop", name);
    long long stop_at = now_ms();
    imbed_status status = waiter->source.server != NULL ? imbed_server_stop(waiter->source.server)
                                                        : imbed_client_stop(waiter->source.client);
    check_status(status, IMBED_OK, waiter->source.server != NULL ? "server stop while a thread polls"
                                                                 : "client stop while a thread polls");
    /* Bounded: the thread's own poll() gives up at its deadline. */
    pthread_join(waiter->thread, NULL);
    check(waiter->poll_result == 1 && (waiter->revents & POLLIN) && waiter->woke_at >= stop_at &&
              waiter->woke_at - stop_at < EVENT_WAIT_MS,
          "%s: the thread in poll() woke readable after stop was called (poll %d, revents 0x%x, %lld ms after)",
          name, waiter->poll_result, (unsigned)waiter->revents, waiter->woke_at - stop_at);
    if (waiter->take_until_stopped) {
        check(waiter->final_status == IMBED_ERR_STOPPED,
              "%s: its next take gave IMBED_ERR_STOPPED (%s; %d events and %d empty wakes before)", name,
              status_name(waiter->final_status), waiter->stray_events, waiter->empty_wakes);
    }

    imbed_event *event = (imbed_event *)waiter;
    status = source_poll(&waiter->source, &event);
    check(status == IMBED_ERR_STOPPED && event == (imbed_event *)waiter,
          "%s: poll_event after stop -> %s (expected IMBED_ERR_STOPPED), event_out untouched", name,
          status_name(status));
    imbed_event *batch[BATCH];
    size_t count = 77;
    status = source_next(&waiter->source, batch, BATCH, &count);
    check(status == IMBED_ERR_STOPPED && count == 77,
          "%s: next_events after stop -> %s (expected IMBED_ERR_STOPPED), count_out untouched", name,
          status_name(status));
    check(readable_now(waiter->source.fd), "%s: the descriptor stays readable after stop", name);
    sleep_ms(QUIET_MS);
    check(readable_now(waiter->source.fd), "%s: and still after the failed takes", name);
    int fd = -1;
    status = waiter->source.server != NULL ? imbed_server_event_fd(waiter->source.server, &fd)
                                           : imbed_client_event_fd(waiter->source.client, &fd);
    check(status == IMBED_OK && fd == waiter->source.fd, "%s: event_fd after stop is still the same descriptor (%s)",
          name, status_name(status));
}

/* A thread blocked in poll() on the descriptor wakes when another thread stops the handle. */
static void test_stop_wakes_poller(void)
{
    uint16_t port = 0;
    imbed_server *server = start_server(POLL_SERVER_CONFIG, &port);
    if (server == NULL) {
        return;
    }
    static stop_waiter server_waiter;
    server_waiter = (stop_waiter){.source = server_source(server)};
    check(wait_readable(server_waiter.source.fd, QUIET_MS) == 0, "server: quiet before the thread waits");
    stop_under_waiter(&server_waiter);
    imbed_server_free(server);

    /* The client: connected to a live server, so it is quiet unless something happens. */
    server = start_server(CALLBACK_SERVER_CONFIG, &port);
    if (server == NULL) {
        return;
    }
    imbed_client *client = new_poll_client(port, "dave", "");
    if (client != NULL) {
        static stop_waiter client_waiter;
        client_waiter = (stop_waiter){.source = client_source(client), .take_until_stopped = true};
        check_status(imbed_client_start(client), IMBED_OK, "start client dave");
        if (wait_client_connected(&client_waiter.source)) {
            drain(&client_waiter.source);
            stop_under_waiter(&client_waiter);
        }
        imbed_client_free(client);
    }
    check_status(imbed_server_stop(server), IMBED_OK, "stop server");
    imbed_server_free(server);
}

/* The events a thread frees, and where they come from. */
typedef struct free_job {
    imbed_event **events;
    const int *order;
    int count;
} free_job;

/* Thread body: frees the job's events in the job's order. */
static void *free_events(void *argument)
{
    free_job *job = argument;
    for (int index = 0; index < job->count; index++) {
        imbed_event_free(job->events[job->order[index]]);
    }
    return NULL;
}

/* Whether a server message event from "host" still reads whole: its strings are the event's own. */
static bool reads_whole(const imbed_event *event, long long expected_seq)
{
    return event != NULL && event->kind == IMBED_EVENT_MESSAGE && equals(event->user, "host") &&
           json_number(event->message, "seq") == expected_seq && json_number(event->message, "n") == expected_seq &&
           json_has(event->json, "event", "message") && strstr(event->json, event->message) != NULL &&
           event->session == NULL && event->group == NULL;
}

/*
 * Events outlive their handle and may be freed in any order, on any thread:
 * batches freed in reverse and shuffled, some after imbed_server_free, read
 * after it; events never taken are freed by stop. valgrind sees every byte.
 */
static void test_free_in_any_order(void)
{
    imbed_server *server = start_server(POLL_SERVER_CONFIG, NULL);
    if (server == NULL) {
        return;
    }
    event_source source = server_source(server);
    /* Two batches, and a few more events that nobody takes. */
    const int sends = 2 * BATCH + 3;
    for (int index = 1; index <= sends; index++) {
        char body[32];
        snprintf(body, sizeof body, "{\"n\":%d}", index);
        imbed_server_send(server, "host", "bob", body, NULL, NULL);
    }
    check(wait_readable(source.fd, EVENT_WAIT_MS) == 1, "readable with %d events queued", sends);
    imbed_event *first[BATCH] = {0};
    imbed_event *second[BATCH] = {0};
    size_t first_count = 0;
    size_t second_count = 0;
    check_status(imbed_server_next_events(server, first, BATCH, &first_count), IMBED_OK, "next_events, first batch");
    check_status(imbed_server_next_events(server, second, BATCH, &second_count), IMBED_OK,
                 "next_events, second batch");
    if (!check(first_count == BATCH && second_count == BATCH, "two full batches of %d (%zu, %zu)", BATCH,
               first_count, second_count)) {
        for (size_t index = 0; index < first_count; index++) {
            imbed_event_free(first[index]);
        }
        for (size_t index = 0; index < second_count; index++) {
            imbed_event_free(second[index]);
        }
        imbed_server_free(server);
        return;
    }
    bool all_whole = true;
    for (int index = 0; index < BATCH; index++) {
        all_whole &= reads_whole(first[index], index + 1) && reads_whole(second[index], BATCH + index + 1);
    }
    check(all_whole, "the batches hold seq 1..%d in order, fields as documented", 2 * BATCH);

    /* Half of the first batch, newest first, while the handle lives. */
    for (int index = BATCH - 1; index >= 0; index -= 2) {
        imbed_event_free(first[index]);
        first[index] = NULL;
    }
    check(true, "freed half of the first batch in reverse order before stop");
    check_status(imbed_server_stop(server), IMBED_OK, "stop with 3 events never taken");
    imbed_server_free(server);

    /* The handle is gone; what was taken is still the host's. */
    bool whole_after_free = true;
    for (int index = 0; index < BATCH; index++) {
        whole_after_free &= (first[index] == NULL || reads_whole(first[index], index + 1)) &&
                            reads_whole(second[index], BATCH + index + 1);
    }
    check(whole_after_free, "every event still reads whole after imbed_server_free");
    for (int index = BATCH - 2; index >= 0; index -= 2) {
        imbed_event_free(first[index]);
    }
    check(true, "freed the rest of the first batch in reverse order after free");
    static const int shuffled[BATCH] = {5, 2, 7, 0, 3, 6, 1, 4};
    free_job job = {.events = second, .order = shuffled, .count = BATCH / 2};
    pthread_t thread;
    pthread_create(&thread, NULL, free_events, &job);
    pthread_join(thread, NULL);
    for (int index = BATCH / 2; index < BATCH; index++) {
        imbed_event_free(second[shuffled[index]]);
    }
    check(true, "freed the second batch in shuffled order, half on another thread");

    /* The client twin: its events outlive it too. */
    imbed_client *client = new_poll_client(1, "erin", "");
    if (client == NULL) {
        return;
    }
    event_source client_events = client_source(client);
    check_status(imbed_client_start(client), IMBED_OK, "start client erin against a closed port");
    imbed_status status = IMBED_OK;
    imbed_event *state = wait_event(&client_events, now_ms() + EVENT_WAIT_MS, &status);
    imbed_client_free(client);
    check(state != NULL && state->kind == IMBED_EVENT_STATE && json_has(state->json, "event", "state") &&
              json_has(state->json, "state", "connecting") && state->user == NULL && state->message == NULL,
          "client: a STATE event taken before imbed_client_free reads whole after it: %s",
          state != NULL && state->json != NULL ? state->json : "(none)");
    imbed_event_free(state);
}

/* The error cases of the poll calls, for the server and the client role. */
static void test_errors(void)
{
    imbed_event_free(NULL);
    check(true, "imbed_event_free(NULL) returns");

    imbed_server *callback_server = NULL;
    imbed_client *callback_client = NULL;
    int fd = -7;
    imbed_event *untouched_event = (imbed_event *)&fd;
    imbed_event *event = untouched_event;
    imbed_event *batch[BATCH];
    size_t count = 77;
    if (check_status(imbed_server_new(CALLBACK_SERVER_CONFIG, &callback_server), IMBED_OK, "new callback server")) {
        check_status(imbed_server_event_fd(callback_server, &fd), IMBED_ERR_INVALID_ARGUMENT,
                     "server event_fd with callback delivery");
        check_last_error_mentions("callback", "server event_fd with callback delivery");
        check(fd == -7, "fd_out untouched");
        check_status(imbed_server_poll_event(callback_server, &event), IMBED_ERR_INVALID_ARGUMENT,
                     "server poll_event with callback delivery");
        check_status(imbed_server_next_events(callback_server, batch, BATCH, &count), IMBED_ERR_INVALID_ARGUMENT,
                     "server next_events with callback delivery");
        check(event == untouched_event && count == 77, "event_out and count_out untouched");
        imbed_server_free(callback_server);
    }
    if (check_status(imbed_client_new("{\"url\":\"ws://127.0.0.1:1/ws\",\"token\":\"t\"}", &callback_client),
                     IMBED_OK, "new callback client")) {
        check_status(imbed_client_event_fd(callback_client, &fd), IMBED_ERR_INVALID_ARGUMENT,
                     "client event_fd with callback delivery");
        check_last_error_mentions("callback", "client event_fd with callback delivery");
        check_status(imbed_client_poll_event(callback_client, &event), IMBED_ERR_INVALID_ARGUMENT,
                     "client poll_event with callback delivery");
        check_status(imbed_client_next_events(callback_client, batch, BATCH, &count), IMBED_ERR_INVALID_ARGUMENT,
                     "client next_events with callback delivery");
        imbed_client_free(callback_client);
    }
    imbed_server *bad = NULL;
    check_status(imbed_server_new("{\"events\":{\"delivery\":\"push\"}}", &bad), IMBED_ERR_INVALID_CONFIG,
                 "server events.delivery \"push\"");
    check_last_error_mentions("delivery", "server events.delivery \"push\"");
    imbed_client *bad_client = NULL;
    check_status(imbed_client_new("{\"url\":\"ws://127.0.0.1:1/ws\",\"token\":\"t\",\"events\":{\"delivery\":1}}",
                                  &bad_client),
                 IMBED_ERR_INVALID_CONFIG, "client events.delivery 1");
    check_last_error_mentions("delivery", "client events.delivery 1");
    imbed_server_free(bad);
    imbed_client_free(bad_client);

    check_status(imbed_server_event_fd(NULL, &fd), IMBED_ERR_NULL_ARGUMENT, "server event_fd(NULL server)");
    check_status(imbed_server_poll_event(NULL, &event), IMBED_ERR_NULL_ARGUMENT, "server poll_event(NULL server)");
    check_status(imbed_server_next_events(NULL, batch, BATCH, &count), IMBED_ERR_NULL_ARGUMENT,
                 "server next_events(NULL server)");
    check_status(imbed_client_event_fd(NULL, &fd), IMBED_ERR_NULL_ARGUMENT, "client event_fd(NULL client)");
    check_status(imbed_client_poll_event(NULL, &event), IMBED_ERR_NULL_ARGUMENT, "client poll_event(NULL client)");
    check_status(imbed_client_next_events(NULL, batch, BATCH, &count), IMBED_ERR_NULL_ARGUMENT,
                 "client next_events(NULL client)");

    /* A poll-mode server and client, not started yet. */
    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(POLL_SERVER_CONFIG, &server), IMBED_OK, "new poll server")) {
        return;
    }
    imbed_client *client = new_poll_client(1, "frank", "");
    if (client == NULL) {
        imbed_server_free(server);
        return;
    }
    check_status(imbed_server_event_fd(server, NULL), IMBED_ERR_NULL_ARGUMENT, "server event_fd(NULL fd_out)");
    check_last_error_mentions("", "server event_fd(NULL fd_out)");
    check_status(imbed_server_poll_event(server, NULL), IMBED_ERR_NULL_ARGUMENT, "server poll_event(NULL event_out)");
    check_status(imbed_server_next_events(server, NULL, BATCH, &count), IMBED_ERR_NULL_ARGUMENT,
                 "server next_events(NULL events)");
    check_status(imbed_server_next_events(server, batch, BATCH, NULL), IMBED_ERR_NULL_ARGUMENT,
                 "server next_events(NULL count_out)");
    check_status(imbed_client_event_fd(client, NULL), IMBED_ERR_NULL_ARGUMENT, "client event_fd(NULL fd_out)");
    check_status(imbed_client_poll_event(client, NULL), IMBED_ERR_NULL_ARGUMENT, "client poll_event(NULL event_out)");
    check_status(imbed_client_next_events(client, NULL, BATCH, &count), IMBED_ERR_NULL_ARGUMENT,
                 "client next_events(NULL events)");
    check_status(imbed_client_next_events(client, batch, BATCH, NULL), IMBED_ERR_NULL_ARGUMENT,
                 "client next_events(NULL count_out)");
    check(count == 77, "failed next_events calls leave count_out untouched");

    check_status(imbed_server_poll_event(server, &event), IMBED_ERR_NOT_STARTED, "server poll_event before start");
    check_last_error_mentions("", "server poll_event before start");
    check_status(imbed_server_next_events(server, batch, BATCH, &count), IMBED_ERR_NOT_STARTED,
                 "server next_events before start");
    check_status(imbed_client_poll_event(client, &event), IMBED_ERR_NOT_STARTED, "client poll_event before start");
    check_status(imbed_client_next_events(client, batch, BATCH, &count), IMBED_ERR_NOT_STARTED,
                 "client next_events before start");
    check(event == untouched_event && count == 77, "failed takes leave event_out and count_out untouched");

    /* max 0 takes nothing, even with an event waiting, which stays for the next take. */
    check_status(imbed_server_start(server), IMBED_OK, "start poll server");
    event_source source = server_source(server);
    check_status(imbed_server_send(server, "host", "bob", "{}", NULL, NULL), IMBED_OK, "send one");
    check(wait_readable(source.fd, EVENT_WAIT_MS) == 1, "readable with one event waiting");
    count = 77;
    check_status(imbed_server_next_events(server, batch, 0, &count), IMBED_OK, "server next_events(max 0)");
    check(count == 0, "server next_events(max 0) gives count 0 (%zu)", count);
    check(readable_now(source.fd), "the waiting event still makes the descriptor readable");
    event = NULL;
    check_status(imbed_server_poll_event(server, &event), IMBED_OK, "poll_event after max 0");
    check(event != NULL && event->kind == IMBED_EVENT_MESSAGE, "the event is still there for it");
    imbed_event_free(event);

    check_status(imbed_client_start(client), IMBED_OK, "start poll client against a closed port");
    count = 77;
    check_status(imbed_client_next_events(client, batch, 0, &count), IMBED_OK, "client next_events(max 0)");
    check(count == 0, "client next_events(max 0) gives count 0 (%zu)", count);

    imbed_server_free(server);
    imbed_client_free(client);
    event = untouched_event;
    check_status(imbed_server_event_fd(server, &fd), IMBED_ERR_INVALID_HANDLE, "server event_fd on a freed handle");
    check_status(imbed_server_poll_event(server, &event), IMBED_ERR_INVALID_HANDLE,
                 "server poll_event on a freed handle");
    check_status(imbed_server_next_events(server, batch, BATCH, &count), IMBED_ERR_INVALID_HANDLE,
                 "server next_events on a freed handle");
    check_status(imbed_client_event_fd(client, &fd), IMBED_ERR_INVALID_HANDLE, "client event_fd on a freed handle");
    check_status(imbed_client_poll_event(client, &event), IMBED_ERR_INVALID_HANDLE,
                 "client poll_event on a freed handle");
    check(event == untouched_event, "event_out untouched");
}

int main(void)
{
    alarm(WATCHDOG_SECONDS);
    if (mkdtemp(state_directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    long long started = now_ms();
    test_errors();
    test_wakeups();
    test_log_events();
    test_order_and_content();
    test_server_overflow();
    test_client_full_queue();
    test_stop_wakes_poller();
    test_free_in_any_order();
    remove_state_directory();
    printf("%d passed, %d failed in %lld ms\n", checks_passed, checks_failed, now_ms() - started);
    return checks_failed == 0 ? 0 : 1;
}
