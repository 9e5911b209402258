/* A C program from outside imbed's tree, built only from what `make install`
 * put in a prefix and found through pkg-config (tests/install/run). It serves
 * on a port of its own, connects to itself with the client role as alice,
 * sends bob a message and waits for the ack: exit 0 only once that ack came.
 *
 * Usage: consumer STATE_FILE   (the client's SQLite state; its directory must exist)
 */
#include <imbed.h>

#include <stdio.h>
#include <string.h>
#include <threads.h>
#include <time.h>

#define WAIT_SECONDS 10

/* What the client's event thread hands to main. */
typedef struct {
    mtx_t lock;
    cnd_t changed;
    char ack[512];     /* the first IMBED_EVENT_ACK's JSON; "" until then */
    char refused[512]; /* an IMBED_EVENT_SEND_FAILED's JSON; "" unless one came */
    char state[256];   /* the last IMBED_EVENT_STATE's JSON, to explain a timeout */
} progress;

static void on_client_event(void *user_data, const imbed_event *event)
{
    progress *p = user_data;
    mtx_lock(&p->lock);
    if (event->kind == IMBED_EVENT_ACK && p->ack[0] == '\0') {
        snprintf(p->ack, sizeof p->ack, "%s", event->json);
    } else if (event->kind == IMBED_EVENT_SEND_FAILED) {
        snprintf(p->refused, sizeof p->refused, "%s", event->json);
    } else if (event->kind == IMBED_EVENT_STATE) {
        snprintf(p->state, sizeof p->state, "%s", event->json);
    }
    cnd_broadcast(&p->changed);
    mtx_unlock(&p->lock);
}

static void on_log(void *user_data, imbed_log_level level, const char *target, const char *message)
{
    (void)user_data;
    fprintf(stderr, "consumer: engine log (level %d) %s: %s\n", (int)level, target, message);
}

/* Reports a failed call. imbed_last_error() is read before imbed_status_str(),
 * another imbed_ call, may replace it. */
static void report(const char *call, imbed_status status)
{
    char detail[512];
    snprintf(detail, sizeof detail, "%s", imbed_last_error());
    fprintf(stderr, "consumer: %s: %s (%s)\n", call, imbed_status_str((int32_t)status), detail);
}

/* Waits until the ack or a refusal came, at most WAIT_SECONDS; true for the ack. */
static bool wait_for_ack(progress *p)
{
    struct timespec deadline;
    timespec_get(&deadline, TIME_UTC);
    deadline.tv_sec += WAIT_SECONDS;
    mtx_lock(&p->lock);
    while (p->ack[0] == '\0' && p->refused[0] == '\0') {
        if (cnd_timedwait(&p->changed, &p->lock, &deadline) == thrd_timedout) {
            break;
        }
    }
    bool acked = p->ack[0] != '\0';
    if (p->refused[0] != '\0') {
        fprintf(stderr, "consumer: the server refused the message: %s\n", p->refused);
    } else if (!acked) {
        fprintf(stderr, "consumer: no ack within %d s; last client state: %s\n", WAIT_SECONDS,
                p->state[0] != '\0' ? p->state : "(none)");
    }
    mtx_unlock(&p->lock);
    return acked;
}

int main(int argc, char **argv)
{
    if (argc != 2 || strpbrk(argv[1], "\"\\") != NULL) {
        fprintf(stderr, "usage: consumer STATE_FILE (a path without quotes or backslashes)\n");
        return 2;
    }
    /* The header and the library installed side by side must agree. */
    if (strcmp(imbed_version(), IMBED_VERSION) != 0) {
        fprintf(stderr, "consumer: header %s, library %s\n", IMBED_VERSION, imbed_version());
        return 1;
    }

    progress p = {0};
    if (mtx_init(&p.lock, mtx_plain) != thrd_success || cnd_init(&p.changed) != thrd_success) {
        fprintf(stderr, "consumer: cannot create a mutex\n");
        return 1;
    }
    int result = 1;
    imbed_server *server = NULL;
    imbed_client *client = NULL;
    char *id = NULL;
    imbed_status status;

    imbed_listener server_listener = {.on_log = on_log};
    status = imbed_server_new("{\"listen\":\"127.0.0.1:0\",\"auth\":{\"mode\":\"dev\"},\"log_level\":\"warn\"}", &server);
    if (status != IMBED_OK) {
        report("imbed_server_new", status);
        goto done;
    }
    if ((status = imbed_server_set_listener(server, &server_listener)) != IMBED_OK) {
        report("imbed_server_set_listener", status);
        goto done;
    }
    if ((status = imbed_server_start(server)) != IMBED_OK) {
        report("imbed_server_start", status);
        goto done;
    }
    uint16_t port = 0;
    if ((status = imbed_server_port(server, &port)) != IMBED_OK) {
        report("imbed_server_port", status);
        goto done;
    }

    char config[1024];
    int length = snprintf(config, sizeof config,
                          "{\"url\":\"ws://127.0.0.1:%u/ws\",\"token\":\"alice\",\"state_path\":\"%s\","
                          "\"log_level\":\"warn\"}",
                          (unsigned)port, argv[1]);
    if (length < 0 || (size_t)length >= sizeof config) {
        fprintf(stderr, "consumer: the state path is too long\n");
        goto done;
    }
    imbed_listener client_listener = {.user_data = &p, .on_event = on_client_event, .on_log = on_log};
    if ((status = imbed_client_new(config, &client)) != IMBED_OK) {
        report("imbed_client_new", status);
        goto done;
    }
    if ((status = imbed_client_set_listener(client, &client_listener)) != IMBED_OK) {
        report("imbed_client_set_listener", status);
        goto done;
    }
    if ((status = imbed_client_start(client)) != IMBED_OK) {
        report("imbed_client_start", status);
        goto done;
    }
    if ((status = imbed_client_send(client, "bob", "{\"text\":\"hello from an installed imbed\"}", &id)) != IMBED_OK) {
        report("imbed_client_send", status);
        goto done;
    }
    if (!wait_for_ack(&p)) {
        goto done;
    }

    /* The ack is for this message, in alice and bob's conversation. */
    char expected_id[256];
    snprintf(expected_id, sizeof expected_id, "\"id\":\"%s\"", id);
    if (strstr(p.ack, expected_id) == NULL || strstr(p.ack, "\"conv\":\"dm:alice:bob\"") == NULL) {
        fprintf(stderr, "consumer: an ack for another message: %s (sent %s)\n", p.ack, id);
        goto done;
    }
    printf("consumer: imbed %s on port %u acked %s\n", imbed_version(), (unsigned)port, p.ack);
    result = 0;

done:
    /* Stopped explicitly, not only by free, so that a stop that fails fails the test. */
    if (client != NULL && (status = imbed_client_stop(client)) != IMBED_OK) {
        report("imbed_client_stop", status);
        result = 1;
    }
    imbed_client_free(client);
    if (server != NULL && (status = imbed_server_stop(server)) != IMBED_OK) {
        report("imbed_server_stop", status);
        result = 1;
    }
    imbed_server_free(server);
    imbed_string_free(id);
    cnd_destroy(&p.changed);
    mtx_destroy(&p.lock);
    return result;
}
