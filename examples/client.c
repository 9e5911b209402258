/*
 * imbed-client: runs imbed's client role from the command line.
 *
 * It connects to an imbed server as one user and stays connected: it
 * reconnects by itself, keeps every message it was asked to send in an
 * outbox until the server acknowledges it, and catches up with a sync after
 * every connect. It is what an app embeds, without the app.
 *
 * stdout: every client event as one JSON object per line (connection state,
 * messages, acks, refused sends, other frames), and one JSON line answering
 * each stdin command.
 * stderr: the engine's logs and fatal errors.
 * stdin: one command per line (see USAGE): "send", "group", "request", "quit".
 * SIGINT and SIGTERM stop the client cleanly; so does "quit". End of input
 * does not: the client may run with stdin closed and keeps printing events.
 *
 * The stdin/stdout/signal plumbing it shares with imbed-host is in
 * examples/console.c; this file holds the flags, the config and the commands.
 *
 * Build (the flags of `make client`):
 *   cc -std=c11 -Wall -Wextra -Werror -D_DEFAULT_SOURCE -Iinclude \
 *      examples/client.c examples/console.c target/release/libimbed.a \
 *      -lpthread -ldl -lm -o build/imbed-client
 */
#include "console.h"
#include "imbed.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROGRAM_NAME "imbed-client"
#define EXIT_USAGE 2

static const char USAGE[] =
    "usage: " PROGRAM_NAME " --url URL --token TOKEN [options]\n"
    "\n"
    "  --url URL            the server, such as ws://127.0.0.1:8080/ws; repeat it for several\n"
    "                       nodes of one service, tried in turn when one cannot be reached\n"
    "  --token TOKEN        the token the server authenticates (with a dev-auth server: the user id)\n"
    "  --state PATH         SQLite file keeping the outbox and the sync cursors across runs\n"
    "                       (default :memory:, which forgets them at exit)\n"
    "  --log-level LEVEL    off, error, warn, info, debug or trace (default info)\n"
    "  --help               show this help\n"
    "\n"
    "commands on stdin, one per line:\n"
    "  send USER JSON-BODY    queue JSON-BODY for USER; prints {\"event\":\"queued\",\"id\":...},\n"
    "                         then an \"ack\" event with that id once the server stored it\n"
    "  group GROUP JSON-BODY  the same, to the members of GROUP\n"
    "  request JSON-FRAME     send a request frame (join, leave, watch, typing, read, history,\n"
    "                         members, conversations...); prints {\"event\":\"requested\",\"id\":...},\n"
    "                         and the reply arrives as a \"frame\" event with that id\n"
    "  quit                   stop the client and exit\n";

/* The most --url flags: nodes of one service, not a list to crawl. */
#define MAX_URLS 16

typedef struct client_options {
    const char *urls[MAX_URLS];
    int url_count;
    const char *token;
    const char *state_path;
    const char *log_level;
} client_options;

/* The name console.c puts before its stderr lines, as this file does. */
const char console_program_name[] = PROGRAM_NAME;

/* Prints the reason and the usage to stderr and exits with the usage status. */
static void fail_usage(const char *reason, const char *flag)
{
    fprintf(stderr, PROGRAM_NAME ": %s%s\n\n%s", reason, flag, USAGE);
    exit(EXIT_USAGE);
}

/* Returns the value following flag argv[*index] and advances past it; exits if there is none. */
static const char *take_flag_value(int argc, char **argv, int *index)
{
    if (*index + 1 >= argc) {
        fail_usage("missing value for ", argv[*index]);
    }
    *index += 1;
    return argv[*index];
}

/* Parses the command line into `options`; exits 0 for --help and 2 for any misuse. */
static void parse_options(int argc, char **argv, client_options *options)
{
    *options = (client_options){
        .state_path = ":memory:",
        .log_level = "info",
    };
    for (int index = 1; index < argc; index++) {
        const char *flag = argv[index];
        if (strcmp(flag, "--help") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (strcmp(flag, "--url") == 0) {
            if (options->url_count == MAX_URLS) {
                fail_usage("too many --url flags", "");
            }
            options->urls[options->url_count++] = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--token") == 0) {
            options->token = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--state") == 0) {
            options->state_path = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--log-level") == 0) {
            options->log_level = take_flag_value(argc, argv, &index);
        } else {
            fail_usage("unknown argument ", flag);
        }
    }
    if (options->url_count == 0) {
        fail_usage("--url is required", "");
    }
    if (options->token == NULL) {
        fail_usage("--token is required", "");
    }
}

/* The engine configuration for `options`, as a JSON string the caller frees; the engine validates it. */
static char *build_config_json(const client_options *options)
{
    text_buffer config = {0};
    text_append(&config, "{\"urls\":[");
    for (int i = 0; i < options->url_count; i++) {
        text_append(&config, i == 0 ? "" : ",");
        text_append_json_string(&config, options->urls[i]);
    }
    text_append(&config, "],\"token\":");
    text_append_json_string(&config, options->token);
    text_append(&config, ",\"state_path\":");
    text_append_json_string(&config, options->state_path);
    text_append(&config, ",\"log_level\":");
    text_append_json_string(&config, options->log_level);
    text_append(&config, "}");
    return config.data;
}

/* Prints {"event":EVENT,"id":ID}, the answer to a command that the engine accepted. */
static void print_id_line(const char *event, const char *id)
{
    text_buffer line = {0};
    text_append(&line, "{\"event\":");
    text_append_json_string(&line, event);
    text_append(&line, ",\"id\":");
    text_append_json_string(&line, id);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/*
 * Runs "send <user> <json-body>" or "group <group> <json-body>", whichever
 * `command` names; the body is the rest of the line, spaces included.
 * stdout stays locked from the call until the "queued" line is out, so the
 * message's ack, printed by the dispatcher thread, cannot come before it.
 */
static void run_queue_command(imbed_client *client, const char *command, char *arguments)
{
    char *recipient = take_word(&arguments);
    char *body = arguments + strspn(arguments, " \t");
    bool to_group = strcmp(command, "group") == 0;
    if (*recipient == '\0' || *body == '\0') {
        print_command_error(command, to_group ? "usage: group <group> <json-body>" : "usage: send <user> <json-body>");
        return;
    }
    char *client_id = NULL;
    flockfile(stdout);
    imbed_status status = to_group ? imbed_client_send_group(client, recipient, body, &client_id)
                                   : imbed_client_send(client, recipient, body, &client_id);
    if (status == IMBED_OK) {
        print_id_line("queued", client_id);
    } else {
        print_command_failure(command, status);
    }
    funlockfile(stdout);
    imbed_string_free(client_id);
}

/* Runs "request <json-frame>": the frame is the rest of the line; its reply comes as a "frame" event. */
static void run_request_command(imbed_client *client, char *arguments)
{
    char *frame = arguments + strspn(arguments, " \t");
    if (*frame == '\0') {
        print_command_error("request", "usage: request <json-frame>");
        return;
    }
    char *request_id = NULL;
    flockfile(stdout); /* as for sends: the "requested" line comes before the reply */
    imbed_status status = imbed_client_request(client, frame, &request_id);
    if (status == IMBED_OK) {
        print_id_line("requested", request_id);
    } else {
        print_command_failure("request", status);
    }
    funlockfile(stdout);
    imbed_string_free(request_id);
}

/* Runs one stdin command (the console_command_runner of this program); `context` is the imbed_client. */
static void run_client_command(void *context, char *command, char *arguments)
{
    imbed_client *client = context;
    if (strcmp(command, "send") == 0 || strcmp(command, "group") == 0) {
        run_queue_command(client, command, arguments);
    } else if (strcmp(command, "request") == 0) {
        run_request_command(client, arguments);
    } else {
        print_command_error(command, "unknown command (commands: send, group, request, quit; --help describes them)");
    }
}

/* Creates the client with the options' config and this program's listener; exits on failure. */
static imbed_client *create_client(const client_options *options)
{
    char *config = build_config_json(options);
    imbed_client *client = NULL;
    imbed_status status = imbed_client_new(config, &client);
    free(config);
    if (status != IMBED_OK) {
        print_failure(status);
        exit(1);
    }
    imbed_listener listener = console_engine_listener();
    status = imbed_client_set_listener(client, &listener);
    if (status != IMBED_OK) {
        print_failure(status);
        imbed_client_free(client);
        exit(1);
    }
    return client;
}

/* Runs the client: parse flags, create and start it, take commands, stop. */
int main(int argc, char **argv)
{
    client_options options;
    parse_options(argc, argv, &options);

    /* Before the engine opens any file descriptor; see console_prepare_input. */
    console_input input = console_prepare_input();

    imbed_client *client = create_client(&options);
    imbed_status status = imbed_client_start(client);
    if (status != IMBED_OK) {
        print_failure(status);
        imbed_client_free(client);
        return 1;
    }
    console_run_commands(input, run_client_command, client);

    int exit_status = 0;
    status = imbed_client_stop(client);
    if (status != IMBED_OK) {
        print_failure(status);
        exit_status = 1;
    }
    imbed_client_free(client);
    return exit_status;
}

