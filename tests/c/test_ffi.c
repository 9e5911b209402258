/*
 * C test of the imbed ABI (include/imbed.h, conventions in docs/C-API.md).
 *
 * Prints one line per check, then "N passed, M failed"; exits 1 if any
 * check failed. Meant to run under
 *   valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
 * so use of a freed handle or a leak across the ABI also fails the run.
 *
 * Build:
 *   cc -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -Iinclude \
 *      tests/c/test_ffi.c target/release/libimbed.a -lpthread -ldl -lm -o build/test_ffi
 */
#include "imbed.h"
#include "check.h"

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

#define DEV_CONFIG "{\"listen\":\"127.0.0.1:0\",\"auth\":{\"mode\":\"dev\"}}"
#define EVENT_WAIT_MS 10000
/* A hung stop or send must fail the run, not stall CI; generous for valgrind. */
#define WATCHDOG_SECONDS 600
#define SEND_THREADS 8
#define SENDS_PER_THREAD 200


/* Counters a listener updates from the engine's dispatcher thread. */
typedef struct event_recorder {
    pthread_mutex_t lock;
    int events;
    int message_events;
    int host_seq1_messages; /* message events sent by "host" whose frame has "seq":1 */
    int alice_joined_team;  /* member events of "alice" in "team" with "joined":true */
    int alice_left_team;    /* member events of "alice" in "team" with "joined":false */
    int malformed_events;   /* events whose fields do not fit their kind */
    int logs;
    int destroys;
    imbed_server *stop_target; /* when set, the first message event calls stop on it */
    int stop_status_in_callback; /* -1 until that call happened */
} event_recorder;

/* One of the threads hammering imbed_server_send while the server stops. */
typedef struct send_worker {
    pthread_t thread;
    int index;
    imbed_server *server;
    atomic_int *attempts; /* shared by all workers */
    int ok_count;
    int stopped_count;
    int other_count;
    imbed_status other_status;
    bool ok_after_stopped;
    uint64_t seqs[SENDS_PER_THREAD]; /* seq of each successful send */
} send_worker;

/* Offset of the first "seq":<seq> (as a whole number, so 1 does not match 12) in `json`, or -1. */
static long seq_offset(const char *json, unsigned seq)
{
    char needle[32];
    int needle_length = snprintf(needle, sizeof needle, "\"seq\":%u", seq);
    for (const char *found = strstr(json, needle); found != NULL; found = strstr(found + 1, needle)) {
        char next = found[needle_length];
        if (next < '0' || next > '9') {
            return (long)(found - json);
        }
    }
    return -1;
}

/* Whether `message_json` contains "seq":<seq> as a whole number. */
static bool message_has_seq(const char *message_json, unsigned seq)
{
    return seq_offset(message_json, seq) >= 0;
}

/* Whether an event's fields fit its kind as documented in imbed.h. */
static bool event_is_well_formed(const imbed_event *event)
{
    if (event->json == NULL) {
        return false;
    }
    if (event->kind != IMBED_EVENT_MEMBER && event->group != NULL) {
        return false;
    }
    switch (event->kind) {
    case IMBED_EVENT_MESSAGE:
        return event->user != NULL && event->message != NULL && event->session == NULL && event->reason == NULL &&
               strstr(event->json, "\"event\":\"message\"") != NULL;
    case IMBED_EVENT_CONNECTED:
        return event->user != NULL && event->session != NULL && event->message == NULL;
    case IMBED_EVENT_DISCONNECTED:
        return event->user != NULL && event->session != NULL && event->reason != NULL;
    case IMBED_EVENT_OVERFLOW:
        return event->user == NULL && event->message == NULL;
    case IMBED_EVENT_MEMBER:
        return event->user != NULL && event->group != NULL && event->session == NULL && event->message == NULL &&
               strstr(event->json, "\"event\":\"member\"") != NULL;
    case IMBED_EVENT_PUSH:
        return event->user != NULL && event->session == NULL && strstr(event->json, "\"event\":\"push\"") != NULL;
    case IMBED_EVENT_STATE:
    case IMBED_EVENT_ACK:
    case IMBED_EVENT_SEND_FAILED:
    case IMBED_EVENT_FRAME:
        /* Client-role events: a server never sends them. */
        return false;
    case IMBED_EVENT_LOG:
        /* Polled handles only: this test's servers deliver by callback. */
        return false;
    }
    return false;
}

/* Listener on_event: counts events; may try stop from inside the callback. */
static void record_event(void *user_data, const imbed_event *event)
{
    event_recorder *recorder = user_data;
    pthread_mutex_lock(&recorder->lock);
    recorder->events++;
    if (!event_is_well_formed(event)) {
        recorder->malformed_events++;
    }
    if (event->kind == IMBED_EVENT_MESSAGE && event->message != NULL) {
        recorder->message_events++;
        if (event->user != NULL && strcmp(event->user, "host") == 0 && message_has_seq(event->message, 1)) {
            recorder->host_seq1_messages++;
        }
    }
    if (event->kind == IMBED_EVENT_MEMBER && event->json != NULL && event->group != NULL &&
        strcmp(event->group, "team") == 0 && event->user != NULL && strcmp(event->user, "alice") == 0) {
        if (strstr(event->json, "\"joined\":true") != NULL) {
            recorder->alice_joined_team++;
        } else if (strstr(event->json, "\"joined\":false") != NULL) {
            recorder->alice_left_team++;
        }
    }
    imbed_server *stop_target = recorder->stop_target;
    bool try_stop = stop_target != NULL && recorder->stop_status_in_callback < 0;
    pthread_mutex_unlock(&recorder->lock);

    if (try_stop && event->kind == IMBED_EVENT_MESSAGE) {
        imbed_status status = imbed_server_stop(stop_target);
        pthread_mutex_lock(&recorder->lock);
        recorder->stop_status_in_callback = (int)status;
        pthread_mutex_unlock(&recorder->lock);
    }
}

/* Listener on_log: counts log lines. */
static void record_log(void *user_data, imbed_log_level level, const char *target, const char *message)
{
    (void)level;
    (void)target;
    (void)message;
    event_recorder *recorder = user_data;
    pthread_mutex_lock(&recorder->lock);
    recorder->logs++;
    pthread_mutex_unlock(&recorder->lock);
}

/* Listener destroy: counts calls; the contract is exactly one. */
static void record_destroy(void *user_data)
{
    event_recorder *recorder = user_data;
    pthread_mutex_lock(&recorder->lock);
    recorder->destroys++;
    pthread_mutex_unlock(&recorder->lock);
}

/* Initializes a recorder with zero counts. */
static void recorder_init(event_recorder *recorder)
{
    *recorder = (event_recorder){.stop_status_in_callback = -1};
    pthread_mutex_init(&recorder->lock, NULL);
}

/* A listener wired to `recorder` with every callback except authenticate. */
static imbed_listener recorder_listener(event_recorder *recorder)
{
    return (imbed_listener){
        .user_data = recorder,
        .on_event = record_event,
        .on_log = record_log,
        .destroy = record_destroy,
    };
}

/* A consistent copy of the counters. */
static event_recorder recorder_snapshot(event_recorder *recorder)
{
    pthread_mutex_lock(&recorder->lock);
    event_recorder copy = *recorder;
    pthread_mutex_unlock(&recorder->lock);
    return copy;
}

/* Waits until recorder field *counter reaches `at_least`; returns whether it did in time. */
static bool wait_for_counter(event_recorder *recorder, const int *counter, int at_least)
{
    long long deadline = now_ms() + EVENT_WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&recorder->lock);
        bool reached = *counter >= at_least;
        pthread_mutex_unlock(&recorder->lock);
        if (reached || now_ms() > deadline) {
            return reached;
        }
        sleep_ms(10);
    }
}

/* Creates and starts a server from `config` with `listener` (may be NULL); NULL on failure. */
static imbed_server *start_server(const char *config, const imbed_listener *listener)
{
    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(config, &server), IMBED_OK, "new server")) {
        return NULL;
    }
    if (listener != NULL) {
        check_status(imbed_server_set_listener(server, listener), IMBED_OK, "set_listener");
    }
    if (!check_status(imbed_server_start(server), IMBED_OK, "start server")) {
        imbed_server_free(server);
        return NULL;
    }
    return server;
}

/* Creates and starts a dev-auth server on a free port with `listener` (may be NULL); NULL on failure. */
static imbed_server *start_dev_server(const imbed_listener *listener)
{
    return start_server(DEV_CONFIG, listener);
}

/* Thread body: reads the last error of a thread that never failed. */
static void *read_fresh_last_error(void *result)
{
    const char *message = imbed_last_error();
    *(bool *)result = message != NULL && message[0] == '\0';
    return NULL;
}

/* imbed_version, the version macros, imbed_status_str and a fresh thread's last error. */
static void test_version_and_status_strings(void)
{
    const char *version = imbed_version();
    check(version != NULL && strcmp(version, IMBED_VERSION) == 0, "imbed_version() \"%s\" == IMBED_VERSION \"%s\"",
          version ? version : "(NULL)", IMBED_VERSION);
    char from_macros[32];
    snprintf(from_macros, sizeof from_macros, "%d.%d.%d", IMBED_VERSION_MAJOR, IMBED_VERSION_MINOR,
             IMBED_VERSION_PATCH);
    check(strcmp(from_macros, IMBED_VERSION) == 0, "MAJOR.MINOR.PATCH \"%s\" == IMBED_VERSION", from_macros);

    for (int status = IMBED_OK; status <= IMBED_ERR_NOT_FOUND; status++) {
        const char *text = imbed_status_str(status);
        check(text != NULL && text[0] != '\0', "imbed_status_str(%s) is non-empty: \"%s\"", status_name(status),
              text ? text : "(NULL)");
    }
    const int unknown_statuses[] = {9999, -1};
    for (size_t index = 0; index < 2; index++) {
        const char *text = imbed_status_str(unknown_statuses[index]);
        check(text != NULL, "imbed_status_str(%d) is not NULL: \"%s\"", unknown_statuses[index],
              text ? text : "(NULL)");
    }

    bool fresh_is_empty = false;
    pthread_t thread;
    pthread_create(&thread, NULL, read_fresh_last_error, &fresh_is_empty);
    pthread_join(thread, NULL);
    check(fresh_is_empty, "imbed_last_error() on a thread with no failure is \"\"");
}

/* NULL where a pointer is required gives IMBED_ERR_NULL_ARGUMENT, and out-params stay untouched. */
static void test_null_arguments(void)
{
    imbed_server *server = NULL;
    check_status(imbed_server_new(NULL, &server), IMBED_ERR_NULL_ARGUMENT, "new(NULL config)");
    check_last_error_mentions("", "new(NULL config)");
    check(server == NULL, "new(NULL config) leaves server_out untouched");
    check_status(imbed_server_new(DEV_CONFIG, NULL), IMBED_ERR_NULL_ARGUMENT, "new(config, NULL out)");
    check_last_error_mentions("", "new(config, NULL out)");

    uint16_t port = 0;
    uint64_t seq = 0;
    imbed_listener empty_listener = {0};
    check_status(imbed_server_start(NULL), IMBED_ERR_NULL_ARGUMENT, "start(NULL)");
    check_last_error_mentions("", "start(NULL)");
    check_status(imbed_server_stop(NULL), IMBED_ERR_NULL_ARGUMENT, "stop(NULL)");
    check_status(imbed_server_port(NULL, &port), IMBED_ERR_NULL_ARGUMENT, "port(NULL server)");
    check_status(imbed_server_send(NULL, "host", "bob", "{}", NULL, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "send(NULL server)");
    check_status(imbed_server_set_listener(NULL, &empty_listener), IMBED_ERR_NULL_ARGUMENT,
                 "set_listener(NULL server)");
    uint32_t sessions_closed = 0;
    char *json = NULL;
    imbed_stats stats = {0};
    check_status(imbed_server_create_group(NULL, "team", false), IMBED_ERR_NULL_ARGUMENT, "create_group(NULL server)");
    check_status(imbed_server_add_member(NULL, "team", "alice"), IMBED_ERR_NULL_ARGUMENT, "add_member(NULL server)");
    check_status(imbed_server_remove_member(NULL, "team", "alice"), IMBED_ERR_NULL_ARGUMENT,
                 "remove_member(NULL server)");
    check_status(imbed_server_send_group(NULL, "host", "team", "{}", NULL, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "send_group(NULL server)");
    check_status(imbed_server_kick(NULL, "alice", &sessions_closed), IMBED_ERR_NULL_ARGUMENT, "kick(NULL server)");
    check_status(imbed_server_online(NULL, &json), IMBED_ERR_NULL_ARGUMENT, "online(NULL server)");
    check_status(imbed_server_stats(NULL, &stats), IMBED_ERR_NULL_ARGUMENT, "stats(NULL server)");
    imbed_server_free(NULL);
    check(true, "free(NULL) returns");

    server = start_dev_server(NULL);
    if (server == NULL) {
        return;
    }
    check_status(imbed_server_send(server, NULL, "bob", "{}", NULL, &seq), IMBED_ERR_NULL_ARGUMENT, "send(from NULL)");
    check_last_error_mentions("", "send(from NULL)");
    check_status(imbed_server_send(server, "host", NULL, "{}", NULL, &seq), IMBED_ERR_NULL_ARGUMENT, "send(to NULL)");
    check_status(imbed_server_send(server, "host", "bob", NULL, NULL, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "send(body NULL)");
    check_status(imbed_server_port(server, NULL), IMBED_ERR_NULL_ARGUMENT, "port(server, NULL out)");

    /* "team" exists, so only the NULL can be what is wrong. */
    check_status(imbed_server_create_group(server, "team", false), IMBED_OK, "create_group(team)");
    check_status(imbed_server_create_group(server, NULL, false), IMBED_ERR_NULL_ARGUMENT, "create_group(group NULL)");
    check_last_error_mentions("", "create_group(group NULL)");
    check_status(imbed_server_add_member(server, NULL, "alice"), IMBED_ERR_NULL_ARGUMENT, "add_member(group NULL)");
    check_status(imbed_server_add_member(server, "team", NULL), IMBED_ERR_NULL_ARGUMENT, "add_member(user NULL)");
    check_status(imbed_server_remove_member(server, NULL, "alice"), IMBED_ERR_NULL_ARGUMENT,
                 "remove_member(group NULL)");
    check_status(imbed_server_remove_member(server, "team", NULL), IMBED_ERR_NULL_ARGUMENT,
                 "remove_member(user NULL)");
    seq = 77;
    check_status(imbed_server_send_group(server, NULL, "team", "{}", NULL, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "send_group(from NULL)");
    check_status(imbed_server_send_group(server, "host", NULL, "{}", NULL, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "send_group(group NULL)");
    check_status(imbed_server_send_group(server, "host", "team", NULL, NULL, &seq), IMBED_ERR_NULL_ARGUMENT,
                 "send_group(body NULL)");
    check(seq == 77, "failed send_group calls leave seq_out untouched");
    check_status(imbed_server_kick(server, NULL, &sessions_closed), IMBED_ERR_NULL_ARGUMENT, "kick(user NULL)");
    check_status(imbed_server_online(server, NULL), IMBED_ERR_NULL_ARGUMENT, "online(server, NULL out)");
    check_status(imbed_server_stats(server, NULL), IMBED_ERR_NULL_ARGUMENT, "stats(server, NULL out)");
    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    imbed_server_free(server);
}

/* Strings that are not UTF-8 give IMBED_ERR_INVALID_UTF8, in the config and in every send string. */
static void test_invalid_utf8(void)
{
    imbed_server *server = NULL;
    check_status(imbed_server_new("{\"listen\":\"\xff\"}", &server), IMBED_ERR_INVALID_UTF8, "new(config with 0xff)");
    check_last_error_mentions("", "new(config with 0xff)");
    check(server == NULL, "failed new leaves server_out untouched");

    server = start_dev_server(NULL);
    if (server == NULL) {
        return;
    }
    uint64_t seq = 0;
    check_status(imbed_server_send(server, "host", "b\xff", "{}", NULL, &seq), IMBED_ERR_INVALID_UTF8,
                 "send(to with 0xff)");
    check_last_error_mentions("", "send(to with 0xff)");
    check_status(imbed_server_send(server, "h\xff", "bob", "{}", NULL, &seq), IMBED_ERR_INVALID_UTF8,
                 "send(from with 0xff)");
    check_status(imbed_server_send(server, "host", "bob", "\"\xff\"", NULL, &seq), IMBED_ERR_INVALID_UTF8,
                 "send(body with 0xff)");
    check_status(imbed_server_send(server, "host", "bob", "{}", "c\xff", &seq), IMBED_ERR_INVALID_UTF8,
                 "send(client_id with 0xff)");
    check_status(imbed_server_create_group(server, "team", false), IMBED_OK, "create_group(team)");
    check_status(imbed_server_create_group(server, "t\xff", false), IMBED_ERR_INVALID_UTF8,
                 "create_group(group with 0xff)");
    check_status(imbed_server_add_member(server, "team", "a\xff"), IMBED_ERR_INVALID_UTF8,
                 "add_member(user with 0xff)");
    check_status(imbed_server_remove_member(server, "t\xff", "alice"), IMBED_ERR_INVALID_UTF8,
                 "remove_member(group with 0xff)");
    check_status(imbed_server_send_group(server, "host", "team", "\"\xff\"", NULL, &seq), IMBED_ERR_INVALID_UTF8,
                 "send_group(body with 0xff)");
    check_status(imbed_server_kick(server, "a\xff", NULL), IMBED_ERR_INVALID_UTF8, "kick(user with 0xff)");
    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    imbed_server_free(server);
}

/* One bad config: IMBED_ERR_INVALID_CONFIG, a last error naming `field`, no handle written. */
static void check_bad_config(const char *config, const char *field)
{
    imbed_server *server = NULL;
    char what[160];
    snprintf(what, sizeof what, "new(%s)", config);
    check_status(imbed_server_new(config, &server), IMBED_ERR_INVALID_CONFIG, what);
    check_last_error_mentions(field, what);
    check(server == NULL, "%s leaves server_out untouched", what);
    imbed_server_free(server);
}

/* Not JSON, an unknown key, a wrong type and a missing required value. */
static void test_invalid_config(void)
{
    check_bad_config("not json", "");
    check_bad_config("{\"nope\":1}", "nope");
    check_bad_config("{\"workers\":\"two\"}", "workers");
    check_bad_config("{\"auth\":{\"mode\":\"jwt\"}}", "secret");
}

/* Sends and checks the status and, on success, the seq. */
static void check_send(imbed_server *server, const char *to, const char *body, const char *client_id,
                       imbed_status expected_status, uint64_t expected_seq, const char *what)
{
    uint64_t seq = 0;
    if (check_status(imbed_server_send(server, "host", to, body, client_id, &seq), expected_status, what) &&
        expected_status == IMBED_OK) {
        check(seq == expected_seq, "%s: seq %llu == %llu", what, (unsigned long long)seq,
              (unsigned long long)expected_seq);
    }
}

/* Sends to a group as "host" and checks the status and, on success, the seq; on failure seq_out stays untouched. */
static void check_send_group(imbed_server *server, const char *group, const char *body, const char *client_id,
                             imbed_status expected_status, uint64_t expected_seq, const char *what)
{
    const uint64_t untouched = 9999;
    uint64_t seq = untouched;
    bool as_expected = check_status(imbed_server_send_group(server, "host", group, body, client_id, &seq),
                                    expected_status, what);
    if (as_expected && expected_status == IMBED_OK) {
        check(seq == expected_seq, "%s: seq %llu == %llu", what, (unsigned long long)seq,
              (unsigned long long)expected_seq);
    } else if (as_expected) {
        check_last_error_mentions("", what);
        check(seq == untouched, "%s leaves seq_out untouched", what);
    }
}

/* The whole life of a server: new, listen, start, send, events, stop, free, stale handle. */
static void test_lifecycle(void)
{
    event_recorder recorder;
    recorder_init(&recorder);
    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(DEV_CONFIG, &server), IMBED_OK, "new(dev config)")) {
        return;
    }
    imbed_listener listener = recorder_listener(&recorder);
    check_status(imbed_server_set_listener(server, &listener), IMBED_OK, "set_listener");

    uint16_t port = 4242;
    check_status(imbed_server_port(server, &port), IMBED_ERR_NOT_STARTED, "port before start");
    check_last_error_mentions("", "port before start");
    check(port == 4242, "port before start leaves port_out untouched");

    check_status(imbed_server_start(server), IMBED_OK, "start");
    check_status(imbed_server_port(server, &port), IMBED_OK, "port");
    check(port > 0, "port %u > 0", (unsigned)port);
    check_status(imbed_server_start(server), IMBED_ERR_ALREADY_STARTED, "start again");
    check_last_error_mentions("", "start again");

    check_send(server, "bob", "{\"text\":\"hi\"}", NULL, IMBED_OK, 1, "send to bob");
    check_send(server, "bob", "{\"text\":\"again\"}", NULL, IMBED_OK, 2, "second send to bob");
    check_send(server, "bob", "{\"text\":\"once\"}", "c-retry", IMBED_OK, 3, "send with client_id c-retry");
    check_send(server, "bob", "{\"text\":\"once\"}", "c-retry", IMBED_OK, 3, "retry with client_id c-retry");
    check_status(imbed_server_send(server, "host", "bob", "[1,2]", NULL, NULL), IMBED_OK, "send with seq_out NULL");
    check_send(server, "bob", "{", NULL, IMBED_ERR_INVALID_ARGUMENT, 0, "send with body \"{\"");
    check_last_error_mentions("", "send with body \"{\"");
    check_send(server, "bad id!", "{}", NULL, IMBED_ERR_INVALID_ARGUMENT, 0, "send to \"bad id!\"");
    check_send(server, "", "{}", NULL, IMBED_ERR_INVALID_ARGUMENT, 0, "send to \"\"");
    char id[IMBED_MAX_ID_LEN + 2];
    memset(id, 'a', IMBED_MAX_ID_LEN + 1);
    id[IMBED_MAX_ID_LEN + 1] = '\0';
    check_send(server, id, "{}", NULL, IMBED_ERR_INVALID_ARGUMENT, 0, "send to a 65-char id");
    id[IMBED_MAX_ID_LEN] = '\0';
    check_send(server, id, "{}", NULL, IMBED_OK, 1, "send to a 64-char id");

    /* Five messages were stored: three to bob (the retry stores nothing), [1,2], and one to the long id. */
    const int stored_messages = 5;
    check(wait_for_counter(&recorder, &recorder.message_events, stored_messages),
          "on_event received %d IMBED_EVENT_MESSAGE events", stored_messages);
    event_recorder before_stop = recorder_snapshot(&recorder);
    check(before_stop.host_seq1_messages >= 1, "a message event has user \"host\" and \"seq\":1 (%d such)",
          before_stop.host_seq1_messages);
    check(before_stop.malformed_events == 0, "every event's fields fit its kind (%d did not)",
          before_stop.malformed_events);

    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    event_recorder at_stop = recorder_snapshot(&recorder);
    check_status(imbed_server_stop(server), IMBED_OK, "stop again");
    check_send(server, "bob", "{}", NULL, IMBED_ERR_STOPPED, 0, "send after stop");
    check_last_error_mentions("", "send after stop");
    check_status(imbed_server_start(server), IMBED_ERR_STOPPED, "start after stop");
    check(at_stop.destroys == 1, "destroy called once by stop (%d)", at_stop.destroys);
    check(at_stop.message_events == stored_messages, "exactly %d message events, none for the retry (%d)",
          stored_messages, at_stop.message_events);
    sleep_ms(300);
    event_recorder later = recorder_snapshot(&recorder);
    check(later.events == at_stop.events && later.logs == at_stop.logs && later.destroys == at_stop.destroys,
          "no callback after stop returned (events %d->%d, logs %d->%d, destroys %d->%d)", at_stop.events,
          later.events, at_stop.logs, later.logs, at_stop.destroys, later.destroys);

    imbed_server_free(server);
    uint64_t seq = 0;
    imbed_listener empty_listener = {0};
    check_status(imbed_server_start(server), IMBED_ERR_INVALID_HANDLE, "start on a freed handle");
    check_last_error_mentions("", "start on a freed handle");
    check_status(imbed_server_stop(server), IMBED_ERR_INVALID_HANDLE, "stop on a freed handle");
    check_status(imbed_server_port(server, &port), IMBED_ERR_INVALID_HANDLE, "port on a freed handle");
    check_status(imbed_server_send(server, "host", "bob", "{}", NULL, &seq), IMBED_ERR_INVALID_HANDLE,
                 "send on a freed handle");
    check_status(imbed_server_set_listener(server, &empty_listener), IMBED_ERR_INVALID_HANDLE,
                 "set_listener on a freed handle");
    imbed_server_free(server);
    check(true, "double free returns");
    check(recorder_snapshot(&recorder).destroys == 1, "destroy still called exactly once after free");
    pthread_mutex_destroy(&recorder.lock);
}

/* destroy runs once when a listener is replaced, once at free of a never-started server, once at stop. */
static void test_listener_replacement(void)
{
    event_recorder first;
    event_recorder second;
    recorder_init(&first);
    recorder_init(&second);
    imbed_listener first_listener = recorder_listener(&first);
    imbed_listener second_listener = recorder_listener(&second);

    imbed_server *server = NULL;
    if (check_status(imbed_server_new(DEV_CONFIG, &server), IMBED_OK, "new")) {
        check_status(imbed_server_set_listener(server, &first_listener), IMBED_OK, "set first listener");
        check_status(imbed_server_set_listener(server, &second_listener), IMBED_OK, "replace it before start");
        check(recorder_snapshot(&first).destroys == 1, "replaced listener destroyed once (%d)",
              recorder_snapshot(&first).destroys);
        check(recorder_snapshot(&second).destroys == 0, "current listener not destroyed yet");
        imbed_server_free(server);
        check(recorder_snapshot(&second).destroys == 1, "free of a never-started server destroys its listener once (%d)",
              recorder_snapshot(&second).destroys);
        check(recorder_snapshot(&first).destroys == 1, "replaced listener not destroyed again");
    }

    event_recorder running;
    recorder_init(&running);
    imbed_listener running_listener = recorder_listener(&running);
    imbed_listener late_listener = {0};
    server = start_dev_server(&running_listener);
    if (server != NULL) {
        imbed_status status = imbed_server_set_listener(server, &late_listener);
        check(status != IMBED_OK, "set_listener after start is refused (got %s)", status_name(status));
        check(recorder_snapshot(&running).destroys == 0, "refused replacement leaves the listener alone");
        check_status(imbed_server_stop(server), IMBED_OK, "stop");
        check(recorder_snapshot(&running).destroys == 1, "stop destroys the listener once (%d)",
              recorder_snapshot(&running).destroys);
        imbed_server_free(server);
        check(recorder_snapshot(&running).destroys == 1, "free after stop does not destroy again");
    }
    pthread_mutex_destroy(&first.lock);
    pthread_mutex_destroy(&second.lock);
    pthread_mutex_destroy(&running.lock);
}

/* stop from inside on_event gives IMBED_ERR_IN_CALLBACK instead of deadlocking. */
static void test_stop_inside_callback(void)
{
    event_recorder recorder;
    recorder_init(&recorder);
    imbed_listener listener = recorder_listener(&recorder);
    imbed_server *server = NULL;
    if (!check_status(imbed_server_new(DEV_CONFIG, &server), IMBED_OK, "new")) {
        return;
    }
    recorder.stop_target = server; /* before start, so the dispatcher thread sees it */
    check_status(imbed_server_set_listener(server, &listener), IMBED_OK, "set_listener");
    check_status(imbed_server_start(server), IMBED_OK, "start");
    check_send(server, "bob", "{\"text\":\"stop me\"}", NULL, IMBED_OK, 1, "send to trigger the callback");

    check(wait_for_counter(&recorder, &recorder.stop_status_in_callback, 0), "on_event tried stop");
    check_send(server, "bob", "{}", NULL, IMBED_OK, 2, "server still running after stop in the callback");
    check_status(imbed_server_stop(server), IMBED_OK, "outer stop");
    event_recorder after = recorder_snapshot(&recorder);
    check(after.stop_status_in_callback == IMBED_ERR_IN_CALLBACK, "stop inside on_event -> got %s, expected %s",
          status_name(after.stop_status_in_callback), status_name(IMBED_ERR_IN_CALLBACK));
    check(after.destroys == 1, "destroy called once (%d)", after.destroys);
    imbed_server_free(server);
    pthread_mutex_destroy(&recorder.lock);
}

/* Thread body: sends SENDS_PER_THREAD messages to bob, classifying every status. */
static void *run_send_worker(void *argument)
{
    send_worker *worker = argument;
    for (int attempt = 0; attempt < SENDS_PER_THREAD; attempt++) {
        char body[64];
        snprintf(body, sizeof body, "{\"thread\":%d,\"n\":%d}", worker->index, attempt);
        uint64_t seq = 0;
        imbed_status status = imbed_server_send(worker->server, "host", "bob", body, NULL, &seq);
        atomic_fetch_add(worker->attempts, 1);
        if (status == IMBED_OK) {
            worker->ok_after_stopped |= worker->stopped_count > 0;
            worker->seqs[worker->ok_count++] = seq;
        } else if (status == IMBED_ERR_STOPPED) {
            worker->stopped_count++;
        } else {
            worker->other_status = status;
            worker->other_count++;
        }
    }
    return NULL;
}

/* qsort comparator for seqs. */
static int compare_seqs(const void *left, const void *right)
{
    uint64_t a = *(const uint64_t *)left;
    uint64_t b = *(const uint64_t *)right;
    return (a > b) - (a < b);
}

/* Eight threads send while the main thread stops midway: only IMBED_OK or IMBED_ERR_STOPPED. */
static void test_concurrent_send_and_stop(void)
{
    imbed_server *server = start_dev_server(NULL);
    if (server == NULL) {
        return;
    }
    static send_worker workers[SEND_THREADS];
    atomic_int attempts = 0;
    for (int index = 0; index < SEND_THREADS; index++) {
        workers[index] = (send_worker){.index = index, .server = server, .attempts = &attempts};
        pthread_create(&workers[index].thread, NULL, run_send_worker, &workers[index]);
    }
    const int total_attempts = SEND_THREADS * SENDS_PER_THREAD;
    long long deadline = now_ms() + 120000;
    while (atomic_load(&attempts) < total_attempts / 2 && now_ms() < deadline) {
        sleep_ms(1);
    }
    int attempts_at_stop = atomic_load(&attempts);
    check_status(imbed_server_stop(server), IMBED_OK, "stop while 8 threads send");

    static uint64_t all_seqs[SEND_THREADS * SENDS_PER_THREAD];
    int ok_total = 0;
    int stopped_total = 0;
    int other_total = 0;
    imbed_status other_status = IMBED_OK;
    bool ok_after_stopped = false;
    for (int index = 0; index < SEND_THREADS; index++) {
        pthread_join(workers[index].thread, NULL);
        memcpy(all_seqs + ok_total, workers[index].seqs, (size_t)workers[index].ok_count * sizeof all_seqs[0]);
        ok_total += workers[index].ok_count;
        stopped_total += workers[index].stopped_count;
        other_total += workers[index].other_count;
        if (workers[index].other_count > 0) {
            other_status = workers[index].other_status;
        }
        ok_after_stopped |= workers[index].ok_after_stopped;
    }
    check(true, "all threads joined (%d sent, %d stopped; stop came after %d attempts)", ok_total, stopped_total,
          attempts_at_stop);
    check(other_total == 0, "every send returned IMBED_OK or IMBED_ERR_STOPPED (%d others%s%s)", other_total,
          other_total ? ", last " : "", other_total ? status_name(other_status) : "");
    check(ok_total + stopped_total + other_total == total_attempts, "every attempt returned");
    check(!ok_after_stopped, "no thread got IMBED_OK after it got IMBED_ERR_STOPPED");

    qsort(all_seqs, (size_t)ok_total, sizeof all_seqs[0], compare_seqs);
    bool distinct = true;
    for (int index = 0; index < ok_total; index++) {
        distinct &= all_seqs[index] >= 1 && (index == 0 || all_seqs[index] != all_seqs[index - 1]);
    }
    check(distinct, "successful sends got distinct seqs >= 1");
    imbed_server_free(server);
}

/*
 * Calls imbed_server_history and checks that the array holds exactly
 * `expected_count` msg frames with the seqs `expected_seqs`, in that order.
 */
static void check_history(imbed_server *server, const char *conv, uint64_t before, uint32_t limit,
                          const unsigned *expected_seqs, int expected_count, const char *what)
{
    char *json = NULL;
    if (!check_status(imbed_server_history(server, conv, before, limit, &json), IMBED_OK, what)) {
        return;
    }
    size_t length = json ? strlen(json) : 0;
    bool is_array = length >= 2 && json[0] == '[' && json[length - 1] == ']';
    int frames = is_array ? count_occurrences(json, "\"type\":\"msg\"") : -1;
    bool in_order = true;
    long previous_offset = -1;
    for (int index = 0; index < expected_count && is_array; index++) {
        long offset = seq_offset(json, expected_seqs[index]);
        in_order &= offset > previous_offset;
        previous_offset = offset;
    }
    bool empty_is_bare = expected_count > 0 || (json != NULL && strcmp(json, "[]") == 0);
    check(is_array && frames == expected_count && in_order && empty_is_bare,
          "%s: %d msg frames (expected %d), seqs in ascending order: %s", what, frames, expected_count,
          json ? json : "(NULL)");
    imbed_string_free(json);
}

/* A history call that must fail with `expected` and leave *json_out untouched. */
static void check_history_refused(imbed_server *server, const char *conv, uint64_t before, uint32_t limit,
                                  imbed_status expected, const char *what)
{
    char untouched = '\0';
    char *json = &untouched;
    check_status(imbed_server_history(server, conv, before, limit, &json), expected, what);
    check_last_error_mentions("", what);
    check(json == &untouched, "%s leaves json_out untouched", what);
}

/* imbed_server_history on the memory store: order, before, limit, unknown and malformed convs, NULLs, stop. */
static void test_history(void)
{
    imbed_string_free(NULL);
    check(true, "imbed_string_free(NULL) returns");

    imbed_server *server = start_dev_server(NULL);
    if (server == NULL) {
        return;
    }
    check_send(server, "bob", "{\"text\":\"one\"}", "h-1", IMBED_OK, 1, "send h-1 to bob");
    check_send(server, "bob", "{\"text\":\"two\"}", "h-2", IMBED_OK, 2, "send h-2 to bob");
    check_send(server, "bob", "{\"text\":\"three\"}", "h-3", IMBED_OK, 3, "send h-3 to bob");
    check_send(server, "carol", "{\"text\":\"elsewhere\"}", "h-4", IMBED_OK, 1, "send h-4 to carol");

    const unsigned all[] = {1, 2, 3};
    check_history(server, "dm:bob:host", 0, 10, all, 3, "history(dm:bob:host, newest, 10)");
    check_history(server, "dm:bob:host", 0, 1000, all, 3, "history(dm:bob:host, newest, 1000)");
    check_history(server, "dm:bob:host", 0, 2, all + 1, 2, "history(dm:bob:host, newest, 2) is the newest two");
    check_history(server, "dm:bob:host", 3, 10, all, 2, "history(dm:bob:host, before 3, 10)");
    check_history(server, "dm:bob:host", 3, 1, all + 1, 1, "history(dm:bob:host, before 3, 1) is seq 2");
    check_history(server, "dm:bob:host", 1, 10, NULL, 0, "history(dm:bob:host, before 1) is empty");
    check_history(server, "dm:carol:host", 0, 10, all, 1, "history(dm:carol:host) holds only its own message");
    check_history(server, "dm:a:b", 0, 10, NULL, 0, "history of an unknown dm is []");
    check_history(server, "g:team", 0, 10, NULL, 0, "history of an unknown group is []");

    char *json = NULL;
    if (check_status(imbed_server_history(server, "dm:bob:host", 0, 10, &json), IMBED_OK, "history for the fields")) {
        const char *first_id = json ? strstr(json, "\"id\":\"h-1\"") : NULL;
        const char *last_id = json ? strstr(json, "\"id\":\"h-3\"") : NULL;
        check(first_id != NULL && last_id != NULL && first_id < last_id && strstr(json, "\"from\":\"host\"") &&
                  strstr(json, "\"to\":\"bob\"") && strstr(json, "\"body\":{\"text\":\"two\"}"),
              "history frames carry id, from, to and body: %s", json ? json : "(NULL)");
        imbed_string_free(json);
    }

    check_history_refused(server, "dm:bob:host", 0, 0, IMBED_ERR_INVALID_ARGUMENT, "history(limit 0)");
    check_history_refused(server, "dm:bob:host", 0, 1001, IMBED_ERR_INVALID_ARGUMENT, "history(limit 1001)");
    const char *const malformed_convs[] = {"nope", "dm:b:a", "dm:host:bob", "dm:a", "dm:a:b:c", "dm::b", "g:",
                                           "g:bad id", "", "x:a:b"};
    for (size_t index = 0; index < sizeof malformed_convs / sizeof malformed_convs[0]; index++) {
        char what[64];
        snprintf(what, sizeof what, "history(conv \"%s\")", malformed_convs[index]);
        check_history_refused(server, malformed_convs[index], 0, 10, IMBED_ERR_INVALID_ARGUMENT, what);
    }
    check_history_refused(server, "dm:a:\xff", 0, 10, IMBED_ERR_INVALID_UTF8, "history(conv with 0xff)");
    check_history_refused(server, NULL, 0, 10, IMBED_ERR_NULL_ARGUMENT, "history(NULL conv)");
    check_status(imbed_server_history(server, "dm:bob:host", 0, 10, NULL), IMBED_ERR_NULL_ARGUMENT,
                 "history(NULL json_out)");

    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    check_history_refused(server, "dm:bob:host", 0, 10, IMBED_ERR_STOPPED, "history after stop");
    imbed_server_free(server);
    check_history_refused(server, "dm:bob:host", 0, 10, IMBED_ERR_INVALID_HANDLE, "history on a freed handle");
}

/* Calls imbed_server_history and checks that the result contains `needle`. */
static void check_history_mentions(imbed_server *server, const char *conv, const char *needle, const char *what)
{
    char *json = NULL;
    if (check_status(imbed_server_history(server, conv, 0, 10, &json), IMBED_OK, what)) {
        check(json != NULL && strstr(json, needle) != NULL, "%s contains %s: %s", what, needle,
              json ? json : "(NULL)");
        imbed_string_free(json);
    }
}

/* Groups from the host: create open and closed, members and their events, sends, history, every failure. */
static void test_groups(void)
{
    event_recorder recorder;
    recorder_init(&recorder);
    imbed_listener listener = recorder_listener(&recorder);
    imbed_server *server = start_dev_server(&listener);
    if (server == NULL) {
        return;
    }
    check_status(imbed_server_create_group(server, "team", false), IMBED_OK, "create_group(team, open)");
    check_status(imbed_server_create_group(server, "staff", true), IMBED_OK, "create_group(staff, closed)");

    check_status(imbed_server_add_member(server, "team", "alice"), IMBED_OK, "add_member(team, alice)");
    check(wait_for_counter(&recorder, &recorder.alice_joined_team, 1),
          "on_event received a member event with group \"team\", user \"alice\", \"joined\":true");
    check_status(imbed_server_add_member(server, "team", "alice"), IMBED_OK, "add_member(team, alice) again");
    check_status(imbed_server_add_member(server, "staff", "alice"), IMBED_OK, "add_member to the closed group");

    check_send_group(server, "team", "{\"text\":\"one\"}", NULL, IMBED_OK, 1, "send_group(team) first");
    check_send_group(server, "team", "{\"text\":\"two\"}", NULL, IMBED_OK, 2, "send_group(team) second");
    check_send_group(server, "team", "{\"text\":\"three\"}", "g-3", IMBED_OK, 3, "send_group(team) with g-3");
    check_send_group(server, "team", "{\"text\":\"three\"}", "g-3", IMBED_OK, 3, "retry send_group with g-3");
    check_status(imbed_server_send_group(server, "host", "team", "[1]", NULL, NULL), IMBED_OK,
                 "send_group with seq_out NULL");
    check_send_group(server, "staff", "{\"text\":\"closed\"}", NULL, IMBED_OK, 1,
                     "send_group to the closed group, the host not a member");
    check_status(imbed_server_create_group(server, "team", true), IMBED_OK, "create_group(team) again, closed");
    check_send_group(server, "team", "{\"text\":\"five\"}", NULL, IMBED_OK, 5,
                     "send_group after re-creating team continues its seq");

    const unsigned seqs[] = {1, 2, 3, 4, 5};
    check_history(server, "g:team", 0, 10, seqs, 5, "history(g:team)");
    check_history_mentions(server, "g:team", "\"group\":\"team\"", "history(g:team)");
    check_history_mentions(server, "g:team", "\"id\":\"g-3\"", "history(g:team)");
    check_history(server, "g:staff", 0, 10, seqs, 1, "history(g:staff) holds only its own message");

    check_status(imbed_server_remove_member(server, "team", "alice"), IMBED_OK, "remove_member(team, alice)");
    check(wait_for_counter(&recorder, &recorder.alice_left_team, 1),
          "on_event received a member event with group \"team\", user \"alice\", \"joined\":false");
    check_status(imbed_server_remove_member(server, "team", "alice"), IMBED_OK,
                 "remove_member(team, alice) again, no longer a member");
    check_status(imbed_server_remove_member(server, "team", "zed"), IMBED_OK, "remove_member of a never-member");

    check_status(imbed_server_add_member(server, "nope", "alice"), IMBED_ERR_NOT_FOUND, "add_member(missing group)");
    check_last_error_mentions("", "add_member(missing group)");
    check_status(imbed_server_remove_member(server, "nope", "alice"), IMBED_ERR_NOT_FOUND,
                 "remove_member(missing group)");
    check_last_error_mentions("", "remove_member(missing group)");
    check_send_group(server, "nope", "{}", NULL, IMBED_ERR_NOT_FOUND, 0, "send_group(missing group)");
    check_history(server, "g:nope", 0, 10, NULL, 0, "history of the missing group is []");

    char long_id[IMBED_MAX_ID_LEN + 2];
    memset(long_id, 'g', IMBED_MAX_ID_LEN + 1);
    long_id[IMBED_MAX_ID_LEN + 1] = '\0';
    const char *const bad_ids[] = {"bad id!", "", "g:team", long_id};
    for (size_t index = 0; index < sizeof bad_ids / sizeof bad_ids[0]; index++) {
        const char *bad = bad_ids[index];
        char what[128];
        snprintf(what, sizeof what, "create_group(\"%.20s\")", bad);
        check_status(imbed_server_create_group(server, bad, false), IMBED_ERR_INVALID_ARGUMENT, what);
        check_last_error_mentions("", what);
        snprintf(what, sizeof what, "add_member(\"%.20s\", alice)", bad);
        check_status(imbed_server_add_member(server, bad, "alice"), IMBED_ERR_INVALID_ARGUMENT, what);
        snprintf(what, sizeof what, "add_member(team, \"%.20s\")", bad);
        check_status(imbed_server_add_member(server, "team", bad), IMBED_ERR_INVALID_ARGUMENT, what);
        snprintf(what, sizeof what, "remove_member(\"%.20s\", alice)", bad);
        check_status(imbed_server_remove_member(server, bad, "alice"), IMBED_ERR_INVALID_ARGUMENT, what);
        snprintf(what, sizeof what, "remove_member(team, \"%.20s\")", bad);
        check_status(imbed_server_remove_member(server, "team", bad), IMBED_ERR_INVALID_ARGUMENT, what);
        snprintf(what, sizeof what, "send_group(group \"%.20s\")", bad);
        check_send_group(server, bad, "{}", NULL, IMBED_ERR_INVALID_ARGUMENT, 0, what);
        snprintf(what, sizeof what, "send_group(from \"%.20s\")", bad);
        check_status(imbed_server_send_group(server, bad, "team", "{}", NULL, NULL), IMBED_ERR_INVALID_ARGUMENT, what);
    }
    long_id[IMBED_MAX_ID_LEN] = '\0';
    check_status(imbed_server_create_group(server, long_id, false), IMBED_OK, "create_group with a 64-char id");
    check_send_group(server, "team", "{", NULL, IMBED_ERR_INVALID_ARGUMENT, 0, "send_group with body \"{\"");

    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    event_recorder at_stop = recorder_snapshot(&recorder);
    check(at_stop.alice_joined_team == 1 && at_stop.alice_left_team == 1,
          "one member event per change: alice joined team %d time(s), left %d time(s); repeats told nobody",
          at_stop.alice_joined_team, at_stop.alice_left_team);
    check(at_stop.message_events == 6, "a message event per stored group message, none for the retry (%d of 6)",
          at_stop.message_events);
    check(at_stop.malformed_events == 0, "every event's fields fit its kind, group only on member events (%d did not)",
          at_stop.malformed_events);

    check_status(imbed_server_create_group(server, "team", false), IMBED_ERR_STOPPED, "create_group after stop");
    check_last_error_mentions("", "create_group after stop");
    check_status(imbed_server_add_member(server, "team", "alice"), IMBED_ERR_STOPPED, "add_member after stop");
    check_status(imbed_server_remove_member(server, "team", "alice"), IMBED_ERR_STOPPED, "remove_member after stop");
    check_send_group(server, "team", "{}", NULL, IMBED_ERR_STOPPED, 0, "send_group after stop");

    imbed_server_free(server);
    check_status(imbed_server_create_group(server, "team", false), IMBED_ERR_INVALID_HANDLE,
                 "create_group on a freed handle");
    check_last_error_mentions("", "create_group on a freed handle");
    check_status(imbed_server_add_member(server, "team", "alice"), IMBED_ERR_INVALID_HANDLE,
                 "add_member on a freed handle");
    check_status(imbed_server_remove_member(server, "team", "alice"), IMBED_ERR_INVALID_HANDLE,
                 "remove_member on a freed handle");
    check_send_group(server, "team", "{}", NULL, IMBED_ERR_INVALID_HANDLE, 0, "send_group on a freed handle");
    pthread_mutex_destroy(&recorder.lock);
}

/* Checks imbed_server_online gives exactly `expected` (a JSON array) and that failures leave json_out alone. */
static void check_online(imbed_server *server, imbed_status expected_status, const char *expected, const char *what)
{
    char untouched = '\0';
    char *json = &untouched;
    if (!check_status(imbed_server_online(server, &json), expected_status, what)) {
        return;
    }
    if (expected_status == IMBED_OK) {
        check(json != NULL && json != &untouched && strcmp(json, expected) == 0, "%s is %s (got %s)", what, expected,
              json == NULL ? "(NULL)" : json == &untouched ? "(untouched)" : json);
        imbed_string_free(json);
    } else {
        check_last_error_mentions("", what);
        check(json == &untouched, "%s leaves json_out untouched", what);
    }
}

/* Checks imbed_server_kick's status and, on success, that it closed no session: no client connects here. */
static void check_kick(imbed_server *server, const char *user, imbed_status expected_status, const char *what)
{
    const uint32_t untouched = 4242;
    uint32_t sessions_closed = untouched;
    bool as_expected = check_status(imbed_server_kick(server, user, &sessions_closed), expected_status, what);
    if (as_expected && expected_status == IMBED_OK) {
        check(sessions_closed == 0, "%s: %u sessions closed, expected 0", what, (unsigned)sessions_closed);
    } else if (as_expected) {
        check_last_error_mentions("", what);
        check(sessions_closed == untouched, "%s leaves sessions_closed_out untouched", what);
    }
}

/* Online users, kick and the counters, on a server no client connects to. */
static void test_online_kick_and_stats(void)
{
    imbed_server *server = start_dev_server(NULL);
    if (server == NULL) {
        return;
    }
    check_online(server, IMBED_OK, "[]", "online with no client");
    check_kick(server, "bob", IMBED_OK, "kick(bob), who is offline");
    check_status(imbed_server_kick(server, "bob", NULL), IMBED_OK, "kick with sessions_closed_out NULL");
    check_kick(server, "bad id!", IMBED_ERR_INVALID_ARGUMENT, "kick(\"bad id!\")");
    check_kick(server, "", IMBED_ERR_INVALID_ARGUMENT, "kick(\"\")");

    imbed_stats stats = {0};
    if (check_status(imbed_server_stats(server, &stats), IMBED_OK, "stats of a fresh server")) {
        check(stats.connections == 0 && stats.users_online == 0 && stats.messages_stored == 0 &&
                  stats.messages_delivered == 0,
              "a fresh server counts nothing (%llu connections, %llu online, %llu stored, %llu delivered)",
              (unsigned long long)stats.connections, (unsigned long long)stats.users_online,
              (unsigned long long)stats.messages_stored, (unsigned long long)stats.messages_delivered);
    }
    check_send(server, "bob", "{\"text\":\"one\"}", "s-1", IMBED_OK, 1, "send s-1 to bob");
    check_send(server, "bob", "{\"text\":\"one\"}", "s-1", IMBED_OK, 1, "retry s-1, which stores nothing");
    check_send(server, "carol", "{\"text\":\"two\"}", NULL, IMBED_OK, 1, "send to carol");
    check_status(imbed_server_create_group(server, "team", false), IMBED_OK, "create_group(team)");
    check_send_group(server, "team", "{\"text\":\"three\"}", NULL, IMBED_OK, 1, "send_group(team)");

    stats = (imbed_stats){0};
    if (check_status(imbed_server_stats(server, &stats), IMBED_OK, "stats after the sends")) {
        check(stats.messages_stored == 3, "messages_stored counts the 3 stored messages, not the retry (%llu)",
              (unsigned long long)stats.messages_stored);
        check(stats.connections == 0 && stats.users_online == 0 && stats.messages_delivered == 0,
              "without clients nothing is connected or delivered (%llu connections, %llu online, %llu delivered)",
              (unsigned long long)stats.connections, (unsigned long long)stats.users_online,
              (unsigned long long)stats.messages_delivered);
    }

    check_status(imbed_server_stop(server), IMBED_OK, "stop");
    check_online(server, IMBED_ERR_STOPPED, NULL, "online after stop");
    check_kick(server, "bob", IMBED_ERR_STOPPED, "kick after stop");
    check_status(imbed_server_stats(server, &stats), IMBED_ERR_STOPPED, "stats after stop");
    check_last_error_mentions("", "stats after stop");

    imbed_server_free(server);
    check_online(server, IMBED_ERR_INVALID_HANDLE, NULL, "online on a freed handle");
    check_kick(server, "bob", IMBED_ERR_INVALID_HANDLE, "kick on a freed handle");
    check_status(imbed_server_stats(server, &stats), IMBED_ERR_INVALID_HANDLE, "stats on a freed handle");
}

/* Removes the database files a store at `directory`/x.db may have made, then the directory. */
static void remove_database_directory(const char *directory)
{
    /* The database and the files SQLite may keep next to it. */
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t index = 0; index < sizeof suffixes / sizeof suffixes[0]; index++) {
        char path[128];
        snprintf(path, sizeof path, "%s/x.db%s", directory, suffixes[index]);
        unlink(path);
    }
    check(rmdir(directory) == 0, "temporary directory %s holds nothing but the database files", directory);
}

/* The config of a dev-auth server on a free port storing into `db_path`. */
static void sqlite_config(char *config, size_t capacity, const char *db_path)
{
    snprintf(config, capacity, "{\"listen\":\"127.0.0.1:0\",\"auth\":{\"mode\":\"dev\"},\"store\":{\"path\":\"%s\"}}",
             db_path);
}

/* A SQLite store keeps messages, their seqs and their idempotency keys across a stop and a new server. */
static void test_sqlite_store_survives_restart(void)
{
    char directory[] = "/tmp/imbed-test-ffi-XXXXXX";
    if (!check(mkdtemp(directory) != NULL, "mkdtemp for the database")) {
        return;
    }
    char db_path[96];
    snprintf(db_path, sizeof db_path, "%s/x.db", directory);
    char config[256];
    sqlite_config(config, sizeof config, db_path);

    imbed_server *server = start_server(config, NULL);
    if (server != NULL) {
        check_send(server, "bob", "{\"text\":\"one\"}", "d-1", IMBED_OK, 1, "sqlite: send d-1");
        check_send(server, "bob", "{\"text\":\"two\"}", "d-2", IMBED_OK, 2, "sqlite: send d-2");
        check_send(server, "bob", "{\"text\":\"three\"}", "d-3", IMBED_OK, 3, "sqlite: send d-3");
        check_send(server, "bob", "{\"text\":\"two\"}", "d-2", IMBED_OK, 2, "sqlite: retry d-2 before the restart");
        check_status(imbed_server_stop(server), IMBED_OK, "sqlite: stop the first server");
        imbed_server_free(server);
    }

    server = start_server(config, NULL);
    if (server != NULL) {
        const unsigned stored[] = {1, 2, 3, 4};
        check_history(server, "dm:bob:host", 0, 10, stored, 3, "sqlite: history after the restart");
        char *json = NULL;
        if (check_status(imbed_server_history(server, "dm:bob:host", 0, 10, &json), IMBED_OK,
                         "sqlite: history for ids")) {
            check(json != NULL && strstr(json, "\"d-1\"") && strstr(json, "\"d-2\"") && strstr(json, "\"d-3\"") &&
                      strstr(json, "{\"text\":\"three\"}"),
                  "sqlite: the restarted server has d-1, d-2, d-3 and their bodies: %s", json ? json : "(NULL)");
            imbed_string_free(json);
        }
        check_send(server, "bob", "{\"text\":\"two\"}", "d-2", IMBED_OK, 2,
                   "sqlite: retry d-2 after the restart gets its original seq");
        check_send(server, "bob", "{\"text\":\"four\"}", "d-4", IMBED_OK, 4,
                   "sqlite: a new message after the restart continues at seq 4");
        check_history(server, "dm:bob:host", 0, 10, stored, 4, "sqlite: history holds 4 messages, no copy of d-2");
        check_status(imbed_server_stop(server), IMBED_OK, "sqlite: stop the second server");
        imbed_server_free(server);
    }
    remove_database_directory(directory);
}

/* A SQLite store keeps a closed group, its members and its messages across a stop and a new server. */
static void test_sqlite_groups_survive_restart(void)
{
    char directory[] = "/tmp/imbed-test-ffi-XXXXXX";
    if (!check(mkdtemp(directory) != NULL, "mkdtemp for the database")) {
        return;
    }
    char db_path[96];
    snprintf(db_path, sizeof db_path, "%s/x.db", directory);
    char config[256];
    sqlite_config(config, sizeof config, db_path);

    imbed_server *server = start_server(config, NULL);
    if (server != NULL) {
        check_status(imbed_server_create_group(server, "ops", true), IMBED_OK, "sqlite: create_group(ops, closed)");
        check_status(imbed_server_add_member(server, "ops", "alice"), IMBED_OK, "sqlite: add_member(ops, alice)");
        check_send_group(server, "ops", "{\"text\":\"one\"}", "o-1", IMBED_OK, 1, "sqlite: send_group o-1");
        check_send_group(server, "ops", "{\"text\":\"two\"}", "o-2", IMBED_OK, 2, "sqlite: send_group o-2");
        check_status(imbed_server_stop(server), IMBED_OK, "sqlite: stop the first server");
        imbed_server_free(server);
    }

    server = start_server(config, NULL);
    if (server != NULL) {
        check_send_group(server, "ops", "{\"text\":\"three\"}", "o-3", IMBED_OK, 3,
                         "sqlite: the group exists after the restart and continues at seq 3");
        check_send_group(server, "ops", "{\"text\":\"two\"}", "o-2", IMBED_OK, 2,
                         "sqlite: retry o-2 after the restart gets its original seq");
        check_status(imbed_server_add_member(server, "ops", "bob"), IMBED_OK,
                     "sqlite: add_member(ops, bob) after the restart");
        const unsigned stored[] = {1, 2, 3};
        check_history(server, "g:ops", 0, 10, stored, 3, "sqlite: history(g:ops) after the restart");
        check_history_mentions(server, "g:ops", "{\"text\":\"one\"}", "sqlite: history(g:ops) after the restart");
        check_status(imbed_server_stop(server), IMBED_OK, "sqlite: stop the second server");
        imbed_server_free(server);
    }
    remove_database_directory(directory);
}

/* A store path that cannot be opened fails at start with IMBED_ERR_STORE. */
static void test_sqlite_store_unopenable(void)
{
    char directory[] = "/tmp/imbed-test-ffi-XXXXXX";
    if (!check(mkdtemp(directory) != NULL, "mkdtemp for the missing directory")) {
        return;
    }
    char db_path[96];
    snprintf(db_path, sizeof db_path, "%s/missing/x.db", directory);
    char config[256];
    sqlite_config(config, sizeof config, db_path);
    imbed_server *server = NULL;
    if (check_status(imbed_server_new(config, &server), IMBED_OK, "new with a store in a missing directory")) {
        check_status(imbed_server_start(server), IMBED_ERR_STORE, "start with a store in a missing directory");
        check_last_error_mentions("missing/x.db", "start with a store in a missing directory");
        imbed_server_free(server);
    }
    check(rmdir(directory) == 0, "the failed start created nothing in %s", directory);
}

/* Runs every test and prints the summary line. */
/* Stale handles are named by kind; callback auth needs an authenticate callback, not just a listener. */
static void test_handle_kinds_and_callback_auth(void)
{
    imbed_server *server = NULL;
    imbed_client *client = NULL;
    if (!check_status(imbed_server_new(DEV_CONFIG, &server), IMBED_OK, "new server") ||
        !check_status(imbed_client_new("{\"url\":\"ws://127.0.0.1:1/ws\",\"token\":\"t\"}", &client), IMBED_OK,
                      "new client")) {
        return;
    }
    imbed_server_free(server);
    imbed_client_free(client);
    check_status(imbed_server_start(server), IMBED_ERR_INVALID_HANDLE, "start a freed server");
    check_last_error_mentions("live server", "start a freed server");
    check_status(imbed_client_start(client), IMBED_ERR_INVALID_HANDLE, "start a freed client");
    check_last_error_mentions("live client", "start a freed client");

    event_recorder recorder;
    recorder_init(&recorder);
    imbed_listener listener = recorder_listener(&recorder);
    if (!check_status(imbed_server_new("{\"listen\":\"127.0.0.1:0\",\"auth\":{\"mode\":\"callback\"}}", &server),
                      IMBED_OK, "new callback-auth server")) {
        return;
    }
    check_status(imbed_server_set_listener(server, &listener), IMBED_OK, "set a listener without authenticate");
    check_status(imbed_server_start(server), IMBED_ERR_INVALID_CONFIG, "start callback auth without authenticate");
    check_last_error_mentions("authenticate", "start callback auth without authenticate");
    imbed_server_free(server);
    check(recorder_snapshot(&recorder).destroys == 1, "the listener is destroyed once by free");
    pthread_mutex_destroy(&recorder.lock);
}

int main(void)
{
    alarm(WATCHDOG_SECONDS);
    test_version_and_status_strings();
    test_null_arguments();
    test_invalid_utf8();
    test_invalid_config();
    test_lifecycle();
    test_listener_replacement();
    test_stop_inside_callback();
    test_concurrent_send_and_stop();
    test_history();
    test_groups();
    test_online_kick_and_stats();
    test_sqlite_store_survives_restart();
    test_sqlite_groups_survive_restart();
    test_sqlite_store_unopenable();
    test_handle_kinds_and_callback_auth();
    printf("%d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed == 0 ? 0 : 1;
}
